#!/usr/bin/env bash
# The web console's speed in headless Chromium (see bench/console.py): the
# runs page's first render with 1,000 runs stored, a run view following a
# model streaming 500 tokens/s, and the size of the embedded files.
# Needs chromium, chromedriver and python3. BMAD2PF_BIN picks a built
# binary; otherwise the release binary is built. RUNS, TOKENS, RATE and
# LOADS change the sizes.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"

for tool in python3 chromium chromedriver; do
  command -v "$tool" >/dev/null || { echo "$(basename "$0") needs $tool (apt-get install -y chromium chromium-driver python3)" >&2; exit 2; }
done
if [ -n "${BMAD2PF_BIN:-}" ]; then
  bin="$(realpath "$BMAD2PF_BIN")"
else
  echo "building the release binary…" >&2
  (cd "$root" && cargo build -q --release -p bmad2pf)
  bin="$target/release/bmad2pf"
fi

exec python3 "$root/bench/console.py" "$bin" "$root/examples/planning" \
  "$(command -v chromium)" "$(command -v chromedriver)" "$root/crates/server/console"
