// The subgroup form of `matvec_rope` (appended after matmul_subgroup.wgsl and
// matmul_rope.wgsl): each subgroup owns sets of ROWS_PER_THREAD rows of the
// head and sums them with subgroupAdd, as `matvec_subgroup` does.
@compute @workgroup_size(256)
fn matvec_rope_subgroup(@builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) groups: vec3<u32>,
                        @builtin(subgroup_id) subgroup: u32,
                        @builtin(num_subgroups) subgroups: u32,
                        @builtin(subgroup_invocation_id) lane: u32,
                        @builtin(subgroup_size) width: u32,
                        @builtin(local_invocation_index) lid: u32) {
    begin_input(lid);
    let slot = workgroup_index(wid, groups);
    for (var r = subgroup * ROWS_PER_THREAD; r < rope.head_dim; r += subgroups * ROWS_PER_THREAD) {
        var sums = vec4<f32>(0.0);
        for (var g = lane; g < params.k / 32u; g += width) {
            sums += group_dots(slot * rope.head_dim + r, g);
        }
        let totals = subgroupAdd(sums);
        if lane == 0u {
            keep_rows(slot, r, totals);
        }
    }
    finish_head(slot, lid);
}
