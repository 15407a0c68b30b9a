#!/usr/bin/env python3
"""Write an MLC q4f16_1 artifact (llama or qwen2 family) as a Q4_0 GGUF holding the same weights.

For the CPU side-by-side in docs/performance.md ("The CPU engines"): llama.cpp run on exactly the
weights that `mlc-wgpu bench` runs, e.g. on the Qwen2.5-0.5B-shaped artifact that `mlc-wgpu synth`
writes, for which no GGUF exists.

    python3 -m venv /tmp/ggvenv && /tmp/ggvenv/bin/pip install numpy gguf
    /tmp/ggvenv/bin/python scripts/mlc-to-gguf.py ARTIFACT_DIR OUT.gguf [--tokenizer tokenizer.json]

The conversion is exact. q4f16_1 stores `w = (c - 7) * s` per group of 32 inputs (c a 4-bit code,
s an f16 scale; docs/mlc-format.md, "NK layout"); GGUF's Q4_0 stores `w = (c' - 8) * d`
(llama.cpp's `dequantize_row_q4_0`). With `c' = 15 - c` and `d = -s` both give the same value,
and both spend 18 bytes on 32 weights. The fused MLC products are split back into llama.cpp's
tensors (`[q; k; v]` and `[gate; up]` are row blocks), biases and norms become f32 as llama.cpp
wants them, and a tied head stays tied (llama.cpp then multiplies by `token_embd`). For the llama
family the q and k rows are reordered as llama.cpp's `convert_hf_to_gguf.py` does (`permute`:
llama.cpp's `llama` graph rotates interleaved pairs, MLC's rotates halves); qwen2 uses the
rotate-half form in both, so its rows stay in place.

The tokenizer (token list, types and merges) comes from `tokenizer.json` (the artifact's own, or
`--tokenizer` for a `synth` artifact, which has none: use the official artifact's). Benchmarks feed
token ids, so only its size and special tokens matter to them.
"""

import argparse
import json
import pathlib
import sys

import numpy as np

import gguf

GROUP = 32


def read_artifact(folder):
    """Returns (model_type, model_config, {name: ndarray}) of an MLC artifact."""
    config = json.loads((folder / "mlc-chat-config.json").read_text())
    index_path = folder / "tensor-cache.json"
    if not index_path.exists():
        index_path = folder / "ndarray-cache.json"
    index = json.loads(index_path.read_text())
    dtypes = {"uint32": np.uint32, "float16": np.float16}
    tensors = {}
    for shard in index["records"]:
        data = (folder / shard["dataPath"]).read_bytes()
        for record in shard["records"]:
            if record["dtype"] not in dtypes:
                sys.exit(f"{record['name']}: dtype {record['dtype']} is not q4f16_1's (uint32 codes, float16)")
            start = record["byteOffset"]
            raw = data[start : start + record["nbytes"]]
            tensors[record["name"]] = np.frombuffer(raw, dtypes[record["dtype"]]).reshape(record["shape"])
    return config["model_type"], config["model_config"], tensors


def q4_0_rows(tensors, prefix):
    """MLC's `prefix.q_weight` / `prefix.q_scale` as Q4_0 bytes, one row of `K/32 * 18` bytes per output."""
    packed, scales = tensors[f"{prefix}.q_weight"], tensors[f"{prefix}.q_scale"]
    rows, groups = scales.shape
    if packed.shape[1] != groups * 4:
        sys.exit(f"{prefix}: the input size is not a multiple of {GROUP}, which Q4_0 cannot hold")
    shifts = np.arange(8, dtype=np.uint32) * 4
    codes = ((packed[:, :, None] >> shifts) & 0xF).astype(np.uint8).reshape(rows, groups, GROUP)
    flipped = 15 - codes
    nibbles = flipped[:, :, :16] | (flipped[:, :, 16:] << 4)
    d = (-scales.astype(np.float16)).view(np.uint8).reshape(rows, groups, 2)
    return np.concatenate([d, nibbles], axis=2).reshape(rows, groups * 18)


def llama_cpp_rope_order(rows, heads):
    """llama.cpp's `permute`: per head, rows (i, i + d/2) become neighbours (2i, 2i + 1)."""
    shape = rows.shape
    return rows.reshape(heads, 2, shape[0] // heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def f32(array):
    return np.ascontiguousarray(array.astype(np.float32))


def write_tokenizer(writer, tokenizer_path, vocab_size, model_type):
    tokenizer = json.loads(tokenizer_path.read_text())
    model = tokenizer["model"]
    if model.get("type") != "BPE":
        sys.exit(f"{tokenizer_path}: only byte-level BPE tokenizers are written (got {model.get('type')})")
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    types = [gguf.TokenType.UNUSED] * vocab_size
    for text, token_id in model["vocab"].items():
        if token_id < vocab_size:
            tokens[token_id], types[token_id] = text, gguf.TokenType.NORMAL
    specials = {}
    for added in tokenizer.get("added_tokens", []):
        if added["id"] < vocab_size:
            tokens[added["id"]] = added["content"]
            types[added["id"]] = gguf.TokenType.CONTROL if added["special"] else gguf.TokenType.USER_DEFINED
            specials[added["content"]] = added["id"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2" if model_type == "qwen2" else "default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for name, add in (("<|endoftext|>", writer.add_bos_token_id), ("<|im_end|>", writer.add_eos_token_id)):
        if name in specials:
            add(specials[name])
    writer.add_add_bos_token(False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("artifact", type=pathlib.Path)
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--tokenizer", type=pathlib.Path, help="tokenizer.json (default: the artifact's)")
    args = parser.parse_args()

    model_type, cfg, tensors = read_artifact(args.artifact)
    if model_type not in ("llama", "qwen2"):
        sys.exit(f"model_type {model_type}: only llama and qwen2 are written")
    hidden, heads, layers = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    kv_heads = cfg.get("num_key_value_heads", heads)
    head_dim = cfg.get("head_dim", hidden // heads)
    if model_type == "llama" and cfg.get("rope_scaling"):
        sys.exit("llama with rope_scaling: not written (llama.cpp would need its scaling keys)")

    writer = gguf.GGUFWriter(args.out, model_type)
    writer.add_name(args.artifact.name)
    writer.add_context_length(cfg.get("context_window_size", 4096))
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(cfg["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(cfg.get("rope_theta", cfg.get("position_embedding_base", 10000.0)))
    writer.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    write_tokenizer(writer, args.tokenizer or args.artifact / "tokenizer.json", cfg["vocab_size"], model_type)

    q4 = gguf.GGMLQuantizationType.Q4_0
    writer.add_tensor("token_embd.weight", q4_0_rows(tensors, "model.embed_tokens"), raw_dtype=q4)
    q_rows, kv_rows = heads * head_dim, kv_heads * head_dim
    attention = "self_attn.c_attn" if model_type == "qwen2" else "self_attn.qkv_proj"
    for layer in range(layers):
        mlc, out = f"model.layers.{layer}", f"blk.{layer}"
        writer.add_tensor(f"{out}.attn_norm.weight", f32(tensors[f"{mlc}.input_layernorm.weight"]))
        qkv = q4_0_rows(tensors, f"{mlc}.{attention}")
        q, k, v = qkv[:q_rows], qkv[q_rows : q_rows + kv_rows], qkv[q_rows + kv_rows :]
        if model_type == "llama":
            q, k = llama_cpp_rope_order(q, heads), llama_cpp_rope_order(k, kv_heads)
        for name, rows in (("attn_q", q), ("attn_k", k), ("attn_v", v)):
            writer.add_tensor(f"{out}.{name}.weight", np.ascontiguousarray(rows), raw_dtype=q4)
        if model_type == "qwen2":
            bias = tensors[f"{mlc}.self_attn.c_attn.bias"]
            for name, part in (("attn_q", bias[:q_rows]), ("attn_k", bias[q_rows : q_rows + kv_rows]),
                               ("attn_v", bias[q_rows + kv_rows :])):
                writer.add_tensor(f"{out}.{name}.bias", f32(part))
        writer.add_tensor(f"{out}.attn_output.weight", q4_0_rows(tensors, f"{mlc}.self_attn.o_proj"), raw_dtype=q4)
        writer.add_tensor(f"{out}.ffn_norm.weight", f32(tensors[f"{mlc}.post_attention_layernorm.weight"]))
        gate_up = q4_0_rows(tensors, f"{mlc}.mlp.gate_up_proj")
        half = gate_up.shape[0] // 2
        writer.add_tensor(f"{out}.ffn_gate.weight", np.ascontiguousarray(gate_up[:half]), raw_dtype=q4)
        writer.add_tensor(f"{out}.ffn_up.weight", np.ascontiguousarray(gate_up[half:]), raw_dtype=q4)
        writer.add_tensor(f"{out}.ffn_down.weight", q4_0_rows(tensors, f"{mlc}.mlp.down_proj"), raw_dtype=q4)
    writer.add_tensor("output_norm.weight", f32(tensors["model.norm.weight"]))
    if "lm_head.q_weight" in tensors:
        writer.add_tensor("output.weight", q4_0_rows(tensors, "lm_head"), raw_dtype=q4)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
