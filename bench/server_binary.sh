# Sourced by the server benchmarks: checks the tools they need and sets
# `bin` to the bmad2pf binary to serve with — $BMAD2PF_BIN when given (a
# binary built already, e.g. `cargo build --profile bench`; made absolute
# because the server runs from a temporary working directory), else the
# release binary, built here. Needs `root` (the checkout) and `target`.

# `tools` (set before sourcing) names what the script needs besides.
for tool in cargo ${tools:-wrk curl python3}; do
  command -v "$tool" >/dev/null || { echo "$(basename "$0") needs $tool (Debian: apt-get install -y $tool; chromedriver is chromium-driver)" >&2; exit 2; }
done

if [ -n "${BMAD2PF_BIN:-}" ]; then
  bin="$(realpath "$BMAD2PF_BIN")"
else
  echo "building the release binary…" >&2
  (cd "$root" && cargo build -q --release -p bmad2pf)
  bin="$target/release/bmad2pf"
fi
