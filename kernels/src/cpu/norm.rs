//! Root-mean-square normalisation.

/// `out[r] = x[r] · rsqrt(mean(x[r]²) + eps) · weight` for each row of `x`.
///
/// `weight` has one value per feature; the row length is `weight.len()`. Also
/// used per head (Qwen3's q/k norm) with rows of `head_dim`.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let width = weight.len();
    assert_eq!(x.len(), out.len(), "rms_norm: input and output sizes differ");
    for (row, out_row) in x.chunks(width).zip(out.chunks_mut(width)) {
        let mean_square = row.iter().map(|v| v * v).sum::<f32>() / width as f32;
        let inv_rms = 1.0 / (mean_square + eps).sqrt();
        for ((o, &v), &w) in out_row.iter_mut().zip(row).zip(weight) {
            *o = v * inv_rms * w;
        }
    }
}
