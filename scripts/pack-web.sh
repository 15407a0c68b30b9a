#!/usr/bin/env bash
# Builds the npm package `mlc-wgpu` (the folder web/: web/js + the wasm module in web/pkg) and packs
# it with `npm pack` into target/npm/ (under $CARGO_TARGET_DIR when set). The tarball's path is the
# last line printed on stdout; everything else goes to stderr.
# Builds both wasm modules first (scripts/build-web.sh, and --threads for web/pkg-threads) unless
# SKIP_BUILD=1 and the module is there. Checks that the package's version is the workspace's and
# that the tarball holds both modules.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -f web/pkg/mlc_wgpu_web_bg.wasm ]; then
  bash scripts/build-web.sh >&2
fi
if [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -f web/pkg-threads/mlc_wgpu_web_bg.wasm ]; then
  bash scripts/build-web.sh --threads >&2
fi

workspace=$(awk '/^\[workspace.package\]/ { p = 1 } p && /^version = / { gsub(/version = |"/, ""); print; exit }' Cargo.toml)
package=$(node -p 'require("./web/package.json").version')
if [ "$workspace" != "$package" ]; then
  echo "error: web/package.json has version $package, the workspace (Cargo.toml) $workspace" >&2
  exit 1
fi

out=$(realpath -m "${CARGO_TARGET_DIR:-target}/npm")
mkdir -p "$out"
name=$(cd web && npm pack --silent --pack-destination "$out")
tgz="$out/$name"
listing=$(tar -tzf "$tgz")
for f in package/pkg/mlc_wgpu_web_bg.wasm package/pkg/mlc_wgpu_web.js package/pkg-threads/mlc_wgpu_web_bg.wasm \
  package/pkg-threads/mlc_wgpu_web.js package/js/index.js package/js/index.d.ts; do
  grep -qx "$f" <<<"$listing" || { echo "error: $tgz lacks $f" >&2; exit 1; }
done
echo "packed $(wc -l <<<"$listing") files, $(du -b "$tgz" | cut -f1) bytes" >&2
echo "$tgz"
