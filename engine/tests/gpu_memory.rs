//! The GPU engine's memory plan (`inspect`, the out-of-memory error) against
//! the buffers the engine really makes: after a load and the steps a chat
//! round takes (a full-width prompt step, sampled decode steps with penalties,
//! a bias and log probabilities), every byte made is within the plan, and the
//! parts the plan knows exactly (weights, KV cache) are what was made; with
//! several sequences, after batched steps too. On lavapipe in CI.

use mlc_conformance::artifacts;

use artifacts::fixture;
use mlc_engine::gpu::GpuOptions;
use mlc_engine::sampling::{SamplingStep, TokenCounts};
use mlc_engine::{BatchRow, BatchedModel, LanguageModel, load_gpu};
use mlc_kernels::cpu::SamplingParams;
use mlc_kernels::{ContextOptions, GpuContext};
use mlc_loader::{Artifact, OpenOptions};
use pollster::FutureExt as _;

#[test]
fn the_memory_plan_bounds_what_a_load_and_a_chat_round_allocate() {
    let artifact = Artifact::open(
        &fixture("tiny-qwen2").join("mlc").to_string_lossy(),
        OpenOptions::default(),
    )
    .unwrap();
    for sequences in [1, 3] {
        check_plan(&artifact, sequences);
    }
    // Mistral's rolling cache: its rings beside the caches its passes attend over.
    let (_folder, artifact) = mlc_conformance::converted_family("families/mistral-window-tiny");
    check_plan(&artifact, 2);
}

/// Loads `artifact` for `sequences` sequences, runs a sampled round in each
/// and (with several) batched steps over all of them, and checks the plan.
fn check_plan(artifact: &Artifact, sequences: usize) {
    // A context of its own: its count holds this model's buffers only.
    let ctx = GpuContext::new_blocking(&ContextOptions::from_env())
        .expect("a GPU adapter (lavapipe in CI)");
    let rows = 64;
    let mut model = load_gpu(
        artifact,
        ctx.clone(),
        GpuOptions { max_rows: rows, context_length: Some(512), sequences },
    )
    .unwrap();
    let plan = model.backend().memory_plan(model.spec(), artifact);
    let loaded = ctx.created_bytes();
    assert!(
        loaded >= plan.weight_bytes() + plan.kv_bytes(),
        "the load made {loaded} bytes, less than the weights and KV cache it plans:\n{plan}"
    );

    let params = SamplingParams {
        temperature: 0.7,
        top_p: 0.8,
        repetition_penalty: 1.1,
        frequency_penalty: 0.2,
        ..SamplingParams::default()
    };
    let step = |counts, uniform| SamplingStep {
        params: &params,
        logit_bias: &[(17, 2.0)],
        counts,
        active_vocab: None,
        uniform,
        token_mask: None,
        top_logprobs: 5,
    };
    let prompt: Vec<u32> = (0..rows as u32).map(|i| 100 + 7 * i).collect();
    let mut last = Vec::new();
    for sequence in 0..sequences {
        model.select_sequence(sequence).unwrap();
        let mut token = model.sample_next(&prompt, &step(TokenCounts::Start(&[]), 0.3)).block_on();
        for i in 0..4 {
            let fed = [token.unwrap().token];
            token = model.sample_next(&fed, &step(TokenCounts::Kept, 0.1 * i as f32)).block_on();
        }
        last.push(token.unwrap().token);
    }
    if sequences > 1 {
        let kept = step(TokenCounts::Kept, 0.5);
        for _ in 0..3 {
            let rows: Vec<BatchRow> = (0..sequences)
                .map(|sequence| BatchRow {
                    sequence,
                    token: Some(last[sequence]),
                    step: Some(&kept),
                })
                .collect();
            let drawn = model.decode_batch(&rows).block_on().unwrap();
            last = drawn.into_iter().map(|d| d.unwrap().token).collect();
        }
    }

    let made = ctx.created_bytes();
    let planned = plan.total();
    assert!(
        made <= planned,
        "{sequences} sequence(s): made {made} bytes, the plan says at most {planned}:\n{plan}"
    );
    // The weights and the KV cache are planned exactly; what the plan gives
    // the rest (an upper bound) is not wildly more than a full step takes.
    let rest = made - (plan.weight_bytes() + plan.kv_bytes());
    assert!(
        rest * 2 >= plan.scratch + plan.activations,
        "scratch and activations: made {rest} bytes, planned {}:\n{plan}",
        plan.scratch + plan.activations
    );
}
