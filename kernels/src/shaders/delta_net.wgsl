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

// One workgroup per value head h; each invocation owns columns lid, lid + 64, … of the head's
// state S (`out2`, [value_heads, key_dim, value_dim]). in0: the convolution's output rows
// [q (p1 key heads · p3) | k | v (p2 value heads · p4)], in1 / in2: in_proj_a / in_proj_b rows
// [p2], w0: A_log, w1: dt_bias. Per token: g = exp(−exp(A_log) · softplus(a + dt_bias)),
// β = sigmoid(b), q and k L2-normalised; S ← g·S; d = Sᵀk; S ← S + β·k·(v − d)ᵀ;
// out = Sᵀq · key_dim^-0.5.
@compute @workgroup_size(64)
fn delta_rule(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let h = wid.x + wid.y * groups.x;
    let key_heads = params.p1;
    let value_heads = params.p2;
    let kd = params.p3;
    let vd = params.p4;
    if h >= value_heads {
        return;
    }
    let channels = 2u * key_heads * kd + value_heads * vd;
    let kh = h / (value_heads / key_heads);
    let scale = 1.0 / sqrt(f32(kd));
    let base = h * kd * vd;
    for (var t = 0u; t < params.rows; t++) {
        let row = t * channels;
        let q0 = row + kh * kd;
        let k0 = row + key_heads * kd + kh * kd;
        let v0 = row + 2u * key_heads * kd + h * vd;
        var qq = 0.0;
        var kk = 0.0;
        for (var r = 0u; r < kd; r++) {
            qq += in0[q0 + r] * in0[q0 + r];
            kk += in0[k0 + r] * in0[k0 + r];
        }
        let q_scale = inverseSqrt(qq + 1e-6);
        let k_scale = inverseSqrt(kk + 1e-6);
        let x = in1[t * value_heads + h] + w1_at(h);
        var softplus = x;
        if x <= 20.0 {
            softplus = log(1.0 + exp(x));
        }
        let g = exp(-exp(w0_at(h)) * softplus);
        let beta = sigmoid(in2[t * value_heads + h]);
        for (var c = lid; c < vd; c += 64u) {
            var d = 0.0;
            for (var r = 0u; r < kd; r++) {
                let s = out2[base + r * vd + c] * g;
                out2[base + r * vd + c] = s;
                d += s * in0[k0 + r] * k_scale;
            }
            let delta = beta * (in0[v0 + c] - d);
            var o = 0.0;
            for (var r = 0u; r < kd; r++) {
                let s = out2[base + r * vd + c] + in0[k0 + r] * k_scale * delta;
                out2[base + r * vd + c] = s;
                o += s * in0[q0 + r] * q_scale;
            }
            out[(t * value_heads + h) * vd + c] = o * scale;
        }
    }
}

// One invocation per group of p2 values (p1 values per row, eps = bitcast(p3)).
@compute @workgroup_size(64)
fn gated_norm(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let g = flat_index(wid, groups, lid);
    let size = params.p2;
    if g >= params.rows * (params.p1 / size) {
        return;
    }
    let start = g * size;
    var sum = 0.0;
    for (var j = 0u; j < size; j++) {
        sum += in0[start + j] * in0[start + j];
    }
    let inv = 1.0 / sqrt(sum / f32(size) + bitcast<f32>(params.p3));
    for (var j = 0u; j < size; j++) {
        let z = in1[start + j];
        out[start + j] = in0[start + j] * inv * w0_at(j) * (z / (1.0 + exp(-z)));
    }
}
