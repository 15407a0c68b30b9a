// The MLP activations, shared by elementwise.wgsl and the matmul kernel that
// applies them to its input (prepended to both by their wrappers).

fn silu(g: f32) -> f32 {
    // exp(-g) overflows to +inf for g < -88 and the quotient is then -0: correct.
    return g / (1.0 + exp(-g));
}

fn gelu_tanh(g: f32) -> f32 {
    // Clamped because some drivers compute tanh from exp and return NaN for large
    // arguments; tanh(±10) is ±1 to f32 precision.
    let inner = clamp(0.7978846 * (g + 0.044715 * g * g * g), -10.0, 10.0);
    return 0.5 * g * (1.0 + tanh(inner));
}

// The exact GELU, 0.5 · g · (1 + erf(g / √2)), with erf by Abramowitz and Stegun's
// formula 7.1.26 (absolute error under 1.5e-7; WGSL has no erf): the same
// operations as cpu::erf.
fn gelu_erf(g: f32) -> f32 {
    let x = g * 0.70710678;
    let t = 1.0 / (1.0 + 0.3275911 * abs(x));
    let poly = t * (0.2548296 + t * (-0.28449674 + t * (1.4214138 + t * (-1.4531521 + t * 1.0614054))));
    let e = 1.0 - poly * exp(-x * x);
    return 0.5 * g * (1.0 + select(e, -e, x < 0.0));
}
