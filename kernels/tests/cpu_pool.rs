//! `cpu_fast::share_this_thread_with_the_pool`: the engine's thread becomes
//! thread 0 of rayon's global pool and runs products there, with the same
//! results as a product run inline. Its own test binary (its own process),
//! because the global pool is built once per process.
#![cfg(feature = "parallel")]

use mlc_kernels::cpu::Q4Matrix;
use mlc_kernels::cpu_fast::{
    BLOCK, MatmulScratch, Q4Packed, Q16Block, matmul_q4_q16, quantize_rows,
    share_this_thread_with_the_pool,
};

/// A decode product (one token) and a prefill's (nine) of a 200 × 96
/// matrix, on whatever thread calls it.
fn products() -> Vec<f32> {
    let (rows, cols) = (200, 96);
    let words: Vec<u32> =
        (0..rows * cols / 8).map(|i| (i as u32).wrapping_mul(0x9E37_79B9)).collect();
    let scales: Vec<f32> =
        (0..rows * cols / BLOCK).map(|i| 0.01 + (i % 5) as f32 * 0.003).collect();
    let w = Q4Packed::from_mlc(&Q4Matrix { rows, cols, q_weight: &words, scales: &scales });
    let mut results = Vec::new();
    for tokens in [1, 9] {
        let x: Vec<f32> =
            (0..tokens * cols).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.07).collect();
        let mut q = vec![Q16Block::default(); tokens * cols / BLOCK];
        quantize_rows(&x, cols, &mut q);
        let mut out = vec![0.0; tokens * rows];
        matmul_q4_q16(&q, tokens, &w, &mut out, &mut MatmulScratch::default());
        results.extend(out);
    }
    results
}

#[test]
fn the_engine_thread_joins_the_pool_and_runs_products_there() {
    let inline = std::thread::spawn(|| {
        rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(products)
    })
    .join()
    .unwrap();
    let engine = std::thread::spawn(|| {
        assert_eq!(rayon::current_thread_index(), None, "a new thread is no pool thread");
        assert!(share_this_thread_with_the_pool(), "the global pool was not built yet");
        assert_eq!(rayon::current_thread_index(), Some(0), "the engine's thread is thread 0");
        assert!(!share_this_thread_with_the_pool(), "the pool is built once");
        products()
    })
    .join()
    .unwrap();
    assert_eq!(engine, inline);
}
