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
