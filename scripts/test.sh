#!/usr/bin/env bash
# Every test ringsocket has, as CI runs it (.ci/run calls this script):
#   formatting, clippy with warnings denied, docs with broken links denied, the test suite on
#   io_uring and again on epoll (MONOIO_FORCE_LEGACY_DRIVER=1), and Autobahn|Testsuite
#   against the echo example on both drivers.
# Usage: scripts/test.sh [--quick]   (--quick: Autobahn without the slow 9.* cases)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
if [[ "${1:-}" == "--quick" ]]; then
  quick=(--quick)
fi

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (https://rustup.rs)" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo --version

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet

step "cargo test (io_uring)"
cargo test --all-targets
cargo test --doc

step "cargo test (epoll: MONOIO_FORCE_LEGACY_DRIVER=1)"
MONOIO_FORCE_LEGACY_DRIVER=1 cargo test --all-targets

step "autobahn (io_uring)"
scripts/autobahn.sh "${quick[@]}"

step "autobahn (epoll)"
scripts/autobahn.sh --legacy "${quick[@]}"

echo
echo "all tests passed"
