#!/usr/bin/env bash
# Fuzzes ringsocket's parsers with cargo-fuzz (libFuzzer, nightly Rust): every target in
# fuzz/fuzz_targets, starting from the committed seeds in fuzz/seeds/TARGET (new inputs go to
# fuzz/corpus/TARGET, crashes to fuzz/artifacts/TARGET). Fails on the first crash, leak,
# timeout or out-of-memory, printing how to reproduce it.
# Usage: scripts/fuzz.sh [--smoke] [TARGET...]
#   --smoke   a bounded run: FUZZ_SMOKE_SECS per target (default 60), as scripts/test.sh does
#   default   FUZZ_SECS per target (default 600)
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${FUZZ_SECS:-600}
if [[ "${1:-}" == "--smoke" ]]; then
  secs=${FUZZ_SMOKE_SECS:-60}
  shift
fi

if ! command -v rustup >/dev/null; then
  echo "fuzz.sh: rustup not found (install Rust from https://rustup.rs)" >&2
  exit 1
fi
nightly=$(rustup toolchain list | awk '/^nightly/ { print $1; exit }')
if [[ -z "$nightly" ]]; then
  rustup toolchain install nightly --profile minimal
  nightly=nightly
fi
if ! cargo +"$nightly" fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(cd fuzz/fuzz_targets && ls -- *.rs | sed 's/\.rs$//')
fi

for target in "${targets[@]}"; do cargo +"$nightly" fuzz build --release "$target"; done
summary=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target" "fuzz/seeds/$target"
  log=$(mktemp)
  echo "==> fuzz $target for ${secs}s"
  if ! cargo +"$nightly" fuzz run --release "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz.sh: $target failed; reproduce with:" >&2
    echo "  cargo +$nightly fuzz run $target fuzz/artifacts/$target/<crash file>" >&2
    rm -f "$log"
    exit 1
  fi
  runs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$log")
  summary+=("$target: ${runs:-?} executions in ${secs}s, no crash")
  rm -f "$log"
done
echo
printf 'fuzz: %s\n' "${summary[@]}"
