#!/usr/bin/env bash
# CPU time the server spends per request on one route under load, in all
# and by thread (the async workers, the store's writer, the documents'
# file thread): a figure that moves less with the machine's noise than
# requests/s, and says which part of the server a change made cheaper.
#
#   bench/cpu_per_request.sh [run|runs_wait|put_doc|put_memory|get_doc|health] [ROUNDS]
#
# Each round starts a fresh server on examples/planning with the
# zero-latency mock in a new data directory under $TMPDIR (kept: deleting
# thousands of files slows the next round's file creation on ext4; remove
# them after the last round), drives the route with wrk for
# $BENCH_DURATION (default 5s) at $BENCH_CONNECTIONS (default 32), and
# reads the server's CPU ticks from /proc before and after. Prints one
# line per round: requests/s, then CPU microseconds per request in all and
# per thread name. Linux only (/proc). BMAD2PF_BIN=path measures a given
# binary; to compare two builds, alternate them round by round.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
route="${1:-run}"
rounds="${2:-3}"
connections="${BENCH_CONNECTIONS:-32}"
duration="${BENCH_DURATION:-5s}"
port="${BENCH_PORT:-18081}"
target="${CARGO_TARGET_DIR:-$root/target}"
# The same requests as bench/http.sh: a wrk script, or a path to GET.
case "$route" in
  run) script_args=(-s "$root/bench/http/post_run.lua"); url_path=/ ;;
  runs_wait) script_args=(-s "$root/bench/http/runs_wait.lua"); url_path=/ ;;
  put_doc) script_args=(-s "$root/bench/http/put_doc.lua"); url_path=/ ;;
  put_memory) script_args=(-s "$root/bench/http/put_memory.lua"); url_path=/ ;;
  get_doc) script_args=(); url_path=/doc/bench__read ;;
  health) script_args=(); url_path=/health ;;
  *) echo "unknown route $route (run, runs_wait, put_doc, put_memory, get_doc, health)" >&2; exit 2 ;;
esac

# shellcheck source=bench/server_binary.sh
source "$root/bench/server_binary.sh"
ticks_per_s=$(getconf CLK_TCK)

# utime + stime of the process $1 (every thread, ended ones included), as
# a line "all TICKS", then of each live thread summed by thread name.
ticks() {
  awk '{ sub(/^.*\) /, ""); print "all", $12 + $13 }' "/proc/$1/stat"
  for task in /proc/"$1"/task/*; do
    # The name is in parentheses and may hold spaces; the times follow it.
    local stat name
    stat=$(cat "$task/stat" 2>/dev/null) || continue
    name=${stat#*(}; name=${name%)*}; name=${name// /_}
    awk -v name="$name" '{ sub(/^.*\) /, ""); print name, $12 + $13 }' <<<"$stat"
  done | awk '{ ticks[$1] += $2 } END { for (n in ticks) print n, ticks[n] }'
}

pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT
for round in $(seq "$rounds"); do
  work="$(mktemp -d)"
  cd "$work"
  PORT="$port" LOG_LEVEL=warn BMAD2PF_LLM_MOCK_LATENCY_MS=0 "$bin" serve --src "$root/examples/planning" 2>"$work/server.log" &
  pid=$!
  until curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then echo "server exited:" >&2; cat "$work/server.log" >&2; exit 1; fi
    sleep 0.005
  done
  base="http://127.0.0.1:$port"
  # The document GET /doc reads, written before the measure starts.
  curl -fsS -X PUT -H 'Content-Type: text/markdown' --data-binary '# Read me' "$base/doc/bench__read" >/dev/null
  sleep 0.5
  before=$(ticks "$pid")
  out=$(wrk -t2 -c"$connections" -d"$duration" "${script_args[@]}" "$base$url_path")
  after=$(ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  # Per name: a thread that ended during the round (tokio lets idle
  # blocking threads go) is missing from its name's figure, not from "all".
  cpu=$(printf '%s\n' "$before" "---" "$after" | awk -v n="$requests" -v hz="$ticks_per_s" '
    $0 == "---" { later = 1; next }
    !later { start[$1] = $2; next }
    { us[$1] = ($2 - start[$1]) * 1e6 / hz / n }
    END {
      printf "all %.0f", us["all"]
      for (name in us) if (name != "all" && us[name] >= 1) printf "  %s %.0f", name, us[name]
    }')
  echo "round $round  $route: $rps req/s  CPU µs per request: $cpu  (data: $work)"
  cd "$root"
done
