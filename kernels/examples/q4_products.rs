//! Times the fast CPU engine's q4 product (`matmul_q4_q16`) on the
//! Qwen2.5-0.5B product shapes, best of five, in billions of (token × weight)
//! blocks a second: `RAYON_NUM_THREADS=1 cargo run --release -p mlc-kernels
//! --example q4_products [TOKENS] [int8|avx2|avx2-int8]` (64 tokens unless
//! given; 1 times the decode product; `int8` times the int8 product,
//! `matmul_q4_q8`; `avx2` and `avx2-int8` the AVX2 prefill kernels on their
//! own, on a CPU whose best kernel is AVX-512, on x86_64 only).
//! docs/performance.md records its figures.

use std::time::Instant;

use mlc_kernels::cpu::Q4Matrix;
use mlc_kernels::cpu_fast::{
    BLOCK, MatmulScratch, Q4Packed, Q8Block, Q16Block, matmul_q4_q8, matmul_q4_q16, quantize_rows,
};
#[cfg(target_arch = "x86_64")]
use mlc_kernels::cpu_fast::{DotKernel, Q8Tokens, Q16Tokens, dot_q4_q8_tokens, dot_q4_q16_tokens};

fn main() {
    let tokens: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse().expect("TOKENS: a positive integer"),
        None => 64,
    };
    let mode = std::env::args().nth(2).unwrap_or_default();
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
        let mut q16 = vec![Q16Block::default(); tokens * blocks];
        quantize_rows(&x, cols, &mut q16);
        let mut q8 = vec![Q8Block::default(); tokens * blocks];
        quantize_rows(&x, cols, &mut q8);
        let (mut out, mut scratch) = (vec![0.0; tokens * rows], MatmulScratch::default());
        #[cfg(target_arch = "x86_64")]
        let (mut t16, mut t8) = (Q16Tokens::default(), Q8Tokens::default());
        let mut product = || match mode.as_str() {
            "int8" => matmul_q4_q8(&q8, tokens, &packed, &mut out, &mut scratch),
            // The kernels alone, one task over every row (results transposed).
            #[cfg(target_arch = "x86_64")]
            "avx2" => {
                t16.gather(DotKernel::Avx2, &q16, tokens);
                dot_q4_q16_tokens(&packed.blocks, &t16, &mut out);
            }
            #[cfg(target_arch = "x86_64")]
            "avx2-int8" => {
                t8.gather(DotKernel::Avx2, &q8, tokens);
                dot_q4_q8_tokens(&packed.blocks, &t8, &mut out);
            }
            _ => matmul_q4_q16(&q16, tokens, &packed, &mut out, &mut scratch),
        };
        // One untimed call: the scratch's first allocation, the caches.
        product();
        let best = (0..5)
            .map(|_| {
                let start = Instant::now();
                product();
                start.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min);
        let rate = (tokens * rows * blocks) as f64 / best / 1e9;
        println!("{rows} x {cols}, {tokens} tokens: {:.2} ms, {rate:.3} G blocks/s", best * 1e3);
    }
}
