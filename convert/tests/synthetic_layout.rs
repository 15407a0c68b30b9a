//! The layout the converter writes for the synthetic cases
//! (`conformance/fixtures/synthetic`, made by an independent Python
//! re-implementation of the official converter): qwen3 with q/k norms, a
//! tail group (K not a multiple of 32), GQA 7:1 with an untied head and a
//! small shard cap, Llama-3 RoPE scaling. Source weights here are random
//! float32, so only names, shapes, dtypes, offsets, shards and `model_config`
//! are compared, not bytes.

use std::fs;
use std::path::{Path, PathBuf};

use mlc_convert::families::{Dims, Family, Overrides, params};
use mlc_convert::{ConvertOptions, HfFolder, convert_with_progress};
use mlc_loader::Quantization;
use serde_json::{Map, Value, json};

fn synthetic(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../conformance/fixtures/synthetic")
        .join(case)
        .join("mlc")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// A `config.json` as Hugging Face writes it for the model whose MLC
/// `model_config` is `mc`: the MLC-only keys dropped, the context window as
/// `max_position_embeddings`, Llama's RoPE base as `rope_theta`.
fn hf_config(model_type: &str, mc: &Map<String, Value>) -> Value {
    let mut hf = Map::new();
    hf.insert("model_type".into(), json!(model_type));
    for (key, value) in mc {
        match key.as_str() {
            "context_window_size" => {
                hf.insert("max_position_embeddings".into(), value.clone());
            }
            "position_embedding_base" => {
                hf.insert("rope_theta".into(), value.clone());
            }
            "prefill_chunk_size"
            | "tensor_parallel_shards"
            | "max_batch_size"
            | "dtype"
            | "pipeline_parallel_stages"
            | "disaggregation"
            | "weight_block_size" => {}
            _ => {
                hf.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(hf)
}

/// Writes `model.safetensors` (float32, random values) with every tensor the
/// family needs, plus `config.json`.
fn write_source(dir: &Path, hf: &Value) {
    let family = Family::from_hf_config(hf).unwrap();
    let overrides =
        Overrides { context_window_size: None, prefill_chunk_size: None, max_batch_size: 128 };
    let dims = Dims::from_model_config(&family.model_config(hf, &overrides).unwrap()).unwrap();
    let mut tensors: Vec<(String, Vec<usize>)> =
        params(family, &dims).into_iter().flat_map(|p| p.sources).collect();
    tensors.sort();
    let mut header = Map::new();
    let mut data = Vec::new();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for (name, shape) in &tensors {
        let start = data.len();
        for _ in 0..shape.iter().product::<usize>() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let value = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            data.extend_from_slice(&value.to_le_bytes());
        }
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let text = serde_json::to_vec(&header).unwrap();
    let mut file = (text.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&text);
    file.extend_from_slice(&data);
    fs::write(dir.join("model.safetensors"), file).unwrap();
    fs::write(dir.join("config.json"), serde_json::to_vec_pretty(hf).unwrap()).unwrap();
}

/// Every record as (dataPath, name, shape, dtype, nbytes, byteOffset), and the shard sizes.
fn layout(index: &Value) -> Vec<(String, String, Value, String, u64, u64)> {
    let mut out = Vec::new();
    for shard in index["records"].as_array().unwrap() {
        for r in shard["records"].as_array().unwrap() {
            out.push((
                shard["dataPath"].as_str().unwrap().to_string(),
                r["name"].as_str().unwrap().to_string(),
                r["shape"].clone(),
                r["dtype"].as_str().unwrap().to_string(),
                r["nbytes"].as_u64().unwrap(),
                r["byteOffset"].as_u64().unwrap(),
            ));
        }
    }
    out
}

fn check(case: &str, shard_cap: u64) {
    let official = synthetic(case);
    let config = read_json(&official.join("mlc-chat-config.json"));
    let model_type = config["model_type"].as_str().unwrap();
    let hf = hf_config(model_type, config["model_config"].as_object().unwrap());
    let temp = tempfile::tempdir().unwrap();
    let source = temp.path().join("hf");
    fs::create_dir(&source).unwrap();
    write_source(&source, &hf);
    let out = temp.path().join("out");
    let mut checkpoint = HfFolder::open(&source).unwrap();
    let options = ConvertOptions { shard_cap, ..ConvertOptions::new(Quantization::Q4F16_1) };
    let mut steps = Vec::new();
    let summary = convert_with_progress(&mut checkpoint, &options, &out, &mut |step| {
        steps.push((step.done, step.total, step.name.to_string()));
    })
    .unwrap();
    // One report per parameter, counting up to all of them; a q4 parameter
    // is two records (codes and scales), so there are at most as many as records.
    let total = steps.len();
    assert!(
        total > 0 && total <= summary.tensors,
        "{case}: {total} reports, {} records",
        summary.tensors
    );
    for (i, (done, of, name)) in steps.iter().enumerate() {
        assert_eq!((*done, *of), (i + 1, total), "{case}: report {i} ({name})");
    }
    let ours = read_json(&out.join("mlc-chat-config.json"));
    assert_eq!(ours["model_config"], config["model_config"], "{case}: model_config");
    for key in ["vocab_size", "context_window_size", "prefill_chunk_size", "active_vocab_size"] {
        assert_eq!(ours[key], config[key], "{case}: {key}");
    }
    let index = read_json(&out.join("tensor-cache.json"));
    let expected = read_json(&official.join("tensor-cache.json"));
    assert_eq!(layout(&index), layout(&expected), "{case}: records");
    assert_eq!(index["metadata"]["ParamBytes"], expected["metadata"]["ParamBytes"], "{case}");
}

#[test]
fn qwen3_with_qk_norms_and_an_odd_vocab() {
    check("qwen3-tiny", 32 << 20);
}

#[test]
fn qwen2_gqa_untied_across_six_shards() {
    check("qwen2-gqa7", 280_000);
}

#[test]
fn llama_with_a_tail_group() {
    check("llama-odd-ffn", 32 << 20);
}

#[test]
fn llama3_rope_scaling_is_kept() {
    check("llama3-scaled", 32 << 20);
}
