//! `mlc-wgpu convert` end to end: the converted tiny Qwen2 generates exactly
//! what the official artifact generates, and the converted mistral, phi3,
//! gemma2, gemma3 and qwen3_5 fixtures generate their transformers reference
//! tokens.

#[path = "common/artifacts.rs"]
mod artifacts;

use std::path::Path;

use artifacts::{fixture, mlc_wgpu, stderr, temp_dir};

fn succeed(args: &[&str]) -> String {
    let output = mlc_wgpu(args);
    assert!(output.status.success(), "mlc-wgpu {args:?} failed:\n{}", stderr(&output));
    String::from_utf8(output.stdout).unwrap()
}

/// The greedy tokens `generate --device cpu` prints for `model`.
fn greedy(model: &Path) -> String {
    let model = model.to_str().unwrap();
    let out = succeed(&[
        "generate",
        "--model",
        model,
        "--tokens",
        "148109,149814,57654",
        "--greedy",
        "--max-tokens",
        "8",
        "--device",
        "cpu",
        "--json",
    ]);
    out.lines().last().unwrap().to_string()
}

#[test]
fn a_converted_tiny_qwen2_generates_what_the_official_artifact_generates() {
    let temp = temp_dir();
    let out = temp.path().join("tiny-qwen2");
    let from = fixture("tiny-qwen2/hf_source");
    let summary = succeed(&[
        "convert",
        "--from",
        from.to_str().unwrap(),
        "--quantization",
        "q4f16_1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        summary.contains("model_type:      qwen2") && summary.contains("conv_template:   qwen2"),
        "{summary}"
    );
    assert!(summary.contains("25 in 1 shard(s)"), "{summary}");
    let official = fixture("tiny-qwen2/mlc");
    assert_eq!(
        std::fs::read(out.join("params_shard_0.bin")).unwrap(),
        std::fs::read(official.join("params_shard_0.bin")).unwrap()
    );
    let ours = greedy(&out);
    assert!(ours.starts_with("{\"tokens\":["), "{ours}");
    assert_eq!(ours, greedy(&official));
}

#[test]
fn convert_errors_are_reported_and_leave_nothing_behind() {
    let temp = temp_dir();
    let out = temp.path().join("out");
    // Not a model folder.
    let output = mlc_wgpu(&[
        "convert",
        "--from",
        temp.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.starts_with("error: ") && message.contains("config.json"), "{message}");
    // An unknown template, caught before anything is written.
    let from = fixture("tiny-llama/hf_source");
    let output = mlc_wgpu(&[
        "convert",
        "--from",
        from.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--conv-template",
        "nope",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("\"nope\"") && message.contains("llama-3"), "{message}");
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 0, "no staging folder is left");
    // An unsupported quantization is refused by the argument parser.
    let output = mlc_wgpu(&[
        "convert",
        "--from",
        from.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quantization",
        "q3f16_1",
    ]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn a_generation_config_file_sets_the_sampling_defaults() {
    let temp = temp_dir();
    let generation = temp.path().join("generation_config.json");
    std::fs::write(&generation, r#"{"temperature": 0.2, "top_p": 0.9}"#).unwrap();
    let from = fixture("tiny-llama/hf_source");
    let out = temp.path().join("out");
    let args = [
        "convert",
        "--from",
        from.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--generation-config",
        generation.to_str().unwrap(),
    ];
    succeed(&args);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("mlc-chat-config.json")).unwrap())
            .unwrap();
    assert_eq!((config["temperature"].as_f64(), config["top_p"].as_f64()), (Some(0.2), Some(0.9)));
    // Token ids the file does not give still come from config.json (tiny-llama's eos is 2).
    assert_eq!(config["eos_token_id"], 2);

    std::fs::write(&generation, "{not json").unwrap();
    let out = temp.path().join("bad");
    let output = mlc_wgpu(&[
        "convert",
        "--from",
        from.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--generation-config",
        generation.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("invalid JSON"), "{}", stderr(&output));
    assert!(!out.exists());
}

#[test]
fn family_checkpoints_convert_and_generate_their_reference_tokens() {
    let temp = temp_dir();
    for (family, model_type, template) in [
        ("mistral", "mistral", "mistral_default"),
        ("ministral3", "ministral3", "ministral3"),
        ("phi3", "phi3", "phi-3"),
        ("gemma2", "gemma2", "gemma_instruction"),
        ("gemma3", "gemma3_text", "gemma3_instruction"),
        ("qwen3_5", "qwen3_5_text", "qwen3_5"),
    ] {
        let case = format!("families/{family}-tiny");
        let out = temp.path().join(family);
        let from = fixture(&format!("{case}/hf_source"));
        let summary =
            succeed(&["convert", "--from", from.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert!(
            summary.contains(&format!("model_type:      {model_type}"))
                && summary.contains(&format!("conv_template:   {template}")),
            "{summary}"
        );
        // The longest reference prompt and its 16 greedy tokens (transformers, conformance/tools/make_families.py).
        let index: serde_json::Value = serde_json::from_slice(
            &std::fs::read(fixture(&format!("{case}/golden/index.json"))).unwrap(),
        )
        .unwrap();
        let prompt = index["prompts"].as_array().unwrap().last().unwrap();
        let ids: Vec<String> =
            prompt["token_ids"].as_array().unwrap().iter().map(|t| t.to_string()).collect();
        let line = succeed(&[
            "generate",
            "--model",
            out.to_str().unwrap(),
            "--tokens",
            &ids.join(","),
            "--greedy",
            "--max-tokens",
            "16",
            "--device",
            "cpu",
            "--json",
        ]);
        let printed: serde_json::Value =
            serde_json::from_str(line.lines().last().unwrap()).unwrap();
        assert_eq!(printed["tokens"], prompt["greedy_16"], "{family}: {line}");
    }
}
