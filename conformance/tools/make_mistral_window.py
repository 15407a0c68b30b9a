#!/usr/bin/env python3
"""Mistral and Ministral 3 with a sliding window: MLC's rolling KV cache with attention sinks, and reference outputs.

    python3 -m venv /tmp/venv-ring && /tmp/venv-ring/bin/pip install numpy
    /tmp/venv-ring/bin/python conformance/tools/make_mistral_window.py

It writes `conformance/fixtures/families/mistral-window-tiny/`: `hf_source/` is the `mistral-tiny` checkpoint
(`make_families.py`) with `"sliding_window": 16`, which `mlc-wgpu convert` turns into `sliding_window_size` 16,
`context_window_size` -1, `prefill_chunk_size` 16 and `attention_sink_size` 4 (MLC's `MistralConfig`);
`golden/` holds reference outputs in the families' format (docs/families.md, "mistral"). And
`ministral3-window-tiny/`: `ministral3-tiny` with `"sliding_window": 16`, whose `attention_sink_size` is
`Ministral3Config`'s default, 0 (TVM's YaRN rotation and the `sm²` softmax scale as in `make_families.py`).

transformers' Mistral has no attention sinks and rotates keys at their absolute positions, so it cannot be the
reference. This tool's float64 numpy forward follows what TVM's paged KV cache computes for MLC's Mistral (written
from docs/families.md, "mistral", not from the Rust runtime):

* each pass (a prefill chunk of at most `prefill_chunk_size` tokens, or one decode step) starts with the `held`
  tokens of the cache: every earlier token until the cache holds `window` of them, then the first `sink` tokens and
  the newest `window - sink`;
* a row at offset `j` of the pass sees the held tokens and the pass's rows `0..=j`;
* keys and values are cached unrotated; a held key is rotated at its index among the held tokens, the pass's own
  key and query of row `j` at `held + j`;
* after the pass its rows join the cache, which then keeps the first `sink` tokens and the newest `window - sink`.

The weights are what a q4f16_1 artifact holds (`make_synthetic.py`'s quantizer, dequantized exactly; norms rounded
to f16), as for the other family fixtures. Ablations record how far the longest prompt's last logits move without
the window, without the sinks, and with keys rotated at their absolute positions (transformers' rotation); each must
exceed 20x the CPU bound.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_synthetic as ms  # noqa: E402  (the q4f16_1 quantizer, safetensors reader, f32 writer)

TOOL = "conformance/tools/make_mistral_window.py"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "families")
WINDOW = 16
CHUNK = 16  # MistralConfig's and Ministral3Config's prefill_chunk_size default: min(window, 8192)
# Each case: its source checkpoint and the attention_sink_size default of its MLC config, which the
# converter writes.
CASES = {
    "mistral-window-tiny": dict(source="mistral-tiny", sink=4, seed=1801),
    "ministral3-window-tiny": dict(source="ministral3-tiny", sink=0, seed=1802),
}
PROMPT_LENGTHS = [6, 40, 70]
ALL_LOGITS_PROMPT = 1
GREEDY_STEPS = 16
LONG_GREEDY_STEPS = 48  # prompt0's long continuation: three windows of decode steps
MIN_MARGIN = 0.02
CPU_TOLERANCE = 2e-3


class Model:
    """MLC's Mistral or Ministral 3 over a rolling KV cache. `window` None: a full cache; `absolute`: keys and
    queries rotated at their positions in the sequence instead of their places in the cache (an ablation)."""

    def __init__(self, cfg, w, sink, window=WINDOW, chunk=CHUNK, absolute=False):
        self.cfg, self.w = cfg, w
        self.window, self.sink, self.chunk, self.absolute = window, sink, chunk, absolute
        d = cfg["head_dim"]
        if cfg["model_type"] == "ministral3":
            # TVM's YaRN: one frequency per rotated element; the softmax scale times sm².
            self.inv_freq = ms.mlc_yarn_inv_freq(cfg)
            self.scale = d ** -0.5 * ms.mlc_sm_scale(cfg)
        else:
            half = cfg["rope_theta"] ** (-np.arange(0, d, 2, dtype=np.float64) / d)
            self.inv_freq = np.concatenate([half, half])
            self.scale = d ** -0.5
        self.reset()

    def reset(self):
        # Per layer: held raw keys [n, kv_heads, d], values, and their sequence positions.
        self.cache = [dict(k=None, v=None, pos=np.zeros(0, dtype=np.int64)) for _ in range(self.cfg["num_hidden_layers"])]
        self.position = 0

    def rope(self, x, positions):
        """Rotate-half RoPE of x [n, heads, d] at `positions` [n], each element at its own frequency."""
        angle = positions[:, None].astype(np.float64) * self.inv_freq[None, :]
        cos, sin = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]
        half = x.shape[-1] // 2
        a, b = x[..., :half], x[..., half:]
        return np.concatenate([a * cos[..., :half] - b * sin[..., :half], b * cos[..., half:] + a * sin[..., half:]], axis=-1)

    def rms(self, x, weight):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.cfg["rms_norm_eps"]) * weight

    def pass_(self, ids):
        """One pass over `ids` (a chunk or a step): every row's logits."""
        cfg, w = self.cfg, self.w
        nh, nkv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
        n = len(ids)
        own_pos = self.position + np.arange(n)
        x = w["model.embed_tokens.weight"][ids]
        for layer, held in enumerate(self.cache):
            p = f"model.layers.{layer}."
            h = self.rms(x, w[p + "input_layernorm.weight"])
            q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(n, nh, d)
            k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(n, nkv, d)
            v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(n, nkv, d)
            count = len(held["pos"])
            keys = k if held["k"] is None else np.concatenate([held["k"], k])
            values = v if held["v"] is None else np.concatenate([held["v"], v])
            positions = np.concatenate([held["pos"], own_pos])
            if self.absolute:
                key_rot, query_rot = positions, own_pos
            else:
                key_rot, query_rot = np.arange(count + n), count + np.arange(n)
            kr, qr = self.rope(keys, key_rot), self.rope(q, query_rot)
            group = nh // nkv
            out = np.zeros((n, nh, d))
            for j in range(n):
                visible = count + j + 1  # the held tokens and the pass's rows up to j
                for head in range(nh):
                    g = head // group
                    scores = kr[:visible, g, :] @ qr[j, head, :] * self.scale
                    e = np.exp(scores - scores.max())
                    out[j, head] = (e / e.sum()) @ values[:visible, g, :]
            x = x + out.reshape(n, nh * d) @ w[p + "self_attn.o_proj.weight"].T
            h = self.rms(x, w[p + "post_attention_layernorm.weight"])
            gate, up = h @ w[p + "mlp.gate_proj.weight"].T, h @ w[p + "mlp.up_proj.weight"].T
            x = x + (gate / (1.0 + np.exp(-gate)) * up) @ w[p + "mlp.down_proj.weight"].T
            # The pass's rows join the cache, which then keeps the sinks and the newest tokens.
            keep = np.arange(len(positions))
            if self.window is not None and len(keep) > self.window:
                keep = np.concatenate([keep[: self.sink], keep[len(keep) - (self.window - self.sink):]])
            held["k"], held["v"], held["pos"] = keys[keep], values[keep], positions[keep]
        self.position += n
        head = w.get("lm_head.weight", w["model.embed_tokens.weight"])  # Ministral 3 ties them
        return self.rms(x, w["model.norm.weight"]) @ head.T

    def prefill(self, ids):
        """Every position's logits, the prompt cut into chunks from its start as WebLLM and the runtime do."""
        return np.concatenate([self.pass_(ids[i: i + self.chunk]) for i in range(0, len(ids), self.chunk)])

    def greedy(self, ids, steps):
        self.reset()
        row = self.prefill(ids)[-1]
        tokens, margins = [], []
        for _ in range(steps):
            nxt = int(np.argmax(row))
            tokens.append(nxt)
            margins.append(ms.top2_margin(row))
            row = self.pass_([nxt])[-1]
        return tokens, margins


def check_against_transformers(source, cfg, weights):
    """Without a window this forward is plain causal attention: it must give the source fixture's transformers
    reference logits (float64) for each of its prompts."""
    golden = os.path.join(ROOT, source, "golden")
    with open(os.path.join(golden, "index.json")) as f:
        index = json.load(f)
    full = Model(cfg, weights, sink=0, window=None)
    for prompt in index["prompts"]:
        want = np.fromfile(os.path.join(golden, prompt["last_logits_file"]), dtype="<f4")
        full.reset()
        got = full.prefill(prompt["token_ids"])[-1]
        diff = float(np.max(np.abs(got - want)))
        assert diff < 1e-4 * float(np.std(want)), f"{prompt['name']}: {diff} from transformers"


def generate(case, source, sink, seed):
    src = os.path.join(ROOT, source, "hf_source")
    root = os.path.join(ROOT, case)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.join(root, "hf_source"))
    os.makedirs(os.path.join(root, "golden"))
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    cfg["sliding_window"] = WINDOW
    with open(os.path.join(root, "hf_source", "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    shutil.copyfile(os.path.join(src, "model.safetensors"), os.path.join(root, "hf_source", "model.safetensors"))

    weights = ms.artifact_weights(cfg, ms.read_safetensors(os.path.join(src, "model.safetensors")))
    check_against_transformers(source, cfg, weights)
    model = Model(cfg, weights, sink)
    rs = np.random.RandomState(seed)
    prompts, files = [], {}
    for k, length in enumerate(PROMPT_LENGTHS):
        steps = LONG_GREEDY_STEPS if k == 0 else GREEDY_STEPS
        for _attempt in range(200):
            ids = [int(t) for t in rs.randint(0, cfg["vocab_size"], size=length)]
            tokens, margins = model.greedy(ids, steps)
            if min(margins) >= MIN_MARGIN:
                break
        else:
            raise SystemExit(f"no prompt of length {length} with greedy margins >= {MIN_MARGIN}")
        model.reset()
        all_logits = model.prefill(ids)
        name = f"prompt{k}"
        entry = {
            "name": name,
            "token_ids": ids,
            "greedy_16": tokens[:GREEDY_STEPS],
            "min_greedy_margin": round(min(margins), 6),
            "last_logits_file": f"{name}_last_logits.f32",
        }
        if k == 0:
            entry["greedy_long"] = tokens
        golden = os.path.join(root, "golden")
        files[entry["last_logits_file"]] = ms.write_f32(os.path.join(golden, entry["last_logits_file"]), all_logits[-1])
        if k == ALL_LOGITS_PROMPT:
            entry["all_logits_file"] = f"{name}_all_logits.f32"
            files[entry["all_logits_file"]] = ms.write_f32(os.path.join(golden, entry["all_logits_file"]), all_logits)
        prompts.append(entry)

    longest = prompts[-1]["token_ids"]
    model.reset()
    reference = model.prefill(longest)[-1]
    bound = CPU_TOLERANCE * float(np.std(reference))
    ablations = {}
    variants = [
        ("no window (full cache)", Model(cfg, weights, sink, window=None)),
        ("keys rotated at absolute positions", Model(cfg, weights, sink, absolute=True)),
        ("one pass for the whole prompt", Model(cfg, weights, sink, chunk=len(longest))),
    ]
    variants.append(("no sinks", Model(cfg, weights, 0)) if sink else ("4 sinks", Model(cfg, weights, 4)))
    for what, variant in variants:
        moved = float(np.max(np.abs(variant.prefill(longest)[-1] - reference)))
        assert moved > 20 * bound, f"{what}: moves the logits by only {moved} (bound {bound})"
        ablations[what] = round(moved / bound, 1)
    index = {
        "model": case,
        "generator": TOOL,
        "reference": f"numpy {np.__version__} float64 forward with MLC's rolling KV cache",
        "mlc_semantics": {"sliding_window_size": WINDOW, "attention_sink_size": sink, "prefill_chunk_size": CHUNK},
        "dtype": "float32, little-endian, row-major",
        "vocab_size": cfg["vocab_size"],
        "files": {name: {"shape": shape, "dtype": "f32le"} for name, shape in files.items()},
        "prompts": prompts,
        "ablations_in_cpu_bounds": ablations,
    }
    with open(os.path.join(root, "golden", "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    print(f"{case}: {len(prompts)} prompts, ablations (in CPU bounds) {ablations}")


def main():
    for case, c in CASES.items():
        generate(case, c["source"], c["sink"], c["seed"])


if __name__ == "__main__":
    main()
