// RMSNorm / LayerNorm with a subgroup reduction (appended to rms_norm.wgsl when
// the device has subgroups): one subgroupAdd per subgroup, then one barrier to
// combine the subgroups' sums, instead of log2(256) barriers per reduction.

var<workgroup> subgroup_sums: array<f32, WORKGROUP>;

fn subgroup_total(value: f32, subgroup: u32, subgroups: u32, lane: u32) -> f32 {
    let sum = subgroupAdd(value);
    if lane == 0u {
        subgroup_sums[subgroup] = sum;
    }
    workgroupBarrier();
    var total = 0.0;
    for (var s = 0u; s < subgroups; s++) {
        total += subgroup_sums[s];
    }
    // A second reduction may overwrite subgroup_sums only once all have read them.
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256)
fn rms_norm_subgroup(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) groups: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32,
                     @builtin(subgroup_id) subgroup: u32,
                     @builtin(num_subgroups) subgroups: u32,
                     @builtin(subgroup_invocation_id) lane: u32) {
    let r = row_index(wid, groups);
    if r >= params.rows * params.heads {
        return;
    }
    var centre = 0.0;
    if params.layer_norm != 0u {
        centre = subgroup_total(partial_sum(r, lid), subgroup, subgroups, lane) / f32(params.width);
    }
    let sum_of_squares = subgroup_total(partial_sum_of_squares(r, lid, centre), subgroup, subgroups, lane);
    write_row(r, lid, centre, sum_of_squares);
}
