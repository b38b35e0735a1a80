#!/usr/bin/env bash
# Instructions the server executes per GET request, counted by valgrind's
# callgrind: repeatable for one binary whatever else the machine does, so it
# tells small per-request costs apart where wrk's requests/s cannot (on a
# shared VM those vary by 10-20% between rounds).
#
# Needs: valgrind, curl, python3. Usage:
#   bench/instructions.sh [BIN] [PATH] [N]   (defaults: target/release/bmad2pf, /health, 2000)
# Runs the server twice under callgrind (N/2 and 3N/2 keep-alive requests on
# one connection from a Python client) and prints the difference divided by N,
# so start-up and shutdown cancel out.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$(realpath "${1:-$root/target/release/bmad2pf}")"
path="${2:-/health}"
n="${3:-2000}"
port="${BENCH_PORT:-18090}"
for tool in valgrind curl python3; do
  command -v "$tool" >/dev/null || { echo "bench/instructions.sh needs $tool" >&2; exit 2; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Total instructions of one server process that answered $1 requests.
count() {
  local requests="$1" dir
  dir="$(mktemp -d "$work/run.XXXX")"
  (cd "$dir" && PORT="$port" LOG_LEVEL=warn exec valgrind --tool=callgrind \
    --callgrind-out-file="$dir/callgrind.out" "$bin" serve --src "$root/examples/planning" \
    2>"$dir/server.log") &
  local pid=$!
  until curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    sleep 0.1
  done
  python3 - "$port" "$path" "$requests" <<'PY'
import http.client, sys
port, path, requests = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
connection = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(requests):
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    if response.status >= 400:
        sys.exit(f"GET {path} answered {response.status}")
PY
  kill -INT "$pid"
  wait "$pid" || true
  awk '/^summary:/ {print $2}' "$dir/callgrind.out"
}

few=$(count $((n / 2)))
many=$(count $((n * 3 / 2)))
echo "$bin GET $path: $(( (many - few) / n )) instructions per request (callgrind, $n requests)"
