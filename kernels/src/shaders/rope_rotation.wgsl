// The rotation of RoPE's rotate-half (NeoX) form, prepended to the kernels that
// apply it (rope_append.wgsl, attention.wgsl). For i < R/2 (R = rotary_dim,
// angle θ_d = pos · inv_freq_d of the element d written, (cos θ_d, sin θ_d) = cs):
//   y[i]       = x[i] · cos θ_i − x[i + R/2] · sin θ_i
//   y[i + R/2] = x[i + R/2] · cos θ_{i+R/2} + x[i] · sin θ_{i+R/2}
// (the two angles of a pair differ only under MLC's YaRN, docs/families.md).
// `partner` is the other element of the pair: x[i + R/2] in the first half,
// x[i − R/2] in the second.
fn rotate_half(x: f32, partner: f32, cs: vec2<f32>, first_half: bool) -> f32 {
    return select(x * cs.x + partner * cs.y, x * cs.x - partner * cs.y, first_half);
}
