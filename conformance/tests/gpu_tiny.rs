//! The GPU engine (WGSL kernels through wgpu) against the same float32
//! references as the CPU engine, on the portable path (no f16, no subgroups)
//! and on the device's fast paths. In CI this runs on Mesa's lavapipe.

use mlc_conformance::*;
use mlc_engine::gpu::{GpuBackend, GpuOptions};
use mlc_engine::{GreedyOptions, LanguageModel, Model, generate_greedy, load_gpu};
use mlc_kernels::{ContextOptions, GpuContext};
use mlc_loader::{Artifact, OpenOptions};
use pollster::FutureExt as _;

/// Both paths every run: portable, and whatever the adapter offers.
fn contexts() -> Vec<(&'static str, GpuContext)> {
    let portable =
        GpuContext::new_blocking(&ContextOptions { portable_only: true, ..Default::default() })
            .expect("a GPU adapter (lavapipe in CI)");
    let fast = GpuContext::new_blocking(&ContextOptions::default()).expect("a GPU adapter");
    if !fast.caps.shader_f16 || !fast.caps.subgroups {
        eprintln!(
            "!! the adapter lacks shader-f16 or subgroups ({:?}): the fast path is only partly exercised",
            fast.caps
        );
    }
    if !fast.caps.cooperative_matrix {
        eprintln!(
            "!! the adapter has no 16x16x16 f16 -> f32 cooperative matrices: the tensor-core prefill is not exercised"
        );
    }
    vec![("portable", portable), ("fast", fast)]
}

fn load(model: &str, ctx: &GpuContext) -> Model<GpuBackend> {
    let artifact =
        Artifact::open(tiny_artifact(model).to_str().unwrap(), OpenOptions::default()).unwrap();
    load_gpu(
        &artifact,
        ctx.clone(),
        GpuOptions { max_rows: 64, context_length: Some(512), ..GpuOptions::default() },
    )
    .unwrap()
}

#[test]
fn final_logits_and_hidden_states_match_on_both_paths() {
    for (path, ctx) in contexts() {
        for model in TINY_MODELS {
            let mut engine = load(model, &ctx);
            for prompt in golden(model).prompts {
                engine.reset();
                // The 130-token prompt spans three 64-row calls: chunking and the KV cache across calls.
                let logits = engine.prefill(&prompt.token_ids).block_on().unwrap();
                let want = golden_file(model, &prompt.last_logits_file);
                assert_close(
                    &format!("gpu {path} {model} {} last logits", prompt.name),
                    &logits,
                    &want,
                    GPU_TOLERANCE,
                );
                if let Some(files) = &prompt.hidden_trace_files {
                    engine.reset();
                    let (_, trace) = engine.trace(&prompt.token_ids).unwrap();
                    for (point, values) in &trace {
                        let want = golden_file(model, &files[point]);
                        assert_close(
                            &format!("gpu {path} {model} hidden {point}"),
                            values,
                            &want,
                            GPU_TOLERANCE,
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn greedy_tokens_are_identical_on_both_paths() {
    for (path, ctx) in contexts() {
        for model in TINY_MODELS {
            let mut engine = load(model, &ctx);
            for prompt in golden(model).prompts {
                engine.reset();
                let options = GreedyOptions { max_tokens: 16, stop_token_ids: Vec::new() };
                let tokens =
                    generate_greedy(&mut engine, &prompt.token_ids, &options).block_on().unwrap();
                assert_eq!(
                    tokens, prompt.greedy_16,
                    "gpu {path} {model} {} greedy tokens",
                    prompt.name
                );
            }
        }
    }
}

#[test]
fn queued_greedy_steps_follow_the_reference() {
    for (path, ctx) in contexts() {
        for model in TINY_MODELS {
            let mut engine = load(model, &ctx);
            for prompt in golden(model).prompts {
                check_queued_greedy(
                    &format!("gpu {path} {model} {}", prompt.name),
                    &mut engine,
                    &prompt,
                );
            }
        }
    }
}

#[test]
fn a_queued_step_is_submitted_before_the_previous_token_is_read() {
    use mlc_engine::backend::StepInput;
    let (_, ctx) = contexts().remove(0);
    let mut engine = load("tiny-qwen2", &ctx);
    let prompt = &golden("tiny-qwen2").prompts[1];
    let before = engine.backend().stats();
    engine.queue_greedy(StepInput::Tokens(&prompt.token_ids)).unwrap();
    engine.queue_greedy(StepInput::Queued).unwrap();
    let queued = engine.backend().stats();
    assert_eq!(queued.submissions - before.submissions, 2, "both steps are on the queue");
    assert_eq!(queued.wait, before.wait, "no token was waited for yet");
    assert_eq!(engine.next_queued().block_on().unwrap().token, prompt.greedy_16[0]);
    assert_eq!(engine.next_queued().block_on().unwrap().token, prompt.greedy_16[1]);
}

#[test]
fn a_decode_step_is_one_submission_and_a_four_byte_readback() {
    let (_, ctx) = contexts().remove(0);
    let mut engine = load("tiny-qwen2", &ctx);
    let prompt = &golden("tiny-qwen2").prompts[1];
    let first = engine.greedy_next(&prompt.token_ids).block_on().unwrap();
    let warm = engine.greedy_next(&[first]).block_on().unwrap();
    let before = engine.backend().stats();
    engine.greedy_next(&[warm]).block_on().unwrap();
    let after = engine.backend().stats();
    assert_eq!(after.submissions - before.submissions, 1, "submissions per decode step");
    assert_eq!(after.readback_bytes - before.readback_bytes, 4, "bytes read back per decode step");
    assert_eq!(
        after.activation_buffers, before.activation_buffers,
        "a decode step allocates no buffer"
    );
    assert_eq!(after.bindings, before.bindings, "a decode step binds no new kernel");

    // The model's default chat sampling (repetition penalty) and a bias, queued ahead with the
    // counts the GPU keeps: still one submission and four bytes, and no step waits for the host.
    use mlc_engine::backend::StepInput;
    use mlc_engine::sampling::{SamplingStep, TokenCounts};
    use mlc_kernels::cpu::SamplingParams;
    let params = SamplingParams {
        temperature: 0.7,
        repetition_penalty: 1.1,
        frequency_penalty: 0.3,
        ..SamplingParams::default()
    };
    let step = |counts, top_logprobs| SamplingStep {
        params: &params,
        logit_bias: &[(17, 2.0)],
        counts,
        active_vocab: None,
        uniform: 0.4,
        token_mask: None,
        top_logprobs,
    };
    engine.queue_sample(StepInput::Tokens(&[warm]), &step(TokenCounts::Start(&[]), 0)).unwrap();
    engine.queue_sample(StepInput::Queued, &step(TokenCounts::Kept, 0)).unwrap();
    engine.next_queued().block_on().unwrap();
    let before = engine.backend().stats();
    engine.queue_sample(StepInput::Queued, &step(TokenCounts::Kept, 0)).unwrap();
    let queued = engine.backend().stats();
    assert_eq!(queued.submissions - before.submissions, 1, "a penalised step is one submission");
    assert_eq!(queued.wait, before.wait, "queuing a penalised step waits for nothing");
    engine.next_queued().block_on().unwrap();
    engine.next_queued().block_on().unwrap();
    let after = engine.backend().stats();
    assert_eq!(after.submissions - before.submissions, 1, "submissions per penalised step");
    assert_eq!(after.readback_bytes - before.readback_bytes, 4, "bytes per penalised step");
    assert_eq!(after.activation_buffers, before.activation_buffers, "no buffer");
    assert_eq!(after.bindings, before.bindings, "no new kernel");

    // Five log probabilities come back in the same readback: 8 + 5 · 8 bytes.
    let before = engine.backend().stats();
    engine.queue_sample(StepInput::Queued, &step(TokenCounts::Kept, 5)).unwrap();
    let drawn = engine.next_queued().block_on().unwrap();
    let after = engine.backend().stats();
    assert_eq!(after.submissions - before.submissions, 1, "submissions with log probabilities");
    assert_eq!(after.readback_bytes - before.readback_bytes, 48, "bytes with 5 log probabilities");
    assert_eq!(drawn.probabilities.expect("asked for").top.len(), 5);
}

#[test]
fn default_options_serve_a_large_vocabulary() {
    // 256 rows of 151936 logits would exceed one storage binding: the logits
    // buffer must be sized for the rows actually needed.
    let (_, ctx) = contexts().remove(0);
    let artifact =
        Artifact::open(tiny_artifact("tiny-qwen2").to_str().unwrap(), OpenOptions::default())
            .unwrap();
    let mut engine = load_gpu(&artifact, ctx, GpuOptions::default()).unwrap();
    let prompt = &golden("tiny-qwen2").prompts[2];
    let options = GreedyOptions { max_tokens: 16, stop_token_ids: Vec::new() };
    assert_eq!(
        generate_greedy(&mut engine, &prompt.token_ids, &options).block_on().unwrap(),
        prompt.greedy_16
    );
    let all = engine.score(&prompt.token_ids[..3]).block_on().unwrap();
    assert_eq!(all.len(), 3 * 151936);
}

#[test]
fn gpu_sampling_draws_the_cpu_engines_tokens() {
    use mlc_engine::sampling::{SamplingStep, TokenCounts};
    use mlc_kernels::cpu::SamplingParams;
    let (_, ctx) = contexts().remove(0);
    let artifact =
        Artifact::open(tiny_artifact("tiny-llama").to_str().unwrap(), OpenOptions::default())
            .unwrap();
    let mut gpu = load_gpu(
        &artifact,
        ctx,
        GpuOptions { max_rows: 64, context_length: Some(512), ..GpuOptions::default() },
    )
    .unwrap();
    let mut cpu = mlc_engine::load_cpu(&artifact).unwrap();
    let prompt = &golden("tiny-llama").prompts[2].token_ids;
    let params = SamplingParams {
        temperature: 0.7,
        top_p: 0.9,
        repetition_penalty: 1.3,
        presence_penalty: 0.5,
        frequency_penalty: 0.2,
    };
    let appeared = [(prompt[0], 2), (prompt[5], 1)];
    let bias = [(17, 3.0), (prompt[7], -2.0)];
    let mut drawn = std::collections::BTreeSet::new();
    for (i, uniform) in [0.03f32, 0.31, 0.52, 0.77, 0.96].into_iter().enumerate() {
        let step = SamplingStep {
            params: &params,
            logit_bias: &bias,
            counts: TokenCounts::Start(&appeared),
            active_vocab: None,
            uniform,
            token_mask: None,
            top_logprobs: 0,
        };
        gpu.reset();
        cpu.reset();
        let on_gpu = gpu.sample_next(prompt, &step).block_on().unwrap().token;
        let on_cpu = cpu.sample_next(prompt, &step).block_on().unwrap().token;
        assert_eq!(on_gpu, on_cpu, "draw {i} with u = {uniform}");
        drawn.insert(on_gpu);
    }
    assert!(drawn.len() > 1, "different uniforms should reach different tokens: {drawn:?}");
}

#[test]
fn gpu_sampling_draws_only_masked_in_tokens_as_the_cpu_engine_does() {
    use mlc_engine::sampling::{SamplingStep, TokenCounts};
    use mlc_kernels::cpu::SamplingParams;
    let (_, ctx) = contexts().remove(0);
    let artifact =
        Artifact::open(tiny_artifact("tiny-llama").to_str().unwrap(), OpenOptions::default())
            .unwrap();
    let mut gpu = load_gpu(
        &artifact,
        ctx,
        GpuOptions { max_rows: 64, context_length: Some(512), ..GpuOptions::default() },
    )
    .unwrap();
    let mut cpu = mlc_engine::load_cpu(&artifact).unwrap();
    let prompt = &golden("tiny-llama").prompts[2].token_ids;
    let vocab = artifact.config.vocab_size;
    // Allowed: the ids ranked 50th to 54th by logit — close enough to be drawn alike, and every
    // more likely id (the unmasked argmax first) must be excluded.
    let logits = cpu.prefill(prompt).block_on().unwrap();
    cpu.reset();
    let mut ranked: Vec<u32> = (0..vocab as u32).collect();
    ranked.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    let allowed: Vec<u32> = ranked[50..55].to_vec();
    let mut mask = vec![0u32; vocab.div_ceil(32)];
    for &id in &allowed {
        mask[id as usize / 32] |= 1 << (id % 32);
    }
    let params = SamplingParams { temperature: 1.0, ..SamplingParams::default() };
    let greedy = SamplingParams { temperature: 0.0, ..SamplingParams::default() };
    let mut drawn = std::collections::BTreeSet::new();
    for (i, uniform) in [0.03f32, 0.31, 0.52, 0.77, 0.96].into_iter().enumerate() {
        for params in [&params, &greedy] {
            let step = SamplingStep {
                params,
                logit_bias: &[],
                counts: TokenCounts::Start(&[]),
                active_vocab: None,
                uniform,
                token_mask: Some(&mask),
                top_logprobs: 0,
            };
            gpu.reset();
            cpu.reset();
            let on_gpu = gpu.sample_next(prompt, &step).block_on().unwrap().token;
            let on_cpu = cpu.sample_next(prompt, &step).block_on().unwrap().token;
            assert_eq!(on_gpu, on_cpu, "draw {i} with u = {uniform}, T = {}", params.temperature);
            assert!(allowed.contains(&on_gpu), "draw {i} gave {on_gpu}, outside the mask");
            drawn.insert(on_gpu);
        }
    }
    assert!(drawn.len() > 1, "temperature 1 over five ids should reach more than one: {drawn:?}");
    // Plain greedy decoding after a masked step (another request's) ignores the old mask,
    // and after a step with bias and penalties ignores those too.
    gpu.reset();
    cpu.reset();
    assert_eq!(
        gpu.greedy_next(prompt).block_on().unwrap(),
        cpu.greedy_next(prompt).block_on().unwrap(),
        "greedy after a mask"
    );
    let penalised =
        SamplingParams { temperature: 0.0, repetition_penalty: 1.5, ..SamplingParams::default() };
    let biased = [(allowed[0], 50.0)];
    let appeared = [(ranked[0], 3)];
    let step = SamplingStep {
        params: &penalised,
        logit_bias: &biased,
        counts: TokenCounts::Start(&appeared),
        active_vocab: Some(vocab - 7),
        uniform: 0.5,
        token_mask: None,
        top_logprobs: 0,
    };
    gpu.reset();
    assert_eq!(
        gpu.sample_next(prompt, &step).block_on().unwrap().token,
        allowed[0],
        "the bias decides this step"
    );
    gpu.reset();
    cpu.reset();
    assert_eq!(
        gpu.greedy_next(prompt).block_on().unwrap(),
        cpu.greedy_next(prompt).block_on().unwrap(),
        "greedy after bias and penalties"
    );
    // The mask is cleared by the next unmasked sampled step.
    let step = SamplingStep {
        params: &greedy,
        logit_bias: &[],
        counts: TokenCounts::Start(&[]),
        active_vocab: None,
        uniform: 0.5,
        token_mask: None,
        top_logprobs: 0,
    };
    gpu.reset();
    cpu.reset();
    assert_eq!(
        gpu.sample_next(prompt, &step).block_on().unwrap().token,
        cpu.sample_next(prompt, &step).block_on().unwrap().token
    );
}
