//! `y = x · Wᵀ` for a repacked q4 weight and quantized activations.

use super::blocks::{Q4Block, Q4Packed, Q8Block, Q16Block};
use super::dot::{DotKernel, dot_q4_q8_with, dot_q4_q16_with, dot_rows_q4_q16};
#[cfg(target_arch = "x86_64")]
use super::dot::{Q8Tokens, Q16Tokens, dot_q4_q8_tokens, dot_q4_q16_tokens};
use super::for_each_chunk;

/// What a multi-row product keeps between calls, so that a step allocates
/// nothing: the transposed result and the activations laid out for the
/// kernel.
#[derive(Debug, Default)]
pub struct MatmulScratch {
    transposed: Vec<f32>,
    #[cfg(target_arch = "x86_64")]
    tokens: Q16Tokens,
    #[cfg(target_arch = "x86_64")]
    bytes: Q8Tokens,
}

/// Weight rows per task: small enough to give every thread several tasks on
/// a 576-row projection, large enough to amortise the scheduling.
const ROWS_PER_TASK: usize = 32;

/// Products of fewer tokens run the decode product once per token (the same
/// numbers): the AVX2 prefill kernel pads its tokens to groups of eight, and
/// at two or three tokens that cost more than reading the weights again (0.35
/// and 0.54 against 0.66 billion token × weight blocks a second, four 0.70).
const MIN_PREFILL_TOKENS: usize = 4;

/// Products of at most this many tokens take the AVX2 kernel on a CPU with
/// AVX-512 (the same numbers): its groups of eight tokens waste less than
/// the AVX-512 kernel's sixteen on a batched decode step's few rows (on a
/// 2-core AVX-512 Xeon, one thread: 0.52 against 0.46 billion token × weight
/// blocks a second at four tokens, 1.01 against 0.90 at eight; at twelve the
/// wide kernel wins, 1.35 against 0.77).
#[cfg(target_arch = "x86_64")]
const AVX2_GROUP_TOKENS: usize = 8;

/// `out[t, n] = Σ_k x[t, k] · W[n, k]` for the `m` quantized rows of `x`
/// (`m · w.blocks_per_row()` blocks). Tasks own disjoint weight rows; for
/// `m` of at least four they write a transposed `[n, m]` result into
/// `scratch`, which is then transposed into `out` (on AVX2 the rows of `x`
/// are first laid out once for the kernel, [`Q16Tokens`], in `scratch` too;
/// likewise on AVX-512).
/// Every `m` computes the same order ([`super::dot_rows_q4_q16`]'s): a
/// token's results do not depend on the tokens beside it.
pub fn matmul_q4_q16(
    x: &[Q16Block],
    m: usize,
    w: &Q4Packed,
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) {
    let (n, blocks) = (w.rows, w.blocks_per_row());
    assert_eq!(
        x.len(),
        m * blocks,
        "matmul_q4_q16: x has {} blocks, expected {m}×{blocks}",
        x.len()
    );
    assert_eq!(out.len(), m * n, "matmul_q4_q16: out has {} values, expected {m}×{n}", out.len());
    let kernel = DotKernel::best();
    if m < MIN_PREFILL_TOKENS {
        for (x, out) in x.chunks(blocks.max(1)).zip(out.chunks_mut(n)) {
            for_each_chunk(out, ROWS_PER_TASK, |c, chunk| {
                let first = c * ROWS_PER_TASK * blocks;
                dot_rows_q4_q16(kernel, &w.blocks[first..first + chunk.len() * blocks], x, chunk);
            });
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if matches!(kernel, DotKernel::Avx2 | DotKernel::Avx512) {
        // One AVX2 group of eight holds a few tokens better than a wide one.
        let kernel = match kernel {
            DotKernel::Avx512 if m <= AVX2_GROUP_TOKENS => DotKernel::Avx2,
            kernel => kernel,
        };
        scratch.tokens.gather(kernel, x, m);
        let tokens = &scratch.tokens;
        return by_weight_rows(w, m, out, &mut scratch.transposed, |rows, chunk| {
            dot_q4_q16_tokens(rows, tokens, chunk)
        });
    }
    by_weight_rows(w, m, out, &mut scratch.transposed, |rows, chunk| {
        for (row, column) in rows.chunks(blocks.max(1)).zip(chunk.chunks_mut(m)) {
            dot_q4_q16_with(kernel, row, x, column);
        }
    });
}

/// [`matmul_q4_q16`] for int8 activation rows ([`Q8Block`]), `m` of them:
/// on AVX-512 VNNI (sixteen tokens a group, `vpdpbusd`) and AVX2 (eight,
/// `vpmaddubsw`) the rows are laid out once ([`Q8Tokens`]) and multiplied
/// by [`dot_q4_q8_tokens`], elsewhere by the scalar kernel
/// ([`dot_q4_q8_with`]); every token's results equal the scalar kernel's
/// bit for bit, whatever `m`. A prefill's products, where the engine is
/// asked for them (docs/performance.md, "int8 prefill").
pub fn matmul_q4_q8(
    x: &[Q8Block],
    m: usize,
    w: &Q4Packed,
    out: &mut [f32],
    scratch: &mut MatmulScratch,
) {
    let blocks = w.blocks_per_row();
    assert_eq!(
        x.len(),
        m * blocks,
        "matmul_q4_q8: x has {} blocks, expected {m}×{blocks}",
        x.len()
    );
    assert_eq!(out.len(), m * w.rows, "matmul_q4_q8: out has {} values", out.len());
    let kernel = DotKernel::best();
    #[cfg(target_arch = "x86_64")]
    if matches!(kernel, DotKernel::Avx2 | DotKernel::Avx512) && m > 0 {
        scratch.bytes.gather(kernel, x, m);
        let tokens = &scratch.bytes;
        return by_weight_rows(w, m, out, &mut scratch.transposed, |rows, chunk| {
            dot_q4_q8_tokens(rows, tokens, chunk)
        });
    }
    by_weight_rows(w, m, out, &mut scratch.transposed, |rows, chunk| {
        for (row, column) in rows.chunks(blocks.max(1)).zip(chunk.chunks_mut(m)) {
            dot_q4_q8_with(kernel, row, x, column);
        }
    });
}

/// Runs `task(rows, results)` on tasks of [`ROWS_PER_TASK`] weight rows of
/// `w` (their blocks, one row after the other), each writing its rows'
/// results for the `m` tokens (`[rows, m]`) into `transposed`, which is
/// then transposed into `out` (`[m, w.rows]`).
fn by_weight_rows(
    w: &Q4Packed,
    m: usize,
    out: &mut [f32],
    transposed: &mut Vec<f32>,
    task: impl Fn(&[Q4Block], &mut [f32]) + Send + Sync,
) {
    let blocks = w.blocks_per_row();
    // Not zeroed: the tasks write every value (zeroing 2.5 MB of a prefill's
    // gate/up product took the calling thread while the pool waited).
    transposed.resize(w.rows * m, 0.0);
    if m == 0 {
        return;
    }
    for_each_chunk(transposed, ROWS_PER_TASK * m, |c, chunk| {
        let first = c * ROWS_PER_TASK * blocks;
        task(&w.blocks[first..first + chunk.len() / m * blocks], chunk);
    });
    untranspose(transposed, m, out);
}

/// Token rows per task of [`untranspose`].
const TOKENS_PER_TASK: usize = 8;

/// `out[t, j] = transposed[j, t]`, `out` holding `m` rows: tasks of
/// [`TOKENS_PER_TASK`] token rows on rayon's pool, each going through the
/// weight rows sixteen at a time, so that each write of a token's results
/// fills a cache line.
fn untranspose(transposed: &[f32], m: usize, out: &mut [f32]) {
    let n = transposed.len() / m;
    for_each_chunk(out, TOKENS_PER_TASK * n, |task, rows| {
        for (c, columns) in transposed.chunks(16 * m).enumerate() {
            for (i, row) in rows.chunks_mut(n).enumerate() {
                let t = task * TOKENS_PER_TASK + i;
                let row = &mut row[16 * c..][..columns.len() / m];
                for (j, y) in row.iter_mut().enumerate() {
                    *y = columns[j * m + t];
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::{Q4Matrix, Weight, matmul};
    use crate::cpu_fast::{quantize_row, quantize_rows};

    /// The product is close to the float32 reference, and each token's
    /// results equal a decode step's product of that token bit for bit (the
    /// int8 product's the scalar int8 kernel's), for
    /// token counts around the kernels' tiles and an odd number of weight
    /// rows (three tasks, the last one's rows paired with itself).
    #[test]
    fn product_is_close_to_the_reference_and_decode_equals_prefill() {
        let (rows, cols) = (71, 96);
        let words: Vec<u32> =
            (0..rows * 12).map(|i| (i as u32).wrapping_mul(0x9E37_79B9) ^ 0x1234_5678).collect();
        let scales: Vec<f32> = (0..rows * 3).map(|i| 0.01 + (i % 7) as f32 * 0.002).collect();
        let matrix = Q4Matrix { rows, cols, q_weight: &words, scales: &scales };
        let packed = Q4Packed::from_mlc(&matrix);
        let mut scratch = MatmulScratch::default();
        for m in [2, 3, 4, 5, 8, 13, 17] {
            let x: Vec<f32> = (0..m * cols).map(|i| ((i * 29 % 17) as f32 - 8.0) * 0.1).collect();
            let mut want = vec![0.0; m * rows];
            matmul(&x, m, &Weight::Q4(matrix), &mut want);

            let mut q = vec![Q16Block::default(); m * 3];
            for (row, blocks) in x.chunks(cols).zip(q.chunks_mut(3)) {
                quantize_row(row, blocks);
            }
            let mut got = vec![0.0; m * rows];
            matmul_q4_q16(&q, m, &packed, &mut got, &mut scratch);
            let spread = want.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4 * spread, "{m} tokens: {g} vs {w}");
            }
            // int8: within its coarser rounding of the reference, and each
            // token's results the scalar int8 kernel's bit for bit.
            let mut q8 = vec![Q8Block::default(); m * 3];
            quantize_rows(&x, cols, &mut q8);
            let mut got8 = vec![0.0; m * rows];
            matmul_q4_q8(&q8, m, &packed, &mut got8, &mut scratch);
            for (g, w) in got8.iter().zip(&want) {
                assert!((g - w).abs() < 2e-2 * spread, "int8, {m} tokens: {g} vs {w}");
            }
            for (t, row) in got8.chunks(rows).enumerate() {
                let mut one = vec![0.0; 1];
                for (n, y) in row.iter().enumerate() {
                    dot_q4_q8_with(DotKernel::Scalar, packed.row(n), &q8[t * 3..][..3], &mut one);
                    assert_eq!(
                        y.to_bits(),
                        one[0].to_bits(),
                        "int8, {m} tokens, token {t}, row {n}"
                    );
                }
            }
            for t in 0..m {
                let mut one = vec![0.0; rows];
                matmul_q4_q16(&q[t * 3..(t + 1) * 3], 1, &packed, &mut one, &mut scratch);
                let prefill = &got[t * rows..(t + 1) * rows];
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&one), bits(prefill), "{m} tokens, token {t}");
            }
        }
    }
}
