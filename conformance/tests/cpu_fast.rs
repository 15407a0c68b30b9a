//! The fast CPU engine (int16 activations, SIMD, threads) against the float32
//! CPU engine, the oracle, on every fixture and family: the last position's
//! logits of every prompt within the GPU engine's tolerance (5e-2 × the
//! oracle's logit std), greedy tokens identical for the fixtures' reference
//! lengths, prompts cut into calls, and the queued greedy path. q4f32_1,
//! q0f16 and q0f32 conversions of a family run the same checks.
//!
//! Each check prints its worst error relative to the oracle's logit std
//! (`--nocapture`); docs/conformance.md records them.

use mlc_conformance::*;
use mlc_engine::{GreedyOptions, LanguageModel, generate_greedy, load_cpu, load_cpu_fast};
use mlc_loader::{Artifact, OpenOptions, Quantization};
use pollster::FutureExt as _;

/// Runs every check on `artifact` with `model`'s reference prompts.
fn check_against_oracle(what: &str, model: &str, artifact: &Artifact) {
    let mut oracle = load_cpu(artifact).unwrap();
    let mut fast = load_cpu_fast(artifact).unwrap();
    let mut worst = 0.0f32;
    for mut prompt in golden(model).prompts {
        oracle.reset();
        fast.reset();
        let want = oracle.prefill(&prompt.token_ids).block_on().unwrap();
        let got = fast.prefill(&prompt.token_ids).block_on().unwrap();
        assert_close(&format!("{what} {} last logits", prompt.name), &got, &want, GPU_TOLERANCE);
        worst = worst.max(max_abs_diff(&got, &want) / std_dev(&want));

        // A prompt cut into calls and decoded a token at a time crosses the
        // KV cache between calls, as a chat does.
        fast.reset();
        let mut chunked = Vec::new();
        for chunk in prompt.token_ids.chunks(5) {
            chunked = fast.prefill(chunk).block_on().unwrap();
        }
        assert_close(&format!("{what} {} in calls", prompt.name), &chunked, &want, GPU_TOLERANCE);

        let options = GreedyOptions { max_tokens: prompt.greedy_16.len(), stop_token_ids: vec![] };
        oracle.reset();
        fast.reset();
        let oracle_tokens = generate_greedy(&mut oracle, &prompt.token_ids, &options);
        let oracle_tokens = oracle_tokens.block_on().unwrap();
        let fast_tokens =
            generate_greedy(&mut fast, &prompt.token_ids, &options).block_on().unwrap();
        assert_eq!(fast_tokens, oracle_tokens, "{what} {} greedy tokens", prompt.name);
        // The queued path follows the oracle's tokens (the reference's are
        // for q4f16_1; another quantization may continue differently).
        prompt.greedy_16 = oracle_tokens;
        check_queued_greedy(&format!("{what} {}", prompt.name), &mut fast, &prompt);
    }
    eprintln!("WORST {what}: max |Δ| = {worst:.1e} × the oracle's logit std");
}

#[test]
fn fast_engine_follows_the_oracle_on_the_tiny_fixtures() {
    for model in TINY_MODELS {
        let artifact =
            Artifact::open(tiny_artifact(model).to_str().unwrap(), OpenOptions::default()).unwrap();
        check_against_oracle(model, model, &artifact);
    }
}

#[test]
fn fast_engine_follows_the_oracle_on_every_family() {
    for model in FAMILY_MODELS {
        let (_temp, artifact) = converted_family(model);
        check_against_oracle(model, model, &artifact);
    }
}

#[test]
fn fast_engine_follows_the_oracle_in_every_quantization() {
    let model = "families/mistral-tiny";
    for quantization in [Quantization::Q4F32_1, Quantization::Q0F16, Quantization::Q0F32] {
        let temp = tempfile::tempdir().unwrap();
        let out = temp.path().join("mlc");
        let mut checkpoint =
            mlc_convert::HfFolder::open(&fixtures_dir().join(model).join("hf_source")).unwrap();
        let options = mlc_convert::ConvertOptions { quantization, ..Default::default() };
        mlc_convert::convert(&mut checkpoint, &options, &out).unwrap();
        let artifact = Artifact::open(out.to_str().unwrap(), OpenOptions::default()).unwrap();
        assert_eq!(artifact.quantization(), quantization);
        check_against_oracle(&format!("{model} {}", quantization.name()), model, &artifact);
    }
}
