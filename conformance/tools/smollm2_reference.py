#!/usr/bin/env python3
"""An independent numpy float32 run of a SmolLM2 (Llama) q4f16_1 artifact: step-0 logits and greedy
continuations of the prompts of conformance/fixtures/smollm2-reference/reference.json.

Why it exists: that reference was computed on the shared artifact, whose 4-bit codes were rounded
in float32 (`round(f16(w) / scale + 7)`); MLC's converter (TVM) rounds `w / scale` and `+ 7` to
float16, and `mlc-wgpu convert` does the same, so 0.23% of the codes of the artifact that
scripts/default-model.sh imports differ by one and two of the four greedy continuations diverge.
This script recomputes the reference for that artifact by the same method (weights dequantized as
(q - 7) * scale, float32, greedy argmax; a KV cache instead of the full recompute per step). `--check` first runs it on the shared artifact and
requires the shared reference back (greedy ids equal, step-0 logits within 1e-3 x std), which
shows that the two references are made the same way. SHARED_ARTIFACT is the project's reference
SmolLM2 artifact (`../shared/data/smollm2-135m-instruct-q4f16_1-mlc`, kept beside the checkout, not
in the repository; docs/gguf.md); without it, leave `--check` out.

    python3 conformance/tools/smollm2_reference.py --check SHARED_ARTIFACT \
        --model ~/.cache/mlc-wgpu/models/SmolLM2-135M-Instruct-q4f16_1-MLC \
        --out conformance/fixtures/smollm2-reference/official-rounding
"""

import argparse
import json
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "smollm2-reference"


class Model:
    def __init__(self, folder: Path):
        config = json.loads((folder / "mlc-chat-config.json").read_text())["model_config"]
        self.layers = config["num_hidden_layers"]
        self.heads = config["num_attention_heads"]
        self.kv_heads = config["num_key_value_heads"]
        self.head_dim = config["head_dim"]
        self.eps = config["rms_norm_eps"]
        self.theta = float(config["position_embedding_base"])
        index = json.loads((folder / "tensor-cache.json").read_text())
        self.raw = {}
        for shard in index["records"]:
            data = np.fromfile(folder / shard["dataPath"], dtype=np.uint8)
            for r in shard["records"]:
                dtype = {"uint32": np.uint32, "float16": np.float16, "float32": np.float32}[r["dtype"]]
                self.raw[r["name"]] = data[r["byteOffset"]:r["byteOffset"] + r["nbytes"]].view(dtype).reshape(r["shape"])

    def weight(self, name: str) -> np.ndarray:
        if name + ".weight" in self.raw:
            return self.raw[name + ".weight"].astype(np.float32)
        words = self.raw[name + ".q_weight"]
        scales = self.raw[name + ".q_scale"].astype(np.float32)
        codes = np.stack([(words >> np.uint32(4 * i)) & np.uint32(15) for i in range(8)], axis=-1).reshape(words.shape[0], -1)
        w = (codes.astype(np.float32) - 7.0).reshape(words.shape[0], -1, 32) * scales[:, :, None]
        return w.reshape(words.shape[0], -1)

    def prepare(self):
        self.embed = self.weight("model.embed_tokens")
        self.blocks = []
        for i in range(self.layers):
            p = f"model.layers.{i}"
            self.blocks.append(dict(
                ln1=self.weight(f"{p}.input_layernorm"), qkv=self.weight(f"{p}.self_attn.qkv_proj"),
                o=self.weight(f"{p}.self_attn.o_proj"), ln2=self.weight(f"{p}.post_attention_layernorm"),
                gate_up=self.weight(f"{p}.mlp.gate_up_proj"), down=self.weight(f"{p}.mlp.down_proj")))
        self.norm = self.weight("model.norm")

    def rms(self, x, w):
        return (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(self.eps))) * w

    def rope(self, x, positions):
        half = self.head_dim // 2
        inv = (1.0 / (self.theta ** (np.arange(0, half, dtype=np.float64) * 2 / self.head_dim))).astype(np.float32)
        ang = positions[:, None].astype(np.float32) * inv[None, :]
        cos, sin = np.cos(ang)[None], np.sin(ang)[None]
        x1, x2 = x[..., :half], x[..., half:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)

    def logits(self, ids, cache):
        """Runs the new tokens `ids` after the `len(cache[0][0])` cached positions (appending their
        keys and values to `cache`); returns the final-position logits."""
        n, hd = len(ids), self.head_dim
        start = cache[0][0].shape[1] if cache else 0
        x = self.embed[np.array(ids)]
        pos = np.arange(start, start + n)
        mask = np.triu(np.full((n, start + n), -np.inf, dtype=np.float32), start + 1)
        group = self.heads // self.kv_heads
        for i, b in enumerate(self.blocks):
            h = self.rms(x, b["ln1"])
            qkv = h @ b["qkv"].T
            q = qkv[:, :self.heads * hd].reshape(n, self.heads, hd).transpose(1, 0, 2)
            k = qkv[:, self.heads * hd:(self.heads + self.kv_heads) * hd].reshape(n, self.kv_heads, hd).transpose(1, 0, 2)
            v = qkv[:, (self.heads + self.kv_heads) * hd:].reshape(n, self.kv_heads, hd).transpose(1, 0, 2)
            q, k = self.rope(q, pos), self.rope(k, pos)
            if len(cache) <= i:
                cache.append((k, v))
            else:
                cache[i] = (np.concatenate([cache[i][0], k], axis=1), np.concatenate([cache[i][1], v], axis=1))
            k, v = np.repeat(cache[i][0], group, axis=0), np.repeat(cache[i][1], group, axis=0)
            s = q @ k.transpose(0, 2, 1) / np.float32(np.sqrt(hd)) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            a = (s / s.sum(-1, keepdims=True)) @ v
            x = x + a.transpose(1, 0, 2).reshape(n, -1) @ b["o"].T
            h = self.rms(x, b["ln2"])
            gu = h @ b["gate_up"].T
            g, u = gu[:, :gu.shape[1] // 2], gu[:, gu.shape[1] // 2:]
            x = x + ((g / (1 + np.exp(-g))) * u) @ b["down"].T
        return (self.rms(x[-1:], self.norm) @ self.embed.T)[0]


def run(folder: Path, reference: dict, stop_ids):
    model = Model(folder)
    model.prepare()
    cases = []
    for case in reference["cases"]:
        cache = []
        step0 = model.logits(list(case["prompt_ids"]), cache)
        greedy, top5, logits = [], [], step0
        for _ in range(40):
            order = np.argsort(-logits, kind="stable")[:5]
            top5.append({"top5_ids": [int(i) for i in order], "top5_logits": [round(float(logits[i]), 4) for i in order]})
            nxt = int(order[0])
            greedy.append(nxt)
            if nxt in stop_ids or len(greedy) == 40:
                break
            logits = model.logits([nxt], cache)
        cases.append(dict(case, greedy_ids=greedy, per_step_top5=top5, step0=step0))
        print(case["name"], "greedy", greedy[:12], "...", flush=True)
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--check", type=Path, help="the shared artifact: must reproduce the shared reference first")
    args = ap.parse_args()
    reference = json.loads((FIXTURE / "reference.json").read_text())
    stop = [2]
    if args.check:
        for got in run(args.check, reference, stop):
            want = next(c for c in reference["cases"] if c["name"] == got["name"])
            assert got["greedy_ids"] == want["greedy_ids"], (got["name"], got["greedy_ids"], want["greedy_ids"])
            step0 = np.fromfile(FIXTURE / want["step0_logits_file"], dtype="<f4")
            err = np.abs(got["step0"] - step0).max() / step0.std()
            assert err < 1e-3, (got["name"], err)
            print("check", got["name"], "ok, max|d|/std", err, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    out_cases = []
    for got in run(args.model, reference, stop):
        got["step0"].astype("<f4").tofile(args.out / got["step0_logits_file"])
        del got["step0"]
        got.pop("greedy_text", None)  # no tokenizer here: the ids are the reference
        out_cases.append(got)
    meta = dict(reference, cases=out_cases, model_dir="SmolLM2-135M-Instruct-q4f16_1-MLC (mlc-wgpu convert, official TVM rounding)",
                method=reference["method"] + "; made by conformance/tools/smollm2_reference.py")
    (args.out / "reference.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
