//! Bad artifacts as a user meets them (issue 7, "Bad artifacts"): doctored
//! copies of the tiny official Qwen2 artifact given to the `mlc-wgpu` binary.
//! Each must end in `error: …` naming what is wrong and where, exit code 1,
//! and no panic. The loader's own checks are tested in
//! `loader/tests/bad_artifacts.rs`; these are the ones that need the model:
//! a config that disagrees with the tensors, or that the runtime cannot run.
//! (`cli.rs` covers an unsupported quantization and `model_type`, a wrong
//! `intermediate_size` and a context window too small for the request.)

#[path = "common/artifacts.rs"]
mod artifacts;

use artifacts::{
    TempDir, artifact_copy, assert_clean_failure, edit_json, edited_copy, fixture,
    tiny_qwen2_with_tokenizer,
};
use serde_json::{Value, json};

/// `generate` on `model`, which must fail with `expected` in its message.
fn generate_fails(model: &TempDir, expected: &str) {
    let model = model.path().to_str().unwrap();
    assert_clean_failure(
        &[
            "generate",
            "--model",
            model,
            "--tokens",
            "1,2,3",
            "--device",
            "cpu",
            "--greedy",
            "--max-tokens",
            "2",
        ],
        expected,
    );
}

/// A copy of tiny-qwen2 whose tensor index is edited by `edit`.
fn index_edited(edit: impl FnOnce(&mut Value)) -> TempDir {
    let dir = artifact_copy("tiny-qwen2");
    edit_json(&dir.path().join("tensor-cache.json"), edit);
    dir
}

/// The index record of `name` in tiny-qwen2's single shard.
fn record<'a>(index: &'a mut Value, name: &str) -> &'a mut Value {
    let records = index["records"][0]["records"].as_array_mut().unwrap();
    records.iter_mut().find(|record| record["name"] == name).unwrap()
}

#[test]
fn shapes_that_disagree_with_the_config_name_the_tensor_and_both_shapes() {
    let wider = edited_copy("tiny-qwen2", |c| c["model_config"]["hidden_size"] = json!(96));
    generate_fails(
        &wider,
        "tensor `model.embed_tokens.q_weight` has shape [151936, 8], but the config implies [151936, 12]",
    );

    let fewer_rows = edited_copy("tiny-qwen2", |c| {
        c["vocab_size"] = json!(1000);
        c["model_config"]["vocab_size"] = json!(1000);
    });
    generate_fails(
        &fewer_rows,
        "tensor `model.embed_tokens.q_weight` has shape [151936, 8], but the config implies [1000, 8]",
    );

    // Same bytes, transposed shape: the index is self-consistent, the model is not.
    let transposed = index_edited(|index| {
        let q_weight = record(index, "model.embed_tokens.q_weight");
        q_weight["shape"] = json!([8, 151936]);
    });
    generate_fails(
        &transposed,
        "tensor `model.embed_tokens.q_weight` has shape [8, 151936], but the config implies [151936, 8]",
    );
}

#[test]
fn scales_of_another_dtype_than_the_quantization_fixes_are_refused() {
    // float32 stored bf16-encoded takes as many bytes as float16, so the index
    // stays self-consistent: only the quantization says the dtype is wrong.
    let f32_scales = index_edited(|index| {
        record(index, "model.embed_tokens.q_scale")["dtype"] = json!("float32")
    });
    generate_fails(
        &f32_scales,
        "tensor `model.embed_tokens.q_scale` has dtype float32; expected one of float16",
    );
}

#[test]
fn tensors_the_config_needs_but_the_index_lacks_are_named() {
    let deeper = edited_copy("tiny-qwen2", |c| c["model_config"]["num_hidden_layers"] = json!(3));
    generate_fails(
        &deeper,
        "weight `model.layers.2.mlp.gate_up_proj` is missing from the artifact",
    );

    let no_norm = index_edited(|index| {
        index["records"][0]["records"]
            .as_array_mut()
            .unwrap()
            .retain(|record| record["name"] != "model.norm.weight");
    });
    generate_fails(&no_norm, "no tensor named `model.norm.weight` in the weight index");
}

#[test]
fn model_configs_the_runtime_cannot_run_say_which_key_and_why() {
    let cases: [(&str, Value, &str); 8] = [
        ("num_attention_heads", Value::Null, "model_config.num_attention_heads is missing"),
        (
            "hidden_size",
            json!("64"),
            "mlc-chat-config.json: `model_config.hidden_size`: invalid type: string \"64\", expected usize",
        ),
        ("hidden_act", json!("relu6"), "model_config.hidden_act `relu6` is not supported"),
        ("head_dim", json!(0), "model_config.head_dim must be positive"),
        ("num_key_value_heads", json!(0), "model_config.num_key_value_heads must be positive"),
        (
            "num_key_value_heads",
            json!(3),
            "num_attention_heads (4) must be a multiple of num_key_value_heads (3)",
        ),
        ("rms_norm_eps", json!(-1.0), "rms_norm_eps and the RoPE base must be finite and positive"),
        ("rope_theta", json!(0), "rms_norm_eps and the RoPE base must be finite and positive"),
    ];
    for (key, value, expected) in cases {
        let model = edited_copy("tiny-qwen2", |c| match value {
            Value::Null => drop(c["model_config"].as_object_mut().unwrap().remove(key)),
            value => c["model_config"][key] = value,
        });
        generate_fails(&model, expected);
    }
    for key in ["context_window_size", "prefill_chunk_size"] {
        for value in [0, -5] {
            let model = edited_copy("tiny-qwen2", |c| {
                c[key] = json!(value);
                c["model_config"][key] = json!(value);
            });
            generate_fails(&model, &format!("{key} must be positive"));
        }
    }
}

#[test]
fn damaged_files_fail_the_open_with_the_file_named() {
    let truncated_shard = artifact_copy("tiny-qwen2");
    let shard = truncated_shard.path().join("params_shard_0.bin");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    generate_fails(
        &truncated_shard,
        &format!(
            "params_shard_0.bin: {} bytes, but the index says {}",
            bytes.len() / 2,
            bytes.len()
        ),
    );

    let truncated_config = artifact_copy("tiny-qwen2");
    let config = truncated_config.path().join("mlc-chat-config.json");
    let text = std::fs::read(&config).unwrap();
    std::fs::write(&config, &text[..text.len() / 2]).unwrap();
    assert_clean_failure(
        &["inspect", "--model", truncated_config.path().to_str().unwrap()],
        "mlc-chat-config.json: ",
    );
    generate_fails(&truncated_config, "EOF while parsing");
}

#[test]
fn chat_commands_without_a_tokenizer_fail_before_serving() {
    // The official tiny artifact ships no tokenizer.json: fine for token-id
    // commands, a clear error for the ones that take text, `serve` included
    // (it must exit, not listen without an engine).
    let model = fixture("tiny-qwen2").join("mlc");
    let model = model.to_str().unwrap();
    let expected = "tiny-qwen2/mlc/tokenizer.json: no such file";
    assert_clean_failure(
        &["complete", "--model", model, "--prompt", "Hi", "--device", "cpu", "--max-tokens", "1"],
        expected,
    );
    assert_clean_failure(&["serve", "--model", model, "--device", "cpu", "--port", "0"], expected);
}

#[test]
fn nan_weights_are_an_engine_error_on_both_engines_not_gibberish() {
    // The final norm's 64 float16 weights set to NaN: every logit becomes NaN.
    let model = tiny_qwen2_with_tokenizer();
    let mut index: Value = serde_json::from_str(
        &std::fs::read_to_string(model.path().join("tensor-cache.json")).unwrap(),
    )
    .unwrap();
    let record = record(&mut index, "model.norm.weight").clone();
    assert_eq!((record["dtype"].as_str(), record["nbytes"].as_u64()), (Some("float16"), Some(128)));
    let shard = model.path().join("params_shard_0.bin");
    let mut bytes = std::fs::read(&shard).unwrap();
    let start = record["byteOffset"].as_u64().unwrap() as usize;
    for half in bytes[start..start + 128].chunks_exact_mut(2) {
        half.copy_from_slice(&0x7E00u16.to_le_bytes()); // float16 quiet NaN
    }
    std::fs::write(&shard, bytes).unwrap();
    let dir = model.path().to_str().unwrap();
    // The shard's md5 no longer matches; the weights, not the download, are the fault here.
    for device in ["cpu", "gpu"] {
        let greedy = [
            "generate",
            "--model",
            dir,
            "--no-verify",
            "--device",
            device,
            "--tokens",
            "1,2,3",
            "--greedy",
            "--max-tokens",
            "2",
        ];
        assert_clean_failure(
            &greedy,
            "the model produced non-finite logits (NaN or Inf) at step 3",
        );
        // Sampling reads the logits through another path (the sampler, not the argmax).
        let sampled = [
            "complete",
            "--model",
            dir,
            "--no-verify",
            "--device",
            device,
            "--prompt",
            "Hi",
            "--temperature",
            "0.7",
            "--seed",
            "1",
            "--max-tokens",
            "2",
        ];
        assert_clean_failure(&sampled, "non-finite logits");
    }
}

#[test]
fn generating_past_the_context_window_is_an_error_on_the_gpu_engine_too() {
    // `cli.rs` checks the CPU engine; the GPU engine sizes its KV cache from the same window.
    let small_window = edited_copy("tiny-qwen2", |c| c["context_window_size"] = 4.into());
    let model = small_window.path().to_str().unwrap();
    let args = [
        "generate",
        "--model",
        model,
        "--tokens",
        "1,2,3",
        "--device",
        "gpu",
        "--greedy",
        "--max-tokens",
        "5",
    ];
    assert_clean_failure(&args, "context window exceeded");
}
