// MLC's rolling KV cache (docs/families.md, "mistral"; reference:
// kernels::cpu::gather_rolling and RollingWindow::slot). A layer's ring holds
// the unrotated keys and values of `size` tokens per sequence,
// `[sequences, kv_heads, size, D]`: the token at position p in slot p when
// p < sink, else in slot sink + (p − sink) mod (size − sink). For a pass of
// `tokens` rows of sequence `sequence` starting at position `start`, with
// held = min(start, size) and evicted = start − held:
//   gather: held token i (position i if i < sink, else i + evicted) goes to
//           place i of the attention cache `[sequences, kv_heads, capacity, D]`,
//           its key rotated at place i (cos_sin: [places, R] of (cos, sin));
//   keep:   then each row's key (unrotated) and value, from the fused
//           projection row `qkv[t] = [q | k | v]`, go to the slot of position
//           start + t (of several rows of the pass with one slot, the last).
// The pass's rows are rotated and appended at places held + t by rope_append
// (or the decode attention), which attends over the attention cache. The ring
// is f32; the attention cache f32 or f16, written four values at a time
// (KvVec4 and kv_store come from the source's prefix: FloatFormat::kv_cache_wgsl).

struct Params {
    tokens: u32,
    start: u32,
    sequence: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    rotary_dim: u32,
    size: u32,
    sink: u32,
    capacity: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> cos_sin: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> ring_k: array<f32>;
@group(0) @binding(4) var<storage, read_write> ring_v: array<f32>;
@group(0) @binding(5) var<storage, read_write> k_cache: array<KvVec4>;
@group(0) @binding(6) var<storage, read_write> v_cache: array<KvVec4>;

const WG: u32 = 64u;

fn slot_of(position: u32) -> u32 {
    if position < params.sink {
        return position;
    }
    return params.sink + (position - params.sink) % (params.size - params.sink);
}

// One workgroup per (held place i, kv head g).
@compute @workgroup_size(WG)
fn gather(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = group.x;
    let g = group.y;
    let held = min(params.start, params.size);
    if i >= held || g >= params.kv_heads {
        return;
    }
    let evicted = params.start - held;
    let position = select(i + evicted, i, i < params.sink);
    let d = params.head_dim;
    let block = params.sequence * params.kv_heads + g;
    let src = (block * params.size + slot_of(position)) * d;
    let dst4 = (block * params.capacity + i) * (d / 4u);
    for (var c = lid; c < d / 4u; c += WG) {
        let e = src + 4u * c;
        k_cache[dst4 + c] = kv_store(vec4<f32>(ring_key_at(src, 4u * c, i), ring_key_at(src, 4u * c + 1u, i),
                                               ring_key_at(src, 4u * c + 2u, i), ring_key_at(src, 4u * c + 3u, i)));
        v_cache[dst4 + c] = kv_store(vec4<f32>(ring_v[e], ring_v[e + 1u], ring_v[e + 2u], ring_v[e + 3u]));
    }
}

// Element e of the ring key that starts at `src`, rotated to place `place`
// (rope_rotation.wgsl); dims ≥ rotary_dim unchanged.
fn ring_key_at(src: u32, e: u32, place: u32) -> f32 {
    let r = params.rotary_dim;
    let x = ring_k[src + e];
    if e >= r {
        return x;
    }
    let half = r / 2u;
    let first_half = e < half;
    let partner = ring_k[src + select(e - half, e + half, first_half)];
    return rotate_half(x, partner, cos_sin[place * r + e], first_half);
}

// One workgroup per (row t, kv head g).
@compute @workgroup_size(WG)
fn keep(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = group.x;
    let g = group.y;
    if t >= params.tokens || g >= params.kv_heads {
        return;
    }
    let position = params.start + t;
    // A later row of the pass takes the same slot: it is the one kept.
    if position >= params.sink && t + (params.size - params.sink) < params.tokens {
        return;
    }
    let d = params.head_dim;
    let row = t * (params.heads + 2u * params.kv_heads) * d;
    let k_src = row + (params.heads + g) * d;
    let v_src = row + (params.heads + params.kv_heads + g) * d;
    let dst = ((params.sequence * params.kv_heads + g) * params.size + slot_of(position)) * d;
    for (var e = lid; e < d; e += WG) {
        ring_k[dst + e] = qkv[k_src + e];
        ring_v[dst + e] = qkv[v_src + e];
    }
}
