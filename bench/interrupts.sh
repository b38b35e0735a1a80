#!/usr/bin/env bash
# Human-in-the-loop benchmark of the bmad2pf server (SPEC 8.1-8.3, 8.6) with
# the zero-latency mock LLM.
#
# Needs: cargo, python3, curl, wrk (Debian: `apt-get install -y wrk`).
# Installs nothing.
# Measures:
# 1. Interrupts: $BENCH_RUNS (default 1000) background runs of
#    examples/planning's flow `kickoff` (its agent calls `ask_human` once,
#    so each run ends `interrupted`), all POSTed at once over
#    $BENCH_HITL_CONNECTIONS (default 1000: a client per run) connections,
#    then waited for until all are interrupted; then every open interrupt
#    answered (GET /runs/{id}, POST /runs/{id}/resume) and every run waited
#    for until it ended. Fails unless each run was interrupted and then
#    ended `success`. Prints both times, and the server's RSS: before, with
#    all interrupted, peak (VmHWM, and VmRSS sampled every 20 ms) and after
#    (bench/interrupts.py does the requests and the sampling).
# 2. Event replay: a 50-agent source (bench/gen_synthetic.py, its `main`
#    flow cut to the ten layers of five agents, without the review loop
#    the mock never approves) run to the end with POST /run, then
#    GET /runs/{id}/events of that finished run (every stored event, then
#    `done`, and the stream closes) with wrk at $BENCH_CONNECTIONS (default
#    16) for $BENCH_DURATION (default 10s): replays/s, p50, p99.
#
# Each part starts its own server in a temporary working directory (the
# store lands there) with the example's runtime.yaml as it is:
# `runs.max_queued_runs` (default 1000) counts the runs waiting for a slot,
# which 1,000 POSTs at once never exceed (32 of them run), and a run
# waiting for a person holds no slot. BMAD2PF_BIN
# measures a given binary instead of building the release one; BENCH_PARTS
# (default "interrupts replay") picks the parts.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${BENCH_RUNS:-1000}"
hitl_connections="${BENCH_HITL_CONNECTIONS:-1000}"
connections="${BENCH_CONNECTIONS:-16}"
duration="${BENCH_DURATION:-10s}"
threads="${BENCH_THREADS:-2}"
port="${BENCH_PORT:-18080}"
parts=" ${BENCH_PARTS:-interrupts replay} "
target="${CARGO_TARGET_DIR:-$root/target}"

# shellcheck source=bench/server_binary.sh
source "$root/bench/server_binary.sh"

work="$(mktemp -d)"
pid=""
stop_server() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  pid=""
}
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT
base="http://127.0.0.1:$port"

# Starts `bmad2pf serve --src $1` in a fresh directory under $work.
start_server() {
  local dir="$work/$2"
  mkdir -p "$dir"
  cd "$dir"
  PORT="$port" LOG_LEVEL=warn BMAD2PF_LLM_MOCK_LATENCY_MS=0 "$bin" serve --src "$1" 2>"$dir/server.log" &
  pid=$!
  until curl -fsS "$base/health" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then echo "server exited:" >&2; cat "$dir/server.log" >&2; exit 1; fi
    sleep 0.005
  done
  sleep 1
}

echo "server: $bin serve --src …"
status=0

if [[ "$parts" == *" interrupts "* ]]; then
  echo "== $runs runs interrupted at once, then resumed (examples/planning, flow kickoff)"
  start_server "$root/examples/planning" planning
  python3 "$root/bench/interrupts.py" interrupts "$base" "$pid" \
    --runs "$runs" --connections "$hitl_connections" || status=1
  sleep 1
  echo "RSS 1 s after the client closed its connections: $(awk '/VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$pid/status")"
  stop_server
fi

if [[ "$parts" == *" replay "* ]]; then
  echo "== replay of a finished 50-agent run (GET /runs/{id}/events)"
  src="$work/synthetic-50"
  python3 "$root/bench/gen_synthetic.py" 50 "$src"
  # The mock never approves the review step: keep the ten layers only.
  python3 - "$src/workflow.yaml" <<'EOF'
import sys
path = sys.argv[1]
kept = []
for line in open(path).read().splitlines():
    if line.strip() == "- id: review":
        break
    kept.append(line)
open(path, "w").write("\n".join(kept) + "\n")
EOF
  start_server "$src" synthetic
  run=$(curl -fsS -X POST -H 'Content-Type: application/json' \
    -d '{"flow":"main","story_id":"replay","input":"a todo app"}' "$base/run")
  run_id=$(python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["run_id"] if r["status"] == "success" and len(r["results"]) == 50 else "")' <<<"$run")
  if [ -z "$run_id" ]; then
    echo "FAIL: the 50-agent run did not succeed: ${run:0:500}" >&2
    exit 1
  fi
  # A complete replay first (every event, ending with `done`), then the rate.
  python3 "$root/bench/interrupts.py" replay "$base" "$run_id" --seconds 0
  out=$(wrk -t"$threads" -c"$connections" -d"$duration" --latency "$base/runs/$run_id/events")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx or 3xx responses/ {print $5}' <<<"$out")
  echo "replays/s: $rps at $connections connections (wrk, $duration), p50 $p50, p99 $p99${errors:+ (non-2xx: $errors)}"
  stop_server
fi
exit "$status"
