// Reading W[n, k] in the formats of MLC artifacts (shared by matmul.wgsl and
// embed.wgsl; the wrapper prepends matmul_decode.wgsl, which defines `Eight`
// and `q4_centered`).
//
//   q4 (q4f16_1, q4f32_1): `weight` holds 4-bit codes, 8 per u32 word, lowest
//       nibble = lowest k, rows of K/8 words; W[n, k] = (code - 7) * scale[n, k / 32]
//       with `scales` rows of K/32 values.
//   dense (q0f16, q0f32): `weight` holds the values, rows of K.
//
// Floats are stored either as f16 bits, two per u32 word with the lower index in
// the low half (HALF), or as f32 bits. K is a multiple of 32, so a row is a whole
// number of vec4<u32> words in every format and every load below is aligned.
// Row indices are relative to the rows bound (a weight larger than one storage
// binding is bound in parts).

// q4 codes plus scales, else dense values.
override QUANTIZED: bool = true;
// Scales (q4), values (dense) and bias are f16 bits, else f32.
override HALF: bool = true;

@group(0) @binding(1) var<storage, read> weight: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;

// scale[i] of a q4 weight (row-major [rows, K/32]).
fn scale_at(i: u32) -> f32 {
    if HALF {
        return unpack2x16float(scales[i / 2u])[i % 2u];
    }
    return bitcast<f32>(scales[i]);
}

// W[row, 8 * chunk .. 8 * chunk + 8] of a matrix with `k` columns.
fn weights8(row: u32, chunk: u32, k: u32) -> Eight {
    if QUANTIZED {
        let word = row * (k / 8u) + chunk;
        let centered = q4_centered(weight[word / 4u][word % 4u]);
        let scale = scale_at(row * (k / 32u) + chunk / 4u);
        return Eight(centered.lo * scale, centered.hi * scale);
    }
    if HALF {
        let v = weight[row * (k / 8u) + chunk];
        return Eight(vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y)),
                     vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w)));
    }
    let i = row * (k / 4u) + 2u * chunk;
    return Eight(bitcast<vec4<f32>>(weight[i]), bitcast<vec4<f32>>(weight[i + 1u]));
}
