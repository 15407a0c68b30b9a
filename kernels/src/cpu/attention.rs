//! Causal grouped-query attention over a KV cache.

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

/// `out[t, h] = softmax(q[t, h] · K[g(h), ..=p]ᵀ · scale) · V[g(h), ..=p]` for each
/// of the `tokens` queries, where token `t` sits at position `p = start + t`
/// and query head `h` reads KV head `g(h) = h / (heads / kv_heads)`.
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
        for h in 0..heads {
            let kv = h / group;
            let query = &q[(t * heads + h) * d..][..d];
            scores.clear();
            for p in 0..visible {
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
            for (p, &w) in scores.iter().enumerate() {
                let value = &values[layout.offset(kv, p)..][..d];
                for (o, &v) in o.iter_mut().zip(value) {
                    *o += w / total * v;
                }
            }
        }
    }
}
