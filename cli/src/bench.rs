//! `mlc-wgpu bench`: load time, time to first token, prefill and decode speed
//! of an artifact (real, or made by `synth`), and with `--kernels` the memory
//! bandwidth one matrix product reaches next to a plain buffer copy; with
//! `--profile`, the GPU time of each kernel of a decode step and a prefill.
//!
//! Every figure is wall-clock time around work the host waits for: a step
//! ends with its token id read back (4 bytes on the GPU), and kernel batches
//! end with `device.poll(wait)`. Decode is timed as generation runs it (each
//! step queued before the previous token is read) and, as the baseline in the
//! same run, one step at a time. With `--batch`, several sequences also step
//! together (one pass, one token each), against one sequence stepping alone
//! in the same run. docs/performance.md describes the method.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use mlc_engine::backend::StepInput;
use mlc_engine::gpu::{GpuBackend, GpuOptions, GpuStats};
use mlc_engine::model::Model;
use mlc_engine::profile::Profile;
use mlc_engine::sampling::{SamplingStep, TokenCounts};
use mlc_engine::{
    BatchRow, BatchedModel, GreedyOptions, LanguageModel, STEPS_AHEAD, generate_greedy, load_gpu,
};
use mlc_kernels::cpu::SamplingParams;
use mlc_kernels::{
    FloatFormat, GpuContext, GpuWeight, Kernel, Matmul, MatmulBuffers, MatmulInput, MatmulShape,
    Residual, Step, WeightFormat,
};
use mlc_loader::DType;
use pollster::FutureExt as _;
use serde::Serialize;

use crate::args::{Device, SourceArgs};
use crate::load;
use crate::synth::{Fill, SplitMix64};

/// Decode steps run (untimed) after each prefill, so that the timed steps
/// find every kernel bound and every buffer allocated.
const WARM_STEPS: usize = 2;
/// Tokens of the warm-up prefill that precedes the measurements.
const WARM_PROMPT: usize = 32;
/// Tokens of each sequence's prompt before `--batch`'s steps.
const BATCH_PROMPT: usize = 64;
/// A kernel measurement doubles its batch until one batch lasts this long, so
/// that submission and polling overheads vanish next to the GPU time.
const MIN_BATCH: Duration = Duration::from_millis(200);

/// The arguments of `mlc-wgpu bench`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Which engine computes.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    device: Device,
    /// Length of the random prompt whose prefill is timed.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    prompt_tokens: u32,
    /// Tokens generated after the prompt (the first comes from the prefill).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(2..))]
    gen_tokens: u32,
    /// Context lengths at which decode speed is measured on its own (skipped
    /// where the KV cache is too small).
    #[arg(long, value_delimiter = ',', default_value = "128,1024,4096")]
    contexts: Vec<usize>,
    /// Numbers of sequences that also decode together, one token each per
    /// pass (`--context-steps` passes after a 64-token prompt each; skipped
    /// where the engine holds fewer sequences).
    #[arg(long, value_delimiter = ',')]
    batch: Vec<usize>,
    /// Decode steps timed at each of `--contexts`.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    context_steps: u32,
    /// Also time single matrix products of the model's lm_head and gate_up
    /// shapes against buffer copies, by the driver and by a shader, and a
    /// chain of dependent dispatches that do nothing (GPU only).
    #[arg(long)]
    kernels: bool,
    /// MiB of weights each kernel timing cycles through; keep it well above the
    /// GPU's last-level cache so that the figures are memory bandwidth.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    kernel_mib: u64,
    /// Seed of the random prompt tokens and kernel inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also time every kernel of `--context-steps` decode steps (at the first
    /// of `--contexts`) and of one prefill with GPU timestamps (GPU only).
    #[arg(long)]
    profile: bool,
    /// Print one JSON object (one line) instead of text.
    #[arg(long)]
    json: bool,
}

/// Everything `bench` measured.
#[derive(Serialize)]
struct Report {
    model: String,
    model_type: String,
    quantization: String,
    weight_bytes: u64,
    device: &'static str,
    adapter: Option<String>,
    backend: Option<String>,
    /// The GPU kernels' optional features in use: `subgroups`, `shader-f16`,
    /// `cooperative-matrix` (the tensor-core prefill products).
    gpu_kernels: Option<Vec<&'static str>>,
    /// Opening the artifact (read, md5) and loading it onto the device.
    load_s: f64,
    prompt_tokens: usize,
    /// Prefill of the prompt and the first token's id on the host.
    ttft_s: f64,
    prefill_tok_s: f64,
    gen_tokens: usize,
    /// Steps after the first token, each queued before the previous token is read.
    decode_tok_s: f64,
    /// The same steps one at a time: each one token in, one id out, then the next.
    decode_stepwise_tok_s: f64,
    /// The same number of steps drawn with the model's own sampling settings
    /// (`mlc-chat-config.json`: temperature, top-p, penalties), queued ahead as
    /// a chat round runs them.
    decode_sampled_tok_s: f64,
    /// Those sampled steps one at a time (how chat ran rounds with penalties before
    /// the penalties' counts moved to the device).
    decode_sampled_stepwise_tok_s: f64,
    decode_at_context: Vec<ContextDecode>,
    skipped_contexts: Vec<usize>,
    /// One sequence's steps one at a time after a 64-token prompt: the
    /// baseline of `decode_batched` (present with `--batch`).
    decode_one_sequence_tok_s: Option<f64>,
    decode_batched: Vec<BatchDecode>,
    skipped_batches: Vec<usize>,
    kernels: Option<KernelReport>,
    profile: Option<ProfileReport>,
}

/// Where the GPU time of a decode step and of a prefill goes.
#[derive(Serialize)]
struct ProfileReport {
    decode: StepProfile,
    prefill: StepProfile,
    /// With `--batch`: passes over the largest batch, each row drawn with the
    /// model's sampling settings.
    batch: Option<StepProfile>,
}

/// One profiled phase: wall and GPU-busy time per submission, and the kernels.
#[derive(Serialize)]
struct StepProfile {
    /// Decode steps (or prefills) profiled.
    steps: usize,
    /// Tokens each step forwards.
    tokens: usize,
    /// Wall-clock time per step, profiling included.
    wall_us: f64,
    /// First to last timestamp per step: the GPU's busy time.
    gpu_busy_us: f64,
    /// Host time recording a step, before its submission (without profiling).
    encode_us: f64,
    /// From a step's submission to its result on the host (without profiling).
    wait_us: f64,
    kernels: Vec<KernelTime>,
}

/// GPU time of one kind of kernel per step.
#[derive(Serialize)]
struct KernelTime {
    name: String,
    calls_per_step: f64,
    us_per_step: f64,
}

/// Decode speed from a given context length.
#[derive(Serialize)]
struct ContextDecode {
    context: usize,
    steps: usize,
    /// Steps queued ahead, as generation runs them.
    tok_s: f64,
    /// Steps one at a time.
    stepwise_tok_s: f64,
}

/// Decode speed of several sequences stepping together.
#[derive(Serialize)]
struct BatchDecode {
    sequences: usize,
    steps: usize,
    /// Tokens of all sequences together per second, each row its most
    /// likely token.
    tok_s: f64,
    /// `tok_s` over one sequence's rate alone in the same run.
    vs_one_sequence: f64,
    /// The same with every row drawn with the model's sampling settings
    /// (each sequence its own penalty counts and random numbers), as `serve`
    /// draws a chat request's tokens.
    sampled_tok_s: f64,
}

/// Bandwidth of single kernels, next to that of two kinds of copy.
#[derive(Serialize)]
struct KernelReport {
    /// `copy_buffer_to_buffer`, counting bytes read plus bytes written.
    copy_gb_s: f64,
    /// The same copy done by a compute shader (the ceiling of a kernel that
    /// only streams memory), read plus written.
    shader_copy_gb_s: f64,
    matmuls: Vec<MatmulReport>,
    /// What a dispatch costs when it must wait for the one before, as every
    /// kernel of a decode step does: the floor under a step's time.
    dispatch_chain: Vec<ChainReport>,
}

/// Microseconds per dispatch of a chain of dependent dispatches, each adding
/// one to every word of the buffer the last one wrote (nothing to compute, so
/// the time is the launch, the barrier and the drain).
#[derive(Serialize)]
struct ChainReport {
    /// Workgroups of 256 invocations per dispatch.
    workgroups: u32,
    us_per_dispatch: f64,
}

/// One decode-shaped product `y[1, N] = x[1, K] · Wᵀ`.
#[derive(Serialize)]
struct MatmulReport {
    name: &'static str,
    rows: usize,
    cols: usize,
    /// Weight bytes (codes and scales) read per product.
    weight_bytes: u64,
    gb_s: f64,
    /// `gb_s / copy_gb_s`: how close the product comes to the copy.
    of_copy: f64,
    /// `gb_s / shader_copy_gb_s`.
    of_shader_copy: f64,
}

/// Runs the benchmark and prints its report.
pub fn run(args: &BenchArgs) -> Result<()> {
    let started = Instant::now();
    let artifact = load::open(&args.source)?;
    let (prompt_tokens, gen_tokens, steps) =
        (args.prompt_tokens as usize, args.gen_tokens as usize, args.context_steps as usize);
    let longest_context = args.contexts.iter().max().map_or(0, |c| c + WARM_STEPS + steps);
    let capacity_wanted = (prompt_tokens + gen_tokens).max(longest_context);
    let ctx = load::pick_gpu(args.device)?;
    let (mut gpu_model, mut cpu_model) = match &ctx {
        Some(ctx) => {
            let sequences = args.batch.iter().copied().max().unwrap_or(1).max(1);
            let options = GpuOptions {
                context_length: Some(capacity_wanted),
                sequences,
                ..GpuOptions::default()
            };
            let model = load_gpu(&artifact, ctx.clone(), options)?;
            ctx.wait()?;
            (Some(model), None)
        }
        None => (None, Some(load::load_cpu_engine(&artifact, args.device)?)),
    };
    let model: &mut dyn BatchedModel = match (&mut gpu_model, &mut cpu_model) {
        (Some(gpu), _) => gpu,
        (None, Some(cpu)) => cpu.as_mut(),
        (None, None) => unreachable!("one engine was loaded above"),
    };
    let load_s = started.elapsed().as_secs_f64();
    let capacity = model.context_capacity();
    ensure!(
        prompt_tokens + gen_tokens <= capacity,
        "--prompt-tokens {prompt_tokens} + --gen-tokens {gen_tokens} exceed the KV cache of {capacity} positions"
    );

    let vocab = artifact
        .config
        .active_vocab_size
        .unwrap_or(artifact.config.vocab_size)
        .min(model.spec().vocab_size);
    let mut rng = SplitMix64::new(args.seed);
    let mut random_ids =
        |count: usize| -> Vec<u32> { (0..count).map(|_| rng.below(vocab as u32)).collect() };

    // Warm-up: binds every kernel of the prefill and decode paths.
    let warm = random_ids(prompt_tokens.min(WARM_PROMPT));
    decode(&mut *model, &warm, WARM_STEPS)?;
    model.reset();

    let prompt = random_ids(prompt_tokens);
    let prefill_started = Instant::now();
    let first = model.greedy_next(&prompt).block_on()?;
    let ttft = prefill_started.elapsed();
    let decode_started = Instant::now();
    queued_steps_from(&mut *model, first, gen_tokens - 1)?;
    let decode_time = decode_started.elapsed();
    model.reset();
    let first = model.greedy_next(&prompt).block_on()?;
    let decode_started = Instant::now();
    steps_from(&mut *model, first, gen_tokens - 1)?;
    let stepwise_decode_time = decode_started.elapsed();
    let sampling = SamplingParams {
        temperature: artifact.config.temperature,
        top_p: artifact.config.top_p,
        repetition_penalty: artifact.config.repetition_penalty,
        presence_penalty: artifact.config.presence_penalty,
        frequency_penalty: artifact.config.frequency_penalty,
    };
    let mut sampled = |queued: bool| -> Result<Duration> {
        model.reset();
        let first = model.greedy_next(&prompt).block_on()?;
        let started = Instant::now();
        sampled_steps_from(&mut *model, first, gen_tokens - 1, &sampling, args.seed, queued)?;
        Ok(started.elapsed())
    };
    let (sampled_time, sampled_stepwise_time) = (sampled(true)?, sampled(false)?);

    let mut decode_at_context = Vec::new();
    let mut skipped_contexts = Vec::new();
    for &context in &args.contexts {
        if context == 0 || context + WARM_STEPS + steps > capacity {
            skipped_contexts.push(context);
            continue;
        }
        let prompt = random_ids(context);
        let mut time = |steps_from: fn(&mut dyn LanguageModel, u32, usize) -> Result<u32>| -> Result<Duration> {
            model.reset();
            let token = decode(&mut *model, &prompt, WARM_STEPS)?;
            let started = Instant::now();
            steps_from(&mut *model, token, steps)?;
            Ok(started.elapsed())
        };
        let (queued, stepwise) = (time(queued_steps_from)?, time(steps_from)?);
        decode_at_context.push(ContextDecode {
            context,
            steps,
            tok_s: rate(steps, queued),
            stepwise_tok_s: rate(steps, stepwise),
        });
    }

    let (decode_one_sequence_tok_s, decode_batched, skipped_batches) = match args.batch.is_empty() {
        true => (None, Vec::new(), Vec::new()),
        false => {
            let one = {
                model.reset();
                let token = decode(&mut *model, &random_ids(BATCH_PROMPT), WARM_STEPS)?;
                let started = Instant::now();
                steps_from(&mut *model, token, steps)?;
                rate(steps, started.elapsed())
            };
            let (mut batched, mut skipped) = (Vec::new(), Vec::new());
            for &sequences in &args.batch {
                if sequences == 0
                    || sequences > model.max_sequences()
                    || BATCH_PROMPT + WARM_STEPS + steps > capacity
                {
                    skipped.push(sequences);
                    continue;
                }
                let prompts: Vec<_> = (0..sequences).map(|_| random_ids(BATCH_PROMPT)).collect();
                let time = batched_steps(&mut *model, &prompts, steps, None, |_| Ok(()))?;
                let tok_s = rate(sequences * steps, time);
                let sampled = Some((&sampling, args.seed));
                let sampled_time =
                    batched_steps(&mut *model, &prompts, steps, sampled, |_| Ok(()))?;
                batched.push(BatchDecode {
                    sequences,
                    steps,
                    tok_s,
                    vs_one_sequence: tok_s / one,
                    sampled_tok_s: rate(sequences * steps, sampled_time),
                });
            }
            (Some(one), batched, skipped)
        }
    };

    let spec = model.spec().clone();
    let profile = match (args.profile, gpu_model.as_mut()) {
        (false, _) => None,
        (true, Some(gpu)) => {
            let context = args
                .contexts
                .iter()
                .copied()
                .find(|&c| c > 0 && c + WARM_STEPS + steps <= capacity)
                .unwrap_or(WARM_PROMPT);
            let mut profile =
                profile_steps(gpu, &random_ids(context), steps, &random_ids(prompt_tokens))?;
            let largest = decode_batched.iter().map(|b| b.sequences).max();
            if let Some(sequences) = largest {
                let prompts: Vec<_> = (0..sequences).map(|_| random_ids(BATCH_PROMPT)).collect();
                profile.batch = Some(profile_batch(gpu, &prompts, steps, (&sampling, args.seed))?);
            }
            Some(profile)
        }
        (true, None) => {
            bail!("--profile times GPU kernels; it needs --device gpu (or auto with a GPU)")
        }
    };
    let kernels = match (args.kernels, &ctx) {
        (false, _) => None,
        (true, Some(ctx)) => {
            Some(time_kernels(ctx, &artifact, &spec, args.kernel_mib << 20, args.seed)?)
        }
        (true, None) => {
            bail!("--kernels times GPU kernels; it needs --device gpu (or auto with a GPU)")
        }
    };
    let report = Report {
        model: artifact.source().to_string(),
        model_type: artifact.config.model_type.clone(),
        quantization: artifact.quantization().name().to_string(),
        weight_bytes: artifact.index.total_bytes(),
        device: match (&ctx, args.device) {
            (Some(_), _) => "gpu",
            (None, Device::CpuReference) => "cpu-reference",
            (None, _) => "cpu",
        },
        adapter: ctx.as_ref().map(|ctx| ctx.adapter_info.name.clone()),
        backend: ctx.as_ref().map(|ctx| format!("{:?}", ctx.adapter_info.backend)),
        gpu_kernels: ctx.as_ref().map(|ctx| {
            let caps = ctx.caps;
            [
                (caps.subgroups, "subgroups"),
                (caps.shader_f16, "shader-f16"),
                (caps.cooperative_matrix, "cooperative-matrix"),
            ]
            .into_iter()
            .filter_map(|(used, name)| used.then_some(name))
            .collect()
        }),
        load_s,
        prompt_tokens,
        ttft_s: ttft.as_secs_f64(),
        prefill_tok_s: rate(prompt_tokens, ttft),
        gen_tokens,
        decode_tok_s: rate(gen_tokens - 1, decode_time),
        decode_stepwise_tok_s: rate(gen_tokens - 1, stepwise_decode_time),
        decode_sampled_tok_s: rate(gen_tokens - 1, sampled_time),
        decode_sampled_stepwise_tok_s: rate(gen_tokens - 1, sampled_stepwise_time),
        decode_at_context,
        skipped_contexts,
        decode_one_sequence_tok_s,
        decode_batched,
        skipped_batches,
        kernels,
        profile,
    };
    match args.json {
        true => println!("{}", serde_json::to_string(&report)?),
        false => print_report(&report),
    }
    Ok(())
}

/// Prefills `tokens`, then decodes `steps` tokens; returns the last one.
fn decode(model: &mut dyn LanguageModel, tokens: &[u32], steps: usize) -> Result<u32> {
    let first = model.greedy_next(tokens).block_on()?;
    steps_from(model, first, steps)
}

/// Prefills each prompt in a sequence of its own, then times `steps` passes
/// that each feed every sequence its last token ([`BatchedModel::decode_batch`]),
/// after [`WARM_STEPS`] untimed ones: the most likely token, or with
/// `sampled = Some((params, seed))` a draw with `params` (each sequence its
/// own counts, restarted at its first step, and its own random numbers).
/// Leaves sequence 0 selected and every sequence empty.
/// `timed` runs just before the timed passes.
fn batched_steps<M: BatchedModel + ?Sized>(
    model: &mut M,
    prompts: &[Vec<u32>],
    steps: usize,
    sampled: Option<(&SamplingParams, u64)>,
    mut timed: impl FnMut(&mut M) -> Result<()>,
) -> Result<Duration> {
    let mut rngs: Vec<SplitMix64> = (0..prompts.len())
        .map(|sequence| SplitMix64::new(sampled.map_or(0, |(_, seed)| seed) + sequence as u64))
        .collect();
    let mut last = Vec::with_capacity(prompts.len());
    for (sequence, prompt) in prompts.iter().enumerate() {
        model.select_sequence(sequence)?;
        model.reset();
        last.push(model.greedy_next(prompt).block_on()?);
    }
    let mut started = Instant::now();
    for step in 0..WARM_STEPS + steps {
        if step == WARM_STEPS {
            timed(model)?;
            started = Instant::now();
        }
        let draws: Vec<Option<SamplingStep>> = rngs
            .iter_mut()
            .map(|rng| {
                sampled.map(|(params, _)| SamplingStep {
                    params,
                    logit_bias: &[],
                    counts: if step == 0 { TokenCounts::Start(&[]) } else { TokenCounts::Kept },
                    active_vocab: None,
                    uniform: rng.unit(),
                    token_mask: None,
                    top_logprobs: 0,
                })
            })
            .collect();
        let rows: Vec<BatchRow> = last
            .iter()
            .zip(&draws)
            .enumerate()
            .map(|(sequence, (&token, step))| BatchRow {
                sequence,
                token: Some(token),
                step: step.as_ref(),
            })
            .collect();
        let drawn = model.decode_batch(&rows).block_on()?;
        for (token, drawn) in last.iter_mut().zip(drawn) {
            *token = drawn.context("non-finite logits in a batched step")?.token;
        }
    }
    let time = started.elapsed();
    for sequence in (0..prompts.len()).rev() {
        model.select_sequence(sequence)?;
        model.reset();
    }
    Ok(time)
}

/// Feeds `token` back `steps` times, greedily, as generation does: each step
/// is queued on the device before the previous token is read. Returns the
/// last token.
fn queued_steps_from(model: &mut dyn LanguageModel, token: u32, steps: usize) -> Result<u32> {
    let options = GreedyOptions { max_tokens: steps, stop_token_ids: Vec::new() };
    let tokens = generate_greedy(model, &[token], &options).block_on()?;
    Ok(tokens.last().copied().unwrap_or(token))
}

/// Feeds `token` back `steps` times, greedily, one step at a time: each step's
/// token is read before the next is recorded. Returns the last token.
fn steps_from(model: &mut dyn LanguageModel, mut token: u32, steps: usize) -> Result<u32> {
    for _ in 0..steps {
        token = model.greedy_next(&[token]).block_on()?;
    }
    Ok(token)
}

/// Draws `steps` tokens after `token` with `params`, as a chat round does:
/// the penalties' counts restart at the first step and are kept by the
/// backend after it; with `queued`, each step is submitted [`STEPS_AHEAD`]
/// steps before its token is read, else one step at a time. Returns the last token.
fn sampled_steps_from(
    model: &mut dyn LanguageModel,
    token: u32,
    steps: usize,
    params: &SamplingParams,
    seed: u64,
    queued: bool,
) -> Result<u32> {
    let mut rng = SplitMix64::new(seed);
    let mut step = |first: bool| SamplingStep {
        params,
        logit_bias: &[],
        counts: if first { TokenCounts::Start(&[]) } else { TokenCounts::Kept },
        active_vocab: None,
        uniform: rng.unit(),
        token_mask: None,
        top_logprobs: 0,
    };
    if queued {
        model.queue_sample(StepInput::Tokens(&[token]), &step(true))?;
        let (mut in_flight, mut last) = (1, token);
        for taken in 0..steps {
            while in_flight <= STEPS_AHEAD && taken + in_flight < steps {
                model.queue_sample(StepInput::Queued, &step(false))?;
                in_flight += 1;
            }
            last = model.next_queued().block_on()?.token;
            in_flight -= 1;
        }
        return Ok(last);
    }
    let mut last = token;
    for i in 0..steps {
        let step = step(i == 0);
        last = model.sample_next(&[last], &step).block_on()?.token;
    }
    Ok(last)
}

/// Profiles `steps` decode steps after a prefill of `context`, then one
/// prefill of `prompt` from an empty cache.
fn profile_steps(
    model: &mut Model<GpuBackend>,
    context: &[u32],
    steps: usize,
    prompt: &[u32],
) -> Result<ProfileReport> {
    model.reset();
    let token = decode(model, context, WARM_STEPS)?;
    // Host and wait times without timestamps, which cost time of their own.
    let before = model.backend().stats();
    steps_from(model, token, steps)?;
    let split = HostSplit::since(before, model.backend().stats());
    // The profiled steps from the same position (and within the cache).
    model.reset();
    let token = decode(model, context, WARM_STEPS)?;
    model.backend_mut().start_profiling()?;
    let started = Instant::now();
    steps_from(model, token, steps)?;
    let decode_wall = started.elapsed();
    let decode = step_profile(
        model.backend_mut().stop_profiling().unwrap_or_default(),
        steps,
        1,
        decode_wall,
        split,
    );

    model.reset();
    let before = model.backend().stats();
    model.greedy_next(prompt).block_on()?;
    let split = HostSplit::since(before, model.backend().stats());
    model.reset();
    model.backend_mut().start_profiling()?;
    let started = Instant::now();
    model.greedy_next(prompt).block_on()?;
    let prefill_wall = started.elapsed();
    let prefill = step_profile(
        model.backend_mut().stop_profiling().unwrap_or_default(),
        1,
        prompt.len(),
        prefill_wall,
        split,
    );
    Ok(ProfileReport { decode, prefill, batch: None })
}

/// Profiles `steps` batched passes over one sequence per prompt, each row
/// drawn with `sampled` ([`batched_steps`]).
fn profile_batch(
    model: &mut Model<GpuBackend>,
    prompts: &[Vec<u32>],
    steps: usize,
    sampled: (&SamplingParams, u64),
) -> Result<StepProfile> {
    // Host and wait times without timestamps, from the timed passes on.
    let mut before = None;
    batched_steps(model, prompts, steps, Some(sampled), |model| {
        before = Some(model.backend().stats());
        Ok(())
    })?;
    let before = before.context("batched passes ran")?;
    let mut split = HostSplit::since(before, model.backend().stats());
    // Every row's result counts its wait from the pass's one submission:
    // their mean is the pass's.
    split.wait /= prompts.len().max(1) as u32;
    let wall = batched_steps(model, prompts, steps, Some(sampled), |model| {
        Ok(model.backend_mut().start_profiling()?)
    })?;
    let profile = model.backend_mut().stop_profiling().unwrap_or_default();
    Ok(step_profile(profile, steps, prompts.len(), wall, split))
}

/// Host recording and waiting time between two readings of the counters.
struct HostSplit {
    encode: Duration,
    wait: Duration,
}

impl HostSplit {
    fn since(before: GpuStats, after: GpuStats) -> HostSplit {
        HostSplit { encode: after.encode - before.encode, wait: after.wait - before.wait }
    }
}

/// Per-step figures of a profile, kernels by descending time.
fn step_profile(
    profile: Profile,
    steps: usize,
    tokens: usize,
    wall: Duration,
    split: HostSplit,
) -> StepProfile {
    let per_step = |d: Duration| d.as_secs_f64() * 1e6 / steps as f64;
    let mut kernels: Vec<KernelTime> = profile
        .kernels
        .into_iter()
        .map(|(name, (time, count))| KernelTime {
            name,
            calls_per_step: count as f64 / steps as f64,
            us_per_step: per_step(time),
        })
        .collect();
    kernels.sort_by(|a, b| b.us_per_step.total_cmp(&a.us_per_step));
    StepProfile {
        steps,
        tokens,
        wall_us: per_step(wall),
        gpu_busy_us: per_step(profile.busy),
        encode_us: per_step(split.encode),
        wait_us: per_step(split.wait),
        kernels,
    }
}

fn rate(count: usize, time: Duration) -> f64 {
    count as f64 / time.as_secs_f64()
}

/// Times decode-shaped products of the model's lm_head and gate_up shapes and
/// a buffer copy, each cycling through `footprint` bytes of buffers so that
/// every byte comes from memory, not from the cache.
fn time_kernels(
    ctx: &GpuContext,
    artifact: &mlc_loader::Artifact,
    spec: &mlc_engine::models::ModelSpec,
    footprint: u64,
    seed: u64,
) -> Result<KernelReport> {
    let format = WeightFormat::from_quantization(artifact.quantization().name())
        .with_context(|| format!("no GPU kernel for quantization {}", artifact.quantization()))?;
    let matmul = Matmul::new(ctx, format)?;
    let mut rng = SplitMix64::new(seed);
    let (copy_gb_s, shader_copy_gb_s) = time_copies(ctx, footprint, &mut rng)?;
    let shapes = [
        ("lm_head", spec.vocab_size, spec.hidden_size),
        ("gate_up", 2 * spec.intermediate_size, spec.hidden_size),
    ];
    let mut matmuls = Vec::new();
    for (name, rows, cols) in shapes {
        let (weight_bytes, seconds) = time_matmul(ctx, &matmul, rows, cols, footprint, &mut rng)?;
        let gb_s = weight_bytes as f64 / seconds / 1e9;
        let (of_copy, of_shader_copy) = (gb_s / copy_gb_s, gb_s / shader_copy_gb_s);
        matmuls.push(MatmulReport {
            name,
            rows,
            cols,
            weight_bytes,
            gb_s,
            of_copy,
            of_shader_copy,
        });
    }
    // One workgroup, and as many as the gate_up product of the decode step
    // launches (32 rows each).
    let dispatch_chain = [1, (2 * spec.intermediate_size).div_ceil(32) as u32]
        .into_iter()
        .map(|workgroups| {
            let us_per_dispatch = time_dispatch_chain(ctx, workgroups)? * 1e6;
            Ok(ChainReport { workgroups, us_per_dispatch })
        })
        .collect::<Result<_>>()?;
    Ok(KernelReport { copy_gb_s, shader_copy_gb_s, matmuls, dispatch_chain })
}

/// Each invocation adds one to its word of the buffer: a dispatch that reads
/// what the one before wrote, and does nothing else.
const CHAIN_WGSL: &str = "
@group(0) @binding(0) var<storage, read_write> state: array<u32>;

@compute @workgroup_size(256)
fn step(@builtin(global_invocation_id) id: vec3<u32>) {
    state[id.x] += 1u;
}
";

/// Seconds per dispatch of [`CHAIN_WGSL`] on `workgroups` workgroups, the
/// dispatches recorded back to back in one pass on one buffer (so each waits
/// for the one before, as the kernels of a decode step do).
fn time_dispatch_chain(ctx: &GpuContext, workgroups: u32) -> Result<f64> {
    let state = ctx.empty_storage_buffer("bench chain", u64::from(workgroups) * 256 * 4);
    let pipeline = ctx.compile("bench chain", CHAIN_WGSL, "step")?;
    let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("bench chain"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry { binding: 0, resource: state.as_entire_binding() }],
    });
    time_batches(ctx, 64, |encoder, count| {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        for _ in 0..count {
            pass.dispatch_workgroups(workgroups, 1, 1);
        }
    })
}

/// A grid-stride copy of 16-byte words: the simplest kernel that only moves memory.
const COPY_WGSL: &str = "
@group(0) @binding(0) var<storage, read> input: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> output: array<vec4<u32>>;

@compute @workgroup_size(256)
fn copy(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var i = id.x; i < arrayLength(&input); i += groups.x * 256u) {
        output[i] = input[i];
    }
}
";

/// GB/s (read plus written) of copying between two buffers sharing
/// `footprint`: by `copy_buffer_to_buffer`, and by [`COPY_WGSL`].
fn time_copies(ctx: &GpuContext, footprint: u64, rng: &mut SplitMix64) -> Result<(f64, f64)> {
    // One storage binding each for the shader; whole 16-byte words.
    let size = (footprint / 2)
        .min(ctx.limits.max_buffer_size)
        .min(ctx.limits.max_storage_buffer_binding_size)
        / 16
        * 16;
    ensure!(size > 0, "--kernel-mib is too small for a copy");
    let source = ctx.storage_buffer(
        "bench copy source",
        &Fill::Codes.generate(DType::U32, (size / 4) as usize, rng),
    );
    let target = ctx.empty_storage_buffer("bench copy target", size);
    let gb_s = |seconds: f64| 2.0 * size as f64 / seconds / 1e9;

    let seconds = time_batches(ctx, 1, |encoder, count| {
        for _ in 0..count {
            encoder.copy_buffer_to_buffer(&source, 0, &target, 0, size);
        }
    })?;
    let copy = gb_s(seconds);

    let pipeline = ctx.compile("bench copy", COPY_WGSL, "copy")?;
    let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("bench copy"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: source.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: target.as_entire_binding() },
        ],
    });
    let groups = (size / 16)
        .div_ceil(256)
        .min(ctx.limits.max_compute_workgroups_per_dimension.into()) as u32;
    let seconds = time_batches(ctx, 1, |encoder, count| {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        for _ in 0..count {
            pass.dispatch_workgroups(groups, 1, 1);
        }
    })?;
    Ok((copy, gb_s(seconds)))
}

/// Seconds per product of a `[rows, cols]` weight of `matmul`'s format with
/// one input row; returns the weight bytes read per product too.
fn time_matmul(
    ctx: &GpuContext,
    matmul: &Matmul,
    rows: usize,
    cols: usize,
    footprint: u64,
    rng: &mut SplitMix64,
) -> Result<(u64, f64)> {
    let format = matmul.format();
    let data = weight_data(format, rows, cols, rng);
    for (what, bytes) in
        [("weights", data.0.len()), ("scales", data.1.as_ref().map_or(0, Vec::len))]
    {
        ensure!(
            bytes as u64 <= ctx.limits.max_buffer_size,
            "{rows}×{cols} {what}: {bytes} bytes exceed the GPU's largest buffer"
        );
    }
    let weight_bytes = (data.0.len() + data.1.as_ref().map_or(0, Vec::len)) as u64;
    let copies = footprint.div_ceil(weight_bytes).max(1) as usize;
    let x = ctx.storage_buffer("bench x", &Fill::Uniform(1.0).generate(DType::F32, cols, rng));
    let y = ctx.empty_storage_buffer("bench y", (rows * 4) as u64);
    let weights: Vec<(wgpu::Buffer, Option<wgpu::Buffer>)> = (0..copies)
        .map(|_| {
            (
                ctx.storage_buffer("bench weight", &data.0),
                data.1.as_ref().map(|s| ctx.storage_buffer("bench scales", s)),
            )
        })
        .collect();
    let bound = weights
        .iter()
        .map(|(data, scales)| {
            let weight = GpuWeight {
                format,
                rows: rows as u32,
                cols: cols as u32,
                data,
                scales: scales.as_ref(),
            };
            let buffers = MatmulBuffers {
                x: &x,
                input: MatmulInput::Direct,
                weight,
                bias: None,
                residual: Residual::None,
                y: &y,
            };
            let mut bound = matmul.bind(ctx, &buffers, &MatmulShape { max_rows: 1 })?;
            bound.set_step(&ctx.queue, Step::rows(1))?;
            Ok(bound)
        })
        .collect::<Result<Vec<_>>>()?;
    let seconds = time_batches(ctx, copies, |encoder, count| {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        for i in 0..count {
            bound[i % copies].dispatch(&mut pass);
        }
    })?;
    Ok((weight_bytes, seconds))
}

/// Random weights of `format` for a `[rows, cols]` linear with unit gain: the
/// data (codes or values) and, for q4, the scales.
fn weight_data(
    format: WeightFormat,
    rows: usize,
    cols: usize,
    rng: &mut SplitMix64,
) -> (Vec<u8>, Option<Vec<u8>>) {
    let dtype = match format.dtype() {
        FloatFormat::F16 => DType::F16,
        FloatFormat::F32 => DType::F32,
    };
    match format {
        WeightFormat::Q4(_) => {
            let codes = Fill::Codes.generate(DType::U32, rows * cols / 8, rng);
            (
                codes,
                Some(Fill::Scales(Fill::unit_gain_scale(cols)).generate(
                    dtype,
                    rows * cols / 32,
                    rng,
                )),
            )
        }
        WeightFormat::Dense(_) => {
            (Fill::Uniform((3.0 / cols as f32).sqrt()).generate(dtype, rows * cols, rng), None)
        }
    }
}

/// Seconds per unit of work recorded by `record(encoder, count)`: after a
/// warm-up batch of `first` units, batches double from `first` units until one
/// lasts [`MIN_BATCH`].
fn time_batches(
    ctx: &GpuContext,
    first: usize,
    mut record: impl FnMut(&mut wgpu::CommandEncoder, usize),
) -> Result<f64> {
    let mut batch = |count: usize| -> Result<Duration> {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        record(&mut encoder, count);
        let started = Instant::now();
        ctx.queue.submit([encoder.finish()]);
        ctx.wait()?;
        Ok(started.elapsed())
    };
    batch(first)?;
    let mut count = first.max(1);
    loop {
        let elapsed = batch(count)?;
        if elapsed >= MIN_BATCH {
            return Ok(elapsed.as_secs_f64() / count as f64);
        }
        count *= 2;
    }
}

fn print_report(report: &Report) {
    println!(
        "model:       {} ({}, {}, {:.1} MB of weights)",
        report.model,
        report.model_type,
        report.quantization,
        report.weight_bytes as f64 / 1e6
    );
    match (&report.adapter, &report.backend) {
        (Some(adapter), Some(backend)) => println!(
            "device:      gpu: {adapter} ({backend}; {})",
            match report.gpu_kernels.as_deref() {
                Some([]) | None => "portable kernels".to_string(),
                Some(features) => features.join(", "),
            }
        ),
        _ => println!(
            "device:      {}, {} thread(s)",
            report.device,
            mlc_kernels::cpu_fast::threads()
        ),
    }
    println!("load:        {:.2} s", report.load_s);
    println!(
        "first token: {:.1} ms after a {}-token prompt",
        report.ttft_s * 1e3,
        report.prompt_tokens
    );
    println!("prefill:     {:.1} tok/s", report.prefill_tok_s);
    println!(
        "decode:      {:.1} tok/s ({} tokens after the prompt); one step at a time {:.1} tok/s: {:.2}×",
        report.decode_tok_s,
        report.gen_tokens,
        report.decode_stepwise_tok_s,
        report.decode_tok_s / report.decode_stepwise_tok_s
    );
    println!(
        "sampled:     {:.1} tok/s with the model's sampling settings; one step at a time {:.1} tok/s: {:.2}×",
        report.decode_sampled_tok_s,
        report.decode_sampled_stepwise_tok_s,
        report.decode_sampled_tok_s / report.decode_sampled_stepwise_tok_s
    );
    for at in &report.decode_at_context {
        println!(
            "decode @{:<5} {:.1} tok/s ({} steps); one step at a time {:.1} tok/s: {:.2}×",
            at.context,
            at.tok_s,
            at.steps,
            at.stepwise_tok_s,
            at.tok_s / at.stepwise_tok_s
        );
    }
    if !report.skipped_contexts.is_empty() {
        println!("skipped:     contexts {:?} (beyond the KV cache)", report.skipped_contexts);
    }
    if let Some(one) = report.decode_one_sequence_tok_s {
        println!(
            "one sequence: {one:.1} tok/s, one step at a time after a {BATCH_PROMPT}-token prompt"
        );
    }
    for b in &report.decode_batched {
        println!(
            "batch of {:<3} {:.1} tok/s in all ({} passes of one token each): {:.2}× one sequence; \
             {:.1} tok/s with the model's sampling",
            b.sequences, b.tok_s, b.steps, b.vs_one_sequence, b.sampled_tok_s
        );
    }
    if !report.skipped_batches.is_empty() {
        println!(
            "skipped:     batches of {:?} sequences (beyond what this engine holds at once)",
            report.skipped_batches
        );
    }
    if let Some(profile) = &report.profile {
        let phases = [("decode", Some(&profile.decode)), ("prefill", Some(&profile.prefill))];
        let batch = [("batch", profile.batch.as_ref())];
        for (phase, p) in phases.into_iter().chain(batch).filter_map(|(n, p)| Some((n, p?))) {
            println!(
                "profile {phase}: {} step(s) of {} token(s): {:.1} µs wall, {:.1} µs GPU busy per step ({:.0} % of wall)",
                p.steps,
                p.tokens,
                p.wall_us,
                p.gpu_busy_us,
                100.0 * p.gpu_busy_us / p.wall_us
            );
            println!(
                "  without timestamps: {:.1} µs recording on the host, then {:.1} µs until the result is back",
                p.encode_us, p.wait_us
            );
            for k in &p.kernels {
                println!(
                    "  {:<28} {:>9.1} µs {:>5.1} % ({} call(s) per step)",
                    k.name,
                    k.us_per_step,
                    100.0 * k.us_per_step / p.gpu_busy_us.max(f64::MIN_POSITIVE),
                    k.calls_per_step
                );
            }
        }
    }
    if let Some(kernels) = &report.kernels {
        println!(
            "copy:        {:.1} GB/s by copy_buffer_to_buffer, {:.1} GB/s by a shader (read + write)",
            kernels.copy_gb_s, kernels.shader_copy_gb_s
        );
        for m in &kernels.matmuls {
            println!(
                "{:<12} {:.1} GB/s = {:.0} % of copy, {:.0} % of shader copy ({}×{}, {:.2} MB)",
                format!("{}:", m.name),
                m.gb_s,
                m.of_copy * 100.0,
                m.of_shader_copy * 100.0,
                m.rows,
                m.cols,
                m.weight_bytes as f64 / 1e6
            );
        }
        for chain in &kernels.dispatch_chain {
            println!(
                "dispatch:    {:.2} µs per dependent dispatch of {} workgroup(s)",
                chain.us_per_dispatch, chain.workgroups
            );
        }
    }
}
