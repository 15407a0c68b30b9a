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

/// YaRN frequency scaling as TVM's paged KV cache applies it for MLC
/// (`rope_type == "yarn"`; docs/families.md, "ministral3").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YarnScaling {
    /// `factor`: how much the interpolated frequencies are slowed.
    pub factor: f32,
    /// `original_max_position_embeddings`.
    pub original_max_position_embeddings: f32,
    /// `beta_fast`: rotations over the original length above which a dimension extrapolates.
    pub beta_fast: f32,
    /// `beta_slow`: rotations below which a dimension interpolates.
    pub beta_slow: f32,
}

/// The rotation applied to query and key heads.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    /// Dimensions rotated at the start of each head (`head_dim · partial_rotary_factor`).
    pub rotary_dim: usize,
    /// Inverse frequency of each rotated dimension, `rotary_dim` values. The two
    /// elements of a pair (`i`, `i + rotary_dim/2`) share one frequency except
    /// under MLC's YaRN, whose blend reads the dimension index itself.
    pub inv_freq: Vec<f32>,
    /// Factor on `cos` and `sin` (LongRoPE's attention scaling; 1 otherwise).
    pub mscale: f32,
}

impl Rope {
    /// `inv_freq(i) = theta^(-2i / rotary_dim)`, optionally Llama-3 scaled.
    pub fn new(theta: f32, rotary_dim: usize, scaling: Option<Llama3Scaling>) -> Rope {
        let pairs = (0..rotary_dim / 2).map(|i| {
            let f = pair_freq(theta, rotary_dim, i);
            match scaling {
                Some(s) => llama3_scale(f, s),
                None => f,
            }
        });
        Rope { rotary_dim, inv_freq: both_halves(pairs.collect()), mscale: 1.0 }
    }

    /// LongRoPE (Phi-3.5, Phi-4-mini): each pair's frequency divided by its
    /// extension factor, `inv_freq(i) = 1 / (factors[i] · theta^(2i / rotary_dim))`,
    /// and `cos`, `sin` multiplied by `mscale`. `factors` has `rotary_dim / 2` values.
    pub fn longrope(theta: f32, rotary_dim: usize, factors: &[f32], mscale: f32) -> Rope {
        assert_eq!(factors.len(), rotary_dim / 2, "longrope: one factor per rotated pair");
        let pairs = factors
            .iter()
            .enumerate()
            .map(|(i, &factor)| 1.0 / (factor * theta.powf((2 * i) as f32 / rotary_dim as f32)))
            .collect();
        Rope { rotary_dim, inv_freq: both_halves(pairs), mscale }
    }

    /// YaRN as TVM's `rope_freq_yarn` computes it for each dimension `d` of
    /// `0..rotary_dim` (R): the pair frequency `f = theta^(-2(d mod R/2)/R)`,
    /// blended between `f` (extrapolation) and `f / factor` (interpolation) by
    /// `ramp = clamp((d - low) / (high - low), 0, 1)` with
    /// `low = max(R·ln(orig / (2π·beta_fast)) / (2 ln theta), 0)` and
    /// `high = min(R·ln(orig / (2π·beta_slow)) / (2 ln theta), R - 1)`:
    /// `f·(1 - ramp) + f/factor·ramp`. The ramp reads `d` itself, not the pair
    /// index, so a pair's second element can turn slower than its first (as
    /// MLC's kernel does; docs/families.md, "ministral3"). No factor on cos/sin.
    pub fn yarn(theta: f32, rotary_dim: usize, s: YarnScaling) -> Rope {
        let range = rotary_dim as f64;
        let correction = |rotations: f32| {
            range
                * (f64::from(s.original_max_position_embeddings)
                    / (f64::from(rotations) * 2.0 * std::f64::consts::PI))
                    .ln()
                / (2.0 * f64::from(theta).ln())
        };
        let low = correction(s.beta_fast).max(0.0) as f32;
        let mut high = correction(s.beta_slow).min(range - 1.0) as f32;
        if low == high {
            high += 0.001;
        }
        let half = rotary_dim / 2;
        let inv_freq = (0..rotary_dim)
            .map(|d| {
                let power = theta.powf((2 * (d % half)) as f32 / rotary_dim as f32);
                let (extra, inter) = (1.0 / power, 1.0 / (s.factor * power));
                let mask = 1.0 - ((d as f32 - low) / (high - low)).clamp(0.0, 1.0);
                inter * (1.0 - mask) + extra * mask
            })
            .collect();
        Rope { rotary_dim, inv_freq, mscale: 1.0 }
    }

    /// `(cos, sin)` of each rotated dimension's angle at `position`, times
    /// `mscale`; computed in f32 like the reference (`angle = position · inv_freq`).
    pub fn cos_sin(&self, position: usize) -> impl Iterator<Item = (f32, f32)> + '_ {
        self.inv_freq.iter().map(move |&f| {
            let angle = position as f32 * f;
            (angle.cos() * self.mscale, angle.sin() * self.mscale)
        })
    }

    /// Rotates every head of `x` (`heads · head_dim` values of one token) for `position`.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, position: usize) {
        let table: Vec<(f32, f32)> = self.cos_sin(position).collect();
        rotate_heads(x, head_dim, &table);
    }
}

/// Rotates every head of `x` by a `(cos, sin)` per rotated dimension
/// (`table`, `rotary_dim` entries): `y[i] = a·cos_i − b·sin_i` and
/// `y[i + R/2] = b·cos_{i+R/2} + a·sin_{i+R/2}` for the pair `(a, b)`.
pub fn rotate_heads(x: &mut [f32], head_dim: usize, table: &[(f32, f32)]) {
    let half = table.len() / 2;
    for head in x.chunks_mut(head_dim) {
        for i in 0..half {
            let (a, b) = (head[i], head[i + half]);
            let ((cos1, sin1), (cos2, sin2)) = (table[i], table[i + half]);
            head[i] = a * cos1 - b * sin1;
            head[i + half] = b * cos2 + a * sin2;
        }
    }
}

/// Frequency of pair `i`, `theta^(-2i / rotary_dim)`, in f32 as the reference.
fn pair_freq(theta: f32, rotary_dim: usize, i: usize) -> f32 {
    1.0 / theta.powf((2 * i) as f32 / rotary_dim as f32)
}

/// One frequency per rotated dimension from one per pair: both elements of a
/// pair turn together.
fn both_halves(pairs: Vec<f32>) -> Vec<f32> {
    pairs.iter().chain(&pairs).copied().collect()
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

    #[test]
    fn yarn_ramps_by_the_element_index_so_a_pairs_second_element_interpolates() {
        // Ministral-3-3B: R = 128, θ = 1e6, original 16384, factor 16:
        // low = 20.38, high = 36.44.
        let s = YarnScaling {
            factor: 16.0,
            original_max_position_embeddings: 16_384.0,
            beta_fast: 32.0,
            beta_slow: 1.0,
        };
        let (yarn, plain) = (Rope::yarn(1e6, 128, s), Rope::new(1e6, 128, None));
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-6 * b;
        // Extrapolated below `low`, interpolated above `high`, a blend between.
        assert!(close(yarn.inv_freq[20], plain.inv_freq[20]));
        assert!(close(yarn.inv_freq[37], plain.inv_freq[37] / 16.0));
        let r = (28.0 - 20.384_96) / (36.439_89 - 20.384_96);
        let blend = plain.inv_freq[28] * (1.0 - r) + plain.inv_freq[28] / 16.0 * r;
        assert!((yarn.inv_freq[28] - blend).abs() <= 1e-4 * blend);
        // Every second element (d ≥ 64) is past `high`: interpolated, while its partner is not.
        for i in 0..64 {
            assert!(close(yarn.inv_freq[64 + i], plain.inv_freq[i] / 16.0), "element {}", 64 + i);
        }
        // No factor on cos/sin; a pair's elements turn by different angles.
        let table: Vec<(f32, f32)> = yarn.cos_sin(1000).collect();
        assert_eq!((yarn.mscale, table.len()), (1.0, 128));
        assert!((table[0].0 - table[64].0).abs() > 0.1);
        let mut x: Vec<f32> = (0..128).map(|i| (i as f32 * 0.37).sin()).collect();
        let (a, b) = (x[3], x[67]);
        yarn.apply(&mut x, 128, 1000);
        assert_eq!(x[3], a * table[3].0 - b * table[3].1);
        assert_eq!(x[67], b * table[67].0 + a * table[67].1);
    }
}
