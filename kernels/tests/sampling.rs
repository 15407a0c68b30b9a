//! GPU sampling against the CPU reference `cpu::{sample, argmax, ...}`.

mod common;

use common::{contexts, invalid, rng, shout, upload};
use mlc_kernels::cpu::{self, SamplingParams};
use mlc_kernels::sampling::TOKEN_WORDS;
use mlc_kernels::{
    BoundSampler, Draw, GpuContext, Kernel, RowDraw, SampleSettings, SampledResult, Sampler,
    SamplerBuffers, SamplerShape, SamplerWorkspace,
};
use rand::Rng;
use rand::rngs::StdRng;

/// A sampler of one sequence bound to a fresh row of `vocab` logits, with the
/// settings of the next draw.
struct Rig {
    logits: wgpu::Buffer,
    workspace: SamplerWorkspace,
    bound: BoundSampler,
    counts: Vec<(u32, u32)>,
    bias: Vec<(u32, f32)>,
    params: SamplingParams,
    active: Option<usize>,
}

impl Rig {
    fn new(ctx: &GpuContext, sampler: &Sampler, vocab: usize) -> Rig {
        let logits = upload(ctx, &vec![0.0; vocab]);
        let workspace = SamplerWorkspace::new(ctx, vocab, 1).unwrap();
        let buffers = SamplerBuffers { logits: &logits, workspace: &workspace };
        let bound = sampler.bind(ctx, &buffers, &SamplerShape { rows: 1 }).unwrap();
        Rig {
            logits,
            workspace,
            bound,
            counts: Vec::new(),
            bias: Vec::new(),
            params: SamplingParams::default(),
            active: None,
        }
    }

    /// Uploads one step's logits and counts (dense); keeps the bias and
    /// parameters for the next draws.
    fn load(
        &mut self,
        ctx: &GpuContext,
        logits: &[f32],
        counts: &[u32],
        bias: &[(u32, f32)],
        params: &SamplingParams,
        active: Option<usize>,
    ) {
        ctx.queue.write_buffer(&self.logits, 0, bytemuck::cast_slice(logits));
        self.counts = appeared(counts);
        self.workspace.set_counts(&ctx.queue, 0, &self.counts).unwrap();
        self.bias = bias.to_vec();
        self.params = *params;
        self.active = active;
    }

    /// Draws with the loaded settings, but `params`, `uniform` and `top`.
    fn draw(
        &mut self,
        ctx: &GpuContext,
        params: &SamplingParams,
        uniform: f32,
        top: usize,
    ) -> SampledResult {
        let settings = SampleSettings {
            params,
            active_vocab: self.active,
            logit_bias: &self.bias,
            token_mask: None,
            uniform,
            top_logprobs: top,
        };
        let draws = [RowDraw { sequence: 0, draw: Draw::Sample(settings) }];
        self.bound.draw_blocking(ctx, &mut self.workspace, &draws).unwrap().remove(0)
    }

    /// The most likely token of the biased and penalised logits: a greedy
    /// draw at `u = 0` (ties: lowest id), after which the counts are put back
    /// as loaded.
    fn argmax(&mut self, ctx: &GpuContext) -> u32 {
        let greedy = SamplingParams { temperature: 0.0, ..self.params };
        let token = self.draw(ctx, &greedy, 0.0, 0).token.unwrap_or(u32::MAX);
        self.workspace.set_counts(&ctx.queue, 0, &self.counts).unwrap();
        token
    }

    /// The plain argmax of the raw logits ([`Draw::Argmax`]).
    fn plain_argmax(&mut self, ctx: &GpuContext) -> u32 {
        let draws = [RowDraw { sequence: 0, draw: Draw::Argmax }];
        let result = self.bound.draw_blocking(ctx, &mut self.workspace, &draws).unwrap();
        result[0].token.unwrap_or(u32::MAX)
    }

    fn sample(&mut self, ctx: &GpuContext, uniform: f32) -> u32 {
        let params = self.params;
        self.draw(ctx, &params, uniform, 0).token.unwrap_or(u32::MAX)
    }

    /// The sequence's counts as the device holds them.
    fn device_counts(&self, ctx: &GpuContext) -> Vec<u32> {
        ctx.read_u32(self.workspace.counts_buffer(), self.workspace.vocab()).unwrap()
    }
}

/// Sparse `(id, count)` pairs of a dense count table.
fn appeared(counts: &[u32]) -> Vec<(u32, u32)> {
    counts.iter().enumerate().filter(|&(_, &c)| c > 0).map(|(i, &c)| (i as u32, c)).collect()
}

/// Logits like a language model's: a smooth random background plus a few strong tokens.
/// The host sampler's token for these inputs (no mask, no probabilities).
fn draw(
    logits: &[f32],
    params: &SamplingParams,
    appeared: &[(u32, u32)],
    bias: &[(u32, f32)],
    active_vocab: Option<usize>,
    uniform: f32,
) -> u32 {
    let inputs =
        cpu::Draw { params, appeared, bias, mask: None, active_vocab, uniform, top_logprobs: 0 };
    cpu::sample(logits, &inputs).0
}

fn lm_logits(rng: &mut StdRng, vocab: usize, spread: f32) -> Vec<f32> {
    let mut logits: Vec<f32> = (0..vocab)
        .map(|_| {
            let g: f32 = (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum();
            g * spread
        })
        .collect();
    for _ in 0..rng.random_range(1..20) {
        let id = rng.random_range(0..vocab);
        logits[id] += rng.random_range(2.0..12.0);
    }
    logits
}

/// One argmax step over `vocab` logits, checked against the CPU: case 0 plain,
/// 1 with planted ties and an active vocabulary, 2 with penalties.
fn check_argmax(
    path: &str,
    ctx: &GpuContext,
    rig: &mut Rig,
    rng: &mut StdRng,
    vocab: usize,
    case: usize,
) {
    let mut logits = lm_logits(rng, vocab, 1.0);
    let mut counts = vec![0u32; vocab];
    let mut active = None;
    if case == 1 && vocab > 2 {
        // Planted ties: the lowest id must win.
        let top = logits.iter().copied().fold(f32::MIN, f32::max) + 1.0;
        for _ in 0..3 {
            logits[rng.random_range(0..vocab)] = top;
        }
        // A larger logit past the active vocabulary is never chosen.
        active = Some(vocab - 1);
        logits[vocab - 1] = top + 5.0;
    }
    let params = if case == 2 {
        for _ in 0..vocab.min(50) {
            counts[rng.random_range(0..vocab)] += rng.random_range(1..4);
        }
        SamplingParams {
            repetition_penalty: 1.3,
            presence_penalty: 0.4,
            frequency_penalty: 0.2,
            ..Default::default()
        }
    } else {
        SamplingParams::default()
    };
    let bias = [(0u32, 0.5f32), ((vocab / 2) as u32, -1.5)];
    rig.load(ctx, &logits, &counts, &bias, &params, active);
    let mut processed = logits.clone();
    cpu::apply_logit_bias(&mut processed, &bias);
    cpu::apply_penalties(&mut processed, &appeared(&counts), &params);
    let want = cpu::argmax(&processed, active);
    assert_eq!(rig.argmax(ctx), want, "{path}: vocab {vocab}, case {case}");
    // The plain argmax ignores the bias, the penalties and the active vocabulary.
    let plain = cpu::argmax(&logits, None);
    assert_eq!(rig.plain_argmax(ctx), plain, "{path}: vocab {vocab}, case {case}, plain");
}

#[test]
fn argmax_matches_the_cpu_reference() {
    for (path, ctx) in contexts() {
        let sampler = Sampler::new(ctx).unwrap();
        let mut rng = rng(600);
        for vocab in [1, 7, 1000, 1024, 1025, 32_000, 151_936, 262_144] {
            let mut rig = Rig::new(ctx, &sampler, vocab);
            for case in 0..3 {
                check_argmax(path, ctx, &mut rig, &mut rng, vocab, case);
            }
        }
    }
}

/// Picks `u` at least `margin` away from every CDF boundary near the draw, so
/// rounding differences between GPU and CPU cannot change the token.
fn safe_uniform(rng: &mut StdRng, nucleus: &cpu::Nucleus, margin: f32) -> f32 {
    loop {
        let u: f32 = rng.random_range(0.0..1.0);
        let j = nucleus.cumulative.iter().position(|&c| u < c / nucleus.renorm).unwrap_or(0);
        let low = if j == 0 { 0.0 } else { nucleus.cumulative[j - 1] / nucleus.renorm };
        let high = nucleus.cumulative[j] / nucleus.renorm;
        if u - low > margin && high - u > margin {
            return u;
        }
    }
}

/// How many candidates the GPU sorts exactly: the tokens of the top histogram
/// bins (`bits(e) >> 19` of `e = exp(x − max x)`) that fit in 1024 together.
fn gpu_candidates(processed: &[f32], params: &SamplingParams, active: Option<usize>) -> usize {
    let active = active.unwrap_or(processed.len());
    let t = params.effective_temperature();
    let x: Vec<f32> =
        processed[..active].iter().map(|&l| if params.is_greedy() { l } else { l / t }).collect();
    let max = x.iter().copied().fold(f32::MIN, f32::max);
    let mut bins = vec![0usize; 2048];
    for &v in &x {
        let e = if params.is_greedy() { (v == max) as u32 as f32 } else { (v - max).exp() };
        bins[(e.to_bits() >> 19) as usize] += 1;
    }
    bins[0] += processed.len() - active;
    let mut taken = 0;
    for &n in bins.iter().rev() {
        if taken + n > 1024 {
            break;
        }
        taken += n;
    }
    taken
}

/// The GPU's order when the nucleus leaves its candidates: the `candidates`
/// most probable tokens sorted, then the others by id; with the nucleus mass
/// `min(top_p, total)` it renormalises by.
fn gpu_order(probs: &[f32], top_p: f32, candidates: usize) -> (Vec<u32>, f64) {
    let sorted = cpu::top_p_filter(probs, 1.0).order;
    let mut order = sorted[..candidates].to_vec();
    let mut rest = sorted[candidates..].to_vec();
    rest.sort_unstable();
    order.extend(rest);
    let total: f64 = probs.iter().map(|&p| p as f64).sum();
    (order, (top_p as f64).min(total))
}

/// One sampling step over `vocab` logits (random temperature and top-p; `case`
/// picks penalties, a logit bias and an active vocabulary), checked against
/// the CPU. Returns whether the token was compared exactly (else against the
/// GPU's documented order past its candidates).
fn check_sample(
    path: &str,
    ctx: &GpuContext,
    rig: &mut Rig,
    rng: &mut StdRng,
    vocab: usize,
    case: usize,
) -> bool {
    let spread = rng.random_range(0.8..3.0);
    let logits = lm_logits(rng, vocab, spread);
    let mut counts = vec![0u32; vocab];
    let mut params = SamplingParams {
        temperature: [0.3, 0.7, 1.0, 1.5][rng.random_range(0..4)],
        top_p: [0.1, 0.5, 0.8, 0.95, 1.0][rng.random_range(0..5)],
        ..Default::default()
    };
    if case % 3 == 1 {
        params.repetition_penalty = rng.random_range(0.8..1.5);
        params.presence_penalty = rng.random_range(-1.0..1.0);
        params.frequency_penalty = rng.random_range(-0.5..0.5);
        for _ in 0..vocab.min(40) {
            counts[rng.random_range(0..vocab)] += rng.random_range(1..5);
        }
    }
    let bias: Vec<(u32, f32)> = if case % 4 == 2 {
        (0..5).map(|k| ((k * vocab / 5) as u32, rng.random_range(-10.0..10.0))).collect()
    } else {
        vec![]
    };
    let active = (case % 5 == 3 && vocab > 10).then(|| vocab - vocab / 10);
    rig.load(ctx, &logits, &counts, &bias, &params, active);

    let mut processed = logits.clone();
    cpu::apply_logit_bias(&mut processed, &bias);
    cpu::apply_penalties(&mut processed, &appeared(&counts), &params);
    let probs = cpu::softmax_with_temperature(&processed, params.temperature, active);
    let nucleus = cpu::top_p_filter(&probs, params.top_p);
    let u = safe_uniform(rng, &nucleus, 1e-4);
    let want = cpu::sample_from(&nucleus, u);
    assert_eq!(want, draw(&logits, &params, &appeared(&counts), &bias, active, u));
    let got = rig.sample(ctx, u);
    let draw = nucleus.cumulative.iter().position(|&c| u < c / nucleus.renorm).unwrap();
    // Exact whenever the nucleus boundary (and so the draw) lies among
    // the GPU's sorted candidates (at most 1024 most probable tokens),
    // or the draw does and the GPU's nucleus mass (min(top_p, total)
    // for a boundary past the candidates) is within the margin of cum[K].
    let candidates = gpu_candidates(&processed, &params, active);
    let last = probs[nucleus.order[nucleus.len() - 1] as usize];
    let exact =
        nucleus.len() + 8 <= candidates || (draw + 8 <= candidates && last / nucleus.renorm < 3e-5);
    if exact {
        assert_eq!(
            got,
            want,
            "{path}: vocab {vocab}, case {case}, {params:?}, u {u}, nucleus {} tokens, draw #{draw}",
            nucleus.len()
        );
    } else {
        assert!(probs[got as usize] > 0.0, "{path}: drew a masked token {got}");
        // Beyond the candidates the GPU walks the rest in id order: check
        // the token against that documented order.
        let (order, renorm) = gpu_order(&probs, params.effective_top_p(), candidates);
        let mut before = 0.0f64;
        let mut found = None;
        for &id in &order {
            let after = before + probs[id as usize] as f64;
            if id == got {
                found = Some((before / renorm, after / renorm));
                break;
            }
            before = after;
        }
        let (low, high) = found.expect("the GPU token is in the order");
        let u = u as f64;
        assert!(
            low - 1e-5 <= u && u <= high + 1e-5,
            "{path}: tail draw {got} covers [{low}, {high}), u {u}"
        );
    }
    exact
}

#[test]
fn sampling_matches_the_cpu_reference() {
    for (path, ctx) in contexts() {
        let sampler = Sampler::new(ctx).unwrap();
        let mut rng = rng(700);
        let (mut exact, mut total) = (0, 0);
        for vocab in [3, 50, 1000, 5000, 32_000, 151_936] {
            let mut rig = Rig::new(ctx, &sampler, vocab);
            // The WebGPU-limits path only re-checks that the pipelines fit: fewer cases.
            let cases = if *path == "webgpu-limits" {
                4
            } else if vocab > 100_000 {
                12
            } else {
                25
            };
            for case in 0..cases {
                total += 1;
                if check_sample(path, ctx, &mut rig, &mut rng, vocab, case) {
                    exact += 1;
                }
            }
        }
        eprintln!("{path}: {exact} of {total} sampling cases compared exactly");
        assert!(exact * 10 >= total * 7, "too few exact comparisons: {exact} of {total}");
    }
}

#[test]
fn random_vocabularies_match_the_cpu_reference() {
    let (seed, cases) = common::random_run("sampling");
    let samplers: Vec<_> =
        contexts().iter().map(|(path, ctx)| (*path, ctx, Sampler::new(ctx).unwrap())).collect();
    let mut draw = rng(seed);
    for i in 0..cases {
        // Log-uniform in 1..2^18 tokens: tiny, odd and workgroup-straddling sizes alike.
        let vocab = 2f64.powf(draw.random_range(0.0..18.0)) as usize;
        let case = draw.random_range(0..60);
        shout(&format!("case {i}: vocab {vocab}, case {case}"));
        for (path, ctx, sampler) in &samplers {
            let mut rig = Rig::new(ctx, sampler, vocab);
            let mut rng = rng(seed + i as u64);
            check_argmax(path, ctx, &mut rig, &mut rng, vocab, case % 3);
            check_sample(path, ctx, &mut rig, &mut rng, vocab, case);
        }
    }
}

#[test]
fn flat_distributions_sample_in_id_order_beyond_the_candidates() {
    // 5000 equal logits: more ties than candidates, so the GPU takes its tail
    // path, which coincides with WebLLM's order here (equal probabilities sort by id).
    for (path, ctx) in contexts() {
        let sampler = Sampler::new(ctx).unwrap();
        let vocab = 5000;
        let mut rig = Rig::new(ctx, &sampler, vocab);
        let logits = vec![0.25; vocab];
        let counts = vec![0; vocab];
        for (top_p, u) in [(1.0, 0.1234), (1.0, 0.98765), (0.5, 0.4321), (0.3, 0.0101)] {
            let params = SamplingParams { top_p, ..Default::default() };
            rig.load(ctx, &logits, &counts, &[], &params, None);
            let want = draw(&logits, &params, &[], &[], None, u);
            let got = rig.sample(ctx, u);
            assert!(got.abs_diff(want) <= 1, "{path}: top_p {top_p}, u {u}: {got} vs {want}");
        }
    }
}

#[test]
fn zero_temperature_is_greedy_and_draws_among_exact_ties() {
    for (path, ctx) in contexts() {
        let sampler = Sampler::new(ctx).unwrap();
        let mut rng = rng(800);
        let vocab = 40_000;
        let mut rig = Rig::new(ctx, &sampler, vocab);
        let counts = vec![0; vocab];
        let greedy = SamplingParams { temperature: 0.0, top_p: 0.9, ..Default::default() };
        // A unique maximum: every u gives the argmax, like greedy decoding.
        let logits = lm_logits(&mut rng, vocab, 1.0);
        rig.load(ctx, &logits, &counts, &[], &greedy, None);
        let argmax = cpu::argmax(&logits, None);
        assert_eq!(rig.argmax(ctx), argmax);
        for u in [0.0, 0.3, 0.999] {
            assert_eq!(rig.sample(ctx, u), argmax, "{path}: u {u}");
        }
        // Temperatures up to 1e-5 take the same branch.
        let tiny = SamplingParams { temperature: 1e-5, top_p: 1.0, ..Default::default() };
        rig.load(ctx, &logits, &counts, &[], &tiny, None);
        assert_eq!(rig.sample(ctx, 0.77), argmax);
        // Three exact maxima: u picks among them in id order (top_p 1 keeps all three).
        let mut tied = logits.clone();
        let top = logits[argmax as usize] + 1.0;
        let ids = [123usize, 9_000, 31_000];
        for &id in &ids {
            tied[id] = top;
        }
        let all = SamplingParams { temperature: 0.0, top_p: 1.0, ..Default::default() };
        rig.load(ctx, &tied, &counts, &[], &all, None);
        assert_eq!(rig.argmax(ctx), 123, "{path}: argmax takes the lowest tied id");
        for (u, want) in [(0.1, 123), (0.5, 9_000), (0.9, 31_000)] {
            assert_eq!(draw(&tied, &all, &[], &[], None, u), want);
            assert_eq!(rig.sample(ctx, u), want, "{path}: u {u}");
        }
    }
}

#[test]
fn penalties_and_bias_change_the_choice_as_expected() {
    for (path, ctx) in contexts() {
        let sampler = Sampler::new(ctx).unwrap();
        let vocab = 3000;
        let mut rig = Rig::new(ctx, &sampler, vocab);
        let mut logits = vec![0.0; vocab];
        logits[3] = 5.0;
        logits[7] = 4.9;
        logits[11] = -2.0;
        let mut counts = vec![0; vocab];
        let greedy = SamplingParams { temperature: 0.0, ..Default::default() };
        rig.load(ctx, &logits, &counts, &[], &greedy, None);
        assert_eq!(rig.sample(ctx, 0.5), 3);

        // Repetition penalty on token 3 (5 / 1.5 < 4.9).
        counts[3] = 1;
        let rep = SamplingParams { repetition_penalty: 1.5, ..greedy };
        rig.load(ctx, &logits, &counts, &[], &rep, None);
        assert_eq!(rig.argmax(ctx), 7, "{path}");
        assert_eq!(rig.sample(ctx, 0.5), 7, "{path}");
        // Presence penalty of 0.2 also pushes 3 below 7; frequency 0.05 × 1 does not.
        let presence = SamplingParams { presence_penalty: 0.2, ..greedy };
        rig.load(ctx, &logits, &counts, &[], &presence, None);
        assert_eq!(rig.sample(ctx, 0.5), 7, "{path}");
        let frequency = SamplingParams { frequency_penalty: 0.05, ..greedy };
        rig.load(ctx, &logits, &counts, &[], &frequency, None);
        assert_eq!(rig.sample(ctx, 0.5), 3, "{path}");
        counts[3] = 3; // 3 × 0.05 = 0.15 > 0.1
        rig.load(ctx, &logits, &counts, &[], &frequency, None);
        assert_eq!(rig.sample(ctx, 0.5), 7, "{path}");
        // A negative logit is multiplied by the repetition penalty.
        let mut negative = vec![-10.0; vocab];
        negative[11] = -2.0;
        negative[12] = -2.5;
        let mut counts11 = vec![0; vocab];
        counts11[11] = 1;
        rig.load(ctx, &negative, &counts11, &[], &rep, None);
        assert_eq!(rig.sample(ctx, 0.5), 12, "{path}: -2 × 1.5 < -2.5");
        // Logit bias.
        rig.load(ctx, &logits, &vec![0; vocab], &[(11, 8.0)], &greedy, None);
        assert_eq!(rig.sample(ctx, 0.5), 11, "{path}");
        rig.load(ctx, &logits, &vec![0; vocab], &[], &greedy, None);
        assert_eq!(rig.sample(ctx, 0.5), 3, "{path}: the bias is cleared");
    }
}

#[test]
fn the_sampler_counts_the_tokens_it_draws() {
    let (_, ctx) = &contexts()[1];
    let sampler = Sampler::new(ctx).unwrap();
    let vocab = 100;
    let mut rig = Rig::new(ctx, &sampler, vocab);
    let mut logits = vec![0.0; vocab];
    logits[3] = 5.0;
    logits[7] = 4.0;
    logits[9] = 3.5;
    let params = SamplingParams { temperature: 0.0, frequency_penalty: 0.6, ..Default::default() };
    rig.load(ctx, &logits, &vec![0; vocab], &[], &params, None);
    // Each pick of a token lowers its logit by 0.6: 5, 4.4, 3.8 (< 4, so 7), ...
    let picks: Vec<u32> = (0..4).map(|_| rig.sample(ctx, 0.5)).collect();
    assert_eq!(picks, vec![3, 3, 7, 3]);
    let counts = rig.device_counts(ctx);
    assert_eq!((counts[3], counts[7], counts[9]), (3, 1, 0));
    // A plain argmax draws nothing: the counts stay.
    assert_eq!(rig.plain_argmax(ctx), 3);
    assert_eq!(rig.device_counts(ctx), counts);
}

/// One dispatch of several rows (each its own sequence, settings, counts,
/// bias and mask) gives every row what it gives drawn alone, and touches
/// only its rows' sequences.
#[test]
fn rows_of_one_dispatch_match_each_row_drawn_alone() {
    for (path, ctx) in contexts() {
        let sampler = Sampler::new(ctx).unwrap();
        let mut rng = rng(950);
        let vocab = 5000;
        let sequences = 5;
        let rows: [usize; 4] = [3, 0, 4, 1];
        let logits: Vec<Vec<f32>> = rows.iter().map(|_| lm_logits(&mut rng, vocab, 2.0)).collect();
        let counts: Vec<Vec<(u32, u32)>> = (0..sequences)
            .map(|_| {
                (0..30)
                    .map(|_| (rng.random_range(0..vocab as u32), 1 + rng.random_range(0..3)))
                    .collect()
            })
            .collect();
        let penalised = SamplingParams {
            temperature: 0.8,
            top_p: 0.9,
            repetition_penalty: 1.3,
            presence_penalty: 0.5,
            ..Default::default()
        };
        let greedy =
            SamplingParams { temperature: 0.0, frequency_penalty: 0.7, ..Default::default() };
        let plain = SamplingParams { temperature: 1.2, ..Default::default() };
        let bias: Vec<(u32, f32)> = (0..5).map(|k| (k * 977, 6.0)).collect();
        let mask: Vec<u32> = (0..vocab.div_ceil(32)).map(|_| rng.random::<u32>()).collect();
        let settings = |params, logit_bias, token_mask, uniform, top_logprobs| SampleSettings {
            params,
            active_vocab: None,
            logit_bias,
            token_mask,
            uniform,
            top_logprobs,
        };
        let draws = [
            RowDraw { sequence: rows[0], draw: Draw::Argmax },
            RowDraw {
                sequence: rows[1],
                draw: Draw::Sample(settings(&penalised, &bias, None, 0.41, 0)),
            },
            RowDraw {
                sequence: rows[2],
                draw: Draw::Sample(settings(&greedy, &[], Some(&mask), 0.3, 0)),
            },
            RowDraw { sequence: rows[3], draw: Draw::Sample(settings(&plain, &[], None, 0.77, 5)) },
        ];
        let mut workspace = SamplerWorkspace::new(ctx, vocab, sequences).unwrap();
        let reset = |workspace: &SamplerWorkspace| {
            for (sequence, pairs) in counts.iter().enumerate() {
                workspace.set_counts(&ctx.queue, sequence, pairs).unwrap();
            }
        };
        let read = |workspace: &SamplerWorkspace| {
            let words = ctx.read_u32(workspace.token_buffer(), sequences * TOKEN_WORDS).unwrap();
            let counts = ctx.read_u32(workspace.counts_buffer(), sequences * vocab).unwrap();
            (words, counts)
        };
        // Every row alone, from a one-row buffer.
        let single = upload(ctx, &vec![0.0; vocab]);
        let buffers = SamplerBuffers { logits: &single, workspace: &workspace };
        let mut alone = sampler.bind(ctx, &buffers, &SamplerShape { rows: 1 }).unwrap();
        let mut want = Vec::new();
        for (row, draw) in draws.iter().enumerate() {
            reset(&workspace);
            ctx.queue.write_buffer(&single, 0, bytemuck::cast_slice(&logits[row]));
            let result = alone.draw_blocking(ctx, &mut workspace, &[*draw]).unwrap().remove(0);
            let (_, after) = read(&workspace);
            let start = draw.sequence * vocab;
            want.push((result, after[start..start + vocab].to_vec()));
        }
        // All rows in one dispatch; sequence 2 is not drawn and keeps its counts.
        let all = upload(ctx, &logits.concat());
        let buffers = SamplerBuffers { logits: &all, workspace: &workspace };
        let mut together = sampler.bind(ctx, &buffers, &SamplerShape { rows: rows.len() }).unwrap();
        reset(&workspace);
        let (before, counts_before) = read(&workspace);
        let got = together.draw_blocking(ctx, &mut workspace, &draws).unwrap();
        let (after, counts_after) = read(&workspace);
        for (row, (result, (want_result, want_counts))) in got.iter().zip(&want).enumerate() {
            assert!(result.token.is_some(), "{path}: row {row} drew nothing");
            assert_eq!(result, want_result, "{path}: row {row}, sequence {}", rows[row]);
            let start = rows[row] * vocab;
            let got_counts = appeared(&counts_after[start..start + vocab]);
            assert_eq!(got_counts, appeared(want_counts), "{path}: row {row}'s counts");
        }
        let untouched = |words: &[u32], counts: &[u32]| {
            (
                words[2 * TOKEN_WORDS..3 * TOKEN_WORDS].to_vec(),
                counts[2 * vocab..3 * vocab].to_vec(),
            )
        };
        assert_eq!(untouched(&after, &counts_after), untouched(&before, &counts_before), "{path}");
    }
}

/// Step 3's probabilities computed in f64 from the same `x = l / T` (f32).
fn exact_probabilities(
    processed: &[f32],
    params: &SamplingParams,
    active: Option<usize>,
) -> Vec<f64> {
    let active = active.unwrap_or(processed.len());
    let t = params.effective_temperature();
    let x: Vec<f32> =
        processed[..active].iter().map(|&l| if params.is_greedy() { l } else { l / t }).collect();
    let max = x.iter().copied().fold(f32::MIN, f32::max);
    let mut e: Vec<f64> = x
        .iter()
        .map(|&v| {
            if params.is_greedy() { (v == max) as u8 as f64 } else { (v as f64 - max as f64).exp() }
        })
        .collect();
    let sum: f64 = e.iter().sum();
    e.iter_mut().for_each(|v| *v /= sum);
    e.resize(processed.len(), 0.0);
    e
}

#[test]
fn top_logprobs_come_back_with_the_token_as_the_cpu_reference_computes_them() {
    for (path, ctx) in contexts() {
        let sampler = Sampler::new(ctx).unwrap();
        let mut rng = rng(900);
        for vocab in [3, 1000, 5000, 151_936] {
            let mut rig = Rig::new(ctx, &sampler, vocab);
            for case in 0..6 {
                let spread = rng.random_range(0.8..3.0);
                let logits = lm_logits(&mut rng, vocab, spread);
                let mut counts = vec![0u32; vocab];
                let mut params = SamplingParams {
                    temperature: [0.0, 0.7, 1.0, 1.5][case % 4],
                    top_p: [0.8, 1.0][case % 2],
                    ..Default::default()
                };
                if case % 3 == 1 {
                    params.repetition_penalty = 1.2;
                    params.presence_penalty = 0.3;
                    for _ in 0..vocab.min(40) {
                        counts[rng.random_range(0..vocab)] += rng.random_range(1..5);
                    }
                }
                let bias = [(0u32, 2.5f32), ((vocab / 2) as u32, -3.0)];
                let active = (case == 5 && vocab > 10).then(|| vocab - vocab / 10);
                let top = [1, 5, 20][case % 3];
                rig.load(ctx, &logits, &counts, &bias, &params, active);
                let got = rig.draw(ctx, &params, 0.37, top);

                let mut processed = logits.clone();
                cpu::apply_logit_bias(&mut processed, &bias);
                cpu::apply_penalties(&mut processed, &appeared(&counts), &params);
                let probs = cpu::softmax_with_temperature(&processed, params.temperature, active);
                let token = got.token.expect("finite logits give a token");
                let want = cpu::token_probabilities(&probs, token, top);
                let got = got.probabilities.expect("probabilities were asked for");
                let what = format!("{path}: vocab {vocab}, case {case}, {params:?}, top {top}");
                let ids = |list: &[(u32, f32)]| list.iter().map(|&(id, _)| id).collect::<Vec<_>>();
                assert_eq!(ids(&got.top), ids(&want.top), "{what}");
                assert_eq!(got.top.len(), top.min(vocab), "{what}");
                // The CPU reference sums e in id order in f32, which drifts by ~1e-4
                // over 150K ids; the GPU's tree sum stays within 1e-5 of the exact value.
                let exact = exact_probabilities(&processed, &params, active);
                let close = |a: f32, b: f64| (a as f64 - b).abs() <= 1e-7 + 1e-5 * b;
                for (&(id, p), &(_, q)) in got.top.iter().zip(&want.top) {
                    assert!(close(p, exact[id as usize]), "{what}: id {id}: {p} vs {q} (cpu)");
                    assert!((p - q).abs() <= 1e-6 + 1e-3 * q, "{what}: id {id}: {p} vs {q}");
                }
                assert!(
                    close(got.token, exact[token as usize]),
                    "{what}: token {token}: {} vs {} (cpu)",
                    got.token,
                    want.token
                );
            }
        }
    }
}

#[test]
fn non_finite_logits_give_no_token_instead_of_garbage() {
    for (path, ctx) in contexts() {
        let sampler = Sampler::new(ctx).unwrap();
        // Several blocks, the bad value far from the first one.
        let vocab = 70_000;
        let mut rig = Rig::new(ctx, &sampler, vocab);
        let counts = vec![0; vocab];
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut logits = lm_logits(&mut rng(9), vocab, 3.0);
            logits[65_432] = bad;
            let greedy = SamplingParams { temperature: 0.0, ..Default::default() };
            rig.load(ctx, &logits, &counts, &[], &greedy, None);
            assert_eq!(rig.argmax(ctx), u32::MAX, "{path}: argmax with a {bad} logit");
            let sampled = SamplingParams { temperature: 0.8, top_p: 0.9, ..Default::default() };
            rig.load(ctx, &logits, &counts, &[], &sampled, None);
            assert_eq!(rig.sample(ctx, 0.4), u32::MAX, "{path}: sampling with a {bad} logit");
        }
        // And finite logits still give a token on the same binding.
        let logits = lm_logits(&mut rng(9), vocab, 3.0);
        rig.load(
            ctx,
            &logits,
            &counts,
            &[],
            &SamplingParams { temperature: 0.0, ..Default::default() },
            None,
        );
        assert!(rig.argmax(ctx) < vocab as u32, "{path}: finite logits");
    }
}

#[test]
fn sampling_rejects_bad_arguments() {
    let (_, ctx) = &contexts()[0];
    let sampler = Sampler::new(ctx).unwrap();
    assert!(invalid(SamplerWorkspace::new(ctx, 0, 1)));
    assert!(invalid(SamplerWorkspace::new(ctx, 10, 0)));
    assert!(invalid(SamplerWorkspace::new(ctx, 10, mlc_kernels::sampling::MAX_ROWS + 1)));
    let mut workspace = SamplerWorkspace::new(ctx, 10, 2).unwrap();
    let small = upload(ctx, &[0.0; 10]);
    let bind = |logits: &wgpu::Buffer, workspace: &SamplerWorkspace, rows: usize| {
        sampler.bind(ctx, &SamplerBuffers { logits, workspace }, &SamplerShape { rows })
    };
    assert!(invalid(bind(&small, &workspace, 2)), "logits for one row, bound for two");
    assert!(invalid(bind(&small, &workspace, 0)));
    assert!(invalid(bind(workspace.counts_buffer(), &workspace, 1)), "aliasing");
    let mut bound = bind(&small, &workspace, 1).unwrap();
    let q = &ctx.queue;
    let default = SamplingParams::default();
    fn sample<'a>(
        params: &'a SamplingParams,
        active_vocab: Option<usize>,
        uniform: f32,
        top_logprobs: usize,
        token_mask: Option<&'a [u32]>,
    ) -> Draw<'a> {
        let logit_bias = &[];
        Draw::Sample(SampleSettings {
            params,
            active_vocab,
            logit_bias,
            token_mask,
            uniform,
            top_logprobs,
        })
    }
    fn one(sequence: usize, draw: Draw<'_>) -> [RowDraw<'_>; 1] {
        [RowDraw { sequence, draw }]
    }
    for bad in [
        SamplingParams { top_p: 0.0, ..Default::default() },
        SamplingParams { temperature: -1.0, ..Default::default() },
        SamplingParams { repetition_penalty: 0.0, ..Default::default() },
        SamplingParams { presence_penalty: 2.5, ..Default::default() },
    ] {
        assert!(invalid(workspace.set_draws(q, &one(0, sample(&bad, None, 0.5, 0, None)))));
    }
    assert!(invalid(workspace.set_draws(q, &one(0, sample(&default, Some(11), 0.5, 0, None)))));
    assert!(invalid(workspace.set_draws(q, &one(0, sample(&default, None, 1.5, 0, None)))));
    assert!(invalid(workspace.set_draws(q, &one(0, sample(&default, None, 0.5, 21, None)))));
    let short_mask = [0u32; 2];
    let masked = sample(&default, None, 0.5, 0, Some(&short_mask));
    assert!(invalid(workspace.set_draws(q, &one(0, masked))), "a mask of the wrong length");
    assert!(invalid(workspace.set_draws(q, &one(2, Draw::Argmax))), "no such sequence");
    assert!(invalid(workspace.set_draws(q, &[])));
    let twice = [RowDraw { sequence: 1, draw: Draw::Argmax }; 2];
    assert!(invalid(workspace.set_draws(q, &twice)), "one sequence twice in a dispatch");
    assert!(invalid(workspace.set_counts(q, 2, &[])));
    // Two rows are valid for the workspace but not for logits that hold one.
    let two = [0, 1].map(|sequence| RowDraw { sequence, draw: Draw::Argmax });
    workspace.set_draws(q, &two).unwrap();
    let mut recorded = Ok(());
    ctx.submit_pass("too many rows", |pass| recorded = bound.dispatch(q, pass, &workspace));
    assert!(invalid(recorded), "more rows than the logits hold");
    workspace.set_draws(q, &one(1, sample(&default, Some(10), 1.0, 20, None))).unwrap();
}

/// Rough timings (run with `--ignored --nocapture` on a real GPU; meaningless on lavapipe).
#[test]
#[ignore]
fn bench_sampling() {
    let (path, ctx) = &contexts()[1];
    let sampler = Sampler::new(ctx).unwrap();
    let mut rng = rng(901);
    for vocab in [151_936, 262_144] {
        let mut rig = Rig::new(ctx, &sampler, vocab);
        let logits = lm_logits(&mut rng, vocab, 2.0);
        let params = SamplingParams {
            temperature: 0.7,
            top_p: 0.8,
            repetition_penalty: 1.1,
            ..Default::default()
        };
        rig.load(ctx, &logits, &vec![0; vocab], &[], &params, None);
        for (name, sample) in [("argmax", false), ("sample", true)] {
            let draw = match sample {
                true => Draw::Sample(SampleSettings {
                    params: &params,
                    active_vocab: None,
                    logit_bias: &[],
                    token_mask: None,
                    uniform: 0.5,
                    top_logprobs: 0,
                }),
                false => Draw::Argmax,
            };
            rig.workspace.set_draws(&ctx.queue, &[RowDraw { sequence: 0, draw }]).unwrap();
            let (bound, workspace) = (&mut rig.bound, &rig.workspace);
            let mut record = |pass: &mut wgpu::ComputePass<'_>| {
                bound.dispatch(&ctx.queue, pass, workspace).unwrap()
            };
            ctx.submit_pass("warm", &mut record);
            ctx.wait().unwrap();
            let reps = 100;
            let t = std::time::Instant::now();
            ctx.submit_pass("bench", |pass| (0..reps).for_each(|_| record(pass)));
            ctx.wait().unwrap();
            let us = t.elapsed().as_secs_f64() * 1e6 / reps as f64;
            eprintln!("{path} {name} over {vocab}: {us:.1} µs");
        }
        // One full step as the engine sees it: write u, sample, read 4 bytes back.
        let t = std::time::Instant::now();
        for i in 0..20 {
            rig.sample(ctx, (i as f32 + 0.5) / 20.0);
        }
        eprintln!(
            "{path} sample + 4-byte readback over {vocab}: {:.1} µs",
            t.elapsed().as_secs_f64() * 1e6 / 20.0
        );
    }
}
