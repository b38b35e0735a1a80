#!/usr/bin/env bash
# HTTP benchmark of the bmad2pf server (SPEC 5 routes) on examples/planning
# with the zero-latency mock LLM.
#
# Needs: cargo, wrk (Debian: `apt-get install -y wrk`), curl. Installs nothing.
# Measures, at $BENCH_CONNECTIONS connections (default 32) for $BENCH_DURATION
# (default 10s) each: GET /health, GET /doc/{id}, PUT /doc/{id},
# PUT /memory/{scope}/{key}, POST /run, and POST /runs each followed by
# GET /runs/{id}/wait (runs/s is half its req/s) — requests/s, p50 and p99
# latency.
# Also: time from process start to the first successful /health (measured by
# bench/first_health.py, which polls from one process: a curl per poll would
# add its own start-up to the figure), idle RSS, and SQLite's commit rate on
# the same disk (bench/sqlite_commits.py), the ceiling of the write routes.
#
# Serves with `bmad2pf serve --src` (BMAD2PF_BIN=path uses a prebuilt binary).
# BENCH_ROUTES (default "health get_doc put_doc put_memory run runs_wait") picks the
# routes measured, e.g. BENCH_ROUTES="put_doc run" when comparing store changes.
# BENCH_MEMORY_KEYS (default 1000 per wrk thread) is how many keys PUT /memory
# cycles over; 0 never repeats one.
# BENCH_KEEP=1 leaves the data directory in place at exit (its path is
# printed): on ext4, creating files is slower for a while after thousands
# were deleted, so rounds compared one after another should not each delete
# the last one's documents; remove the directories after the last round.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
src="${BENCH_SRC:-$root/examples/planning}"
connections="${BENCH_CONNECTIONS:-32}"
duration="${BENCH_DURATION:-10s}"
threads="${BENCH_THREADS:-2}"
port="${BENCH_PORT:-18080}"
routes=" ${BENCH_ROUTES:-health get_doc put_doc put_memory run runs_wait} "
target="${CARGO_TARGET_DIR:-$root/target}"

# shellcheck source=bench/server_binary.sh
source "$root/bench/server_binary.sh"
server=("$bin" serve --src "$src")

work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "data kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# Relative store paths in runtime.yaml resolve against the working directory.
cd "$work"
ready=$(python3 "$root/bench/first_health.py" --runs 5 --port "$port" -- "${server[@]}")
rm -rf "$work/.bmad2pf"
PORT="$port" LOG_LEVEL=warn BMAD2PF_LLM_MOCK_LATENCY_MS=0 "${server[@]}" 2>"$work/server.log" &
pid=$!
base="http://127.0.0.1:$port"
until curl -fsS "$base/health" >/dev/null 2>&1; do
  if ! kill -0 "$pid" 2>/dev/null; then echo "server exited:" >&2; cat "$work/server.log" >&2; exit 1; fi
  sleep 0.005
done
sleep 1
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
# The process's own memory; the rest of VmRSS is file pages (mostly the
# executable's), whose count depends on the page cache (docs/operations.md).
anon_kb=$(awk '/RssAnon/ {print $2}' "/proc/$pid/status")

echo "server: ${server[*]}"
echo "$ready"
# What the disk under the data directory allows, for the write routes below.
python3 "$root/bench/sqlite_commits.py" "$work" 2
echo "idle RSS: $((rss_kb / 1024)) MiB (${rss_kb} kB, of which RssAnon ${anon_kb} kB)"
echo "wrk: $threads threads, $connections connections, $duration per route"
printf '%-28s %12s %10s %10s\n' route "req/s" p50 p99

curl -fsS -X PUT -H 'Content-Type: text/markdown' --data-binary '# Read me' "$base/doc/bench__read" >/dev/null

measure() {
  local route="$1" label="$2"; shift 2
  [[ "$routes" == *" $route "* ]] || return 0
  local out
  out=$(wrk -t"$threads" -c"$connections" -d"$duration" --latency "$@")
  local rps p50 p99 errors
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx or 3xx responses/ {print $5}' <<<"$out")
  printf '%-28s %12s %10s %10s%s\n' "$label" "$rps" "$p50" "$p99" "${errors:+  (non-2xx: $errors)}"
}

measure health "GET /health" "$base/health"
measure get_doc "GET /doc/{id}" "$base/doc/bench__read"
measure put_doc "PUT /doc/{id}" -s "$root/bench/http/put_doc.lua" "$base"
measure put_memory "PUT /memory/{scope}/{key}" -s "$root/bench/http/put_memory.lua" "$base"
measure run "POST /run (flow brief)" -s "$root/bench/http/post_run.lua" "$base"
measure runs_wait "POST /runs + GET wait" -s "$root/bench/http/runs_wait.lua" "$base"
