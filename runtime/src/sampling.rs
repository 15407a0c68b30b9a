//! What one decoding step asks of the sampler (WebLLM's order: the grammar's
//! token mask, logit bias, penalties, temperature, top-p, then a draw with the
//! step's random number).

use mlc_kernels::cpu::{SamplingParams, apply_token_mask, sample};

/// The sampling inputs of one step.
#[derive(Debug, Clone, Copy)]
pub struct SamplingStep<'a> {
    /// Temperature, top-p and penalties.
    pub params: &'a SamplingParams,
    /// `(token, bias)` pairs added to the logits.
    pub logit_bias: &'a [(u32, f32)],
    /// `(token, count)` of the tokens generated so far in this round (penalties).
    pub appeared: &'a [(u32, u32)],
    /// Ids at or above this are never drawn (`active_vocab_size`); `None`: all.
    pub active_vocab: Option<usize>,
    /// The step's uniform random number in `[0, 1)` (the caller's seeded RNG).
    pub uniform: f32,
    /// Structured output: the ids that may be drawn, a bitmask of
    /// `ceil(vocab / 32)` words (bit `i % 32` of word `i / 32`); `None`: all.
    pub token_mask: Option<&'a [u32]>,
}

/// Samples on the host; `None` when a logit is not finite.
pub fn sample_on_host(logits: &[f32], step: &SamplingStep<'_>) -> Option<u32> {
    if logits.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let masked;
    let logits = match step.token_mask {
        Some(mask) => {
            masked = {
                let mut copy = logits.to_vec();
                apply_token_mask(&mut copy, mask);
                copy
            };
            &masked[..]
        }
        None => logits,
    };
    Some(sample(
        logits,
        step.params,
        step.appeared,
        step.logit_bias,
        step.active_vocab,
        step.uniform,
    ))
}
