#!/usr/bin/env bash
# Soak test of `mlc-wgpu serve`: several concurrent clients for a bounded time
# on 127.0.0.1, reporting requests served, failures, p50/p95 latency and the
# server's RSS at start, middle and end (scripts/soak.py does the work).
#
#   scripts/soak.sh [--duration SECONDS] [--clients N] [--model DIR] [--device cpu|gpu] [--json FILE]
#
# Defaults: 600 s, 4 clients, the tiny official Qwen2 artifact from
# conformance/fixtures with the Qwen2.5 tokenizer from the tokenizer fixtures
# (the artifact ships none), on the CPU engine. MLC_WGPU=path/to/mlc-wgpu
# uses that binary instead of building target/release/mlc-wgpu.
# Exit status 1 when any request failed or an answer changed.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
args=("$@")
model=""
for ((i = 0; i < ${#args[@]}; i++)); do
    [[ "${args[i]}" == "--model" ]] && model="${args[i+1]:-}"
done

if [[ -z "${MLC_WGPU:-}" ]]; then
    cargo build --release -p mlc-wgpu --manifest-path "$root/Cargo.toml" >&2
    MLC_WGPU="${CARGO_TARGET_DIR:-$root/target}/release/mlc-wgpu"
fi

if [[ -z "$model" ]]; then
    model="$(mktemp -d)"
    trap 'rm -rf "$model"' EXIT
    cp "$root"/conformance/fixtures/tiny-qwen2/mlc/* "$model/"
    cp "$root/conformance/fixtures/tokenizers/qwen2.5-0.5b-instruct.tokenizer.json" "$model/tokenizer.json"
    args+=(--model "$model")
fi

python3 "$root/scripts/soak.py" --binary "$MLC_WGPU" "${args[@]}"
