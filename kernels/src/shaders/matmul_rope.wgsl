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
var<workgroup> head_values: array<f32, MAX_HEAD_DIM>;

// Keeps the finished sums of the head's rows r .. r + ROWS_PER_THREAD of slot
// `slot` (plus the bias) in workgroup memory.
fn keep_rows(slot: u32, r: u32, sums: vec4<f32>) {
    for (var i = 0u; i < ROWS_PER_THREAD; i++) {
        if r + i < rope.head_dim {
            var value = sums[i];
            if (params.epilogue & ADD_BIAS) != 0u {
                value += bias_at(slot * rope.head_dim + r + i);
            }
            head_values[r + i] = value;
        }
    }
}

// Weight `i` of a q/k norm stored as f32 bits or as packed f16 pairs.
fn qk_norm_weight(is_query: bool, i: u32) -> f32 {
    if rope.norm == 1u {
        return bitcast<f32>(select(k_norm[i], q_norm[i], is_query));
    }
    let word = select(k_norm[i / 2u], q_norm[i / 2u], is_query);
    return unpack2x16float(word)[i % 2u];
}

// Normalises, rotates and stores the head of `slot` once `head_values` holds
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
            v_cache[dst + i] = head_values[i];
        }
        return;
    }
    if rope.norm != 0u {
        var squares = 0.0;
        for (var i = lid; i < d; i += WORKGROUP) {
            squares += head_values[i] * head_values[i];
        }
        square_sums[lid] = squares;
        workgroupBarrier();
        for (var width = WORKGROUP / 2u; width > 0u; width /= 2u) {
            if lid < width {
                square_sums[lid] += square_sums[lid + width];
            }
            workgroupBarrier();
        }
        let inv_rms = 1.0 / sqrt(square_sums[0] / f32(d) + rope.eps);
        // Each invocation rescales the values it rotates below, whose partners
        // it reads only after the next barrier.
        for (var i = lid; i < d; i += WORKGROUP) {
            head_values[i] = head_values[i] * inv_rms * qk_norm_weight(is_query, i);
        }
        workgroupBarrier();
    }
    let half = rope.rotary_dim / 2u;
    var dst = slot * d;
    if !is_query {
        dst = ((slot - rope.heads) * rope.capacity + pos) * d;
    }
    for (var i = lid; i < d; i += WORKGROUP) {
        var y = head_values[i];
        if i < rope.rotary_dim {
            let cs = cos_sin[pos * half + i % half];
            if i < half {
                y = head_values[i] * cs.x - head_values[i + half] * cs.y;
            } else {
                y = head_values[i] * cs.x + head_values[i - half] * cs.y;
            }
        }
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
