#!/usr/bin/env python3
"""Writes the small GGUF fixtures of conformance/fixtures/gguf/ and their expected values.

The reference is llama.cpp's own Python package `gguf` (gguf-py: its GGUFWriter writes the files and
its numpy dequantizers give the expected float32 values), so the Rust reader in convert/src/gguf/ is
checked against an implementation it shares no code with.

    python3 -m venv /tmp/gguf-venv && /tmp/gguf-venv/bin/pip install gguf numpy
    /tmp/gguf-venv/bin/python conformance/tools/make_gguf_fixtures.py

Output (deterministic: fixed seeds; the tests in convert/tests/gguf_*.rs read it):
- dequant.gguf        one [3, 512] tensor per GGML type (named after the type), random data:
                      F32/F16/BF16/Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 quantized from random floats by gguf-py,
                      K-quants (Q2_K…Q6_K) as random blocks with sane f16 scales, Q8_K likewise.
- expected/<TYPE>.f32 gguf-py's dequantization of each (raw little-endian f32, row-major [3, 512]).
                      Q8_K: gguf-py has no Q8_K dequantizer; its expected values are d·q in numpy.
- metadata.gguf       every metadata value type, arrays of each, a nested array, alignment 64,
                      and two tensors; metadata.expected.json lists what the reader must return.
- unsupported.gguf    one IQ2_XXS tensor (a valid file with a type the converter cannot dequantize).
- tiny-llama.gguf     a 1-layer llama model as llama.cpp's converter writes it (Q/K rows permuted,
                      GGUF names, byte-level BPE tokenizer of 24 tokens); tiny-llama.expected/ holds
                      its tensors in Hugging Face order and names (`<hf name>.f32`) and the config.
"""

import json
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "gguf"
SHAPE = (3, 512)  # rows, columns: 512 is a whole number of 256-element super-blocks


def write(path: Path, arch: str, fill, alignment: int | None = None):
    w = gguf.GGUFWriter(str(path), arch)
    if alignment is not None:
        w.data_alignment = alignment
        w.add_uint32("general.alignment", alignment)
    fill(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def random_kquant_blocks(rng, qtype, n_blocks):
    """Random K-quant blocks whose f16 scale fields hold finite, moderate values."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)

    def put_f16(offset, scale):
        vals = (rng.standard_normal(n_blocks) * scale).astype(np.float16)
        raw[:, offset:offset + 2] = vals.view(np.uint8).reshape(n_blocks, 2)

    if qtype == T.Q2_K:      # scales[16] qs[64] d dmin
        put_f16(80, 0.05); put_f16(82, 0.02)
    elif qtype == T.Q3_K:    # hmask[32] qs[64] scales[12] d
        put_f16(108, 0.01)
    elif qtype in (T.Q4_K, T.Q5_K):  # d dmin scales[12] ...
        put_f16(0, 0.01); put_f16(2, 0.005)
    elif qtype == T.Q6_K:    # ql[128] qh[64] scales[16] d
        put_f16(208, 0.001)
    elif qtype == T.Q8_K:    # d (f32) qs[256] bsums[16]
        raw[:, 0:4] = (rng.standard_normal(n_blocks).astype(np.float32) * 0.01).view(np.uint8).reshape(n_blocks, 4)
    return raw


def dequant_fixture():
    rng = np.random.default_rng(20261124)
    expected_dir = OUT / "expected"
    expected_dir.mkdir(parents=True, exist_ok=True)
    rows, cols = SHAPE
    tensors = []
    for qtype in [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]:
        x = (rng.standard_normal(SHAPE) * 0.1).astype(np.float32)
        data = gguf.quantize(x, qtype)
        tensors.append((qtype, data))
    for qtype in [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.Q8_K]:
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        raw = random_kquant_blocks(rng, qtype, rows * cols // block)
        tensors.append((qtype, raw.reshape(rows, cols // block * size)))

    for qtype, data in tensors:
        if qtype == T.Q8_K:
            blocks = data.reshape(-1, gguf.GGML_QUANT_SIZES[qtype][1])
            d = blocks[:, 0:4].copy().view(np.float32)
            q = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
            values = (d * q).reshape(SHAPE)
        else:
            values = gguf.dequantize(data, qtype).reshape(SHAPE)
        assert values.dtype == np.float32 and np.all(np.isfinite(values)), qtype.name
        values.astype("<f4").tofile(expected_dir / f"{qtype.name}.f32")

    def fill(w):
        for qtype, data in tensors:
            raw_dtype = None if qtype in (T.F32, T.F16) else qtype
            w.add_tensor(qtype.name, data, raw_dtype=raw_dtype)
    write(OUT / "dequant.gguf", "none", fill)


def metadata_fixture():
    expected = {}

    def add(w, key, value, vtype, sub_type=None, show=None):
        w.add_key_value(key, value, vtype, sub_type=sub_type)
        expected[key] = {"type": vtype.name if sub_type is None else f"ARRAY[{sub_type.name}]", "value": show if show is not None else value}

    def fill(w):
        add(w, "test.u8", 200, V.UINT8)
        add(w, "test.i8", -100, V.INT8)
        add(w, "test.u16", 60000, V.UINT16)
        add(w, "test.i16", -30000, V.INT16)
        add(w, "test.u32", 4000000000, V.UINT32)
        add(w, "test.i32", -2000000000, V.INT32)
        add(w, "test.f32", 0.15625, V.FLOAT32)
        add(w, "test.bool", True, V.BOOL)
        add(w, "test.string", "héllo, GGUF ✓", V.STRING)
        add(w, "test.u64", 18000000000000000000, V.UINT64)
        add(w, "test.i64", -9000000000000000000, V.INT64)
        add(w, "test.f64", -2.5e-300, V.FLOAT64)
        add(w, "test.array.u8", [0, 1, 255], V.ARRAY, V.UINT8)
        add(w, "test.array.i8", [-128, 0, 127], V.ARRAY, V.INT8)
        add(w, "test.array.u16", [0, 65535], V.ARRAY, V.UINT16)
        add(w, "test.array.i16", [-32768, 32767], V.ARRAY, V.INT16)
        add(w, "test.array.u32", [1, 4294967295], V.ARRAY, V.UINT32)
        add(w, "test.array.i32", [-1, 2147483647], V.ARRAY, V.INT32)
        add(w, "test.array.f32", [0.5, -1.25], V.ARRAY, V.FLOAT32)
        add(w, "test.array.bool", [True, False, True], V.ARRAY, V.BOOL)
        add(w, "test.array.string", ["a", "", "ünïcode"], V.ARRAY, V.STRING)
        add(w, "test.array.u64", [0, 18446744073709551615], V.ARRAY, V.UINT64)
        add(w, "test.array.i64", [-9223372036854775808, 1], V.ARRAY, V.INT64)
        add(w, "test.array.f64", [1e300, -0.0], V.ARRAY, V.FLOAT64)
        add(w, "test.array.nested", [[1, 2], ["x"]], V.ARRAY, V.ARRAY)
        w.add_tensor("first", np.arange(8, dtype=np.float32).reshape(2, 4))
        w.add_tensor("second", np.arange(64, dtype=np.float16))

    write(OUT / "metadata.gguf", "test", fill, alignment=64)
    (OUT / "metadata.expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")


def unsupported_fixture():
    rng = np.random.default_rng(7)
    block, size = gguf.GGML_QUANT_SIZES[T.IQ2_XXS]

    def fill(w):
        w.add_tensor("iq2", rng.integers(0, 256, size=(2, size), dtype=np.uint8), raw_dtype=T.IQ2_XXS)
    write(OUT / "unsupported.gguf", "none", fill)


def llama_permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute (n_head already the KV count for k)."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def tiny_llama_fixture():
    rng = np.random.default_rng(42)
    hidden, heads, kv_heads, head_dim, ffn = 32, 4, 2, 8, 64
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool>"] + list("abcdehlo") + ["Ġ", "Ġh", "he", "ll", "lo", "Ġhe", "hel", "hell", "hello", "Ġhello", "!", "1"]
    merges = ["h e", "l l", "he ll", "hell o", "Ġ hello", "Ġ h", "l o", "Ġh e", "he l"]
    types = [3, 3, 3, 4] + [1] * (len(tokens) - 4)
    vocab = len(tokens)
    hf = {
        "model.embed_tokens.weight": rng.standard_normal((vocab, hidden)),
        "model.layers.0.input_layernorm.weight": rng.standard_normal(hidden),
        "model.layers.0.self_attn.q_proj.weight": rng.standard_normal((heads * head_dim, hidden)),
        "model.layers.0.self_attn.k_proj.weight": rng.standard_normal((kv_heads * head_dim, hidden)),
        "model.layers.0.self_attn.v_proj.weight": rng.standard_normal((kv_heads * head_dim, hidden)),
        "model.layers.0.self_attn.o_proj.weight": rng.standard_normal((hidden, heads * head_dim)),
        "model.layers.0.post_attention_layernorm.weight": rng.standard_normal(hidden),
        "model.layers.0.mlp.gate_proj.weight": rng.standard_normal((ffn, hidden)),
        "model.layers.0.mlp.up_proj.weight": rng.standard_normal((ffn, hidden)),
        "model.layers.0.mlp.down_proj.weight": rng.standard_normal((hidden, ffn)),
        "model.norm.weight": rng.standard_normal(hidden),
    }
    hf = {k: v.astype(np.float32) for k, v in hf.items()}
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.layers.0.input_layernorm.weight": "blk.0.attn_norm.weight",
        "model.layers.0.self_attn.q_proj.weight": "blk.0.attn_q.weight",
        "model.layers.0.self_attn.k_proj.weight": "blk.0.attn_k.weight",
        "model.layers.0.self_attn.v_proj.weight": "blk.0.attn_v.weight",
        "model.layers.0.self_attn.o_proj.weight": "blk.0.attn_output.weight",
        "model.layers.0.post_attention_layernorm.weight": "blk.0.ffn_norm.weight",
        "model.layers.0.mlp.gate_proj.weight": "blk.0.ffn_gate.weight",
        "model.layers.0.mlp.up_proj.weight": "blk.0.ffn_up.weight",
        "model.layers.0.mlp.down_proj.weight": "blk.0.ffn_down.weight",
        "model.norm.weight": "output_norm.weight",
    }

    def fill(w):
        w.add_uint32("llama.context_length", 2048)
        w.add_uint32("llama.embedding_length", hidden)
        w.add_uint32("llama.block_count", 1)
        w.add_uint32("llama.feed_forward_length", ffn)
        w.add_uint32("llama.attention.head_count", heads)
        w.add_uint32("llama.attention.head_count_kv", kv_heads)
        w.add_float32("llama.rope.freq_base", 100000.0)
        w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
        w.add_uint32("llama.vocab_size", vocab)
        w.add_uint32("llama.rope.dimension_count", head_dim)
        w.add_string("tokenizer.ggml.model", "gpt2")
        w.add_string("tokenizer.ggml.pre", "smollm")
        w.add_array("tokenizer.ggml.tokens", tokens)
        w.add_key_value("tokenizer.ggml.token_type", types, V.ARRAY, sub_type=V.INT32)
        w.add_array("tokenizer.ggml.merges", merges)
        w.add_uint32("tokenizer.ggml.bos_token_id", 1)
        w.add_uint32("tokenizer.ggml.eos_token_id", 2)
        w.add_uint32("tokenizer.ggml.padding_token_id", 2)
        w.add_bool("tokenizer.ggml.add_bos_token", False)
        for hf_name, gguf_name in names.items():
            data = hf[hf_name]
            if gguf_name == "blk.0.attn_q.weight":
                data = llama_permute(data, heads)
            elif gguf_name == "blk.0.attn_k.weight":
                data = llama_permute(data, kv_heads)
            # Norms stay F32 as llama.cpp keeps them; matrices in F16 as a "f16" GGUF does.
            w.add_tensor(gguf_name, data if data.ndim == 1 else data.astype(np.float16))

    write(OUT / "tiny-llama.gguf", "llama", fill)
    exp = OUT / "tiny-llama.expected"
    exp.mkdir(parents=True, exist_ok=True)
    for hf_name, data in hf.items():
        want = data if data.ndim == 1 else data.astype(np.float16).astype(np.float32)
        want.astype("<f4").tofile(exp / f"{hf_name}.f32")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    dequant_fixture()
    metadata_fixture()
    unsupported_fixture()
    tiny_llama_fixture()
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total} bytes)", file=sys.stderr)
    assert total < 1 << 20, "fixtures must stay under 1 MB"


if __name__ == "__main__":
    main()
