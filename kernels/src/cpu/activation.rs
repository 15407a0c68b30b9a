//! Activations (gated for the decoders' MLPs, plain for the encoder's), the
//! residual add and logit soft-capping.

/// SwiGLU: `out[t, i] = silu(gate[t, i]) · up[t, i]`, where each input row is
/// `[gate | up]` (MLC's fused `gate_up_proj`, `2 · intermediate` wide) and each
/// output row is `intermediate` wide.
pub fn silu_mul(gate_up: &[f32], intermediate: usize, out: &mut [f32]) {
    gated(gate_up, intermediate, out, silu_of);
}

/// GeGLU with the tanh approximation of GELU (Gemma): `gelu_tanh(gate) · up`.
pub fn gelu_tanh_mul(gate_up: &[f32], intermediate: usize, out: &mut [f32]) {
    gated(gate_up, intermediate, out, gelu_tanh_of);
}

/// GeGLU with the exact, erf-based GELU: `gelu(gate) · up` (no family
/// gates with it yet; the GPU kernels take every activation in both modes).
pub fn gelu_erf_mul(gate_up: &[f32], intermediate: usize, out: &mut [f32]) {
    gated(gate_up, intermediate, out, gelu_erf_of);
}

fn gated(gate_up: &[f32], intermediate: usize, out: &mut [f32], act: impl Fn(f32) -> f32) {
    assert_eq!(gate_up.len(), 2 * out.len(), "gated activation: input must be twice the output");
    for (pair, o) in gate_up.chunks(2 * intermediate).zip(out.chunks_mut(intermediate)) {
        let (gate, up) = pair.split_at(intermediate);
        for ((o, &g), &u) in o.iter_mut().zip(gate).zip(up) {
            *o = act(g) * u;
        }
    }
}

/// GELU in its exact form, `x · Φ(x) = 0.5 · x · (1 + erf(x / √2))`, in place
/// (BERT's `gelu` and GPT-NeoX's `op.gelu`, which MLC computes without the
/// tanh approximation).
pub fn gelu_erf(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = gelu_erf_of(*v));
}

/// The tanh approximation of GELU, in place (`gelu_new`).
pub fn gelu_tanh(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = gelu_tanh_of(*v));
}

/// ReLU, `max(x, 0)`, in place.
pub fn relu(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = v.max(0.0));
}

/// SiLU, `x · sigmoid(x)`, in place.
pub fn silu(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = silu_of(*v));
}

/// The error function, by Abramowitz and Stegun's formula 7.1.26
/// (`1 − (a₁t + … + a₅t⁵)·e^(−x²)` with `t = 1 / (1 + p·|x|)`, odd in `x`):
/// absolute error under 1.5e-7, the size of an f32 rounding step near 1, and
/// the same few operations a shader can run (WGSL has no `erf`).
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_8, -1.453_152_1, 1.061_405_4];
    let t = 1.0 / (1.0 + P * x.abs());
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let y = 1.0 - poly * (-x * x).exp();
    y.copysign(x)
}

fn silu_of(g: f32) -> f32 {
    g / (1.0 + (-g).exp())
}

fn gelu_erf_of(g: f32) -> f32 {
    0.5 * g * (1.0 + erf(g * std::f32::consts::FRAC_1_SQRT_2))
}

fn gelu_tanh_of(g: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * g * (1.0 + (SQRT_2_OVER_PI * (g + 0.044715 * g * g * g)).tanh())
}

/// Gemma-2's final logit soft-capping: `out = tanh(x / cap) · cap`, which
/// squashes every logit into `(-cap, cap)`.
pub fn softcap(x: &[f32], cap: f32, out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "softcap: sizes differ");
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v / cap).tanh() * cap;
    }
}

/// `x += y`, elementwise (the residual connection).
pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    assert_eq!(x.len(), y.len(), "add: sizes differ");
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values_within_its_bound() {
        // erf at 0, 0.5, 1, 2 and 3 (to 10 digits) and its oddness.
        let known = [
            (0.0, 0.0),
            (0.5, 0.520_499_877_8),
            (1.0, 0.842_700_792_9),
            (2.0, 0.995_322_265_0),
            (3.0, 0.999_977_909_5),
        ];
        for (x, want) in known {
            assert!((erf(x) - want as f32).abs() < 2e-7, "erf({x}) = {} vs {want}", erf(x));
            assert_eq!(erf(-x), -erf(x));
        }
    }

    #[test]
    fn exact_gelu_differs_from_the_tanh_form() {
        let mut exact = [-3.0, -1.0, 0.0, 0.5, 2.0];
        let mut tanh = exact;
        gelu_erf(&mut exact);
        gelu_tanh(&mut tanh);
        // GELU(1) = Φ(1) = 0.841344746.
        assert!((exact[1] + 0.158_655_25).abs() < 1e-6 && exact[2] == 0.0);
        // The two forms agree to ~1e-3 and no closer: a test would tell them apart.
        let gap = exact.iter().zip(&tanh).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(gap > 1e-5 && gap < 1e-3, "gap {gap}");
    }
}
