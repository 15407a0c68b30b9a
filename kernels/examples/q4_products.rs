//! Times the fast CPU engine's q4 product (`matmul_q4_q16`) on the
//! Qwen2.5-0.5B product shapes, best of five, in billions of (token × weight)
//! blocks a second: `RAYON_NUM_THREADS=1 cargo run --release -p mlc-kernels
//! --example q4_products [TOKENS]` (64 tokens unless given; 1 times the
//! decode product). docs/performance.md records its figures.

use std::time::Instant;

use mlc_kernels::cpu::Q4Matrix;
use mlc_kernels::cpu_fast::{
    BLOCK, MatmulScratch, Q4Packed, Q16Block, matmul_q4_q16, quantize_row,
};

fn main() {
    let tokens: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse().expect("TOKENS: a positive integer"),
        None => 64,
    };
    // q/k/v, o, gate/up and down of Qwen2.5-0.5B: [rows, cols].
    for (rows, cols) in [(1152, 896), (896, 896), (9728, 896), (896, 4864)] {
        let words: Vec<u32> = (0..rows * cols / 8)
            .map(|i| (i as u32).wrapping_mul(0x9E37_79B9) ^ 0x1234_5678)
            .collect();
        let scales: Vec<f32> =
            (0..rows * cols / BLOCK).map(|i| 0.01 + (i % 7) as f32 * 0.002).collect();
        let packed =
            Q4Packed::from_mlc(&Q4Matrix { rows, cols, q_weight: &words, scales: &scales });
        let blocks = cols / BLOCK;
        let x: Vec<f32> = (0..tokens * cols).map(|i| ((i * 29 % 17) as f32 - 8.0) * 0.1).collect();
        let mut q = vec![Q16Block::default(); tokens * blocks];
        for (row, out) in x.chunks(cols).zip(q.chunks_mut(blocks)) {
            quantize_row(row, out);
        }
        let (mut out, mut scratch) = (vec![0.0; tokens * rows], MatmulScratch::default());
        // One untimed call: the scratch's first allocation, the caches.
        matmul_q4_q16(&q, tokens, &packed, &mut out, &mut scratch);
        let best = (0..5)
            .map(|_| {
                let start = Instant::now();
                matmul_q4_q16(&q, tokens, &packed, &mut out, &mut scratch);
                start.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min);
        let rate = (tokens * rows * blocks) as f64 / best / 1e9;
        println!("{rows} x {cols}, {tokens} tokens: {:.2} ms, {rate:.3} G blocks/s", best * 1e3);
    }
}
