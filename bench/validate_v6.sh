#!/usr/bin/env bash
# Times `bmad2pf validate` as a whole process on a synthetic BMAD v6 module
# tree (bench/gen_bmad_v6.py: 10 agents, 40 workflows with their step files,
# by default) with farm-bench, which prints min / median / max wall time.
# The goal (issue 19) is a median under 50 ms.
#
# Usage: bench/validate_v6.sh [AGENTS [WORKFLOWS]]
# Env:   RUNS (default 20), CARGO_TARGET_DIR (where the release binary is
#        built), BMAD2PF_BIN (a binary built already: nothing is built).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
agents=${1:-10}
workflows=${2:-40}
runs=${RUNS:-20}
target=${CARGO_TARGET_DIR:-$root/target}
command -v farm-bench >/dev/null || { echo "bench/validate_v6.sh needs farm-bench" >&2; exit 2; }

if [ -n "${BMAD2PF_BIN:-}" ]; then
    bin=$BMAD2PF_BIN
else
    echo "building release binary..." >&2
    (cd "$root" && cargo build --release --quiet -p bmad2pf)
    bin=$target/release/bmad2pf
fi
[ -x "$bin" ] || { echo "no binary at $bin" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$root/bench/gen_bmad_v6.py" "$work/tree" "$agents" "$workflows"
echo "tree: $agents agents, $workflows workflows, $(find "$work/tree" -type f | wc -l) files" >&2
"$bin" validate --src "$work/tree" >&2
farm-bench -n "$runs" --warmup 2 -- "$bin" validate --src "$work/tree"
