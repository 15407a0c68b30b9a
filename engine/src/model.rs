//! A loaded model on one backend: weights, KV cache position, and the calls
//! generation is made of (prefill a chunk of tokens, read logits, reset).
//!
//! The calls that bring a result back from the device are futures
//! ([`ModelFuture`]): a browser hands over GPU results only through its event
//! loop. Native callers drive them with `pollster::block_on`; the GPU engine
//! has already waited for the device when the future is first polled, so a
//! decode step stays one submission and a 4-byte readback.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use mlc_kernels::cpu::MAX_TOP_LOGPROBS;
use mlc_loader::Artifact;

use crate::backend::{
    Backend, DecoderWeights, PassInput, Placement, RowPlace, RowToken, StepInput,
};
use crate::models::decoder::{self, Logits};
use crate::models::{ModelSpec, spec_for};
use crate::sampling::{Drawn, SamplingStep};
use crate::{EngineError, weights};

/// Decode steps generation keeps queued on the device past the one whose
/// token the host waits for (docs/performance.md, "The browser's step").
pub const STEPS_AHEAD: usize = 2;

/// The future of a [`LanguageModel`] call. Boxed because the engine holds a
/// `Box<dyn LanguageModel>` and `async fn` in a trait is not dyn-compatible;
/// not `Send` because wgpu's browser types are not (one allocation per step,
/// nothing next to a forward pass).
pub type ModelFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, EngineError>> + 'a>>;

/// What the engine needs from a loaded model, whatever backend runs it.
pub trait LanguageModel {
    /// The decoder description.
    fn spec(&self) -> &ModelSpec;
    /// Tokens currently in the KV cache.
    fn position(&self) -> usize;
    /// Most tokens the KV cache holds on this backend.
    fn context_capacity(&self) -> usize;
    /// Appends `tokens` to the context and returns the logits of the last one
    /// (`vocab_size` values).
    fn prefill<'a>(&'a mut self, tokens: &'a [u32]) -> ModelFuture<'a, Vec<f32>>;
    /// Appends `tokens` and returns the most likely next token, computed where
    /// the logits are (on a GPU only the token id comes back). With no step
    /// queued: it is [`LanguageModel::queue_greedy`] and
    /// [`LanguageModel::next_queued`] at once.
    fn greedy_next<'a>(&'a mut self, tokens: &'a [u32]) -> ModelFuture<'a, u32>;
    /// Appends `input` and starts choosing the most likely next token without
    /// waiting for it. With [`StepInput::Queued`] the input is the token the
    /// previous call chose, read on the device: the host records and submits
    /// step N + 1 while the device still runs step N, and reads token N with
    /// [`LanguageModel::next_queued`] meanwhile.
    fn queue_greedy(&mut self, input: StepInput<'_>) -> Result<(), EngineError>;
    /// The oldest queued token, once the device has it, with the
    /// probabilities its step was asked to report.
    fn next_queued(&mut self) -> ModelFuture<'_, Drawn>;
    /// Forgets the queued steps whose tokens were not taken (a generation
    /// that stopped early): the context is as if they had not run, or, for a
    /// model whose context cannot be rewound (recurrent state or a rolling
    /// KV cache, [`ModelSpec::rewindable`]), empty ([`LanguageModel::position`] 0).
    fn drop_queued(&mut self);
    /// Appends `input` and starts drawing the next token as `step` says: the
    /// sampled counterpart of [`LanguageModel::queue_greedy`], its token read
    /// with [`LanguageModel::next_queued`] too. Nothing of the step waits for
    /// the host: the penalties' counts are the backend's own
    /// ([`crate::sampling::TokenCounts`]), and log probabilities come back
    /// with the token.
    fn queue_sample(
        &mut self,
        input: StepInput<'_>,
        step: &SamplingStep<'_>,
    ) -> Result<(), EngineError>;
    /// Appends `tokens` and draws the next token as `step` says, where the
    /// logits are (on a GPU only the token id comes back). With no step
    /// queued: it is [`LanguageModel::queue_sample`] and
    /// [`LanguageModel::next_queued`] at once.
    fn sample_next<'a>(
        &'a mut self,
        tokens: &'a [u32],
        step: &'a SamplingStep<'a>,
    ) -> ModelFuture<'a, Drawn>;
    /// Appends `tokens` and returns the logits of every one, `[tokens, vocab]`.
    fn score<'a>(&'a mut self, tokens: &'a [u32]) -> ModelFuture<'a, Vec<f32>>;
    /// Like [`LanguageModel::score`] for one call's worth of tokens, also
    /// returning the residual stream at each trace point (`embed`,
    /// `layer{L}_out`, `final_norm`). Blocking: a native tool (the GPU engine
    /// in a browser returns [`EngineError::BlockingReadback`]).
    fn trace(&mut self, tokens: &[u32]) -> Result<(Vec<f32>, decoder::Trace), EngineError>;
    /// Empties the KV cache.
    fn reset(&mut self);
}

/// A [`LanguageModel`] that holds several sequences, each with its own
/// context (KV cache, recurrent state, penalties' counts), and steps them
/// together: what continuous batching runs on ([`crate::batch`]).
pub trait BatchedModel: LanguageModel {
    /// Most sequences the model holds at once, each with its own context
    /// (KV cache, recurrent state, penalties' counts); 1 where the backend
    /// runs one sequence.
    fn max_sequences(&self) -> usize;
    /// Makes `sequence` (below [`BatchedModel::max_sequences`]) the one
    /// every other call acts on; each sequence's context stays as it was left.
    fn select_sequence(&mut self, sequence: usize) -> Result<(), EngineError>;
    /// The selected sequence.
    fn selected_sequence(&self) -> usize;
    /// Queues one decode step of several sequences at once without waiting
    /// for it: row `i` appends its token to sequence `rows[i].sequence` and
    /// draws that sequence's next token as its step says (the most likely one
    /// without a step), the products reading each weight once for all rows.
    /// Each row's step joins its sequence's queue, its token taken with
    /// [`LanguageModel::next_queued`] (that sequence selected) and dropped
    /// with [`LanguageModel::drop_queued`], like a step queued alone; a row
    /// whose token is the device's ([`BatchRow::token`] `None`) continues its
    /// sequence's newest step, so passes can be queued ahead of their
    /// tokens' readback. Each row's draw is the one the sequence would get
    /// alone. The sequences must be distinct; a model with recurrent state
    /// ([`ModelSpec::recurrent`]) takes one row at a time. Leaves the last
    /// row's sequence selected.
    fn queue_batch(&mut self, rows: &[BatchRow<'_>]) -> Result<(), EngineError>;
    /// One decode step of several sequences at once ([`BatchedModel::queue_batch`]),
    /// awaited: each row's draw (`None` where its logits were not finite,
    /// which leaves the sequence one token longer, as a failed step alone
    /// does). The sequences must have no step queued.
    fn decode_batch<'a>(
        &'a mut self,
        rows: &'a [BatchRow<'a>],
    ) -> ModelFuture<'a, Vec<Option<Drawn>>>;
}

/// One sequence's token in a batched step ([`BatchedModel::queue_batch`]).
#[derive(Debug, Clone, Copy)]
pub struct BatchRow<'a> {
    /// The sequence.
    pub sequence: usize,
    /// The token appended to it, or `None` for the one its newest queued
    /// step draws on the device ([`StepInput::Queued`]).
    pub token: Option<u32>,
    /// How its next token is drawn (`None`: the most likely one).
    pub step: Option<&'a SamplingStep<'a>>,
}

/// How a queued step picks its token.
enum Choice<'a> {
    /// The most likely one ([`Backend::queue_argmax`]).
    Argmax,
    /// A draw as the step says ([`Backend::queue_sample`]).
    Sample(&'a SamplingStep<'a>),
}

/// A decoder with its weights on backend `B`.
pub struct Model<B: Backend> {
    spec: ModelSpec,
    weights: DecoderWeights<B>,
    backend: B,
    /// Each sequence's context, made on first selection.
    sequences: Vec<Sequence<B::Pending>>,
    /// The sequence the [`LanguageModel`] calls act on.
    selected: usize,
}

/// What the model keeps of one sequence's context.
struct Sequence<P> {
    position: usize,
    /// Tokens queued on the device and not taken yet, oldest first, with
    /// the number of positions the step that chose each one appended.
    queued: VecDeque<(P, usize)>,
    /// Whether the device holds the token of the newest step, the input that
    /// [`StepInput::Queued`] continues from.
    token_on_device: bool,
}

impl<P> Default for Sequence<P> {
    fn default() -> Self {
        Sequence { position: 0, queued: VecDeque::new(), token_on_device: false }
    }
}

impl<B: Backend> Model<B> {
    /// Builds the family's decoder from `artifact` and loads its weights into `backend`.
    pub fn load(artifact: &Artifact, mut backend: B) -> Result<Model<B>, EngineError> {
        let spec = spec_for(&artifact.config)?;
        backend.prepare(&spec, artifact.quantization())?;
        let weights = weights::load(&spec, artifact, &mut backend)?;
        Ok(Model { spec, weights, backend, sequences: vec![Sequence::default()], selected: 0 })
    }

    /// The selected sequence's context.
    fn sequence(&mut self) -> &mut Sequence<B::Pending> {
        &mut self.sequences[self.selected]
    }

    /// The backend (for its counters).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, to switch its instrumentation (profiling) on and off.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Runs one forward call and advances the position.
    fn forward(
        &mut self,
        input: StepInput<'_>,
        logits: Logits,
        trace: Option<&mut decoder::Trace>,
    ) -> Result<B::Tensor, EngineError> {
        let start = self.sequence().position;
        let needed = start + input.len();
        let window = self.context_capacity();
        if needed > window {
            return Err(EngineError::ContextWindowExceeded { needed, window });
        }
        // The device's token, if any, now belongs to an older step.
        self.sequence().token_on_device = false;
        let place = Placement::Run { start };
        let out = decoder::forward(
            &self.spec,
            &self.weights,
            &mut self.backend,
            input.into(),
            place,
            logits,
            trace,
        )?;
        self.sequence().position = needed;
        Ok(out)
    }

    /// Appends `input` and starts choosing the next token as `choice` says,
    /// leaving it on the device for a following [`StepInput::Queued`].
    fn queue(&mut self, input: StepInput<'_>, choice: Choice<'_>) -> Result<(), EngineError> {
        if matches!(input, StepInput::Queued) && !self.sequence().token_on_device {
            return Err(EngineError::NoQueuedToken);
        }
        if let Choice::Sample(step) = choice {
            check_top_logprobs(step)?;
        }
        let before = self.sequence().position;
        let logits = match input {
            StepInput::Tokens(tokens) => self.forward_chunked(tokens)?,
            StepInput::Queued => self.forward(input, Logits::Last, None)?,
        };
        let pending = match choice {
            Choice::Argmax => self.backend.queue_argmax(&logits)?,
            Choice::Sample(step) => self.backend.queue_sample(&logits, step)?,
        };
        let sequence = self.sequence();
        sequence.queued.push_back((pending, sequence.position - before));
        sequence.token_on_device = true;
        Ok(())
    }

    /// Runs `tokens` in calls the backend accepts and returns the last call's
    /// logits; refuses tokens that overflow the context before any call, so a
    /// refused prompt leaves the context as it was.
    fn forward_chunked(&mut self, tokens: &[u32]) -> Result<B::Tensor, EngineError> {
        let (needed, window) = (self.sequence().position + tokens.len(), self.context_capacity());
        if needed > window {
            return Err(EngineError::ContextWindowExceeded { needed, window });
        }
        let chunk = self
            .spec
            .prefill_chunk_size
            .min(self.backend.max_tokens_per_call(&self.spec, false))
            .max(1);
        let (rest, last) = match tokens.len() {
            0 => return Err(EngineError::EmptyInput),
            n => tokens.split_at(((n - 1) / chunk) * chunk),
        };
        for piece in rest.chunks(chunk) {
            self.forward(StepInput::Tokens(piece), Logits::Last, None)?;
        }
        self.forward(StepInput::Tokens(last), Logits::Last, None)
    }
}

impl<B: Backend> LanguageModel for Model<B> {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn position(&self) -> usize {
        self.sequences[self.selected].position
    }

    fn context_capacity(&self) -> usize {
        self.backend.context_capacity(&self.spec)
    }

    fn prefill<'a>(&'a mut self, tokens: &'a [u32]) -> ModelFuture<'a, Vec<f32>> {
        Box::pin(async move {
            let logits = self.forward_chunked(tokens)?;
            self.backend.read(&logits).await
        })
    }

    fn greedy_next<'a>(&'a mut self, tokens: &'a [u32]) -> ModelFuture<'a, u32> {
        Box::pin(async move {
            self.queue(StepInput::Tokens(tokens), Choice::Argmax)?;
            Ok(self.next_queued().await?.token)
        })
    }

    fn queue_greedy(&mut self, input: StepInput<'_>) -> Result<(), EngineError> {
        self.queue(input, Choice::Argmax)
    }

    fn queue_sample(
        &mut self,
        input: StepInput<'_>,
        step: &SamplingStep<'_>,
    ) -> Result<(), EngineError> {
        self.queue(input, Choice::Sample(step))
    }

    fn next_queued(&mut self) -> ModelFuture<'_, Drawn> {
        Box::pin(async move {
            let sequence = self.sequence();
            let (pending, _) = sequence.queued.pop_front().ok_or(EngineError::NoQueuedToken)?;
            // The position at which this token's logits were computed.
            let step = sequence.position
                - sequence.queued.iter().map(|(_, positions)| positions).sum::<usize>();
            match self.backend.take_token(pending).await? {
                Some(drawn) => Ok(drawn),
                None => {
                    // Later steps ran on an invalid token: their work is void.
                    self.drop_queued();
                    Err(EngineError::NonFiniteLogits { step })
                }
            }
        })
    }

    fn drop_queued(&mut self) {
        let rewindable = self.spec.rewindable();
        let sequence = self.sequence();
        if !sequence.queued.is_empty() {
            // The device's token is a dropped step's.
            sequence.token_on_device = false;
            if !rewindable {
                // The dropped steps have advanced the Gated DeltaNet state
                // or rolled the KV cache over evicted tokens, neither of
                // which can be rewound: the context starts over, and a
                // caller that kept its tokens prefills them again.
                self.reset();
                return;
            }
        }
        sequence.position -=
            sequence.queued.drain(..).map(|(_, positions)| positions).sum::<usize>();
    }

    fn sample_next<'a>(
        &'a mut self,
        tokens: &'a [u32],
        step: &'a SamplingStep<'a>,
    ) -> ModelFuture<'a, Drawn> {
        Box::pin(async move {
            self.queue(StepInput::Tokens(tokens), Choice::Sample(step))?;
            self.next_queued().await
        })
    }

    fn score<'a>(&'a mut self, tokens: &'a [u32]) -> ModelFuture<'a, Vec<f32>> {
        Box::pin(async move {
            if tokens.is_empty() {
                return Err(EngineError::EmptyInput);
            }
            let mut chunk = self.backend.max_tokens_per_call(&self.spec, true).max(1);
            if self.spec.rolling_window.is_some() {
                // What a rolling cache's rows see depends on where each pass
                // starts: score in the chunks a prefill runs (MLC's).
                chunk = chunk.min(self.spec.prefill_chunk_size);
            }
            let mut all = Vec::with_capacity(tokens.len() * self.spec.vocab_size);
            for piece in tokens.chunks(chunk) {
                let logits = self.forward(StepInput::Tokens(piece), Logits::All, None)?;
                all.extend(self.backend.read(&logits).await?);
            }
            Ok(all)
        })
    }

    fn trace(&mut self, tokens: &[u32]) -> Result<(Vec<f32>, decoder::Trace), EngineError> {
        if tokens.is_empty() {
            return Err(EngineError::EmptyInput);
        }
        let most = self.backend.max_tokens_per_call(&self.spec, true);
        if tokens.len() > most {
            return Err(EngineError::Config(format!(
                "a trace covers at most {most} tokens on this backend, got {}",
                tokens.len()
            )));
        }
        let mut trace = decoder::Trace::new();
        let logits = self.forward(StepInput::Tokens(tokens), Logits::All, Some(&mut trace))?;
        Ok((self.backend.to_host(&logits)?, trace))
    }

    fn reset(&mut self) {
        *self.sequence() = Sequence::default();
        self.backend.reset_cache();
    }
}

impl<B: Backend> BatchedModel for Model<B> {
    fn max_sequences(&self) -> usize {
        self.backend.max_sequences()
    }

    fn select_sequence(&mut self, sequence: usize) -> Result<(), EngineError> {
        // The backend refuses a sequence beyond what it holds.
        self.backend.select_sequence(sequence)?;
        if self.sequences.len() <= sequence {
            self.sequences.resize_with(sequence + 1, Sequence::default);
        }
        self.selected = sequence;
        Ok(())
    }

    fn selected_sequence(&self) -> usize {
        self.selected
    }

    fn queue_batch(&mut self, rows: &[BatchRow<'_>]) -> Result<(), EngineError> {
        let places = self.place_batch(rows)?;
        let tokens: Vec<RowToken> =
            rows.iter().map(|row| RowToken { sequence: row.sequence, token: row.token }).collect();
        let logits = decoder::forward(
            &self.spec,
            &self.weights,
            &mut self.backend,
            PassInput::Rows(&tokens),
            Placement::Rows(&places),
            Logits::All,
            None,
        )?;
        // Every row's draw is submitted at once.
        let draws: Vec<_> = rows.iter().map(|row| (row.sequence, row.step)).collect();
        let pending = self.backend.queue_draws(&logits, &draws)?;
        for (row, pending) in rows.iter().zip(pending) {
            let sequence = &mut self.sequences[row.sequence];
            sequence.position += 1;
            sequence.queued.push_back((pending, 1));
            sequence.token_on_device = true;
        }
        self.selected = rows[rows.len() - 1].sequence;
        Ok(())
    }

    fn decode_batch<'a>(
        &'a mut self,
        rows: &'a [BatchRow<'a>],
    ) -> ModelFuture<'a, Vec<Option<Drawn>>> {
        Box::pin(async move {
            let selected = self.selected;
            let drawn = self.run_batch(rows).await;
            // Whatever happened, the calls act on the selected sequence again.
            self.select_sequence(selected)?;
            drawn
        })
    }
}

impl<B: Backend> Model<B> {
    /// Checks a batch and places its rows: each sequence selectable, distinct,
    /// with room for one more token and, for a row continuing from the
    /// device's token, a step that left one (selecting each in turn).
    fn place_batch(&mut self, rows: &[BatchRow<'_>]) -> Result<Vec<RowPlace>, EngineError> {
        if rows.is_empty() {
            return Err(EngineError::EmptyInput);
        }
        if self.spec.recurrent() && rows.len() > 1 {
            return Err(EngineError::Unsupported(
                "a batched step over several sequences of a model with recurrent state".into(),
            ));
        }
        let window = self.context_capacity();
        let mut places = Vec::with_capacity(rows.len());
        for row in rows {
            if places.iter().any(|place: &RowPlace| place.sequence == row.sequence) {
                return Err(EngineError::Unsupported(format!(
                    "sequence {} appears twice in one batched step",
                    row.sequence
                )));
            }
            if let Some(step) = row.step {
                check_top_logprobs(step)?;
            }
            self.select_sequence(row.sequence)?;
            let sequence = self.sequence();
            if row.token.is_none() && !sequence.token_on_device {
                return Err(EngineError::NoQueuedToken);
            }
            if sequence.position + 1 > window {
                return Err(EngineError::ContextWindowExceeded {
                    needed: sequence.position + 1,
                    window,
                });
            }
            places.push(RowPlace { sequence: row.sequence, position: sequence.position });
        }
        Ok(places)
    }

    /// A batched step awaited ([`BatchedModel::decode_batch`]); leaves the
    /// last row's sequence selected.
    async fn run_batch(
        &mut self,
        rows: &[BatchRow<'_>],
    ) -> Result<Vec<Option<Drawn>>, EngineError> {
        for row in rows {
            if self.sequences.get(row.sequence).is_some_and(|s| !s.queued.is_empty()) {
                return Err(EngineError::Unsupported(format!(
                    "sequence {} has steps queued; take or drop them before a batched step",
                    row.sequence
                )));
            }
        }
        self.queue_batch(rows)?;
        let mut drawn = Vec::with_capacity(rows.len());
        for row in rows {
            let sequence = &mut self.sequences[row.sequence];
            let (pending, _) = sequence.queued.pop_front().expect("queued by queue_batch");
            drawn.push(self.backend.take_token(pending).await?);
        }
        Ok(drawn)
    }
}

/// Refuses more alternatives per token than the samplers report.
fn check_top_logprobs(step: &SamplingStep<'_>) -> Result<(), EngineError> {
    match step.top_logprobs > MAX_TOP_LOGPROBS {
        true => Err(EngineError::Unsupported(format!(
            "top_logprobs {} exceeds {MAX_TOP_LOGPROBS}",
            step.top_logprobs
        ))),
        false => Ok(()),
    }
}
