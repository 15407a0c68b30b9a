// Fused RoPE + KV-cache append.
//
// For each of `tokens` tokens at absolute positions start..start+tokens, from the
// fused projection row `qkv[t] = [q (heads·D) | k (kv_heads·D) | v (kv_heads·D)]`:
//   (Qwen3 only) every q and k head:  x ← x · rsqrt(mean(x²) + eps) · w_norm
//   every q and k head:  for i < R/2 (R = rotary_dim, angle θ_d = pos · inv_freq_d):
//       y[i]       = x[i] · cos θ_i − x[i + R/2] · sin θ_i
//       y[i + R/2] = x[i + R/2] · cos θ_{i+R/2} + x[i] · sin θ_{i+R/2}
//   (θ_{i+R/2} = θ_i except under MLC's YaRN)
//   dims ≥ R pass through;
//   q_out[t, h]             = y_q          ([tokens, heads·D])
//   k_cache[s, g, pos]      = y_k          ([sequences, kv_heads, capacity, D], s = sequence)
//   v_cache[s, g, pos]      = v            (unrotated)
// The cache stores f32 or f16, four values at a time (KvVec4 and kv_store come
// from the source's prefix: FloatFormat::kv_cache_wgsl); D is a multiple of 4.
// cos θ and sin θ come from a table computed on the CPU ([capacity, R] of
// (cos, sin)), because WGSL's cos/sin are not accurate for large angles.
//
// One workgroup per (head slot, token): slots 0..heads are query heads, slots
// heads..heads+kv_heads are key heads, whose workgroup also copies the value head.

struct Params {
    tokens: u32,      // tokens in this step
    start: u32,       // absolute position of the first one
    sequence: u32,    // the sequence whose cache block is written
    heads: u32,
    kv_heads: u32,
    head_dim: u32,    // D ≤ 256
    rotary_dim: u32,  // R ≤ D, even
    capacity: u32,    // positions the cache holds
    norm: u32,        // 0: no q/k norm, 1: f32 weights, 2: f16 weights (2 per u32 word)
    eps: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> cos_sin: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> q_norm: array<u32>;
@group(0) @binding(4) var<storage, read> k_norm: array<u32>;
@group(0) @binding(5) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> k_cache: array<KvVec4>;
@group(0) @binding(7) var<storage, read_write> v_cache: array<KvVec4>;

const WG: u32 = 64u;
const ROPE_THREADS: u32 = WG;
const MAX_HEAD_DIM: u32 = 256u;

var<workgroup> head: array<f32, MAX_HEAD_DIM>;

@compute @workgroup_size(WG)
fn rope_append(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let slot = group.x;
    let t = group.y;
    let d = params.head_dim;
    let row = t * (params.heads + 2u * params.kv_heads) * d;
    let is_query = slot < params.heads;
    let pos = params.start + t;

    for (var i = lid; i < d; i += WG) {
        head[i] = qkv[row + slot * d + i];
    }
    workgroupBarrier();

    if params.norm != 0u {
        normalize_head(lid, d, params.norm, is_query, params.eps);
    }

    if is_query {
        let dst = (t * params.heads + slot) * d;
        for (var i = lid; i < d; i += WG) {
            q_out[dst + i] = rotated(i, pos, params.rotary_dim);
        }
        return;
    }
    let g = params.sequence * params.kv_heads + slot - params.heads;
    let dst4 = (g * params.capacity + pos) * (d / 4u);
    let v_src = row + (params.heads + params.kv_heads + slot - params.heads) * d;
    for (var c = lid; c < d / 4u; c += WG) {
        let i = 4u * c;
        let r = params.rotary_dim;
        k_cache[dst4 + c] = kv_store(vec4<f32>(rotated(i, pos, r), rotated(i + 1u, pos, r),
                                               rotated(i + 2u, pos, r), rotated(i + 3u, pos, r)));
        v_cache[dst4 + c] = kv_store(vec4<f32>(qkv[v_src + i], qkv[v_src + i + 1u],
                                               qkv[v_src + i + 2u], qkv[v_src + i + 3u]));
    }
}

// ---- the q/k norm weight and the rotation of a head held in workgroup memory

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

// Element i of `head` rotated to position `pos` (rope_rotation.wgsl); dims ≥ R
// unchanged.
fn rotated(i: u32, pos: u32, rotary_dim: u32) -> f32 {
    let half = rotary_dim / 2u;
    if i >= rotary_dim {
        return head[i];
    }
    let first_half = i < half;
    let partner = select(i - half, i + half, first_half);
    return rotate_half(head[i], head[partner], cos_sin[pos * rotary_dim + i], first_half);
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
