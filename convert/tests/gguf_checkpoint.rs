//! A GGUF seen as a Hugging Face checkpoint, on a tiny llama written the way
//! llama.cpp's converter writes one (conformance/tools/make_gguf_fixtures.py):
//! config keys, names, `[out, in]` shapes, Q/K rows back in HF order, and a
//! tokenizer.json that the `tokenizers` library loads and uses.

mod common;

use std::collections::BTreeSet;

use common::{fixtures, read_f32};
use mlc_convert::gguf::{GgufFile, hf_tensor_name, unpermute_rows};
use mlc_convert::{Checkpoint, ConvertError, GgufCheckpoint};
use serde_json::json;

#[test]
fn the_config_comes_from_the_metadata() {
    let ckpt = GgufCheckpoint::open(&fixtures().join("tiny-llama.gguf")).unwrap();
    let c = ckpt.hf_config();
    let want = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_attention_heads": 4,
        "num_hidden_layers": 1,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 100000.0,
        "rope_scaling": null,
        "max_position_embeddings": 2048,
        "vocab_size": 24,
        "tie_word_embeddings": true,
        "attention_bias": false,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 2
    });
    assert_eq!(c, &want);
    assert_eq!(
        ckpt.generation_config(),
        Some(&json!({"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}))
    );
}

#[test]
fn tensors_come_back_in_hugging_face_names_shapes_and_row_order() {
    let dir = fixtures();
    let mut ckpt = GgufCheckpoint::open(&dir.join("tiny-llama.gguf")).unwrap();
    let names: BTreeSet<String> = ckpt.tensor_names().into_iter().collect();
    let expected: BTreeSet<String> = std::fs::read_dir(dir.join("tiny-llama.expected"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".f32").to_string())
        .collect();
    assert_eq!(names, expected);
    for name in &names {
        let want = read_f32(&dir.join("tiny-llama.expected").join(format!("{name}.f32")));
        let shape = ckpt.shape(name).unwrap();
        assert_eq!(shape.iter().product::<usize>(), want.len(), "{name}");
        let got = ckpt.read_f32(name).unwrap();
        assert_eq!(got, want, "{name}");
    }
    assert_eq!(ckpt.shape("model.layers.0.self_attn.q_proj.weight").unwrap(), [32, 32]);
    assert_eq!(ckpt.shape("model.layers.0.self_attn.k_proj.weight").unwrap(), [16, 32]);
    assert_eq!(ckpt.shape("model.layers.0.mlp.down_proj.weight").unwrap(), [32, 64]);
    assert_eq!(ckpt.shape("model.embed_tokens.weight").unwrap(), [24, 32]);

    // The stored rows really are permuted: without the un-permutation they differ.
    let mut raw = GgufFile::open(&dir.join("tiny-llama.gguf")).unwrap();
    let stored_q = raw.read_f32("blk.0.attn_q.weight").unwrap();
    assert_ne!(stored_q, ckpt.read_f32("model.layers.0.self_attn.q_proj.weight").unwrap());
    assert!(matches!(
        ckpt.read_f32("model.layers.7.mlp.up_proj.weight"),
        Err(ConvertError::Tensor { .. })
    ));
}

#[test]
fn unpermute_inverts_llama_cpp_permute() {
    // llama.cpp: w.reshape(n_head, 2, rows / n_head / 2, cols).swapaxes(1, 2).reshape(rows, cols).
    let (n_head, head_dim, cols) = (3, 4, 2);
    let rows = n_head * head_dim;
    let hf: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
    let mut permuted = vec![0f32; hf.len()];
    for h in 0..n_head {
        for a in 0..2 {
            for b in 0..head_dim / 2 {
                // Source index (h, a, b) lands at (h, b, a).
                let src = h * head_dim + a * head_dim / 2 + b;
                let dst = h * head_dim + b * 2 + a;
                permuted[dst * cols..dst * cols + cols]
                    .copy_from_slice(&hf[src * cols..src * cols + cols]);
            }
        }
    }
    assert_eq!(unpermute_rows(&permuted, rows, cols, n_head, "q").unwrap(), hf);
    assert!(matches!(
        unpermute_rows(&permuted, rows, cols, 5, "q"),
        Err(ConvertError::Tensor { .. })
    ));
}

#[test]
fn gguf_names_map_to_hugging_face_names() {
    for (gguf, hf) in [
        ("token_embd.weight", Some("model.embed_tokens.weight")),
        ("output.weight", Some("lm_head.weight")),
        ("output_norm.weight", Some("model.norm.weight")),
        ("blk.12.attn_q.bias", Some("model.layers.12.self_attn.q_proj.bias")),
        ("blk.3.attn_k_norm.weight", Some("model.layers.3.self_attn.k_norm.weight")),
        ("blk.0.ffn_gate.weight", Some("model.layers.0.mlp.gate_proj.weight")),
        ("blk.0.attn_output.weight", Some("model.layers.0.self_attn.o_proj.weight")),
        ("blk.0.ffn_norm.weight", Some("model.layers.0.post_attention_layernorm.weight")),
        ("blk.01.attn_q.weight", None),
        ("blk.x.attn_q.weight", None),
        ("blk.0.ffn_gate_exps.weight", None),
        ("rope_freqs.weight", None),
    ] {
        assert_eq!(hf_tensor_name(gguf).as_deref(), hf, "{gguf}");
    }
}

#[test]
fn the_rebuilt_tokenizer_loads_and_encodes() {
    let mut ckpt = GgufCheckpoint::open(&fixtures().join("tiny-llama.gguf")).unwrap();
    let files = ckpt.tokenizer_files().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].0, "tokenizer.json");
    let tokenizer = tokenizers::Tokenizer::from_bytes(&files[0].1).unwrap();
    // "hello" merges to one token through h e → l l → he ll → hell o; " hello" through Ġ hello;
    // control tokens are special, user-defined ones are not.
    let ids = tokenizer.encode("hello hello!<|im_end|><tool>", false).unwrap().get_ids().to_vec();
    assert_eq!(ids, [20, 21, 22, 2, 3]);
    assert_eq!(tokenizer.decode(&ids, true).unwrap(), "hello hello!<tool>");
    let added: serde_json::Value = serde_json::from_slice(&files[0].1).unwrap();
    let specials: Vec<(u64, bool)> = added["added_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_u64().unwrap(), t["special"].as_bool().unwrap()))
        .collect();
    assert_eq!(specials, [(0, true), (1, true), (2, true), (3, false)]);
}

#[test]
fn files_that_are_not_models_are_refused_with_the_reason() {
    // dequant.gguf has architecture "none".
    match GgufCheckpoint::open(&fixtures().join("dequant.gguf")) {
        Err(ConvertError::Unsupported { what, .. }) => {
            assert!(what.contains("architecture \"none\""), "{what}")
        }
        other => panic!("{other:?}"),
    }
}
