//! Embedding lookup: one (dequantized) table row per token.

use super::Weight;

/// Writes row `tokens[t]` of `table` to `out[t, ..]`.
pub fn embed(table: &Weight<'_>, tokens: &[u32], out: &mut [f32]) {
    let hidden = table.cols();
    assert_eq!(out.len(), tokens.len() * hidden, "embed: output size");
    for (t, &token) in tokens.iter().enumerate() {
        table.row(token as usize, &mut out[t * hidden..(t + 1) * hidden]);
    }
}
