#!/usr/bin/env python3
"""Writes the seed inputs into corpus/<target>/seed-*: the real configs and
tensor indexes of conformance/fixtures and, when present, ../shared/data (a
folder beside the checkout with reference artifacts, absent from a fresh clone:
its files are then simply not seeded), their conversation
templates, the GGUF fixtures of conformance/fixtures/gguf, and small hand-made GGUF files (GGUF v2/v3, every metadata value
type, F32/F16/BF16/Q4_0/Q8_0 tensors, a gpt2 tokenizer). Run it before
fuzzing from scratch; the committed corpus already holds its output."""

import glob
import hashlib
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(ROOT, "..", "shared", "data")


def put(target, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    data = data.encode() if isinstance(data, str) else data
    with open(os.path.join(folder, "seed-" + hashlib.sha1(data).hexdigest()[:16]), "wb") as out:
        out.write(data)


def json_seeds():
    configs = sorted(set(glob.glob(f"{ROOT}/conformance/fixtures/**/mlc-chat-config.json", recursive=True)
                         + glob.glob(f"{ROOT}/conformance/fixtures/tokenizers/*config.json")
                         + glob.glob(f"{SHARED}/*/mlc-chat-config.json")))
    for path in configs:
        data = open(path, "rb").read()
        put("chat_config", data)
        put("conv_template", json.dumps(json.loads(data).get("conv_template"), indent=2))
    put("chat_config", '{"model_type": "llama", "quantization": "q4f16_1", "vocab_size": 32}')
    put("chat_config", '{"model_type": "llama", "quantization": "q0f32", "vocab_size": 32, "eos_token_id": [1, 2], "conv_template": "llama-2"}')
    for template in ['"chatml"', "null", "{}"]:
        put("conv_template", template)
    indexes = sorted(set(glob.glob(f"{ROOT}/conformance/fixtures/**/mlc/*-cache.json", recursive=True)
                         + glob.glob(f"{SHARED}/*/tensor-cache.layout.json")))
    for path in indexes:
        put("tensor_index", open(path, "rb").read())
    put("tensor_index", json.dumps({"records": [
        {"dataPath": "a.bin", "format": "raw-shard", "nbytes": 12, "md5sum": None, "records": [
            {"name": "w", "shape": [2], "dtype": "float32", "format": "raw", "nbytes": 8, "byteOffset": 0},
            {"name": "b", "shape": [1, 1], "dtype": "float32", "format": "f32-to-bf16", "nbytes": 2, "byteOffset": 8},
            {"name": "h", "shape": [1], "dtype": "bfloat16", "format": "raw", "nbytes": 2, "byteOffset": 10}]},
        {"dataPath": "sub/b.bin", "format": "raw-shard", "nbytes": 4, "md5sum": "0123456789abcdef0123456789ABCDEF", "records": [
            {"name": "q", "shape": [1], "dtype": "uint32", "format": "raw", "nbytes": 4, "byteOffset": 0}]}],
        "metadata": {"ParamSize": 5}}))
    put("tensor_index", '{"records": []}')


def string(text):
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def kv(key, kind, payload):
    return string(key) + struct.pack("<I", kind) + payload


def array(kind, items):
    return struct.pack("<IQ", kind, len(items)) + b"".join(items)


def gguf(version, kvs, tensors, data, align=32):
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs)) + b"".join(kvs)
    for name, dims, kind, offset in tensors:
        head += string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        head += struct.pack("<IQ", kind, offset)
    head += b"\0" * ((-len(head)) % align)
    return head + data


def gguf_seeds():
    # The converter's fixtures, written by llama.cpp's gguf-py (conformance/tools/make_gguf_fixtures.py).
    for path in sorted(glob.glob(f"{ROOT}/conformance/fixtures/gguf/*.gguf")):
        put("gguf_header", open(path, "rb").read())
    u32 = lambda v: struct.pack("<I", v)
    tokens = ["<unk>", "<s>", "</s>", "a", "b", "Ġa", "ab"]
    kvs = [kv("general.architecture", 8, string("llama")), kv("general.alignment", 4, u32(32)),
           kv("llama.block_count", 4, u32(1)), kv("llama.embedding_length", 4, u32(8)),
           kv("llama.attention.head_count", 4, u32(2)), kv("llama.rope.freq_base", 6, struct.pack("<f", 10000.0)),
           kv("tokenizer.ggml.model", 8, string("gpt2")), kv("tokenizer.ggml.pre", 8, string("smollm")),
           kv("tokenizer.ggml.tokens", 9, array(8, [string(t) for t in tokens])),
           kv("tokenizer.ggml.token_type", 9, array(5, [struct.pack("<i", 1)] * len(tokens))),
           kv("tokenizer.ggml.merges", 9, array(8, [string("a b"), string("Ġ a")])),
           kv("tokenizer.ggml.bos_token_id", 4, u32(1)), kv("tokenizer.ggml.add_bos_token", 7, b"\1")]
    embedding = struct.pack("<24f", *[i / 10 for i in range(24)])
    q4_0 = struct.pack("<e", 0.5) + bytes(range(16))
    data = embedding + b"\0" * ((-len(embedding)) % 32)
    put("gguf_header", gguf(3, kvs, [("token_embd.weight", [8, 3], 0, 0), ("blk.0.attn_q.weight", [32], 2, len(data))], data + q4_0))
    put("gguf_header", gguf(3, [], [], b""))
    put("gguf_header", gguf(2, [kv("general.architecture", 8, string("qwen2"))], [("output_norm.weight", [4], 1, 0)], struct.pack("<4e", 1, 2, 3, 4)))
    scalars = [kv("x.nested", 9, array(9, [array(4, [u32(1)]), array(8, [string("q")])])), kv("x.u64", 10, struct.pack("<Q", 2**40)),
               kv("x.i64", 11, struct.pack("<q", -5)), kv("x.f64", 12, struct.pack("<d", 0.25)), kv("x.i8", 1, b"\xff"),
               kv("x.u16", 2, b"\1\0"), kv("x.i16", 3, b"\1\0"), kv("x.u8", 0, b"\7"), kv("x.i32", 5, struct.pack("<i", -1))]
    q8_0 = struct.pack("<e", 1.0) + bytes(32)
    put("gguf_header", gguf(3, scalars, [("q8", [32], 8, 0), ("bf", [2], 30, 64)], q8_0 + b"\0" * 30 + struct.pack("<2H", 0x3F80, 0x4000)))


if __name__ == "__main__":
    json_seeds()
    gguf_seeds()
