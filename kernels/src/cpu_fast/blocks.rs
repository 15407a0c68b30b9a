//! The block formats the fast kernels stream.

use crate::cpu::Q4Matrix;

/// Values per block, of weights and of activations (MLC's q4 group size).
pub const BLOCK: usize = 32;

/// 32 weights: `(code − 7) · scale`. `codes[j]` holds weight `j` in its low
/// nibble and weight `j + 16` in its high nibble (llama.cpp's Q4_0 order), so
/// one 16-byte load and two masks give the 32 codes in order.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[repr(C)]
pub struct Q4Block {
    /// The group's scale (MLC's f16 or f32 scale, widened).
    pub scale: f32,
    /// Packed 4-bit codes, 0..=15.
    pub codes: [u8; 16],
}

/// 32 activations quantized to int16: `value ≈ values[j] · scale`.
///
/// Why 16 bits and not llama.cpp's 8: with int8 the fast engine's logits
/// were 18.7% of their spread away from the oracle's on SmolLM2 (whose
/// residual stream has outlier channels that coarsen their whole block), 6%
/// on the tiny fixtures — over the 5% bound. int16 costs about the same
/// instructions (`vpmaddwd` on AVX2, `i32x4.dot_i16x8_s` in wasm) and 2 KB
/// more cache per activation row; on AVX-512 VNNI it costs twice the
/// instructions of `vpdpbusd`, which is why a prefill can take [`Q8Block`]s
/// on request.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct Q16Block {
    /// `max |x| / 32767` over the block.
    pub scale: f32,
    /// Quantized values, each in −32767..=32767.
    pub values: [i16; 32],
}

impl Default for Q16Block {
    fn default() -> Self {
        Q16Block { scale: 0.0, values: [0; 32] }
    }
}

/// 32 activations quantized to int8 (llama.cpp's Q8_0): `value ≈ values[j] ·
/// scale`.
///
/// Half the bits of [`Q16Block`] and twice the products per instruction
/// (`vpdpbusd`), but 258 times the rounding error: the products that take it
/// ([`super::matmul_q4_q8`]) are a prefill's, and only where the engine is
/// asked for them (docs/performance.md, "int8 prefill", has why not by
/// default).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[repr(C)]
pub struct Q8Block {
    /// `max |x| / 127` over the block.
    pub scale: f32,
    /// Quantized values, each in −127..=127.
    pub values: [i8; 32],
}

/// A block of 32 quantized activations and their scale, of either width:
/// what [`quantize_row`] writes and the scalar kernel reads.
pub trait ActivationBlock: Copy + Default + Send + Sync {
    /// The largest magnitude of a value: the scale is `max |x| / MAX`.
    const MAX: f32;
    /// The block's scale.
    fn scale(&self) -> f32;
    /// Value `j` (0..32), widened.
    fn value(&self, j: usize) -> i32;
    /// Sets the scale and the 32 values, each within `±MAX`.
    fn set(&mut self, scale: f32, values: &[i16; 32]);
}

impl ActivationBlock for Q16Block {
    const MAX: f32 = 32767.0;
    fn scale(&self) -> f32 {
        self.scale
    }
    fn value(&self, j: usize) -> i32 {
        self.values[j] as i32
    }
    fn set(&mut self, scale: f32, values: &[i16; 32]) {
        self.scale = scale;
        self.values = *values;
    }
}

impl ActivationBlock for Q8Block {
    const MAX: f32 = 127.0;
    fn scale(&self) -> f32 {
        self.scale
    }
    fn value(&self, j: usize) -> i32 {
        self.values[j] as i32
    }
    fn set(&mut self, scale: f32, values: &[i16; 32]) {
        self.scale = scale;
        // Within ±127 by construction (`|x| / scale ≤ 127`, rounded).
        self.values = values.map(|v| v as i8);
    }
}

impl Q4Block {
    /// The code of weight `j` (0..32).
    pub fn code(&self, j: usize) -> u8 {
        match j < 16 {
            true => self.codes[j] & 0xF,
            false => self.codes[j - 16] >> 4,
        }
    }
}

/// A q4 matrix `[rows, cols]` repacked into [`Q4Block`]s, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Q4Packed {
    /// Output features (N).
    pub rows: usize,
    /// Input features (K); a ragged last block is zero-padded.
    pub cols: usize,
    /// `rows · blocks_per_row()` blocks.
    pub blocks: Vec<Q4Block>,
}

impl Q4Packed {
    /// Repacks an MLC q4 matrix (8 codes per u32, lowest nibble first, one
    /// scale per 32 inputs).
    pub fn from_mlc(matrix: &Q4Matrix<'_>) -> Q4Packed {
        let per_row = matrix.groups();
        let words_per_row = matrix.words_per_row();
        let mut blocks = Vec::with_capacity(matrix.rows * per_row);
        for n in 0..matrix.rows {
            let words = &matrix.q_weight[n * words_per_row..(n + 1) * words_per_row];
            for g in 0..per_row {
                let code = |k: usize| ((words[g * 4 + k / 8] >> (4 * (k % 8))) & 0xF) as u8;
                let mut codes = [0u8; 16];
                for (j, byte) in codes.iter_mut().enumerate() {
                    *byte = code(j) | (code(j + 16) << 4);
                }
                blocks.push(Q4Block { scale: matrix.scales[n * per_row + g], codes });
            }
        }
        Q4Packed { rows: matrix.rows, cols: matrix.cols, blocks }
    }

    /// Blocks per row.
    pub fn blocks_per_row(&self) -> usize {
        self.cols.div_ceil(BLOCK)
    }

    /// The blocks of row `n`.
    pub fn row(&self, n: usize) -> &[Q4Block] {
        let per_row = self.blocks_per_row();
        &self.blocks[n * per_row..(n + 1) * per_row]
    }

    /// Decodes row `n` into `out` (`cols` values), exactly as the reference does.
    pub fn dequantize_row(&self, n: usize, out: &mut [f32]) {
        for (k, value) in out[..self.cols].iter_mut().enumerate() {
            let block = &self.row(n)[k / BLOCK];
            *value = (block.code(k % BLOCK) as f32 - 7.0) * block.scale;
        }
    }
}

/// Quantizes `x` per block of 32 (the last block zero-padded) into `out`,
/// which must hold `x.len().div_ceil(32)` blocks: `round(x / scale)` with
/// `scale = max |x| / B::MAX` (llama.cpp's Q8_0 rounding; 32767 for int16).
pub fn quantize_row<B: ActivationBlock>(x: &[f32], out: &mut [B]) {
    assert_eq!(out.len(), x.len().div_ceil(BLOCK), "quantize_row: block count");
    for (values, block) in x.chunks(BLOCK).zip(out.iter_mut()) {
        // `f32::max` would drop a NaN: keep it (and an infinity) in the scale, so that a
        // non-finite activation makes the product non-finite, as the oracle's does.
        let max =
            values.iter().fold(0.0f32, |m, v| if v.abs() > m || v.is_nan() { v.abs() } else { m });
        let scale = max / B::MAX;
        let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        let mut rounded = [0; 32];
        for (q, &v) in rounded.iter_mut().zip(values) {
            *q = round_to_i16(v * inverse);
        }
        block.set(scale, &rounded);
    }
}

/// [`quantize_row`] for each of the rows of `x` (`cols` values each) into
/// `out` (`cols.div_ceil(BLOCK)` blocks a row), rows on rayon's pool.
pub fn quantize_rows<B: ActivationBlock>(x: &[f32], cols: usize, out: &mut [B]) {
    let blocks = cols.div_ceil(BLOCK);
    assert_eq!(out.len() * cols, x.len() * blocks, "quantize_rows: block count");
    super::for_each_chunk(out, blocks.max(1), |row, q| {
        quantize_row(&x[row * cols..(row + 1) * cols], q);
    });
}

/// `x.round() as i16` (halves away from zero, saturating, NaN to 0) without
/// the library call `f32::round` is on x86_64's baseline: in f64, `x ± 0.5`
/// is exact for every `x` that fits an i16, and the cast truncates.
#[inline(always)]
fn round_to_i16(x: f32) -> i16 {
    let x = f64::from(x);
    (x + 0.5f64.copysign(x)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repacked_rows_decode_like_the_reference() {
        let (rows, cols) = (3, 72); // a ragged last group
        let words: Vec<u32> =
            (0..rows * 12).map(|i| (i as u32).wrapping_mul(0x9E37_79B9) ^ 0x5A5A_1234).collect();
        let scales: Vec<f32> = (0..rows * 3).map(|i| 0.5 + i as f32 * 0.25).collect();
        let matrix = Q4Matrix { rows, cols, q_weight: &words, scales: &scales };
        let packed = Q4Packed::from_mlc(&matrix);
        let (mut want, mut got) = (vec![0.0; cols], vec![0.0; cols]);
        for n in 0..rows {
            matrix.dequantize_row(n, &mut want);
            packed.dequantize_row(n, &mut got);
            assert_eq!(got, want, "row {n}");
        }
    }

    /// Each value comes back within half a step, the padding is zero and
    /// every block reaches `±B::MAX`.
    fn check_quantization<B: ActivationBlock>() {
        let x: Vec<f32> = (0..40).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.3).collect();
        let mut blocks = vec![B::default(); 2];
        quantize_row(&x, &mut blocks);
        for (k, &v) in x.iter().enumerate() {
            let block = &blocks[k / 32];
            let back = block.value(k % 32) as f32 * block.scale();
            assert!((back - v).abs() <= block.scale() * 0.5 + 1e-6, "{k}: {back} vs {v}");
        }
        assert!((8..32).all(|j| blocks[1].value(j) == 0), "the padding is zero");
        assert!(blocks.iter().all(|b| (0..32).any(|j| b.value(j).abs() as f32 == B::MAX)));
    }

    #[test]
    fn quantized_activations_are_within_half_a_step_and_span_the_range() {
        check_quantization::<Q16Block>();
        check_quantization::<Q8Block>();
    }

    #[test]
    fn rounding_equals_f32_round_on_halves_edges_and_random_values() {
        let mut state = 7u32;
        let random = (0..100_000).map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state as i32) as f32 / 65536.0
        });
        let edges =
            [0.0, -0.0, 0.5, -0.5, 1.5, -2.5, 0.499_999_97, -0.499_999_97, 32766.5, 32767.0];
        let special = [32767.49, -32767.49, 1e9, -1e9, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
        for x in edges.into_iter().chain(special).chain(random) {
            assert_eq!(round_to_i16(x), x.round() as i16, "{x}");
        }
    }

    #[test]
    fn a_non_finite_activation_makes_its_block_scale_non_finite() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut x = vec![0.5f32; 64];
            x[40] = bad;
            let mut blocks = vec![Q16Block::default(); 2];
            quantize_row(&x, &mut blocks);
            assert!(blocks[0].scale.is_finite(), "{bad}: the other block is untouched");
            assert!(!blocks[1].scale.is_finite(), "{bad}: scale {}", blocks[1].scale);
        }
    }
}
