// Element type of the prefill kernel's workgroup tiles on the f16 fast path
// (prepended first to matmul.wgsl when the device has shader-f16 and the model
// dtype is f16): x and the decoded W are stored rounded to f16 — W exactly as
// MLC's q4f16_1 dequantization rounds it — and widened to f32 for the products
// and sums. This halves workgroup-memory traffic; summing in f16 as well was
// faster but let the error grow with K (~1.4e-3 of the output per product,
// too much over a deep model).
enable f16;

alias TileScalar = f16;
alias TileVec = vec4<f16>;
