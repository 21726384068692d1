#!/usr/bin/env bash
# Every test ringsocket has, as CI runs it (.ci/run calls this script):
#   formatting, clippy with warnings denied, docs with broken links denied, the test suite on
#   io_uring and again on epoll (MONOIO_FORCE_LEGACY_DRIVER=1) with the robustness battery
#   (tests/robustness), the cross-process broker tests (features redis, nats: real
#   redis-server and nats-server) on both drivers, a bounded fuzzing run of every parser,
#   permessage-deflate interop with real clients (Python websockets, Node ws, headless
#   Chromium), and Autobahn|Testsuite against the echo example on both drivers (1.* to 10.*
#   against `echo`, then the full suite 1.* to 13.* against `echo --deflate`).
# Usage: scripts/test.sh [--quick]   (--quick: Autobahn without the slow 9.* cases)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
if [[ "${1:-}" == "--quick" ]]; then
  quick=(--quick)
fi

step() { printf '\n==> %s\n' "$*"; }

# Every cargo test run's output is kept, to print one closing count for the whole suite.
results=$(mktemp)
trap 'rm -f "$results"' EXIT
run_tests() { "$@" 2>&1 | tee -a "$results"; }

step "toolchain"
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (https://rustup.rs)" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo --version

step "system packages (scripts/setup.sh)"
scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings (default features, then all)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet --all-features

step "cargo test (io_uring)"
run_tests cargo test --all-targets
run_tests cargo test --doc
# The benchmark crate's own tests (report rendering, the raw handshake of its peers, the load
# generator's parsing): the workspace root is a package, so a plain `cargo test` leaves the
# other members out.
run_tests cargo test -p ringsocket-bench

step "cargo test (epoll: MONOIO_FORCE_LEGACY_DRIVER=1)"
run_tests env MONOIO_FORCE_LEGACY_DRIVER=1 cargo test --all-targets

step "broker tests: two processes through redis-server and nats-server (io_uring, then epoll)"
broker_tests=(cargo test --features redis,nats --test broker_redis --test broker_nats)
run_tests "${broker_tests[@]}"
run_tests env MONOIO_FORCE_LEGACY_DRIVER=1 "${broker_tests[@]}"

step "fuzz smoke run (scripts/fuzz.sh --smoke: 60 s per target)"
scripts/fuzz.sh --smoke

step "permessage-deflate interop: Python websockets, Node ws, Chromium (scripts/interop.sh)"
scripts/interop.sh

step "benchmark smoke run (scripts/bench.sh --quick)"
scripts/bench.sh --quick

step "autobahn (io_uring)"
scripts/autobahn.sh "${quick[@]}"

step "autobahn (epoll)"
scripts/autobahn.sh --legacy "${quick[@]}"

step "autobahn 1.* to 13.* against echo --deflate (io_uring; 12.* and 13.* take about 10 minutes)"
scripts/autobahn.sh --deflate "${quick[@]}"

step "autobahn 1.* to 13.* against echo --deflate (epoll; 12.* and 13.* take about 10 minutes)"
scripts/autobahn.sh --deflate --legacy "${quick[@]}"

echo
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i - 1); if ($(i) ~ /^failed;?$/) f += $(i - 1) } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$results"
