// Decode qkv product with the attention epilogue (appended to matmul.wgsl; see
// rope_append.wgsl for the math it repeats): one workgroup per head slot of the
// fused weight ([q heads | k heads | v heads] rows, head_dim rows each) computes
// the head's rows of rms_norm(x) · Wᵀ (+ bias) into workgroup memory, then
//   q and k heads: the optional per-head RMSNorm (Qwen3) and the rotation by
//                  the position's (cos, sin) row, dims ≥ rotary_dim unchanged;
//   q_out[h]          = y_q        ([1, heads·D])
//   k_cache[g, pos]   = y_k        ([kv_heads, capacity, D])
//   v_cache[g, pos]   = v          (unrotated)
// so a decode step needs no rope_append dispatch. Only the matmul bindings
// 0-4 and 7 are used, with its Params (n = rows of the whole W, bias flag).

struct RopeParams {
    position: u32,    // the token's absolute position (updated per step)
    heads: u32,
    kv_heads: u32,
    head_dim: u32,    // D ≤ 256
    rotary_dim: u32,  // R ≤ D, even
    capacity: u32,    // positions the cache holds
    norm: u32,        // 0: no q/k norm, 1: f32 weights, 2: f16 weights (2 per u32 word)
    eps: f32,         // q/k norm epsilon
}

@group(0) @binding(9) var<uniform> rope: RopeParams;
@group(0) @binding(10) var<storage, read> cos_sin: array<vec2<f32>>;
@group(0) @binding(11) var<storage, read> q_norm: array<u32>;
@group(0) @binding(12) var<storage, read> k_norm: array<u32>;
@group(0) @binding(13) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(14) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(15) var<storage, read_write> v_cache: array<f32>;

const MAX_HEAD_DIM: u32 = 256u;
const ROPE_THREADS: u32 = WORKGROUP;
var<workgroup> head: array<f32, MAX_HEAD_DIM>;

// Keeps the finished sums of the head's rows r .. r + ROWS_PER_THREAD of slot
// `slot` (plus the bias) in workgroup memory.
fn keep_rows(slot: u32, r: u32, sums: vec4<f32>) {
    for (var i = 0u; i < ROWS_PER_THREAD; i++) {
        if r + i < rope.head_dim {
            var value = sums[i];
            if (params.epilogue & ADD_BIAS) != 0u {
                value += bias_at(slot * rope.head_dim + r + i);
            }
            head[r + i] = value;
        }
    }
}

// Normalises, rotates and stores the head of `slot` once `head` holds
// it (called by every invocation, after the product).
fn finish_head(slot: u32, lid: u32) {
    workgroupBarrier();
    let d = rope.head_dim;
    let pos = rope.position;
    let is_query = slot < rope.heads;
    let is_value = slot >= rope.heads + rope.kv_heads;
    if is_value {
        let dst = ((slot - rope.heads - rope.kv_heads) * rope.capacity + pos) * d;
        for (var i = lid; i < d; i += WORKGROUP) {
            v_cache[dst + i] = head[i];
        }
        return;
    }
    if rope.norm != 0u {
        normalize_head(lid, d, rope.norm, is_query, rope.eps);
    }
    var dst = slot * d;
    if !is_query {
        dst = ((slot - rope.heads) * rope.capacity + pos) * d;
    }
    for (var i = lid; i < d; i += WORKGROUP) {
        let y = rotated(i, pos, rope.rotary_dim);
        if is_query {
            q_out[dst + i] = y;
        } else {
            k_cache[dst + i] = y;
        }
    }
}

// The portable form: the workgroup's teams of TEAM invocations take
// ROWS_PER_THREAD rows each, as in `matvec`, and walk the head's rows in passes.
@compute @workgroup_size(256)
fn matvec_rope(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    begin_input(lid);
    let slot = workgroup_index(wid, groups);
    let lane = lid % TEAM;
    for (var first = 0u; first < rope.head_dim; first += WORKGROUP / TEAM * ROWS_PER_THREAD) {
        let r = first + lid / TEAM * ROWS_PER_THREAD;
        var sums = vec4<f32>(0.0);
        if r < rope.head_dim {
            for (var g = lane; g < params.k / 32u; g += TEAM) {
                sums += group_dots(slot * rope.head_dim + r, g);
            }
        }
        partial_sums[lid] = sums;
        workgroupBarrier();
        for (var width = TEAM / 2u; width > 0u; width /= 2u) {
            if lane < width {
                partial_sums[lid] += partial_sums[lid + width];
            }
            workgroupBarrier();
        }
        if lane == 0u {
            keep_rows(slot, r, partial_sums[lid]);
        }
        // The next pass overwrites partial_sums.
        workgroupBarrier();
    }
    finish_head(slot, lid);
}
