#!/usr/bin/env bash
# Browser tests of the WebLLM-compatible ES module (web/js) in headless Chromium:
# installs Chromium with apt if missing, installs playwright-core (npm ci; no browser download),
# builds the wasm module (scripts/build-web.sh) and the native CLI that computes the expected
# outputs, then runs the node unit tests and the browser suite (WebGPU/SwiftShader and CPU).
# WEB_TEST_ONLY=webgpu|cpu runs one browser, WEB_TEST_GREP=REGEX only the checks whose names match
# (for iterating on one check; see web/tests/run.mjs).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -x /usr/bin/chromium ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
fi

(cd web/tests && npm ci --no-audit --no-fund --loglevel=error)

bash scripts/build-web.sh

# The native CLI answers the same requests; its outputs are the expectations.
cargo build -p mlc-wgpu --bin mlc-wgpu --locked
export MLC_WGPU_BIN="${MLC_WGPU_BIN:-${CARGO_TARGET_DIR:-target}/debug/mlc-wgpu}"

node --test web/tests/unit.test.mjs
node web/tests/run.mjs

# The browser benchmark as a smoke test (it must run and report; no speed is asserted): the tiny
# Qwen2 fixture with Qwen2.5's tokenizer, on the CPU engine and on Chromium's WebGPU (SwiftShader).
bench_model=$(mktemp -d)
cp conformance/fixtures/tiny-qwen2/mlc/* "$bench_model"/
cp conformance/fixtures/tokenizers/qwen2.5-0.5b-instruct.tokenizer.json "$bench_model"/tokenizer.json
for device in cpu webgpu; do
  python3 scripts/bench-web.py --model "$bench_model" --device "$device" \
    --prompt-tokens 16 --gen-tokens 2 --contexts "" --timeout 600
done
rm -rf "$bench_model"
