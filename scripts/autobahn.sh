#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client (wstest -m fuzzingclient) against the `echo`
# example and compares the outcome with scripts/autobahn/expected-results.json.
# Run `scripts/autobahn.sh --help` for usage.
set -euo pipefail

# The whole script is one `{ ...; }` block, so bash parses all of it before running any of it:
# editing or replacing this file while a run is in progress cannot corrupt that run.
{

usage() {
  cat <<'EOF'
Usage: scripts/autobahn.sh [options]

Runs the Autobahn|Testsuite fuzzing client against the echo example
(cargo build --release --example echo) and checks the results:
  * policy: every case must have behavior OK (7.1.6, 7.13.1 and 7.13.2 may be INFORMATIONAL)
    and behaviorClose OK or INFORMATIONAL;
  * diff against scripts/autobahn/expected-results.json (only the cases that were selected).
The last line of output is a one-line summary; the exit status is 0 on success, 1 otherwise.

Options:
  --cases 'P,...'     case patterns to run instead of the default
                      1.* 2.* 3.* 4.* 5.* 6.* 7.* 9.* 10.*  (e.g. --cases '5.*,7.1.6')
  --quick             skip the slow 9.* performance cases
  --update            rewrite the expected-results entries of the selected cases from this run
  --deflate           run the echo example with --deflate (permessage-deflate) and, unless --cases
                      is given, the full suite: the cases above plus 12.* and 13.* (the
                      permessage-deflate cases, the only ones in which wstest offers the extension)
  --legacy            run the server with MONOIO_FORCE_LEGACY_DRIVER=1 (epoll instead of io_uring);
                      also implied when MONOIO_FORCE_LEGACY_DRIVER is already set to 1/true/yes
  --server-cmd 'CMD'  test this server command instead of building the echo example; it gets
                      `--port N --workers 2 --max-payload 16777216` (and `--deflate`) appended and must print a line
                      containing `listening on` (split on whitespace; no shell quoting)
  --install-only      only install Autobahn|Testsuite (e.g. to warm a CI cache)
  -h, --help          show this help

Environment:
  AUTOBAHN_SERVER_CMD      same as --server-cmd
  AUTOBAHN_EXPECTED        expected-results file (default: scripts/autobahn/expected-results.json)
  AUTOBAHN_REPORT_DIR      where the spec, logs and HTML/JSON reports go (default: autobahn-reports/)
  AUTOBAHN_VENV            install location (default: scripts/.autobahn-venv)
  AUTOBAHN_PYTHON2         CPython 2.7 interpreter to use (default: pyenv's 2.7.18)
  AUTOBAHN_RUN_TIMEOUT     seconds before the wstest run is aborted (default: 1800)
  MONOIO_FORCE_LEGACY_DRIVER  passed through to the server (see --legacy)
EOF
}

log() { printf 'autobahn: %s\n' "$*"; }
die() {
  printf 'autobahn: error: %s\n' "$*" >&2
  exit 1
}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
DATA_DIR=$SCRIPT_DIR/autobahn
SPEC_TEMPLATE=$DATA_DIR/fuzzingclient.json
EXPECTED=${AUTOBAHN_EXPECTED:-$DATA_DIR/expected-results.json}
CONSTRAINTS=$DATA_DIR/constraints.txt
HELPER=$DATA_DIR/results.py

AUTOBAHN_VERSION=25.10.1
VIRTUALENV_SPEC='virtualenv<20.22'
PY2_VERSION=2.7.18
VENV_ROOT=${AUTOBAHN_VENV:-$SCRIPT_DIR/.autobahn-venv}
if [[ $VENV_ROOT != /* ]]; then VENV_ROOT=$PWD/$VENV_ROOT; fi
BOOTSTRAP_DIR=$VENV_ROOT/bootstrap # virtualenv, installed with pip --target
VENV_DIR=$VENV_ROOT/py27           # the virtualenv that holds wstest
MARKER=$VENV_ROOT/.installed
REPORT_DIR=${AUTOBAHN_REPORT_DIR:-$REPO_ROOT/autobahn-reports}
STARTUP_TIMEOUT=30
RUN_TIMEOUT=${AUTOBAHN_RUN_TIMEOUT:-1800}
SERVER_ARGS=(--workers 2 --max-payload 16777216)

# ---------------------------------------------------------------------------------------------
# Options

cases=
deflate=0
quick=0
update=0
install_only=0
server_cmd_str=${AUTOBAHN_SERVER_CMD:-}
legacy=0
case ${MONOIO_FORCE_LEGACY_DRIVER:-} in
  1 | [Tt][Rr][Uu][Ee] | [Yy][Ee][Ss]) legacy=1 ;;
  *) ;;
esac

need_arg() {
  [[ $# -ge 2 && -n $2 ]] || {
    printf 'autobahn: error: %s needs an argument\n' "$1" >&2
    exit 2
  }
}
while [[ $# -gt 0 ]]; do
  case $1 in
    --cases)
      need_arg "$@"
      cases=$2
      shift 2
      ;;
    --cases=*)
      cases=${1#*=}
      shift
      ;;
    --quick) quick=1 && shift ;;
    --deflate) deflate=1 && shift ;;
    --update) update=1 && shift ;;
    --legacy) legacy=1 && shift ;;
    --install-only) install_only=1 && shift ;;
    --server-cmd)
      need_arg "$@"
      server_cmd_str=$2
      shift 2
      ;;
    --server-cmd=*)
      server_cmd_str=${1#*=}
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      printf 'autobahn: error: unknown argument %q (see --help)\n' "$1" >&2
      exit 2
      ;;
  esac
done

command -v python3 >/dev/null || die "python3 is required"
[[ $RUN_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "AUTOBAHN_RUN_TIMEOUT must be a positive number of seconds"
export PYTHONDONTWRITEBYTECODE=1
unset PYTHONPATH PYTHONHOME

# ---------------------------------------------------------------------------------------------
# Cleanup: always stop what we started.

server_pid=
wstest_pid=
work_dir=
# stop_pid PID: TERM, then KILL after 5s; when PID leads its own process group (the server is
# started with setsid), the whole group, so that wrappers such as `cargo run` take their child along.
# shellcheck disable=SC2317  # only reached through the EXIT trap
stop_pid() {
  local pid=$1 target=$1 pgid _
  kill -0 "$pid" 2>/dev/null || return 0
  pgid=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ') || true
  if [[ $pgid == "$pid" ]]; then target=-$pid; fi
  kill -TERM -- "$target" 2>/dev/null || true
  for _ in {1..50}; do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "$target" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
# shellcheck disable=SC2317
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $wstest_pid ]]; then stop_pid "$wstest_pid"; fi
  if [[ -n $server_pid ]]; then stop_pid "$server_pid"; fi
  if [[ -n $work_dir ]]; then rm -rf "$work_dir"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Install Autobahn|Testsuite (Python 2.7 only) into a virtualenv, once.

find_python2() {
  if [[ -n ${AUTOBAHN_PYTHON2:-} ]]; then
    [[ -x $AUTOBAHN_PYTHON2 ]] || die "AUTOBAHN_PYTHON2=$AUTOBAHN_PYTHON2 is not executable"
    printf '%s\n' "$AUTOBAHN_PYTHON2"
    return
  fi
  local roots=() root
  if [[ -n ${PYENV_ROOT:-} ]]; then roots+=("$PYENV_ROOT"); fi
  if command -v pyenv >/dev/null 2>&1; then
    root=$(pyenv root 2>/dev/null) && roots+=("$root")
  fi
  roots+=("$HOME/.pyenv")
  for root in "${roots[@]}"; do
    if [[ -x $root/versions/$PY2_VERSION/bin/python2.7 ]]; then
      printf '%s\n' "$root/versions/$PY2_VERSION/bin/python2.7"
      return
    fi
  done
  local looked=()
  for root in "${roots[@]}"; do looked+=("$root/versions/$PY2_VERSION/bin/python2.7"); done
  die "CPython $PY2_VERSION not found (Autobahn|Testsuite runs on Python 2.7 only); looked for" \
    "${looked[*]}. Install it with \`pyenv install $PY2_VERSION\`, or set" \
    "AUTOBAHN_PYTHON2=/path/to/python2.7"
}

# retry CMD...: runs CMD up to 3 times (pip fails on transient network errors).
retry() {
  local attempt=1
  until "$@"; do
    if ((attempt >= 3)); then
      return 1
    fi
    log "command failed (attempt $attempt/3), retrying in $((attempt * 10))s: $*"
    sleep $((attempt * 10))
    attempt=$((attempt + 1))
  done
}

install_stamp() {
  printf 'autobahntestsuite==%s %s python=%s constraints=%s\n' "$AUTOBAHN_VERSION" \
    "$VIRTUALENV_SPEC" "$1" "$(cksum <"$CONSTRAINTS")"
}

# The `python -c` launcher re-processes site-packages' .pth files (site.addsitedir): that is the
# known workaround for the `zope` namespace package (zope.interface-*-nspkg.pth) not being
# importable in some virtualenv layouts. It is harmless where the plain import already works.
WSTEST_LAUNCHER='import site, sys; site.addsitedir(sys.argv.pop(1)); from autobahntestsuite import wstest; wstest.run()'
wstest_cmd=("$VENV_DIR/bin/python" -u -c "$WSTEST_LAUNCHER" "$VENV_DIR/lib/python2.7/site-packages")

wstest_works() {
  [[ -x $VENV_DIR/bin/python ]] &&
    PYTHONWARNINGS=ignore "$VENV_DIR/bin/python" -c \
      'import site, sys; site.addsitedir(sys.argv[1]); import zope.interface, twisted; from autobahntestsuite import wstest' \
      "$VENV_DIR/lib/python2.7/site-packages" >/dev/null 2>&1
}

installed() {
  [[ -f $MARKER && $(<"$MARKER") == "$1" ]] && wstest_works
}

# lock MODE FD DIR: flock(1) wrapper (no-op without flock). The install lock is held shared while
# a run uses the installation and exclusive while (re)installing, so concurrent runs neither
# install over each other nor delete the virtualenv under a running wstest; the report directory
# lock is exclusive.
lock_fd=
report_lock_fd=
lock() {
  command -v flock >/dev/null 2>&1 || return 0
  flock -n "$1" "$2" && return 0
  log "waiting for another scripts/autobahn.sh to finish with $3 ..."
  flock "$1" "$2"
}

install_wstest() {
  local py2 stamp
  py2=$(find_python2)
  stamp=$(install_stamp "$py2")
  mkdir -p "$VENV_ROOT"
  exec {lock_fd}>>"$VENV_ROOT/.lock"
  lock -s "$lock_fd" "$VENV_ROOT"
  if installed "$stamp"; then
    return 0
  fi
  lock -x "$lock_fd" "$VENV_ROOT"
  if ! installed "$stamp"; then
    do_install "$py2" "$stamp"
  fi
  lock -s "$lock_fd" "$VENV_ROOT"
}

do_install() {
  local py2=$1 stamp=$2 started=$SECONDS
  log "installing Autobahn|Testsuite $AUTOBAHN_VERSION into $VENV_ROOT (one-time, takes a minute or two)"
  command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 ||
    log "warning: no C compiler found; building wsaccel/ujson/cffi wheels for Python 2.7 will fail"

  # Make the installs independent of the caller's pip configuration where it would break them.
  local -x PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_NO_PYTHON_VERSION_WARNING=1 \
    PIP_USER=0 PIP_REQUIRE_VIRTUALENV=0 PIP_RETRIES=5 PIP_DEFAULT_TIMEOUT=${PIP_DEFAULT_TIMEOUT:-60} \
    PYTHONNOUSERSITE=1 PYTHONWARNINGS=ignore

  rm -f "$MARKER"
  "$py2" -m pip --version >/dev/null 2>&1 || "$py2" -m ensurepip --default-pip ||
    die "$py2 has no pip and ensurepip failed"

  # 1. virtualenv for Python 2.7, installed into a private --target directory.
  if ! PYTHONPATH=$BOOTSTRAP_DIR "$py2" -c 'import virtualenv' >/dev/null 2>&1; then
    rm -rf "$BOOTSTRAP_DIR"
    retry "$py2" -m pip install --quiet --target "$BOOTSTRAP_DIR" -c "$CONSTRAINTS" "$VIRTUALENV_SPEC" ||
      die "could not install $VIRTUALENV_SPEC for $py2"
  fi

  # 2. The virtualenv itself (seeded with the pip/setuptools/wheel bundled in virtualenv).
  rm -rf "$VENV_DIR"
  PYTHONPATH=$BOOTSTRAP_DIR "$py2" -m virtualenv --quiet --no-periodic-update \
    --app-data "$VENV_ROOT/app-data" -p "$py2" "$VENV_DIR" ||
    die "python2.7 -m virtualenv failed to create $VENV_DIR"

  # 3. Autobahn|Testsuite, with every dependency pinned to a Python 2.7-compatible release.
  retry "$VENV_DIR/bin/python" -m pip install --quiet -c "$CONSTRAINTS" \
    "autobahntestsuite==$AUTOBAHN_VERSION" ||
    die "could not install autobahntestsuite==$AUTOBAHN_VERSION"

  if ! wstest_works; then
    PYTHONWARNINGS=ignore "$VENV_DIR/bin/python" -c 'from autobahntestsuite import wstest' || true
    die "autobahntestsuite was installed but does not import; see the error above"
  fi
  printf '%s\n' "$stamp" >"$MARKER"
  log "installed Autobahn|Testsuite in $((SECONDS - started))s"
}

install_wstest
if ((install_only)); then
  log "Autobahn|Testsuite $AUTOBAHN_VERSION is installed in $VENV_DIR"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Spec, planned case list, report directory

[[ -f $EXPECTED || $update -eq 1 ]] ||
  log "warning: $EXPECTED does not exist; this run will fail unless --update is given"

work_dir=$(mktemp -d "${TMPDIR:-/tmp}/autobahn.XXXXXX")
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')

mkdir -p "$REPORT_DIR"
REPORT_DIR=$(cd "$REPORT_DIR" && pwd)
exec {report_lock_fd}>>"$REPORT_DIR/.lock"
lock -x "$report_lock_fd" "$REPORT_DIR (set AUTOBAHN_REPORT_DIR to run in parallel)"
outdir=$REPORT_DIR/reports
rm -rf "$outdir" "$REPORT_DIR/server.log" "$REPORT_DIR/wstest.log" "$REPORT_DIR/spec.json"
spec=$work_dir/spec.json
spec_args=(--template "$SPEC_TEMPLATE" --out "$spec" --url "ws://127.0.0.1:$port" --outdir "$outdir")
if ((deflate)); then
  SERVER_ARGS+=(--deflate)
  if [[ -z $cases ]]; then cases='1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*,12.*,13.*'; fi
fi
if [[ -n $cases ]]; then spec_args+=(--cases "$cases"); fi
if ((quick)); then spec_args+=(--quick); fi
python3 "$HELPER" spec "${spec_args[@]}"
cp "$spec" "$REPORT_DIR/spec.json"

# The list of cases the spec selects, resolved by wstest's own code (catches unknown case ids).
planned=$work_dir/planned.json
PYTHONWARNINGS=ignore "$VENV_DIR/bin/python" -c '
import json, sys
from autobahntestsuite.case import Cases, CaseCategories, CaseSubCategories, CaseSetname, CaseBasename
from autobahntestsuite.caseset import CaseSet
cs = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
spec = json.load(open(sys.argv[1]))
ids = cs.parseSpecCases(spec)
unknown = [i for i in ids if i not in cs.CasesIndices]
if unknown:
    sys.exit("autobahn: error: unknown case id(s): %s" % ", ".join(unknown))
if not ids:
    sys.exit("autobahn: error: the case patterns select no cases")
json.dump(ids, open(sys.argv[2], "w"))
' "$spec" "$planned"
n_planned=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$planned")

# ---------------------------------------------------------------------------------------------
# Server

if [[ -n $server_cmd_str ]]; then
  read -r -a server_cmd <<<"$server_cmd_str"
  [[ ${#server_cmd[@]} -gt 0 ]] || die "--server-cmd / AUTOBAHN_SERVER_CMD is empty"
else
  command -v cargo >/dev/null || die "cargo is required"
  log "building the echo example (cargo build --release --example echo)"
  (cd "$REPO_ROOT" && cargo build --release --example echo --message-format=json-render-diagnostics) \
    >"$work_dir/cargo.json"
  echo_bin=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    target = msg.get("target") or {}
    if msg.get("reason") == "compiler-artifact" and target.get("name") == "echo" \
            and "example" in target.get("kind", []) and msg.get("executable"):
        print(msg["executable"])
' "$work_dir/cargo.json" | tail -n 1)
  [[ -n $echo_bin && -x $echo_bin ]] || die "cargo did not produce the echo example binary"
  server_cmd=("$echo_bin")
fi

if ((legacy)); then
  export MONOIO_FORCE_LEGACY_DRIVER=1
  driver=legacy
else
  driver=io_uring
fi

server_log=$REPORT_DIR/server.log
log "starting server: ${server_cmd[*]} --port $port ${SERVER_ARGS[*]}${MONOIO_FORCE_LEGACY_DRIVER:+ (MONOIO_FORCE_LEGACY_DRIVER=$MONOIO_FORCE_LEGACY_DRIVER)}"
# setsid: own process group, so cleanup can stop everything the server command spawned.
setsid_cmd=()
if command -v setsid >/dev/null 2>&1; then setsid_cmd=(setsid); fi
"${setsid_cmd[@]}" "${server_cmd[@]}" --port "$port" "${SERVER_ARGS[@]}" \
  </dev/null >"$server_log" 2>&1 {lock_fd}>&- {report_lock_fd}>&- &
server_pid=$!

deadline=$((SECONDS + STARTUP_TIMEOUT))
until grep -q 'listening on' "$server_log"; do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    wait "$server_pid" && status=0 || status=$?
    server_pid=
    tail -n 30 "$server_log" >&2 || true
    die "the server exited with status $status before printing 'listening on' (log: $server_log)"
  fi
  if ((SECONDS >= deadline)); then
    tail -n 30 "$server_log" >&2 || true
    die "the server did not print 'listening on' within ${STARTUP_TIMEOUT}s (log: $server_log)"
  fi
  sleep 0.1
done
listening_line=$(grep -m 1 'listening on' "$server_log")
log "server: $listening_line"
# Prefer what the server says about its driver (monoio falls back to epoll without io_uring).
shopt -s nocasematch
if [[ $listening_line == *legacy* || $listening_line == *epoll* ]]; then
  driver=legacy
elif [[ $listening_line == *uring* ]]; then
  driver=io_uring
fi
shopt -u nocasematch

# ---------------------------------------------------------------------------------------------
# wstest

wstest_log=$REPORT_DIR/wstest.log
log "running $n_planned cases with wstest -m fuzzingclient (log: $wstest_log)"
run_started=$SECONDS
(cd "$work_dir" && PYTHONWARNINGS=ignore exec "${wstest_cmd[@]}" -m fuzzingclient -s "$spec") \
  </dev/null >"$wstest_log" 2>&1 &
wstest_pid=$!

next_progress=$((SECONDS + 30))
while kill -0 "$wstest_pid" 2>/dev/null; do
  if ((SECONDS - run_started >= RUN_TIMEOUT)); then
    tail -n 20 "$wstest_log" >&2 || true
    die "wstest did not finish within ${RUN_TIMEOUT}s (AUTOBAHN_RUN_TIMEOUT)"
  fi
  if ((SECONDS >= next_progress)); then
    done_count=$(grep -c '^Running test case ID' "$wstest_log" || true)
    current=$(grep '^Running test case ID' "$wstest_log" | tail -n 1 | awk '{print $5}' || true)
    log "... ${done_count:-0}/$n_planned cases started${current:+ (now: $current)}, $((SECONDS - run_started))s"
    next_progress=$((SECONDS + 30))
  fi
  sleep 0.5
done
wait "$wstest_pid" && wstest_status=0 || wstest_status=$?
wstest_pid=
log "wstest finished in $((SECONDS - run_started))s"

index=$outdir/index.json
if [[ $wstest_status -ne 0 || ! -f $index ]]; then
  tail -n 30 "$wstest_log" >&2 || true
  die "wstest failed (exit status $wstest_status) or wrote no $index; see $wstest_log"
fi

rc=0
if grep -q 'Connection to .* failed' "$wstest_log"; then
  log "wstest could not connect to the server: $(grep -m 1 'Connection to .* failed' "$wstest_log")"
  rc=1
fi
if ! kill -0 "$server_pid" 2>/dev/null; then
  wait "$server_pid" && status=0 || status=$?
  server_pid=
  log "the server died during the run (exit status $status); last lines of $server_log:"
  tail -n 20 "$server_log" || true
  rc=1
fi

check_args=(--index "$index" --planned "$planned" --expected "$EXPECTED" --driver "$driver"
  --report-html "$outdir/index.html")
if ((update)); then check_args+=(--update); fi
python3 "$HELPER" check "${check_args[@]}" || rc=1
exit "$rc"
}
