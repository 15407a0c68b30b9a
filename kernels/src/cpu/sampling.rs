//! Logit processing and token sampling in WebLLM's order
//! (docs/sampling.md, "The chain"):
//!
//! 1. [`apply_logit_bias`]: `l[t] += bias[t]`;
//! 2. [`apply_penalties`]: for each token generated so far in this round, with count `c`,
//!    `l = l − (presence + c·frequency)`, then `l = l·repetition` if `l < 0` else `l / repetition`;
//! 3. [`softmax_with_temperature`]: `T = max(temperature, 1e-6)`; if `T > 1e-5`,
//!    `p = softmax(l / T)`, else (greedy) `p` is uniform over the exact maxima;
//!    ids `≥ active_vocab_size` get `p = 0`;
//! 4. [`top_p_filter`]: sort by descending `p`, inclusive prefix sums `cum`, nucleus
//!    `0..=K` with `K` the first index where `cum[K] ≥ max(top_p, 1e-5)`;
//! 5. [`sample_from`]: the first sorted token `j` with `u < cum[j] / cum[K]`.
//!
//! [`sample`] runs the whole chain, steps 4 and 5 as [`sample_top_p`], which
//! draws the same token as [`top_p_filter`] and [`sample_from`] without
//! sorting the whole vocabulary; [`argmax`] is plain greedy decoding;
//! [`token_probabilities`] reports the probabilities of step 3 that log
//! probabilities are made of (docs/sampling.md, "The chain", step 7). Equal
//! probabilities are sorted by ascending token id (WebLLM leaves that order to
//! the implementation; the GPU sampler uses the same one). The CPU draws `u`
//! with [`Minstd`], WebLLM's generator, so runs are reproducible.

use std::cmp::Ordering;

/// Temperatures at or below this are greedy (docs/sampling.md, "The chain", step 3).
pub const GREEDY_TEMPERATURE: f32 = 1e-5;

/// One request's resolved sampling parameters (docs/sampling.md, "Parameters").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature (≥ 0; ≤ 1e-5 means greedy).
    pub temperature: f32,
    /// Nucleus mass in `(0, 1]`.
    pub top_p: f32,
    /// Multiplicative repetition penalty (> 0; 1 disables it).
    pub repetition_penalty: f32,
    /// Subtracted once from every token already generated (in `[-2, 2]`).
    pub presence_penalty: f32,
    /// Subtracted per occurrence of every token already generated (in `[-2, 2]`).
    pub frequency_penalty: f32,
}

impl Default for SamplingParams {
    /// Temperature 1, top-p 1, no penalties (the conformance artifacts' values).
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
        }
    }
}

impl SamplingParams {
    /// Whether step 2 changes anything (WebLLM skips it otherwise).
    pub fn penalties_active(&self) -> bool {
        self.frequency_penalty != 0.0
            || self.presence_penalty != 0.0
            || self.repetition_penalty != 1.0
    }

    /// `max(temperature, 1e-6)`, as WebLLM clamps it.
    pub fn effective_temperature(&self) -> f32 {
        self.temperature.max(1e-6)
    }

    /// Whether the temperature selects the greedy branch of the softmax.
    pub fn is_greedy(&self) -> bool {
        self.effective_temperature() <= GREEDY_TEMPERATURE
    }

    /// `max(top_p, 1e-5)`, as the sampler clamps it.
    pub fn effective_top_p(&self) -> f32 {
        self.top_p.max(1e-5)
    }

    /// WebLLM's range checks (docs/sampling.md, "Parameters"): an error message for
    /// out-of-range values.
    pub fn validate(&self) -> Result<(), String> {
        let p = self;
        if !(p.top_p > 0.0 && p.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", p.top_p));
        }
        if !(p.temperature.is_finite() && p.temperature >= 0.0) {
            return Err(format!("temperature must be >= 0, got {}", p.temperature));
        }
        if !(p.repetition_penalty.is_finite() && p.repetition_penalty > 0.0) {
            return Err(format!("repetition_penalty must be > 0, got {}", p.repetition_penalty));
        }
        for (name, v) in
            [("frequency_penalty", p.frequency_penalty), ("presence_penalty", p.presence_penalty)]
        {
            if !(-2.0..=2.0).contains(&v) {
                return Err(format!("{name} must be in [-2, 2], got {v}"));
            }
        }
        Ok(())
    }
}

/// Step 0 (structured output): ids whose bit is clear in `mask` (bit `i % 32`
/// of word `i / 32`; ids past the mask count as clear) get `-∞`, so bias and
/// penalties leave them there and they get `p = 0`, like ids past the active
/// vocabulary. WebLLM writes the lowest finite f32 instead; the probabilities are
/// the same zeros.
pub fn apply_token_mask(logits: &mut [f32], mask: &[u32]) {
    for (i, l) in logits.iter_mut().enumerate() {
        let allowed = mask.get(i / 32).is_some_and(|word| word & (1 << (i % 32)) != 0);
        if !allowed {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// Step 1: `logits[id] += bias` for each pair, in order (ids past the vocabulary are ignored).
pub fn apply_logit_bias(logits: &mut [f32], bias: &[(u32, f32)]) {
    for &(id, b) in bias {
        if let Some(l) = logits.get_mut(id as usize) {
            *l += b;
        }
    }
}

/// Step 2: penalises every `(token, count)` generated so far in this round
/// (`count > 0`; ids past the vocabulary are ignored). Does nothing unless
/// [`SamplingParams::penalties_active`].
pub fn apply_penalties(logits: &mut [f32], appeared: &[(u32, u32)], params: &SamplingParams) {
    if !params.penalties_active() {
        return;
    }
    for &(id, count) in appeared {
        let Some(l) = logits.get_mut(id as usize) else { continue };
        if count == 0 {
            continue;
        }
        let v = *l - (params.presence_penalty + count as f32 * params.frequency_penalty);
        *l = if v < 0.0 { v * params.repetition_penalty } else { v / params.repetition_penalty };
    }
}

/// Step 3: probabilities over the whole vocabulary. Ids `≥ active_vocab`
/// (when given) get 0 and take no part in the maximum or the sum.
///
/// Softmax branch: `x = l / T`, `e = exp(x − max x)`, `p = e / Σ e` (sum in id order).
/// Greedy branch (`T ≤ 1e-5`): `p = 1 / n` on the `n` exact maxima of `l`, 0 elsewhere.
pub fn softmax_with_temperature(
    logits: &[f32],
    temperature: f32,
    active_vocab: Option<usize>,
) -> Vec<f32> {
    let active = active_vocab.unwrap_or(logits.len()).min(logits.len());
    let t = temperature.max(1e-6);
    let mut probs = vec![0.0f32; logits.len()];
    if active == 0 {
        return probs;
    }
    if t > GREEDY_TEMPERATURE {
        let scaled: Vec<f32> = logits[..active].iter().map(|&l| l / t).collect();
        let max = scaled.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for (p, &x) in probs.iter_mut().zip(&scaled) {
            *p = (x - max).exp();
            sum += *p;
        }
        for p in &mut probs[..active] {
            *p /= sum;
        }
    } else {
        let max = logits[..active].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let ties = logits[..active].iter().filter(|&&l| l == max).count() as f32;
        for (p, &l) in probs.iter_mut().zip(&logits[..active]) {
            *p = if l == max { 1.0 / ties } else { 0.0 };
        }
    }
    probs
}

/// The vocabulary sorted by probability with its nucleus (step 4).
#[derive(Debug, Clone)]
pub struct Nucleus {
    /// Token ids by descending probability, equal probabilities by ascending id.
    pub order: Vec<u32>,
    /// Inclusive prefix sums of the sorted probabilities, up to and including `K`.
    pub cumulative: Vec<f32>,
    /// `cum[K]`: the nucleus mass the draw is renormalised by.
    pub renorm: f32,
}

impl Nucleus {
    /// Tokens in the nucleus (`K + 1`).
    pub fn len(&self) -> usize {
        self.cumulative.len()
    }

    /// Whether the nucleus is empty (only for an empty vocabulary).
    pub fn is_empty(&self) -> bool {
        self.cumulative.is_empty()
    }
}

/// Step 4: sorts `probs` (descending, ties by ascending id) and cuts the nucleus
/// at the first `K` with `cum[K] ≥ max(top_p, 1e-5)`, or at the last token if the
/// f32 sum never gets there.
pub fn top_p_filter(probs: &[f32], top_p: f32) -> Nucleus {
    let top_p = top_p.max(1e-5);
    let mut order: Vec<u32> = (0..probs.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| {
        probs[b as usize].partial_cmp(&probs[a as usize]).unwrap_or(Ordering::Equal).then(a.cmp(&b))
    });
    let mut cumulative = Vec::new();
    let mut total = 0.0f32;
    for &id in &order {
        total += probs[id as usize];
        cumulative.push(total);
        if total >= top_p {
            break;
        }
    }
    let renorm = cumulative.last().copied().unwrap_or(0.0);
    Nucleus { order, cumulative, renorm }
}

/// Step 5: the first sorted token `j ≤ K` with `uniform < cum[j] / cum[K]`; if
/// there is none (only when `uniform ≥ 1`), the last token of the sorted order,
/// as WebLLM's kernel does.
pub fn sample_from(nucleus: &Nucleus, uniform: f32) -> u32 {
    nucleus
        .cumulative
        .iter()
        .position(|&c| uniform < c / nucleus.renorm)
        .map(|j| nucleus.order[j])
        .or(nucleus.order.last().copied())
        .unwrap_or(0)
}

/// Steps 4 and 5 without sorting the vocabulary: the token
/// `sample_from(&top_p_filter(probs, top_p), uniform)` draws, bit for bit.
///
/// The sorted order is built band by band from the top: the ids with
/// `p ≥ max p / 1024`, then those in the next factor of 1024 below, and so on,
/// each band sorted alone (descending, ties by ascending id: consecutive
/// bands are consecutive pieces of the full order) and summed in that order,
/// so every prefix sum is the one the full sort gives. It stops at the band
/// where the sum reaches `top_p`, or where every remaining probability is
/// below half an ulp of the sum: adding those cannot change an f32 sum, so the
/// nucleus's remaining prefix sums all equal the sum so far and a draw with
/// `uniform < 1` lands on a token already sorted. A draw that lands nowhere
/// (`uniform ≥ 1`) takes the last token of the full order, found by a scan.
/// A typical step sorts a few dozen ids instead of the vocabulary.
pub fn sample_top_p(probs: &[f32], top_p: f32, uniform: f32) -> u32 {
    let top_p = top_p.max(1e-5);
    let by = |a: &u32, b: &u32| {
        probs[*b as usize]
            .partial_cmp(&probs[*a as usize])
            .unwrap_or(Ordering::Equal)
            .then(a.cmp(b))
    };
    let max = probs.iter().copied().fold(0.0f32, f32::max);
    let (mut band, mut cumulative) = (Vec::new(), Vec::new());
    let mut total = 0.0f32;
    // Bands are `[lower, upper)`; the last one takes every id not yet taken.
    let mut upper = f32::INFINITY;
    let mut lower = max / 1024.0;
    'bands: loop {
        let last_band = lower < f32::MIN_POSITIVE;
        band.clear();
        band.extend((0..probs.len() as u32).filter(|&i| {
            let p = probs[i as usize];
            (p < upper || p.is_nan()) && (last_band || p >= lower)
        }));
        band.sort_unstable_by(by);
        for &id in &band {
            total += probs[id as usize];
            cumulative.push((id, total));
            if total >= top_p {
                break 'bands;
            }
        }
        let half_ulp = (f32::from_bits(total.to_bits() + 1) - total) / 2.0;
        if last_band || lower <= half_ulp {
            break;
        }
        upper = lower;
        lower /= 1024.0;
    }
    let renorm = cumulative.last().map_or(0.0, |&(_, c)| c);
    cumulative
        .iter()
        .find(|&&(_, c)| uniform < c / renorm)
        .map(|&(id, _)| id)
        .or_else(|| (0..probs.len() as u32).max_by(by))
        .unwrap_or(0)
}

/// Most `top_logprobs` a step can report (OpenAI's limit; WebLLM allows 5).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// What a step reports for log probabilities: probabilities of step 3 (after
/// mask, bias, penalties and temperature; before top-p), whose natural
/// logarithms are the `logprob`s.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenProbabilities {
    /// The drawn token's probability.
    pub token: f32,
    /// The most probable ids with their probabilities, most probable first,
    /// equal probabilities by ascending id.
    pub top: Vec<(u32, f32)>,
}

/// The drawn `token`'s probability and the `top` most probable ids of `probs`
/// (at most the vocabulary; ties by ascending id).
pub fn token_probabilities(probs: &[f32], token: u32, top: usize) -> TokenProbabilities {
    let by_probability =
        |a: &u32, b: &u32| probs[*b as usize].total_cmp(&probs[*a as usize]).then(a.cmp(b));
    let mut ids: Vec<u32> = (0..probs.len() as u32).collect();
    let top = top.min(ids.len());
    if top > 0 {
        ids.select_nth_unstable_by(top - 1, by_probability);
    }
    ids.truncate(top);
    ids.sort_by(by_probability);
    TokenProbabilities {
        token: probs.get(token as usize).copied().unwrap_or(0.0),
        top: ids.into_iter().map(|id| (id, probs[id as usize])).collect(),
    }
}

/// Greedy decoding: the id of the largest logit below `active_vocab` (ties: lowest id).
pub fn argmax(logits: &[f32], active_vocab: Option<usize>) -> u32 {
    let active = active_vocab.unwrap_or(logits.len()).min(logits.len());
    let mut best = 0;
    for (i, &l) in logits[..active].iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// What one draw needs besides the logits.
#[derive(Debug, Clone, Copy)]
pub struct Draw<'a> {
    /// Temperature, top-p and penalties.
    pub params: &'a SamplingParams,
    /// The `(token, count)` pairs the penalties see.
    pub appeared: &'a [(u32, u32)],
    /// `(token, bias)` pairs added to the logits.
    pub bias: &'a [(u32, f32)],
    /// The ids that may be drawn, a bitmask of `ceil(vocab / 32)` words; `None`: all.
    pub mask: Option<&'a [u32]>,
    /// Ids at or above this are never drawn; `None`: all.
    pub active_vocab: Option<usize>,
    /// The draw's uniform random number in `[0, 1)`.
    pub uniform: f32,
    /// How many of the most probable ids to report with the token's probability; 0: none.
    pub top_logprobs: usize,
}

/// The whole chain in WebLLM's order on a copy of `logits`: token mask, bias,
/// penalties, softmax with temperature, top-p, the draw; with the token's
/// probability and the most probable ids when `top_logprobs > 0`. The one
/// host sampler: the CPU engines draw with it and the GPU sampler is checked
/// against it.
pub fn sample(logits: &[f32], draw: &Draw<'_>) -> (u32, Option<TokenProbabilities>) {
    let mut logits = logits.to_vec();
    if let Some(mask) = draw.mask {
        apply_token_mask(&mut logits, mask);
    }
    apply_logit_bias(&mut logits, draw.bias);
    apply_penalties(&mut logits, draw.appeared, draw.params);
    let probs = softmax_with_temperature(&logits, draw.params.temperature, draw.active_vocab);
    let token = sample_top_p(&probs, draw.params.top_p, draw.uniform);
    let probabilities =
        (draw.top_logprobs > 0).then(|| token_probabilities(&probs, token, draw.top_logprobs));
    (token, probabilities)
}

/// WebLLM's random generator (docs/sampling.md, "Random numbers"): MINSTD / Park–Miller,
/// `state = 48271 · state mod (2³¹ − 1)`, `u = state / (2³¹ − 1)` rounded to f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Minstd {
    state: u64,
}

impl Minstd {
    const MODULUS: u64 = (1 << 31) - 1;

    /// `setSeed(seed)`: `state = seed mod (2³¹ − 1)`, 0 becomes 1.
    pub fn new(seed: u64) -> Minstd {
        let state = seed % Self::MODULUS;
        Minstd { state: if state == 0 { 1 } else { state } }
    }

    /// The next uniform in `(0, 1]` (1.0 only through f32 rounding).
    pub fn next_f32(&mut self) -> f32 {
        self.state = self.state * 48_271 % Self::MODULUS;
        (self.state as f64 / Self::MODULUS as f64) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalties_follow_the_spec_formula() {
        let params = SamplingParams {
            repetition_penalty: 2.0,
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            ..Default::default()
        };
        let mut logits = vec![3.0, 1.0, -1.0, 4.0];
        apply_penalties(&mut logits, &[(0, 2), (1, 4), (2, 1)], &params);
        // 3 − (0.5 + 0.5) = 2 → /2; 1 − 1.5 = −0.5 → ×2; −1 − 0.75 → ×2; token 3 untouched.
        assert_eq!(logits, vec![1.0, -1.0, -3.5, 4.0]);
        let mut unchanged = vec![3.0, 1.0];
        apply_penalties(&mut unchanged, &[(0, 5)], &SamplingParams::default());
        assert_eq!(unchanged, vec![3.0, 1.0]);
    }

    #[test]
    fn greedy_softmax_is_uniform_over_ties_and_masks_inactive_ids() {
        let p = softmax_with_temperature(&[1.0, 5.0, 5.0, 2.0, 9.0], 0.0, Some(4));
        assert_eq!(p, vec![0.0, 0.5, 0.5, 0.0, 0.0]);
        let nucleus = top_p_filter(&p, 1.0);
        assert_eq!(&nucleus.order[..2], &[1, 2]);
        assert_eq!(sample_from(&nucleus, 0.49), 1);
        assert_eq!(sample_from(&nucleus, 0.51), 2);
        assert_eq!(argmax(&[1.0, 5.0, 5.0, 2.0, 9.0], Some(4)), 1);
    }

    #[test]
    fn top_p_keeps_the_crossing_token_and_renormalises() {
        let probs = [0.1, 0.5, 0.3, 0.1];
        let nucleus = top_p_filter(&probs, 0.7);
        assert_eq!(nucleus.order, vec![1, 2, 0, 3]);
        assert_eq!(nucleus.len(), 2);
        assert!((nucleus.renorm - 0.8).abs() < 1e-6);
        assert_eq!(sample_from(&nucleus, 0.6), 1); // 0.6 < 0.5 / 0.8
        assert_eq!(sample_from(&nucleus, 0.7), 2);
        assert_eq!(sample_from(&nucleus, 1.0), 3); // no j: WebLLM's last sorted token
    }

    #[test]
    fn softmax_sums_to_one_and_logit_bias_adds() {
        let mut logits = vec![0.0, 1.0, 2.0];
        apply_logit_bias(&mut logits, &[(0, 2.5), (7, 1.0)]);
        assert_eq!(logits, vec![2.5, 1.0, 2.0]);
        let p = softmax_with_temperature(&logits, 0.5, None);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[0] > p[2] && p[2] > p[1]);
    }

    #[test]
    fn token_probabilities_list_the_most_probable_ids_ties_by_id() {
        let probs = [0.1, 0.4, 0.1, 0.4, 0.0];
        let reported = token_probabilities(&probs, 2, 4);
        assert_eq!(reported.token, 0.1);
        assert_eq!(reported.top, vec![(1, 0.4), (3, 0.4), (0, 0.1), (2, 0.1)]);
        assert_eq!(token_probabilities(&probs, 1, 9).top.len(), 5, "at most the vocabulary");
        assert!(token_probabilities(&probs, 1, 0).top.is_empty());
    }

    #[test]
    fn sample_top_p_draws_what_the_full_sort_draws() {
        let mut rng = Minstd::new(7);
        let mut compared = 0;
        for case in 0..600 {
            let vocab = [1, 2, 5, 33, 700, 5000][case % 6];
            // Logits from flat to peaked, some rounded to make ties, some ids
            // outside the active vocabulary (probability 0).
            let spread = [0.5, 3.0, 12.0, 40.0][case / 6 % 4];
            let mut logits: Vec<f32> =
                (0..vocab).map(|_| (rng.next_f32() - 0.5) * spread).collect();
            if case % 5 == 1 {
                logits.iter_mut().for_each(|l| *l = (*l * 2.0).round());
            }
            let temperature = [1.0, 0.7, 0.2, 1.5, 0.0][case / 24 % 5];
            let active = (case % 7 == 3 && vocab > 2).then(|| vocab - vocab / 3);
            let probs = softmax_with_temperature(&logits, temperature, active);
            for top_p in [1e-9, 0.1, 0.5, 0.9, 0.95, 0.999, 1.0] {
                let nucleus = top_p_filter(&probs, top_p);
                // Random draws, the edges, and draws on every boundary of
                // the first prefix sums.
                let mut uniforms: Vec<f32> = (0..8).map(|_| rng.next_f32()).collect();
                uniforms.extend([0.0, 1.0, 0.999_999_94]);
                uniforms.extend(nucleus.cumulative.iter().take(8).map(|c| c / nucleus.renorm));
                for u in uniforms {
                    let want = sample_from(&nucleus, u);
                    assert_eq!(
                        sample_top_p(&probs, top_p, u),
                        want,
                        "case {case}: vocab {vocab}, T {temperature}, top_p {top_p}, u {u}"
                    );
                    compared += 1;
                }
            }
        }
        assert!(compared > 40_000);
    }

    #[test]
    fn minstd_matches_the_park_miller_sequence() {
        let mut rng = Minstd::new(1);
        assert_eq!(rng.state, 1);
        rng.next_f32();
        assert_eq!(rng.state, 48_271);
        rng.next_f32();
        assert_eq!(rng.state, 182_605_794);
        assert_eq!(Minstd::new(0), Minstd::new(1));
    }
}
