//! The CPU and GPU engines on a real model: SmolLM2-135M-Instruct in MLC q4f16_1 format,
//! against an independent numpy float32 implementation (step-0 logits and
//! greedy continuations of four prompts, e.g. "The capital of France is Paris.").
//!
//! The artifact (75 MB) is not in the repository: it is read from
//! `../shared/data/` (see `shared_path`, which reports loudly when it is absent).

use mlc_conformance::*;
use mlc_loader::{Artifact, OpenOptions};
use mlc_kernels::{ContextOptions, GpuContext};
use mlc_wgpu::gpu::GpuOptions;
use mlc_wgpu::{generate_greedy, load_cpu, load_gpu, GreedyOptions, LanguageModel};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    step0_logits_file: String,
}

/// The artifact and its reference, or `None` (reported loudly) without `../shared`.
fn fixture() -> Option<(Artifact, Reference, std::path::PathBuf)> {
    let model_dir = shared_path("data/smollm2-135m-instruct-q4f16_1-mlc")?;
    let reference_dir = shared_path("data/smollm2-135m-instruct-q4f16_1-mlc-reference")?;
    let reference: Reference =
        serde_json::from_str(&std::fs::read_to_string(reference_dir.join("reference.json")).unwrap()).unwrap();
    let artifact = Artifact::open(model_dir.to_str().unwrap(), OpenOptions::default()).unwrap();
    Some((artifact, reference, reference_dir))
}

/// Step-0 logits within `tolerance` and greedy ids identical, for every case.
fn check(engine: &mut dyn LanguageModel, artifact: &Artifact, reference: &Reference, reference_dir: &std::path::Path, what: &str, tolerance: f32) {
    let stop_token_ids = artifact.config.conv_template.as_ref().unwrap().stop_token_ids.clone();
    for case in &reference.cases {
        engine.reset();
        let logits = engine.prefill(&case.prompt_ids).unwrap();
        let want = read_f32(&reference_dir.join(&case.step0_logits_file));
        assert_close(&format!("{what} smollm2 {} step-0 logits", case.name), &logits, &want, tolerance);

        engine.reset();
        let options = GreedyOptions { max_tokens: case.greedy_ids.len(), stop_token_ids: stop_token_ids.clone() };
        let tokens = generate_greedy(engine, &case.prompt_ids, &options).unwrap();
        assert_eq!(tokens, case.greedy_ids, "{what} smollm2 {} greedy ids", case.name);
    }
}

#[test]
fn cpu_reproduces_the_reference_greedy_answers() {
    let Some((artifact, reference, reference_dir)) = fixture() else { return };
    let mut engine = load_cpu(&artifact).unwrap();
    check(&mut engine, &artifact, &reference, &reference_dir, "cpu", CPU_TOLERANCE);
}

#[test]
fn gpu_reproduces_the_reference_greedy_answers() {
    let Some((artifact, reference, reference_dir)) = fixture() else { return };
    let ctx = GpuContext::new_blocking(&ContextOptions::from_env()).expect("a GPU adapter (lavapipe in CI)");
    let mut engine = load_gpu(&artifact, ctx, GpuOptions::default()).unwrap();
    check(&mut engine, &artifact, &reference, &reference_dir, "gpu", GPU_TOLERANCE);
}
