//! Rotary position embedding, "rotate-half" (NeoX / HF / MLC `RopeMode.NORMAL`).

use std::f32::consts::PI;

/// Llama-3 frequency scaling (`rope_scaling.rope_type == "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3Scaling {
    /// `factor`: how much long wavelengths are stretched.
    pub factor: f32,
    /// `low_freq_factor`.
    pub low_freq_factor: f32,
    /// `high_freq_factor`.
    pub high_freq_factor: f32,
    /// `original_max_position_embeddings`.
    pub original_max_position_embeddings: f32,
}

/// The rotation applied to query and key heads.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    /// Dimensions rotated at the start of each head (`head_dim · partial_rotary_factor`).
    pub rotary_dim: usize,
    /// Inverse frequency of each rotated pair, `rotary_dim / 2` values.
    pub inv_freq: Vec<f32>,
    /// Factor on `cos` and `sin` (LongRoPE's attention scaling; 1 otherwise).
    pub mscale: f32,
}

impl Rope {
    /// `inv_freq(i) = theta^(-2i / rotary_dim)`, optionally Llama-3 scaled.
    pub fn new(theta: f32, rotary_dim: usize, scaling: Option<Llama3Scaling>) -> Rope {
        let inv_freq = (0..rotary_dim / 2)
            .map(|i| {
                let f = 1.0 / theta.powf((2 * i) as f32 / rotary_dim as f32);
                match scaling {
                    Some(s) => llama3_scale(f, s),
                    None => f,
                }
            })
            .collect();
        Rope { rotary_dim, inv_freq, mscale: 1.0 }
    }

    /// LongRoPE (Phi-3.5, Phi-4-mini): each pair's frequency divided by its
    /// extension factor, `inv_freq(i) = 1 / (factors[i] · theta^(2i / rotary_dim))`,
    /// and `cos`, `sin` multiplied by `mscale`. `factors` has `rotary_dim / 2` values.
    pub fn longrope(theta: f32, rotary_dim: usize, factors: &[f32], mscale: f32) -> Rope {
        assert_eq!(factors.len(), rotary_dim / 2, "longrope: one factor per rotated pair");
        let inv_freq = factors
            .iter()
            .enumerate()
            .map(|(i, &factor)| 1.0 / (factor * theta.powf((2 * i) as f32 / rotary_dim as f32)))
            .collect();
        Rope { rotary_dim, inv_freq, mscale }
    }

    /// `(cos, sin)` of each pair's angle at `position`, times `mscale`; computed
    /// in f32 like the reference (`angle = position · inv_freq`).
    pub fn cos_sin(&self, position: usize) -> impl Iterator<Item = (f32, f32)> + '_ {
        self.inv_freq.iter().map(move |&f| {
            let angle = position as f32 * f;
            (angle.cos() * self.mscale, angle.sin() * self.mscale)
        })
    }

    /// Rotates every head of `x` (`heads · head_dim` values of one token) for `position`.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, position: usize) {
        let half = self.rotary_dim / 2;
        let table: Vec<(f32, f32)> = self.cos_sin(position).collect();
        for head in x.chunks_mut(head_dim) {
            for (i, &(cos, sin)) in table.iter().enumerate() {
                let (a, b) = (head[i], head[i + half]);
                head[i] = a * cos - b * sin;
                head[i + half] = b * cos + a * sin;
            }
        }
    }
}

/// Llama-3's smooth blend between scaled long and unscaled short wavelengths.
fn llama3_scale(f: f32, s: Llama3Scaling) -> f32 {
    let alpha =
        s.original_max_position_embeddings / (2.0 * PI) / (s.high_freq_factor - s.low_freq_factor);
    let beta = s.low_freq_factor / (s.high_freq_factor - s.low_freq_factor);
    let smooth = (alpha * f - beta).clamp(0.0, 1.0);
    (1.0 - smooth) * f / s.factor + smooth * f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_zero_is_the_identity_and_rotation_keeps_the_norm() {
        let rope = Rope::new(10_000.0, 8, None);
        let mut x: Vec<f32> = (0..16).map(|i| i as f32 * 0.25 - 1.0).collect();
        let original = x.clone();
        rope.apply(&mut x, 8, 0);
        assert_eq!(x, original);
        rope.apply(&mut x, 8, 37);
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>();
        assert!((norm(&x[..8]) - norm(&original[..8])).abs() < 1e-4);
        assert_ne!(x, original);
    }

    #[test]
    fn llama3_scaling_divides_low_frequencies_and_keeps_high_ones() {
        let s = Llama3Scaling {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192.0,
        };
        let plain = Rope::new(500_000.0, 64, None);
        let scaled = Rope::new(500_000.0, 64, Some(s));
        assert_eq!(scaled.inv_freq[0], plain.inv_freq[0]);
        assert!((scaled.inv_freq[31] - plain.inv_freq[31] / 32.0).abs() < 1e-12);
    }

    #[test]
    fn longrope_divides_each_frequency_by_its_factor_and_scales_the_rotation() {
        let plain = Rope::new(10_000.0, 8, None);
        let long = Rope::longrope(10_000.0, 8, &[1.0, 2.0, 4.0, 8.0], 1.5);
        for (i, factor) in [1.0f32, 2.0, 4.0, 8.0].iter().enumerate() {
            assert!(
                (long.inv_freq[i] * factor - plain.inv_freq[i]).abs() <= 1e-6 * plain.inv_freq[i]
            );
        }
        let (cos, sin) = long.cos_sin(3).next().unwrap();
        assert!(((cos * cos + sin * sin).sqrt() - 1.5).abs() < 1e-6);
    }
}
