#!/usr/bin/env bash
# Builds the browser module into web/pkg/ (mlc_wgpu_web.js + mlc_wgpu_web_bg.wasm,
# wasm-bindgen --target web) and prints its size.
# Installs what it needs when missing: the wasm32 target (rustup) and wasm-bindgen-cli at
# exactly the version of the wasm-bindgen crate in Cargo.lock (cargo install from source,
# 2-5 minutes, into a cache folder: $MLC_WGPU_TOOLS, default ~/.cache/mlc-wgpu/tools).
# SIMD (+simd128) comes from .cargo/config.toml; the size-and-speed profile is
# [profile.wasm-release] in Cargo.toml.
#
# --threads builds the threaded module instead, into web/pkg-threads/ (same file names): the CPU
# engine's products on a rayon pool of Web Workers sharing the module's memory (the web crate's
# `threads` feature, wasm-bindgen-rayon). Threads need +atomics,+bulk-memory, which the prebuilt
# wasm32 std lacks, so std is rebuilt with them: the rust-src component (installed when missing),
# and -Z build-std on stable through RUSTC_BOOTSTRAP=1. The features go into a target spec, the
# toolchain's own wasm32-unknown-unknown spec with `features` set and `singlethread` off, rather
# than into -C target-feature: rustc warns once per crate that `atomics` is unstable when a flag
# enables it, and says nothing when the target does. The spec keeps the target's name, so
# dependencies declared for `wasm32-unknown-unknown` still apply. The linker is told to make the memory
# shared and imported (wasm-bindgen's glue creates it; every worker instantiates the module on it),
# capped at wasm32's 4 GiB (a shared memory must declare a maximum), and to export the TLS symbols
# wasm-bindgen's thread support uses to give each worker its own thread-locals. Without these link
# arguments rustc 1.95 linked a private, unshared memory and the pool could not start ("#<Memory>
# could not be cloned"). Its own target folder: other RUSTFLAGS and another std.
set -euo pipefail
cd "$(dirname "$0")/.."

threads=0
case "${1:-}" in
  "") ;;
  --threads) threads=1 ;;
  *) echo "usage: $0 [--threads]" >&2; exit 2 ;;
esac

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

if [ "$threads" = 1 ]; then
  if ! rustup component list --installed | grep -q '^rust-src'; then
    rustup component add rust-src
  fi
  out=web/pkg-threads
  target_dir="$target_dir/threads"
  # RUSTFLAGS replaces .cargo/config.toml's flags, so +simd128 is in the spec's features too.
  spec="$target_dir/spec/$target.json"
  mkdir -p "$(dirname "$spec")"
  RUSTC_BOOTSTRAP=1 rustc -Z unstable-options --print target-spec-json --target "$target" |
    python3 -c 'import json, sys
spec = json.load(sys.stdin)
spec.pop("metadata", None)
spec["features"] = "+atomics,+bulk-memory,+simd128"
spec["singlethread"] = False
json.dump(spec, sys.stdout, indent=2)' > "$spec"
  link=(--shared-memory --import-memory --max-memory=4294967296
    --export=__wasm_init_tls --export=__tls_size --export=__tls_align --export=__tls_base)
  RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$target_dir" RUSTFLAGS="${link[*]/#/-C link-arg=}" \
    cargo build -p mlc-wgpu-web --features threads --target "$spec" --profile "$profile" --locked \
    -Z build-std=std,panic_abort -Z json-target-spec
else
  out=web/pkg
  cargo build -p mlc-wgpu-web --target "$target" --profile "$profile" --locked
fi
rm -rf "$out"
"$bindgen" --target web --out-dir "$out" --out-name mlc_wgpu_web "$target_dir/$target/$profile/mlc_wgpu_web.wasm"

wasm=$out/mlc_wgpu_web_bg.wasm
echo "$out: $(du -b "$wasm" | cut -f1) bytes wasm ($(gzip -9c "$wasm" | wc -c) gzipped), $(du -b "$out/mlc_wgpu_web.js" | cut -f1) bytes JS"
