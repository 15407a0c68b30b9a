//! The encoder's attention kernel against `cpu::bidirectional_attention`, on
//! every path (the kernel has one, so the runs differ in the device limits).

mod common;

use common::{assert_close, contexts, random_run, random_vec, rng, shout, upload};
use mlc_kernels::bidirectional_attention::MAX_ENCODER_HEAD_DIM;
use mlc_kernels::{
    BidirectionalAttention, BidirectionalAttentionBuffers, BidirectionalAttentionShape, GpuContext,
    Kernel, KernelError, Step, cpu,
};
use rand::Rng;

/// Summation order differs from the reference only: f32 noise.
const REL: f32 = 1e-5;
const ABS: f32 = 1e-6;

/// Runs `tokens` rows of a binding made for `max_tokens` and compares every
/// row, and checks the rows past the step are left alone.
fn check(
    path: &str,
    ctx: &GpuContext,
    kernel: &BidirectionalAttention,
    seed: u64,
    (tokens, max_tokens, heads, head_dim): (usize, usize, usize, usize),
) {
    let mut draw = rng(seed);
    let width = heads * head_dim;
    // Scores of a few units: the softmax is neither flat nor one-hot.
    let qkv = random_vec(&mut draw, max_tokens * 3 * width, 2.0);
    let scale = 1.0 / (head_dim as f32).sqrt();
    let mut want = vec![-3.0f32; max_tokens * width];
    cpu::bidirectional_attention(
        &qkv[..tokens * 3 * width],
        heads,
        head_dim,
        scale,
        &mut want[..tokens * width],
    );
    let (qkv_buffer, out) = (upload(ctx, &qkv), upload(ctx, &vec![-3.0; max_tokens * width]));
    let shape = BidirectionalAttentionShape {
        max_tokens: max_tokens as u32,
        heads: heads as u32,
        head_dim: head_dim as u32,
        scale,
    };
    let buffers = BidirectionalAttentionBuffers { qkv: &qkv_buffer, out: &out };
    let mut bound = kernel.bind(ctx, &buffers, &shape).unwrap();
    bound.run(ctx, Step::rows(tokens)).unwrap();
    let got = ctx.read_f32(&out, max_tokens * width).unwrap();
    let what = format!("{path}: {tokens} tokens, {heads} heads of {head_dim}");
    assert_close(&what, &got, &want, REL, ABS);
}

#[test]
fn bert_shapes_match_the_cpu_reference() {
    // bert-tiny (4 heads of 16), snowflake-arctic-embed (12 of 64), and the
    // tile edges: 1 token, 63/64/65 (one tile, exactly one, one key past it),
    // 200 (four tiles), a head of 256 (four dimensions per invocation).
    let cases = [
        (1, 1, 4, 16),
        (10, 64, 4, 16),
        (49, 64, 4, 16),
        (63, 70, 2, 32),
        (64, 64, 2, 32),
        (65, 80, 3, 8),
        (200, 256, 12, 64),
        (33, 33, 1, 256),
        (7, 9, 2, 100),
    ];
    for (path, ctx) in contexts() {
        let kernel = BidirectionalAttention::new(ctx).unwrap();
        for (i, &case) in cases.iter().enumerate() {
            check(path, ctx, &kernel, 100 + i as u64, case);
        }
    }
}

#[test]
fn random_shapes_match_the_cpu_reference() {
    let (seed, cases) = random_run("bidirectional attention");
    let mut draw = rng(seed);
    for i in 0..cases {
        let head_dim = draw.random_range(1..=MAX_ENCODER_HEAD_DIM as usize);
        let heads = draw.random_range(1..=8);
        let max_tokens = draw.random_range(1..=300);
        let tokens = draw.random_range(1..=max_tokens);
        shout(&format!("case {i}: {tokens} of {max_tokens} tokens, {heads} heads of {head_dim}"));
        for (path, ctx) in contexts() {
            let kernel = BidirectionalAttention::new(ctx).unwrap();
            check(path, ctx, &kernel, seed + i as u64, (tokens, max_tokens, heads, head_dim));
        }
    }
}

#[test]
fn bad_shapes_and_aliasing_are_errors() {
    let (_, ctx) = &contexts()[0];
    let kernel = BidirectionalAttention::new(ctx).unwrap();
    // Room for a head of 320 of one token, so that only the head size is wrong below.
    let qkv = upload(ctx, &[0.0; 3 * 4 * 128]);
    let out = upload(ctx, &[0.0; 4 * 128]);
    let shape = BidirectionalAttentionShape { max_tokens: 4, heads: 4, head_dim: 16, scale: 0.25 };
    let bind =
        |buffers: BidirectionalAttentionBuffers<'_>, shape| kernel.bind(ctx, &buffers, &shape);
    let ok = BidirectionalAttentionBuffers { qkv: &qkv, out: &out };
    let mut bound = bind(ok, shape).unwrap();
    assert!(matches!(
        bound.set_step(&ctx.queue, Step::rows(5)),
        Err(KernelError::InvalidArguments(_))
    ));
    let too_many = BidirectionalAttentionShape { max_tokens: 9, ..shape };
    assert!(matches!(bind(ok, too_many), Err(KernelError::InvalidArguments(_))));
    let wide = BidirectionalAttentionShape { max_tokens: 1, heads: 1, head_dim: 320, scale: 0.25 };
    assert!(matches!(bind(ok, wide), Err(KernelError::InvalidArguments(_))));
    let aliased = BidirectionalAttentionBuffers { qkv: &qkv, out: &qkv };
    assert!(matches!(bind(aliased, shape), Err(KernelError::InvalidArguments(_))));
}
