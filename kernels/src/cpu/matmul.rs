//! `y = x · Wᵀ` for the weight formats MLC artifacts store.

/// Group size of MLC's q4 group quantization (`q4f16_1`, `q4f32_1`).
pub const Q4_GROUP: usize = 32;

/// A q4 group-quantized matrix in MLC's NK layout (`q4f16_1`, `q4f32_1`).
///
/// Element `(n, k)` is `(code - 7) * scales[n, k / 32]` where
/// `code = (q_weight[n, k / 8] >> (4 * (k % 8))) & 0xF`.
#[derive(Debug, Clone, Copy)]
pub struct Q4Matrix<'a> {
    /// Output features (N).
    pub rows: usize,
    /// Input features (K).
    pub cols: usize,
    /// Packed codes, `rows * words_per_row()` words, 8 codes per word, lowest nibble first.
    pub q_weight: &'a [u32],
    /// One scale per group of 32 along K, `rows * groups()` values.
    pub scales: &'a [f32],
}

impl Q4Matrix<'_> {
    /// Packed words per row: whole groups of 32 codes (a ragged tail is zero-padded).
    pub fn words_per_row(&self) -> usize {
        self.groups() * Q4_GROUP / 8
    }

    /// Groups per row.
    pub fn groups(&self) -> usize {
        self.cols.div_ceil(Q4_GROUP)
    }

    /// Decodes row `n` into `out` (`cols` values).
    pub fn dequantize_row(&self, n: usize, out: &mut [f32]) {
        let words = &self.q_weight[n * self.words_per_row()..(n + 1) * self.words_per_row()];
        let scales = &self.scales[n * self.groups()..(n + 1) * self.groups()];
        for (k, value) in out[..self.cols].iter_mut().enumerate() {
            let code = (words[k / 8] >> (4 * (k % 8))) & 0xF;
            *value = (code as f32 - 7.0) * scales[k / Q4_GROUP];
        }
    }
}

/// A weight matrix `[rows, cols]` in one of the stored formats.
#[derive(Debug, Clone, Copy)]
pub enum Weight<'a> {
    /// MLC q4 group quantization.
    Q4(Q4Matrix<'a>),
    /// Unquantized row-major f32 (`q0f32`, or `q0f16` widened on load).
    Dense {
        /// Output features.
        rows: usize,
        /// Input features.
        cols: usize,
        /// `rows * cols` values.
        values: &'a [f32],
    },
}

impl Weight<'_> {
    /// Output features (N).
    pub fn rows(&self) -> usize {
        match self {
            Weight::Q4(q) => q.rows,
            Weight::Dense { rows, .. } => *rows,
        }
    }

    /// Input features (K).
    pub fn cols(&self) -> usize {
        match self {
            Weight::Q4(q) => q.cols,
            Weight::Dense { cols, .. } => *cols,
        }
    }

    /// Decodes row `n` into `out` (`cols` values).
    pub fn row(&self, n: usize, out: &mut [f32]) {
        match self {
            Weight::Q4(q) => q.dequantize_row(n, out),
            Weight::Dense { cols, values, .. } => {
                out[..*cols].copy_from_slice(&values[n * cols..(n + 1) * cols])
            }
        }
    }
}

/// Rows of the weight handled by one task: enough work to amortise the
/// scheduling, small enough to spread the lm_head of a tiny model over cores.
const ROWS_PER_TASK: usize = 64;

/// `out[m, n] = Σ_k x[m, k] · W[n, k]` for `m` input rows.
///
/// Each weight row is decoded once and reused for all `m` rows of `x`, so a
/// prefill reads the weights once, like a decode step.
pub fn matmul(x: &[f32], m: usize, weight: &Weight<'_>, out: &mut [f32]) {
    let (n, k) = (weight.rows(), weight.cols());
    assert_eq!(x.len(), m * k, "matmul: x has {} values, expected {m}×{k}", x.len());
    assert_eq!(out.len(), m * n, "matmul: out has {} values, expected {m}×{n}", out.len());
    // Work on the transposed output [n, m] so that tasks own disjoint rows.
    let mut out_t = vec![0.0f32; n * m];
    let task = |first_row: usize, chunk: &mut [f32]| {
        let mut row = vec![0.0f32; k];
        for (i, out_row) in chunk.chunks_mut(m).enumerate() {
            weight.row(first_row + i, &mut row);
            for (t, y) in out_row.iter_mut().enumerate() {
                *y = dot(&row, &x[t * k..(t + 1) * k]);
            }
        }
    };
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        out_t
            .par_chunks_mut(ROWS_PER_TASK * m)
            .enumerate()
            .for_each(|(c, chunk)| task(c * ROWS_PER_TASK, chunk));
    }
    #[cfg(not(feature = "parallel"))]
    out_t
        .chunks_mut(ROWS_PER_TASK * m)
        .enumerate()
        .for_each(|(c, chunk)| task(c * ROWS_PER_TASK, chunk));
    for (j, col) in out_t.chunks(m).enumerate() {
        for (t, &v) in col.iter().enumerate() {
            out[t * n + j] = v;
        }
    }
}

/// Dot product with eight independent accumulators, which lets the compiler
/// vectorise it while keeping a fixed, reproducible summation order.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for i in chunks * 8..a.len() {
        sum += a[i] * b[i];
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packs codes (one per element, 0..15) into MLC's q4 words.
    fn pack(codes: &[u8], rows: usize, cols: usize) -> Vec<u32> {
        let words_per_row = cols.div_ceil(32) * 4;
        let mut words = vec![0u32; rows * words_per_row];
        for r in 0..rows {
            for c in 0..cols {
                words[r * words_per_row + c / 8] |= (codes[r * cols + c] as u32) << (4 * (c % 8));
            }
        }
        words
    }

    #[test]
    fn q4_product_matches_the_dequantized_dense_product() {
        let (rows, cols, m): (usize, usize, usize) = (70, 72, 3); // ragged last group and more rows than one task
        let codes: Vec<u8> = (0..rows * cols).map(|i| ((i * 7 + 3) % 15) as u8).collect();
        let groups = cols.div_ceil(32);
        let scales: Vec<f32> = (0..rows * groups).map(|i| 0.01 + i as f32 * 0.001).collect();
        let words = pack(&codes, rows, cols);
        let q4 = Weight::Q4(Q4Matrix { rows, cols, q_weight: &words, scales: &scales });
        let dense: Vec<f32> = (0..rows * cols)
            .map(|i| (codes[i] as f32 - 7.0) * scales[(i / cols) * groups + (i % cols) / 32])
            .collect();
        let x: Vec<f32> = (0..m * cols).map(|i| ((i % 11) as f32 - 5.0) * 0.1).collect();
        let mut got = vec![0.0; m * rows];
        matmul(&x, m, &q4, &mut got);
        for t in 0..m {
            for n in 0..rows {
                let want: f32 = (0..cols).map(|c| x[t * cols + c] * dense[n * cols + c]).sum();
                assert!(
                    (got[t * rows + n] - want).abs() < 1e-4,
                    "({t},{n}): {} vs {want}",
                    got[t * rows + n]
                );
            }
        }
    }
}
