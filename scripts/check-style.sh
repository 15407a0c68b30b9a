#!/usr/bin/env bash
# The style gates (scripts/test-all.sh runs them first; CI fails on any of them):
# rustfmt, clippy with warnings denied (natively and for the browser build, whose
# cfgs differ), no import cycles between a crate's modules, and rustdoc with
# warnings denied. Clippy reports rustc's own warnings too, so a clean run here
# means a build without warnings.
set -euo pipefail
cd "$(dirname "$0")/.."

for component in rustfmt clippy; do
  if ! rustup component list --installed | grep -q "^$component"; then
    rustup component add "$component"
  fi
done
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

step() { echo "== $*" >&2; "$@"; }

step cargo fmt --all --check
(cd fuzz && step cargo fmt --all --check)

step cargo clippy --workspace --all-targets --locked -- -D warnings
# The loader without its `download` feature, as the fuzz targets and the converter build it.
step cargo clippy -p mlc-loader --all-targets --no-default-features --locked -- -D warnings
# The browser build: the web crate and, through it, the runtime, kernels and loader as wasm32.
step cargo clippy -p mlc-wgpu-web --target wasm32-unknown-unknown --all-targets --locked -- -D warnings

# No crate's modules import each other in a cycle (ARCHITECTURE.md, "Crates").
step python3 scripts/check-module-cycles.py loader/src kernels/src engine/src chat/src cli/src \
  convert/src conformance/src web/src

export RUSTDOCFLAGS="-D warnings"
step cargo doc --workspace --no-deps --locked
step cargo doc -p mlc-wgpu-web --target wasm32-unknown-unknown --no-deps --locked
echo "style gates passed" >&2
