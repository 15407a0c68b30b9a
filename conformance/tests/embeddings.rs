//! The BERT encoder (`families/bert-tiny`, made by `conformance/tools/make_bert.py`):
//! the Hugging Face checkpoint converted to q0f32 by `mlc-wgpu convert` and
//! run on the CPU and GPU encoders, against transformers' BertModel on the same weights.

use mlc_conformance::{
    GPU_TOLERANCE, assert_close, converted_family, converted_family_as, fixtures_dir, read_f32,
};
use mlc_engine::{CpuEncoder, EmbeddingModel, EngineError, GpuEncoder};
use mlc_kernels::{ContextOptions, GpuContext};
use mlc_loader::Quantization;
use serde::Deserialize;

const MODEL: &str = "families/bert-tiny";

#[derive(Deserialize)]
struct Golden {
    cpu_tolerance: f32,
    inputs: Vec<GoldenInput>,
}

#[derive(Deserialize)]
struct GoldenInput {
    ids: Vec<u32>,
    first_row: String,
    all_rows: Option<String>,
}

fn golden() -> Golden {
    let path = fixtures_dir().join(MODEL).join("golden/index.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("golden index"))
        .expect("parse the golden index")
}

fn golden_file(name: &str) -> Vec<f32> {
    read_f32(&fixtures_dir().join(MODEL).join("golden").join(name))
}

fn encoder() -> (tempfile::TempDir, CpuEncoder) {
    let (temp, artifact) = converted_family_as(MODEL, Quantization::Q0F32);
    let encoder = CpuEncoder::load(&artifact).expect("load the encoder");
    (temp, encoder)
}

#[test]
fn cpu_encoder_matches_transformers() {
    let golden = golden();
    let (_temp, mut encoder) = encoder();
    let inputs: Vec<Vec<u32>> = golden.inputs.iter().map(|i| i.ids.clone()).collect();
    let embeddings = pollster::block_on(encoder.embed(&inputs)).expect("embed");
    assert_eq!(embeddings.len(), inputs.len());
    for (input, embedding) in golden.inputs.iter().zip(&embeddings) {
        let what = format!("first row of {} tokens", input.ids.len());
        assert_close(&what, embedding, &golden_file(&input.first_row), golden.cpu_tolerance);
        if let Some(all) = &input.all_rows {
            let states = pollster::block_on(encoder.encode(&input.ids)).expect("encode");
            assert_close("every row", &states, &golden_file(all), golden.cpu_tolerance);
        }
    }
}

/// The portable context and the adapter's own (subgroups; tensor cores where
/// it has them).
fn gpu_contexts() -> [(&'static str, GpuContext); 2] {
    let portable =
        GpuContext::new_blocking(&ContextOptions { portable_only: true, ..Default::default() })
            .expect("a GPU adapter (lavapipe in CI)");
    let fast = GpuContext::new_blocking(&ContextOptions::default()).expect("a GPU adapter");
    [("portable", portable), ("fast", fast)]
}

#[test]
fn gpu_encoder_matches_transformers_on_both_paths() {
    let golden = golden();
    let (_temp, artifact) = converted_family_as(MODEL, Quantization::Q0F32);
    let inputs: Vec<Vec<u32>> = golden.inputs.iter().map(|i| i.ids.clone()).collect();
    let mut cpu = CpuEncoder::load(&artifact).expect("load the CPU encoder");
    for (path, ctx) in gpu_contexts() {
        // Without tensor cores every product sums f32 values, so the GPU also
        // stays within the CPU's bound of the CPU encoder's rows (which tells a
        // tanh GELU or a missing bias apart; the GPU bound would not).
        let f32_only = !ctx.caps.cooperative_matrix;
        let mut gpu = GpuEncoder::load(&artifact, ctx).expect("load the GPU encoder");
        let embeddings = pollster::block_on(gpu.embed(&inputs)).expect("embed");
        assert_eq!(embeddings.len(), inputs.len());
        for (input, embedding) in golden.inputs.iter().zip(&embeddings) {
            let what = format!("gpu {path}: first row of {} tokens", input.ids.len());
            assert_close(&what, embedding, &golden_file(&input.first_row), GPU_TOLERANCE);
            let states = pollster::block_on(gpu.encode(&input.ids)).expect("encode");
            assert_eq!(
                &states[..embedding.len()],
                &embedding[..],
                "{what}: embed is encode's first row"
            );
            if let Some(all) = &input.all_rows {
                let what = format!("gpu {path}: every row");
                assert_close(&what, &states, &golden_file(all), GPU_TOLERANCE);
            }
            if f32_only {
                let want = pollster::block_on(cpu.encode(&input.ids)).expect("CPU encode");
                let what = format!(
                    "gpu {path}: every row of {} tokens against the CPU encoder",
                    input.ids.len()
                );
                assert_close(&what, &states, &want, golden.cpu_tolerance);
            }
        }
    }
}

#[test]
fn the_gpu_encoder_refuses_what_the_cpu_one_refuses_and_a_lost_device() {
    let (_temp, artifact) = converted_family_as(MODEL, Quantization::Q0F32);
    let ctx = GpuContext::new_blocking(&ContextOptions::default()).expect("a GPU adapter");
    let mut encoder = GpuEncoder::load(&artifact, ctx).expect("load the GPU encoder");
    let window = encoder.spec().context_window_size;
    let too_long = vec![5u32; window + 1];
    let err = pollster::block_on(encoder.encode(&too_long)).unwrap_err();
    assert!(matches!(err, EngineError::ContextWindowExceeded { needed: 65, window: 64 }), "{err}");
    // The longest input still runs, and a short one after it sees none of its rows.
    assert!(pollster::block_on(encoder.encode(&too_long[1..])).is_ok());
    let err = pollster::block_on(encoder.encode(&[])).unwrap_err();
    assert!(matches!(err, EngineError::EmptyInput), "{err}");
    let vocab = encoder.spec().vocab_size as u32;
    let err = pollster::block_on(encoder.embed(&[vec![2], vec![2, vocab]])).unwrap_err();
    assert!(matches!(err, EngineError::TokenOutOfRange { .. }), "{err}");
    encoder.context().health().record_lost("test: the device went away".into());
    let err = pollster::block_on(encoder.embed(&[vec![2, 3]])).unwrap_err();
    assert!(err.is_device_lost(), "{err}");
}

#[test]
fn a_q0f16_artifact_holds_the_same_weights_and_matches_too() {
    // The weights are bf16-valued, which f16 holds exactly in their range: the encoder, which
    // computes in f32 whatever the storage, gives the q0f32 artifact's rows.
    let golden = golden();
    let (_temp, artifact) = converted_family_as(MODEL, Quantization::Q0F16);
    assert_eq!(
        artifact.tensor("encoder.layer.0.output.dense.weight").unwrap().dtype,
        mlc_loader::DType::F16
    );
    let mut encoder = CpuEncoder::load(&artifact).expect("load the q0f16 encoder");
    let input = &golden.inputs[3];
    let rows = pollster::block_on(encoder.embed(std::slice::from_ref(&input.ids))).expect("embed");
    assert_close("q0f16 first row", &rows[0], &golden_file(&input.first_row), golden.cpu_tolerance);
}

#[test]
fn inputs_the_encoder_cannot_run_are_errors() {
    let (_temp, mut encoder) = encoder();
    let window = encoder.spec().context_window_size;
    assert_eq!(window, 64);
    let too_long = vec![5u32; window + 1];
    let err = pollster::block_on(encoder.encode(&too_long)).unwrap_err();
    assert!(matches!(err, EngineError::ContextWindowExceeded { needed: 65, window: 64 }), "{err}");
    // The longest input still runs.
    assert!(pollster::block_on(encoder.encode(&too_long[1..])).is_ok());
    let err = pollster::block_on(encoder.encode(&[])).unwrap_err();
    assert!(matches!(err, EngineError::EmptyInput), "{err}");
    let vocab = encoder.spec().vocab_size as u32;
    let err = pollster::block_on(encoder.encode(&[2, vocab])).unwrap_err();
    assert!(matches!(err, EngineError::TokenOutOfRange { .. }), "{err}");
}

#[test]
fn an_encoder_is_not_a_chat_model_and_a_chat_model_is_not_an_encoder() {
    let (_temp, artifact) = converted_family_as(MODEL, Quantization::Q0F32);
    let err = mlc_engine::load_cpu(&artifact).err().expect("a chat load of bert fails");
    assert!(matches!(err, EngineError::NotAChatModel { .. }), "{err}");
    assert!(err.to_string().contains("embedding model"), "{err}");
    let (_temp2, chat) = converted_family("families/mistral-tiny");
    let err = CpuEncoder::load(&chat).err().expect("an encoder load of mistral fails");
    assert!(matches!(err, EngineError::NotAnEmbeddingModel { .. }), "{err}");
}

#[test]
fn the_converted_config_says_embedding_and_a_q4_conversion_is_refused() {
    let (_temp, artifact) = converted_family_as(MODEL, Quantization::Q0F32);
    let config: serde_json::Value =
        serde_json::from_slice(&artifact.file(mlc_loader::CONFIG_FILE).expect("the chat config"))
            .expect("JSON");
    assert_eq!(config["model_type"], "bert");
    assert_eq!(config["model_task"], "embedding");
    assert_eq!(config["embedding_metadata"]["pooling_strategy"], "cls");
    assert_eq!(config["model_config"]["context_window_size"], 64);
    assert_eq!(config["model_config"]["head_dim"], 16);
    assert_eq!(config["prefill_chunk_size"], 64);
    assert!(artifact.has_tensor("encoder.layer.1.attention.self.qkv.bias"));
    assert!(!artifact.has_tensor("pooler.dense.weight"));

    let temp = tempfile::tempdir().expect("a temporary folder");
    let mut checkpoint =
        mlc_convert::HfFolder::open(&fixtures_dir().join(MODEL).join("hf_source")).expect("open");
    let err = mlc_convert::convert(
        &mut checkpoint,
        &mlc_convert::ConvertOptions::default(),
        &temp.path().join("q4"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("q0f32"), "{err}");
}
