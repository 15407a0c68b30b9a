//! The `mlc-wgpu` command-line contract, run as a user runs it, on the tiny
//! official artifacts in `conformance/fixtures/`.

#[path = "common/artifacts.rs"]
mod artifacts;

use artifacts::{assert_clean_failure, edited_copy, fixture, mlc_wgpu, stderr, temp_dir};

fn golden_prompt(model: &str, index: usize) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(model).join("golden/index.json")).unwrap();
    let golden: serde_json::Value = serde_json::from_str(&text).unwrap();
    golden["prompts"][index].clone()
}

fn ids(value: &serde_json::Value) -> String {
    value.as_array().unwrap().iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",")
}

#[test]
fn logits_command_writes_the_reference_logits() {
    let model = fixture("tiny-llama").join("mlc");
    let prompt = golden_prompt("tiny-llama", 2);
    let out = temp_dir();
    let out_file = out.path().join("logits.f32");
    let output = mlc_wgpu(&[
        "logits",
        "--model",
        model.to_str().unwrap(),
        "--tokens",
        &ids(&prompt["token_ids"]),
        // The float32 oracle: the fast engine's int16 activations are
        // checked against it by the conformance suite, not to 1e-3.
        "--device",
        "cpu-reference",
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let got: Vec<f32> = std::fs::read(&out_file)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let want: Vec<f32> = std::fs::read(
        fixture("tiny-llama").join("golden").join(prompt["last_logits_file"].as_str().unwrap()),
    )
    .unwrap()
    .chunks_exact(4)
    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
    .collect();
    assert_eq!(got.len(), 32000);
    let max_diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max_diff < 1e-3, "max |Δ| {max_diff}");
}

#[test]
fn generate_command_prints_the_greedy_tokens_as_json() {
    let model = fixture("tiny-qwen2").join("mlc");
    let prompt = golden_prompt("tiny-qwen2", 1);
    let output = mlc_wgpu(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--tokens",
        &ids(&prompt["token_ids"]),
        "--device",
        "cpu",
        "--max-tokens",
        "16",
        "--greedy",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["tokens"], prompt["greedy_16"]);
}

#[test]
fn inspect_prints_the_config_and_the_tensor_table() {
    let model = fixture("tiny-qwen2").join("mlc");
    let output = mlc_wgpu(&["inspect", "--model", model.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("model_type:      qwen2"), "{stdout}");
    assert!(stdout.contains("model.layers.1.self_attn.c_attn.bias"), "{stdout}");
    assert!(stdout.contains("[151936, 8]"), "{stdout}");
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let tiny = fixture("tiny-qwen2").join("mlc");
    let tiny = tiny.to_str().unwrap();
    assert_clean_failure(
        &[
            "logits",
            "--model",
            "/nonexistent/model",
            "--tokens",
            "1",
            "--device",
            "cpu",
            "--out",
            "/tmp/x",
        ],
        "/nonexistent/model",
    );
    // A WebLLM model id resolves to its official URL; offline with an empty cache it says so.
    let empty_cache = temp_dir();
    assert_clean_failure(
        &[
            "inspect",
            "--model",
            "Qwen2.5-0.5B-Instruct-q4f16_1-MLC",
            "--offline",
            "--cache-dir",
            empty_cache.path().to_str().unwrap(),
        ],
        "mlc-ai/Qwen2.5-0.5B-Instruct-q4f16_1-MLC",
    );
    assert_clean_failure(
        &["generate", "--model", tiny, "--tokens", "151936", "--device", "cpu", "--greedy"],
        "out of range",
    );

    let q3 = edited_copy("tiny-qwen2", |c| c["quantization"] = "q3f16_1".into());
    assert_clean_failure(&["inspect", "--model", q3.path().to_str().unwrap()], "q3f16_1");

    let rwkv = edited_copy("tiny-qwen2", |c| c["model_type"] = "rwkv6".into());
    assert_clean_failure(
        &[
            "generate",
            "--model",
            rwkv.path().to_str().unwrap(),
            "--tokens",
            "1",
            "--device",
            "cpu",
            "--greedy",
        ],
        "unsupported model_type `rwkv6`",
    );

    let wrong_width =
        edited_copy("tiny-qwen2", |c| c["model_config"]["intermediate_size"] = 320.into());
    assert_clean_failure(
        &[
            "generate",
            "--model",
            wrong_width.path().to_str().unwrap(),
            "--tokens",
            "1",
            "--device",
            "cpu",
            "--greedy",
        ],
        "gate_up_proj",
    );

    let small_window = edited_copy("tiny-qwen2", |c| c["context_window_size"] = 4.into());
    assert_clean_failure(
        &[
            "generate",
            "--model",
            small_window.path().to_str().unwrap(),
            "--tokens",
            "1,2,3",
            "--device",
            "cpu",
            "--greedy",
            "--max-tokens",
            "5",
        ],
        "context window exceeded",
    );
}

#[test]
fn devices_lists_each_adapter_with_its_features_and_cooperative_matrices() {
    let output = mlc_wgpu(&["devices", "--json"]);
    if !output.status.success() {
        // Only a machine without any Vulkan/GL driver gets here; CI installs lavapipe.
        assert!(stderr(&output).contains("found no GPU adapter"), "{}", stderr(&output));
        assert!(std::env::var_os("CI").is_none(), "CI has lavapipe: {}", stderr(&output));
        eprintln!("!! NOT RUN: no GPU adapter on this machine");
        return;
    }
    let text = String::from_utf8(output.stdout).unwrap();
    let adapters: Vec<serde_json::Value> =
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert!(!adapters.is_empty());
    for adapter in &adapters {
        assert!(!adapter["name"].as_str().unwrap().is_empty(), "{adapter}");
        assert!(adapter["cooperative_matrices"].is_array(), "{adapter}");
        assert!(adapter["max_storage_buffer_binding_size"].as_u64().unwrap() > 0, "{adapter}");
        let software = adapter["device_type"] == "Cpu";
        assert_eq!(adapter["software"], software, "{adapter}");
    }
}
