#!/usr/bin/env bash
# Builds ringsocket's benchmark in release mode and runs it (bench/src/bin/bench.rs):
# ringsocket's echo server against its peers, interleaved, server on CPU 0 and load generator
# on CPU 1, medians over rounds. Run `scripts/bench.sh --help` for usage.
set -euo pipefail

# One `{ ...; }` block: bash parses the whole script before running it, so editing this file
# during a run cannot corrupt that run.
{

usage() {
  cat <<'EOF'
Usage: scripts/bench.sh [--quick] [runner options]

  (no option)   full benchmark: 6 servers x 18 scenarios x 3 rounds, about 25 minutes on a
                quiet machine (runs disturbed by other processes are repeated once, so up
                to about 30 on a busy one); report in bench/results/latest.{md,svg,json}
  --quick       smoke run (about a minute after the build): rs-echo, raw-echo and fws-echo;
                echo 100 x 20 B, echo 10 x 16 KiB, idle 1,000 connections, broadcast to
                1,000 subscribers (servers with a fan-out route), and the same across two
                rs-echo processes through redis-server and nats-server (installed by
                scripts/setup.sh); 1 round of 1 s
                warm-up + 2 s; report in a temp dir unless --out DIR; exits non-zero if any
                run failed or counted an error

Builds with `cargo build --release -p ringsocket-bench --bins`, runs `npm ci` in bench/node
when a Node server is selected, raises `ulimit -n` to the hard limit, then runs
target/release/bench with every argument given here. Runner options (see
`target/release/bench --help`): --servers a,b --scenarios x,y --rounds N --warmup S
--duration S --hold S --out DIR --loadgen-driver uring|epoll --list
EOF
}

log() { printf 'bench.sh: %s\n' "$*" >&2; }
die() {
  printf 'bench.sh: error: %s\n' "$*" >&2
  exit 1
}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
cd "$REPO_ROOT"

quick=0
list=0
servers=
prev=
for arg in "$@"; do
  case $arg in
    -h | --help)
      usage
      exit 0
      ;;
    --quick) quick=1 ;;
    --list) list=1 ;;
    --servers=*) servers=${arg#--servers=} ;;
  esac
  if [[ $prev == --servers ]]; then servers=$arg; fi
  prev=$arg
done

# The Node peers run in full mode, or whenever --servers names one.
need_node=0
if [[ -n $servers ]]; then
  case ",$servers," in
    *,node-*) need_node=1 ;;
  esac
elif [[ $quick == 0 ]]; then
  need_node=1
fi
if [[ $list == 1 ]]; then need_node=0; fi

command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs)"
log "building: cargo build --release -p ringsocket-bench --bins"
cargo build --release -p ringsocket-bench --bins

if [[ $need_node == 1 ]]; then
  command -v node >/dev/null || die "node not found: the Node peers (node-ws, node-fastify) need Node.js 20+"
  command -v npm >/dev/null || die "npm not found (it comes with Node.js)"
  log "installing the Node peers: npm ci --no-audit --no-fund (bench/node)"
  (cd bench/node && npm ci --no-audit --no-fund)
fi

# 10,000 idle connections need more than the usual 1,024 descriptors (server and loadgen
# inherit this limit; both also raise their own soft limit to the hard one).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true

target_dir=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
if [[ $target_dir != /* ]]; then target_dir=$REPO_ROOT/$target_dir; fi
export BENCH_COMMAND="scripts/bench.sh${*:+ $*}"
status=0
"$target_dir/release/bench" "$@" || status=$?
if [[ $list == 0 ]]; then
  if [[ $status == 0 ]]; then
    log "done"
  else
    log "FAILED (exit $status): see the errors above and the report"
  fi
fi
exit $status

}
