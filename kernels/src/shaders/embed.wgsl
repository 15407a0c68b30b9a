// out[t, :] = W[tokens[t], :] · scale — one (dequantized) table row per token.
//
// The wrapper prepends matmul_decode.wgsl and matmul_weights.wgsl (the table W
// in any weight format, bindings 1 and 2). A table larger than one storage
// binding is bound in parts of rows; each part's dispatch writes the tokens that
// fall in it. `scale` is 1, or √hidden for Gemma.

struct Params {
    rows: u32,       // tokens in use (updated per step by the wrapper)
    hidden: u32,     // table columns, a multiple of 32
    first_row: u32,  // table row of the bound part's row 0
    part_rows: u32,  // table rows in the bound part
    vocab: u32,      // table rows in all
    scale: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(3) var<storage, read> tokens: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;

// One invocation writes eight consecutive values (one q4 word).
@compute @workgroup_size(256)
fn embed(@builtin(workgroup_id) wid: vec3<u32>,
         @builtin(num_workgroups) groups: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let chunks = params.hidden / 8u;
    let id = (wid.x + wid.y * groups.x) * 256u + lid;
    let t = id / chunks;
    let chunk = id % chunks;
    if t >= params.rows {
        return;
    }
    let token = tokens[t];
    let at = (t * params.hidden) / 4u + 2u * chunk;
    if token >= params.vocab {
        // An id outside the table gives a zero row (written by the first part)
        // rather than whatever an out-of-bounds read would return.
        if params.first_row == 0u {
            out[at] = vec4<f32>(0.0);
            out[at + 1u] = vec4<f32>(0.0);
        }
        return;
    }
    if token < params.first_row || token - params.first_row >= params.part_rows {
        return;
    }
    let w = weights8(token - params.first_row, chunk, params.hidden);
    out[at] = w.lo * params.scale;
    out[at + 1u] = w.hi * params.scale;
}
