//! Converting the Hugging Face sources of the official tiny artifacts must
//! give the official artifacts: shard bytes, index and chat config.

use std::fs;
use std::path::{Path, PathBuf};

use mlc_convert::{Checkpoint, ConvertError, ConvertOptions, HfFolder, convert};
use mlc_loader::{Artifact, OpenOptions, Quantization};
use serde_json::Value;

fn fixture(model: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/fixtures").join(model)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// Converts fixture `model`'s HF source with `quantization` into a fresh temp folder.
fn convert_fixture(model: &str, quantization: Quantization) -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let out = temp.path().join("out");
    let mut checkpoint = HfFolder::open(&fixture(model).join("hf_source")).unwrap();
    convert(&mut checkpoint, &ConvertOptions::new(quantization), &out).unwrap();
    (temp, out)
}

fn check_against_official(model: &str) {
    let (_temp, out) = convert_fixture(model, Quantization::Q4F16_1);
    let official = fixture(model).join("mlc");
    let ours = fs::read(out.join("params_shard_0.bin")).unwrap();
    let theirs = fs::read(official.join("params_shard_0.bin")).unwrap();
    assert_eq!(ours.len(), theirs.len(), "{model}: shard size");
    if let Some(at) = ours.iter().zip(&theirs).position(|(a, b)| a != b) {
        panic!("{model}: params_shard_0.bin differs from the official one first at byte {at}");
    }
    // The index: same records, shard entry and metadata; the text too.
    let index = read_json(&out.join("tensor-cache.json"));
    assert_eq!(index, read_json(&official.join("tensor-cache.json")), "{model}: tensor-cache.json");
    assert_eq!(
        fs::read_to_string(out.join("tensor-cache.json")).unwrap(),
        fs::read_to_string(official.join("tensor-cache.json")).unwrap(),
        "{model}: tensor-cache.json text"
    );
    assert_eq!(
        fs::read(out.join("ndarray-cache.json")).unwrap(),
        fs::read(out.join("tensor-cache.json")).unwrap()
    );
    // The chat config: every field equal, and the same text.
    let config = read_json(&out.join("mlc-chat-config.json"));
    let official_config = read_json(&official.join("mlc-chat-config.json"));
    for (key, value) in official_config.as_object().unwrap() {
        assert_eq!(config.get(key), Some(value), "{model}: mlc-chat-config.json field `{key}`");
    }
    assert_eq!(config, official_config);
    assert_eq!(
        fs::read_to_string(out.join("mlc-chat-config.json")).unwrap(),
        fs::read_to_string(official.join("mlc-chat-config.json")).unwrap(),
        "{model}: mlc-chat-config.json text"
    );
    // Nothing else: no tokenizer files in these sources, no bf16 index (no f32 tensors).
    let mut files: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["mlc-chat-config.json", "ndarray-cache.json", "params_shard_0.bin", "tensor-cache.json"]
    );
}

#[test]
fn tiny_qwen2_converts_to_the_official_artifact() {
    check_against_official("tiny-qwen2");
}

#[test]
fn tiny_llama_converts_to_the_official_artifact() {
    check_against_official("tiny-llama");
}

/// Codes of a q4 weight, one per element.
fn codes(artifact: &Artifact, name: &str) -> Vec<u32> {
    let words = artifact.tensor(name).unwrap().to_u32_vec().unwrap();
    words.iter().flat_map(|w| (0..8).map(move |i| (w >> (4 * i)) & 0xF)).collect()
}

#[test]
fn q4f32_1_and_q0f16_artifacts_load_and_agree_with_q4f16_1() {
    let open = |dir: &Path| Artifact::open(dir.to_str().unwrap(), OpenOptions::default()).unwrap();
    let official = open(&fixture("tiny-qwen2").join("mlc"));
    let (_t1, q4f32_dir) = convert_fixture("tiny-qwen2", Quantization::Q4F32_1);
    let (_t2, q0f16_dir) = convert_fixture("tiny-qwen2", Quantization::Q0F16);
    let q4f32 = open(&q4f32_dir);
    let q0f16 = open(&q0f16_dir);
    assert_eq!(q4f32.config.quantization, "q4f32_1");
    assert_eq!(q0f16.config.quantization, "q0f16");
    // q4f32_1: float32 scales and norms (stored bf16-encoded), the same record
    // names and shapes as q4f16_1, and almost always the same codes (they can
    // differ only where float16 rounding moved a value across a rounding boundary).
    assert!(q4f32_dir.join("tensor-cache-b16.json").is_file());
    for shard in &official.index.shards {
        for record in &shard.records {
            let ours = q4f32.tensor(&record.name).unwrap();
            assert_eq!(ours.shape, record.shape.as_slice(), "{}", record.name);
        }
    }
    let name = "model.layers.0.self_attn.c_attn.q_weight";
    let (a, b) = (codes(&official, name), codes(&q4f32, name));
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    assert!(same * 100 >= a.len() * 97, "only {same} of {} codes agree", a.len());
    let scales16 =
        official.tensor("model.layers.0.self_attn.c_attn.q_scale").unwrap().to_f32_vec().unwrap();
    let scales32 =
        q4f32.tensor("model.layers.0.self_attn.c_attn.q_scale").unwrap().to_f32_vec().unwrap();
    for (s16, s32) in scales16.iter().zip(&scales32) {
        assert!((s16 - s32).abs() <= 4e-3 * s16.abs(), "{s16} vs {s32}");
    }
    // q0f16: unquantized weights under their plain names; the norms and biases
    // are the same float16 values q4f16_1 stores.
    let weight = q0f16.tensor("model.layers.0.self_attn.c_attn.weight").unwrap();
    assert_eq!(weight.shape, &[128, 64]);
    assert!(!q0f16.has_tensor("model.embed_tokens.q_weight"));
    for name in [
        "model.layers.0.self_attn.c_attn.bias",
        "model.norm.weight",
        "model.layers.1.input_layernorm.weight",
    ] {
        assert_eq!(
            q0f16.tensor(name).unwrap().bytes,
            official.tensor(name).unwrap().bytes,
            "{name}"
        );
    }
    // The q4f16_1 dequantized weight is within half a step of the q0f16 one.
    let dense = weight.to_f32_vec().unwrap();
    let codes16 = codes(&official, "model.layers.0.self_attn.c_attn.q_weight");
    for (i, &w) in dense.iter().enumerate() {
        let scale = scales16[i / 32];
        let dequant = (codes16[i] as f32 - 7.0) * scale;
        assert!((dequant - w).abs() <= 0.51 * scale + 1e-3, "element {i}: {dequant} vs {w}");
    }
}

/// A copy of fixture `model`'s HF source in a temp folder, to break.
fn source_copy(model: &str) -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("hf");
    fs::create_dir(&dir).unwrap();
    for entry in fs::read_dir(fixture(model).join("hf_source")).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    (temp, dir)
}

/// Converts `dir` into `<dir>/../out`; returns the error, after checking that
/// nothing was left behind.
fn convert_error(dir: &Path) -> ConvertError {
    let parent = dir.parent().unwrap();
    let out = parent.join("out");
    let result =
        HfFolder::open(dir).and_then(|mut c| convert(&mut c, &ConvertOptions::default(), &out));
    let error = result.expect_err("the conversion should fail");
    assert!(!out.exists(), "a failed conversion left {}", out.display());
    let leftovers: Vec<_> = fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "hf")
        .collect();
    assert!(leftovers.is_empty(), "a failed conversion left {leftovers:?}");
    error
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join("config.json");
    let mut config = read_json(&path);
    edit(config.as_object_mut().unwrap());
    fs::write(path, serde_json::to_vec(&config).unwrap()).unwrap();
}

#[test]
fn an_unknown_model_type_is_unsupported() {
    let (_temp, dir) = source_copy("tiny-qwen2");
    edit_config(&dir, |c| {
        c.insert("model_type".into(), "mamba".into());
    });
    let error = convert_error(&dir);
    assert!(matches!(error, ConvertError::Unsupported { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("mamba") && text.contains("llama, qwen2, qwen3"), "{text}");
}

#[test]
fn a_truncated_safetensors_file_is_malformed() {
    let (_temp, dir) = source_copy("tiny-llama");
    let path = dir.join("model.safetensors");
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    let error = convert_error(&dir);
    assert!(matches!(error, ConvertError::Malformed { .. }), "{error:?}");
    assert!(error.to_string().contains("truncated"), "{error}");
}

/// Rewrites the safetensors header of `path`, changing tensor `name`'s shape
/// to `shape` (same element count, so the data still fits).
fn reshape_in_header(path: &Path, name: &str, shape: &[usize]) {
    let bytes = fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header[name]["shape"] = serde_json::json!(shape);
    let text = serde_json::to_vec(&header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    fs::write(path, out).unwrap();
}

#[test]
fn a_tensor_with_wrong_dims_is_named() {
    let (_temp, dir) = source_copy("tiny-qwen2");
    // [256, 64] → [128, 128]: the same bytes, the wrong shape.
    reshape_in_header(
        &dir.join("model.safetensors"),
        "model.layers.1.mlp.up_proj.weight",
        &[128, 128],
    );
    let error = convert_error(&dir);
    match &error {
        ConvertError::Tensor { name, message } => {
            assert_eq!(name, "model.layers.1.mlp.up_proj.weight");
            assert!(message.contains("[128, 128]") && message.contains("[256, 64]"), "{message}");
        }
        other => panic!("expected a tensor error, got {other:?}"),
    }
}

#[test]
fn a_config_that_disagrees_with_the_weights_fails_before_writing() {
    let (_temp, dir) = source_copy("tiny-llama");
    edit_config(&dir, |c| {
        c.insert("intermediate_size".into(), 128.into());
    });
    let error = convert_error(&dir);
    assert!(matches!(error, ConvertError::Tensor { .. }), "{error:?}");
    assert!(error.to_string().contains("model.layers.0.mlp"), "{error}");
}

#[test]
fn a_folder_without_config_json_is_rejected() {
    let (_temp, dir) = source_copy("tiny-qwen2");
    fs::remove_file(dir.join("config.json")).unwrap();
    let error = convert_error(&dir);
    let text = error.to_string();
    assert!(
        matches!(error, ConvertError::Malformed { .. }) && text.contains("config.json"),
        "{text}"
    );
}

#[test]
fn a_missing_tensor_is_named() {
    let (_temp, dir) = source_copy("tiny-llama");
    // Drop a tensor from the index: the loader then does not know it.
    let path = dir.join("model.safetensors.index.json");
    let mut index = read_json(&path);
    index["weight_map"].as_object_mut().unwrap().remove("model.layers.1.self_attn.k_proj.weight");
    fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    let error = convert_error(&dir);
    assert!(error.to_string().contains("model.layers.1.self_attn.k_proj.weight"), "{error}");
}

#[test]
fn the_single_file_layout_without_an_index_gives_the_same_shard() {
    let (_temp, dir) = source_copy("tiny-qwen2");
    fs::remove_file(dir.join("model.safetensors.index.json")).unwrap();
    let checkpoint = HfFolder::open(&dir).unwrap();
    let names = checkpoint.tensor_names();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "a lone model.safetensors is read in sorted order");
    let out = dir.parent().unwrap().join("out");
    let mut checkpoint = checkpoint;
    convert(&mut checkpoint, &ConvertOptions::default(), &out).unwrap();
    assert_eq!(
        fs::read(out.join("params_shard_0.bin")).unwrap(),
        fs::read(fixture("tiny-qwen2").join("mlc/params_shard_0.bin")).unwrap()
    );
}

#[test]
fn tokenizer_files_are_copied_and_described() {
    let (_temp, dir) = source_copy("tiny-qwen2");
    let tokenizers = fixture("tokenizers");
    fs::copy(tokenizers.join("qwen2.5-0.5b-instruct.tokenizer.json"), dir.join("tokenizer.json"))
        .unwrap();
    fs::write(dir.join("special_tokens_map.json"), "{}").unwrap();
    let out = dir.parent().unwrap().join("out");
    let mut checkpoint = HfFolder::open(&dir).unwrap();
    let summary = convert(&mut checkpoint, &ConvertOptions::default(), &out).unwrap();
    assert_eq!(summary.tokenizer_files, ["tokenizer.json"]);
    assert_eq!(
        fs::read(out.join("tokenizer.json")).unwrap(),
        fs::read(dir.join("tokenizer.json")).unwrap()
    );
    let config = read_json(&out.join("mlc-chat-config.json"));
    // The official Qwen2.5 artifact's values for the same tokenizer.
    let official = read_json(&tokenizers.join("qwen2.5-0.5b-instruct.mlc-chat-config.json"));
    assert_eq!(config["tokenizer_info"], official["tokenizer_info"]);
    assert_eq!(config["active_vocab_size"], 151665);
    assert_eq!(config["tokenizer_files"], serde_json::json!(["tokenizer.json"]));
    // The runtime can open what was written.
    Artifact::open(out.to_str().unwrap(), OpenOptions::default()).unwrap();
}
