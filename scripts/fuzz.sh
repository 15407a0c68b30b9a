#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ one after another, each for SECONDS
# (default 300), then minimizes its corpus in place.
#
#   scripts/fuzz.sh [SECONDS] [-- extra libFuzzer flags, e.g. -runs=10000000]
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Not
# part of CI. Targets run without a sanitizer (`-s none`): the code under test
# is safe Rust, so AddressSanitizer would find nothing and costs 10x the
# speed; panics, overflow checks and the targets' own asserts are the oracle.
# A crash leaves its input in fuzz/artifacts/<target>/ and stops the script.
# FUZZ_TARGET_DIR overrides the build folder (default fuzz/target).
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
seconds=${1:-300}
shift $(( $# > 0 ? 1 : 0 ))
[[ "${1:-}" == "--" ]] && shift
target_dir=(--target-dir "${FUZZ_TARGET_DIR:-target}")

python3 seeds.py
for target in $(cargo +nightly fuzz list); do
    echo "== $target: ${seconds}s"
    cargo +nightly fuzz run "$target" -s none -O "${target_dir[@]}" -- \
        -max_total_time="$seconds" -print_final_stats=1 "$@" 2>&1 | grep -E '^(Done|stat::number_of_executed_units|==|INFO: seed corpus)|panicked|ERROR' || true
    if compgen -G "artifacts/$target/crash-*" > /dev/null; then
        echo "!! $target crashed: fuzz/artifacts/$target/" >&2
        exit 1
    fi
    # Edge coverage only (no hit counters): one input per edge keeps the
    # committed corpus small; then the real-file seeds go back in.
    cargo +nightly fuzz cmin "$target" -s none -O "${target_dir[@]}" -- -use_counters=0 2>&1 | grep -E 'MERGE-OUTER: [0-9]+ new files' || true
done
python3 seeds.py
