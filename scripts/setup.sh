#!/usr/bin/env bash
# Installs what the tests need beyond Rust, on a fresh Debian machine (CI runs it through
# scripts/test.sh): Debian packages for real peers. Idempotent: a package already present is
# not fetched again. Usage: scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup.sh: %s\n' "$*" >&2; }

# Debian packages the tests run for real; a missing one is installed, never skipped.
apt_packages=(
  redis-server nats-server # the broker tests (tests/broker_*.rs) and the cluster benchmark
  g++                      # libFuzzer's C++ sources, built by cargo-fuzz (scripts/fuzz.sh)
  chromium     # scripts/interop.sh: headless Chromium, a real permessage-deflate client
  python3-venv # scripts/interop.sh: the venv for Python websockets
)

missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  sudo=()
  if [[ $(id -u) != 0 ]]; then sudo=(sudo); fi
  log "installing Debian packages: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
