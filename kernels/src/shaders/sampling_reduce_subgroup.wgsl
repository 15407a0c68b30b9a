// Workgroup-wide reductions, subgroup version (adapter feature `subgroups`):
// one subgroup operation, then a short serial pass over the per-subgroup
// results in workgroup memory. Same functions and contract as
// sampling_reduce.wgsl; no assumption on the subgroup size or on how
// invocations map to subgroups.

struct Invocation {
    @builtin(local_invocation_index) index: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) sg_count: u32,
}

fn block_sum(x: f32, inv: Invocation) -> f32 {
    let s = subgroupAdd(x);
    if inv.sg_lane == 0u {
        reduce_f32[inv.sg_id] = s;
    }
    workgroupBarrier();
    var total = 0.0;
    for (var i = 0u; i < inv.sg_count; i++) {
        total += reduce_f32[i];
    }
    workgroupBarrier();
    return total;
}

fn block_max(x: f32, inv: Invocation) -> f32 {
    let m = subgroupMax(x);
    if inv.sg_lane == 0u {
        reduce_f32[inv.sg_id] = m;
    }
    workgroupBarrier();
    var total = reduce_f32[0];
    for (var i = 1u; i < inv.sg_count; i++) {
        total = max(total, reduce_f32[i]);
    }
    workgroupBarrier();
    return total;
}

fn block_best(x: Best, inv: Invocation) -> Best {
    let m = subgroupMax(x.value);
    let i = subgroupMin(select(NO_INDEX, x.index, x.value == m));
    if inv.sg_lane == 0u {
        reduce_f32[inv.sg_id] = m;
        reduce_u32[inv.sg_id] = i;
    }
    workgroupBarrier();
    var total = Best(reduce_f32[0], reduce_u32[0]);
    for (var s = 1u; s < inv.sg_count; s++) {
        total = better(total, Best(reduce_f32[s], reduce_u32[s]));
    }
    workgroupBarrier();
    return total;
}
