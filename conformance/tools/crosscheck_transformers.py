#!/usr/bin/env python3
"""Optional cross-check of the synthetic golden outputs against Hugging Face transformers.

Not needed to generate the fixtures (make_synthetic.py needs numpy only) and never run by CI. It loads each
synthetic artifact with make_synthetic's reader, splits the dequantized fused weights back into the HF
parameters (q/k/v, gate/up), builds the matching transformers model (LlamaForCausalLM with the llama3
rope_scaling, Qwen2ForCausalLM, Qwen3ForCausalLM) in float64 with eager attention, and compares its
final-position logits and `generate(do_sample=False)` continuation with golden/index.json.

    pip install numpy torch transformers
    python3 conformance/tools/crosscheck_transformers.py [--root conformance/fixtures/synthetic]

Note: pass an explicit attention_mask to generate(); the prompts may contain token 0, which these configs
also name as pad_token_id, and transformers would otherwise mask it out.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_synthetic as ms  # noqa: E402


def hf_model(cfg, W):
    mc, fam = cfg["model_config"], cfg["model_type"]
    H, nh, nkv, I = mc["hidden_size"], mc["num_attention_heads"], mc["num_key_value_heads"], mc["intermediate_size"]
    d = mc.get("head_dim") or H // nh
    common = dict(vocab_size=cfg["vocab_size"], hidden_size=H, intermediate_size=I,
                  num_hidden_layers=mc["num_hidden_layers"], num_attention_heads=nh, num_key_value_heads=nkv,
                  head_dim=d, rms_norm_eps=mc["rms_norm_eps"], tie_word_embeddings=mc["tie_word_embeddings"],
                  max_position_embeddings=mc["context_window_size"], hidden_act="silu")
    if fam == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
            **common, rope_theta=mc["position_embedding_base"], rope_scaling=mc["rope_scaling"]))
    elif fam == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common, rope_theta=mc["rope_theta"]))
    else:
        model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(
            **common, rope_theta=mc["rope_theta"], attention_bias=mc["attention_bias"]))
    model.config._attn_implementation = "eager"
    model = model.double().eval()
    T = lambda a: torch.tensor(np.asarray(a, dtype=np.float64))
    sd = {"model.embed_tokens.weight": T(W["embed"]), "model.norm.weight": T(W["norm"]), "lm_head.weight": T(W["lm_head"])}
    for L, lw in enumerate(W["layers"]):
        p = f"model.layers.{L}."
        sd[p + "input_layernorm.weight"] = T(lw["in_ln"])
        sd[p + "post_attention_layernorm.weight"] = T(lw["post_ln"])
        for x, part in zip("qkv", np.split(lw["qkv"], [nh * d, (nh + nkv) * d])):
            sd[p + f"self_attn.{x}_proj.weight"] = T(part)
        if lw["qkv_bias"] is not None:
            for x, part in zip("qkv", np.split(lw["qkv_bias"], [nh * d, (nh + nkv) * d])):
                sd[p + f"self_attn.{x}_proj.bias"] = T(part)
        if "q_norm" in lw:
            sd[p + "self_attn.q_norm.weight"] = T(lw["q_norm"])
            sd[p + "self_attn.k_norm.weight"] = T(lw["k_norm"])
        sd[p + "self_attn.o_proj.weight"] = T(lw["o"])
        if lw["o_bias"] is not None:
            sd[p + "self_attn.o_proj.bias"] = T(lw["o_bias"])
        sd[p + "mlp.gate_proj.weight"] = T(lw["gate_up"][:I])
        sd[p + "mlp.up_proj.weight"] = T(lw["gate_up"][I:])
        sd[p + "mlp.down_proj.weight"] = T(lw["down"])
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and all("rotary" in m or m == "lm_head.weight" for m in missing), (missing, unexpected)
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="conformance/fixtures/synthetic")
    args = ap.parse_args()
    ok = True
    for case in sorted(os.listdir(args.root)):
        mlc = os.path.join(args.root, case, "mlc")
        if not os.path.isdir(mlc):
            continue
        cfg, tensors = ms.read_artifact(mlc)
        model = hf_model(cfg, ms.dequantized_weights(cfg, tensors))
        gold = json.load(open(os.path.join(args.root, case, "golden/index.json")))
        for p in gold["prompts"]:
            ids = torch.tensor([p["token_ids"]])
            with torch.no_grad():
                logits = model(ids).logits[0, -1].numpy()
                gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False,
                                     pad_token_id=0, eos_token_id=None)[0, ids.shape[1]:].tolist()
            want = np.fromfile(os.path.join(args.root, case, "golden", p["last_logits_file"]), dtype="<f4")
            diff = float(np.max(np.abs(logits - want)))
            same = gen == p["greedy_16"]
            ok &= diff < 1e-4 and same
            print(f"{case} {p['name']} (len {len(p['token_ids'])}): max |transformers - golden| = {diff:.2e}, "
                  f"greedy_16 equal: {same}")
    print("cross-check", "PASSED" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
