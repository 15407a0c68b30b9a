// y[m, n] = Σ_k x[m, k] · W[n, k]  (+ bias[n])  (+ residual[m, n] | + y[m, n])
//
// The wrapper prepends activation.wgsl, matmul_decode.wgsl and matmul_weights.wgsl
// (W and its formats, bindings 1 and 2) and, on the subgroup path, appends
// matmul_subgroup.wgsl. Entry points: `matvec` (or `matvec_subgroup`) for one
// row of x (decode) or a few (a batched decode step), `matmul_tiled` and
// `sum_splits` for many (prefill). Workgroups are numbered linearly over a
// 2-D grid so that more than 65535 of them can be launched.

struct Params {
    rows: u32,      // m: rows of x and y in use (updated per step by the wrapper)
    n: u32,         // weight rows in the bound part of W
    k: u32,         // input features, a multiple of 32
    n_base: u32,    // output feature of the part's row 0: its column of y and index into bias
    y_stride: u32,  // output features of the whole W: row stride of y and residual
    epilogue: u32,  // which of the ADD_* terms to add
    eps: f32,       // RMSNorm epsilon of a NORMED input
}

const ADD_BIAS: u32 = 1u;      // + bias[n]
const ADD_RESIDUAL: u32 = 2u;  // + residual[m, n]
const ACCUMULATE: u32 = 4u;    // + y[m, n]: the residual add in place, `h = h + o_proj(a)`

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> bias: array<u32>;
@group(0) @binding(5) var<storage, read> residual: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
// RMSNorm weight [K] of a NORMED input, in the model dtype (HALF) like the scales.
@group(0) @binding(7) var<storage, read> norm_weight: array<u32>;

// What the decode kernels multiply W with (the INPUT override), so that the op
// before a projection runs inside it instead of in a dispatch of its own:
const PLAIN: u32 = 0u;       // x[m, :] as stored
const NORMED: u32 = 1u;      // rms_norm(x[m, :]) · norm_weight
const SILU_GATED: u32 = 2u;  // silu(gate) · up, x[m, :] being a fused [gate; up] row of 2K values
const GELU_GATED: u32 = 3u;  // gelu_tanh(gate) · up, likewise
const GELU_ERF_GATED: u32 = 4u;  // gelu_erf(gate) · up, likewise
override INPUT: u32 = PLAIN;

fn workgroup_index(id: vec3<u32>, count: vec3<u32>) -> u32 {
    return id.x + id.y * count.x;
}

// bias[i], stored in the model dtype like the scales.
fn bias_at(i: u32) -> f32 {
    if HALF {
        return unpack2x16float(bias[i / 2u])[i % 2u];
    }
    return bitcast<f32>(bias[i]);
}

// Writes y[m, n] for row n of the bound part: the product plus the epilogue.
fn store(m: u32, n: u32, product: f32) {
    let column = params.n_base + n;
    let i = m * params.y_stride + column;
    var value = product;
    if (params.epilogue & ADD_BIAS) != 0u {
        value += bias_at(column);
    }
    if (params.epilogue & ADD_RESIDUAL) != 0u {
        value += residual[i];
    }
    if (params.epilogue & ACCUMULATE) != 0u {
        value += y[i];
    }
    y[i] = value;
}

// ---- decode: y[m, :] = W · x[m, :] for each of a few rows m ----------------------
//
// Each workgroup multiplies one row of x with its set of weight rows. The
// workgroups of one weight row set and the different rows of x are adjacent
// in the numbering (row m = index % rows), so they run at about the same time
// and all but the first read the weights from cache: a step of a few rows
// reads the weights from memory about once.

const WORKGROUP: u32 = 256u;
// Consecutive weight rows one thread multiplies with the same slice of x
// (1, 2, 4 or 8; the wrapper builds 2, 4 for tall matrices and, in the
// subgroup kernel only, 8 for the tallest). The slice is loaded once for all
// of them: without this sharing, the x loads (128 bytes per 32-value group,
// from cache) outweigh the q4 codes (16 bytes) eight times over and the
// cache, not memory, limits the kernel.
override ROWS_PER_THREAD: u32 = 4u;

// 32 consecutive values of x, as named vectors so that they stay in registers
// (an array indexed in a loop may be spilled to memory).
struct Slice32 {
    v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>,
    v4: vec4<f32>, v5: vec4<f32>, v6: vec4<f32>, v7: vec4<f32>,
}

// 1 / rms(x[m, :]) for a NORMED input (set by `begin_input`).
var<private> inverse_rms: f32 = 1.0;
// Where this workgroup's row of x starts (vec4 index; set by `begin_row`).
var<private> x_base: u32 = 0u;

// This workgroup's row of x and its set of weight rows, from its linear index.
fn begin_row(index: u32) -> vec2<u32> {
    let m = index % params.rows;
    let row_vec4s = select(params.k / 4u, params.k / 2u, INPUT >= SILU_GATED);
    x_base = m * row_vec4s;
    return vec2<u32>(m, index / params.rows);
}
var<workgroup> square_sums: array<f32, WORKGROUP>;

// Called by every invocation before the products: a NORMED input needs the
// norm of x, which the whole workgroup sums (each workgroup redoes it: K values
// read from cache cost far less than the dispatch a separate norm would).
fn begin_input(lid: u32) {
    if INPUT != NORMED {
        return;
    }
    square_sums[lid] = square_sum_share(lid);
    workgroupBarrier();
    for (var width = WORKGROUP / 2u; width > 0u; width /= 2u) {
        if lid < width {
            square_sums[lid] += square_sums[lid + width];
        }
        workgroupBarrier();
    }
    set_inverse_rms(square_sums[0]);
}

// This invocation's share of Σ x[m, k]² for a NORMED input.
fn square_sum_share(lid: u32) -> f32 {
    var sum = 0.0;
    for (var j = lid; j < params.k / 4u; j += WORKGROUP) {
        let v = x[x_base + j];
        sum += dot(v, v);
    }
    return sum;
}

fn set_inverse_rms(square_sum: f32) {
    inverse_rms = inverseSqrt(square_sum / f32(params.k) + params.eps);
}

// norm_weight[4j .. 4j + 4].
fn norm_weight4(j: u32) -> vec4<f32> {
    if HALF {
        return vec4<f32>(unpack2x16float(norm_weight[2u * j]), unpack2x16float(norm_weight[2u * j + 1u]));
    }
    return bitcast<vec4<f32>>(vec4<u32>(norm_weight[4u * j], norm_weight[4u * j + 1u], norm_weight[4u * j + 2u], norm_weight[4u * j + 3u]));
}

// Input values 4j .. 4j + 4 of the product, as INPUT says.
fn input4(j: u32) -> vec4<f32> {
    if INPUT == NORMED {
        return x[x_base + j] * inverse_rms * norm_weight4(j);
    }
    if INPUT == SILU_GATED || INPUT == GELU_GATED || INPUT == GELU_ERF_GATED {
        let gate = x[x_base + j];
        let up = x[x_base + params.k / 4u + j];
        if INPUT == SILU_GATED {
            return vec4<f32>(silu(gate.x), silu(gate.y), silu(gate.z), silu(gate.w)) * up;
        }
        if INPUT == GELU_ERF_GATED {
            return vec4<f32>(gelu_erf(gate.x), gelu_erf(gate.y), gelu_erf(gate.z), gelu_erf(gate.w)) * up;
        }
        return vec4<f32>(gelu_tanh(gate.x), gelu_tanh(gate.y), gelu_tanh(gate.z), gelu_tanh(gate.w)) * up;
    }
    return x[x_base + j];
}

// Input values 32g .. 32g + 32.
fn x_slice(g: u32) -> Slice32 {
    let i = 8u * g;
    return Slice32(input4(i), input4(i + 1u), input4(i + 2u), input4(i + 3u),
                   input4(i + 4u), input4(i + 5u), input4(i + 6u), input4(i + 7u));
}

fn dot8(a: vec4<f32>, b: vec4<f32>, w: Eight) -> f32 {
    return dot(a, w.lo) + dot(b, w.hi);
}

// Σ_{i<32} xs[i] · W[row, 32g + i], 0 past the last row: one q4 group (one
// vec4<u32> load of codes and one scale), or 32 dense values.
fn row_dot(xs: Slice32, row: u32, g: u32) -> f32 {
    if row >= params.n {
        return 0.0;
    }
    if QUANTIZED {
        // The scale is common to the group: multiply once, after the sum.
        let words = weight[row * (params.k / 32u) + g];
        let sum = dot8(xs.v0, xs.v1, q4_centered(words.x)) + dot8(xs.v2, xs.v3, q4_centered(words.y))
                + dot8(xs.v4, xs.v5, q4_centered(words.z)) + dot8(xs.v6, xs.v7, q4_centered(words.w));
        return sum * scale_at(row * (params.k / 32u) + g);
    }
    let c = 4u * g;
    return dot8(xs.v0, xs.v1, weights8(row, c, params.k)) + dot8(xs.v2, xs.v3, weights8(row, c + 1u, params.k))
         + dot8(xs.v4, xs.v5, weights8(row, c + 2u, params.k)) + dot8(xs.v6, xs.v7, weights8(row, c + 3u, params.k));
}

// The sums of a thread's rows: first .. first + 4 in `lo`, the next 4 (when
// ROWS_PER_THREAD is 8) in `hi`.
struct RowSums {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// The products of the slice xs (x's group g) with group g of the `count` (at
// most 4) rows from `first`.
fn rows_dots(xs: Slice32, first: u32, g: u32, count: u32) -> vec4<f32> {
    var sums = vec4<f32>(row_dot(xs, first, g), 0.0, 0.0, 0.0);
    if count > 1u {
        sums.y = row_dot(xs, first + 1u, g);
    }
    if count > 2u {
        sums.z = row_dot(xs, first + 2u, g);
        sums.w = row_dot(xs, first + 3u, g);
    }
    return sums;
}

// The products of x's group g with group g of rows first .. first + ROWS_PER_THREAD.
fn group_dots(first: u32, g: u32) -> RowSums {
    let xs = x_slice(g);
    var sums = RowSums(rows_dots(xs, first, g, min(ROWS_PER_THREAD, 4u)), vec4<f32>(0.0));
    if ROWS_PER_THREAD > 4u {
        sums.hi = rows_dots(xs, first + 4u, g, ROWS_PER_THREAD - 4u);
    }
    return sums;
}

// Writes the finished sums of rows first .. first + ROWS_PER_THREAD of y's row m.
fn store_rows(m: u32, first: u32, sums: RowSums) {
    for (var r = 0u; r < ROWS_PER_THREAD; r++) {
        if first + r < params.n {
            store(m, first + r, select(sums.hi[r % 4u], sums.lo[r % 4u], r < 4u));
        }
    }
}

// Threads per row set. A team of 32 reads 32 consecutive groups of a row at a
// time: 512 contiguous bytes of q4 codes, each thread one 16-byte load. For a
// long K and few rows (down_proj: 4864 inputs, 896 rows) the wrapper makes the
// whole workgroup one team: the product then runs on N / ROWS_PER_THREAD
// workgroups instead of a few that each walk all of K while most of a large
// GPU idles.
override TEAM: u32 = 32u;

var<workgroup> partial_sums: array<vec4<f32>, WORKGROUP>;

@compute @workgroup_size(256)
fn matvec(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let row = begin_row(workgroup_index(wid, groups));
    begin_input(lid);
    let first = (row.y * (WORKGROUP / TEAM) + lid / TEAM) * ROWS_PER_THREAD;
    let lane = lid % TEAM;
    var sums = vec4<f32>(0.0);
    if first < params.n {
        for (var g = lane; g < params.k / 32u; g += TEAM) {
            sums += group_dots(first, g).lo;
        }
    }
    // Tree reduction of the team's partial sums in workgroup memory (of at
    // most 4 rows a thread: `sums` holds the `lo` half only).
    partial_sums[lid] = sums;
    workgroupBarrier();
    for (var width = TEAM / 2u; width > 0u; width /= 2u) {
        if lane < width {
            partial_sums[lid] += partial_sums[lid + width];
        }
        workgroupBarrier();
    }
    if lane == 0u {
        store_rows(row.x, first, RowSums(partial_sums[lid], vec4<f32>(0.0)));
    }
}

// ---- prefill: Y = X · Wᵀ, tiled ----------------------------------------------------

// A workgroup computes a 128 × 128 block of y and steps through K sixteen
// values at a time. The x block and the decoded W block of one step live in
// workgroup memory, k-major: x_tile[k][m], w_tile[k][n], 2 × 16 × 128 × 4 bytes
// = 16 KiB. Thread (tx, ty) of a 16 × 16 grid owns the rows 4ty.. and 64 + 4ty..
// and the columns 4tx.. and 64 + 4tx..: per k it reads 4 vectors from
// workgroup memory for 64 multiply-adds, which lets the kernel run at
// arithmetic speed instead of workgroup-memory speed. Everything is f32, as the
// CPU reference. The next step's x and W are loaded from memory into registers
// while the current step is multiplied.
//
// A product with too few blocks to fill the GPU (the narrow q/k/v, o_proj and
// down_proj of a small model) is split over K: SPLITS workgroups per block each take a
// run of K and write their raw sums to `partials`; `sum_splits` then adds them
// up with the epilogue.
const BLOCK: u32 = 128u;
const BLOCK_K: u32 = 16u;
const BLOCK_VEC: u32 = 32u;  // vec4s in one k-row of a tile (128 / 4)
override SPLITS: u32 = 1u;

// [SPLITS, rows, n]: the split product's sums, before the epilogue.
@group(0) @binding(8) var<storage, read_write> partials: array<f32>;

var<workgroup> x_tile: array<vec4<f32>, 512>;  // x[m0 + m, k0 + k] at [k * 32 + m / 4][m % 4]
var<workgroup> w_tile: array<vec4<f32>, 512>;  // W[n0 + n, k0 + k] at [k * 32 + n / 4][n % 4]

// What one thread carries from memory to the tiles per step: two vec4s of x
// (4 consecutive k of one row each) and 8 consecutive weights of one row.
struct Staged {
    x0: vec4<f32>,
    x1: vec4<f32>,
    w: Eight,
}

// The x values of thread-slot `i` (512 of them): row i % 128, k-quad i / 128,
// zero past the last row. Consecutive threads take consecutive rows, so that
// their tile stores hit distinct banks.
fn load_x(m0: u32, k0: u32, i: u32) -> vec4<f32> {
    let m = m0 + i % BLOCK;
    if m >= params.rows {
        return vec4<f32>(0.0);
    }
    return x[(m * params.k + k0) / 4u + i / BLOCK];
}

fn stage(m0: u32, n0: u32, k0: u32, lid: u32) -> Staged {
    // W: 128 rows × 2 chunks of 8 weights, zero past the last row.
    let n = n0 + lid % BLOCK;
    var w = Eight(vec4<f32>(0.0), vec4<f32>(0.0));
    if n < params.n {
        w = weights8(n, k0 / 8u + lid / BLOCK, params.k);
    }
    return Staged(load_x(m0, k0, lid), load_x(m0, k0, lid + 256u), w);
}

fn store_x(i: u32, v: vec4<f32>) {
    let m = i % BLOCK;
    let k = 4u * (i / BLOCK);
    for (var c = 0u; c < 4u; c++) {
        x_tile[(k + c) * BLOCK_VEC + m / 4u][m % 4u] = v[c];
    }
}

fn store_tiles(staged: Staged, lid: u32) {
    store_x(lid, staged.x0);
    store_x(lid + 256u, staged.x1);
    let n = lid % BLOCK;
    let k = 8u * (lid / BLOCK);
    for (var c = 0u; c < 4u; c++) {
        w_tile[(k + c) * BLOCK_VEC + n / 4u][n % 4u] = staged.w.lo[c];
        w_tile[(k + 4u + c) * BLOCK_VEC + n / 4u][n % 4u] = staged.w.hi[c];
    }
}

// The finished sum of y[m, n] (a row of the bound part): stored with the
// epilogue, or kept as split `split`'s share.
fn finish(split: u32, m: u32, n: u32, sum: f32) {
    if SPLITS == 1u {
        store(m, n, sum);
    } else {
        partials[(split * params.rows + m) * params.n + n] = sum;
    }
}

// Finishes row m at columns n.. (`left`) and n + 64.. (`right`). The
// accumulators are passed by value, never indexed by a variable: an array
// indexed at run time would be kept in memory instead of registers.
fn finish_row(split: u32, m: u32, n: u32, left: vec4<f32>, right: vec4<f32>) {
    if m >= params.rows {
        return;
    }
    for (var c = 0u; c < 4u; c++) {
        if n + c < params.n {
            finish(split, m, n + c, left[c]);
        }
        if n + 64u + c < params.n {
            finish(split, m, n + 64u + c, right[c]);
        }
    }
}

@compute @workgroup_size(256)
fn matmul_tiled(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let tiles_n = (params.n + BLOCK - 1u) / BLOCK;
    let blocks = tiles_n * ((params.rows + BLOCK - 1u) / BLOCK);
    let index = workgroup_index(wid, groups);
    if index >= blocks * SPLITS {
        return;
    }
    let split = index / blocks;
    let tile = index % blocks;
    let m0 = (tile / tiles_n) * BLOCK;
    let n0 = (tile % tiles_n) * BLOCK;
    // This split's run of K, in whole steps (K is a multiple of 32).
    let steps = (params.k / BLOCK_K + SPLITS - 1u) / SPLITS;
    let k_begin = min(split * steps * BLOCK_K, params.k);
    let k_end = min(k_begin + steps * BLOCK_K, params.k);
    let tx = lid % 16u;
    let ty = lid / 16u;
    // lo[2r + h]: row 4ty + r, columns 4tx + 64h ..; hi: the same 64 rows on.
    var lo: array<vec4<f32>, 8>;
    var hi: array<vec4<f32>, 8>;

    var staged = stage(m0, n0, k_begin, lid);
    for (var k0 = k_begin; k0 < k_end; k0 += BLOCK_K) {
        store_tiles(staged, lid);
        workgroupBarrier();
        if k0 + BLOCK_K < k_end {
            staged = stage(m0, n0, k0 + BLOCK_K, lid);
        }
        for (var k = 0u; k < BLOCK_K; k++) {
            let b0 = w_tile[k * BLOCK_VEC + tx];
            let b1 = w_tile[k * BLOCK_VEC + 16u + tx];
            let a = x_tile[k * BLOCK_VEC + ty];
            lo[0] += a.x * b0; lo[1] += a.x * b1;
            lo[2] += a.y * b0; lo[3] += a.y * b1;
            lo[4] += a.z * b0; lo[5] += a.z * b1;
            lo[6] += a.w * b0; lo[7] += a.w * b1;
            let a2 = x_tile[k * BLOCK_VEC + 16u + ty];
            hi[0] += a2.x * b0; hi[1] += a2.x * b1;
            hi[2] += a2.y * b0; hi[3] += a2.y * b1;
            hi[4] += a2.z * b0; hi[5] += a2.z * b1;
            hi[6] += a2.w * b0; hi[7] += a2.w * b1;
        }
        workgroupBarrier();
    }

    let m = m0 + 4u * ty;
    let n = n0 + 4u * tx;
    finish_row(split, m, n, lo[0], lo[1]);
    finish_row(split, m + 1u, n, lo[2], lo[3]);
    finish_row(split, m + 2u, n, lo[4], lo[5]);
    finish_row(split, m + 3u, n, lo[6], lo[7]);
    finish_row(split, m + 64u, n, hi[0], hi[1]);
    finish_row(split, m + 65u, n, hi[2], hi[3]);
    finish_row(split, m + 66u, n, hi[4], hi[5]);
    finish_row(split, m + 67u, n, hi[6], hi[7]);
}

// y[m, n] = Σ_split partials[split, m, n] (+ the epilogue), one invocation per
// output of the bound part.
@compute @workgroup_size(256)
fn sum_splits(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = workgroup_index(wid, groups) * 256u + lid;
    let outputs = params.rows * params.n;
    if i >= outputs {
        return;
    }
    var sum = 0.0;
    for (var split = 0u; split < SPLITS; split++) {
        sum += partials[split * outputs + i];
    }
    store(i / params.n, i % params.n, sum);
}
