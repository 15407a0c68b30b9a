#!/usr/bin/env python3
"""Generate synthetic MLC-LLM q4f16_1 artifacts and independent numpy reference outputs.

Each case is a small random-weight model of the `llama`, `qwen2` or `qwen3` family, written in exactly
the format of the official MLC converter (`mlc_llm convert_weight` + `gen_config`): `mlc-chat-config.json`,
`tensor-cache.json` (optionally also `ndarray-cache.json`) and `params_shard_<N>.bin`, with the official
q4f16_1 quantizer, parameter names, fused projections, record emission order and sharding rule.

The reference outputs (`golden/`) come from a forward pass written here in numpy, from the weights that
are read back from the written shards and dequantized. That code shares nothing with the Rust runtime.

Usage:
    pip install numpy
    python3 conformance/tools/make_synthetic.py --out conformance/fixtures/synthetic
    python3 conformance/tools/make_synthetic.py --verify-official conformance/fixtures   # self-check

Re-running gives byte-identical files (fixed seeds, numpy's legacy RandomState stream, fixed JSON layout).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import struct
import sys

import numpy as np

GROUP = 32
SHARD_CAP_OFFICIAL = 32 * 1024 * 1024
TOOL = "conformance/tools/make_synthetic.py"

# ----------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------

CASES = {
    # Qwen3: explicit head_dim with nh*d (128) != hidden (96), per-head q/k RMSNorm, no qkv bias, tied.
    # hidden 96 = 3 groups of 32 and an odd vocab make `model.embed_tokens.q_scale` an f16 record with an
    # odd element count (1027*3), so every later record starts at byteOffset = 2 (mod 4): all layer
    # uint32 records are unaligned for a u32 view.  One all-zero quantization group (scale 0).
    "qwen3-tiny": dict(
        family="qwen3", seed=20240611, vocab=1027, hidden=96, layers=2, heads=4, kv_heads=2, head_dim=32,
        intermediate=160, tied=True, attention_bias=False, rope_theta=1000000.0, eps=1e-6,
        context_window=4096, shard_cap=SHARD_CAP_OFFICIAL, index_files=["tensor-cache.json"],
        zero_groups=[("model.layers.0.mlp.gate_up_proj", 5, 1)],
        expect=dict(min_shards=1, unaligned_u32=True),
    ),
    # Qwen2 with GQA 7:1 and head_dim 64 (as Qwen2.5-7B: 28/4), untied lm_head (Qwen2-7B style), qkv bias,
    # intermediate 352 = 11 groups, odd vocab, 6 shards with a small cap (280000 bytes): the embedding
    # q_weight is >= cap/2 and is written at once to a shard of its own (params_shard_0, out of emission
    # order: lm_head comes first) while its q_scale goes to a later regular shard; and
    # layers.0.mlp.gate_up_proj.q_weight ends one regular shard while its q_scale starts the next.
    "qwen2-gqa7": dict(
        family="qwen2", seed=20240612, vocab=1001, hidden=448, layers=2, heads=7, kv_heads=1, head_dim=64,
        intermediate=352, tied=False, attention_bias=True, rope_theta=1000000.0, eps=1e-6,
        context_window=4096, shard_cap=280000, index_files=["tensor-cache.json"], zero_groups=[],
        expect=dict(min_shards=4, split_scale=True, split_scale_regular=True, dedicated_shard=True),
    ),
    # Llama-3 RoPE scaling with a small original_max_position_embeddings so that the scaling changes the
    # logits inside a 40-token prompt; untied; 3 layers; both index file names (identical bytes).
    "llama3-scaled": dict(
        family="llama", seed=20240613, vocab=2048, hidden=128, layers=3, heads=4, kv_heads=2, head_dim=32,
        intermediate=288, tied=False, attention_bias=False, rope_theta=500000.0, eps=1e-5,
        rope_scaling={"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                      "original_max_position_embeddings": 64, "rope_type": "llama3"},
        context_window=4096, shard_cap=SHARD_CAP_OFFICIAL,
        index_files=["tensor-cache.json", "ndarray-cache.json"], zero_groups=[],
        expect=dict(min_shards=1),
    ),
    # An MLP width that is not a multiple of 32 (200 = 6 groups + 8): down_proj's K is padded to
    # whole groups in the shard (tail codes 0), which a runtime must ignore.
    "llama-odd-ffn": dict(
        family="llama", seed=20240614, vocab=512, hidden=64, layers=2, heads=2, kv_heads=1, head_dim=32,
        intermediate=200, tied=False, attention_bias=False, rope_theta=10000.0, eps=1e-5,
        context_window=4096, shard_cap=SHARD_CAP_OFFICIAL, index_files=["tensor-cache.json"], zero_groups=[],
        expect=dict(min_shards=1),
    ),
}

PROMPT_LENGTHS = [1, 5, 40]
GREEDY_STEPS = 16
TRACED_PROMPT = 1  # hidden-state trace and all-position logits for this prompt

# Conversation templates, copied verbatim from the official converter's output
# (conformance/fixtures/tiny-qwen2 and tiny-llama); qwen3 = qwen2 + strip_reasoning_in_history.
CONV_QWEN2 = {
    "name": "qwen2",
    "system_template": "<|im_start|>system\n{system_message}<|im_end|>\n",
    "system_message": "You are a helpful assistant.",
    "system_prefix_token_ids": None,
    "add_role_after_system_message": True,
    "roles": {"user": "<|im_start|>user", "assistant": "<|im_start|>assistant"},
    "role_templates": {"user": "{user_message}", "assistant": "{assistant_message}", "tool": "{tool_message}"},
    "messages": [],
    "seps": ["<|im_end|>\n"],
    "role_content_sep": "\n",
    "role_empty_sep": "\n",
    "stop_str": ["<|endoftext|>", "<|im_end|>"],
    "stop_token_ids": [151643, 151645],
    "strip_reasoning_in_history": False,
    "function_string": "",
    "use_function_calling": False,
}
CONV_LLAMA3 = {
    "name": "llama-3",
    "system_template": "<|start_header_id|>system<|end_header_id|>\n\n{system_message}<|eot_id|>",
    "system_message": "You are a helpful, respectful and honest assistant.",
    "system_prefix_token_ids": [128000],
    "add_role_after_system_message": True,
    "roles": {"user": "<|start_header_id|>user", "assistant": "<|start_header_id|>assistant"},
    "role_templates": {"user": "{user_message}", "assistant": "{assistant_message}", "tool": "{tool_message}"},
    "messages": [],
    "seps": ["<|eot_id|>"],
    "role_content_sep": "<|end_header_id|>\n\n",
    "role_empty_sep": "<|end_header_id|>\n\n",
    "stop_str": ["<|end_of_text|>", "<|eot_id|>"],
    "stop_token_ids": [128001, 128009],
    "strip_reasoning_in_history": False,
    "function_string": "",
    "use_function_calling": False,
}


def conv_template(family):
    if family == "llama":
        return dict(CONV_LLAMA3)
    t = dict(CONV_QWEN2)
    if family == "qwen3":
        t["name"] = "qwen3"
        t["strip_reasoning_in_history"] = True
    return t


# ----------------------------------------------------------------------------------------------
# mlc-chat-config.json (key names and order as gen_config writes them for each family)
# ----------------------------------------------------------------------------------------------


def model_config(c):
    fam = c["family"]
    ctx = c["context_window"]
    if fam == "llama":
        return {
            "hidden_size": c["hidden"],
            "intermediate_size": c["intermediate"],
            "num_attention_heads": c["heads"],
            "num_hidden_layers": c["layers"],
            "rms_norm_eps": c["eps"],
            "vocab_size": c["vocab"],
            "tie_word_embeddings": c["tied"],
            "position_embedding_base": c["rope_theta"],
            "rope_scaling": c.get("rope_scaling"),
            "context_window_size": ctx,
            "prefill_chunk_size": min(ctx, 8192),
            "num_key_value_heads": c["kv_heads"],
            "head_dim": c["head_dim"],
            "tensor_parallel_shards": 1,
            "pipeline_parallel_stages": 1,
            "max_batch_size": 128,
            "disaggregation": False,
        }
    if fam == "qwen2":
        assert c["heads"] * c["head_dim"] == c["hidden"], "qwen2 needs head_dim*heads == hidden"
        return {
            "hidden_act": "silu",
            "hidden_size": c["hidden"],
            "intermediate_size": c["intermediate"],
            "num_attention_heads": c["heads"],
            "num_hidden_layers": c["layers"],
            "num_key_value_heads": c["kv_heads"],
            "rms_norm_eps": c["eps"],
            "rope_theta": c["rope_theta"],
            "vocab_size": c["vocab"],
            "tie_word_embeddings": c["tied"],
            "context_window_size": ctx,
            "prefill_chunk_size": min(ctx, 8192),
            "tensor_parallel_shards": 1,
            "head_dim": c["head_dim"],
            "dtype": "float32",
            "max_batch_size": 128,
        }
    if fam == "qwen3":
        return {
            "hidden_act": "silu",
            "hidden_size": c["hidden"],
            "intermediate_size": c["intermediate"],
            "attention_bias": c["attention_bias"],
            "num_attention_heads": c["heads"],
            "num_hidden_layers": c["layers"],
            "num_key_value_heads": c["kv_heads"],
            "rms_norm_eps": c["eps"],
            "rope_theta": c["rope_theta"],
            "vocab_size": c["vocab"],
            "tie_word_embeddings": c["tied"],
            "context_window_size": ctx,
            "prefill_chunk_size": min(ctx, 2048),
            "tensor_parallel_shards": 1,
            "head_dim": c["head_dim"],
            "dtype": "float32",
            "max_batch_size": 128,
            "weight_block_size": None,
        }
    raise ValueError(fam)


def chat_config(c):
    mc = model_config(c)
    qwen = c["family"] != "llama"
    return {
        "version": "0.1.0",
        "model_type": c["family"],
        "quantization": "q4f16_1",
        "model_config": mc,
        "vocab_size": c["vocab"],
        "context_window_size": mc["context_window_size"],
        "sliding_window_size": -1,
        "prefill_chunk_size": mc["prefill_chunk_size"],
        "attention_sink_size": -1,
        "tensor_parallel_shards": 1,
        "pipeline_parallel_stages": 1,
        "active_vocab_size": c["vocab"],
        "temperature": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "repetition_penalty": 1.0,
        "top_p": 1.0,
        "tokenizer_files": [],
        "tokenizer_info": {
            "token_postproc_method": "byte_fallback",
            "prepend_space_in_encode": False,
            "strip_space_in_decode": False,
        },
        "conv_template": conv_template(c["family"]),
        "pad_token_id": 0,
        "bos_token_id": 151643 if qwen else 1,
        "eos_token_id": 151645 if qwen else 2,
        "model_task": "chat",
        "embedding_metadata": None,
    }


# ----------------------------------------------------------------------------------------------
# Random source weights (HF layout, float32), drawn in a fixed order
# ----------------------------------------------------------------------------------------------


def draw_hf_weights(c):
    """Returns {hf_name: float32 array} in the HF parameter naming."""
    rs = np.random.RandomState(c["seed"])

    def normal(shape, std):
        return (rs.standard_normal(size=shape) * std).astype(np.float32)

    def norm_w(n):
        return (1.0 + rs.standard_normal(size=(n,)) * 0.2).astype(np.float32)

    H, I, V = c["hidden"], c["intermediate"], c["vocab"]
    nh, nkv, d = c["heads"], c["kv_heads"], c["head_dim"]
    w = {}
    w["model.embed_tokens.weight"] = normal((V, H), 0.5)
    for L in range(c["layers"]):
        p = f"model.layers.{L}."
        w[p + "input_layernorm.weight"] = norm_w(H)
        w[p + "post_attention_layernorm.weight"] = norm_w(H)
        w[p + "self_attn.q_proj.weight"] = normal((nh * d, H), H ** -0.5)
        w[p + "self_attn.k_proj.weight"] = normal((nkv * d, H), H ** -0.5)
        w[p + "self_attn.v_proj.weight"] = normal((nkv * d, H), H ** -0.5)
        if c["family"] == "qwen2" or c["attention_bias"]:
            w[p + "self_attn.q_proj.bias"] = normal((nh * d,), 0.2)
            w[p + "self_attn.k_proj.bias"] = normal((nkv * d,), 0.2)
            w[p + "self_attn.v_proj.bias"] = normal((nkv * d,), 0.2)
        if c["family"] == "qwen3":
            w[p + "self_attn.q_norm.weight"] = norm_w(d)
            w[p + "self_attn.k_norm.weight"] = norm_w(d)
        w[p + "self_attn.o_proj.weight"] = normal((H, nh * d), 4.0 * (nh * d) ** -0.5)
        if c["family"] == "qwen3" and c["attention_bias"]:
            w[p + "self_attn.o_proj.bias"] = normal((H,), 0.2)
        w[p + "mlp.gate_proj.weight"] = normal((I, H), H ** -0.5)
        w[p + "mlp.up_proj.weight"] = normal((I, H), H ** -0.5)
        w[p + "mlp.down_proj.weight"] = normal((H, I), 4.0 * I ** -0.5)
    w["model.norm.weight"] = norm_w(H)
    if not c["tied"]:
        w["lm_head.weight"] = normal((V, H), 4.0 * H ** -0.5)
    return w


# ----------------------------------------------------------------------------------------------
# HF -> MLC parameters (fusion, names) and the official emission order
# ----------------------------------------------------------------------------------------------


def mlc_params(c, hf):
    """Returns a list of (mlc_name, float32 array, quantize?, [hf source names]) in emission order.

    Emission order reproduces the official converter: MLC parameters ordered by the smallest HF
    source name (the converter loads the HF tensors in sorted-name order and emits each MLC parameter
    as soon as its sources are complete); q_weight before q_scale.  Verified against the official
    tiny-qwen2 / tiny-llama artifacts by --verify-official.
    """
    fam = c["family"]
    attn = "c_attn" if fam in ("qwen2", "qwen3") else "qkv_proj"
    out = []
    out.append(("model.embed_tokens", hf["model.embed_tokens.weight"], True, ["model.embed_tokens.weight"]))
    for L in range(c["layers"]):
        p = f"model.layers.{L}."
        out.append((p + "input_layernorm.weight", hf[p + "input_layernorm.weight"], False,
                    [p + "input_layernorm.weight"]))
        out.append((p + "post_attention_layernorm.weight", hf[p + "post_attention_layernorm.weight"], False,
                    [p + "post_attention_layernorm.weight"]))
        src = [p + f"self_attn.{x}_proj.weight" for x in "qkv"]
        out.append((p + f"self_attn.{attn}", np.concatenate([hf[s] for s in src], 0), True, src))
        if p + "self_attn.q_proj.bias" in hf:
            src = [p + f"self_attn.{x}_proj.bias" for x in "qkv"]
            out.append((p + f"self_attn.{attn}.bias", np.concatenate([hf[s] for s in src], 0), False, src))
        if fam == "qwen3":
            for x in ("q_norm", "k_norm"):
                out.append((p + f"self_attn.{x}.weight", hf[p + f"self_attn.{x}.weight"], False,
                            [p + f"self_attn.{x}.weight"]))
        out.append((p + "self_attn.o_proj", hf[p + "self_attn.o_proj.weight"], True, [p + "self_attn.o_proj.weight"]))
        if p + "self_attn.o_proj.bias" in hf:
            out.append((p + "self_attn.o_proj.bias", hf[p + "self_attn.o_proj.bias"], False,
                        [p + "self_attn.o_proj.bias"]))
        src = [p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"]
        out.append((p + "mlp.gate_up_proj", np.concatenate([hf[s] for s in src], 0), True, src))
        out.append((p + "mlp.down_proj", hf[p + "mlp.down_proj.weight"], True, [p + "mlp.down_proj.weight"]))
    out.append(("model.norm.weight", hf["model.norm.weight"], False, ["model.norm.weight"]))
    if "lm_head.weight" in hf:
        out.append(("lm_head", hf["lm_head.weight"], True, ["lm_head.weight"]))
    out.sort(key=lambda t: min(t[3]))
    zero = {(n, r, g) for n, r, g in c.get("zero_groups", [])}
    res = []
    for name, arr, quant, src in out:
        arr = np.array(arr, dtype=np.float32)
        for zn, r, g in zero:
            if zn == name:
                arr[r, g * GROUP:(g + 1) * GROUP] = 0.0
        res.append((name, arr, quant, src))
    return res


# ----------------------------------------------------------------------------------------------
# q4f16_1 quantizer (python/mlc_llm/quantization/group_quantization.py, done in float16)
# ----------------------------------------------------------------------------------------------


def quantize_q4f16_1(w):
    """w: float32 [N, K]. Returns (q_weight uint32 [N, ceil(K/32)*4], q_scale float16 [N, ceil(K/32)]).

    When K is not a multiple of 32 the tail group is zero-padded for the scale, and the padding
    codes are 0, as MLC writes them (docs/mlc-format.md, "Quantization"); dequantization ignores them."""
    N, K_valid = w.shape
    K = -(-K_valid // GROUP) * GROUP
    if K != K_valid:
        w = np.concatenate([w, np.zeros((N, K - K_valid), dtype=w.dtype)], axis=1)
    g = w.astype(np.float16).reshape(N, K // GROUP, GROUP)
    max_abs = np.max(np.abs(g), axis=-1)                       # f16
    scale = (max_abs / np.float16(7)).astype(np.float16)       # f16 division
    zero = scale == 0
    safe = np.where(zero, np.float16(1), scale).astype(np.float16)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (g / safe[..., None]).astype(np.float16)            # f16
        x = (x + np.float16(7)).astype(np.float16)              # f16
        code = np.clip(np.round(x), 0, 14)                      # round half to even
    # A zero group divides 0/0 in the official kernel; the dequantized value is 0 whatever the code.
    # Write the "zero" code 7 there so that the bytes are well defined.
    code = np.where(zero[..., None], np.float16(7), code).astype(np.uint32).reshape(N, K)
    code[:, K_valid:] = 0
    packed = code.reshape(N, K // 8, 8)
    q = np.zeros((N, K // 8), dtype=np.uint32)
    for j in range(8):
        q |= packed[:, :, j] << np.uint32(4 * j)
    return q, scale


def dequantize_q4f16_1(q_weight, q_scale, K):
    """(code - 7) * scale, computed exactly in float32 (the f16 scale and the small integer are exact)."""
    N = q_weight.shape[0]
    shifts = (np.arange(8, dtype=np.uint32) * 4)
    codes = ((q_weight[:, :, None] >> shifts[None, None, :]) & np.uint32(0xF)).reshape(N, -1)[:, :K]
    scale = np.repeat(q_scale.astype(np.float32), GROUP, axis=1)[:, :K]
    return (codes.astype(np.float32) - np.float32(7)) * scale


# ----------------------------------------------------------------------------------------------
# What a q4f16_1 artifact holds, as Hugging Face weights (the reference tools of the families)
# ----------------------------------------------------------------------------------------------

# The MLP biases MLC stores as float32 (GPT-NeoX's `ffn_out_dtype`): not rounded to f16.
NEOX_F32_BIASES = (".mlp.dense_h_to_4h.bias", ".mlp.dense_4h_to_h.bias")

# Qwen3.5's norms that compute (1 + w), stored by MLC as f16(1 + w) (`qwen35_loader.py`).
QWEN35_ONE_PLUS_NORMS = ("input_layernorm.weight", "post_attention_layernorm.weight", "q_norm.weight",
                         "k_norm.weight", "model.norm.weight")
# Qwen3.5's per-head decay parameters, stored by MLC as float32.
QWEN35_F32 = (".A_log", ".dt_bias")


def artifact_weights(cfg, hf):
    """The weights a q4f16_1 artifact of `hf` holds, in HF names and HF conventions (float64)."""
    out = {}
    for name, a in hf.items():
        if a.ndim == 2:
            q_weight, q_scale = quantize_q4f16_1(a)
            out[name] = dequantize_q4f16_1(q_weight, q_scale, a.shape[1]).astype(np.float64)
        elif cfg["model_type"] == "gpt_neox" and name.endswith(NEOX_F32_BIASES):
            out[name] = a.astype(np.float64)
        elif cfg["model_type"] == "qwen3_5_text" and name.endswith(QWEN35_F32):
            out[name] = a.astype(np.float64)
        elif cfg["model_type"] == "qwen3_5_text" and name.endswith(QWEN35_ONE_PLUS_NORMS):
            out[name] = (1.0 + a).astype(np.float16).astype(np.float64) - 1.0
        elif cfg["model_type"] in ("gemma", "gemma2", "gemma3_text"):
            # Stored as f16(1 + w); transformers computes 1 + w again.
            out[name] = (1.0 + a).astype(np.float16).astype(np.float64) - 1.0
        else:
            out[name] = a.astype(np.float16).astype(np.float64)
    return out


# ----------------------------------------------------------------------------------------------
# Records, sharding (TVM TensorCacheShardingManager, B.4) and the index
# ----------------------------------------------------------------------------------------------


def make_records(params):
    """Stored tensors in emission order: (name, ndarray) with dtype uint32 / float16."""
    recs = []
    for name, arr, quant, _src in params:
        if quant:
            q, s = quantize_q4f16_1(arr)
            recs.append((name + ".q_weight", q))
            recs.append((name + ".q_scale", s))
        else:
            recs.append((name, arr.astype(np.float16)))
    return recs


def shard_records(recs, cap):
    """Official rule: returns shards in write order, each a list of (name, array, byteOffset)."""
    shards = []          # written shards (in file-counter order)
    pending, size = [], 0
    for name, arr in recs:
        n = arr.nbytes
        if size + n >= cap:
            if n * 2 >= cap:
                shards.append([(name, arr, 0)])   # written at once; the open shard stays open
                continue
            shards.append(pending)
            pending, size = [], 0
        pending.append((name, arr, size))
        size += n
    if pending:
        shards.append(pending)
    return shards


def dtype_name(arr):
    return {np.dtype(np.uint32): "uint32", np.dtype(np.float16): "float16"}[arr.dtype]


def write_artifact(c, params, out_dir):
    recs = make_records(params)
    shards = shard_records(recs, c["shard_cap"])
    os.makedirs(out_dir, exist_ok=True)
    shard_entries = []
    total = 0
    for i, shard in enumerate(shards):
        path = f"params_shard_{i}.bin"
        blob = b"".join(arr.astype(arr.dtype.newbyteorder("<")).tobytes(order="C") for _, arr, _ in shard)
        with open(os.path.join(out_dir, path), "wb") as f:
            f.write(blob)
        total += len(blob)
        shard_entries.append({
            "dataPath": path,
            "format": "raw-shard",
            "nbytes": len(blob),
            "records": [{
                "name": name,
                "shape": list(arr.shape),
                "dtype": dtype_name(arr),
                "format": "f32-to-bf16",
                "nbytes": int(arr.nbytes),
                "byteOffset": off,
            } for name, arr, off in shard],
            "md5sum": hashlib.md5(blob).hexdigest(),
        })
    logical = sum(int(arr.size) for _, arr, _, _ in params)
    index = {
        "metadata": {
            "ParamSize": len(recs),
            "ParamBytes": float(total),
            "BitsPerParam": total * 8 / logical,
        },
        "records": shard_entries,
    }
    text = json.dumps(index, indent=4)
    for name in c["index_files"]:
        with open(os.path.join(out_dir, name), "w") as f:
            f.write(text)
    with open(os.path.join(out_dir, "mlc-chat-config.json"), "w") as f:
        f.write(json.dumps(chat_config(c), indent=2))
    return index


def layout_features(index):
    """Facts about the written layout, for index.json and the case's expectations."""
    where = {}
    unaligned = []
    for s in index["records"]:
        for r in s["records"]:
            where[r["name"]] = s["dataPath"]
            if r["dtype"] == "uint32" and r["byteOffset"] % 4 != 0:
                unaligned.append({"name": r["name"], "dataPath": s["dataPath"], "byteOffset": r["byteOffset"],
                                  "byteOffset_mod_4": r["byteOffset"] % 4})
    split = []
    for name, path in where.items():
        if name.endswith(".q_weight"):
            base = name[: -len(".q_weight")]
            if where[base + ".q_scale"] != path:
                split.append({"tensor": base, "q_weight": path, "q_scale": where[base + ".q_scale"]})
    dedicated = [s["dataPath"] for s in index["records"]
                 if len(s["records"]) == 1 and len(index["records"]) > 1]
    odd_f16 = [r["name"] for s in index["records"] for r in s["records"]
               if r["dtype"] == "float16" and math.prod(r["shape"]) % 2 == 1]
    return {
        "num_shards": len(index["records"]),
        "shards": [{"dataPath": s["dataPath"], "nbytes": s["nbytes"], "num_records": len(s["records"]),
                    "first": s["records"][0]["name"], "last": s["records"][-1]["name"]} for s in index["records"]],
        "q_weight_q_scale_in_different_shards": split,
        "single_record_shards": dedicated,
        "odd_element_count_f16_records": odd_f16,
        "uint32_records_at_offset_not_multiple_of_4": unaligned,
    }


def check_expectations(case, c, feats):
    e = c["expect"]
    assert feats["num_shards"] >= e.get("min_shards", 1), (case, feats["num_shards"])
    if e.get("split_scale"):
        assert feats["q_weight_q_scale_in_different_shards"], f"{case}: no split q_weight/q_scale"
    if e.get("split_scale_regular"):
        single = set(feats["single_record_shards"])
        assert any(x["q_weight"] not in single and x["q_scale"] not in single
                   for x in feats["q_weight_q_scale_in_different_shards"]), f"{case}: no regular split"
    if e.get("dedicated_shard"):
        assert feats["single_record_shards"], f"{case}: no dedicated shard"
    if e.get("unaligned_u32"):
        assert feats["odd_element_count_f16_records"], f"{case}: no odd f16 record"
        assert feats["uint32_records_at_offset_not_multiple_of_4"], f"{case}: no unaligned uint32 record"
        assert all(u["byteOffset_mod_4"] == 2 for u in feats["uint32_records_at_offset_not_multiple_of_4"])


# ----------------------------------------------------------------------------------------------
# Reading the artifact back (a minimal independent reader) and dequantizing
# ----------------------------------------------------------------------------------------------


def read_artifact(mlc_dir):
    cfg = json.load(open(os.path.join(mlc_dir, "mlc-chat-config.json")))
    name = "tensor-cache.json" if os.path.exists(os.path.join(mlc_dir, "tensor-cache.json")) else "ndarray-cache.json"
    index = json.load(open(os.path.join(mlc_dir, name)))
    tensors = {}
    for s in index["records"]:
        blob = open(os.path.join(mlc_dir, s["dataPath"]), "rb").read()
        assert len(blob) == s["nbytes"] and hashlib.md5(blob).hexdigest() == s["md5sum"]
        for r in s["records"]:
            dt = {"uint32": "<u4", "float16": "<f2"}[r["dtype"]]
            raw = blob[r["byteOffset"]: r["byteOffset"] + r["nbytes"]]
            tensors[r["name"]] = np.frombuffer(raw, dtype=dt).reshape(r["shape"])  # copies unaligned data
    return cfg, tensors


def dequantized_weights(cfg, tensors, f16_product=False):
    """float64 weights: (code-7)*scale exact (or rounded to f16 to mimic f16 dequant kernels)."""
    mc = cfg["model_config"]
    fam = cfg["model_type"]
    H = mc["hidden_size"]
    nh, nkv = mc["num_attention_heads"], mc["num_key_value_heads"]
    d = mc.get("head_dim") or H // nh
    I = mc["intermediate_size"]

    def deq(name, K):
        w = dequantize_q4f16_1(tensors[name + ".q_weight"], tensors[name + ".q_scale"], K)
        if f16_product:
            w = w.astype(np.float16).astype(np.float32)
        return w.astype(np.float64)

    def f(name):
        return tensors[name].astype(np.float64)

    attn = "c_attn" if fam in ("qwen2", "qwen3") else "qkv_proj"
    W = {"embed": deq("model.embed_tokens", H), "norm": f("model.norm.weight"), "layers": []}
    W["lm_head"] = W["embed"] if mc["tie_word_embeddings"] else deq("lm_head", H)
    for L in range(mc["num_hidden_layers"]):
        p = f"model.layers.{L}."
        lw = {
            "in_ln": f(p + "input_layernorm.weight"),
            "post_ln": f(p + "post_attention_layernorm.weight"),
            "qkv": deq(p + f"self_attn.{attn}", H),
            "qkv_bias": f(p + f"self_attn.{attn}.bias") if p + f"self_attn.{attn}.bias" in tensors else None,
            "o": deq(p + "self_attn.o_proj", nh * d),
            "o_bias": f(p + "self_attn.o_proj.bias") if p + "self_attn.o_proj.bias" in tensors else None,
            "gate_up": deq(p + "mlp.gate_up_proj", H),
            "down": deq(p + "mlp.down_proj", I),
        }
        if fam == "qwen3":
            lw["q_norm"] = f(p + "self_attn.q_norm.weight")
            lw["k_norm"] = f(p + "self_attn.k_norm.weight")
        W["layers"].append(lw)
    return W


# ----------------------------------------------------------------------------------------------
# Reference forward (numpy; float64 by default, float32 optionally)
# ----------------------------------------------------------------------------------------------


def rope_inv_freq(mc, fam, d, use_scaling=True):
    theta = mc["position_embedding_base"] if fam == "llama" else mc["rope_theta"]
    i = np.arange(d // 2, dtype=np.float64)
    f = theta ** (-(2.0 * i) / d)
    rs = mc.get("rope_scaling") if fam == "llama" else None
    if rs and use_scaling:
        assert rs["rope_type"] == "llama3"
        factor, lff, hff = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        orig = rs["original_max_position_embeddings"]
        alpha = orig / (2 * math.pi) / (hff - lff)
        beta = lff / (hff - lff)
        smooth = np.clip(alpha * f - beta, 0.0, 1.0)
        f = (1.0 - smooth) * f / factor + smooth * f
    return f


def forward(cfg, W, ids, dt=np.float64, rope_scaling=True, qk_norm=True):
    """Full-sequence forward. Returns (logits [s, V], trace {point: [s, H]})."""
    mc = cfg["model_config"]
    fam = cfg["model_type"]
    H = mc["hidden_size"]
    nh, nkv = mc["num_attention_heads"], mc["num_key_value_heads"]
    d = mc.get("head_dim") or H // nh
    I = mc["intermediate_size"]
    eps = mc["rms_norm_eps"]
    s = len(ids)
    c = lambda a: None if a is None else a.astype(dt)

    def rms(x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + dt(eps)) * w

    inv = rope_inv_freq(mc, fam, d, rope_scaling)
    ang = np.arange(s, dtype=np.float64)[:, None] * inv[None, :]       # [s, d/2]
    cos = np.concatenate([np.cos(ang)] * 2, axis=1).astype(dt)[:, None, :]
    sin = np.concatenate([np.sin(ang)] * 2, axis=1).astype(dt)[:, None, :]

    def rope(x):  # x [s, heads, d], rotate-half
        rot = np.concatenate([-x[..., d // 2:], x[..., : d // 2]], axis=-1)
        return x * cos + rot * sin

    mask = np.triu(np.ones((s, s), dtype=bool), k=1)
    h = c(W["embed"])[np.asarray(ids)]
    trace = {"embed": h.copy()}
    group = nh // nkv
    for L, lw in enumerate(W["layers"]):
        x = rms(h, c(lw["in_ln"]))
        qkv = x @ c(lw["qkv"]).T
        if lw["qkv_bias"] is not None:
            qkv = qkv + c(lw["qkv_bias"])
        q = qkv[:, : nh * d].reshape(s, nh, d)
        k = qkv[:, nh * d: (nh + nkv) * d].reshape(s, nkv, d)
        v = qkv[:, (nh + nkv) * d:].reshape(s, nkv, d)
        if fam == "qwen3" and qk_norm:
            q = rms(q, c(lw["q_norm"]))
            k = rms(k, c(lw["k_norm"]))
        q, k = rope(q), rope(k)
        out = np.empty((s, nh, d), dtype=dt)
        for j in range(nh):
            kv = j // group
            sc = (q[:, j, :] @ k[:, kv, :].T) * dt(d ** -0.5)
            sc = np.where(mask, -np.inf, sc)
            sc = sc - sc.max(axis=-1, keepdims=True)
            p = np.exp(sc)
            p = p / p.sum(axis=-1, keepdims=True)
            out[:, j, :] = p @ v[:, kv, :]
        a = out.reshape(s, nh * d) @ c(lw["o"]).T
        if lw["o_bias"] is not None:
            a = a + c(lw["o_bias"])
        h = h + a
        x = rms(h, c(lw["post_ln"]))
        gu = x @ c(lw["gate_up"]).T
        g, u = gu[:, :I], gu[:, I:]
        h = h + ((g / (1 + np.exp(-g))) * u) @ c(lw["down"]).T
        trace[f"layer{L}_out"] = h.copy()
    h = rms(h, c(W["norm"]))
    trace["final_norm"] = h.copy()
    logits = h @ c(W["lm_head"]).T
    return logits, trace


# Ministral 3 as MLC runs it (docs/families.md, "ministral3"; shared with make_families.py and
# make_mistral_window.py).


def mlc_yarn_inv_freq(cfg):
    """The inverse frequency of each of the R rotated dimensions as TVM's `rope_freq_yarn` computes it for
    MLC (docs/families.md, "ministral3"): the blend's ramp reads the dimension index d itself, so the
    second element of a pair (d >= R/2) gets its own frequency."""
    rope = cfg["rope_parameters"]
    R, theta, factor = cfg["head_dim"], rope["rope_theta"], rope["factor"]
    orig = rope["original_max_position_embeddings"]

    def correction(rotations):
        return R * np.log(orig / (rotations * 2 * np.pi)) / (2 * np.log(theta))

    low, high = max(correction(rope["beta_fast"]), 0.0), min(correction(rope["beta_slow"]), R - 1.0)
    if low == high:
        high += 0.001
    d = np.arange(R, dtype=np.float64)
    power = theta ** ((2 * d % R) / R)
    extra, inter = 1.0 / power, 1.0 / (factor * power)
    mask = 1.0 - np.clip((d - low) / (high - low), 0.0, 1.0)
    return inter * (1.0 - mask) + extra * mask


def mlc_sm_scale(cfg):
    """MLC's factor on the softmax scale: (0.1·mscale_all_dim·ln(factor) + 1)² when mscale_all_dim is set."""
    rope = cfg["rope_parameters"]
    m, factor = rope.get("mscale_all_dim", 0), rope["factor"]
    sm = 0.1 * m * np.log(factor) + 1.0 if m and factor > 1 else 1.0
    return sm * sm


def top2_margin(row):
    t = np.sort(row)[-2:]
    return float(t[1] - t[0])


def greedy(cfg, W, ids, steps=GREEDY_STEPS, **kw):
    seq = list(ids)
    toks, margins, top5 = [], [], []
    for _ in range(steps):
        logits, _ = forward(cfg, W, seq, **kw)
        row = logits[-1]
        nxt = int(np.argmax(row))
        order = np.argsort(-row, kind="stable")[:5]
        toks.append(nxt)
        margins.append(top2_margin(row))
        top5.append((order, row[order]))
        seq.append(nxt)
    return toks, margins, top5


# ----------------------------------------------------------------------------------------------
# Golden outputs
# ----------------------------------------------------------------------------------------------


def write_f32(path, arr):
    a = np.ascontiguousarray(np.asarray(arr, dtype=np.float64).astype("<f4"))
    with open(path, "wb") as f:
        f.write(a.tobytes())
    return list(a.shape)


def make_golden(case, c, mlc_dir, golden_dir, params, feats, min_margin):
    cfg, tensors = read_artifact(mlc_dir)
    W = dequantized_weights(cfg, tensors)
    W16 = dequantized_weights(cfg, tensors, f16_product=True)
    mc = cfg["model_config"]
    V, H = cfg["vocab_size"], mc["hidden_size"]
    fam = cfg["model_type"]
    os.makedirs(golden_dir, exist_ok=True)
    files = {}

    def put(name, arr):
        files[name] = {"shape": write_f32(os.path.join(golden_dir, name), arr), "dtype": "f32le"}

    rs = np.random.RandomState(c["seed"] + 1)
    prompts, f16_effect, f32_check, ablation, redraws = [], {}, {}, {}, {}
    for k, n in enumerate(PROMPT_LENGTHS):
        tries = 0
        while True:
            tries += 1
            assert tries <= 200, f"{case}: no prompt of length {n} with margins >= {min_margin}"
            ids = [int(t) for t in rs.randint(0, V, size=n)]
            toks, margins, top5 = greedy(cfg, W, ids)
            if min(margins) >= min_margin:
                break
        redraws[f"prompt{k}"] = tries - 1
        assert len(set(toks)) >= 4, f"{case}: greedy continuation is degenerate: {toks}"
        name = f"prompt{k}"
        logits, trace = forward(cfg, W, ids)
        put(f"{name}_last_logits.f32", logits[-1])
        entry = {
            "name": name,
            "length": n,
            "token_ids": ids,
            "greedy_16": toks,
            "greedy_top1_top2_margins": [round(m, 4) for m in margins],
            "greedy_steps_top5": [{"top5_ids": [int(i) for i in o], "top5_logits": [round(float(v), 5) for v in l]}
                                  for o, l in top5],
            "last_logits_file": f"{name}_last_logits.f32",
            "last_argmax": int(np.argmax(logits[-1])),
        }
        if n == 1:
            entry["all_logits_file"] = f"{name}_last_logits.f32"
        if k == TRACED_PROMPT:
            put(f"{name}_all_logits.f32", logits)
            entry["all_logits_file"] = f"{name}_all_logits.f32"
            entry["hidden_trace_files"] = {}
            for point, val in trace.items():
                fn = f"{name}_hidden_{point}.f32"
                put(fn, val)
                entry["hidden_trace_files"][point] = fn
        prompts.append(entry)

        # f16-rounded dequantized weights (what an f16 dequant kernel sees)
        l16, _ = forward(cfg, W16, ids)
        t16, _, _ = greedy(cfg, W16, ids)
        f16_effect[name] = {"max_abs_logit_diff_f16dequant_vs_f32": float(np.max(np.abs(l16[-1] - logits[-1]))),
                            "greedy_same": t16 == toks}
        # the same forward in float32 arithmetic
        l32, _ = forward(cfg, W, ids, dt=np.float32)
        t32, _, _ = greedy(cfg, W, ids, dt=np.float32)
        f32_check[name] = {"max_abs_logit_diff_f32_vs_f64": float(np.max(np.abs(l32.astype(np.float64) - logits))),
                           "greedy_same": t32 == toks,
                           "logit_std_last": float(np.std(logits[-1])),
                           "top1_minus_top2_last": top2_margin(logits[-1])}
        assert t32 == toks, f"{case} {name}: float32 and float64 greedy differ"
        # ablations: the feature under test must change the outputs
        if fam == "llama" and mc.get("rope_scaling"):
            la, _ = forward(cfg, W, ids, rope_scaling=False)
            ta, _, _ = greedy(cfg, W, ids, rope_scaling=False)
            ablation[name] = {"max_abs_logit_diff_without_rope_scaling": float(np.max(np.abs(la - logits))),
                              "greedy_same_without_rope_scaling": ta == toks}
        if fam == "qwen3":
            la, _ = forward(cfg, W, ids, qk_norm=False)
            ta, _, _ = greedy(cfg, W, ids, qk_norm=False)
            ablation[name] = {"max_abs_logit_diff_without_qk_norm": float(np.max(np.abs(la - logits))),
                              "greedy_same_without_qk_norm": ta == toks}

    # Feature checks (asserted): llama3 scaling and qwen3 q/k norm change the reference outputs.
    if fam == "llama" and mc.get("rope_scaling"):
        big = ablation[f"prompt{len(PROMPT_LENGTHS) - 1}"]
        std = f32_check[f"prompt{len(PROMPT_LENGTHS) - 1}"]["logit_std_last"]
        assert big["max_abs_logit_diff_without_rope_scaling"] > 0.1 * std, (case, big)
        assert not big["greedy_same_without_rope_scaling"], (case, "rope scaling does not change greedy tokens")
        assert ablation["prompt0"]["max_abs_logit_diff_without_rope_scaling"] == 0.0  # position 0: no rotation
    if fam == "qwen3":
        for k, (name, a) in enumerate(ablation.items()):
            std = f32_check[name]["logit_std_last"]
            # A 1-token prompt attends only to itself (softmax = 1), so q/k cannot change its logits;
            # they do change the greedy continuation.
            if PROMPT_LENGTHS[k] > 1:
                assert a["max_abs_logit_diff_without_qk_norm"] > 0.1 * std, (case, name, a)
            assert not a["greedy_same_without_qk_norm"], (case, name, "q/k norm does not change greedy tokens")

    # dequantization fixtures
    attn = "c_attn" if fam in ("qwen2", "qwen3") else "qkv_proj"
    put("dequant_layer0_qkv_weight.f32", W["layers"][0]["qkv"])
    put("dequant_layer0_down_proj_weight.f32", W["layers"][0]["down"])
    row_ids = sorted({0, 1, V - 1} | {int(x) for x in np.random.RandomState(c["seed"] + 2).randint(0, V, size=7)})
    put("dequant_embed_rows.f32", W["embed"][row_ids])

    # quantization error vs the float32 source weights
    dvo = {}
    for name, arr, quant, _ in params:
        if not quant:
            continue
        q, s = tensors[name + ".q_weight"], tensors[name + ".q_scale"]
        deq = dequantize_q4f16_1(q, s, arr.shape[1]).astype(np.float64)
        err = np.abs(deq - arr.astype(np.float64))
        sc = np.repeat(s.astype(np.float64), GROUP, axis=1)[:, :arr.shape[1]]
        ratio = np.where(sc > 0, err / np.where(sc > 0, sc, 1), 0)
        dvo[name] = {"max_abs_err": float(err.max()), "mean_abs_err": float(err.mean()),
                     "max_err_over_scale": float(ratio.max()),
                     "rel_fro_err": float(np.linalg.norm(deq - arr) / np.linalg.norm(arr)),
                     "zero_scale_groups": int(np.sum(s == 0))}

    index = {
        "model": case,
        "dtype": "float32, little-endian, row-major",
        "vocab_size": V,
        "files": files,
        "prompts": prompts,
        "dequant_fixtures": {
            "tensors": {f"model.layers.0.self_attn.{attn}": "dequant_layer0_qkv_weight.f32",
                        "model.layers.0.mlp.down_proj": "dequant_layer0_down_proj_weight.f32"},
            "embed_rows": {"file": "dequant_embed_rows.f32", "row_ids": row_ids},
        },
        "dequant_formula": "q_weight[N, K/8] u32, q_scale[N, K/32] f16; element k of row n: q = (q_weight[n, k//8] "
                           ">> (4*(k%8))) & 0xF; w = (float(q) - 7) * float(q_scale[n, k//32]) computed exactly in f32",
        "dequant_vs_original": dvo,
        "f16_rounded_dequant_weights_effect": f16_effect,
        "float32_forward_check": f32_check,
        "synthetic": {
            "generator": TOOL,
            "family": fam,
            "seed": c["seed"],
            "prompt_seed": c["seed"] + 1,
            "min_greedy_margin": min_margin,
            "prompt_redraws": redraws,
            "reference": "independent numpy forward (float64 arithmetic, stored as f32) over the weights read back "
                         "from the written shards and dequantized exactly; greedy recomputes the full sequence",
            "features": case_features(c),
            "layout": feats,
            "ablation": ablation,
        },
    }
    with open(os.path.join(golden_dir, "index.json"), "w") as f:
        f.write(json.dumps(index, indent=1))
    return index


def case_features(c):
    nh, nkv, d, H = c["heads"], c["kv_heads"], c["head_dim"], c["hidden"]
    return {
        "hidden_size": H, "num_attention_heads": nh, "num_key_value_heads": nkv, "head_dim": d,
        "gqa_ratio": nh // nkv, "heads_times_head_dim_ne_hidden": nh * d != H,
        "intermediate_size": c["intermediate"], "intermediate_groups_of_32": c["intermediate"] // GROUP,
        "num_hidden_layers": c["layers"], "vocab_size": c["vocab"], "tied_embeddings": c["tied"],
        "qkv_bias": c["family"] == "qwen2" or c["attention_bias"], "qk_norm": c["family"] == "qwen3",
        "rope_scaling": c.get("rope_scaling"), "shard_cap": c["shard_cap"], "index_files": c["index_files"],
        "zero_scale_groups": [{"tensor": n, "row": r, "group": g} for n, r, g in c.get("zero_groups", [])],
    }


# ----------------------------------------------------------------------------------------------
# Self-check against the official artifacts
# ----------------------------------------------------------------------------------------------


def read_safetensors(path):
    blob = open(path, "rb").read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        raw = blob[8 + n + a: 8 + n + b]
        assert h["dtype"] == "BF16"
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        out[name] = bits.view(np.float32).reshape(h["shape"])
    return out


def verify_official(root):
    """Converts the official tiny models' bf16 source with this tool and compares the bytes with the official
    artifact; runs the numpy forward on the official shard and compares with the official (PyTorch) golden."""
    import tempfile
    ok = True
    for model in ("tiny-qwen2", "tiny-llama"):
        src = os.path.join(root, model)
        hfc = json.load(open(os.path.join(src, "hf_source/config.json")))
        fam = hfc["model_type"]
        c = dict(family=fam, seed=0, vocab=hfc["vocab_size"], hidden=hfc["hidden_size"],
                 layers=hfc["num_hidden_layers"], heads=hfc["num_attention_heads"],
                 kv_heads=hfc["num_key_value_heads"],
                 head_dim=hfc.get("head_dim") or hfc["hidden_size"] // hfc["num_attention_heads"],
                 intermediate=hfc["intermediate_size"], tied=hfc["tie_word_embeddings"], attention_bias=False,
                 rope_theta=hfc["rope_theta"], eps=hfc["rms_norm_eps"], rope_scaling=hfc.get("rope_scaling"),
                 context_window=hfc["max_position_embeddings"], shard_cap=SHARD_CAP_OFFICIAL,
                 index_files=["tensor-cache.json"], zero_groups=[])
        hf = read_safetensors(os.path.join(src, "hf_source/model.safetensors"))
        params = mlc_params(c, hf)
        with tempfile.TemporaryDirectory() as tmp:
            write_artifact(c, params, tmp)
            for fn in ("params_shard_0.bin", "tensor-cache.json", "mlc-chat-config.json"):
                same = open(os.path.join(tmp, fn), "rb").read() == open(os.path.join(src, "mlc", fn), "rb").read()
                print(f"{model}: {fn} byte-identical to the official artifact: {same}")
                ok &= same
        cfg, tensors = read_artifact(os.path.join(src, "mlc"))
        W = dequantized_weights(cfg, tensors)
        gold = json.load(open(os.path.join(src, "golden/index.json")))
        for p in gold["prompts"]:
            want = np.fromfile(os.path.join(src, "golden", p["last_logits_file"]), dtype="<f4")
            logits, _ = forward(cfg, W, p["token_ids"])
            diff = float(np.max(np.abs(logits[-1] - want)))
            toks = greedy(cfg, W, p["token_ids"])[0] if len(p["token_ids"]) <= 40 else None
            same = toks is None or toks == p["greedy_16"]
            print(f"{model} {p['name']} (len {len(p['token_ids'])}): max |numpy - official golden| = {diff:.2e}"
                  f"{'' if toks is None else ', greedy_16 equal: ' + str(same)}")
            ok &= diff < 1e-3 and same
    return ok


# ----------------------------------------------------------------------------------------------


def generate(case, c, out_root, min_margin):
    case_dir = os.path.join(out_root, case)
    if os.path.isdir(case_dir):
        shutil.rmtree(case_dir)
    mlc_dir, golden_dir = os.path.join(case_dir, "mlc"), os.path.join(case_dir, "golden")
    hf = draw_hf_weights(c)
    params = mlc_params(c, hf)
    index = write_artifact(c, params, mlc_dir)
    feats = layout_features(index)
    check_expectations(case, c, feats)
    g = make_golden(case, c, mlc_dir, golden_dir, params, feats, min_margin)
    size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(case_dir) for f in fs)
    print(f"{case}: {size} bytes, {feats['num_shards']} shard(s); greedy margins >= "
          f"{min(min(p['greedy_top1_top2_margins']) for p in g['prompts'])}; ablation "
          f"{json.dumps(g['synthetic']['ablation'])}")
    return size


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="conformance/fixtures/synthetic", help="output folder (one subfolder per case)")
    ap.add_argument("--case", action="append", choices=sorted(CASES), help="only these cases (default: all)")
    ap.add_argument("--min-margin", type=float, default=0.02,
                    help="re-draw a prompt while any greedy step's top-1/top-2 logit margin is below this")
    ap.add_argument("--verify-official", metavar="DIR",
                    help="self-check against the official tiny-qwen2 and tiny-llama cases in DIR "
                         "(e.g. conformance/fixtures) and exit")
    args = ap.parse_args()
    if args.verify_official:
        ok = verify_official(args.verify_official)
        print("self-check", "PASSED" if ok else "FAILED")
        sys.exit(0 if ok else 1)
    total = 0
    for case in args.case or list(CASES):
        total += generate(case, CASES[case], args.out, args.min_margin)
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
