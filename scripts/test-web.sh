#!/usr/bin/env bash
# Browser tests of the WebLLM-compatible ES module (web/js) in headless Chromium:
# installs Chromium with apt if missing, installs playwright-core (npm ci; no browser download),
# builds the wasm modules (scripts/build-web.sh, single-thread and --threads; the threaded one
# installs the rust-src component when missing) and the native CLI that computes the expected
# outputs, then runs the node unit tests, the npm package test (the packed tarball installed into an
# app, type-checked, built with Vite and webpack and run: web/tests/package/) and the browser suite
# (WebGPU/SwiftShader and CPU).
# WEB_TEST_ONLY=webgpu|cpu|threads runs one browser of the suite, WEB_TEST_ONLY=package only the package
# test, WEB_TEST_ONLY=bench only the browser benchmark's smoke run; WEB_TEST_GREP=REGEX only the suite's checks whose names match (for iterating on one check;
# see web/tests/run.mjs).
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

only="${WEB_TEST_ONLY:-}"
bash scripts/build-web.sh
# The threaded module, for the threads checks of the suite and the benchmark's threads mode:
# 2 min 5 s from scratch on 2 cores (its own target folder and std), the checks ~15 s.
case "$only" in "" | threads | bench) bash scripts/build-web.sh --threads ;; esac

# The native CLI answers the same requests; its outputs are the expectations.
cargo build -p mlc-wgpu --bin mlc-wgpu --locked
export MLC_WGPU_BIN="${MLC_WGPU_BIN:-${CARGO_TARGET_DIR:-target}/debug/mlc-wgpu}"

[ "$only" = package ] || node --test web/tests/unit.test.mjs

# The npm package as an app installs it: the tarball from scripts/pack-web.sh goes into an app built
# with Vite and with webpack, whose dev tools are pinned by its package-lock.
if [ -z "$only" ] || [ "$only" = package ]; then
  if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
    echo "error: the package test needs Node.js >= 20.19 (Vite 7); this node is $(node --version)" >&2
    exit 1
  fi
  tarball=$(SKIP_BUILD=1 bash scripts/pack-web.sh)
  (
    cd web/tests/package
    npm ci --no-audit --no-fund --loglevel=error
    npm install --no-save --no-audit --no-fund --loglevel=error "$tarball"
    node_modules/.bin/tsc --noEmit
    node_modules/.bin/vite build --logLevel warn
    node_modules/.bin/webpack --stats errors-warnings
  )
  node web/tests/package/run.mjs
fi

[ "$only" = package ] || [ "$only" = bench ] || node web/tests/run.mjs

# The browser benchmark as a smoke test (it must run and report; no speed is asserted): the tiny
# Qwen2 fixture with Qwen2.5's tokenizer, on the CPU engine and on Chromium's WebGPU (SwiftShader),
# and the CPU engine in a worker of an isolated page at 1 and 2 threads (it fails unless the engine
# reports the thread count asked for).
if [ -z "$only" ] || [ "$only" = bench ]; then
  bench_model=$(mktemp -d)
  cp conformance/fixtures/tiny-qwen2/mlc/* "$bench_model"/
  cp conformance/fixtures/tokenizers/qwen2.5-0.5b-instruct.tokenizer.json "$bench_model"/tokenizer.json
  for device in cpu webgpu; do
    python3 scripts/bench-web.py --model "$bench_model" --device "$device" \
      --prompt-tokens 16 --gen-tokens 2 --contexts "" --timeout 600
  done
  python3 scripts/bench-web.py --model "$bench_model" --device cpu --threads 1,2 \
    --prompt-tokens 16 --gen-tokens 2 --contexts "" --timeout 600
  rm -rf "$bench_model"
fi
