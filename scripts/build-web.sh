#!/usr/bin/env bash
# Builds the browser module into web/pkg/ (mlc_wgpu_web.js + mlc_wgpu_web_bg.wasm,
# wasm-bindgen --target web) and prints its size.
# Installs what it needs when missing: the wasm32 target (rustup) and wasm-bindgen-cli at
# exactly the version of the wasm-bindgen crate in Cargo.lock (cargo install from source,
# 2-5 minutes, into a cache folder: $MLC_WGPU_TOOLS, default ~/.cache/mlc-wgpu/tools).
# SIMD (+simd128) comes from .cargo/config.toml; the size-and-speed profile is
# [profile.wasm-release] in Cargo.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

target=wasm32-unknown-unknown
profile=wasm-release
target_dir="${CARGO_TARGET_DIR:-target}"
tools="${MLC_WGPU_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/mlc-wgpu/tools}"

if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
fi

# The CLI must match the crate exactly: the generated JS and the wasm's
# imports are one protocol.
version=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
[ -n "$version" ] || { echo "error: no wasm-bindgen in Cargo.lock" >&2; exit 1; }
bindgen="$tools/bin/wasm-bindgen"
if [ ! -x "$bindgen" ] || [ "$("$bindgen" --version | awk '{ print $2 }')" != "$version" ]; then
  echo "installing wasm-bindgen-cli $version into $tools ..." >&2
  cargo install wasm-bindgen-cli --version "$version" --root "$tools"
fi

cargo build -p mlc-wgpu-web --target "$target" --profile "$profile" --locked
rm -rf web/pkg
"$bindgen" --target web --out-dir web/pkg --out-name mlc_wgpu_web "$target_dir/$target/$profile/mlc_wgpu_web.wasm"

wasm=web/pkg/mlc_wgpu_web_bg.wasm
echo "web/pkg: $(du -b "$wasm" | cut -f1) bytes wasm ($(gzip -9c "$wasm" | wc -c) gzipped), $(du -b web/pkg/mlc_wgpu_web.js | cut -f1) bytes JS"
