// Element type of the prefill kernel's workgroup tiles on the portable path
// (prepended first to matmul.wgsl): f32 products, as the CPU reference.
alias TileScalar = f32;
alias TileVec = vec4<f32>;
