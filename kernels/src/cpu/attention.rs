//! Attention: causal grouped-query attention over a KV cache (the decoders),
//! and bidirectional attention within one sequence (the encoder).

/// Where one layer's keys and values live: `[kv_heads, capacity, head_dim]`
/// each, so a head's history is contiguous.
#[derive(Debug, Clone, Copy)]
pub struct KvLayout {
    /// Key/value heads.
    pub kv_heads: usize,
    /// Positions the cache can hold.
    pub capacity: usize,
    /// Dimension of one head.
    pub head_dim: usize,
}

impl KvLayout {
    /// Index of `(head, position, 0)`.
    pub fn offset(&self, head: usize, position: usize) -> usize {
        (head * self.capacity + position) * self.head_dim
    }
}

/// MLC's rolling KV cache (`sliding_window_size` with `attention_sink_size`, as
/// TVM's paged KV cache runs it; docs/families.md, "mistral"): a layer holds
/// `size` tokens, the first `sink` of the sequence (the attention sinks) and
/// the newest `size − sink`. A pass (a prefill chunk or a decode step) starting
/// at position `start` sees those it holds then and every token of its own up
/// to the query, and all of them are rotated at their place in that list:
/// the held ones at `0..held(start)`, the pass's own at `held(start) + j`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollingWindow {
    /// Tokens a layer holds, sinks included (`sliding_window_size`).
    pub size: usize,
    /// The first tokens of the sequence that are never evicted
    /// (`attention_sink_size`, below `size`).
    pub sink: usize,
}

impl RollingWindow {
    /// The slot of the token at `position` in a layer's `size` slots: a sink
    /// keeps its own, the others take turns in the remaining `size − sink`.
    pub fn slot(&self, position: usize) -> usize {
        match position < self.sink {
            true => position,
            false => self.sink + (position - self.sink) % (self.size - self.sink),
        }
    }

    /// Tokens held before a pass that starts at `start` (TVM's sequence
    /// length, which each pass's slide caps at `size`).
    pub fn held(&self, start: usize) -> usize {
        start.min(self.size)
    }

    /// Tokens evicted before a pass that starts at `start`: its rows are
    /// rotated this many positions before their own.
    pub fn evicted(&self, start: usize) -> usize {
        start - self.held(start)
    }

    /// The positions of the tokens held before a pass that starts at
    /// `start`, in the order they are seen: every earlier token until the
    /// window is full, then the sinks and the newest `size − sink`.
    pub fn held_positions(&self, start: usize) -> impl Iterator<Item = usize> + use<> {
        let (sink, evicted) = (self.sink, self.evicted(start));
        (0..self.held(start)).map(move |i| if i < sink { i } else { i + evicted })
    }
}

/// Puts the tokens a rolling cache holds before a pass that starts at
/// `start` ([`RollingWindow::held_positions`]) at places `0..held` of
/// `keys`/`values` (laid out by `layout`), each key rotated at its place by
/// `table` (`rotary_dim` `(cos, sin)` per place, from place 0; see
/// [`crate::cpu::Rope::cos_sin`]). `ring_keys`/`ring_values` hold the
/// unrotated keys and values in [`RollingWindow::slot`] order, laid out by
/// `ring` (capacity `window.size`).
#[allow(clippy::too_many_arguments)] // two caches of two halves, each with its layout
pub fn gather_rolling(
    window: RollingWindow,
    start: usize,
    (ring_keys, ring_values): (&[f32], &[f32]),
    ring: KvLayout,
    table: &[(f32, f32)],
    keys: &mut [f32],
    values: &mut [f32],
    layout: KvLayout,
) {
    let d = layout.head_dim;
    let dims = table.len() / window.size.max(1);
    for (i, position) in window.held_positions(start).enumerate() {
        let angles = &table[i * dims..(i + 1) * dims];
        for g in 0..layout.kv_heads {
            let (from, to) = (ring.offset(g, window.slot(position)), layout.offset(g, i));
            let key = &mut keys[to..to + d];
            key.copy_from_slice(&ring_keys[from..from + d]);
            crate::cpu::rotate_heads(key, d, angles);
            values[to..to + d].copy_from_slice(&ring_values[from..from + d]);
        }
    }
}

/// `out[t, h] = softmax(q[t, h] · K[g(h), lo..=p]ᵀ · scale) · V[g(h), lo..=p]` for
/// each of the `tokens` queries, where token `t` sits at position `p = start + t`
/// and query head `h` reads KV head `g(h) = h / (heads / kv_heads)`. Without a
/// `window` every earlier position is visible (`lo = 0`); a sliding window of `w`
/// keeps the last `w` positions, the query's own included (`lo = p + 1 − w`).
///
/// The cache must already hold the keys and values of positions `..=start + tokens - 1`.
#[allow(clippy::too_many_arguments)] // the operands of the formula above, each named
pub fn causal_attention(
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
    let mut scores = Vec::with_capacity(start + tokens);
    for t in 0..tokens {
        let visible = start + t + 1;
        let first = window.map_or(0, |w| visible.saturating_sub(w));
        for h in 0..heads {
            let kv = h / group;
            let query = &q[(t * heads + h) * d..][..d];
            scores.clear();
            for p in first..visible {
                let key = &keys[layout.offset(kv, p)..][..d];
                scores.push(query.iter().zip(key).map(|(a, b)| a * b).sum::<f32>() * scale);
            }
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut total = 0.0;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                total += *s;
            }
            let o = &mut out[(t * heads + h) * d..][..d];
            o.fill(0.0);
            for (p, &w) in (first..).zip(&scores) {
                let value = &values[layout.offset(kv, p)..][..d];
                for (o, &v) in o.iter_mut().zip(value) {
                    *o += w / total * v;
                }
            }
        }
    }
}

/// Bidirectional multi-head attention of one sequence, from its fused
/// projection rows `qkv[t] = [q | k | v]` (`3 · heads · head_dim` each, heads
/// in order within each part): `out[t, h] = softmax(q[t, h] · K[h]ᵀ · scale) · V[h]`
/// over all `tokens` positions, earlier and later alike.
///
/// A batch of sequences is run one call per sequence: no query ever sees
/// another sequence's keys, which is what the padding mask of a padded batch
/// achieves.
pub fn bidirectional_attention(
    qkv: &[f32],
    heads: usize,
    head_dim: usize,
    scale: f32,
    out: &mut [f32],
) {
    let (d, width) = (head_dim, heads * head_dim);
    let tokens = qkv.len() / (3 * width);
    assert_eq!(qkv.len(), tokens * 3 * width, "attention: qkv size");
    assert_eq!(out.len(), tokens * width, "attention: output size");
    let part =
        |t: usize, which: usize, h: usize| &qkv[t * 3 * width + which * width + h * d..][..d];
    let mut scores = vec![0.0f32; tokens];
    for t in 0..tokens {
        for h in 0..heads {
            let query = part(t, 0, h);
            for (s, score) in scores.iter_mut().enumerate() {
                *score = query.iter().zip(part(s, 1, h)).map(|(a, b)| a * b).sum::<f32>() * scale;
            }
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut total = 0.0;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                total += *s;
            }
            let o = &mut out[t * width + h * d..][..d];
            o.fill(0.0);
            for (s, &w) in scores.iter().enumerate() {
                for (o, &v) in o.iter_mut().zip(part(s, 2, h)) {
                    *o += w / total * v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rolling_window_keeps_the_sinks_and_the_newest_tokens_in_its_slots() {
        let ring = RollingWindow { size: 6, sink: 2 };
        // Sinks keep their slot; the rest wrap around the other four.
        let slots: Vec<usize> = (0..12).map(|p| ring.slot(p)).collect();
        assert_eq!(slots, [0, 1, 2, 3, 4, 5, 2, 3, 4, 5, 2, 3]);
        // Until the window is full a pass sees every earlier token.
        assert_eq!(ring.held_positions(4).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!((ring.held(4), ring.evicted(4)), (4, 0));
        // Then the sinks and the newest size − sink, each in its own slot.
        let held: Vec<usize> = ring.held_positions(9).collect();
        assert_eq!(held, [0, 1, 5, 6, 7, 8]);
        assert_eq!((ring.held(9), ring.evicted(9)), (6, 3));
        let mut slots: Vec<usize> = held.iter().map(|&p| ring.slot(p)).collect();
        slots.sort();
        assert_eq!(slots, [0, 1, 2, 3, 4, 5], "the held tokens fill the slots, none twice");
        // Without sinks the newest `size` tokens.
        let plain = RollingWindow { size: 4, sink: 0 };
        assert_eq!(plain.held_positions(10).collect::<Vec<_>>(), [6, 7, 8, 9]);
        assert_eq!(plain.slot(9), 1);
    }

    #[test]
    fn bidirectional_attention_sees_later_positions_and_ignores_order() {
        let (heads, d, tokens) = (2, 4, 3);
        let width = heads * d;
        let qkv: Vec<f32> =
            (0..tokens * 3 * width).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.25).collect();
        let mut out = vec![0.0; tokens * width];
        bidirectional_attention(&qkv, heads, d, 0.5, &mut out);
        // The first query sees all three positions: its output is not its own value.
        let own_value = &qkv[2 * width..2 * width + d];
        assert_ne!(&out[..d], own_value);
        // Swapping the last two positions swaps their outputs and leaves the first one's.
        let mut swapped = qkv.clone();
        let row = 3 * width;
        let (a, b) = swapped.split_at_mut(2 * row);
        a[row..].swap_with_slice(&mut b[..row]);
        let mut out_swapped = vec![0.0; tokens * width];
        bidirectional_attention(&swapped, heads, d, 0.5, &mut out_swapped);
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
        assert!(close(&out[..width], &out_swapped[..width]));
        assert!(close(&out[width..2 * width], &out_swapped[2 * width..]));
    }

    #[test]
    fn a_window_keeps_only_the_last_positions() {
        let (heads, d, capacity) = (2, 4, 6);
        let layout = KvLayout { kv_heads: 1, capacity, head_dim: d };
        let keys: Vec<f32> = (0..capacity * d).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.3).collect();
        let values: Vec<f32> = (0..capacity * d).map(|i| i as f32).collect();
        let q: Vec<f32> = (0..3 * heads * d).map(|i| ((i * 5 % 13) as f32 - 6.0) * 0.2).collect();
        let run = |window| {
            let mut out = vec![0.0; q.len()];
            causal_attention(&q, &keys, &values, layout, heads, 3, window, 0.5, &mut out);
            out
        };
        // A window of one: each query reads only its own value row.
        let own = run(Some(1));
        for t in 0..3 {
            for h in 0..heads {
                assert_eq!(&own[(t * heads + h) * d..][..d], &values[(3 + t) * d..][..d]);
            }
        }
        // A window as long as the context changes nothing; a shorter one does.
        assert_eq!(run(Some(6)), run(None));
        assert_ne!(run(Some(3)), run(None));
    }
}
