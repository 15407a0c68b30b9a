//! Qwen3.5's Gated DeltaNet ("linear attention") layers: a causal depthwise
//! convolution whose last inputs are kept between calls, the gated delta-rule
//! recurrence over a `key_dim × value_dim` state per value head, and the gated
//! RMSNorm of its output. The math is mlc-llm's
//! `python/mlc_llm/model/qwen35/qwen35_model.py` (docs/families.md, "qwen3_5"),
//! run token by token as MLC runs it, prefill included.

/// The sizes of one Gated DeltaNet layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaNetShape {
    /// Query/key heads (`linear_num_key_heads`).
    pub key_heads: usize,
    /// Value heads (`linear_num_value_heads`), a multiple of `key_heads`.
    pub value_heads: usize,
    /// Width of one query/key head (`linear_key_head_dim`).
    pub key_dim: usize,
    /// Width of one value head (`linear_value_head_dim`).
    pub value_dim: usize,
    /// Taps of the causal convolution (`linear_conv_kernel_dim`).
    pub conv_kernel: usize,
}

impl DeltaNetShape {
    /// Channels of the convolution: `[q (key_heads·key_dim) | k (same) | v (value_heads·value_dim)]`.
    pub fn conv_channels(&self) -> usize {
        2 * self.key_heads * self.key_dim + self.value_heads * self.value_dim
    }

    /// Width of the output (and of the `z` gate): `value_heads · value_dim`.
    pub fn value_width(&self) -> usize {
        self.value_heads * self.value_dim
    }

    /// f32 values of one layer's recurrent state: the convolution's last
    /// `conv_kernel − 1` inputs and the state matrix of every value head.
    pub fn state_len(&self) -> usize {
        (self.conv_kernel - 1) * self.conv_channels()
            + self.value_heads * self.key_dim * self.value_dim
    }
}

/// The recurrent state of one Gated DeltaNet layer for one sequence, zero at
/// the start of a sequence (MLC's `create_rnn_state` initial values).
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaNetState {
    /// The last `conv_kernel − 1` inputs of the convolution, oldest first,
    /// `[conv_kernel − 1, channels]`.
    pub conv: Vec<f32>,
    /// `S` of each value head, `[value_heads, key_dim, value_dim]`.
    pub recurrent: Vec<f32>,
}

impl DeltaNetState {
    /// The state of an empty sequence.
    pub fn zeros(shape: &DeltaNetShape) -> DeltaNetState {
        DeltaNetState {
            conv: vec![0.0; (shape.conv_kernel - 1) * shape.conv_channels()],
            recurrent: vec![0.0; shape.value_heads * shape.key_dim * shape.value_dim],
        }
    }
}

/// The causal depthwise convolution followed by SiLU, over `tokens` rows of
/// `x` (`[tokens, channels]`): channel `c` of token `t` is
/// `silu(Σ_j weight[c, j] · in[t − (kernel − 1) + j, c])`, where inputs before
/// the first token come from `window` (the previous call's last
/// `kernel − 1` rows, oldest first), which is then replaced by this call's
/// last `kernel − 1` inputs. `weight` is `[channels, kernel]` (MLC's
/// `conv1d_weight`, `[channels, 1, kernel]`).
pub fn causal_conv1d_silu(
    x: &[f32],
    weight: &[f32],
    kernel: usize,
    window: &mut [f32],
    out: &mut [f32],
) {
    let channels = weight.len() / kernel;
    let history = kernel - 1;
    assert_eq!(window.len(), history * channels, "causal_conv1d_silu: window size");
    assert_eq!(x.len(), out.len(), "causal_conv1d_silu: input and output sizes differ");
    let tokens = x.len() / channels;
    // Input row `i` of the extended sequence: the window, then `x`.
    let input = |window: &[f32], i: usize, c: usize| match i < history {
        true => window[i * channels + c],
        false => x[(i - history) * channels + c],
    };
    for t in 0..tokens {
        for c in 0..channels {
            let taps = &weight[c * kernel..(c + 1) * kernel];
            let sum: f32 = taps.iter().enumerate().map(|(j, w)| w * input(window, t + j, c)).sum();
            out[t * channels + c] = sum / (1.0 + (-sum).exp());
        }
    }
    // The new window is the last `history` rows of the extended sequence:
    // the old window's newest rows shifted to the front, then `x`'s last.
    let kept = history.saturating_sub(tokens);
    window.copy_within((history - kept) * channels.., 0);
    let taken = (history - kept) * channels;
    window[kept * channels..].copy_from_slice(&x[x.len() - taken..]);
}

/// Each value head's decay and update rate from `a = in_proj_a(x)` and
/// `b = in_proj_b(x)` (`[tokens, value_heads]` each):
/// `g = exp(−exp(A_log) · softplus(a + dt_bias))` and `β = sigmoid(b)`,
/// written over `a` and `b`. Softplus is `x` above 20 and `ln(1 + eˣ)` below,
/// as MLC's `_compute_gate_beta` writes it.
pub fn delta_net_gates(a: &mut [f32], b: &mut [f32], a_log: &[f32], dt_bias: &[f32]) {
    let heads = a_log.len();
    for (a_row, b_row) in a.chunks_mut(heads).zip(b.chunks_mut(heads)) {
        for h in 0..heads {
            let x = a_row[h] + dt_bias[h];
            let softplus = if x > 20.0 { x } else { (1.0 + x.exp()).ln() };
            a_row[h] = (-a_log[h].exp() * softplus).exp();
            b_row[h] = 1.0 / (1.0 + (-b_row[h]).exp());
        }
    }
}

/// `1 / sqrt(Σ x² + eps)`: the factor that L2-normalises `x` (MLC's
/// `_l2_normalize` of q and k, eps 1e-6).
pub fn inverse_l2_norm(x: &[f32], eps: f32) -> f32 {
    1.0 / (x.iter().map(|v| v * v).sum::<f32>() + eps).sqrt()
}

/// The gated delta rule over `tokens` rows, one token after the other.
/// `qkv` is the convolution's output (`[tokens, channels]`: q, k, v), `g` and
/// `beta` the gates (`[tokens, value_heads]`), `state` the heads' `S`
/// (`[value_heads, key_dim, value_dim]`, updated). Per token and value head
/// `h` (key head `h / (value_heads / key_heads)`), with `q` and `k`
/// L2-normalised:
///
/// ```text
/// S ← g·S;  d = Sᵀk;  S ← S + β·k·(v − d)ᵀ;  o = Sᵀq · key_dim^-0.5
/// ```
///
/// `out` is `[tokens, value_heads · value_dim]`.
pub fn gated_delta_rule(
    shape: &DeltaNetShape,
    qkv: &[f32],
    g: &[f32],
    beta: &[f32],
    state: &mut [f32],
    out: &mut [f32],
) {
    let DeltaNetShape { key_heads, value_heads, key_dim: kd, value_dim: vd, .. } = *shape;
    let channels = shape.conv_channels();
    let tokens = qkv.len() / channels;
    assert_eq!(state.len(), value_heads * kd * vd, "gated_delta_rule: state size");
    assert_eq!(out.len(), tokens * value_heads * vd, "gated_delta_rule: output size");
    let group = value_heads / key_heads;
    let scale = 1.0 / (kd as f32).sqrt();
    for t in 0..tokens {
        let row = &qkv[t * channels..(t + 1) * channels];
        let (q, k, v) = (
            &row[..key_heads * kd],
            &row[key_heads * kd..2 * key_heads * kd],
            &row[2 * key_heads * kd..],
        );
        for h in 0..value_heads {
            let s = &mut state[h * kd * vd..(h + 1) * kd * vd];
            let (qh, kh) = (&q[h / group * kd..][..kd], &k[h / group * kd..][..kd]);
            // q and k are L2-normalised as they are read.
            let (q_inv, k_inv) = (inverse_l2_norm(qh, 1e-6), inverse_l2_norm(kh, 1e-6));
            let vh = &v[h * vd..(h + 1) * vd];
            let (gate, rate) = (g[t * value_heads + h], beta[t * value_heads + h]);
            // `o` holds `d = Sᵀk` until S is updated, then the head's output.
            let o = &mut out[(t * value_heads + h) * vd..][..vd];
            s.iter_mut().for_each(|x| *x *= gate);
            o.iter_mut().for_each(|x| *x = 0.0);
            for (s_row, &kr) in s.chunks(vd).zip(kh) {
                let kr = kr * k_inv;
                o.iter_mut().zip(s_row).for_each(|(x, &s)| *x += s * kr);
            }
            for (s_row, &kr) in s.chunks_mut(vd).zip(kh) {
                let kr = kr * k_inv;
                for ((x, &vc), &dc) in s_row.iter_mut().zip(vh).zip(o.iter()) {
                    *x += kr * rate * (vc - dc);
                }
            }
            o.iter_mut().for_each(|x| *x = 0.0);
            for (s_row, &qr) in s.chunks(vd).zip(qh) {
                let qr = qr * q_inv;
                o.iter_mut().zip(s_row).for_each(|(x, &s)| *x += s * qr);
            }
            o.iter_mut().for_each(|x| *x *= scale);
        }
    }
}

/// The gated RMSNorm of the recurrence's output: for each group of
/// `weight.len()` values (one value head), `norm(x) · weight · silu(z)`, with
/// `z` the same shape as `x` (MLC's `self.norm` then `· silu(in_proj_z(x))`).
pub fn gated_rms_norm(x: &[f32], weight: &[f32], z: &[f32], eps: f32, out: &mut [f32]) {
    assert_eq!(x.len(), z.len(), "gated_rms_norm: input and gate sizes differ");
    super::rms_norm(x, weight, eps, out);
    for (o, &z) in out.iter_mut().zip(z) {
        *o *= z / (1.0 + (-z).exp());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_convolution_continues_across_calls_through_its_window() {
        // Two channels, three taps: one call over five tokens equals two calls
        // over two and three, because the window carries the last two inputs.
        let weight = [0.5, -1.0, 2.0, 1.0, 0.25, -0.5];
        let x: Vec<f32> = (0..10).map(|i| (i as f32 * 0.7).sin()).collect();
        let mut whole_window = vec![0.0; 4];
        let mut whole = vec![0.0; 10];
        causal_conv1d_silu(&x, &weight, 3, &mut whole_window, &mut whole);
        let mut window = vec![0.0; 4];
        let mut split = vec![0.0; 10];
        causal_conv1d_silu(&x[..4], &weight, 3, &mut window, &mut split[..4]);
        causal_conv1d_silu(&x[4..], &weight, 3, &mut window, &mut split[4..]);
        assert_eq!(whole, split);
        assert_eq!(window, whole_window);
        assert_eq!(window, x[6..].to_vec());
        // Token 0 sees only its own input (the window starts at zero).
        let pre = weight[2] * x[0];
        assert!((whole[0] - pre / (1.0 + (-pre).exp())).abs() < 1e-6);
    }

    #[test]
    fn one_delta_step_matches_the_written_out_update() {
        // One key head, one value head, key_dim 2, value_dim 1, from S = [[1], [2]].
        let shape = DeltaNetShape {
            key_heads: 1,
            value_heads: 1,
            key_dim: 2,
            value_dim: 1,
            conv_kernel: 2,
        };
        let qkv = [3.0, 4.0, 0.0, 2.0, 5.0];
        let mut state = vec![1.0, 2.0];
        let mut out = vec![0.0];
        gated_delta_rule(&shape, &qkv, &[0.5], &[0.25], &mut state, &mut out);
        // q = (0.6, 0.8), k = (0, 1); S = 0.5·S = (0.5, 1); d = 1; S += 0.25·k·(5 − 1) = (0.5, 2).
        let norm = |v: f32, n: f32| v / (n + 1e-6).sqrt();
        let (k1, q0, q1) = (norm(2.0, 4.0), norm(3.0, 25.0), norm(4.0, 25.0));
        let s1 = 1.0 + 0.25 * k1 * (5.0 - k1);
        assert!((state[0] - 0.5).abs() < 1e-6 && (state[1] - s1).abs() < 1e-6);
        let o = (0.5 * q0 + s1 * q1) / 2f32.sqrt();
        assert!((out[0] - o).abs() < 1e-6, "{} vs {o}", out[0]);
    }

    #[test]
    fn gates_follow_mlcs_softplus_and_sigmoid() {
        let mut a = vec![0.3, 25.0];
        let mut b = vec![0.0, -2.0];
        delta_net_gates(&mut a, &mut b, &[0.1, -1.0], &[0.2, 1.0]);
        let g0 = (-(0.1f32).exp() * (1.0 + 0.5f32.exp()).ln()).exp();
        assert!((a[0] - g0).abs() < 1e-6);
        assert!((a[1] - (-(-1.0f32).exp() * 26.0).exp()).abs() < 1e-9);
        assert!((b[0] - 0.5).abs() < 1e-6 && (b[1] - 1.0 / (1.0 + 2f32.exp())).abs() < 1e-6);
    }

    #[test]
    fn the_gated_norm_normalises_each_head_then_gates() {
        let x = [3.0, 4.0, 1.0, 1.0];
        let z = [0.0, 1.0, 2.0, -1.0];
        let mut out = vec![0.0; 4];
        gated_rms_norm(&x, &[1.0, 2.0], &z, 0.0, &mut out);
        let silu = |v: f32| v / (1.0 + (-v).exp());
        let rms0 = 12.5f32.sqrt();
        let want = [3.0 / rms0 * silu(0.0), 8.0 / rms0 * silu(1.0), silu(2.0), 2.0 * silu(-1.0)];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-6, "{out:?} vs {want:?}");
        }
    }
}
