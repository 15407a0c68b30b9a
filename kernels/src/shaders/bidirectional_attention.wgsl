// Bidirectional (non-causal) attention of an encoder, straight from the fused
// projection output, as cpu::bidirectional_attention computes it:
//   out[t, h] = Σ_{s < tokens} softmax_s(q[t,h]·k[s,h]·scale) · v[s,h]
// with qkv rows [q | k | v] of `heads · head_dim` each (BERT's fused qkv,
// docs/families.md "bert") and out rows [tokens, heads · head_dim].
//
// One workgroup (64 invocations) per (token, head), numbered linearly over a
// 2-D grid. The query sits in workgroup memory; the keys are walked in tiles
// of 64 with the online softmax (per tile: m' = max(m, max s), α = exp(m − m'),
// l' = α·l + Σ exp(s − m'), acc' = α·acc + Σ exp(s − m')·v; out = acc / l).
// Invocation j scores key k0 + j; every invocation then accumulates the
// output dimensions j, j + 64, j + 128, j + 192 over the tile's 64 weights,
// so head_dim ≤ 256. Every position is a real token (an encoder runs one
// input at a time), so only keys past `tokens` in the last tile are masked.

struct Params {
    tokens: u32,    // rows in use (updated per step by the wrapper)
    heads: u32,
    head_dim: u32,
    scale: f32,     // the softmax scale, head_dim^-0.5 for BERT
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;

const TILE: u32 = 64u;
const MAX_HEAD_DIM: u32 = 256u;
const DIMS_PER_INVOCATION: u32 = 4u; // MAX_HEAD_DIM / TILE

var<workgroup> query: array<f32, MAX_HEAD_DIM>;
var<workgroup> scores: array<f32, TILE>;
var<workgroup> weights: array<f32, TILE>;

@compute @workgroup_size(64)
fn attend(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let item = wid.x + wid.y * groups.x;
    // The same for every invocation of the workgroup: the barriers below stay uniform.
    if item >= params.tokens * params.heads {
        return;
    }
    let t = item / params.heads;
    let h = item % params.heads;
    let d = params.head_dim;
    let width = params.heads * d;
    let row = 3u * width;
    for (var i = lid; i < d; i += TILE) {
        query[i] = qkv[t * row + h * d + i];
    }
    workgroupBarrier();

    var m = -1e30;
    var l = 0.0;
    var acc = array<f32, DIMS_PER_INVOCATION>(0.0, 0.0, 0.0, 0.0);
    for (var k0 = 0u; k0 < params.tokens; k0 += TILE) {
        // The score of key k0 + lid.
        let s = k0 + lid;
        var score = -1e30;
        if s < params.tokens {
            let key = s * row + width + h * d;
            var dot = 0.0;
            for (var i = 0u; i < d; i++) {
                dot += query[i] * qkv[key + i];
            }
            score = dot * params.scale;
        }
        scores[lid] = score;
        workgroupBarrier();

        // Every invocation finds the tile's maximum itself (64 reads of
        // workgroup memory cost less than a reduction's barriers).
        var tile_max = -1e30;
        for (var j = 0u; j < TILE; j++) {
            tile_max = max(tile_max, scores[j]);
        }
        let m_new = max(m, tile_max);
        // Masked keys weigh 0 explicitly; a tile always has a real key, so m_new is a real score.
        weights[lid] = select(0.0, exp(score - m_new), s < params.tokens);
        workgroupBarrier();

        let alpha = exp(m - m_new);
        var tile_sum = 0.0;
        for (var j = 0u; j < TILE; j++) {
            tile_sum += weights[j];
        }
        l = alpha * l + tile_sum;
        let keys = min(TILE, params.tokens - k0);
        for (var c = 0u; c < DIMS_PER_INVOCATION; c++) {
            let i = lid + c * TILE;
            if i < d {
                var sum = 0.0;
                for (var j = 0u; j < keys; j++) {
                    sum += weights[j] * qkv[(k0 + j) * row + 2u * width + h * d + i];
                }
                acc[c] = alpha * acc[c] + sum;
            }
        }
        m = m_new;
        // The next tile overwrites scores and weights.
        workgroupBarrier();
    }

    for (var c = 0u; c < DIMS_PER_INVOCATION; c++) {
        let i = lid + c * TILE;
        if i < d {
            out[t * width + h * d + i] = acc[c] / l;
        }
    }
}
