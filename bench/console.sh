#!/usr/bin/env bash
# The web console's speed in headless Chromium (see bench/console.py): the
# runs page's first render with 1,000 runs stored, a run view following a
# model streaming 500 tokens/s, and the size of the embedded files.
# Needs chromium, chromedriver and python3. BMAD2PF_BIN picks a built
# binary; otherwise the release binary is built. RUNS, TOKENS, RATE,
# BROWSERS and LOADS change the sizes; PARTS=runs or PARTS=stream takes one
# measurement only.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"

tools="python3 chromium chromedriver"
# shellcheck source=bench/server_binary.sh
. "$root/bench/server_binary.sh"

exec python3 "$root/bench/console.py" "$bin" "$root/examples/planning" \
  "$(command -v chromium)" "$(command -v chromedriver)" "$root/crates/server/console"
