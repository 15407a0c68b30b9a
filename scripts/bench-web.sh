#!/usr/bin/env bash
# The browser benchmark: builds the wasm module (scripts/build-web.sh) and runs the bench page
# (web/bench/) in headless Chromium through the WebLLM-compatible module, printing load, time to
# first token, prefill, decode with the model's own sampling and greedy, and decode at several
# context lengths (the figures of `mlc-wgpu bench`). Arguments go to scripts/bench-web.py, e.g.
#   bash scripts/bench-web.sh --model DIR [--device webgpu|cpu] [--json] [--wllama GGUF] [--threads 1,2]
# With --threads it also builds the threaded module (scripts/build-web.sh --threads), which the CPU
# engine runs at more than one thread.
# CHROMIUM names the browser (default /usr/bin/chromium); CHROMIUM_FLAGS adds flags, e.g. those that
# put Chromium's WebGPU on a real GPU's Vulkan driver (docs/performance.md, "Browser figures").
# Without them headless Chromium's WebGPU is its software adapter, SwiftShader.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BENCH_WEB_SKIP_BUILD:-}" ]; then
  bash scripts/build-web.sh >&2
  case " $* " in *" --threads "*) bash scripts/build-web.sh --threads >&2 ;; esac
fi
exec python3 scripts/bench-web.py "$@"
