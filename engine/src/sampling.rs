//! What one decoding step asks of the sampler (WebLLM's order: the grammar's
//! token mask, logit bias, penalties, temperature, top-p, then a draw with the
//! step's random number) and what it gives back.
//!
//! The penalties' counts are the sampler's own: a round starts them
//! ([`TokenCounts::Start`]) and every draw adds its token, so a step queued
//! before the host has read the previous token still penalises it. The GPU
//! engine keeps them in a device buffer, the CPU engine on the host.

use std::collections::HashMap;

use mlc_kernels::cpu::{Draw, SamplingParams, TokenProbabilities, sample};

/// The counts the step's penalties use.
#[derive(Debug, Clone, Copy)]
pub enum TokenCounts<'a> {
    /// A new round: the counts restart from these `(token, count)` pairs
    /// (none for a chat round, which counts only what it generates).
    Start(&'a [(u32, u32)]),
    /// The counts the sampler keeps: the round's start plus one for every
    /// token drawn since, including a draw the host has not read yet.
    Kept,
}

/// The sampling inputs of one step.
#[derive(Debug, Clone, Copy)]
pub struct SamplingStep<'a> {
    /// Temperature, top-p and penalties.
    pub params: &'a SamplingParams,
    /// `(token, bias)` pairs added to the logits.
    pub logit_bias: &'a [(u32, f32)],
    /// The penalties' counts (kept up to date by every draw).
    pub counts: TokenCounts<'a>,
    /// Ids at or above this are never drawn (`active_vocab_size`); `None`: all.
    pub active_vocab: Option<usize>,
    /// The step's uniform random number in `[0, 1)` (the caller's seeded RNG).
    pub uniform: f32,
    /// Structured output: the ids that may be drawn, a bitmask of
    /// `ceil(vocab / 32)` words (bit `i % 32` of word `i / 32`); `None`: all.
    pub token_mask: Option<&'a [u32]>,
    /// How many of the most probable ids to report with the token's
    /// probability (`top_logprobs`, at most
    /// [`MAX_TOP_LOGPROBS`](mlc_kernels::cpu::MAX_TOP_LOGPROBS)); 0: none.
    pub top_logprobs: usize,
}

/// A token chosen by a step, with the probabilities it was asked to report.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawn {
    /// The token id.
    pub token: u32,
    /// With `top_logprobs > 0`: the token's probability and the most probable
    /// ids, after mask, bias, penalties and temperature.
    pub probabilities: Option<TokenProbabilities>,
}

impl Drawn {
    /// A token chosen without probabilities (greedy argmax).
    pub fn token(token: u32) -> Drawn {
        Drawn { token, probabilities: None }
    }
}

/// The penalties' counts kept on the host (the CPU engine's), with the same
/// contract as the GPU sampler's device buffer.
#[derive(Debug, Default)]
struct HostCounts {
    counts: HashMap<u32, u32>,
}

impl HostCounts {
    /// The `(token, count)` pairs a step penalises, after restarting them if it starts a round.
    pub fn for_step(&mut self, counts: TokenCounts<'_>) -> Vec<(u32, u32)> {
        if let TokenCounts::Start(pairs) = counts {
            self.counts = pairs.iter().copied().collect();
        }
        self.counts.iter().map(|(&token, &count)| (token, count)).collect()
    }

    /// Counts a drawn token.
    pub fn add(&mut self, token: u32) {
        *self.counts.entry(token).or_default() += 1;
    }
}

/// How a backend whose logits are on the host (the CPU engines) chooses tokens: the penalties'
/// counts of the round, and the last token chosen, which a [`StepInput::Queued`] step reads.
///
/// [`StepInput::Queued`]: crate::backend::StepInput::Queued
#[derive(Debug, Default)]
pub struct HostSampler {
    counts: HostCounts,
    queued: Option<u32>,
}

impl HostSampler {
    /// The most likely token (`None` when a logit is not finite); counts nothing.
    pub fn argmax(&mut self, logits: &[f32]) -> Option<Drawn> {
        self.queued = argmax(logits);
        self.queued.map(Drawn::token)
    }

    /// Draws as `step` says, then counts the drawn token for the penalties of the next step.
    pub fn sample(&mut self, logits: &[f32], step: &SamplingStep<'_>) -> Option<Drawn> {
        let appeared = self.counts.for_step(step.counts);
        let drawn = sample_on_host(logits, step, &appeared);
        self.queued = drawn.as_ref().map(|drawn| drawn.token);
        if let Some(token) = self.queued {
            self.counts.add(token);
        }
        drawn
    }

    /// The token the last call chose (`None`: none yet, or its logits were not finite).
    pub fn queued(&self) -> Option<u32> {
        self.queued
    }
}

/// Samples on the host with the penalties of `appeared` (`(token, count)`
/// pairs); `None` when a logit is not finite.
pub fn sample_on_host(
    logits: &[f32],
    step: &SamplingStep<'_>,
    appeared: &[(u32, u32)],
) -> Option<Drawn> {
    if logits.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let draw = Draw {
        params: step.params,
        appeared,
        bias: step.logit_bias,
        mask: step.token_mask,
        active_vocab: step.active_vocab,
        uniform: step.uniform,
        top_logprobs: step.top_logprobs,
    };
    let (token, probabilities) = sample(logits, &draw);
    Some(Drawn { token, probabilities })
}

/// Index of the largest logit (the lowest index among ties), or `None` when a
/// logit is NaN or infinite — a broken model must be an error, not gibberish.
pub fn argmax(logits: &[f32]) -> Option<u32> {
    let usable = !logits.is_empty() && logits.iter().all(|v| v.is_finite());
    usable.then(|| mlc_kernels::cpu::argmax(logits, None))
}

#[cfg(test)]
mod tests {
    use super::argmax;

    #[test]
    fn argmax_takes_the_first_of_ties_and_rejects_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -2.0]), Some(1));
        assert_eq!(argmax(&[1.0, f32::NAN]), None);
        assert_eq!(argmax(&[]), None);
    }
}
