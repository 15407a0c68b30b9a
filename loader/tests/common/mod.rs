//! Test helpers: a small synthetic artifact, and an HTTP server for it.

// Each test file uses its own subset of the helpers.
#![allow(dead_code)]

pub mod server;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};

use md5::{Digest, Md5};
use mlc_loader::{Progress, ProgressCallback, ProgressPhase};
use serde_json::{Value, json};

pub const SHARD_0: &str = "params_shard_0.bin";
pub const SHARD_1: &str = "params_shard_1.bin";
pub const TOKENIZER: &str = "tokenizer.json";

/// Values stored in the synthetic artifact, as the loader must return them.
pub const Q_WEIGHT: [u32; 4] = [0x7654_3210, 0xFEDC_BA98, 1, 2];
pub const NORM: [f32; 3] = [1.0, -2.0, 0.5];
pub const ODD: [u32; 2] = [0xDEAD_BEEF, 42];
pub const BIAS: [f32; 3] = [1.0, -0.15625, 3.0];
pub const Q_SCALE: [f32; 4] = [0.25, 0.5, 1.0, 2.0];
pub const HEAD_BITS: [u16; 2] = [0x3F80, 0xC000];
pub const FILLER_LEN: usize = 16_384;

/// The `filler` tensor: enough bytes (64 KiB) for downloads to arrive in pieces.
pub fn filler() -> Vec<u32> {
    (0..FILLER_LEN as u32).map(|i| i.wrapping_mul(2_654_435_761)).collect()
}

/// One stored tensor: name, shape, dtype, format, stored bytes.
struct Stored(&'static str, Vec<usize>, &'static str, &'static str, Vec<u8>);

/// A complete artifact as file name -> bytes.
///
/// Shard 0 packs `embed.q_weight` (uint32), `norm.weight` (float16, 6 bytes),
/// `odd.u32` (uint32 at offset 22, i.e. 2 mod 4) and `bias` (float32 stored
/// as bf16). Shard 1 holds `embed.q_scale`, split from its `q_weight`, a
/// bfloat16 `head.weight` and the 64 KiB `filler`.
pub fn synthetic_artifact() -> BTreeMap<String, Vec<u8>> {
    let shard0 = vec![
        Stored("embed.q_weight", vec![4, 1], "uint32", "f32-to-bf16", le_u32(&Q_WEIGHT)),
        Stored(
            "norm.weight",
            vec![3],
            "float16",
            "f32-to-bf16",
            NORM.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
        ),
        Stored("odd.u32", vec![2], "uint32", "f32-to-bf16", le_u32(&ODD)),
        Stored(
            "bias",
            vec![3],
            "float32",
            "f32-to-bf16",
            BIAS.iter().flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes()).collect(),
        ),
    ];
    let shard1 = vec![
        Stored(
            "embed.q_scale",
            vec![4, 1],
            "float16",
            "f32-to-bf16",
            Q_SCALE.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
        ),
        Stored(
            "head.weight",
            vec![2],
            "bfloat16",
            "raw",
            HEAD_BITS.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        Stored("filler", vec![FILLER_LEN], "uint32", "f32-to-bf16", le_u32(&filler())),
    ];
    let mut files = BTreeMap::new();
    let mut entries = Vec::new();
    for (name, records) in [(SHARD_0, shard0), (SHARD_1, shard1)] {
        let mut bytes = Vec::new();
        let mut index_records = Vec::new();
        for Stored(tensor, shape, dtype, format, stored) in records {
            index_records
                .push(json!({"name": tensor, "shape": shape, "dtype": dtype, "format": format,
                                      "nbytes": stored.len(), "byteOffset": bytes.len()}));
            bytes.extend(stored);
        }
        entries.push(json!({"dataPath": name, "format": "raw-shard", "nbytes": bytes.len(),
                            "records": index_records, "md5sum": md5_hex(&bytes)}));
        files.insert(name.to_string(), bytes);
    }
    let index = json!({"metadata": {"ParamSize": 7}, "records": entries});
    files.insert("tensor-cache.json".to_string(), serde_json::to_vec_pretty(&index).unwrap());
    files.insert("mlc-chat-config.json".to_string(), serde_json::to_vec_pretty(&config()).unwrap());
    files
        .insert(TOKENIZER.to_string(), br#"{"version": "1.0", "model": {"type": "BPE"}}"#.to_vec());
    files
}

fn config() -> Value {
    json!({
        "version": "0.1.0",
        "model_type": "llama",
        "quantization": "q4f16_1",
        "model_config": {"hidden_size": 8, "vocab_size": 4},
        "vocab_size": 4,
        "context_window_size": 64,
        "prefill_chunk_size": 16,
        "tokenizer_files": [TOKENIZER],
        "conv_template": {"name": "test", "roles": {"user": "U", "assistant": "A"}, "seps": ["\n"], "stop_token_ids": [3]},
        "eos_token_id": 3
    })
}

fn le_u32(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn md5_hex(bytes: &[u8]) -> String {
    format!("{:x}", Md5::digest(bytes))
}

/// Writes `files` into `dir`.
pub fn write_files(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Rewrites the config's `quantization`.
pub fn set_quantization(files: &mut BTreeMap<String, Vec<u8>>, quantization: &str) {
    let mut config: Value = serde_json::from_slice(&files["mlc-chat-config.json"]).unwrap();
    config["quantization"] = json!(quantization);
    files.insert("mlc-chat-config.json".to_string(), serde_json::to_vec(&config).unwrap());
}

/// A progress callback that records every event.
pub fn recorder() -> (ProgressCallback, Arc<Mutex<Vec<Progress>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    (Box::new(move |event: &Progress| sink.lock().unwrap().push(event.clone())), events)
}

/// The events of `phase` for `file`.
pub fn events_for(events: &[Progress], phase: ProgressPhase, file: &str) -> Vec<Progress> {
    events.iter().filter(|e| e.phase == phase && e.file == file).cloned().collect()
}

/// Checks every tensor of the synthetic artifact against the stored values.
pub fn assert_synthetic_tensors(artifact: &mlc_loader::Artifact) {
    assert_eq!(artifact.tensor("embed.q_weight").unwrap().to_u32_vec().unwrap(), Q_WEIGHT);
    assert_eq!(artifact.tensor("norm.weight").unwrap().to_f32_vec().unwrap(), NORM);
    assert_eq!(artifact.tensor("odd.u32").unwrap().to_u32_vec().unwrap(), ODD);
    let bias = artifact.tensor("bias").unwrap();
    assert_eq!((bias.dtype, bias.bytes.len()), (mlc_loader::DType::F32, 12));
    assert_eq!(bias.to_f32_vec().unwrap(), BIAS);
    assert_eq!(artifact.tensor("embed.q_scale").unwrap().to_f32_vec().unwrap(), Q_SCALE);
    let head = artifact.tensor("head.weight").unwrap();
    assert_eq!(head.to_u16_vec().unwrap(), HEAD_BITS);
    assert_eq!(head.to_f32_vec().unwrap(), [1.0, -2.0]);
    assert_eq!(artifact.tensor("filler").unwrap().to_u32_vec().unwrap(), filler());
}
