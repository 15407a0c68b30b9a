// Prefill Y = X · Wᵀ on cooperative matrices (tensor cores), appended to
// matmul.wgsl (whose `finish`, SPLITS, BLOCK and bindings it shares) on devices
// that offer 16 × 16 × 16 products with f16 inputs and an f32 accumulator; the
// wrapper heads the source with `enable f16; enable wgpu_cooperative_matrix;`.
//
// A workgroup computes the same 128 × 128 block of y as `matmul_tiled` and
// steps through K thirty-two values (one q4 group) at a time:
//   A = x[m0 .. m0 + 128, k0 .. k0 + 32] rounded to f16, row-major in a_half;
//   B = W[n0 .. n0 + 128, k0 .. k0 + 32]ᵀ dequantized in f32, then rounded to
//       f16, stored n-major in b_half (B column-major);
// (both tiles with rows of TILE_STRIDE values)
//   C += A · B in f32.
// Rounding x and W to f16 is what MLC's own q4f16_1 kernels compute with; the
// sums stay f32. Values of x beyond f16's range (±65504) would become infinite.
//
// The 256 invocations form 8 subgroups of 32 (the wrapper uses this kernel only
// where every subgroup has 32): subgroup s owns rows 64·(s / 4) .. + 64 and
// columns 32·(s % 4) .. + 32 of the block, 4 × 2 accumulators of 16 × 16. The
// tiles are double-buffered (TILE_VALUES apart): each step loads the next
// step's x and W from memory into registers, multiplies the current tiles, and
// stores the registers into the other pair, so one barrier per step separates
// them (a single pair needed two: one before the store, one before the
// multiplies). With the staging area below that is 48 KiB of workgroup memory,
// which the wrapper requires of the adapter. At the end each accumulator
// passes through a 16 × 16 staging area in workgroup memory, from which the
// subgroup's invocations write y (or the split's partial sums) through
// `finish`, with the epilogue.

const COOP_K: u32 = 32u;         // K per step: one q4 group
const COOP_QUADS: u32 = 8u;      // vec4s of x in one row of a step
// Row stride of the tiles, in f16: 32 values plus 8 of padding, so that the
// 16-byte rows a cooperative load reads from 8 consecutive tile rows fall in
// distinct banks (a stride of 64 bytes would put every other row in the same).
const TILE_STRIDE: u32 = 40u;

// Values in one x or W tile (128 rows of TILE_STRIDE): where the second tile
// of each pair starts.
const TILE_VALUES: u32 = 5120u;

var<workgroup> a_half: array<f16, 10240>;   // two x tiles: [m][k], 128 rows of TILE_STRIDE
var<workgroup> b_half: array<f16, 10240>;   // two W tiles: [n][k], 128 rows of TILE_STRIDE
var<workgroup> c_stage: array<f32, 2048>;  // one 16 × 16 accumulator per subgroup

// What one invocation carries from memory to the tiles per step: four vec4s of
// x (rows lid / 8 + 32j, quad lid % 8) and 8 weights of each of rows lid / 4
// and lid / 4 + 64 (chunk lid % 4 of the step's 32).
struct CoopStaged {
    x0: vec4<f32>,
    x1: vec4<f32>,
    x2: vec4<f32>,
    x3: vec4<f32>,
    w0: Eight,
    w1: Eight,
}

// x[m0 + r, k0 + 4q .. + 4], zero past the last row.
fn coop_x(m0: u32, k0: u32, r: u32, q: u32) -> vec4<f32> {
    let m = m0 + r;
    if m >= params.rows {
        return vec4<f32>(0.0);
    }
    return x[(m * params.k + k0) / 4u + q];
}

// W[n, 8 · chunk ..], zero past the last row.
fn coop_w(n: u32, chunk: u32) -> Eight {
    if n >= params.n {
        return Eight(vec4<f32>(0.0), vec4<f32>(0.0));
    }
    return weights8(n, chunk, params.k);
}

fn coop_stage(m0: u32, n0: u32, k0: u32, lid: u32) -> CoopStaged {
    let r = lid / COOP_QUADS;
    let q = lid % COOP_QUADS;
    let n = n0 + lid / 4u;
    let chunk = k0 / 8u + lid % 4u;
    return CoopStaged(coop_x(m0, k0, r, q), coop_x(m0, k0, r + 32u, q),
                      coop_x(m0, k0, r + 64u, q), coop_x(m0, k0, r + 96u, q),
                      coop_w(n, chunk), coop_w(n + 64u, chunk));
}

// x[r, 4q .. 4q + 4] of a step into the x tile that starts at `buffer`.
fn store_a_at(buffer: u32, r: u32, q: u32, v: vec4<f32>) {
    let at = buffer + r * TILE_STRIDE + 4u * q;
    a_half[at] = f16(v.x);
    a_half[at + 1u] = f16(v.y);
    a_half[at + 2u] = f16(v.z);
    a_half[at + 3u] = f16(v.w);
}

fn store_b(at: u32, w: Eight) {
    b_half[at] = f16(w.lo.x);
    b_half[at + 1u] = f16(w.lo.y);
    b_half[at + 2u] = f16(w.lo.z);
    b_half[at + 3u] = f16(w.lo.w);
    b_half[at + 4u] = f16(w.hi.x);
    b_half[at + 5u] = f16(w.hi.y);
    b_half[at + 6u] = f16(w.hi.z);
    b_half[at + 7u] = f16(w.hi.w);
}

fn store_coop_tiles(buffer: u32, staged: CoopStaged, lid: u32) {
    let r = lid / COOP_QUADS;
    let q = lid % COOP_QUADS;
    store_a_at(buffer, r, q, staged.x0);
    store_a_at(buffer, r + 32u, q, staged.x1);
    store_a_at(buffer, r + 64u, q, staged.x2);
    store_a_at(buffer, r + 96u, q, staged.x3);
    let at = buffer + (lid / 4u) * TILE_STRIDE + 8u * (lid % 4u);
    store_b(at, staged.w0);
    store_b(at + 64u * TILE_STRIDE, staged.w1);
}

// Finishes the 16 × 16 outputs from (m, n) of subgroup `s` held in `acc`.
// Every invocation of the workgroup calls it the same number of times (the
// barriers are the workgroup's).
fn finish_fragment(split: u32, s: u32, lane: u32, m: u32, n: u32, acc: coop_mat16x16<f32, C>) {
    let base = s * 256u;
    coopStoreT(acc, &c_stage[base], 16u);
    workgroupBarrier();
    for (var e = lane; e < 256u; e += 32u) {
        let row = m + e / 16u;
        let column = n + e % 16u;
        if row < params.rows && column < params.n {
            finish(split, row, column, c_stage[base + e]);
        }
    }
    workgroupBarrier();
}

// What workgroup `index` computes: the block of y at (m0, n0), `block_rows`
// × BLOCK, over this split's run of K, k_begin .. k_end in whole steps.
struct CoopBlock {
    m0: u32,
    n0: u32,
    split: u32,
    k_begin: u32,
    k_end: u32,
}

fn coop_block(index: u32, block_rows: u32) -> CoopBlock {
    let tiles_n = (params.n + BLOCK - 1u) / BLOCK;
    let blocks = tiles_n * ((params.rows + block_rows - 1u) / block_rows);
    // A workgroup past the last block (the grid is rounded up) runs no step
    // and writes nothing (m0 = rows): cooperative operations need uniform
    // control flow, which an early return would end.
    let live = index < blocks * SPLITS;
    let split = index / blocks;
    let tile = index % blocks;
    let steps = (params.k / COOP_K + SPLITS - 1u) / SPLITS;
    let k_begin = select(params.k, min(split * steps * COOP_K, params.k), live);
    return CoopBlock(select(params.rows, (tile / tiles_n) * block_rows, live),
                     (tile % tiles_n) * BLOCK, split, k_begin,
                     min(k_begin + steps * COOP_K, params.k));
}

@compute @workgroup_size(256)
fn matmul_coop(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32,
               @builtin(subgroup_id) s: u32,
               @builtin(subgroup_invocation_id) lane: u32) {
    let block = coop_block(workgroup_index(wid, groups), BLOCK);
    // This subgroup's rows and columns within the block, as tile offsets.
    let a_row = 64u * (s / 4u) * TILE_STRIDE;
    let b_col = 32u * (s % 4u) * TILE_STRIDE;

    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    var c20 = coop_mat16x16<f32, C>();
    var c21 = coop_mat16x16<f32, C>();
    var c30 = coop_mat16x16<f32, C>();
    var c31 = coop_mat16x16<f32, C>();

    var staged = coop_stage(block.m0, block.n0, block.k_begin, lid);
    store_coop_tiles(0u, staged, lid);
    workgroupBarrier();
    var buffer = 0u;
    for (var k0 = block.k_begin; k0 < block.k_end; k0 += COOP_K) {
        let more = k0 + COOP_K < block.k_end;
        if more {
            staged = coop_stage(block.m0, block.n0, k0 + COOP_K, lid);
        }
        for (var kk = 0u; kk < COOP_K; kk += 16u) {
            let b0 = coopLoad<coop_mat16x16<f16, B>>(&b_half[buffer + b_col + kk], TILE_STRIDE);
            let b1 = coopLoad<coop_mat16x16<f16, B>>(&b_half[buffer + b_col + 16u * TILE_STRIDE + kk], TILE_STRIDE);
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&a_half[buffer + a_row + kk], TILE_STRIDE);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&a_half[buffer + a_row + 16u * TILE_STRIDE + kk], TILE_STRIDE);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
            let a2 = coopLoadT<coop_mat16x16<f16, A>>(&a_half[buffer + a_row + 32u * TILE_STRIDE + kk], TILE_STRIDE);
            c20 = coopMultiplyAdd(a2, b0, c20);
            c21 = coopMultiplyAdd(a2, b1, c21);
            let a3 = coopLoadT<coop_mat16x16<f16, A>>(&a_half[buffer + a_row + 48u * TILE_STRIDE + kk], TILE_STRIDE);
            c30 = coopMultiplyAdd(a3, b0, c30);
            c31 = coopMultiplyAdd(a3, b1, c31);
        }
        buffer = TILE_VALUES - buffer;
        if more {
            store_coop_tiles(buffer, staged, lid);
        }
        workgroupBarrier();
    }

    let m = block.m0 + 64u * (s / 4u);
    let n = block.n0 + 32u * (s % 4u);
    finish_fragment(block.split, s, lane, m, n, c00);
    finish_fragment(block.split, s, lane, m, n + 16u, c01);
    finish_fragment(block.split, s, lane, m + 16u, n, c10);
    finish_fragment(block.split, s, lane, m + 16u, n + 16u, c11);
    finish_fragment(block.split, s, lane, m + 32u, n, c20);
    finish_fragment(block.split, s, lane, m + 32u, n + 16u, c21);
    finish_fragment(block.split, s, lane, m + 48u, n, c30);
    finish_fragment(block.split, s, lane, m + 48u, n + 16u, c31);
}

// Batched decode passes (THIN_ROWS rows at most): a workgroup computes a
// THIN_ROWS × 128 block of y, so that no tensor-core work or tile store is
// spent on the 96 rows a 128-row block would leave empty. Subgroup s owns the
// block's columns 16·s .. + 16, as 2 accumulators of 16 × 16 (rows 0 .. 16
// and 16 .. 32); the weight tile, its staging and the steps are
// `matmul_coop`'s, the x tile holds THIN_ROWS rows (one vec4 per invocation
// and step: row lid / 8, quad lid % 8).
const THIN_ROWS: u32 = 32u;

@compute @workgroup_size(256)
fn matmul_coop_thin(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) groups: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32,
                    @builtin(subgroup_id) s: u32,
                    @builtin(subgroup_invocation_id) lane: u32) {
    let block = coop_block(workgroup_index(wid, groups), THIN_ROWS);
    let b_col = 16u * s * TILE_STRIDE;
    let r = lid / COOP_QUADS;
    let q = lid % COOP_QUADS;
    let n = block.n0 + lid / 4u;
    let w_at = (lid / 4u) * TILE_STRIDE + 8u * (lid % 4u);

    var c0 = coop_mat16x16<f32, C>();
    var c1 = coop_mat16x16<f32, C>();

    var x_staged = coop_x(block.m0, block.k_begin, r, q);
    var w_staged0 = coop_w(n, block.k_begin / 8u + lid % 4u);
    var w_staged1 = coop_w(n + 64u, block.k_begin / 8u + lid % 4u);
    for (var k0 = block.k_begin; k0 < block.k_end; k0 += COOP_K) {
        store_a_at(0u, r, q, x_staged);
        store_b(w_at, w_staged0);
        store_b(w_at + 64u * TILE_STRIDE, w_staged1);
        workgroupBarrier();
        if k0 + COOP_K < block.k_end {
            let chunk = (k0 + COOP_K) / 8u + lid % 4u;
            x_staged = coop_x(block.m0, k0 + COOP_K, r, q);
            w_staged0 = coop_w(n, chunk);
            w_staged1 = coop_w(n + 64u, chunk);
        }
        for (var kk = 0u; kk < COOP_K; kk += 16u) {
            let b = coopLoad<coop_mat16x16<f16, B>>(&b_half[b_col + kk], TILE_STRIDE);
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&a_half[kk], TILE_STRIDE);
            c0 = coopMultiplyAdd(a0, b, c0);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&a_half[16u * TILE_STRIDE + kk], TILE_STRIDE);
            c1 = coopMultiplyAdd(a1, b, c1);
        }
        workgroupBarrier();
    }

    finish_fragment(block.split, s, lane, block.m0, block.n0 + 16u * s, c0);
    finish_fragment(block.split, s, lane, block.m0 + 16u, block.n0 + 16u * s, c1);
}
