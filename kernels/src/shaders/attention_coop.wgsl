// Prefill attention on cooperative matrices (tensor cores), appended to
// attention.wgsl (its Params, bindings, NEG and window_start) on devices with
// 16 × 16 × 16 f16 → f32 products; the wrapper heads the source with
// `enable f16; enable wgpu_cooperative_matrix;` and sets HEAD_DIM (64 here).
//
//   out[t, h] = Σ_p softmax_p(q[t, h] · K[g, p] · scale) · V[g, p]
//
// A workgroup owns CQ consecutive tokens of one query head h (KV head g =
// h / group) and walks the keys they see (from the first token's window start
// to the last token) in tiles of CK, twice:
//   1. S = (q · scale) Kᵀ on the tensor cores; each row's maximum m over its
//      visible keys;
//   2. S again, P = exp(S − m) (0 where masked), l += Σ P, O += P V on the
//      tensor cores;
// then out = O / l. Two passes instead of the online rescaling: an
// accumulator fragment can be scaled only as a whole, not row by row, and
// S costs as much as P V, so the second S is cheaper than moving O through
// workgroup memory after every tile.
// q is rounded to f16 in workgroup memory, K and V too where the cache stores
// f32 (an f16 cache is copied as it is), P to f16 before P V; S, the softmax
// and O are f32.
//
// The 8 subgroups (of 32, as the wrapper requires) share the fragments of a
// tile: subgroup s takes rows 16·(s / 2) .. + 16 of S and of O and, of the
// columns, 32·(s % 2) .. + 32 (two 16 × 16 fragments).

const CQ: u32 = 64u;                  // tokens per workgroup
const CK: u32 = 64u;                  // keys per tile
const HALF_STRIDE: u32 = HEAD_DIM + 8u;  // f16 row stride of the q, k and v tiles
const S_STRIDE: u32 = CK + 4u;        // f32 row stride of S (and of O at the end)
const P_STRIDE: u32 = CK + 8u;        // f16 row stride of P, kept where the keys were

var<workgroup> q_half: array<f16, CQ * HALF_STRIDE>;
var<workgroup> k_half: array<f16, CK * HALF_STRIDE>;  // the tile's keys, then P
var<workgroup> v_half: array<f16, CK * HALF_STRIDE>;
var<workgroup> s_tile: array<f32, CQ * S_STRIDE>;
var<workgroup> row_m: array<f32, CQ>;
var<workgroup> row_l: array<f32, CQ>;
var<workgroup> row_parts: array<f32, 256>;

// Keys (or values) k0 .. k0 + CK of KV head base into `tile` as f16, zero past k_end.
fn load_kv_tile(keys: bool, kv_base: u32, k0: u32, k_end: u32, lid: u32) {
    for (var e = lid; e < CK * D4; e += 256u) {
        let j = e / D4;
        let c = e % D4;
        var v = vec4<f16>(0.0);
        let at = (kv_base + k0 + j) * D4 + c;
        if k0 + j < k_end && keys {
            v = kv_load_half(k_cache[at]);
        } else if k0 + j < k_end {
            v = kv_load_half(v_cache[at]);
        }
        let to = j * HALF_STRIDE + 4u * c;
        if keys {
            k_half[to] = v.x; k_half[to + 1u] = v.y; k_half[to + 2u] = v.z; k_half[to + 3u] = v.w;
        } else {
            v_half[to] = v.x; v_half[to + 1u] = v.y; v_half[to + 2u] = v.z; v_half[to + 3u] = v.w;
        }
    }
}

// S = q Kᵀ of the tile into s_tile: subgroup s's two fragments.
fn tile_scores(s: u32) {
    let row = 16u * (s / 2u);
    let column = 32u * (s % 2u);
    var s0 = coop_mat16x16<f32, C>();
    var s1 = coop_mat16x16<f32, C>();
    for (var d = 0u; d < HEAD_DIM; d += 16u) {
        let a = coopLoadT<coop_mat16x16<f16, A>>(&q_half[row * HALF_STRIDE + d], HALF_STRIDE);
        // B = Kᵀ: B[d, j] = K[j, d], the key rows read column-major.
        let b0 = coopLoad<coop_mat16x16<f16, B>>(&k_half[column * HALF_STRIDE + d], HALF_STRIDE);
        let b1 = coopLoad<coop_mat16x16<f16, B>>(&k_half[(column + 16u) * HALF_STRIDE + d], HALF_STRIDE);
        s0 = coopMultiplyAdd(a, b0, s0);
        s1 = coopMultiplyAdd(a, b1, s1);
    }
    coopStoreT(s0, &s_tile[row * S_STRIDE + column], S_STRIDE);
    coopStoreT(s1, &s_tile[row * S_STRIDE + column + 16u], S_STRIDE);
}

// Whether every row of the block sees every key of the tile from k0: no
// tail, no key after the first row's position, none before the last row's
// window start. (Rows past the step hold zero queries and are never
// written, so they may see anything.) Such a tile skips the per-score mask.
fn tile_interior(t0: u32, k0: u32, k_end: u32) -> bool {
    let last = params.start + min(t0 + CQ, params.tokens) - 1u;
    return k0 + CK <= k_end && k0 + CK <= params.start + t0 + 1u && k0 >= window_start(last);
}

// Whether row r (token t0 + r) sees key `key` (< k_end).
fn visible(t0: u32, r: u32, key: u32, k_end: u32) -> bool {
    let position = params.start + t0 + r;
    return t0 + r < params.tokens && key < k_end && key <= position && key >= window_start(position);
}

@compute @workgroup_size(256)
fn attend_coop(@builtin(workgroup_id) group: vec3<u32>,
               @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32,
               @builtin(subgroup_id) s: u32) {
    let h = group.y;
    let kv_base = (params.sequence * params.kv_heads + h / params.group) * params.capacity;
    // The last blocks see the most keys: numbered first, they start first,
    // and the cheap early blocks fill the GPU at the end instead of leaving
    // it to a few long ones.
    let t0 = (groups.x - 1u - group.x) * CQ;
    let k_begin = window_start(params.start + t0);
    let k_end = params.start + min(t0 + CQ, params.tokens);

    // The block's queries, pre-multiplied by the scale (rows past the step are 0).
    for (var e = lid; e < CQ * D4; e += 256u) {
        let r = e / D4;
        var v = vec4<f32>(0.0);
        if t0 + r < params.tokens {
            v = q[((t0 + r) * params.heads + h) * D4 + e % D4] * params.scale;
        }
        let to = r * HALF_STRIDE + 4u * (e % D4);
        q_half[to] = f16(v.x); q_half[to + 1u] = f16(v.y); q_half[to + 2u] = f16(v.z); q_half[to + 3u] = f16(v.w);
    }
    if lid < CQ {
        row_m[lid] = NEG;
        row_l[lid] = 0.0;
    }
    // Thread lid reads scores 16·(lid % 4) .. + 16 of row lid / 4.
    let r = lid / 4u;
    let j0 = 16u * (lid % 4u);

    // 1. The row maxima.
    for (var k0 = k_begin; k0 < k_end; k0 += CK) {
        workgroupBarrier();  // the previous tile's scores are read
        load_kv_tile(true, kv_base, k0, k_end, lid);
        workgroupBarrier();
        tile_scores(s);
        workgroupBarrier();
        let interior = tile_interior(t0, k0, k_end);
        var m = NEG;
        for (var j = j0; j < j0 + 16u; j++) {
            if interior || visible(t0, r, k0 + j, k_end) {
                m = max(m, s_tile[r * S_STRIDE + j]);
            }
        }
        row_parts[lid] = m;
        workgroupBarrier();
        if lid < CQ {
            let parts = max(max(row_parts[4u * lid], row_parts[4u * lid + 1u]),
                            max(row_parts[4u * lid + 2u], row_parts[4u * lid + 3u]));
            row_m[lid] = max(row_m[lid], parts);
        }
    }

    // 2. P = exp(S − m), l and O = P V.
    let o_row = 16u * (s / 2u);
    let o_column = 32u * (s % 2u);
    var o0 = coop_mat16x16<f32, C>();
    var o1 = coop_mat16x16<f32, C>();
    for (var k0 = k_begin; k0 < k_end; k0 += CK) {
        workgroupBarrier();  // the previous tile's P and values are used
        load_kv_tile(true, kv_base, k0, k_end, lid);
        load_kv_tile(false, kv_base, k0, k_end, lid);
        workgroupBarrier();
        tile_scores(s);
        workgroupBarrier();  // S is complete and the keys are no longer read
        let interior = tile_interior(t0, k0, k_end);
        let m = row_m[r];
        var l = 0.0;
        for (var j = j0; j < j0 + 16u; j++) {
            var p = 0.0;
            if interior || visible(t0, r, k0 + j, k_end) {
                p = exp(s_tile[r * S_STRIDE + j] - m);
            }
            l += p;
            k_half[r * P_STRIDE + j] = f16(p);
        }
        row_parts[lid] = l;
        workgroupBarrier();
        if lid < CQ {
            row_l[lid] += row_parts[4u * lid] + row_parts[4u * lid + 1u] + row_parts[4u * lid + 2u] + row_parts[4u * lid + 3u];
        }
        for (var kk = 0u; kk < CK; kk += 16u) {
            let a = coopLoadT<coop_mat16x16<f16, A>>(&k_half[o_row * P_STRIDE + kk], P_STRIDE);
            let b0 = coopLoadT<coop_mat16x16<f16, B>>(&v_half[kk * HALF_STRIDE + o_column], HALF_STRIDE);
            let b1 = coopLoadT<coop_mat16x16<f16, B>>(&v_half[kk * HALF_STRIDE + o_column + 16u], HALF_STRIDE);
            o0 = coopMultiplyAdd(a, b0, o0);
            o1 = coopMultiplyAdd(a, b1, o1);
        }
    }

    // out = O / l, through s_tile.
    workgroupBarrier();
    coopStoreT(o0, &s_tile[o_row * S_STRIDE + o_column], S_STRIDE);
    coopStoreT(o1, &s_tile[o_row * S_STRIDE + o_column + 16u], S_STRIDE);
    workgroupBarrier();
    for (var e = lid; e < CQ * D4; e += 256u) {
        let row = e / D4;
        let c = e % D4;
        if t0 + row < params.tokens {
            let at = row * S_STRIDE + 4u * c;
            let o = vec4<f32>(s_tile[at], s_tile[at + 1u], s_tile[at + 2u], s_tile[at + 3u]);
            out[((t0 + row) * params.heads + h) * D4 + c] = o / row_l[row];
        }
    }
}
