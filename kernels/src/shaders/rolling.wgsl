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
// (or the decode attention), which attends over the attention cache.

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
@group(0) @binding(5) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(6) var<storage, read_write> v_cache: array<f32>;

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
    let dst = (block * params.capacity + i) * d;
    let r = params.rotary_dim;
    let half = r / 2u;
    for (var e = lid; e < d; e += WG) {
        var y = ring_k[src + e];
        if e < r {
            let first_half = e < half;
            let partner = ring_k[src + select(e - half, e + half, first_half)];
            y = rotate_half(y, partner, cos_sin[i * r + e], first_half);
        }
        k_cache[dst + e] = y;
        v_cache[dst + e] = ring_v[src + e];
    }
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
