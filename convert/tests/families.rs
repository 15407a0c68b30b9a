//! Converting the mistral, ministral3, phi3, gemma, gemma2, gemma3, olmo2, stablelm, phi, gpt_neox and qwen3_5 fixture
//! checkpoints (`conformance/fixtures/families/`): MLC's parameter names, the `1 + w` Gemma
//! and Qwen3.5 norms, Qwen3.5's Gated DeltaNet tensors, GPT-NeoX's reordered `query_key_value` and float32 MLP biases, tying, and each family's `model_config` as MLC's `gen_config` writes
//! it. (The converted models' outputs are checked in
//! `conformance/tests/families.rs`.)

use std::path::{Path, PathBuf};

use mlc_convert::{Checkpoint, ConvertOptions, HfFolder, convert};
use mlc_loader::{Artifact, DType, OpenOptions};
use serde_json::{Value, json};

fn source(model: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../conformance/fixtures/families")
        .join(model)
        .join("hf_source")
}

/// The fixture converted to q4f16_1 in a temporary folder.
fn converted(model: &str) -> (tempfile::TempDir, Artifact, Value) {
    let temp = tempfile::tempdir().unwrap();
    let out = temp.path().join("out");
    let mut checkpoint = HfFolder::open(&source(model)).unwrap();
    convert(&mut checkpoint, &ConvertOptions::default(), &out).unwrap();
    let config: Value =
        serde_json::from_slice(&std::fs::read(out.join("mlc-chat-config.json")).unwrap()).unwrap();
    let artifact = Artifact::open(out.to_str().unwrap(), OpenOptions::default()).unwrap();
    (temp, artifact, config)
}

fn names(artifact: &Artifact) -> Vec<String> {
    artifact.index.shards.iter().flat_map(|s| s.records.iter().map(|r| r.name.clone())).collect()
}

fn keys(value: &Value) -> Vec<&str> {
    value.as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn mistral_keeps_llamas_names_never_ties_and_has_no_sliding_window_when_the_checkpoint_has_none() {
    let (_temp, artifact, config) = converted("mistral-tiny");
    let mc = &config["model_config"];
    assert_eq!(
        keys(mc),
        [
            "hidden_size",
            "intermediate_size",
            "num_attention_heads",
            "num_hidden_layers",
            "rms_norm_eps",
            "vocab_size",
            "position_embedding_base",
            "num_key_value_heads",
            "head_dim",
            "context_window_size",
            "sliding_window_size",
            "prefill_chunk_size",
            "attention_sink_size",
            "tensor_parallel_shards",
            "max_batch_size",
        ]
    );
    assert_eq!(mc["position_embedding_base"], json!(1000000.0));
    assert_eq!(
        (mc["context_window_size"].clone(), mc["sliding_window_size"].clone()),
        (json!(32768), json!(-1))
    );
    assert_eq!(
        (mc["prefill_chunk_size"].clone(), mc["attention_sink_size"].clone()),
        (json!(8192), json!(4))
    );
    assert_eq!(
        (config["sliding_window_size"].clone(), config["attention_sink_size"].clone()),
        (json!(-1), json!(4))
    );
    assert_eq!(config["conv_template"]["name"], "mistral_default");
    let names = names(&artifact);
    assert!(names.contains(&"model.layers.1.self_attn.qkv_proj.q_weight".to_string()));
    // The checkpoint says tie_word_embeddings false, but Mistral needs no flag: it always has lm_head.
    assert!(names.contains(&"lm_head.q_weight".to_string()), "{names:?}");
}

#[test]
fn ministral3_keeps_llamas_names_ties_and_moves_rope_theta_out_of_rope_parameters() {
    let (_temp, artifact, config) = converted("ministral3-tiny");
    assert_eq!(config["model_type"], "ministral3");
    let mc = &config["model_config"];
    assert_eq!(
        keys(mc),
        [
            "hidden_size",
            "intermediate_size",
            "num_attention_heads",
            "num_hidden_layers",
            "rms_norm_eps",
            "vocab_size",
            "attention_sink_size",
            "context_window_size",
            "dtype",
            "head_dim",
            "hidden_act",
            "max_batch_size",
            "num_key_value_heads",
            "position_embedding_base",
            "prefill_chunk_size",
            "rope_parameters",
            "sliding_window_size",
            "tensor_parallel_shards",
            "tie_word_embeddings",
            "weight_block_size",
            "modules_to_not_convert",
        ]
    );
    assert_eq!(mc["position_embedding_base"], json!(10000.0));
    assert_eq!(
        mc["rope_parameters"],
        json!({"rope_type": "yarn", "type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256,
            "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0, "llama_4_scaling_beta": 0.0})
    );
    let windows = ["context_window_size", "sliding_window_size", "prefill_chunk_size"];
    assert_eq!(windows.map(|k| mc[k].clone()), [json!(1024), json!(-1), json!(1024)]);
    assert_eq!(
        (mc["head_dim"].clone(), mc["tie_word_embeddings"].clone()),
        (json!(32), json!(true))
    );
    assert_eq!(config["conv_template"]["name"], "ministral3");
    assert_eq!(config["conv_template"]["system_prefix_token_ids"], json!([1]));
    assert_eq!(config["conv_template"]["role_templates"]["user"], "[INST]{user_message}[/INST]");
    let names = names(&artifact);
    assert!(names.contains(&"model.layers.1.self_attn.qkv_proj.q_weight".to_string()));
    assert!(names.contains(&"model.layers.0.mlp.gate_up_proj.q_weight".to_string()));
    assert!(!names.iter().any(|n| n.starts_with("lm_head")), "tied: {names:?}");
}

#[test]
fn phi3_renames_its_fused_weights_and_completes_rope_scaling() {
    let (_temp, artifact, config) = converted("phi3-tiny");
    let mc = &config["model_config"];
    assert_eq!(keys(mc)[0], "model_type");
    assert_eq!(mc["partial_rotary_factor"], json!(0.75));
    assert_eq!(
        (mc["context_window_size"].clone(), mc["prefill_chunk_size"].clone()),
        (json!(256), json!(256))
    );
    let scaling = &mc["rope_scaling"];
    assert_eq!(
        (scaling["type"].clone(), scaling["rope_type"].clone()),
        (json!("longrope"), json!("longrope"))
    );
    assert_eq!(
        (
            scaling["max_position_embeddings"].clone(),
            scaling["original_max_position_embeddings"].clone()
        ),
        (json!(256), json!(64))
    );
    assert_eq!(scaling["short_factor"].as_array().unwrap().len(), 12);
    assert_eq!(config["conv_template"]["name"], "phi-3");
    let names = names(&artifact);
    assert!(names.iter().all(|n| n.starts_with("transformer.")), "no HF names left: {names:?}");
    for name in [
        "transformer.embd.q_weight",
        "transformer.h.1.ln.weight",
        "transformer.h.1.mixer.out_proj.q_weight",
        "transformer.norm.weight",
    ] {
        assert!(names.contains(&name.to_string()), "{name} in {names:?}");
    }
    // The checkpoint's qkv_proj is already fused: [q (4·32) ; k (2·32) ; v (2·32)] rows of 128 inputs.
    assert_eq!(
        artifact.tensor("transformer.h.0.mixer.qkv_proj.q_weight").unwrap().shape,
        [256, 16]
    );
    assert_eq!(
        artifact.tensor("transformer.h.0.mlp.gate_up_proj.q_weight").unwrap().shape,
        [384, 16]
    );
}

#[test]
fn olmo2_has_no_pre_norms_and_q_k_norms_as_wide_as_all_heads() {
    let (_temp, artifact, config) = converted("olmo2-tiny");
    let mc = &config["model_config"];
    assert_eq!(config["model_type"], "olmo2");
    assert_eq!(mc["position_embedding_base"], json!(500000.0));
    assert_eq!(mc["context_window_size"], json!(4096));
    assert_eq!(config["conv_template"]["name"], "olmo2");
    assert_eq!(config["conv_template"]["stop_token_ids"], json!([100257]));
    let names = names(&artifact);
    assert!(!names.iter().any(|n| n.contains("input_layernorm")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("lm_head")), "untied: {names:?}");
    let shape = |name: &str| artifact.tensor(name).unwrap().shape.to_vec();
    assert_eq!(shape("model.layers.0.self_attn.q_norm.weight"), [4 * 16]);
    assert_eq!(shape("model.layers.0.self_attn.k_norm.weight"), [2 * 16]);
    assert_eq!(shape("model.layers.1.post_feedforward_layernorm.weight"), [64]);
    assert_eq!(shape("model.layers.1.post_attention_layernorm.weight"), [64]);
}

#[test]
fn stablelm_keeps_its_layer_norm_biases_fuses_the_qkv_bias_and_never_ties() {
    let (_temp, artifact, config) = converted("stablelm-tiny");
    let mc = &config["model_config"];
    assert_eq!(config["model_type"], "stablelm");
    assert_eq!(
        keys(mc),
        [
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "layer_norm_eps",
            "partial_rotary_factor",
            "rope_theta",
            "intermediate_size",
            "use_qkv_bias",
            "head_dim",
            "context_window_size",
            "prefill_chunk_size",
            "tensor_parallel_shards",
            "max_batch_size",
        ]
    );
    assert_eq!(
        (
            mc["head_dim"].clone(),
            mc["context_window_size"].clone(),
            mc["prefill_chunk_size"].clone()
        ),
        (json!(16), json!(4096), json!(4096))
    );
    assert_eq!(config["conv_template"]["name"], "stablelm-2");
    assert_eq!(config["conv_template"]["stop_token_ids"], json!([100257]));
    let names = names(&artifact);
    assert!(names.contains(&"lm_head.q_weight".to_string()), "untied: {names:?}");
    let shape = |name: &str| artifact.tensor(name).unwrap().shape.to_vec();
    for norm in
        ["model.layers.1.input_layernorm", "model.layers.1.post_attention_layernorm", "model.norm"]
    {
        assert_eq!(shape(&format!("{norm}.weight")), [64], "{norm}");
        assert_eq!(shape(&format!("{norm}.bias")), [64], "{norm}");
    }
    // [q (4·16) ; k (2·16) ; v (2·16)] rows and their biases in the same order.
    assert_eq!(shape("model.layers.0.self_attn.qkv_proj.q_weight"), [128, 8]);
    assert_eq!(shape("model.layers.0.self_attn.qkv_proj.bias"), [128]);
    assert!(!names.iter().any(|n| n.contains("o_proj.bias")), "{names:?}");
}

#[test]
fn phi_fuses_q_k_v_with_their_biases_renames_to_mlc_modules_and_never_ties() {
    let (_temp, artifact, config) = converted("phi-tiny");
    let mc = &config["model_config"];
    assert_eq!(config["model_type"], "phi");
    assert_eq!(
        keys(mc),
        [
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "layer_norm_eps",
            "position_embedding_base",
            "partial_rotary_factor",
            "num_key_value_heads",
            "context_window_size",
            "prefill_chunk_size",
            "head_dim",
            "tensor_parallel_shards",
            "max_batch_size",
        ]
    );
    assert_eq!(
        (
            mc["position_embedding_base"].clone(),
            mc["head_dim"].clone(),
            mc["context_window_size"].clone(),
            mc["prefill_chunk_size"].clone()
        ),
        (json!(10000.0), json!(16), json!(2048), json!(2048))
    );
    assert_eq!(config["conv_template"]["name"], "phi-2");
    assert_eq!(config["conv_template"]["stop_token_ids"], json!([50256]));
    let shape = |name: &str| artifact.tensor(name).unwrap().shape.to_vec();
    for norm in ["transformer.h.1.ln", "lm_head.ln"] {
        assert_eq!(shape(&format!("{norm}.weight")), [64], "{norm}");
        assert_eq!(shape(&format!("{norm}.bias")), [64], "{norm}");
    }
    // [q (4·16) ; k (2·16) ; v (2·16)] rows and their biases in the same order.
    assert_eq!(shape("transformer.h.0.mixer.Wqkv.q_weight"), [128, 8]);
    assert_eq!(shape("transformer.h.0.mixer.Wqkv.bias"), [128]);
    assert_eq!(shape("transformer.h.0.mixer.out_proj.bias"), [64]);
    assert_eq!(shape("transformer.h.0.mlp.fc1.q_weight"), [256, 8]);
    assert_eq!(shape("transformer.h.0.mlp.fc1.bias"), [256]);
    assert_eq!(shape("transformer.h.0.mlp.fc2.q_weight"), [64, 32]);
    assert_eq!(shape("transformer.h.0.mlp.fc2.bias"), [64]);
    assert_eq!(shape("transformer.embd.q_weight"), [600, 8]);
    assert_eq!(shape("lm_head.linear.q_weight"), [600, 8]);
    assert_eq!(shape("lm_head.linear.bias"), [600]);
    let names = names(&artifact);
    assert!(!names.iter().any(|n| n.starts_with("model.")), "{names:?}");
}

#[test]
fn gpt_neox_reorders_query_key_value_keeps_f32_mlp_biases_and_never_ties() {
    for (model, parallel) in [("gpt_neox-tiny", false), ("gpt_neox-parallel-tiny", true)] {
        let (_temp, artifact, config) = converted(model);
        let mc = &config["model_config"];
        assert_eq!(config["model_type"], "gpt_neox");
        assert_eq!(
            keys(mc),
            [
                "use_parallel_residual",
                "hidden_size",
                "intermediate_size",
                "num_attention_heads",
                "num_hidden_layers",
                "layer_norm_eps",
                "vocab_size",
                "rotary_pct",
                "position_embedding_base",
                "context_window_size",
                "head_dim",
                "prefill_chunk_size",
                "tensor_parallel_shards",
                "ffn_out_dtype",
                "max_batch_size",
            ]
        );
        assert_eq!(mc["use_parallel_residual"], json!(parallel), "{model}");
        // MLC takes the base from `rope_theta` or 10000, not from `rotary_emb_base`.
        assert_eq!(
            (
                mc["position_embedding_base"].clone(),
                mc["head_dim"].clone(),
                mc["context_window_size"].clone(),
                mc["prefill_chunk_size"].clone(),
                mc["ffn_out_dtype"].clone()
            ),
            (json!(10000), json!(16), json!(2048), json!(2048), json!("float32"))
        );
        assert_eq!(config["conv_template"]["name"], "redpajama_chat");
        assert_eq!(config["conv_template"]["stop_token_ids"], json!([0]));
        assert_eq!(config["conv_template"]["stop_str"], json!(["<human>"]));
        let tensor = |name: &str| artifact.tensor(name).unwrap();
        let layer = "gpt_neox.layers.1";
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            assert_eq!(tensor(&format!("{layer}.{norm}.bias")).shape, [64], "{norm}");
        }
        assert_eq!(tensor("gpt_neox.final_layer_norm.bias").shape, [64]);
        assert_eq!(tensor(&format!("{layer}.attention.query_key_value.q_weight")).shape, [192, 8]);
        assert_eq!(tensor(&format!("{layer}.attention.dense.bias")).dtype, DType::F16);
        // The MLP computes in `ffn_out_dtype` (float32), and its biases are stored so.
        for (mlp, rows) in [("dense_h_to_4h", 256), ("dense_4h_to_h", 64)] {
            let bias = tensor(&format!("{layer}.mlp.{mlp}.bias"));
            assert_eq!((bias.dtype, bias.shape.to_vec()), (DType::F32, vec![rows]), "{mlp}");
        }
        assert_eq!(tensor("embed_out.q_weight").shape, [600, 8]);
        let names = names(&artifact);
        assert!(!names.iter().any(|n| n.starts_with("embed_out.bias")), "{names:?}");
        // Transformers' per-head [q_h; k_h; v_h] rows, reordered to [q; k; v].
        let mut checkpoint = HfFolder::open(&source(model)).unwrap();
        let hf = checkpoint.read_f32(&format!("{layer}.attention.query_key_value.bias")).unwrap();
        let stored =
            tensor(&format!("{layer}.attention.query_key_value.bias")).to_f32_vec().unwrap();
        for (part, head) in (0..3).flat_map(|part| (0..4).map(move |head| (part, head))) {
            let want = &hf[(3 * head + part) * 16..][..16];
            let got = &stored[(4 * part + head) * 16..][..16];
            for (g, w) in got.iter().zip(want) {
                assert_eq!(*g, half::f16::from_f32(*w).to_f32(), "{model} part {part} head {head}");
            }
        }
    }
}

#[test]
fn gemma_stores_one_plus_each_norm_weight_ties_the_output_and_keeps_its_head_dim() {
    let (_temp, artifact, config) = converted("gemma-tiny");
    let mc = &config["model_config"];
    assert_eq!(config["model_type"], "gemma");
    // head_dim × heads (128) is not hidden_size (64), as in gemma-2b.
    assert_eq!((mc["head_dim"].clone(), mc["hidden_size"].clone()), (json!(32), json!(64)));
    assert_eq!(
        (mc["context_window_size"].clone(), mc["prefill_chunk_size"].clone()),
        (json!(8192), json!(8192))
    );
    assert_eq!(mc["hidden_activation"], json!("gelu_pytorch_tanh"));
    assert!(mc.get("final_logit_softcapping").is_none(), "{mc}");
    assert_eq!(config["conv_template"]["name"], "gemma_instruction");
    let names = names(&artifact);
    assert!(!names.iter().any(|n| n.starts_with("lm_head")), "gemma is always tied: {names:?}");
    assert!(!names.iter().any(|n| n.contains("feedforward_layernorm")), "{names:?}");
    assert_eq!(
        artifact.tensor("model.layers.0.self_attn.qkv_proj.q_weight").unwrap().shape,
        [(4 + 2) * 32, 64 / 8]
    );
    assert_norms_stored_as_one_plus_w(
        &artifact,
        "gemma-tiny",
        "",
        &[
            "model.layers.0.input_layernorm.weight",
            "model.layers.1.post_attention_layernorm.weight",
            "model.norm.weight",
        ],
    );
}

#[test]
fn gemma2_stores_one_plus_each_norm_weight_and_caps_the_context_at_the_sliding_window() {
    let (_temp, artifact, config) = converted("gemma2-tiny");
    let mc = &config["model_config"];
    assert_eq!(
        (mc["context_window_size"].clone(), mc["prefill_chunk_size"].clone()),
        (json!(4096), json!(4096))
    );
    assert_eq!(config["context_window_size"], json!(4096));
    assert_eq!(mc["final_logit_softcapping"], json!(30.0));
    assert_eq!(mc["hidden_activation"], json!("gelu_pytorch_tanh"));
    assert_eq!(config["conv_template"]["name"], "gemma_instruction");
    let names = names(&artifact);
    assert!(!names.iter().any(|n| n.starts_with("lm_head")), "gemma is always tied: {names:?}");
    assert_norms_stored_as_one_plus_w(
        &artifact,
        "gemma2-tiny",
        "",
        &[
            "model.layers.0.input_layernorm.weight",
            "model.layers.0.post_attention_layernorm.weight",
            "model.layers.1.pre_feedforward_layernorm.weight",
            "model.layers.1.post_feedforward_layernorm.weight",
            "model.norm.weight",
        ],
    );
}

#[test]
fn gemma3_nests_its_config_prefixes_its_names_and_stores_one_plus_every_norm() {
    let (_temp, artifact, config) = converted("gemma3-tiny");
    assert_eq!(config["model_type"], "gemma3_text");
    let mc = &config["model_config"];
    let text = &mc["text_config"];
    // MLC's context: max(sliding_window, 8192); the checkpoint's window and
    // the local RoPE base are kept (under kwargs for the latter) but not read.
    assert_eq!(config["context_window_size"], json!(8192));
    assert_eq!(config["sliding_window_size"], json!(512));
    assert_eq!(config["prefill_chunk_size"], json!(8192));
    assert_eq!(mc["is_text_model"], json!(true));
    assert_eq!(text["position_embedding_base"], json!(1000000.0));
    assert_eq!(text["query_pre_attn_scalar"], json!(24));
    assert_eq!(text["kwargs"]["rope_local_base_freq"], json!(10000.0));
    assert_eq!(config["conv_template"]["name"], "gemma3_instruction");
    assert_eq!(config["conv_template"]["stop_token_ids"], json!([1, 106]));
    let names = names(&artifact);
    assert!(names.iter().all(|n| n.starts_with("language_model.model.")), "{names:?}");
    for part in ["q_proj", "k_proj", "v_proj"] {
        let name = format!("language_model.model.layers.5.self_attn.{part}.q_weight");
        assert!(names.contains(&name), "{name} is stored apart: {names:?}");
    }
    let norms = [
        ("model.layers.0.input_layernorm.weight", 64),
        ("model.layers.0.self_attn.q_norm.weight", 16),
        ("model.layers.3.self_attn.k_norm.weight", 16),
        ("model.layers.5.post_feedforward_layernorm.weight", 64),
        ("model.norm.weight", 64),
    ];
    for (hf_name, len) in norms {
        assert_eq!(artifact.tensor(&format!("language_model.{hf_name}")).unwrap().shape, [len]);
    }
    assert_norms_stored_as_one_plus_w(
        &artifact,
        "gemma3-tiny",
        "language_model.",
        &norms.map(|(name, _)| name),
    );
}

/// Each of the checkpoint's `norms` is stored, under `prefix`, as `f16(1 + w)`
/// (Gemma's and Qwen3.5's norms, as MLC's loaders store them).
fn assert_norms_stored_as_one_plus_w(
    artifact: &Artifact,
    model: &str,
    prefix: &str,
    norms: &[&str],
) {
    let mut hf = HfFolder::open(&source(model)).unwrap();
    for &norm in norms {
        let stored = artifact.tensor(&format!("{prefix}{norm}")).unwrap().to_f32_vec().unwrap();
        let want: Vec<f32> = hf
            .read_f32(norm)
            .unwrap()
            .iter()
            .map(|w| half::f16::from_f32(1.0 + w).to_f32())
            .collect();
        assert_eq!(stored, want, "{norm} must be stored as f16(1 + w)");
    }
}

#[test]
fn qwen3_5_fuses_the_gated_query_keeps_the_linear_layers_and_stores_one_plus_its_norms() {
    let (_temp, artifact, config) = converted("qwen3_5-tiny");
    assert_eq!(config["model_type"], "qwen3_5_text");
    let mc = &config["model_config"];
    // Qwen35Config's fields in declaration order; rope_parameters' values read
    // into rope_theta and partial_rotary_factor, the window from max_position_embeddings.
    assert_eq!(
        keys(mc),
        [
            "hidden_size",
            "intermediate_size",
            "num_attention_heads",
            "num_hidden_layers",
            "num_key_value_heads",
            "rms_norm_eps",
            "vocab_size",
            "rope_theta",
            "head_dim",
            "hidden_act",
            "attention_bias",
            "tie_word_embeddings",
            "linear_key_head_dim",
            "linear_value_head_dim",
            "linear_num_key_heads",
            "linear_num_value_heads",
            "linear_conv_kernel_dim",
            "full_attention_interval",
            "partial_rotary_factor",
            "context_window_size",
            "prefill_chunk_size",
            "tensor_parallel_shards",
            "dtype",
            "max_batch_size",
        ]
    );
    assert_eq!(mc["rope_theta"], json!(10000000.0));
    assert_eq!(mc["partial_rotary_factor"], json!(0.25));
    assert_eq!(mc["full_attention_interval"], json!(3));
    assert_eq!(
        (&mc["context_window_size"], &mc["prefill_chunk_size"]),
        (&json!(4096), &json!(2048))
    );
    assert_eq!(config["conv_template"]["name"], "qwen3_5");
    assert_eq!(config["conv_template"]["roles"]["assistant"], "<|im_start|>assistant\n<think>");
    assert_eq!(config["conv_template"]["stop_token_ids"], json!([248046, 248044]));

    let names = names(&artifact);
    // Layers 2 and 5 attend; the others are Gated DeltaNet layers. Tied: no lm_head.
    let c_attn = artifact.tensor("model.layers.2.self_attn.c_attn.q_weight").unwrap();
    // [q | gate] of 4 heads of 32, then 2 key and 2 value heads of 32.
    assert_eq!(c_attn.shape, [(2 * 4 + 2 + 2) * 32, 64 / 8]);
    assert!(!names.iter().any(|n| n.starts_with("model.layers.2.linear_attn")), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("model.layers.1.self_attn")), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("lm_head")), "{names:?}");
    for proj in ["in_proj_qkv", "in_proj_z", "in_proj_a", "in_proj_b", "out_proj"] {
        let name = format!("model.layers.4.linear_attn.{proj}.q_weight");
        assert!(names.contains(&name), "{name} is quantized: {names:?}");
    }
    let conv = artifact.tensor("model.layers.0.linear_attn.conv1d_weight").unwrap();
    // Channels: q and k (2 heads of 16 each) and v (4 heads of 16).
    assert_eq!((conv.shape, conv.dtype), (&[128, 1, 4][..], DType::F16));
    let mut hf = HfFolder::open(&source("qwen3_5-tiny")).unwrap();
    for param in ["A_log", "dt_bias"] {
        let name = format!("model.layers.3.linear_attn.{param}");
        let tensor = artifact.tensor(&name).unwrap();
        assert_eq!((tensor.shape, tensor.dtype), (&[4][..], DType::F32), "{name}");
        assert_eq!(tensor.to_f32_vec().unwrap(), hf.read_f32(&name).unwrap(), "{name} as is");
    }
    // The gated norm is stored as it is, not as 1 + w.
    let gated = "model.layers.0.linear_attn.norm.weight";
    let want: Vec<f32> =
        hf.read_f32(gated).unwrap().iter().map(|&w| half::f16::from_f32(w).to_f32()).collect();
    assert_eq!(artifact.tensor(gated).unwrap().to_f32_vec().unwrap(), want);
    assert_norms_stored_as_one_plus_w(
        &artifact,
        "qwen3_5-tiny",
        "",
        &[
            "model.layers.0.input_layernorm.weight",
            "model.layers.1.post_attention_layernorm.weight",
            "model.layers.2.self_attn.q_norm.weight",
            "model.layers.5.self_attn.k_norm.weight",
            "model.norm.weight",
        ],
    );
}
