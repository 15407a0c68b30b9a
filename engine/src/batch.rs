//! Continuous batching: several generations share one model, each through a
//! [`SequenceHandle`] of its own (a [`LanguageModel`] for one sequence), and
//! their decode steps run together.
//!
//! A handle only records the steps its generation queues. Whoever drives the
//! generations (a server's loop over its requests' futures) polls each one
//! until it waits for a token ([`LanguageModel::next_queued`] is pending),
//! then calls [`Batcher::step`]: every waiting sequence's oldest step goes to
//! the model, the one-token steps together in one pass
//! ([`BatchedModel::queue_batch`], whose products read each weight once for
//! all rows) and a longer input (a prompt) on its own, and the generations
//! are polled again. So a new request's prefill runs between the decode
//! steps of those already running.
//!
//! The steps that continue a sequence from its previous token go to the
//! model as the generation queued them, up to [`STEPS_AHEAD`] passes ahead
//! of the one whose tokens the host awaits: the next pass reads each row's
//! token where the previous one drew it, on the device, so the GPU runs it
//! while the host reads, detokenizes and streams the tokens before it. A
//! lone generation's passes are one-row steps through the model's own
//! decode path (on the GPU the fused single-row kernels), as without a
//! batcher. A generation that stops drops its steps in the model (the model
//! rewinds its context), so each sequence's context holds exactly what the
//! same generation alone leaves, and each draws the tokens it would draw
//! alone (greedy, and sampled with the same random numbers).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use mlc_kernels::cpu::SamplingParams;

use crate::EngineError;
use crate::backend::StepInput;
use crate::model::{BatchRow, BatchedModel, LanguageModel, ModelFuture, STEPS_AHEAD};
use crate::models::{ModelSpec, decoder};
use crate::sampling::{Drawn, SamplingStep, TokenCounts};

/// One model shared by the generations of several sequences.
pub struct Batcher {
    shared: Rc<RefCell<Shared>>,
    spec: ModelSpec,
    capacity: usize,
}

/// What the batcher and its handles share.
struct Shared {
    /// The model; `None` while [`Batcher::step`] or a handle's direct call
    /// (`prefill`, `score`, `trace`) runs it.
    model: Option<Box<dyn BatchedModel>>,
    sequences: Vec<Slot>,
}

/// One sequence's steps and results.
#[derive(Default)]
struct Slot {
    /// Steps queued and not run yet, oldest first.
    queued: VecDeque<QueuedStep>,
    /// The result of the step that ran, until its generation takes it.
    ready: Option<Result<Drawn, EngineError>>,
    /// The last token drawn: the input of a step that continues from it.
    last: Option<u32>,
    /// Tokens in the sequence's context.
    position: usize,
    /// The generation waiting for `ready`.
    waiting: Option<Waker>,
    /// Reset while the model was running a step: its context is emptied
    /// before the sequence runs again.
    stale: bool,
    /// Steps of a lone generation queued in the model itself, whose results
    /// it has not taken yet (they come before any step in `queued`).
    in_model: usize,
    /// Dropped while the model was running a step: its steps in the model
    /// are dropped before the sequence runs again.
    drop_in_model: bool,
}

/// A step as a handle's caller queued it.
struct QueuedStep {
    input: QueuedInput,
    /// How the token is drawn (`None`: the most likely one).
    step: Option<OwnedStep>,
}

/// The tokens a queued step appends.
enum QueuedInput {
    Tokens(Vec<u32>),
    /// The token the sequence's previous step drew ([`StepInput::Queued`]).
    Last,
}

/// A [`SamplingStep`] that owns its parts, so that it can wait for its turn.
struct OwnedStep {
    params: SamplingParams,
    logit_bias: Vec<(u32, f32)>,
    /// `Some`: the counts restart from these pairs ([`TokenCounts::Start`]).
    start_counts: Option<Vec<(u32, u32)>>,
    active_vocab: Option<usize>,
    uniform: f32,
    token_mask: Option<Vec<u32>>,
    top_logprobs: usize,
}

impl OwnedStep {
    fn new(step: &SamplingStep<'_>) -> OwnedStep {
        OwnedStep {
            params: *step.params,
            logit_bias: step.logit_bias.to_vec(),
            start_counts: match step.counts {
                TokenCounts::Start(pairs) => Some(pairs.to_vec()),
                TokenCounts::Kept => None,
            },
            active_vocab: step.active_vocab,
            uniform: step.uniform,
            token_mask: step.token_mask.map(<[u32]>::to_vec),
            top_logprobs: step.top_logprobs,
        }
    }

    fn borrowed(&self) -> SamplingStep<'_> {
        SamplingStep {
            params: &self.params,
            logit_bias: &self.logit_bias,
            counts: match &self.start_counts {
                Some(pairs) => TokenCounts::Start(pairs),
                None => TokenCounts::Kept,
            },
            active_vocab: self.active_vocab,
            uniform: self.uniform,
            token_mask: self.token_mask.as_deref(),
            top_logprobs: self.top_logprobs,
        }
    }
}

/// A step taken out of its slot to run, with its input resolved.
struct Work {
    sequence: usize,
    tokens: Vec<u32>,
    step: Option<OwnedStep>,
}

impl Batcher {
    /// Shares `model` between `sequences` sequences (at most what the model
    /// holds at once, [`BatchedModel::max_sequences`]).
    pub fn new(model: Box<dyn BatchedModel>, sequences: usize) -> Result<Batcher, EngineError> {
        let most = model.max_sequences();
        if sequences == 0 || sequences > most {
            return Err(EngineError::Unsupported(format!(
                "{sequences} sequences: this model holds 1 to {most} at once"
            )));
        }
        let (spec, capacity) = (model.spec().clone(), model.context_capacity());
        let slots = (0..sequences).map(|_| Slot::default()).collect();
        let shared = Shared { model: Some(model), sequences: slots };
        Ok(Batcher { shared: Rc::new(RefCell::new(shared)), spec, capacity })
    }

    /// Sequences the batcher shares the model between.
    pub fn sequences(&self) -> usize {
        self.shared.borrow().sequences.len()
    }

    /// The handle of sequence `sequence` (below [`Batcher::sequences`]).
    /// Two handles of one sequence would share its context: hand out one.
    pub fn handle(&self, sequence: usize) -> Result<SequenceHandle, EngineError> {
        match sequence < self.sequences() {
            true => Ok(SequenceHandle {
                shared: Rc::clone(&self.shared),
                sequence,
                spec: self.spec.clone(),
                capacity: self.capacity,
            }),
            false => Err(EngineError::Unsupported(format!(
                "sequence {sequence}: the batcher has {}",
                self.sequences()
            ))),
        }
    }

    /// Hands the model the oldest queued step of every sequence whose
    /// generation waits for it (each prompt on its own, the one-token steps
    /// together in one pass), then queues each running sequence's
    /// continuing steps ahead, up to [`STEPS_AHEAD`] passes beyond the one
    /// awaited (see the module docs), and takes one result for every waiting
    /// generation. Returns how many waiting generations got a result, a
    /// refusal's error included (0: none waited).
    pub async fn step(&self) -> Result<usize, EngineError> {
        let (mut model, taking, refused) = {
            let mut shared = self.shared.borrow_mut();
            let (mut work, mut taking, mut refused) = (Vec::new(), Vec::new(), 0);
            for (sequence, slot) in shared.sequences.iter_mut().enumerate() {
                if slot.waiting.is_none() || slot.ready.is_some() {
                    continue;
                }
                if slot.in_model > 0 {
                    taking.push(sequence);
                    continue;
                }
                let Some(queued) = slot.queued.pop_front() else { continue };
                let tokens = match (queued.input, slot.last) {
                    (QueuedInput::Tokens(tokens), _) => tokens,
                    (QueuedInput::Last, Some(last)) => vec![last],
                    (QueuedInput::Last, None) => {
                        slot.ready = Some(Err(EngineError::NoQueuedToken));
                        refused += 1;
                        continue;
                    }
                };
                work.push(Work { sequence, tokens, step: queued.step });
            }
            if taking.is_empty() && work.is_empty() {
                // Nothing ran; a step refused above still wakes its generation.
                shared.wake_ready();
                return Ok(refused);
            }
            let mut model = shared.model.take().ok_or_else(busy)?;
            shared.refresh_stale(model.as_mut());
            // Sync calls: the model records the passes, nothing awaits.
            refused += shared.start_in_model(model.as_mut(), work, &mut taking);
            shared.queue_ahead(model.as_mut());
            (model, taking, refused)
        };
        let mut taken = Vec::with_capacity(taking.len());
        for &sequence in &taking {
            let result = match model.select_sequence(sequence) {
                Ok(()) => model.next_queued().await,
                Err(error) => Err(error),
            };
            taken.push((sequence, result));
        }
        let ran = refused + taken.len();
        let mut shared = self.shared.borrow_mut();
        for (sequence, result) in taken {
            shared.take_from_model(model.as_mut(), sequence, result);
        }
        shared.refresh_stale(model.as_mut());
        shared.model = Some(model);
        shared.wake_ready();
        Ok(ran)
    }
}

impl Shared {
    /// Empties the context of every sequence reset while `model` was out,
    /// and drops the steps in the model of every sequence dropped meanwhile.
    fn refresh_stale(&mut self, model: &mut dyn BatchedModel) {
        for (sequence, slot) in self.sequences.iter_mut().enumerate() {
            if (slot.stale || slot.drop_in_model) && model.select_sequence(sequence).is_ok() {
                match slot.stale {
                    true => model.reset(),
                    false => model.drop_queued(),
                }
                slot.position = model.position();
                (slot.stale, slot.drop_in_model) = (false, false);
            }
        }
    }

    /// Queues the waiting steps `work` in the model: each prompt in a pass of
    /// its own (one after the other on the device, none awaited), then the
    /// one-token steps in one pass. Each sequence whose step is queued joins
    /// `taking`, the others get their error as the step's result (returns
    /// how many).
    fn start_in_model(
        &mut self,
        model: &mut dyn BatchedModel,
        work: Vec<Work>,
        taking: &mut Vec<usize>,
    ) -> usize {
        let (single, prompts): (Vec<Work>, Vec<Work>) =
            work.into_iter().partition(|work| work.tokens.len() == 1);
        let mut outcomes: Vec<(usize, Result<(), EngineError>)> = prompts
            .iter()
            .map(|work| {
                let input = StepInput::Tokens(&work.tokens);
                (work.sequence, queue_alone(model, work.sequence, input, work.step.as_ref()))
            })
            .collect();
        let rows: Vec<PassRow> = single
            .iter()
            .map(|work| PassRow {
                sequence: work.sequence,
                token: Some(work.tokens[0]),
                step: work.step.as_ref(),
            })
            .collect();
        outcomes.extend(queue_pass(model, &rows));
        let mut refused = 0;
        for (sequence, queued) in outcomes {
            let slot = &mut self.sequences[sequence];
            match queued {
                Ok(()) => {
                    slot.in_model = 1;
                    taking.push(sequence);
                }
                Err(error) => {
                    slot.ready = Some(Err(error));
                    refused += 1;
                }
            }
        }
        refused
    }

    /// Queues the continuing steps (each from the token before it, read on
    /// the device) of every sequence with steps in the model, a pass at a
    /// time, until each has [`STEPS_AHEAD`] beyond the one it waits for.
    fn queue_ahead(&mut self, model: &mut dyn BatchedModel) {
        // A sequence whose step the model refused stops here: that step runs
        // again on its own when the steps before it are taken (a full
        // context gives its error there).
        let mut refused = vec![false; self.sequences.len()];
        loop {
            let next: Vec<(usize, Option<OwnedStep>)> = self
                .sequences
                .iter_mut()
                .enumerate()
                .filter(|(sequence, slot)| {
                    !refused[*sequence]
                        && (1..=STEPS_AHEAD).contains(&slot.in_model)
                        && matches!(
                            slot.queued.front(),
                            Some(QueuedStep { input: QueuedInput::Last, .. })
                        )
                })
                .map(|(sequence, slot)| {
                    (sequence, slot.queued.pop_front().expect("a front step").step)
                })
                .collect();
            if next.is_empty() {
                return;
            }
            let rows: Vec<PassRow> = next
                .iter()
                .map(|(sequence, step)| PassRow {
                    sequence: *sequence,
                    token: None,
                    step: step.as_ref(),
                })
                .collect();
            let outcome = queue_pass(model, &rows);
            for ((sequence, queued), (_, step)) in outcome.into_iter().zip(next) {
                let slot = &mut self.sequences[sequence];
                match queued {
                    Ok(()) => slot.in_model += 1,
                    Err(_) => {
                        slot.queued.push_front(QueuedStep { input: QueuedInput::Last, step });
                        refused[sequence] = true;
                    }
                }
            }
        }
    }

    /// Hands the result of `sequence`'s oldest step in the model to its
    /// generation. A result nobody waits for any more (the generation
    /// dropped its steps meanwhile) ran in vain: the context starts over,
    /// as when a step ran whose token nobody takes (`drop_queued`).
    fn take_from_model(
        &mut self,
        model: &mut dyn BatchedModel,
        sequence: usize,
        result: Result<Drawn, EngineError>,
    ) {
        let slot = &mut self.sequences[sequence];
        if model.select_sequence(sequence).is_err() {
            return;
        }
        if slot.in_model == 0 {
            if !slot.stale {
                model.reset();
                *slot = Slot::default();
            }
            return;
        }
        slot.in_model -= 1;
        if result.is_err() {
            // The steps behind a failed one cannot continue from it.
            model.drop_queued();
            slot.in_model = 0;
        }
        slot.position = model.position() - slot.in_model;
        slot.last = result.as_ref().ok().map(|drawn| drawn.token);
        slot.ready = Some(result);
    }

    /// Wakes every generation whose result is ready.
    fn wake_ready(&mut self) {
        for slot in &mut self.sequences {
            if slot.ready.is_some()
                && let Some(waker) = slot.waiting.take()
            {
                waker.wake();
            }
        }
    }
}

/// One row of a pass the batcher queues.
struct PassRow<'a> {
    sequence: usize,
    /// The host's token, or `None` for the one the sequence's newest step
    /// draws on the device.
    token: Option<u32>,
    /// How the next token is drawn (`None`: the most likely one).
    step: Option<&'a OwnedStep>,
}

/// Queues one pass of `rows` in the model: a lone row (or each row of a model with
/// recurrent state) through the model's own decode path, several through
/// [`BatchedModel::queue_batch`]. A refused batch is queued row by row, so
/// that one row's refusal (a full context) is that row's alone. Returns each
/// row's outcome, in order.
fn queue_pass(
    model: &mut dyn BatchedModel,
    rows: &[PassRow<'_>],
) -> Vec<(usize, Result<(), EngineError>)> {
    if rows.len() > 1 && !model.spec().recurrent() {
        let steps: Vec<Option<SamplingStep>> =
            rows.iter().map(|row| row.step.map(OwnedStep::borrowed)).collect();
        let batch: Vec<BatchRow> = rows
            .iter()
            .zip(&steps)
            .map(|(row, step)| BatchRow {
                sequence: row.sequence,
                token: row.token,
                step: step.as_ref(),
            })
            .collect();
        if model.queue_batch(&batch).is_ok() {
            return rows.iter().map(|row| (row.sequence, Ok(()))).collect();
        }
    }
    rows.iter()
        .map(|&PassRow { sequence, token, step }| {
            let token = token.map(|token| [token]);
            let input = match &token {
                Some(token) => StepInput::Tokens(token),
                None => StepInput::Queued,
            };
            (sequence, queue_alone(model, sequence, input, step))
        })
        .collect()
}

/// Queues one step of `sequence` through the model's own path for one
/// sequence (a prompt, or a lone row's decode step).
fn queue_alone(
    model: &mut dyn BatchedModel,
    sequence: usize,
    input: StepInput<'_>,
    step: Option<&OwnedStep>,
) -> Result<(), EngineError> {
    model.select_sequence(sequence)?;
    match step {
        Some(step) => model.queue_sample(input, &step.borrowed()),
        None => model.queue_greedy(input),
    }
}

/// The error of a call made while the shared model runs a step.
fn busy() -> EngineError {
    EngineError::Unsupported("the shared model is running a step for another sequence".into())
}

/// One sequence of a [`Batcher`]: a [`LanguageModel`] whose queued steps run
/// when [`Batcher::step`] finds its generation waiting for them.
pub struct SequenceHandle {
    shared: Rc<RefCell<Shared>>,
    sequence: usize,
    spec: ModelSpec,
    capacity: usize,
}

impl SequenceHandle {
    /// Queues a step.
    fn queue(&mut self, input: StepInput<'_>, step: Option<OwnedStep>) -> Result<(), EngineError> {
        let mut shared = self.shared.borrow_mut();
        let slot = &mut shared.sequences[self.sequence];
        let input = match input {
            StepInput::Tokens([]) => return Err(EngineError::EmptyInput),
            StepInput::Tokens(tokens) => QueuedInput::Tokens(tokens.to_vec()),
            StepInput::Queued
                if slot.queued.is_empty()
                    && slot.in_model == 0
                    && slot.ready.is_none()
                    && slot.last.is_none() =>
            {
                return Err(EngineError::NoQueuedToken);
            }
            StepInput::Queued => QueuedInput::Last,
        };
        slot.queued.push_back(QueuedStep { input, step });
        Ok(())
    }

    /// Runs `call` on the model with this sequence selected, at once (not
    /// batched); refused while steps of this sequence wait to run.
    fn direct<'a, T: 'a>(
        &'a mut self,
        call: impl AsyncFnOnce(&mut dyn BatchedModel) -> Result<T, EngineError> + 'a,
    ) -> ModelFuture<'a, T> {
        Box::pin(async move {
            let mut model = {
                let mut shared = self.shared.borrow_mut();
                let slot = &shared.sequences[self.sequence];
                if !slot.queued.is_empty() || slot.in_model > 0 || slot.ready.is_some() {
                    return Err(EngineError::Unsupported(
                        "a direct call while this sequence has steps queued".into(),
                    ));
                }
                let mut model = shared.model.take().ok_or_else(busy)?;
                shared.refresh_stale(model.as_mut());
                model
            };
            let result = match model.select_sequence(self.sequence) {
                Ok(()) => call(model.as_mut()).await,
                Err(error) => Err(error),
            };
            let mut shared = self.shared.borrow_mut();
            shared.sequences[self.sequence].position = model.position();
            shared.model = Some(model);
            result
        })
    }
}

impl LanguageModel for SequenceHandle {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn position(&self) -> usize {
        self.shared.borrow().sequences[self.sequence].position
    }

    fn context_capacity(&self) -> usize {
        self.capacity
    }

    fn prefill<'a>(&'a mut self, tokens: &'a [u32]) -> ModelFuture<'a, Vec<f32>> {
        self.direct(async move |model| model.prefill(tokens).await)
    }

    fn greedy_next<'a>(&'a mut self, tokens: &'a [u32]) -> ModelFuture<'a, u32> {
        Box::pin(async move {
            self.queue(StepInput::Tokens(tokens), None)?;
            Ok(self.next_queued().await?.token)
        })
    }

    fn queue_greedy(&mut self, input: StepInput<'_>) -> Result<(), EngineError> {
        self.queue(input, None)
    }

    fn next_queued(&mut self) -> ModelFuture<'_, Drawn> {
        let (shared, sequence) = (Rc::clone(&self.shared), self.sequence);
        Box::pin(poll_fn(move |context| {
            let mut shared = shared.borrow_mut();
            let slot = &mut shared.sequences[sequence];
            if let Some(result) = slot.ready.take() {
                slot.waiting = None;
                return Poll::Ready(result);
            }
            if slot.queued.is_empty() && slot.in_model == 0 {
                return Poll::Ready(Err(EngineError::NoQueuedToken));
            }
            slot.waiting = Some(context.waker().clone());
            Poll::Pending
        }))
    }

    fn drop_queued(&mut self) {
        let mut shared = self.shared.borrow_mut();
        let Shared { model, sequences } = &mut *shared;
        let slot = &mut sequences[self.sequence];
        slot.queued.clear();
        slot.waiting = None;
        if std::mem::take(&mut slot.in_model) > 0 {
            // The model drops the steps it holds (and rewinds the context),
            // now or, while it runs a step, before the sequence runs again.
            match model.as_mut() {
                Some(model) => {
                    if model.select_sequence(self.sequence).is_ok() {
                        model.drop_queued();
                        slot.position = model.position();
                    }
                }
                None => slot.drop_in_model = true,
            }
        }
        if slot.ready.take().is_some() {
            // A step ran whose token nobody takes: the context cannot be
            // cut back here, so it starts over (as a recurrent model's does)
            // and the caller prefills what it keeps again.
            drop(shared);
            self.reset();
        }
    }

    fn queue_sample(
        &mut self,
        input: StepInput<'_>,
        step: &SamplingStep<'_>,
    ) -> Result<(), EngineError> {
        self.queue(input, Some(OwnedStep::new(step)))
    }

    fn sample_next<'a>(
        &'a mut self,
        tokens: &'a [u32],
        step: &'a SamplingStep<'a>,
    ) -> ModelFuture<'a, Drawn> {
        Box::pin(async move {
            self.queue(StepInput::Tokens(tokens), Some(OwnedStep::new(step)))?;
            self.next_queued().await
        })
    }

    fn score<'a>(&'a mut self, tokens: &'a [u32]) -> ModelFuture<'a, Vec<f32>> {
        self.direct(async move |model| model.score(tokens).await)
    }

    fn trace(&mut self, _tokens: &[u32]) -> Result<(Vec<f32>, decoder::Trace), EngineError> {
        Err(EngineError::Unsupported(
            "a trace of a batched sequence (trace the model itself)".into(),
        ))
    }

    fn reset(&mut self) {
        let mut shared = self.shared.borrow_mut();
        let stale = match shared.model.as_mut() {
            Some(model) => model.select_sequence(self.sequence).map(|()| model.reset()).is_err(),
            // A step runs: its context is emptied before the sequence runs again.
            None => true,
        };
        shared.sequences[self.sequence] = Slot { stale, ..Slot::default() };
    }
}
