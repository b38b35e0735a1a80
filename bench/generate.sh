#!/usr/bin/env bash
# Times `bmad2pf generate` as a whole process on synthetic trees of 10, 100
# and 1,000 agents (bench/gen_synthetic.py) and on a BMAD v4 installed
# project of 40 agents, a core and six expansion packs (size `bmad`,
# bench/gen_bmad.py), and prints, per tree, the median
# wall time and the peak resident memory, in two cases:
#   rewrite: the output already holds this bundle (regenerating with no
#            change: files are compared and hard-linked, not rewritten);
#   fresh:   the output directory is removed before each run (every file
#            written, then one syncfs of the filesystem on Linux, or one
#            fsync per file elsewhere, before the swap).
# The goals (docs/operations.md, Performance, "generate") are held to the rewrite case: it is
# what regenerating costs the compiler itself, while a fresh run adds the
# filesystem's flush, which depends on whatever else waits to be written.
#
# Builds the release binary once. Wall time comes from hyperfine when it is
# installed (Debian: apt-get install hyperfine), else from a loop of runs
# timed here; peak memory from /usr/bin/time (max RSS over the runs).
#
# With BASELINE_BIN set, compares two builds instead: for each tree, the
# rewrite case of BASELINE_BIN (A) and of the binary (B) run alternately
# (A B, B A, ...), and it prints both medians, the median of the per-round
# ratios B/A with their interquartile range, and the median CPU time. Each
# binary rewrites an output directory of its own, so two builds whose
# bundles differ in a byte still both time the rewrite case.
#
# Usage: bench/generate.sh [SIZES...]        (default: 10 100 1000 bmad)
# Env:   RUNS (default 20), BENCH_DIR (default: a fresh temp dir, removed at exit),
#        CARGO_TARGET_DIR (where the release binary is built),
#        BMAD2PF_BIN (a binary built already: nothing is built),
#        BASELINE_BIN (a second binary to compare with, see above).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10 100 1000 bmad)
runs=${RUNS:-20}
target=${CARGO_TARGET_DIR:-$root/target}

if [ -n "${BENCH_DIR:-}" ]; then
    work=$BENCH_DIR
    mkdir -p "$work"
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi

if [ -n "${BMAD2PF_BIN:-}" ]; then
    bin=$BMAD2PF_BIN
else
    echo "building release binary..." >&2
    (cd "$root" && cargo build --release --quiet -p bmad2pf)
    bin=$target/release/bmad2pf
fi
[ -x "$bin" ] || { echo "no binary at $bin (is CARGO_TARGET_DIR set the same as for cargo?)" >&2; exit 2; }

# Median of numbers on stdin.
median() { sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# Median wall time in ms of `$2` over $runs runs, running `$3` before each.
median_ms() {
    local name=$1 cmd=$2 prepare=$3
    if command -v hyperfine >/dev/null; then
        hyperfine -N --style none --warmup 2 --runs "$runs" --prepare "$prepare" \
            --export-json "$work/h-$name.json" "$cmd" >/dev/null
        python3 -c "import json,sys; print('%.1f' % (json.load(open(sys.argv[1]))['results'][0]['median']*1000))" \
            "$work/h-$name.json"
    else
        for _ in $(seq "$runs"); do
            sh -c "$prepare"
            start=$(date +%s%N); $cmd; end=$(date +%s%N)
            echo "$(( (end - start) / 1000 ))"
        done | median | awk '{printf "%.1f", $1 / 1000}'
    fi
}

# Writes the source tree of size $1 (an agent count, or `bmad`) to $2.
make_tree() {
    if [ "$1" = bmad ]; then
        python3 "$root/bench/gen_bmad.py" "$2"
    else
        python3 "$root/bench/gen_synthetic.py" "$1" "$2"
    fi
}

# Prints "A median, B median, median ratio B/A (IQR), CPU medians" of
# $runs alternating rounds of binaries $1 and $2, each given the command
# line after `--` followed by `--out` and its own directory ($3 for A, $4 for B).
compare() {
    python3 - "$runs" "$@" <<'PY'
import os, statistics, subprocess, sys, time
runs, a, b, out_a, out_b, args = (int(sys.argv[1]), *sys.argv[2:6], sys.argv[7:])
wall, cpu = {a: [], b: []}, {a: [], b: []}
out = {a: out_a, b: out_b}
def run(binary):
    start = time.perf_counter()
    child = subprocess.Popen([binary] + args + ["--out", out[binary]], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        sys.exit(f"{binary} failed")
    wall[binary].append((time.perf_counter() - start) * 1000)
    cpu[binary].append((usage.ru_utime + usage.ru_stime) * 1000)
for binary in (a, b, a, b):  # warm-up, not counted
    run(binary)
    wall[binary].clear(); cpu[binary].clear()
for n in range(runs):
    for binary in ((a, b) if n % 2 == 0 else (b, a)):
        run(binary)
ratios = [y / x for x, y in zip(wall[a], wall[b])]
q1, _, q3 = statistics.quantiles(ratios, n=4)
med = statistics.median
print(f"{med(wall[a]):8.1f} ms {med(wall[b]):8.1f} ms   {med(ratios):.3f} ({q1:.2f}-{q3:.2f})"
      f"   {med(cpu[a]):7.1f} ms {med(cpu[b]):7.1f} ms")
PY
}

if [ -n "${BASELINE_BIN:-}" ]; then
    printf '%-8s %11s %11s   %-18s %10s %10s\n' agents "A median" "B median" "B/A median (IQR)" "A CPU" "B CPU"
    for n in "${sizes[@]}"; do
        src=$work/src-$n
        make_tree "$n" "$src"
        "$BASELINE_BIN" generate --src "$src" --out "$work/out-$n-a" -q
        "$bin" generate --src "$src" --out "$work/out-$n-b" -q
        printf '%-8s %s\n' "$n" "$(compare "$BASELINE_BIN" "$bin" "$work/out-$n-a" "$work/out-$n-b" -- generate --src "$src" -q)"
    done
    exit 0
fi

printf '%-8s %16s %16s %14s %8s\n' agents "rewrite (median)" "fresh (median)" "peak RSS" files
for n in "${sizes[@]}"; do
    src=$work/src-$n
    out=$work/out-$n
    make_tree "$n" "$src"
    # One run to check the tree compiles and to create the bundle being replaced.
    "$bin" generate --src "$src" --out "$out" -q
    cmd="$bin generate --src $src --out $out -q"

    rewrite_ms=$(median_ms "$n-rewrite" "$cmd" true)
    fresh_ms=$(median_ms "$n-fresh" "$cmd" "rm -rf $out")

    peak_kb=$(for _ in $(seq 5); do
        /usr/bin/time -f '%M' $cmd 2>&1 >/dev/null | tail -1
    done | sort -g | tail -1)
    files=$(find "$out" -type f | wc -l)
    printf '%-8s %13s ms %13s ms %11s MB %8s\n' "$n" "$rewrite_ms" "$fresh_ms" \
        "$(awk -v k="$peak_kb" 'BEGIN {printf "%.1f", k / 1024}')" "$files"
done
