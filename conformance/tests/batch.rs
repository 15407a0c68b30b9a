//! A batched decode step (`BatchedModel::decode_batch`: one token of each of
//! several sequences in one pass, the products reading each weight once for
//! all rows) gives every sequence exactly what it gets alone, on both CPU
//! engines: the same tokens and the same reported probabilities, greedy and
//! sampled (seeded draws, a repetition penalty whose counts are each
//! sequence's own, `top_logprobs`), for sequences at different positions,
//! with grouped-query attention, q/k norms, sliding windows, parallel blocks
//! and YaRN. And it refuses what it cannot do with an error, leaving the
//! sequences as they were. Generations that share a model through a
//! `Batcher` (steps queued ahead, dropped at the end, a second round on the
//! kept contexts) draw what each draws alone.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use mlc_conformance::{converted_family, tiny_artifact};
use mlc_engine::backend::StepInput;
use mlc_engine::batch::Batcher;
use mlc_engine::gpu::GpuOptions;
use mlc_engine::models::ModelSpec;
use mlc_engine::models::decoder::Trace;
use mlc_engine::sampling::{Drawn, SamplingStep, TokenCounts};
use mlc_engine::{
    BatchRow, BatchedModel, EngineError, LanguageModel, ModelFuture, STEPS_AHEAD, load_cpu,
    load_cpu_fast, load_gpu,
};
use mlc_kernels::cpu::SamplingParams;
use mlc_kernels::{ContextOptions, GpuContext};
use mlc_loader::{Artifact, OpenOptions};
use pollster::FutureExt as _;

/// Decode steps after each prompt.
const STEPS: usize = 6;

/// Prompts of different lengths, so the sequences sit at different positions.
fn prompts(vocab: usize) -> Vec<Vec<u32>> {
    [3usize, 9, 1, 14]
        .iter()
        .enumerate()
        .map(|(i, &len)| (0..len).map(|t| ((i * 31 + t * 7 + 5) % vocab) as u32).collect())
        .collect()
}

/// The uniform number of sequence `sequence`'s step `step` (any fixed spread).
fn uniform(sequence: usize, step: usize) -> f32 {
    ((sequence * 7919 + step * 104_729) % 1000) as f32 / 1000.0
}

/// Temperature 0.8, top-p 0.95 and a repetition penalty: every part of the
/// sampler that keeps or reads per-sequence state.
const PARAMS: SamplingParams = SamplingParams {
    temperature: 0.8,
    top_p: 0.95,
    repetition_penalty: 1.3,
    presence_penalty: 0.0,
    frequency_penalty: 0.0,
};

/// The step of sequence `sequence` at `step` (the first one starts the counts).
fn sampling_step(sequence: usize, step: usize) -> SamplingStep<'static> {
    SamplingStep {
        params: &PARAMS,
        logit_bias: &[],
        counts: if step == 0 { TokenCounts::Start(&[]) } else { TokenCounts::Kept },
        active_vocab: None,
        uniform: uniform(sequence, step),
        token_mask: None,
        top_logprobs: 3,
    }
}

/// Sequence `sequence` decoded on its own: its prompt, then one token at a time.
fn alone(
    model: &mut dyn LanguageModel,
    sequence: usize,
    prompt: &[u32],
    sampled: bool,
) -> Vec<Drawn> {
    model.reset();
    let mut drawn = Vec::new();
    let mut input = prompt.to_vec();
    for step in 0..STEPS {
        let next = match sampled {
            true => model.sample_next(&input, &sampling_step(sequence, step)).block_on(),
            false => model.greedy_next(&input).block_on().map(Drawn::token),
        };
        let next = next.unwrap();
        input = vec![next.token];
        drawn.push(next);
    }
    drawn
}

/// Every sequence's prompt alone (each in its own sequence), then the decode
/// steps of all of them batched.
fn batched(model: &mut dyn BatchedModel, prompts: &[Vec<u32>], sampled: bool) -> Vec<Vec<Drawn>> {
    let mut drawn: Vec<Vec<Drawn>> = Vec::new();
    for (sequence, prompt) in prompts.iter().enumerate() {
        model.select_sequence(sequence).unwrap();
        model.reset();
        let first = match sampled {
            true => model.sample_next(prompt, &sampling_step(sequence, 0)).block_on(),
            false => model.greedy_next(prompt).block_on().map(Drawn::token),
        };
        drawn.push(vec![first.unwrap()]);
    }
    model.select_sequence(0).unwrap();
    for step in 1..STEPS {
        let steps: Vec<_> = (0..prompts.len()).map(|s| sampling_step(s, step)).collect();
        // Rows in a different order than the sequences: a row's place is its own.
        let rows: Vec<BatchRow> = (0..prompts.len())
            .rev()
            .map(|sequence| BatchRow {
                sequence,
                token: Some(drawn[sequence].last().unwrap().token),
                step: sampled.then_some(&steps[sequence]),
            })
            .collect();
        let out = model.decode_batch(&rows).block_on().unwrap();
        for (row, next) in rows.iter().zip(out) {
            drawn[row.sequence].push(next.expect("finite logits"));
        }
        assert_eq!(model.selected_sequence(), 0, "the selected sequence is kept");
    }
    drawn
}

/// Checks the batched steps of `model` against each sequence alone: the same
/// draws, with probabilities equal (`tolerance` 0) or within `tolerance`.
fn check(what: &str, model: &mut dyn BatchedModel, tolerance: f32) {
    let prompts = prompts(model.spec().vocab_size);
    for sampled in [false, true] {
        let together = batched(model, &prompts, sampled);
        for (sequence, prompt) in prompts.iter().enumerate() {
            model.select_sequence(sequence).unwrap();
            let want = alone(model, sequence, prompt, sampled);
            let what = format!("{what} sequence {sequence} (sampled: {sampled})");
            same_draws(&what, &together[sequence], &want, tolerance);
        }
        model.select_sequence(0).unwrap();
    }
}

/// The same tokens, and each reported probability within `tolerance` (0:
/// the same draws exactly).
fn same_draws(what: &str, got: &[Drawn], want: &[Drawn], tolerance: f32) {
    if tolerance == 0.0 {
        assert_eq!(got, want, "{what}");
        return;
    }
    let tokens = |drawn: &[Drawn]| drawn.iter().map(|d| d.token).collect::<Vec<_>>();
    assert_eq!(tokens(got), tokens(want), "{what}");
    for (got, want) in got.iter().zip(want) {
        let (got, want) = (got.probabilities.as_ref(), want.probabilities.as_ref());
        let (Some(got), Some(want)) = (got, want) else {
            assert_eq!(got.is_some(), want.is_some(), "{what}");
            continue;
        };
        assert!((got.token - want.token).abs() <= tolerance, "{what}: {got:?} vs {want:?}");
    }
}

fn open(model: &str) -> Artifact {
    Artifact::open(tiny_artifact(model).to_str().unwrap(), OpenOptions::default()).unwrap()
}

#[test]
fn batched_steps_equal_each_sequence_alone() {
    let official = ["tiny-qwen2", "synthetic/qwen3-tiny", "synthetic/qwen2-gqa7"]
        .map(|model| (model.to_string(), None, open(model)));
    // Mistral's rolling cache (window 16): the 14-token prompt's steps roll it,
    // each row over its own sequence's window.
    let families = [
        "families/gemma3-tiny",
        "families/phi-tiny",
        "families/ministral3-tiny",
        "families/mistral-window-tiny",
    ]
    .map(|model| {
        let (folder, artifact) = converted_family(model);
        (model.to_string(), Some(folder), artifact)
    });
    for (name, _folder, artifact) in official.into_iter().chain(families) {
        check(&format!("{name} on the CPU oracle"), &mut load_cpu(&artifact).unwrap(), 0.0);
        let fast = &mut load_cpu_fast(&artifact).unwrap();
        check(&format!("{name} on the fast CPU engine"), fast, 0.0);
    }
}

/// The GPU engine's batched step (the rows' products together, attention
/// row by row over each sequence's cache) draws what each sequence draws
/// alone. Its probabilities differ a little: the products of several rows
/// sum in another order than a decode step's, and where the adapter has
/// tensor cores they round the activations to f16 (on an H200, 3e-4 on a
/// probability of 0.12; within 1e-4 on lavapipe).
#[test]
fn batched_gpu_steps_equal_each_sequence_alone() {
    let ctx = GpuContext::new_blocking(&ContextOptions::from_env())
        .expect("a GPU adapter (lavapipe in CI)");
    let options = GpuOptions { max_rows: 64, context_length: Some(256), sequences: 4 };
    for model in ["tiny-qwen2", "synthetic/qwen3-tiny"] {
        let mut gpu = load_gpu(&open(model), ctx.clone(), options.clone()).unwrap();
        check(&format!("{model} on the GPU engine"), &mut gpu, 2e-3);
    }
    let mut one = load_gpu(&open("tiny-qwen2"), ctx, GpuOptions::default()).unwrap();
    assert_eq!(one.max_sequences(), 1);
    assert!(one.select_sequence(1).is_err());
}

#[test]
fn a_batch_refuses_what_it_cannot_do() {
    let artifact = open("tiny-qwen2");
    let mut model = load_cpu_fast(&artifact).unwrap();
    for sequence in 0..2 {
        model.select_sequence(sequence).unwrap();
        model.greedy_next(&[1, 2, 3]).block_on().unwrap();
    }
    let row = |sequence| BatchRow { sequence, token: Some(4), step: None };

    let twice = model.decode_batch(&[row(0), row(0)]).block_on();
    assert!(matches!(twice, Err(EngineError::Unsupported(_))), "{twice:?}");
    assert!(matches!(model.decode_batch(&[]).block_on(), Err(EngineError::EmptyInput)));
    // A row continuing from the device's token needs a step that left one.
    let untouched = BatchRow { sequence: 2, token: None, step: None };
    let no_token = model.decode_batch(&[row(0), untouched]).block_on();
    assert!(matches!(no_token, Err(EngineError::NoQueuedToken)), "{no_token:?}");

    // A sequence with a step queued must take or drop it first.
    model.select_sequence(1).unwrap();
    model.queue_greedy(StepInput::Queued).unwrap();
    let queued = model.decode_batch(&[row(0), row(1)]).block_on();
    assert!(matches!(queued, Err(EngineError::Unsupported(_))), "{queued:?}");
    assert_eq!(model.selected_sequence(), 1, "a refused batch keeps the selection");
    model.drop_queued();
    // Nothing moved: both sequences still hold their 3 prompt tokens.
    for sequence in 0..2 {
        model.select_sequence(sequence).unwrap();
        assert_eq!(model.position(), 3, "sequence {sequence}");
    }
    assert!(model.select_sequence(model.max_sequences()).is_err());

    // A Gated DeltaNet layer keeps one recurrent state per sequence but runs
    // one sequence per pass.
    let (_folder, artifact) = converted_family("families/qwen3_5-tiny");
    let mut model = load_cpu_fast(&artifact).unwrap();
    for sequence in 0..2 {
        model.select_sequence(sequence).unwrap();
        model.greedy_next(&[1, 2, 3]).block_on().unwrap();
    }
    let recurrent = model.decode_batch(&[row(0), row(1)]).block_on();
    assert!(matches!(recurrent, Err(EngineError::Unsupported(_))), "{recurrent:?}");
    assert_eq!(model.decode_batch(&[row(1)]).block_on().unwrap().len(), 1);
}

/// Generates up to `max_tokens` after `prompt` as the chat engine does: the
/// prompt's step, then steps queued [`STEPS_AHEAD`] ahead of the token read,
/// the queued ones dropped at the end. Returns the draws and the position.
async fn generate(
    model: &mut dyn LanguageModel,
    sequence: usize,
    prompt: &[u32],
    max_tokens: usize,
) -> (Vec<Drawn>, usize) {
    model.queue_sample(StepInput::Tokens(prompt), &sampling_step(sequence, 0)).unwrap();
    let (mut drawn, mut queued) = (Vec::new(), 1);
    loop {
        while queued <= STEPS_AHEAD && drawn.len() + queued < max_tokens {
            let step = sampling_step(sequence, drawn.len() + queued);
            model.queue_sample(StepInput::Queued, &step).unwrap();
            queued += 1;
        }
        queued -= 1;
        drawn.push(model.next_queued().await.unwrap());
        if drawn.len() >= max_tokens {
            model.drop_queued();
            return (drawn, model.position());
        }
    }
}

/// Polls every future in turn, running a batched step whenever all that
/// are left wait for a token, as `serve` drives its requests.
fn drive<T>(batcher: &Batcher, mut futures: Vec<Pin<Box<dyn Future<Output = T> + '_>>>) -> Vec<T> {
    let mut done: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    let mut context = Context::from_waker(Waker::noop());
    let mut steps = 0;
    while done.iter().any(Option::is_none) {
        for (future, done) in futures.iter_mut().zip(&mut done) {
            if done.is_none()
                && let Poll::Ready(value) = future.as_mut().poll(&mut context)
            {
                *done = Some(value);
            }
        }
        if done.iter().any(Option::is_none) {
            assert!(batcher.step().block_on().unwrap() > 0, "a waiting generation got no step");
            steps += 1;
        }
    }
    assert!(steps > 0);
    done.into_iter().map(Option::unwrap).collect()
}

#[test]
fn generations_through_a_batcher_equal_each_alone() {
    let artifact = open("synthetic/qwen3-tiny");
    let prompts = prompts(load_cpu_fast(&artifact).unwrap().spec().vocab_size);
    let lengths = [5, 9, 2, 7];
    let seen = Rc::new(RefCell::new(Seen::default()));
    let watched =
        Watched { inner: Box::new(load_cpu_fast(&artifact).unwrap()), seen: Rc::clone(&seen) };
    let batcher = Batcher::new(Box::new(watched), 4).unwrap();
    let mut handles: Vec<_> = (0..4).map(|s| batcher.handle(s).unwrap()).collect();
    // Two rounds: the second continues each context the first left (and the
    // third sequence's starts while the others are still decoding).
    for round in 0..2 {
        let futures = handles
            .iter_mut()
            .enumerate()
            .map(|(s, handle)| {
                let prompt = &prompts[(s + round) % 4];
                Box::pin(generate(handle, s, prompt, lengths[s] + round))
                    as Pin<Box<dyn Future<Output = _>>>
            })
            .collect();
        let together = drive(&batcher, futures);
        for (s, (drawn, position)) in together.iter().enumerate() {
            let mut alone = load_cpu_fast(&artifact).unwrap();
            let mut want = (Vec::new(), 0);
            for r in 0..=round {
                want = generate(&mut alone, s, &prompts[(s + r) % 4], lengths[s] + r).block_on();
            }
            assert_eq!((drawn, *position), (&want.0, want.1), "round {round}, sequence {s}");
        }
    }
    // The three prompts of several tokens that waited together (the fourth
    // is one token, for the batched pass) went to the model before any
    // token was awaited.
    assert_eq!(seen.borrow().most_prompts_queued, 3);
    assert!(Batcher::new(Box::new(load_cpu_fast(&artifact).unwrap()), 0).is_err());
    assert!(batcher.handle(4).is_err());
}

/// What a [`Watched`] model saw.
#[derive(Default)]
struct Seen {
    /// Steps queued from the device's token ([`StepInput::Queued`]).
    queued_ahead: usize,
    /// Batched passes.
    batches: usize,
    /// Rows of batched passes queued from the device's token.
    batch_rows_ahead: usize,
    /// Prompts queued since a token was last awaited, and the most seen.
    prompts_queued: usize,
    most_prompts_queued: usize,
}

impl Seen {
    /// Counts a step queued with `input`.
    fn queued(&mut self, input: StepInput<'_>) {
        self.queued_ahead += matches!(input, StepInput::Queued) as usize;
        if input.len() > 1 {
            self.prompts_queued += 1;
            self.most_prompts_queued = self.most_prompts_queued.max(self.prompts_queued);
        }
    }
}

/// A model that counts how it is driven and otherwise passes every call on.
struct Watched {
    inner: Box<dyn BatchedModel>,
    seen: Rc<RefCell<Seen>>,
}

impl LanguageModel for Watched {
    fn spec(&self) -> &ModelSpec {
        self.inner.spec()
    }
    fn position(&self) -> usize {
        self.inner.position()
    }
    fn context_capacity(&self) -> usize {
        self.inner.context_capacity()
    }
    fn prefill<'a>(&'a mut self, tokens: &'a [u32]) -> ModelFuture<'a, Vec<f32>> {
        self.inner.prefill(tokens)
    }
    fn greedy_next<'a>(&'a mut self, tokens: &'a [u32]) -> ModelFuture<'a, u32> {
        self.inner.greedy_next(tokens)
    }
    fn queue_greedy(&mut self, input: StepInput<'_>) -> Result<(), EngineError> {
        self.seen.borrow_mut().queued(input);
        self.inner.queue_greedy(input)
    }
    fn next_queued(&mut self) -> ModelFuture<'_, Drawn> {
        self.seen.borrow_mut().prompts_queued = 0;
        self.inner.next_queued()
    }
    fn drop_queued(&mut self) {
        self.inner.drop_queued()
    }
    fn queue_sample(
        &mut self,
        input: StepInput<'_>,
        step: &SamplingStep<'_>,
    ) -> Result<(), EngineError> {
        self.seen.borrow_mut().queued(input);
        self.inner.queue_sample(input, step)
    }
    fn sample_next<'a>(
        &'a mut self,
        tokens: &'a [u32],
        step: &'a SamplingStep<'a>,
    ) -> ModelFuture<'a, Drawn> {
        self.inner.sample_next(tokens, step)
    }
    fn score<'a>(&'a mut self, tokens: &'a [u32]) -> ModelFuture<'a, Vec<f32>> {
        self.inner.score(tokens)
    }
    fn trace(&mut self, tokens: &[u32]) -> Result<(Vec<f32>, Trace), EngineError> {
        self.inner.trace(tokens)
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
}

impl BatchedModel for Watched {
    fn max_sequences(&self) -> usize {
        self.inner.max_sequences()
    }
    fn select_sequence(&mut self, sequence: usize) -> Result<(), EngineError> {
        self.inner.select_sequence(sequence)
    }
    fn selected_sequence(&self) -> usize {
        self.inner.selected_sequence()
    }
    fn queue_batch(&mut self, rows: &[BatchRow<'_>]) -> Result<(), EngineError> {
        let mut seen = self.seen.borrow_mut();
        seen.batches += 1;
        seen.batch_rows_ahead += rows.iter().filter(|row| row.token.is_none()).count();
        self.inner.queue_batch(rows)
    }
    fn decode_batch<'a>(
        &'a mut self,
        rows: &'a [BatchRow<'a>],
    ) -> ModelFuture<'a, Vec<Option<Drawn>>> {
        self.seen.borrow_mut().batches += 1;
        self.inner.decode_batch(rows)
    }
}

/// Pending for the first `polls` polls, then done: a request that arrives later.
struct Later {
    polls: usize,
}

impl Future for Later {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        match self.polls {
            0 => Poll::Ready(()),
            _ => {
                self.polls -= 1;
                Poll::Pending
            }
        }
    }
}

/// A generation alone hands its steps to the model queued ahead, as it does
/// without a batcher; generations that start while it runs wait for no
/// step of it, it joins their batched passes, which are queued ahead of
/// their tokens' readback too, and every one draws what it draws alone (on
/// the CPU engine and on the GPU engine).
#[test]
fn a_lone_generation_is_pipelined_and_later_ones_join_it() {
    let artifact = open("tiny-qwen2");
    let ctx = GpuContext::new_blocking(&ContextOptions::from_env())
        .expect("a GPU adapter (lavapipe in CI)");
    let options = GpuOptions { max_rows: 64, context_length: Some(256), sequences: 3 };
    // The GPU's batched products sum in another order than its decode
    // steps: the same tokens, probabilities within 2e-3 (see
    // `batched_gpu_steps_equal_each_sequence_alone`).
    type Load<'a> = Box<dyn Fn() -> Box<dyn BatchedModel> + 'a>;
    let engines: [(&str, Load, f32); 2] = [
        ("fast CPU", Box::new(|| Box::new(load_cpu_fast(&artifact).unwrap())), 0.0),
        (
            "GPU",
            Box::new(|| Box::new(load_gpu(&artifact, ctx.clone(), options.clone()).unwrap())),
            2e-3,
        ),
    ];
    for (engine, load, tolerance) in engines {
        let prompts = prompts(load().spec().vocab_size);
        // Sequence 0 runs alone for its first steps; 1 and 2 start later, 2
        // while the others decode; 1 stops first and 0 runs alone again.
        let (starts, lengths) = ([0, 4, 7], [16, 5, 8]);
        let seen = Rc::new(RefCell::new(Seen::default()));
        let watched = Watched { inner: load(), seen: Rc::clone(&seen) };
        let batcher = Batcher::new(Box::new(watched), 3).unwrap();
        let mut handles: Vec<_> = (0..3).map(|s| batcher.handle(s).unwrap()).collect();
        let futures = handles
            .iter_mut()
            .enumerate()
            .map(|(s, handle)| {
                let prompt = &prompts[s];
                Box::pin(async move {
                    Later { polls: starts[s] }.await;
                    generate(handle, s, prompt, lengths[s]).await
                }) as Pin<Box<dyn Future<Output = (Vec<Drawn>, usize)>>>
            })
            .collect();
        let together = drive(&batcher, futures);
        for (s, (drawn, position)) in together.iter().enumerate() {
            let want = generate(&mut *load(), s, &prompts[s], lengths[s]).block_on();
            let what = format!("{engine}: sequence {s}");
            same_draws(&what, drawn, &want.0, tolerance);
            assert_eq!(*position, want.1, "{what}");
        }
        let seen = seen.borrow();
        assert!(
            seen.queued_ahead > 0,
            "{engine}: the lone generation's steps were not queued ahead"
        );
        assert!(seen.batches > 0, "{engine}: the generations never shared a pass");
        assert!(
            seen.batch_rows_ahead > 0,
            "{engine}: no batched pass was queued ahead of its tokens' readback"
        );
    }
}

/// A lone generation whose step the model refuses (a prompt longer than the
/// context) gets the error as its result, and its sequence then generates
/// as it does alone.
#[test]
fn a_refused_lone_step_is_its_generations_error() {
    let artifact = open("tiny-qwen2");
    let batcher = Batcher::new(Box::new(load_cpu_fast(&artifact).unwrap()), 2).unwrap();
    let mut handle = batcher.handle(0).unwrap();
    let too_long = vec![1u32; handle.context_capacity() + 1];
    let refused = drive(&batcher, vec![Box::pin(handle.greedy_next(&too_long))]);
    assert!(
        matches!(refused[0], Err(EngineError::ContextWindowExceeded { .. })),
        "{:?}",
        refused[0]
    );
    assert_eq!(handle.position(), 0);
    let prompts = prompts(handle.spec().vocab_size);
    let got = drive(&batcher, vec![Box::pin(generate(&mut handle, 0, &prompts[0], 4))]);
    let want = generate(&mut load_cpu_fast(&artifact).unwrap(), 0, &prompts[0], 4).block_on();
    assert_eq!(got[0], want);
}
