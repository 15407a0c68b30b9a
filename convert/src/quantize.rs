//! The quantizers of MLC's `GroupQuantize` (q4f16_1, q4f32_1) and the casts of
//! `NoQuantize` (q0f16, q0f32), bit for bit.
//!
//! MLC's converter first casts every parameter to the model dtype with numpy
//! (`astype`, round to nearest even), then runs a TVM kernel that, per group
//! of 32 inputs along K:
//!
//! ```text
//! max_abs = max |w|                       (model dtype)
//! scale   = max_abs / 7                   (model dtype)
//! code    = clamp(round(w / scale + 7), 0, 14)   as u32, 8 codes per word, low nibble first
//! ```
//!
//! Compiled for the CPU, each float16 operation is computed in float32 and
//! rounded back to float16 (LLVM's legalisation of `half`), so the float16
//! path below rounds after the division and after the addition. The
//! conformance fixtures (`conformance/fixtures/tiny-*`) pin this down: with
//! this rounding the shards are byte-identical to the official ones.

use half::f16;

/// Inputs per scale.
pub const GROUP_SIZE: usize = 32;
/// Codes per `u32` storage word.
const CODES_PER_WORD: usize = 8;
/// The largest positive code offset: codes are `0..=14`, 7 means zero.
const MAX_INT: f32 = 7.0;

/// A quantized weight: `q_weight` words `[rows, words_per_row]` and
/// `q_scale` `[rows, groups_per_row]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantized<S> {
    /// Packed codes, row-major.
    pub q_weight: Vec<u32>,
    /// One scale per group, row-major.
    pub q_scale: Vec<S>,
    /// `u32` words per row (`ceil(K / 32) * 4`).
    pub words_per_row: usize,
    /// Groups (scales) per row (`ceil(K / 32)`).
    pub groups_per_row: usize,
}

/// Casts float32 to float16 the way numpy's `astype(float16)` does: round to
/// nearest, ties to even, overflow to infinity.
pub fn to_f16(values: &[f32]) -> Vec<f16> {
    values.iter().map(|&v| f16::from_f32(v)).collect()
}

/// The code of one scaled value (`w / scale + 7`, already rounded as the
/// model dtype computes it): round half to even, clamped to `0..=14`.
///
/// TVM lowers `max`/`min` to compare-and-select, so a NaN (a group of zeros
/// gives `0 / 0`) selects the bound it is compared with, i.e. code 0; the
/// dequantized value is `(0 - 7) * 0 = 0` either way.
fn code(shifted: f32) -> u32 {
    if shifted.is_nan() {
        return 0;
    }
    shifted.round_ties_even().clamp(0.0, 2.0 * MAX_INT) as u32
}

/// Packs the codes of one row (`k` of them, padded with code 0) into words.
fn pack_row(codes: &[u32], words: &mut [u32]) {
    for (w, word) in words.iter_mut().enumerate() {
        *word = codes
            .iter()
            .skip(w * CODES_PER_WORD)
            .take(CODES_PER_WORD)
            .enumerate()
            .fold(0u32, |acc, (r, &c)| acc | (c << (4 * r)));
    }
}

fn layout(k: usize) -> (usize, usize) {
    let groups = k.div_ceil(GROUP_SIZE);
    (groups, groups * (GROUP_SIZE / CODES_PER_WORD))
}

/// q4f16_1: quantizes the row-major matrix `weights` `[rows, k]` (float32
/// source values, cast to float16 first as the converter does).
pub fn q4f16(weights: &[f32], rows: usize, k: usize) -> Quantized<f16> {
    let (groups, words_per_row) = layout(k);
    let mut q_weight = vec![0u32; rows * words_per_row];
    let mut q_scale = Vec::with_capacity(rows * groups);
    let mut codes = vec![0u32; k];
    let seven = f16::from_f32(MAX_INT).to_f32();
    for (row, out) in weights
        .chunks_exact(k.max(1))
        .take(rows)
        .zip(q_weight.chunks_exact_mut(words_per_row.max(1)))
    {
        let row: Vec<f16> = to_f16(row);
        for (g, group) in row.chunks(GROUP_SIZE).enumerate() {
            // |w| and max are exact in float16.
            let max_abs = group.iter().map(|v| v.to_f32().abs()).fold(f32::MIN, f32::max);
            let scale = f16::from_f32(max_abs / seven);
            q_scale.push(scale);
            let scale = scale.to_f32();
            for (i, v) in group.iter().enumerate() {
                let scaled = f16::from_f32(v.to_f32() / scale).to_f32();
                let shifted = f16::from_f32(scaled + seven).to_f32();
                codes[g * GROUP_SIZE + i] = code(shifted);
            }
        }
        pack_row(&codes, out);
    }
    Quantized { q_weight, q_scale, words_per_row, groups_per_row: groups }
}

/// q4f32_1: quantizes `weights` `[rows, k]` in float32. The scales are
/// float32 (the artifact writer stores them bf16-encoded, as the converter does).
pub fn q4f32(weights: &[f32], rows: usize, k: usize) -> Quantized<f32> {
    let (groups, words_per_row) = layout(k);
    let mut q_weight = vec![0u32; rows * words_per_row];
    let mut q_scale = Vec::with_capacity(rows * groups);
    let mut codes = vec![0u32; k];
    for (row, out) in weights
        .chunks_exact(k.max(1))
        .take(rows)
        .zip(q_weight.chunks_exact_mut(words_per_row.max(1)))
    {
        for (g, group) in row.chunks(GROUP_SIZE).enumerate() {
            let max_abs = group.iter().map(|v| v.abs()).fold(f32::MIN, f32::max);
            let scale = max_abs / MAX_INT;
            q_scale.push(scale);
            for (i, v) in group.iter().enumerate() {
                codes[g * GROUP_SIZE + i] = code(v / scale + MAX_INT);
            }
        }
        pack_row(&codes, out);
    }
    Quantized { q_weight, q_scale, words_per_row, groups_per_row: groups }
}

/// Little-endian bytes of `u32` words.
pub fn u32_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Little-endian bytes of float16 values.
pub fn f16_bytes(values: &[f16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Little-endian bytes of float32 values.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dequantizes element (row, k) as the runtime does.
    fn dequant(q: &Quantized<f16>, row: usize, k: usize) -> f32 {
        let word = q.q_weight[row * q.words_per_row + k / 8];
        let code = (word >> (4 * (k % 8))) & 0xF;
        (code as f32 - 7.0) * q.q_scale[row * q.groups_per_row + k / 32].to_f32()
    }

    #[test]
    fn codes_pack_low_nibble_first_and_round_half_to_even() {
        // Group max 7 → scale 1: codes are w + 7 exactly, so rounding shows.
        let mut row = vec![0.0f32; 32];
        row[0] = 7.0;
        row[1] = -7.0;
        row[2] = 0.5; // 7.5 → 8 (even)
        row[3] = 1.5; // 8.5 → 8 (even)
        row[4] = -0.5; // 6.5 → 6
        let q = q4f16(&row, 1, 32);
        assert_eq!(q.q_scale, vec![f16::from_f32(1.0)]);
        let codes: Vec<u32> = (0..8).map(|i| (q.q_weight[0] >> (4 * i)) & 0xF).collect();
        assert_eq!(codes, vec![14, 0, 8, 8, 6, 7, 7, 7]);
        assert_eq!(q.words_per_row, 4);
    }

    #[test]
    fn a_tail_group_is_padded_with_code_zero() {
        let row: Vec<f32> = (0..40).map(|i| i as f32 - 20.0).collect();
        let q = q4f16(&row, 1, 40);
        assert_eq!((q.groups_per_row, q.words_per_row), (2, 8));
        // k = 32..40 fill word 4; words 5..8 hold only padding.
        assert_ne!(q.q_weight[4], 0);
        assert_eq!(&q.q_weight[5..8], &[0, 0, 0]);
        for (k, &w) in row.iter().enumerate() {
            let error = (dequant(&q, 0, k) - w).abs();
            assert!(error <= 0.5 * q.q_scale[k / 32].to_f32() + 1e-3, "k={k} error {error}");
        }
    }

    #[test]
    fn a_zero_group_dequantizes_to_zero() {
        let q = q4f16(&[0.0; 32], 1, 32);
        assert_eq!(q.q_scale[0].to_f32(), 0.0);
        assert_eq!(dequant(&q, 0, 3), 0.0);
        let q = q4f32(&[0.0; 32], 1, 32);
        assert_eq!(q.q_scale[0], 0.0);
    }
}
