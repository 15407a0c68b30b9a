// RMSNorm:   y[r, :] = x[r, :] · inverseSqrt(mean(x[r, :]²) + eps) · w          (in f32, as MLC does)
// LayerNorm: y[r, :] = (x[r, :] − μ) · inverseSqrt(mean((x[r, :] − μ)²) + eps) · w + b, μ = mean(x[r, :])
//
// One workgroup per row of `width` values. Rows are token-major: row r is head
// r % heads of token r / heads, which lets the same kernel normalise whole hidden
// states (heads = 1) or each head of q or k in place inside the fused qkv buffer
// (Qwen3's q/k norm: width = head_dim, token_stride = the qkv row width).
// LayerNorm (StableLM) is the same pass with the mean reduced first and
// subtracted (two reductions, as the CPU reference computes it) and a bias added.
// The subgroup path appends rms_norm_subgroup.wgsl.

struct Params {
    rows: u32,          // tokens in use (updated per step by the wrapper)
    width: u32,         // values per row
    heads: u32,         // rows per token
    in_offset: u32,     // x: element of (token 0, head 0)
    in_stride: u32,     // x: elements from one token to the next
    out_offset: u32,    // y: likewise
    out_stride: u32,
    eps: f32,
    in_place: u32,      // 1: read the rows from y (x is then unused)
    layer_norm: u32,    // 1: LayerNorm with `bias`; 0: RMSNorm (bias is unused)
}

// Whether `weight` and `bias` hold f16 bits (two per word, low half first), else f32.
override HALF: bool = true;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<u32>;
// Also the input when normalising in place: WebGPU forbids binding one buffer
// both read-only and writable in a dispatch, so in place means "x is y".
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<u32>;

const WORKGROUP: u32 = 256u;

var<workgroup> partial_sums: array<f32, WORKGROUP>;

fn weight_at(i: u32) -> f32 {
    if HALF {
        return unpack2x16float(weight[i / 2u])[i % 2u];
    }
    return bitcast<f32>(weight[i]);
}

fn bias_at(i: u32) -> f32 {
    if HALF {
        return unpack2x16float(bias[i / 2u])[i % 2u];
    }
    return bitcast<f32>(bias[i]);
}

fn input_at(i: u32) -> f32 {
    if params.in_place != 0u {
        return y[i];
    }
    return x[i];
}

fn row_index(id: vec3<u32>, count: vec3<u32>) -> u32 {
    return id.x + id.y * count.x;
}

fn row_start(r: u32, offset: u32, stride: u32) -> u32 {
    return offset + (r / params.heads) * stride + (r % params.heads) * params.width;
}

// This invocation's share of Σ x[r, :] (LayerNorm's mean).
fn partial_sum(r: u32, lid: u32) -> f32 {
    let start = row_start(r, params.in_offset, params.in_stride);
    var sum = 0.0;
    for (var i = lid; i < params.width; i += WORKGROUP) {
        sum += input_at(start + i);
    }
    return sum;
}

// This invocation's share of Σ (x[r, :] − centre)² (centre 0 for RMSNorm).
fn partial_sum_of_squares(r: u32, lid: u32, centre: f32) -> f32 {
    let start = row_start(r, params.in_offset, params.in_stride);
    var sum = 0.0;
    for (var i = lid; i < params.width; i += WORKGROUP) {
        let v = input_at(start + i) - centre;
        sum += v * v;
    }
    return sum;
}

fn write_row(r: u32, lid: u32, centre: f32, sum_of_squares: f32) {
    let inv_rms = inverseSqrt(sum_of_squares / f32(params.width) + params.eps);
    let src = row_start(r, params.in_offset, params.in_stride);
    let dst = row_start(r, params.out_offset, params.out_stride);
    for (var i = lid; i < params.width; i += WORKGROUP) {
        var v = (input_at(src + i) - centre) * inv_rms * weight_at(i);
        if params.layer_norm != 0u {
            v += bias_at(i);
        }
        y[dst + i] = v;
    }
}

// The workgroup's total of `value` (every invocation gets it).
fn workgroup_sum(value: f32, lid: u32) -> f32 {
    partial_sums[lid] = value;
    workgroupBarrier();
    for (var width = WORKGROUP / 2u; width > 0u; width /= 2u) {
        if lid < width {
            partial_sums[lid] += partial_sums[lid + width];
        }
        workgroupBarrier();
    }
    let total = partial_sums[0];
    // The next reduction may overwrite partial_sums[0] only once all have read it.
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256)
fn rms_norm(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let r = row_index(wid, groups);
    if r >= params.rows * params.heads {
        return;
    }
    var centre = 0.0;
    if params.layer_norm != 0u {
        centre = workgroup_sum(partial_sum(r, lid), lid) / f32(params.width);
    }
    write_row(r, lid, centre, workgroup_sum(partial_sum_of_squares(r, lid, centre), lid));
}
