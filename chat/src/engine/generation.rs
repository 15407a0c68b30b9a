//! The generation loop: a request's choices one after the other, each a
//! prefill then decode steps queued ahead on the device (or one by one under a
//! grammar) until a stop rule fires, with stream chunks handed out as the
//! text grows (see the module above for the pipelining).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use mlc_kernels::cpu::{Minstd, TokenProbabilities};
use web_time::Instant;

use crate::grammar::TokenMatcher;
use crate::openai::{
    ChoiceLogprobs, FinalCalls, FinishReason, GenerationStats, TokenLogprob, TopLogprob, Usage,
};
use crate::stream::OutputStream;
use crate::tools::{self};
use mlc_engine::backend::StepInput;
use mlc_engine::sampling::{Drawn, SamplingStep, TokenCounts};
use mlc_engine::{EngineError, STEPS_AHEAD};

use super::plan::{Kept, Plan, Prepared, Sampler, grammar_failure};
use super::response::{ChoiceOutcome, ChunkKind, Outcome, call_deltas};
use super::{ChatEngine, RequestError, SEED_MODULUS, clock_seeded_rng};

impl ChatEngine {
    /// Runs the choices of a request with `seed` applied (WebLLM seeds once per
    /// request and reseeds from the clock afterwards, whatever happened), past
    /// the draws of `replayed` tokens a cut-short run took already.
    pub(super) async fn run<K: ChunkKind>(
        &mut self,
        seed: Option<f64>,
        replayed: usize,
        plan: &Plan,
        on_chunk: &mut dyn FnMut(K::Chunk),
        mut prepare: impl FnMut(&mut ChatEngine, Kept) -> Result<Prepared, RequestError>,
    ) -> Result<Outcome, RequestError> {
        if let Some(seed) = seed {
            // Validation accepted only integers; WebLLM leaves negative seeds
            // undefined, here they wrap into range.
            self.rng = Minstd::new(seed.rem_euclid(SEED_MODULUS) as u64);
        }
        for _ in 0..replayed {
            self.rng.next_f32();
        }
        let outcome = self.run_choices::<K>(plan, on_chunk, &mut prepare).await;
        self.rng = clock_seeded_rng();
        outcome
    }

    /// The choices of a request, one after the other, and their usage.
    pub(super) async fn run_choices<K: ChunkKind>(
        &mut self,
        plan: &Plan,
        on_chunk: &mut dyn FnMut(K::Chunk),
        prepare: &mut impl FnMut(&mut ChatEngine, Kept) -> Result<Prepared, RequestError>,
    ) -> Result<Outcome, RequestError> {
        let mut choices = Vec::with_capacity(plan.choices as usize);
        let mut stats = GenerationStats::default();
        for _ in 0..plan.choices {
            // One interrupt stops every remaining choice, as in WebLLM.
            let choice = match self.interrupt.load(Ordering::SeqCst) {
                true => ChoiceOutcome::aborted(plan.sampler.chunk_logprobs(None)),
                false => self.run_choice::<K>(plan, on_chunk, prepare).await?,
            };
            stats += choice.stats;
            choices.push(choice);
        }
        let usage = Usage::from_stats(&stats, plan.started.elapsed().as_secs_f64(), None);
        if plan.include_usage {
            on_chunk(K::usage(&plan.id, usage.clone()));
        }
        Ok(Outcome { choices, usage })
    }

    /// One choice: prompt, generation, then the conversation kept for the next request.
    pub(super) async fn run_choice<K: ChunkKind>(
        &mut self,
        plan: &Plan,
        on_chunk: &mut dyn FnMut(K::Chunk),
        prepare: &mut impl FnMut(&mut ChatEngine, Kept) -> Result<Prepared, RequestError>,
    ) -> Result<ChoiceOutcome, RequestError> {
        let round_start = Instant::now();
        // Forget the kept conversation before anything can fail, so that a
        // failed round makes the next request reset the KV cache.
        let kept =
            Kept { conversation: std::mem::take(&mut self.kept), finish: self.last_finish.take() };
        let prepared = prepare(self, kept)?;
        let mut emit = |text: String, logprobs: Option<ChoiceLogprobs>| {
            if plan.streaming {
                on_chunk(K::delta(&plan.id, text, logprobs));
            }
        };
        let mut matcher = plan.constraint.as_ref().map(|constraint| constraint.matcher.clone());
        let generated = self
            .generate(
                &prepared.ids,
                prepared.output,
                &plan.sampler,
                matcher.as_mut(),
                round_start,
                &mut emit,
            )
            .await?;
        let mut finish_reason = generated.output.finish_reason().unwrap_or(FinishReason::Stop);
        let text = generated.output.text().to_string();
        // As in WebLLM, only a reply that ended by itself is read as tool calls.
        let tool_calls = match plan.tool_calls {
            Some(format) if finish_reason == FinishReason::Stop => {
                tools::parse_calls(format, &text)?
            }
            _ => None,
        };
        if tool_calls.is_some() {
            finish_reason = FinishReason::ToolCalls;
        }
        if plan.streaming {
            let calls = match plan.tool_calls {
                Some(_) => FinalCalls::Calling(tool_calls.as_deref().map(call_deltas)),
                None => FinalCalls::NotCalling,
            };
            on_chunk(K::finish(&plan.id, finish_reason, calls));
        }
        if let Some(mut conversation) = prepared.conversation {
            conversation.finish_reply(&text)?;
            self.kept = conversation;
            self.last_finish = Some(finish_reason);
        }
        let grammar_s = plan
            .constraint
            .as_ref()
            .map(|constraint| (constraint.init_s, generated.grammar_time_s));
        let stats =
            GenerationStats { prompt_tokens: prepared.prompt_tokens, grammar_s, ..generated.stats };
        self.last_message.clone_from(&text);
        self.last_round = Some(stats);
        let logprobs =
            plan.sampler.logprobs.map(|_| ChoiceLogprobs { content: generated.logprobs });
        Ok(ChoiceOutcome { text, finish_reason, logprobs, stats, tool_calls })
    }

    /// The generation loop (WebLLM's prefill step and decode steps): each
    /// sampled token goes through `output`'s stop rules, then the context
    /// rule; `emit` gets each stream delta; the pause is awaited and then the
    /// interrupt flag is checked before every decode step's token is taken.
    /// With a `matcher`, each step draws only among the tokens its grammar allows.
    ///
    /// Without a grammar each step is queued ahead, before the previous token
    /// is read (see the module docs). Whatever
    /// ends the round, a step still queued is dropped again, so the KV cache
    /// holds what a step-by-step round leaves: the prompt and every output
    /// token but the last.
    pub(super) async fn generate(
        &mut self,
        prompt: &[u32],
        output: OutputStream,
        sampler: &Sampler,
        matcher: Option<&mut TokenMatcher>,
        round_start: Instant,
        emit: &mut dyn FnMut(String, Option<ChoiceLogprobs>),
    ) -> Result<Generated, RequestError> {
        let generated = self.decode(prompt, output, sampler, matcher, round_start, emit).await;
        self.model.drop_queued();
        generated
    }

    /// The loop of [`generate`](Self::generate), which may leave a step queued.
    ///
    /// Decode time counts, for a step taken on its own, from its start (after
    /// the pause) until its token is on the host; for a step queued ahead,
    /// from the previous token on the host until its own, since the device
    /// runs it while the host handles that token and pauses.
    pub(super) async fn decode(
        &mut self,
        prompt: &[u32],
        mut output: OutputStream,
        sampler: &Sampler,
        mut matcher: Option<&mut TokenMatcher>,
        round_start: Instant,
        emit: &mut dyn FnMut(String, Option<ChoiceLogprobs>),
    ) -> Result<Generated, RequestError> {
        // A grammar's next mask needs the previous token on the host.
        let pipelined = matcher.is_none();
        let mut logprobs = Vec::new();
        let mut grammar_time_s = 0.0;
        let mut stats = GenerationStats::default();
        // The generator before the draw of each queued step whose token is
        // not taken yet, oldest first: when the round ends, the oldest is
        // restored, so that the request's next choice draws what it would
        // after a step-by-step round.
        let mut untaken: VecDeque<Minstd> = VecDeque::new();
        // Penalties count only the tokens this round generates (not the
        // prompt, nor a preloaded thinking block): the prompt's step starts
        // them empty, and the backend adds each draw, so every later step
        // penalises all tokens before it, read by the host or not.
        // (A resumed round's output so far counts, as it did before the cut.)
        let resumed_counts = token_counts(output.generated_ids());
        let round_counts = TokenCounts::Start(&resumed_counts);
        // What the output hook has been told: the ids up to here, and the
        // prompt's length (the ids fed less the resumed output).
        let mut hooked = output.generated_ids().len();
        let prompt_len = prompt.len() - hooked;
        if pipelined {
            untaken.push_back(self.rng);
            self.queue_step(StepInput::Tokens(prompt), round_counts, sampler, None)?;
        }
        let mut last: Option<u32> = None;
        let mut taken_at = round_start;
        loop {
            let step_started = if pipelined { taken_at } else { Instant::now() };
            let Drawn { token, probabilities } = if pipelined {
                self.queue_ahead(&output, sampler, &mut untaken)?;
                let drawn = self.model.next_queued().await?;
                untaken.pop_front();
                drawn
            } else {
                let fed;
                let (input, counts) = match last {
                    Some(token) => {
                        fed = [token];
                        (StepInput::Tokens(&fed), TokenCounts::Kept)
                    }
                    None => (StepInput::Tokens(prompt), round_counts),
                };
                let mask = next_mask(matcher.as_deref_mut(), &mut grammar_time_s)?;
                self.queue_step(input, counts, sampler, mask.as_deref())?;
                self.model.next_queued().await?
            };
            if let Some(probabilities) = &probabilities {
                logprobs.push(self.token_logprob(token, probabilities)?);
            }
            taken_at = Instant::now();
            match last {
                None => stats.prefill_time_s = (taken_at - round_start).as_secs_f64(),
                Some(_) => {
                    stats.decode_time_s += (taken_at - step_started).as_secs_f64();
                    stats.decode_tokens += 1;
                }
            }
            stats.completion_tokens += 1;
            last = Some(token);
            if let Some(matcher) = matcher.as_deref_mut() {
                let started = Instant::now();
                matcher.accept(token).map_err(grammar_failure)?;
                grammar_time_s += started.elapsed().as_secs_f64();
            }
            output.push(token)?;
            // The last sampled token is never fed, so a full cache ends the
            // round (counted without the steps queued ahead to feed it).
            if self.model.position() - untaken.len() >= self.capacity {
                output.finish(FinishReason::Length);
            }
            if let Some(delta) = output.next_delta() {
                if let Some(hook) = &mut self.output_hook {
                    let ids = output.generated_ids();
                    hook(&ids[hooked..], &delta, prompt_len + ids.len());
                    hooked = ids.len();
                }
                emit(delta, sampler.chunk_logprobs(logprobs.last()));
            }
            if output.finish_reason().is_some() {
                break;
            }
            if let Some(pause) = &self.pause {
                pause().await;
            }
            if self.interrupt.load(Ordering::SeqCst) {
                output.finish(FinishReason::Abort);
                break;
            }
        }
        if let Some(&rng) = untaken.front() {
            self.rng = rng;
        }
        Ok(Generated { output, stats, logprobs, grammar_time_s })
    }

    /// Tops the queue up to [`STEPS_AHEAD`] steps (none for a non-rewindable
    /// model) past the one whose token is taken next, each fed by the token of the newest queued step, unless
    /// the round surely ends before it (`max_tokens` is reached by the steps
    /// already queued, or the context has no room to feed one more); records
    /// in `untaken` the generator before each one's draw.
    pub(super) fn queue_ahead(
        &mut self,
        output: &OutputStream,
        sampler: &Sampler,
        untaken: &mut VecDeque<Minstd>,
    ) -> Result<(), EngineError> {
        // A model whose context cannot be rewound (recurrent state, a rolling
        // KV cache) cannot drop a step it ran (`drop_queued` empties its
        // context), so it runs no step before its input token is taken.
        let ahead = if self.model.spec().rewindable() { STEPS_AHEAD } else { 0 };
        while untaken.len() <= ahead
            && !output.ends_within(untaken.len())
            && self.model.position() < self.capacity
        {
            untaken.push_back(self.rng);
            self.queue_step(StepInput::Queued, TokenCounts::Kept, sampler, None)?;
        }
        Ok(())
    }

    /// Queues a step fed `input` whose token is chosen where the logits are
    /// (on a GPU only the token id, and the log probabilities asked for, come
    /// back), among those `mask` allows (all without one): a plain argmax
    /// when that is what WebLLM's sampling gives, else bias, penalties,
    /// temperature, top-p and the draw, with the penalties' `counts`.
    pub(super) fn queue_step(
        &mut self,
        input: StepInput<'_>,
        counts: TokenCounts<'_>,
        sampler: &Sampler,
        mask: Option<&[u32]>,
    ) -> Result<(), EngineError> {
        // WebLLM draws one uniform per token, greedy or not, so a seed gives
        // the same stream whatever the temperature.
        let uniform = self.rng.next_f32();
        if mask.is_none()
            && sampler.greedy_argmax(self.config.active_vocab_size, self.config.vocab_size)
        {
            return self.model.queue_greedy(input);
        }
        let step = SamplingStep {
            params: &sampler.params,
            logit_bias: &sampler.bias,
            counts,
            active_vocab: self.config.active_vocab_size,
            uniform,
            token_mask: mask,
            top_logprobs: sampler.logprobs.unwrap_or(0),
        };
        self.model.queue_sample(input, &step)
    }

    /// A drawn token's log probability and the most likely tokens', from the
    /// probabilities after mask, bias, penalties and temperature (docs/sampling.md, "The chain", step 7),
    /// which the backend reports with the token.
    pub(super) fn token_logprob(
        &self,
        token: u32,
        probabilities: &TokenProbabilities,
    ) -> Result<TokenLogprob, RequestError> {
        let entry = |id: u32, probability: f32| -> Result<TopLogprob, RequestError> {
            let text = self.tokenizer.decode(&[id])?;
            Ok(TopLogprob {
                bytes: Some(text.as_bytes().to_vec()),
                token: text,
                logprob: f64::from(probability).ln(),
            })
        };
        let sampled = entry(token, probabilities.token)?;
        let top_logprobs = probabilities
            .top
            .iter()
            .map(|&(id, probability)| entry(id, probability))
            .collect::<Result<_, _>>()?;
        Ok(TokenLogprob {
            token: sampled.token,
            bytes: sampled.bytes,
            logprob: sampled.logprob,
            top_logprobs,
        })
    }
}

/// `(token, count)` pairs of `ids`, the penalties' counts of an output.
pub(super) fn token_counts(ids: &[u32]) -> Vec<(u32, u32)> {
    let mut counts: Vec<(u32, u32)> = Vec::new();
    for &id in ids {
        match counts.iter_mut().find(|(token, _)| *token == id) {
            Some((_, count)) => *count += 1,
            None => counts.push((id, 1)),
        }
    }
    counts
}

/// The grammar mask of the next step (timed into `grammar_time_s`), if any.
pub(super) fn next_mask(
    matcher: Option<&mut TokenMatcher>,
    grammar_time_s: &mut f64,
) -> Result<Option<Vec<u32>>, RequestError> {
    let Some(matcher) = matcher else { return Ok(None) };
    let started = Instant::now();
    let mask = matcher.mask().map_err(grammar_failure)?;
    *grammar_time_s += started.elapsed().as_secs_f64();
    Ok(Some(mask))
}

/// The result of the generation loop.
pub(super) struct Generated {
    pub(super) output: OutputStream,
    pub(super) stats: GenerationStats,
    pub(super) logprobs: Vec<TokenLogprob>,
    /// Seconds spent on grammar masks and matcher updates.
    pub(super) grammar_time_s: f64,
}
