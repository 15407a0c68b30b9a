#!/usr/bin/env python3
"""A tiny BERT encoder (`model_type: bert`, the architecture of snowflake-arctic-embed) with reference
embeddings computed by Hugging Face transformers.

It writes `conformance/fixtures/families/bert-tiny/`:
  hf_source/config.json, hf_source/model.safetensors      random weights of a BertModel in BF16 (pooler
                                                           included, which MLC does not convert)
  hf_source/tokenizer.json, hf_source/tokenizer_config.json  a WordPiece tokenizer over a small vocabulary
  golden/index.json, golden/*.f32                          reference hidden states

The conformance tests convert `hf_source/` with `mlc-wgpu convert` to q0f32 (the only quantization MLC
publishes BERT models in: WebLLM's snowflake-arctic-embed records are q0f32). A q0f32 artifact stores
float32 as bf16 (docs/mlc-format.md, "Record format and bf16"); the weights are drawn bf16-valued, so
the artifact holds them exactly and the reference runs on exactly the weights the engines read. The forward pass is transformers' BertModel in float64 with
eager attention: token type 0 everywhere and positions 0..n-1, as MLC's BertModel feeds it
(docs/families.md, "bert"). Each input is run alone (no padding); a padded batch of all of them with
transformers' attention mask is checked to give the same rows, which is why the runtime never pads.

Recorded per input: its token ids, the first row of the last hidden state (what WebLLM returns as the
embedding: CLS pooling, not normalised) and, for one input, every row. Texts are recorded with their
ids twice: as WebLLM tokenizes them (no special tokens added) and as MLC's `serve` does (the tokenizer's
`[CLS] ... [SEP]`).

Usage (developer-side; CI only reads the outputs):
    python3 -m venv /tmp/venv-ref && /tmp/venv-ref/bin/pip install numpy torch transformers
    /tmp/venv-ref/bin/python conformance/tools/make_bert.py

Re-running gives byte-identical files (fixed seed, numpy's legacy RandomState stream).
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

TOOL = "conformance/tools/make_bert.py"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "families", "bert-tiny")
SEED = 901
# The conformance tolerance (CPU engine), as a fraction of the hidden states' standard deviation: tighter
# than the decoders' 2e-3 (no quantized weights here; the float32 pass is within ~1e-6), so that
# the tanh form of GELU, which moves the rows by ~3e-4 × std, fails it.
CPU_TOLERANCE = 1e-4

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "the a an of to in and is are was it that this for on with as by at from be have not or "
    "snow flake ice cold winter white mountain river sea tree green blue sky sun rain wind "
    "model embed vector search query document text word sentence meaning find best where what "
    "how why who when can get make run fast small tiny large good new old one two three"
).split()
LETTERS = "abcdefghijklmnopqrstuvwxyz"
PUNCT = list(".,?!:;'-")

CONFIG = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "vocab_size": None,  # the tokenizer's size
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "torch_dtype": "bfloat16",
}

TEXTS = [
    "Where can I get the best snow?",
    "what is a snowflake",
    "Represent this sentence for searching relevant passages: how do trees find water in winter?",
]


def vocabulary():
    tokens = SPECIAL + WORDS + list(LETTERS) + ["##" + c for c in LETTERS] + PUNCT
    unique = list(dict.fromkeys(tokens))  # "a" is a word and a letter
    return {token: i for i, token in enumerate(unique)}


def make_tokenizer(vocab):
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(SPECIAL)
    return tok


def draw_weights(config, rng):
    """Every BertModel parameter, drawn in state_dict order and rounded to bf16: LayerNorm weights
    1 + 0.2·N and biases 0.1·N, linear weights std in^-0.5 and biases 0.1·N, embeddings std 0.5."""
    model = transformers.BertModel(transformers.BertConfig(**config), add_pooling_layer=True)
    weights = {}
    for name, param in model.state_dict().items():
        shape = tuple(param.shape)
        if "LayerNorm.weight" in name:
            value = 1.0 + 0.2 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            value = 0.1 * rng.standard_normal(shape)
        elif "embeddings" in name:
            value = 0.5 * rng.standard_normal(shape)
        else:
            value = rng.standard_normal(shape) * shape[1] ** -0.5
        # bf16-valued, as the q0f32 artifact stores them.
        weights[name] = torch.from_numpy(value.astype(np.float32)).bfloat16().double().numpy()
    return weights


def build(config, weights, *, attn="eager", hidden_act=None):
    cfg = dict(config)
    if hidden_act:
        cfg["hidden_act"] = hidden_act
    model = transformers.BertModel(transformers.BertConfig(**cfg), add_pooling_layer=True)
    model.load_state_dict({k: torch.from_numpy(v.astype(np.float64)) for k, v in weights.items()})
    model.config._attn_implementation = attn
    return model.double().eval()


def hidden(model, ids, causal=False):
    with torch.no_grad():
        x = torch.tensor([ids])
        if causal:
            n = len(ids)
            mask = torch.tril(torch.ones(n, n, dtype=torch.float64))
            mask = (1.0 - mask)[None, None] * torch.finfo(torch.float64).min
            # A 4-D float mask is added to the scores as given.
            out = model(input_ids=x, attention_mask=mask)
        else:
            out = model(input_ids=x)
        return out.last_hidden_state[0].numpy()


def write_f32(path, array):
    np.asarray(array, dtype="<f4").tofile(path)


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    src, golden = os.path.join(OUT, "hf_source"), os.path.join(OUT, "golden")
    os.makedirs(src)
    os.makedirs(golden)

    vocab = vocabulary()
    tok = make_tokenizer(vocab)
    config = dict(CONFIG, vocab_size=len(vocab))
    rng = np.random.RandomState(SEED)
    weights = draw_weights(config, rng)

    tok.save(os.path.join(src, "tokenizer.json"))
    with open(os.path.join(src, "tokenizer_config.json"), "w") as f:
        json.dump(
            {
                "tokenizer_class": "BertTokenizer",
                "do_lower_case": True,
                "cls_token": "[CLS]",
                "sep_token": "[SEP]",
                "pad_token": "[PAD]",
                "unk_token": "[UNK]",
                "mask_token": "[MASK]",
                "model_max_length": config["max_position_embeddings"],
            },
            f,
            indent=2,
        )
    with open(os.path.join(src, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    save_file(
        {k: torch.from_numpy(v).bfloat16().contiguous() for k, v in weights.items()},
        os.path.join(src, "model.safetensors"),
    )

    model = build(config, weights)
    texts = []
    for text in TEXTS:
        texts.append(
            {
                "text": text,
                "webllm_ids": tok.encode(text, add_special_tokens=False).ids,
                "serve_ids": tok.encode(text, add_special_tokens=True).ids,
            }
        )
    # Inputs of different lengths: one bare token (WebLLM adds no [CLS]), and the texts as `serve` tokenizes them.
    inputs = [[vocab["snow"]]] + [t["serve_ids"] for t in texts]
    lengths = [len(ids) for ids in inputs]
    assert max(lengths) <= config["max_position_embeddings"] and len(set(lengths)) == len(lengths), lengths

    records, outputs = [], []
    for i, ids in enumerate(inputs):
        states = hidden(model, ids)
        outputs.append(states)
        write_f32(os.path.join(golden, f"input{i}_first_row.f32"), states[0])
        record = {"ids": ids, "first_row": f"input{i}_first_row.f32"}
        if i == 1:
            write_f32(os.path.join(golden, f"input{i}_all_rows.f32"), states)
            record["all_rows"] = f"input{i}_all_rows.f32"
        records.append(record)

    # A padded batch with transformers' mask gives each input's rows: the runtime runs inputs one by one.
    longest = max(lengths)
    batch = torch.tensor([ids + [0] * (longest - len(ids)) for ids in inputs])
    mask = torch.tensor([[1] * len(ids) + [0] * (longest - len(ids)) for ids in inputs])
    with torch.no_grad():
        padded = model(input_ids=batch, attention_mask=mask).last_hidden_state.numpy()
    padded_gap = max(float(np.abs(padded[i, : len(ids)] - outputs[i]).max()) for i, ids in enumerate(inputs))
    assert padded_gap < 1e-9, padded_gap

    # The float32 pass the engines approximate, for the record.
    model32 = build(config, weights).float()
    with torch.no_grad():
        f32_gap = max(
            float(np.abs(model32(input_ids=torch.tensor([ids])).last_hidden_state[0].numpy() - outputs[i]).max())
            for i, ids in enumerate(inputs)
        )

    # What each feature under test moves: the first rows of the longest input, in units of the CPU bound.
    std = float(np.std(np.concatenate([o.ravel() for o in outputs])))
    bound = CPU_TOLERANCE * std
    longest_i = int(np.argmax(lengths))
    ids = inputs[longest_i]
    base = outputs[longest_i][0]
    ablations = {
        "causal_attention": hidden(model, ids, causal=True)[0],
        "gelu_tanh": hidden(build(config, weights, hidden_act="gelu_new"), ids)[0],
    }
    moved = {}
    for name, row in ablations.items():
        ratio = float(np.abs(row - base).max()) / bound
        assert ratio > 3, (name, ratio)
        moved[name] = round(ratio, 1)

    index = {
        "tool": TOOL,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "config": config,
        "hidden_size": config["hidden_size"],
        "hidden_std": std,
        "cpu_tolerance": CPU_TOLERANCE,
        "inputs": records,
        "texts": texts,
        "padded_batch_max_gap": padded_gap,
        "float32_max_gap": f32_gap,
        "ablations_in_cpu_bounds": moved,
    }
    with open(os.path.join(golden, "index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    print(json.dumps({k: index[k] for k in ["hidden_std", "padded_batch_max_gap", "float32_max_gap", "ablations_in_cpu_bounds"]}))
    print("lengths", lengths)


if __name__ == "__main__":
    main()
