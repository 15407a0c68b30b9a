//! The CPU kernels' unit tests (`cpu`, `cpu_fast`) as one crate without
//! dependencies, so that `scripts/test-wasm-kernels.sh` builds them for
//! wasm32-wasip1 with `simd128` in seconds and runs them under Node's WASI:
//! the check that the browser's `simd128` kernel equals the scalar one bit
//! for bit. The GPU modules (and wgpu) are not part of it.

#[path = "../src/cpu/mod.rs"]
pub mod cpu;
#[path = "../src/cpu_fast/mod.rs"]
pub mod cpu_fast;
