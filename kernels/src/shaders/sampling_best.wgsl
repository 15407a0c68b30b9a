// What both reduction flavours (sampling_reduce.wgsl, sampling_reduce_subgroup.wgsl)
// share: the (value, index) pair they reduce and its ordering. Prepended before
// either of them.

/// A value with its index; `index == NO_INDEX` means "none".
struct Best {
    value: f32,
    index: u32,
}

const NO_INDEX: u32 = 0xffffffffu;
const LOWEST: f32 = -0x1.fffffep+127f;  // f32::MIN, the grammar mask value

var<workgroup> reduce_f32: array<f32, WG>;
var<workgroup> reduce_u32: array<u32, WG>;

/// Larger value wins; equal values go to the lower index.
fn better(a: Best, b: Best) -> Best {
    if a.value > b.value || (a.value == b.value && a.index < b.index) {
        return a;
    }
    return b;
}
