// y[m, n] = Σ_k x[m, k] · W[n, k]  (+ bias[n])  (+ residual[m, n] | + y[m, n])
//
// The wrapper prepends matmul_tile_f32.wgsl or matmul_tile_f16.wgsl (the tile
// element type), activation.wgsl, matmul_decode.wgsl and matmul_weights.wgsl
// (W and its formats, bindings 1 and 2) and, on the subgroup path, appends
// matmul_subgroup.wgsl. Two entry points: `matvec` for one row of x (decode) and
// `matmul_tiled` for several (prefill). Workgroups are numbered linearly over a
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
const PLAIN: u32 = 0u;       // x[0, :] as stored
const NORMED: u32 = 1u;      // rms_norm(x[0, :]) · norm_weight
const SILU_GATED: u32 = 2u;  // silu(gate) · up, x[0, :] being a fused [gate; up] row of 2K values
const GELU_GATED: u32 = 3u;  // gelu_tanh(gate) · up, likewise
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

// ---- decode: y[0, :] = W · x[0, :] ------------------------------------------------

const WORKGROUP: u32 = 256u;
// Consecutive weight rows one thread multiplies with the same slice of x
// (1, 2 or 4; the wrapper builds 2 and, for tall matrices, 4). The slice is loaded once for all of them: without this sharing,
// the x loads (128 bytes per 32-value group, from cache) outweigh the q4 codes
// (16 bytes) eight times over and the cache, not memory, limits the kernel.
override ROWS_PER_THREAD: u32 = 4u;

// 32 consecutive values of x, as named vectors so that they stay in registers
// (an array indexed in a loop may be spilled to memory).
struct Slice32 {
    v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>,
    v4: vec4<f32>, v5: vec4<f32>, v6: vec4<f32>, v7: vec4<f32>,
}

// 1 / rms(x[0, :]) for a NORMED input (set by `begin_input`).
var<private> inverse_rms: f32 = 1.0;
var<workgroup> square_sums: array<f32, WORKGROUP>;

// Called by every invocation before the products: a NORMED input needs the
// norm of x, which the whole workgroup sums (each workgroup redoes it: K values
// read from cache cost far less than the dispatch a separate norm would).
fn begin_input(lid: u32) {
    if INPUT != NORMED {
        return;
    }
    var sum = 0.0;
    for (var j = lid; j < params.k / 4u; j += WORKGROUP) {
        sum += dot(x[j], x[j]);
    }
    square_sums[lid] = sum;
    workgroupBarrier();
    for (var width = WORKGROUP / 2u; width > 0u; width /= 2u) {
        if lid < width {
            square_sums[lid] += square_sums[lid + width];
        }
        workgroupBarrier();
    }
    inverse_rms = inverseSqrt(square_sums[0] / f32(params.k) + params.eps);
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
        return x[j] * inverse_rms * norm_weight4(j);
    }
    if INPUT == SILU_GATED || INPUT == GELU_GATED {
        let gate = x[j];
        let up = x[params.k / 4u + j];
        if INPUT == SILU_GATED {
            return vec4<f32>(silu(gate.x), silu(gate.y), silu(gate.z), silu(gate.w)) * up;
        }
        return vec4<f32>(gelu_tanh(gate.x), gelu_tanh(gate.y), gelu_tanh(gate.z), gelu_tanh(gate.w)) * up;
    }
    return x[j];
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

// The products of x's group g with group g of rows first .. first + ROWS_PER_THREAD.
fn group_dots(first: u32, g: u32) -> vec4<f32> {
    let xs = x_slice(g);
    var sums = vec4<f32>(row_dot(xs, first, g), 0.0, 0.0, 0.0);
    if ROWS_PER_THREAD > 1u {
        sums.y = row_dot(xs, first + 1u, g);
    }
    if ROWS_PER_THREAD > 2u {
        sums.z = row_dot(xs, first + 2u, g);
        sums.w = row_dot(xs, first + 3u, g);
    }
    return sums;
}

// Writes the finished sums of rows first .. first + ROWS_PER_THREAD.
fn store_rows(first: u32, sums: vec4<f32>) {
    for (var r = 0u; r < ROWS_PER_THREAD; r++) {
        if first + r < params.n {
            store(0u, first + r, sums[r]);
        }
    }
}

// Threads per row set. A team reads 32 consecutive groups of a row at a time:
// 512 contiguous bytes of q4 codes, each thread one 16-byte load.
const TEAM: u32 = 32u;

var<workgroup> partial_sums: array<vec4<f32>, WORKGROUP>;

@compute @workgroup_size(256)
fn matvec(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    begin_input(lid);
    let first = (workgroup_index(wid, groups) * (WORKGROUP / TEAM) + lid / TEAM) * ROWS_PER_THREAD;
    let lane = lid % TEAM;
    var sums = vec4<f32>(0.0);
    if first < params.n {
        for (var g = lane; g < params.k / 32u; g += TEAM) {
            sums += group_dots(first, g);
        }
    }
    // Tree reduction of the team's partial sums in workgroup memory.
    partial_sums[lid] = sums;
    workgroupBarrier();
    for (var width = TEAM / 2u; width > 0u; width /= 2u) {
        if lane < width {
            partial_sums[lid] += partial_sums[lid + width];
        }
        workgroupBarrier();
    }
    if lane == 0u {
        store_rows(first, partial_sums[lid]);
    }
}

// ---- prefill: Y = X · Wᵀ, tiled ----------------------------------------------------

// A workgroup computes a TILE × TILE block of y (16 × 16 threads, 4 × 4 outputs
// each), stepping through K one q4 group at a time. The x block and the decoded
// W block of one step live in workgroup memory, k-major so that each thread reads
// its 4 m-values and 4 n-values as two vectors: 2 × 32 × 64 × 4 bytes = 16 KiB
// in f32 (half that in f16). Products and sums are f32 on every path: with f16
// tiles only the storage is halved, so the error stays at the rounding of x to
// f16 (W's f16 rounding is MLC's own) instead of growing with f16 sums.
const TILE: u32 = 64u;
const TILE_K: u32 = 32u;
const VEC_PER_K: u32 = TILE / 4u;

var<workgroup> x_tile: array<TileVec, 512>;  // x[m0 + m, k0 + k] at [k * 16 + m / 4][m % 4]
var<workgroup> w_tile: array<TileVec, 512>;  // W[n0 + n, k0 + k] at [k * 16 + n / 4][n % 4]

@compute @workgroup_size(256)
fn matmul_tiled(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let tiles_n = (params.n + TILE - 1u) / TILE;
    let tile = workgroup_index(wid, groups);
    if tile >= tiles_n * ((params.rows + TILE - 1u) / TILE) {
        return;
    }
    let m0 = (tile / tiles_n) * TILE;
    let n0 = (tile % tiles_n) * TILE;
    // This thread's outputs: m = m0 + 4 ty + i, n = n0 + 4 tx + j.
    let tx = lid % VEC_PER_K;
    let ty = lid / VEC_PER_K;
    var acc: array<vec4<f32>, 4>;

    for (var k0 = 0u; k0 < params.k; k0 += TILE_K) {
        // x block: 64 rows × 8 vec4, two per thread (zeros past the last row).
        for (var r = 0u; r < 2u; r++) {
            let i = lid + WORKGROUP * r;
            let m = i / 8u;
            let q = i % 8u;
            var v = vec4<f32>(0.0);
            if m0 + m < params.rows {
                v = x[((m0 + m) * params.k + k0) / 4u + q];
            }
            for (var c = 0u; c < 4u; c++) {
                x_tile[(4u * q + c) * VEC_PER_K + m / 4u][m % 4u] = TileScalar(v[c]);
            }
        }
        // W block: 64 rows × 4 chunks of 8 weights, one chunk per thread.
        let n = lid / 4u;
        let chunk = lid % 4u;
        var w = Eight(vec4<f32>(0.0), vec4<f32>(0.0));
        if n0 + n < params.n {
            w = weights8(n0 + n, k0 / 8u + chunk, params.k);
        }
        for (var c = 0u; c < 4u; c++) {
            w_tile[(8u * chunk + c) * VEC_PER_K + n / 4u][n % 4u] = TileScalar(w.lo[c]);
            w_tile[(8u * chunk + 4u + c) * VEC_PER_K + n / 4u][n % 4u] = TileScalar(w.hi[c]);
        }
        workgroupBarrier();
        for (var k = 0u; k < TILE_K; k++) {
            let a = vec4<f32>(x_tile[k * VEC_PER_K + ty]);
            let b = vec4<f32>(w_tile[k * VEC_PER_K + tx]);
            acc[0] += a.x * b;
            acc[1] += a.y * b;
            acc[2] += a.z * b;
            acc[3] += a.w * b;
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let m = m0 + 4u * ty + i;
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + 4u * tx + j;
            if m < params.rows && n < params.n {
                store(m, n, acc[i][j]);
            }
        }
    }
}
