// Causal grouped-query attention over the KV cache, flash-attention style,
// for prefill (many tokens) and decode (one token, keys split into chunks).
//
//   out[t, h] = Σ_{lo ≤ p ≤ start+t} softmax_p(q[t, h] · K[g, p] · scale) · V[g, p],   g = h / group
//
// lo = 0, or with a sliding window of w keys (Gemma 3's local layers) lo = start + t + 1 − w.
//
// `attend`: one workgroup owns BLOCK_Q query rows that read the same KV head g:
// row r is query head h0 + r % heads_per_block of token t0 + r / heads_per_block,
// so the key and value tiles it loads serve the whole GQA group. It walks its
// keys in tiles of BLOCK_K held in workgroup memory and keeps, per row, the
// running maximum m, the running denominator l and the unnormalised output acc
// (online softmax):
//   m' = max(m, max_j s_j);  α = exp(m − m');  p_j = exp(s_j − m')
//   l' = α·l + Σ_j p_j;      acc' = α·acc + Σ_j p_j·V_j;      out = acc / l.
// Masked scores (future keys, keys before the window) are NEG and get weight 0;
// while a row has seen no key yet, m stays NEG and its l and acc stay 0.
//
// Prefill: workgroup (x, y) = (token block, KV head × head block); keys from the
// window start of the block's first position ..= the block's last position.
// Decode (`split`): x is a chunk of `chunk_len` keys, counted from the window
// start. With several chunks each writes (m, l, acc) per query head and
// `combine_chunks` (one workgroup per head) merges them:
//  M = max_c m_c,  L = Σ_c exp(m_c − M)·l_c,  out = Σ_c exp(m_c − M)·acc_c / L.
//
// Each tile's keys and values are loaded into registers one tile ahead (the
// loads overlap the previous tile's arithmetic), then copied into workgroup
// memory: first the keys, then, once the scores are taken, the values.
//
// A cache holds every sequence: [sequences, kv_heads, capacity, D], and a step
// reads sequence `sequence`'s block. It stores f32 or f16 (the model's
// activation type, as MLC's cache): the source's prefix declares KvVec4 and
// converts with kv_load / kv_store (FloatFormat::kv_cache_wgsl).
// A batched decode step (`batched` = 1) is one token for each of `tokens`
// rows, each of its own sequence at its own position (`batch_rows[r]` =
// (sequence, position)): rows are folded into workgroup y (decode) or y
// (combine), each with its own query, output and partials, and the chunk
// length is the longest row's (a shorter row has fewer chunks; the
// workgroups past them return at once).
//
// Decode with the append (`append` = 1): `q` holds the step's one projection row
// [q | k | v] as the q/k/v product wrote it, unrotated. Each workgroup rotates
// its query heads for position `start` as it loads them, and the workgroup
// whose chunk ends at the new position rotates that position's key, writes it
// and the value into the cache and then reads them like the older keys: the
// rope_append kernel and its dispatch are folded in (docs/kernels.md). Other
// chunks never read the new position, and a KV head has one such workgroup
// (the wrapper allows it only with one head block per KV head).
//
// The wrapper prepends HEAD_DIM, BLOCK_Q, BLOCK_K (a multiple of 4) and ACC_VEC4
// (= ceil(BLOCK_Q·D/4 / WG), the output vec4s each thread accumulates), chosen so
// that the workgroup memory — BLOCK_Q·D (queries) + BLOCK_K·(D+4) (keys, then
// values of the same tile, rows padded) + BLOCK_Q·BLOCK_K (scores) + 3·BLOCK_Q +
// 2·WG floats — stays within 16 KiB.

struct Params {
    tokens: u32,           // queries in this step
    start: u32,            // absolute position of the first query
    heads: u32,
    kv_heads: u32,
    capacity: u32,         // positions per head in the cache
    scale: f32,            // usually head_dim^-0.5
    chunk_len: u32,        // split: keys per chunk (a multiple of BLOCK_K)
    num_chunks: u32,       // split: chunks
    max_chunks: u32,       // chunks per head in the partial buffers
    group: u32,            // heads / kv_heads
    heads_per_block: u32,  // query heads of the group in one workgroup
    tokens_per_block: u32, // tokens in one workgroup
    head_blocks: u32,      // ceil(group / heads_per_block)
    split: u32,            // 1: decode with key chunks
    window: u32,           // sliding window in keys, 0: every earlier key
    append: u32,           // 1: decode from the unrotated projection row, appending its k and v
    rotary_dim: u32,       // append: dimensions rotated at the start of each head
    sequence: u32,         // the sequence whose cache the step reads (not batched)
    batched: u32,          // 1: one token per row of batch_rows (decode with append)
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;                   // [tokens, heads, D/4] (append: [tokens, heads + 2·kv_heads, D/4])
@group(0) @binding(2) var<storage, read_write> k_cache: array<KvVec4>;          // [sequences, kv_heads, capacity, D/4] (f32 or f16)
@group(0) @binding(3) var<storage, read_write> v_cache: array<KvVec4>;          // [sequences, kv_heads, capacity, D/4]
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;           // [tokens, heads, D/4]
@group(0) @binding(5) var<storage, read_write> partial_acc: array<vec4<f32>>;   // [rows, heads, max_chunks, D/4]
@group(0) @binding(6) var<storage, read_write> partial_ml: array<vec2<f32>>;    // [rows, heads, max_chunks] (m, l)
@group(0) @binding(7) var<storage, read> cos_sin: array<vec2<f32>>;             // append: [capacity, rotary_dim]
@group(0) @binding(8) var<uniform> batch_rows: array<vec4<u32>, MAX_BATCH_ROWS>; // batched: (sequence, position, -, -) per row

const WG: u32 = 128u;
const D4: u32 = HEAD_DIM / 4u;
const NEG: f32 = -1.0e30;
const ROW_THREADS: u32 = WG / BLOCK_Q;                        // threads per query row
const COLS: u32 = (BLOCK_K + ROW_THREADS - 1u) / ROW_THREADS;  // scores per thread
const TILE_VEC4: u32 = BLOCK_K * D4;
const TILE_LOADS: u32 = (TILE_VEC4 + WG - 1u) / WG;
const KV_STRIDE: u32 = D4 + 1u;   // padded rows: threads reading different keys hit different banks
const MAX_CHUNKS: u32 = 512u;

var<workgroup> q_tile: array<vec4<f32>, BLOCK_Q * D4>;
var<workgroup> kv_tile: array<vec4<f32>, BLOCK_K * KV_STRIDE>;
var<workgroup> scores: array<f32, BLOCK_Q * BLOCK_K>;
var<workgroup> row_max: array<f32, BLOCK_Q>;
var<workgroup> row_sum: array<f32, BLOCK_Q>;
var<workgroup> row_alpha: array<f32, BLOCK_Q>;
var<workgroup> part_max: array<f32, WG>;
var<workgroup> part_sum: array<f32, WG>;

/// The first key a query at `position` sees: 0, or the start of its window.
fn window_start(position: u32) -> u32 {
    return select(0u, position + 1u - params.window, params.window != 0u && position + 1u > params.window);
}

/// The queries one workgroup serves: `tokens` tokens from position `start` of
/// `sequence`, whose query and output rows begin at row `row`.
struct Job {
    sequence: u32,
    start: u32,
    tokens: u32,
    row: u32,
    chunks: u32,  // split: chunks of the job's keys
}

fn job_of(row: u32) -> Job {
    var job = Job(params.sequence, params.start, params.tokens, 0u, params.num_chunks);
    if params.batched != 0u {
        let entry = batch_rows[row];
        let seen = entry.y + 1u - window_start(entry.y);
        job = Job(entry.x, entry.y, 1u, row, (seen + params.chunk_len - 1u) / params.chunk_len);
    }
    return job;
}

/// Which query a row of a workgroup holds.
struct Row {
    token: u32,
    head: u32,
    valid: bool,  // false for padding rows (past the step or the group)
}

fn row_of(r: u32, t0: u32, h0: u32, h_end: u32, tokens: u32) -> Row {
    let token = t0 + r / params.heads_per_block;
    let head = h0 + r % params.heads_per_block;
    let valid = r < params.heads_per_block * params.tokens_per_block && token < tokens && head < h_end;
    return Row(token, head, valid);
}

/// A thread's share of one key or value tile, held in registers between the
/// global loads and the copy into workgroup memory.
struct Staged {
    v: array<vec4<f32>, TILE_LOADS>,
}

// Loads this thread's share of the keys (or values) of positions k0..k0+BLOCK_K.
// Positions past k_end are clamped to the last one: their scores are masked
// and their weights are 0.
fn fetch_tile(keys: bool, kv_base: u32, k0: u32, k_end: u32, lid: u32) -> Staged {
    var staged: Staged;
    for (var i = 0u; i < TILE_LOADS; i++) {
        let e = min(lid + i * WG, TILE_VEC4 - 1u);
        let at = (kv_base + min(k0 + e / D4, k_end - 1u)) * D4 + e % D4;
        if keys {
            staged.v[i] = kv_load(k_cache[at]);
        } else {
            staged.v[i] = kv_load(v_cache[at]);
        }
    }
    return staged;
}

fn store_tile(staged: Staged, lid: u32) {
    for (var i = 0u; i < TILE_LOADS; i++) {
        let e = lid + i * WG;
        if e < TILE_VEC4 {
            kv_tile[(e / D4) * KV_STRIDE + e % D4] = staged.v[i];
        }
    }
}

// Element i of the projected head whose values start at q[head_vec4], rotated
// to position `pos` (rope_rotation.wgsl).
fn projected(head_vec4: u32, i: u32, pos: u32) -> f32 {
    let x = q[head_vec4 + i / 4u][i % 4u];
    let rotary_dim = params.rotary_dim;
    if i >= rotary_dim {
        return x;
    }
    let half = rotary_dim / 2u;
    let first_half = i < half;
    let partner = select(i - half, i + half, first_half);
    return rotate_half(x, q[head_vec4 + partner / 4u][partner % 4u], cos_sin[pos * rotary_dim + i], first_half);
}

fn projected4(head_vec4: u32, c4: u32, pos: u32) -> vec4<f32> {
    let i = 4u * c4;
    return vec4<f32>(projected(head_vec4, i, pos), projected(head_vec4, i + 1u, pos),
                     projected(head_vec4, i + 2u, pos), projected(head_vec4, i + 3u, pos));
}

// Writes KV head g's rotated key and its value at position `pos` into the
// cache block that starts at `kv_base` positions, from the projection row that
// starts at vec4 `qkv_row`.
fn append_new_position(qkv_row: u32, g: u32, kv_base: u32, pos: u32, lid: u32) {
    let k_head = qkv_row + (params.heads + g) * D4;
    let v_head = qkv_row + (params.heads + params.kv_heads + g) * D4;
    let at = (kv_base + pos) * D4;
    for (var c4 = lid; c4 < D4; c4 += WG) {
        k_cache[at + c4] = kv_store(projected4(k_head, c4, pos));
        v_cache[at + c4] = kv_store(q[v_head + c4]);
    }
}

@compute @workgroup_size(WG)
fn attend(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let split = params.split != 0u;
    let blocks = params.kv_heads * params.head_blocks;
    let job = job_of(group.y / blocks);
    if group.x >= job.chunks && split {
        return;  // a batched row with fewer chunks than the longest
    }
    let by = group.y % blocks;
    let g = by / params.head_blocks;
    let h0 = g * params.group + (by % params.head_blocks) * params.heads_per_block;
    let h_end = (g + 1u) * params.group;
    let kv_base = (job.sequence * params.kv_heads + g) * params.capacity;
    let t0 = select(group.x * params.tokens_per_block, 0u, split);
    // Keys of this workgroup: k_begin .. k_end (its chunk, or from the first
    // query's window start up to its last query).
    let k_begin = window_start(job.start + t0) + select(0u, group.x * params.chunk_len, split);
    var k_end = job.start + min(t0 + params.tokens_per_block, job.tokens);
    if split {
        k_end = min(k_end, k_begin + params.chunk_len);
    }

    // Queries of the block, pre-multiplied by the scale (padding rows are 0).
    let append = params.append != 0u;
    let qkv_row = job.row * (params.heads + 2u * params.kv_heads) * D4;
    for (var e = lid; e < BLOCK_Q * D4; e += WG) {
        let row = row_of(e / D4, t0, h0, h_end, job.tokens);
        var v = vec4<f32>(0.0);
        if row.valid {
            if append {
                v = projected4(qkv_row + row.head * D4, e % D4, job.start);
            } else {
                v = q[(row.token * params.heads + row.head) * D4 + e % D4];
            }
        }
        q_tile[e] = v * params.scale;
    }
    // The chunk that ends at the new position puts its key and value in the
    // cache before it reads its keys.
    if append && k_end == job.start + 1u {
        append_new_position(qkv_row, g, kv_base, job.start, lid);
        storageBarrier();
    }
    if lid < BLOCK_Q {
        row_max[lid] = NEG;
        row_sum[lid] = 0.0;
    }
    var acc: array<vec4<f32>, ACC_VEC4>;
    for (var a = 0u; a < ACC_VEC4; a++) {
        acc[a] = vec4<f32>(0.0);
    }

    // This thread's query row for the scores: row r has ROW_THREADS threads,
    // thread (r, c) takes keys c, c + ROW_THREADS, ... of each tile.
    let row_thread = lid < BLOCK_Q * ROW_THREADS;
    let r = min(lid / ROW_THREADS, BLOCK_Q - 1u);
    let c = lid % ROW_THREADS;
    let last_visible = job.start + row_of(r, t0, h0, h_end, job.tokens).token;
    let first_visible = window_start(last_visible);

    // The next tile's keys and values are loaded into registers while the
    // current one is being used.
    var next_keys = fetch_tile(true, kv_base, k_begin, k_end, lid);
    var next_values = fetch_tile(false, kv_base, k_begin, k_end, lid);
    for (var k0 = k_begin; k0 < k_end; k0 += BLOCK_K) {
        workgroupBarrier();  // the previous tile's values and scores are consumed
        store_tile(next_keys, lid);
        let values = next_values;
        workgroupBarrier();

        // s[r, j] = q_r · k_j (scaled), NEG where key j is in the row's future
        // or before its window.
        var s: array<f32, COLS>;
        var part = NEG;
        for (var t = 0u; t < COLS; t++) {
            let j = c + t * ROW_THREADS;
            var v = NEG;
            if j < BLOCK_K && k0 + j <= last_visible && k0 + j >= first_visible && k0 + j < k_end {
                let qr = r * D4;
                let kj = j * KV_STRIDE;
                v = 0.0;
                for (var c4 = 0u; c4 < D4; c4 += 4u) {
                    v += dot(q_tile[qr + c4], kv_tile[kj + c4]) + dot(q_tile[qr + c4 + 1u], kv_tile[kj + c4 + 1u])
                       + dot(q_tile[qr + c4 + 2u], kv_tile[kj + c4 + 2u]) + dot(q_tile[qr + c4 + 3u], kv_tile[kj + c4 + 3u]);
                }
            }
            s[t] = v;
            part = max(part, v);
        }
        part_max[lid] = part;
        workgroupBarrier();

        // Online softmax: every thread of a row derives the row's new maximum,
        // exponentiates its own scores and leaves their partial sum ...
        let m_old = row_max[r];
        var m_new = m_old;
        for (var k = 0u; k < ROW_THREADS; k++) {
            m_new = max(m_new, part_max[r * ROW_THREADS + k]);
        }
        var part_total = 0.0;
        for (var t = 0u; t < COLS; t++) {
            let j = c + t * ROW_THREADS;
            if row_thread && j < BLOCK_K {
                let p = select(exp(s[t] - m_new), 0.0, s[t] == NEG);
                scores[r * BLOCK_K + j] = p;
                part_total += p;
            }
        }
        part_sum[lid] = part_total;
        if row_thread && c == 0u {
            row_alpha[r] = exp(m_old - m_new);
        }
        // ... while every thread replaces the keys by the tile's values.
        store_tile(values, lid);
        workgroupBarrier();
        if k0 + BLOCK_K < k_end {
            next_keys = fetch_tile(true, kv_base, k0 + BLOCK_K, k_end, lid);
            next_values = fetch_tile(false, kv_base, k0 + BLOCK_K, k_end, lid);
        }

        // The row's first thread updates l and m (read again only after the next barriers).
        if row_thread && c == 0u {
            var tile_sum = 0.0;
            for (var k = 0u; k < ROW_THREADS; k++) {
                tile_sum += part_sum[r * ROW_THREADS + k];
            }
            row_sum[r] = row_sum[r] * row_alpha[r] + tile_sum;
            row_max[r] = m_new;
        }

        // acc[r, c] = α_r · acc[r, c] + Σ_j p[r, j] · V[j, c]
        for (var a = 0u; a < ACC_VEC4; a++) {
            let e = lid + a * WG;
            if e < BLOCK_Q * D4 {
                let ar = e / D4;
                let ac = e % D4;
                let pr = ar * BLOCK_K;
                var v = acc[a] * row_alpha[ar];
                for (var j = 0u; j < BLOCK_K; j += 4u) {
                    v += scores[pr + j] * kv_tile[j * KV_STRIDE + ac]
                       + scores[pr + j + 1u] * kv_tile[(j + 1u) * KV_STRIDE + ac]
                       + scores[pr + j + 2u] * kv_tile[(j + 2u) * KV_STRIDE + ac]
                       + scores[pr + j + 3u] * kv_tile[(j + 3u) * KV_STRIDE + ac];
                }
                acc[a] = v;
            }
        }
    }
    workgroupBarrier();

    // out = acc / l, or this chunk's (m, l, acc) when decode has several chunks.
    let partial = split && job.chunks > 1u;
    for (var a = 0u; a < ACC_VEC4; a++) {
        let e = lid + a * WG;
        if e < BLOCK_Q * D4 {
            let row = row_of(e / D4, t0, h0, h_end, job.tokens);
            if row.valid {
                if partial {
                    let slot = (job.row * params.heads + row.head) * params.max_chunks + group.x;
                    partial_acc[slot * D4 + e % D4] = acc[a];
                    if e % D4 == 0u {
                        partial_ml[slot] = vec2<f32>(row_max[e / D4], row_sum[e / D4]);
                    }
                } else {
                    let out_row = job.row + row.token;
                    out[(out_row * params.heads + row.head) * D4 + e % D4] = acc[a] / row_sum[e / D4];
                }
            }
        }
    }
}

var<workgroup> chunk_weight: array<f32, MAX_CHUNKS>;
var<workgroup> combine_parts: array<vec4<f32>, WG>;

// Tree reduction over the workgroup in part_max (max) or part_sum (sum).
fn workgroup_max(x: f32, lid: u32) -> f32 {
    part_max[lid] = x;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            part_max[lid] = max(part_max[lid], part_max[lid + stride]);
        }
        workgroupBarrier();
    }
    return part_max[0];
}

fn workgroup_sum(x: f32, lid: u32) -> f32 {
    part_sum[lid] = x;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            part_sum[lid] += part_sum[lid + stride];
        }
        workgroupBarrier();
    }
    return part_sum[0];
}

@compute @workgroup_size(WG)
fn combine_chunks(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = group.x;
    let job = job_of(group.y);
    let n = job.chunks;
    if n <= 1u {
        return;  // a batched row of one chunk wrote its output itself
    }
    let base = (job.row * params.heads + h) * params.max_chunks;
    // M = max_c m_c;  w_c = exp(m_c − M);  L = Σ_c w_c·l_c   (threads split the chunks)
    var m = NEG;
    for (var c = lid; c < n; c += WG) {
        m = max(m, partial_ml[base + c].x);
    }
    let m_all = workgroup_max(m, lid);
    var l = 0.0;
    for (var c = lid; c < n; c += WG) {
        let ml = partial_ml[base + c];
        let w = exp(ml.x - m_all);
        chunk_weight[c] = w;
        l += w * ml.y;
    }
    let l_all = workgroup_sum(l, lid);  // its barriers also publish chunk_weight

    // out = Σ_c w_c·acc_c / L: thread (chunk group, lane) sums chunks cg, cg + GROUPS, ...
    const GROUPS: u32 = WG / D4;
    let lane = lid % D4;
    let cg = lid / D4;
    var o = vec4<f32>(0.0);
    if cg < GROUPS {
        for (var c = cg; c < n; c += 4u * GROUPS) {
            let c1 = min(c + GROUPS, n - 1u);
            let c2 = min(c + 2u * GROUPS, n - 1u);
            let c3 = min(c + 3u * GROUPS, n - 1u);
            let a0 = partial_acc[(base + c) * D4 + lane];
            let a1 = partial_acc[(base + c1) * D4 + lane];
            let a2 = partial_acc[(base + c2) * D4 + lane];
            let a3 = partial_acc[(base + c3) * D4 + lane];
            o += chunk_weight[c] * a0
               + select(0.0, chunk_weight[c1], c + GROUPS < n) * a1
               + select(0.0, chunk_weight[c2], c + 2u * GROUPS < n) * a2
               + select(0.0, chunk_weight[c3], c + 3u * GROUPS < n) * a3;
        }
        combine_parts[lid] = o;
    }
    workgroupBarrier();
    if lid < D4 {
        var total = vec4<f32>(0.0);
        for (var g = 0u; g < GROUPS; g++) {
            total += combine_parts[g * D4 + lid];
        }
        out[(job.row * params.heads + h) * D4 + lid] = total / l_all;
    }
}
