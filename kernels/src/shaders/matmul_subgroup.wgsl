// Decode matrix × vector with subgroup reductions (appended to matmul.wgsl when
// the device has subgroups). Each subgroup owns whole sets of ROWS_PER_THREAD
// rows and sums them with subgroupAdd: no workgroup memory, no barriers (but the
// one of a NORMED input's sum of squares), and no assumption about how
// invocations map to subgroups or how large subgroups are.

// Rows per workgroup: ROWS_PER_THREAD × 256 / the smallest subgroup size, so
// that every subgroup has a row set; larger subgroups take several in turn.
override SUBGROUP_ROWS: u32 = 32u;

// `begin_input` with a NORMED input's sum of squares reduced by subgroups: one
// subgroupAdd each and one barrier, instead of log2(256) barriers.
fn begin_input_subgroup(lid: u32, subgroup: u32, subgroups: u32, lane: u32) {
    if INPUT != NORMED {
        begin_input(lid);
        return;
    }
    let sum = subgroupAdd(square_sum_share(lid));
    if lane == 0u {
        square_sums[subgroup] = sum;
    }
    workgroupBarrier();
    var total = 0.0;
    for (var s = 0u; s < subgroups; s++) {
        total += square_sums[s];
    }
    set_inverse_rms(total);
}

@compute @workgroup_size(256)
fn matvec_subgroup(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(subgroup_id) subgroup: u32,
                   @builtin(num_subgroups) subgroups: u32,
                   @builtin(subgroup_invocation_id) lane: u32,
                   @builtin(subgroup_size) width: u32,
                   @builtin(local_invocation_index) lid: u32) {
    let row = begin_row(workgroup_index(wid, groups));
    begin_input_subgroup(lid, subgroup, subgroups, lane);
    let base = row.y * SUBGROUP_ROWS;
    for (var r = subgroup * ROWS_PER_THREAD; r < SUBGROUP_ROWS; r += subgroups * ROWS_PER_THREAD) {
        let first = base + r;
        var sums = RowSums(vec4<f32>(0.0), vec4<f32>(0.0));
        if first < params.n {
            for (var g = lane; g < params.k / 32u; g += width) {
                let dots = group_dots(first, g);
                sums.lo += dots.lo;
                sums.hi += dots.hi;
            }
        }
        var totals = RowSums(subgroupAdd(sums.lo), vec4<f32>(0.0));
        if ROWS_PER_THREAD > 4u {
            totals.hi = subgroupAdd(sums.hi);
        }
        if lane == 0u {
            store_rows(row.x, first, totals);
        }
    }
}
