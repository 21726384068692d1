#!/usr/bin/env bash
# permessage-deflate against three real, independent clients: Python `websockets` (PyPI),
# Node `ws` (npm) and headless Chromium (Debian's, driven by playwright-core). Each must
# negotiate permessage-deflate with `echo --deflate` and with `echo --deflate-dedicated`, and
# round-trip text and binary messages of 0 B, 1 KiB and 1 MiB, and of 1 KiB and 1 MiB through
# the example's /broadcast fan-out (tests/interop/).
# Installs what it needs: npm ci in tests/interop, a Python venv in tests/interop/.venv; the
# Debian packages (chromium, python3-venv) come from scripts/setup.sh. A missing tool fails.
# Usage: scripts/interop.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=$root/tests/interop

log() { printf 'interop: %s\n' "$*"; }
die() {
  printf 'interop: error: %s\n' "$*" >&2
  exit 1
}

command -v node >/dev/null || die "node not found: Node.js 20+ is needed for the ws and Chromium clients"
command -v npm >/dev/null || die "npm not found (it comes with Node.js)"
command -v python3 >/dev/null || die "python3 not found (3.9+ is needed for websockets)"
chromium_bin=${CHROMIUM:-$(command -v chromium || true)}
[[ -n $chromium_bin && -x $chromium_bin ]] ||
  die "chromium not found: run scripts/setup.sh (it installs Debian's chromium), or set CHROMIUM"

log "installing the Node clients: npm ci (tests/interop)"
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)

venv=$dir/.venv
stamp="$(python3 --version 2>&1) $(cksum <"$dir/requirements.txt")"
if [[ ! -x $venv/bin/python || $(cat "$venv/.installed" 2>/dev/null) != "$stamp" ]]; then
  log "installing the Python client: websockets in $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv failed: run scripts/setup.sh (python3-venv)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$dir/requirements.txt" ||
    die "could not install $(cat "$dir/requirements.txt")"
  printf '%s\n' "$stamp" >"$venv/.installed"
fi

log "building the echo example (cargo build --release --example echo)"
cargo build --release --example echo --quiet
echo_bin=$root/target/release/examples/echo

server_pid=
work=$(mktemp -d)
stop_server() {
  if [[ -n $server_pid ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
trap 'stop_server; rm -rf "$work"' EXIT

failed=0
passed=0
for mode in --deflate --deflate-dedicated; do
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  "$echo_bin" --port "$port" --workers 2 "$mode" >"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in {1..100}; do
    grep -q 'listening on' "$work/server.log" && break
    kill -0 "$server_pid" 2>/dev/null || die "echo $mode exited: $(cat "$work/server.log")"
    sleep 0.1
  done
  grep -q 'listening on' "$work/server.log" || die "echo $mode did not start within 10 s"
  url=ws://127.0.0.1:$port/
  clients=(
    "python websockets|$venv/bin/python $dir/python_client.py $url"
    "node ws|node $dir/ws_client.mjs $url"
    "chromium|node $dir/chromium_client.mjs $url $chromium_bin"
  )
  for entry in "${clients[@]}"; do
    name=${entry%%|*}
    read -r -a cmd <<<"${entry#*|}"
    if timeout 120 "${cmd[@]}"; then
      passed=$((passed + 1))
    else
      log "FAILED: $name against echo $mode"
      failed=$((failed + 1))
    fi
  done
  stop_server
done

log "$passed passed, $failed failed (3 clients x 2 modes)"
((failed == 0))
