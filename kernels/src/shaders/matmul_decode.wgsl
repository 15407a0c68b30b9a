// Decoding of one q4 word (prepended to matmul.wgsl and embed.wgsl, before
// matmul_weights.wgsl). Plain 32-bit integer and float arithmetic: it needs no
// optional feature, and an f16 variant would need a u32 → vec2<f16> bitcast,
// which naga (wgpu's shader compiler) does not implement.

// Eight consecutive weights along k: `lo` holds k = 0..3 of the word, `hi` k = 4..7.
struct Eight {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// The eight 4-bit codes of `word`, lowest nibble first, minus MLC's zero point 7.
// The result is exact: every value is a small integer.
fn q4_centered(word: u32) -> Eight {
    let lo = (vec4<u32>(word) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(0xFu);
    let hi = (vec4<u32>(word) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(0xFu);
    // 0x4B000000 is 2^23 as an f32. OR-ing a code into its mantissa gives exactly
    // 2^23 + code, so subtracting 2^23 + 7 yields code - 7 with no int-to-float
    // conversion (a slow instruction on many GPUs).
    let magic = vec4<u32>(0x4B000000u);
    return Eight(bitcast<vec4<f32>>(lo | magic) - 8388615.0, bitcast<vec4<f32>>(hi | magic) - 8388615.0);
}
