#!/usr/bin/env bash
# The CPU kernels' unit tests in WebAssembly with `simd128`, as the browser build runs them: the
# only check that the browser's `simd128` dot product equals the scalar one bit for bit. Builds
# kernels/wasm-test/lib.rs (the `cpu` and `cpu_fast` modules, no dependencies) for wasm32-wasip1
# with rustc directly (seconds) and runs the test binary under Node's WASI.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
edition=$(sed -n 's/^edition = "\(.*\)"/\1/p' Cargo.toml)
rustc --edition "$edition" --test --target wasm32-wasip1 -C target-feature=+simd128 -C opt-level=2 \
  -D warnings kernels/wasm-test/lib.rs -o "$out/kernels.wasm"
node --no-warnings scripts/run-wasi.mjs "$out/kernels.wasm"
