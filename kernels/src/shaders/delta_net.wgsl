// Qwen3.5's ops (docs/kernels.md, "Gated DeltaNet"; CPU references in cpu/delta_net.rs and the
// engine's cpu.rs), one entry point each, over f32 activations:
//   split_query_gate: rows of [q | gate per head, k, v] → `out` [q, k, v] and `out2` the gates
//   sigmoid_gate:     out = in0 · sigmoid(in1)
//   conv_silu:        the causal depthwise convolution with its window (`out2`) and SiLU
//   delta_rule:       the gated delta rule, the state `S` of each value head in `out2`
//   gated_norm:       out = rms_norm(in0) · w0 · silu(in1), per group of `p2` values
// Prefill and decode run the same recurrence, token by token inside one dispatch.

struct Params {
    rows: u32,  // rows in use (updated per step by the wrapper)
    p1: u32,
    p2: u32,
    p3: u32,
    p4: u32,
    p5: u32,
    p6: u32,
    p7: u32,
}

// Whether w0 and w1 hold f16 bits (two per word, low half first), else f32.
override HALF: bool = true;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> out2: array<f32>;
@group(0) @binding(3) var<storage, read> in0: array<f32>;
@group(0) @binding(4) var<storage, read> in1: array<f32>;
@group(0) @binding(5) var<storage, read> in2: array<f32>;
@group(0) @binding(6) var<storage, read> w0: array<u32>;
@group(0) @binding(7) var<storage, read> w1: array<u32>;

fn w0_at(i: u32) -> f32 {
    if HALF {
        return unpack2x16float(w0[i / 2u])[i % 2u];
    }
    return bitcast<f32>(w0[i]);
}

fn w1_at(i: u32) -> f32 {
    if HALF {
        return unpack2x16float(w1[i / 2u])[i % 2u];
    }
    return bitcast<f32>(w1[i]);
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

fn flat_index(id: vec3<u32>, count: vec3<u32>, lid: u32) -> u32 {
    return (id.x + id.y * count.x) * 64u + lid;
}

// p1 heads, p2 head_dim, p3 input columns (2·heads·head_dim + the k and v width).
@compute @workgroup_size(64)
fn split_query_gate(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) groups: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, groups, lid);
    let cols = params.p3;
    if i >= params.rows * cols {
        return;
    }
    let row = i / cols;
    let col = i % cols;
    let d = params.p2;
    let width = params.p1 * d;
    let plain = cols - width;
    if col < 2u * width {
        let head = col / (2u * d);
        let j = col % (2u * d);
        if j < d {
            out[row * plain + head * d + j] = in0[i];
        } else {
            out2[row * width + head * d + j - d] = in0[i];
        }
    } else {
        out[row * plain + col - width] = in0[i];
    }
}

// p1 values per row.
@compute @workgroup_size(64)
fn sigmoid_gate(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, groups, lid);
    if i < params.rows * params.p1 {
        out[i] = in0[i] * sigmoid(in1[i]);
    }
}

// One invocation per channel (p1 channels, p2 taps): the inputs before the first token come from
// the window `out2` ([p2 − 1, channels], oldest first), which is then replaced by the call's last
// p2 − 1 inputs. Rewriting it in place, lowest row first, only ever reads rows not yet rewritten.
@compute @workgroup_size(64)
fn conv_silu(@builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) groups: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let c = flat_index(wid, groups, lid);
    let channels = params.p1;
    let kernel = params.p2;
    if c >= channels {
        return;
    }
    let history = kernel - 1u;
    for (var t = 0u; t < params.rows; t++) {
        var sum = 0.0;
        for (var j = 0u; j < kernel; j++) {
            let at = t + j;
            var x: f32;
            if at < history {
                x = out2[at * channels + c];
            } else {
                x = in0[(at - history) * channels + c];
            }
            sum += w0_at(c * kernel + j) * x;
        }
        out[t * channels + c] = sum / (1.0 + exp(-sum));
    }
    for (var r = 0u; r < history; r++) {
        let at = params.rows + r;
        if at < history {
            out2[r * channels + c] = out2[at * channels + c];
        } else {
            out2[r * channels + c] = in0[(at - history) * channels + c];
        }
    }
}

// The gated delta rule. One workgroup per value head h and tile of RULE_COLUMNS columns of its
// state S (`out2`, [value_heads, key_dim, value_dim]); invocation (slice, j) owns column
// c = tile · RULE_COLUMNS + j and rows slice, slice + RULE_SLICES, … of it, which it keeps in
// registers over the call's tokens (read once, written back once). in0: the convolution's output
// rows [q (p1 key heads · p3) | k | v (p2 value heads · p4)], in1 / in2: in_proj_a / in_proj_b rows
// [p2], w0: A_log, w1: dt_bias. Per token: g = exp(−exp(A_log) · softplus(a + dt_bias)),
// β = sigmoid(b), q and k L2-normalised; S ← g·S; d = Sᵀk; S ← S + β·k·(v − d)ᵀ;
// out = Sᵀq · key_dim^-0.5. Each sum over rows (Sᵀk with Σk² and Σq², then Sᵀq) is one partial per
// slice, added across the slices in workgroup memory: two barriers per token.
const RULE_COLUMNS: u32 = 32u;
const RULE_SLICES: u32 = 8u;
// Rows of S per invocation: key_dim ≤ RULE_SLICES · RULE_ROWS (the wrapper checks).
const RULE_ROWS: u32 = 16u;

// Per invocation (Σ S·k, Σ k², Σ q²) over its rows, then Σ S·q.
var<workgroup> rule_partials: array<vec3<f32>, 256>;
var<workgroup> rule_outputs: array<f32, 256>;

@compute @workgroup_size(256)
fn delta_rule(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let key_heads = params.p1;
    let value_heads = params.p2;
    let kd = params.p3;
    let vd = params.p4;
    let tiles = (vd + RULE_COLUMNS - 1u) / RULE_COLUMNS;
    let workgroup = wid.x + wid.y * groups.x;
    let h = workgroup / tiles;
    if h >= value_heads {
        return;
    }
    let j = lid % RULE_COLUMNS;
    let slice = lid / RULE_COLUMNS;
    let c = (workgroup % tiles) * RULE_COLUMNS + j;
    let in_use = c < vd;
    let channels = 2u * key_heads * kd + value_heads * vd;
    let kh = h / (value_heads / key_heads);
    let scale = 1.0 / sqrt(f32(kd));
    let base = h * kd * vd;
    var s: array<f32, RULE_ROWS>;
    for (var i = 0u; i < RULE_ROWS; i++) {
        let r = slice + RULE_SLICES * i;
        s[i] = 0.0;
        if in_use && r < kd {
            s[i] = out2[base + r * vd + c];
        }
    }
    for (var t = 0u; t < params.rows; t++) {
        let row = t * channels;
        let q0 = row + kh * kd;
        let k0 = row + key_heads * kd + kh * kd;
        let x = in1[t * value_heads + h] + w1_at(h);
        var softplus = x;
        if x <= 20.0 {
            softplus = log(1.0 + exp(x));
        }
        let g = exp(-exp(w0_at(h)) * softplus);
        let beta = sigmoid(in2[t * value_heads + h]);
        var partial = vec3<f32>(0.0);
        for (var i = 0u; i < RULE_ROWS; i++) {
            let r = slice + RULE_SLICES * i;
            if r < kd {
                let k = in0[k0 + r];
                let q = in0[q0 + r];
                s[i] *= g;
                partial += vec3<f32>(s[i] * k, k * k, q * q);
            }
        }
        rule_partials[lid] = partial;
        workgroupBarrier();
        var sums = vec3<f32>(0.0);
        for (var p = 0u; p < RULE_SLICES; p++) {
            sums += rule_partials[p * RULE_COLUMNS + j];
        }
        let k_scale = inverseSqrt(sums.y + 1e-6);
        let q_scale = inverseSqrt(sums.z + 1e-6);
        let v = in0[row + 2u * key_heads * kd + h * vd + min(c, vd - 1u)];
        let delta = beta * (v - sums.x * k_scale);
        var o = 0.0;
        for (var i = 0u; i < RULE_ROWS; i++) {
            let r = slice + RULE_SLICES * i;
            if r < kd {
                s[i] += in0[k0 + r] * k_scale * delta;
                o += s[i] * in0[q0 + r];
            }
        }
        rule_outputs[lid] = o;
        workgroupBarrier();
        if slice == 0u && in_use {
            var total = 0.0;
            for (var p = 0u; p < RULE_SLICES; p++) {
                total += rule_outputs[p * RULE_COLUMNS + j];
            }
            out[(t * value_heads + h) * vd + c] = total * q_scale * scale;
        }
    }
    for (var i = 0u; i < RULE_ROWS; i++) {
        let r = slice + RULE_SLICES * i;
        if in_use && r < kd {
            out2[base + r * vd + c] = s[i];
        }
    }
}

// One workgroup per group of p2 values (p1 values per row, eps = bitcast(p3)): its sum of squares
// over the 64 invocations, then each writes its values.
var<workgroup> norm_partials: array<f32, 64>;

@compute @workgroup_size(64)
fn gated_norm(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * groups.x;
    let size = params.p2;
    if g >= params.rows * (params.p1 / size) {
        return;
    }
    let start = g * size;
    var sum = 0.0;
    for (var j = lid; j < size; j += 64u) {
        sum += in0[start + j] * in0[start + j];
    }
    norm_partials[lid] = sum;
    workgroupBarrier();
    for (var stride = 32u; stride > 0u; stride /= 2u) {
        if lid < stride {
            norm_partials[lid] += norm_partials[lid + stride];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / sqrt(norm_partials[0] / f32(size) + bitcast<f32>(params.p3));
    for (var j = lid; j < size; j += 64u) {
        let z = in1[start + j];
        out[start + j] = in0[start + j] * inv * w0_at(j) * (z / (1.0 + exp(-z)));
    }
}
