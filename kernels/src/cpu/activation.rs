//! Gated activations, the residual add and logit soft-capping.

/// SwiGLU: `out[t, i] = silu(gate[t, i]) · up[t, i]`, where each input row is
/// `[gate | up]` (MLC's fused `gate_up_proj`, `2 · intermediate` wide) and each
/// output row is `intermediate` wide.
pub fn silu_mul(gate_up: &[f32], intermediate: usize, out: &mut [f32]) {
    gated(gate_up, intermediate, out, |g| g / (1.0 + (-g).exp()));
}

/// GeGLU with the tanh approximation of GELU (Gemma): `gelu_tanh(gate) · up`.
pub fn gelu_tanh_mul(gate_up: &[f32], intermediate: usize, out: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    gated(gate_up, intermediate, out, |g| {
        0.5 * g * (1.0 + (SQRT_2_OVER_PI * (g + 0.044715 * g * g * g)).tanh())
    });
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
