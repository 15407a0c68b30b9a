#!/usr/bin/env bash
# Chat with the offline default model (SmolLM2-135M-Instruct, q4f16_1): builds the release CLI,
# imports the model into the cache once (scripts/default-model.sh), then runs `mlc-wgpu chat`.
# Extra arguments go to `mlc-wgpu chat` (e.g. --device cpu, --greedy, --system "...").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
cargo build --release -q -p mlc-wgpu
MLC_WGPU=${CARGO_TARGET_DIR:-$ROOT/target}/release/mlc-wgpu
export MLC_WGPU
model=$(bash scripts/default-model.sh)
exec "$MLC_WGPU" chat --model "$model" "$@"
