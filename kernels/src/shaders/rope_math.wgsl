// What the two RoPE kernels (rope_append.wgsl and, for a decode step,
// matmul_rope.wgsl) share: reading a q/k norm weight and rotating a head held
// in workgroup memory. The including shader declares `head` (the head's values
// in workgroup memory), ROPE_THREADS (its workgroup size, a power of two
// ≤ 256), `cos_sin` ([positions, R/2] of (cos θ, sin θ)), `q_norm` and `k_norm`.

var<workgroup> head_squares: array<f32, 256>;

// Weight `i` of a q or k norm stored as f32 bits (`mode` 1) or as packed f16
// pairs (`mode` 2).
fn qk_norm_weight(mode: u32, is_query: bool, i: u32) -> f32 {
    if mode == 1u {
        return bitcast<f32>(select(k_norm[i], q_norm[i], is_query));
    }
    let word = select(k_norm[i / 2u], q_norm[i / 2u], is_query);
    return unpack2x16float(word)[i % 2u];
}

// Element i of `head` rotated to position `pos`: for i < R/2
// (R = rotary_dim, θ_i = pos · inv_freq_i)
//   y[i]       = x[i] · cos θ_i − x[i + R/2] · sin θ_i
//   y[i + R/2] = x[i + R/2] · cos θ_i + x[i] · sin θ_i
// and dims ≥ R unchanged.
fn rotated(i: u32, pos: u32, rotary_dim: u32) -> f32 {
    let half = rotary_dim / 2u;
    if i >= rotary_dim {
        return head[i];
    }
    let cs = cos_sin[pos * half + i % half];
    if i < half {
        return head[i] * cs.x - head[i + half] * cs.y;
    }
    return head[i] * cs.x + head[i - half] * cs.y;
}

// Qwen3's per-head RMSNorm of `head[0 .. d]` in place:
//   head[i] ← head[i] · rsqrt(mean(head²) + eps) · w[i]
// with the q or k norm weights of `mode` (as `qk_norm_weight`). Every
// invocation calls it; each rescales the values it summed, and the closing
// barrier publishes them to the rotation.
fn normalize_head(lid: u32, d: u32, mode: u32, is_query: bool, eps: f32) {
    var squares = 0.0;
    for (var i = lid; i < d; i += ROPE_THREADS) {
        squares += head[i] * head[i];
    }
    head_squares[lid] = squares;
    workgroupBarrier();
    for (var stride = ROPE_THREADS / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            head_squares[lid] += head_squares[lid + stride];
        }
        workgroupBarrier();
    }
    let inv_rms = 1.0 / sqrt(head_squares[0] / f32(d) + eps);
    for (var i = lid; i < d; i += ROPE_THREADS) {
        head[i] = head[i] * inv_rms * qk_norm_weight(mode, is_query, i);
    }
    workgroupBarrier();
}
