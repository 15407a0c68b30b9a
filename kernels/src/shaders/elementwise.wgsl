// Elementwise ops on [rows, width] f32 activations, one invocation per output
// value over a 2-D grid of 256-invocation workgroups:
//   add_in_place:   out[i] += input[i]                       (the residual add)
//   silu_mul:       out[t, j] = silu(gate) · up               (SwiGLU)
//   gelu_tanh_mul:  out[t, j] = gelu_tanh(gate) · up          (GeGLU, Gemma)
//   silu_plain:     out[i] = silu(input[i])                   (a non-gated MLP)
//   gelu_tanh_plain: out[i] = gelu_tanh(input[i])             (Phi's fc1 → gelu_new → fc2)
//   softcap:        out[i] = tanh(input[i] / cap) · cap       (Gemma-2's final logits)
// where gate = input[t, j] and up = input[t, width + j]: MLC's fused gate_up
// projection puts the two halves side by side in each row of `input`.

struct Params {
    rows: u32,   // rows in use (updated per step by the wrapper)
    width: u32,  // output values per row (the intermediate size for the gated ops)
    cap: f32,    // softcap only
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> input: array<f32>;

fn element_index(id: vec3<u32>, count: vec3<u32>, lid: u32) -> u32 {
    return (id.x + id.y * count.x) * 256u + lid;
}

/// (gate, up) of output element `i`: the same column of its row's two halves.
fn gate_and_up(i: u32) -> vec2<f32> {
    let row = i / params.width;
    return vec2<f32>(input[i + row * params.width], input[i + (row + 1u) * params.width]);
}

@compute @workgroup_size(256)
fn add_in_place(@builtin(workgroup_id) wid: vec3<u32>,
                @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, groups, lid);
    if i < params.rows * params.width {
        out[i] += input[i];
    }
}

@compute @workgroup_size(256)
fn silu_mul(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, groups, lid);
    if i < params.rows * params.width {
        let pair = gate_and_up(i);
        out[i] = silu(pair.x) * pair.y;
    }
}

@compute @workgroup_size(256)
fn gelu_tanh_mul(@builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, groups, lid);
    if i < params.rows * params.width {
        let pair = gate_and_up(i);
        out[i] = gelu_tanh(pair.x) * pair.y;
    }
}

@compute @workgroup_size(256)
fn silu_plain(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, groups, lid);
    if i < params.rows * params.width {
        out[i] = silu(input[i]);
    }
}

@compute @workgroup_size(256)
fn gelu_tanh_plain(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, groups, lid);
    if i < params.rows * params.width {
        out[i] = gelu_tanh(input[i]);
    }
}

@compute @workgroup_size(256)
fn gelu_mul(@builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) groups: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, groups, lid);
    if i < params.rows * params.width {
        let pair = gate_and_up(i);
        out[i] = gelu_erf(pair.x) * pair.y;
    }
}

@compute @workgroup_size(256)
fn gelu_plain(@builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, groups, lid);
    if i < params.rows * params.width {
        out[i] = gelu_erf(input[i]);
    }
}

@compute @workgroup_size(256)
fn softcap(@builtin(workgroup_id) wid: vec3<u32>,
           @builtin(num_workgroups) groups: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = element_index(wid, groups, lid);
    if i < params.rows * params.width {
        // Clamped like gelu_tanh: tanh(±10) is ±1 to f32 precision, and some
        // drivers return NaN for large arguments.
        out[i] = tanh(clamp(input[i] / params.cap, -10.0, 10.0)) * params.cap;
    }
}
