#!/usr/bin/env bash
# Soak run: the echo and chat examples (release builds, 2 workers each) under thousands of
# clients mixing normal traffic, garbage, slow readers, resets and reconnects for a bounded
# time (tests/robustness/soak.rs). Prints each server's memory over time and the counts of
# messages, errors and unexpected closes; fails if anything was lost or altered, if a server
# did not shut down cleanly, or if memory kept growing. Not part of scripts/test.sh.
# Usage: scripts/soak.sh [SECONDS]   (default 120; SOAK_CLIENTS, default 2000, sets the clients)
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-${SOAK_SECS:-120}}
clients=${SOAK_CLIENTS:-2000}
# Each client holds a socket here and one in the server.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release --example echo --example chat
cargo test --release --test robustness --no-run

logs=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$logs"
}
trap cleanup EXIT

# Starts example $1 on a free port; sets addr and pid.
start() {
  local name=$1
  RUST_LOG=warn "target/release/examples/$name" --port 0 --workers 2 >"$logs/$name.out" 2>"$logs/$name.err" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 1 100); do
    addr=$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$logs/$name.out")
    [[ -n "$addr" ]] && return 0
    sleep 0.1
  done
  echo "soak.sh: $name did not start" >&2
  cat "$logs/$name.err" >&2
  exit 1
}

start echo; echo_addr=$addr; echo_pid=$pid
start chat; chat_addr=$addr; chat_pid=$pid
echo "echo on $echo_addr (pid $echo_pid), chat on $chat_addr (pid $chat_pid): ${secs}s, $clients clients"

SOAK_ECHO=$echo_addr SOAK_CHAT=$chat_addr SOAK_ECHO_PID=$echo_pid SOAK_CHAT_PID=$chat_pid \
  SOAK_SECS=$secs SOAK_CLIENTS=$clients \
  cargo test --release --test robustness soak::soak -- --ignored --nocapture --exact

# Both servers shut down gracefully on SIGTERM and exit 0.
for pid in "$echo_pid" "$chat_pid"; do
  kill -TERM "$pid"
  if ! wait "$pid"; then
    echo "soak.sh: server $pid exited with an error" >&2
    exit 1
  fi
done
pids=()
for name in echo chat; do
  if grep -qi "panic" "$logs/$name.err"; then
    echo "soak.sh: $name logged a panic:" >&2
    grep -i -m5 "panic" "$logs/$name.err" >&2
    exit 1
  fi
done
echo "soak: passed"
