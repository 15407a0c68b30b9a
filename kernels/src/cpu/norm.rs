//! Normalisations: RMSNorm (the decoders) and LayerNorm (the BERT encoder).

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

/// LayerNorm: `out[r] = (x[r] − μ) · rsqrt(σ² + eps) · weight + bias` for each
/// row of `x`, with `μ` and the biased variance `σ²` over the row.
pub fn layer_norm(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    let width = weight.len();
    assert_eq!(bias.len(), width, "layer_norm: weight and bias sizes differ");
    assert_eq!(x.len(), out.len(), "layer_norm: input and output sizes differ");
    for (row, out_row) in x.chunks(width).zip(out.chunks_mut(width)) {
        let mean = row.iter().sum::<f32>() / width as f32;
        let variance = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / width as f32;
        let inv_std = 1.0 / (variance + eps).sqrt();
        for (((o, &v), &w), &b) in out_row.iter_mut().zip(row).zip(weight).zip(bias) {
            *o = (v - mean) * inv_std * w + b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_norm_centres_scales_and_shifts_each_row() {
        let x = [1.0, 2.0, 3.0, 4.0, -2.0, 0.0, 2.0, 4.0];
        let (weight, bias) = ([1.0, 2.0, 1.0, 1.0], [0.0, 0.0, 0.5, 0.0]);
        let mut out = [0.0; 8];
        layer_norm(&x, &weight, &bias, 0.0, &mut out);
        // Row 0: mean 2.5, variance 1.25.
        let s = 1.0 / 1.25f32.sqrt();
        let want0 = [-1.5 * s, -0.5 * s * 2.0, 0.5 * s + 0.5, 1.5 * s];
        for (got, want) in out[..4].iter().zip(want0) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
        // Row 1 is row 0 shifted and doubled: the same normalised values.
        let mut doubled = [0.0; 4];
        layer_norm(&x[4..], &weight, &bias, 0.0, &mut doubled);
        for (a, b) in doubled.iter().zip(&out[..4]) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}
