#!/usr/bin/env bash
# The CPU engines side by side: `mlc-wgpu bench` of the fast engine (`--device cpu`) and of the
# float32 oracle (`--device cpu-reference`) at 1 thread and at every core, interleaved, one JSON
# line per run on stdout (docs/performance.md, "The CPU engines").
#
#   scripts/bench-cpu.sh [MODEL_DIR...]      (default: the imported SmolLM2-135M-Instruct)
#
# MLC_WGPU: the binary (default target/release/mlc-wgpu); PROMPT, GEN: tokens [64, 64];
# REFERENCE_GEN: tokens the slow oracle decodes [16].
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${MLC_WGPU:-$ROOT/target/release/mlc-wgpu}
PROMPT=${PROMPT:-64}
GEN=${GEN:-64}
REFERENCE_GEN=${REFERENCE_GEN:-16}
CORES=$(nproc)
CACHE=${MLC_WGPU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlc-wgpu}
[ $# -gt 0 ] || set -- "$CACHE/models/SmolLM2-135M-Instruct-q4f16_1-MLC"
for model in "$@"; do
  for threads in 1 "$CORES"; do
    for device in cpu cpu-reference; do
      gen=$GEN
      [ "$device" = cpu ] || gen=$REFERENCE_GEN
      echo "bench-cpu: $model, $device, $threads thread(s)" >&2
      RAYON_NUM_THREADS=$threads "$BIN" bench --model "$model" --offline --device "$device" \
        --prompt-tokens "$PROMPT" --gen-tokens "$gen" --contexts 128 --context-steps 16 --json \
        | sed "s/^{/{\"threads\":$threads,/"
    done
  done
done
