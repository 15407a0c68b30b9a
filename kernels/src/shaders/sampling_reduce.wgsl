// Workgroup-wide reductions, portable version: a tree in workgroup memory.
// Prepended to sampling.wgsl, which defines `WG`, its workgroup size (a power
// of two), and takes an `Invocation` as its entry points' argument. The
// subgroup version (sampling_reduce_subgroup.wgsl) has the same functions and
// results, up to the order of the floating-point additions.
// Every thread of the workgroup must call them (uniform control flow); every
// thread gets the result.

struct Invocation {
    @builtin(local_invocation_index) index: u32,
}

fn block_sum(x: f32, inv: Invocation) -> f32 {
    reduce_f32[inv.index] = x;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if inv.index < stride {
            reduce_f32[inv.index] += reduce_f32[inv.index + stride];
        }
        workgroupBarrier();
    }
    let total = reduce_f32[0];
    workgroupBarrier();
    return total;
}

fn block_max(x: f32, inv: Invocation) -> f32 {
    reduce_f32[inv.index] = x;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if inv.index < stride {
            reduce_f32[inv.index] = max(reduce_f32[inv.index], reduce_f32[inv.index + stride]);
        }
        workgroupBarrier();
    }
    let total = reduce_f32[0];
    workgroupBarrier();
    return total;
}

fn block_best(x: Best, inv: Invocation) -> Best {
    reduce_f32[inv.index] = x.value;
    reduce_u32[inv.index] = x.index;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if inv.index < stride {
            let b = better(Best(reduce_f32[inv.index], reduce_u32[inv.index]),
                           Best(reduce_f32[inv.index + stride], reduce_u32[inv.index + stride]));
            reduce_f32[inv.index] = b.value;
            reduce_u32[inv.index] = b.index;
        }
        workgroupBarrier();
    }
    let total = Best(reduce_f32[0], reduce_u32[0]);
    workgroupBarrier();
    return total;
}
