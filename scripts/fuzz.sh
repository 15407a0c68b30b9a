#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ and runs each one for SECONDS.
#
#   scripts/fuzz.sh [--check] SECONDS [-- extra libFuzzer flags, e.g. -runs=10000000]
#
# Default (a long local run): each target grows fuzz/corpus/<target>/, which is
# then minimized in place. --check (the test command, scripts/test-all.sh): the
# committed corpus is only read; what a run finds goes to a scratch folder and
# is dropped, so the working tree stays as it was.
#
# Stable Rust, no cargo-fuzz: the build passes rustc the same instrumentation
# flags cargo-fuzz passes for `cargo fuzz run -s none -O` (its src/project.rs),
# none of which is unstable. Targets run without a sanitizer: the code under
# test is safe Rust, so AddressSanitizer would find nothing and costs 10x the
# speed; panics, overflow checks (on in fuzz/Cargo.toml's release profile) and
# the targets' own asserts are the oracle. libfuzzer-sys compiles libFuzzer, so
# a C++ compiler must be installed.
#
# A crash (a panic, a timeout of an input, memory beyond -rss_limit_mb) leaves
# its input in fuzz/artifacts/<target>/ and fails the script at once.
# Reproduce it with `fuzz/target/<host>/release/<target> <file>`.
# FUZZ_TARGET_DIR overrides the build folder (default fuzz/target).
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
check=false
if [[ "${1:-}" == "--check" ]]; then
  check=true
  shift
fi
seconds=${1:?usage: scripts/fuzz.sh [--check] SECONDS [-- libFuzzer flags]}
shift
[[ "${1:-}" == "--" ]] && shift
target_dir=${FUZZ_TARGET_DIR:-target}

# Rustflags reach only the --target build, not build scripts and proc macros,
# which then need no instrumentation (cargo-fuzz passes --target for the same reason).
host=$(rustc -vV | sed -n 's/^host: //p')
instrumentation=(
  -Cpasses=sancov-module
  -Cllvm-args=-sanitizer-coverage-level=4
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
  -Cllvm-args=-sanitizer-coverage-pc-table
  -Cllvm-args=-sanitizer-coverage-trace-compares
  -Cllvm-args=-simplifycfg-branch-fold-threshold=0
  -Cllvm-args=-sanitizer-coverage-stack-depth
  --cfg fuzzing
  -Clink-dead-code
  -Ccodegen-units=1
)
RUSTFLAGS="${instrumentation[*]} ${RUSTFLAGS:-}" \
  cargo build --release --locked --bins --target "$host" --target-dir "$target_dir"
bin_dir="$target_dir/$host/release"

# The seeds (real files and hand-made GGUFs) are committed; a long run renews them.
$check || python3 seeds.py
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for source in fuzz_targets/*.rs; do
  target=$(basename "$source" .rs)
  corpus="corpus/$target"
  mkdir -p "artifacts/$target" "$scratch/$target"
  # libFuzzer writes new inputs into the first folder it is given.
  folders=("$corpus")
  $check && folders=("$scratch/$target" "$corpus")
  echo "== $target: ${seconds}s"
  status=0
  # An input that takes 30 s is a finding, not something to wait 20 minutes on.
  "$bin_dir/$target" -max_total_time="$seconds" -timeout=30 -print_final_stats=1 \
    -artifact_prefix="artifacts/$target/" "$@" "${folders[@]}" >"$scratch/$target.log" 2>&1 || status=$?
  grep -E '^(Done|stat::number_of_executed_units|INFO: seed corpus)' "$scratch/$target.log" || true
  if [[ $status != 0 ]]; then
    grep -A 2 'panicked at' "$scratch/$target.log" >&2 || true
    tail -n 15 "$scratch/$target.log" >&2
    echo "!! $target failed (exit $status); its input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  if ! $check; then
    # Edge coverage only (no hit counters): one input per edge keeps the
    # committed corpus small.
    merge_log="$scratch/$target.merge.log"
    if ! "$bin_dir/$target" -merge=1 -use_counters=0 "$scratch/$target" "$corpus" >"$merge_log" 2>&1; then
      tail -n 15 "$merge_log" >&2
      echo "!! minimizing $target failed; its corpus is left as the run grew it" >&2
      exit 1
    fi
    grep -E 'MERGE-OUTER: [0-9]+ new files' "$merge_log" || true
    rm -rf "$corpus"
    mv "$scratch/$target" "$corpus"
  fi
done
# Minimizing may drop a seed that adds no edge; the real-file seeds go back in.
$check || python3 seeds.py
