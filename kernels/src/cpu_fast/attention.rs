//! Causal grouped-query attention in one pass over the KV cache.

use super::for_each_chunk;
use crate::cpu::{KvLayout, dot};

/// Query-position pairs below which the attention runs on one thread: a
/// decode step over a short context is cheaper than the scheduling.
const PARALLEL_WORK: usize = 1 << 16;

/// The same result as [`crate::cpu::causal_attention`] (`out[t, h] =
/// softmax(q[t, h] · Kᵀ · scale) · V` over positions `..= start + t`, the
/// last `window` of them when there is one), with
/// the softmax computed online: one pass over each head's keys and values,
/// rescaling the running sum when a larger score appears, and no score
/// buffer. Heads run on rayon's pool when the work is large enough.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    layout: KvLayout,
    heads: usize,
    start: usize,
    window: Option<usize>,
    scale: f32,
    out: &mut [f32],
) {
    let d = layout.head_dim;
    let group = heads / layout.kv_heads;
    let tokens = q.len() / (heads * d);
    assert_eq!(out.len(), q.len(), "attention: output size");
    let work = tokens * heads * (start + tokens) * d;
    let chunk = if work >= PARALLEL_WORK { d } else { out.len().max(1) };
    for_each_chunk(out, chunk, |c, heads_out| {
        for (i, o) in heads_out.chunks_mut(d).enumerate() {
            let index = c * (chunk / d) + i;
            let (t, h) = (index / heads, index % heads);
            let kv = h / group;
            let query = &q[index * d..(index + 1) * d];
            let (mut max, mut total) = (f32::NEG_INFINITY, 0.0f32);
            o.fill(0.0);
            let first = window.map_or(0, |w| (start + t + 1).saturating_sub(w));
            for p in first..=start + t {
                let score = dot(query, &keys[layout.offset(kv, p)..][..d]) * scale;
                if score > max {
                    let shrink = (max - score).exp();
                    total *= shrink;
                    o.iter_mut().for_each(|v| *v *= shrink);
                    max = score;
                }
                let weight = (score - max).exp();
                total += weight;
                for (o, &v) in o.iter_mut().zip(&values[layout.offset(kv, p)..][..d]) {
                    *o += weight * v;
                }
            }
            o.iter_mut().for_each(|v| *v /= total);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::causal_attention;

    #[test]
    fn one_pass_attention_equals_the_reference() {
        let (heads, kv_heads, d, capacity) = (6, 2, 16, 40);
        let layout = KvLayout { kv_heads, capacity, head_dim: d };
        let cache = |seed: usize| -> Vec<f32> {
            (0..kv_heads * capacity * d)
                .map(|i| (((i + seed) * 37 % 101) as f32 - 50.0) * 0.03)
                .collect()
        };
        let (keys, values) = (cache(1), cache(7));
        // A decode step late in the context, and a prefill spanning enough
        // work to run on the pool; each without and with a sliding window.
        for (start, tokens) in [(30, 1), (0, 33)] {
            let q: Vec<f32> =
                (0..tokens * heads * d).map(|i| ((i * 53 % 89) as f32 - 44.0) * 0.05).collect();
            for window in [None, Some(7)] {
                let (mut want, mut got) = (vec![0.0; q.len()], vec![0.0; q.len()]);
                causal_attention(&q, &keys, &values, layout, heads, start, window, 0.25, &mut want);
                attention(&q, &keys, &values, layout, heads, start, window, 0.25, &mut got);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-5, "{start}+{tokens} {window:?}: {g} vs {w}");
                }
            }
        }
    }
}
