//! `RmsNorm` against `cpu::rms_norm` on both paths: whole rows, per-head rows
//! inside a fused qkv buffer (in place and not), the 2-D grid, errors; and its
//! LayerNorm mode (a bias given) against `cpu::layer_norm`.

mod common;

use common::{assert_close, contexts, encode, random_vec, rng, shout, upload};
use mlc_kernels::{
    FloatFormat, GpuContext, Kernel, RmsNorm, RmsNormBuffers, RmsNormShape, RowLayout, Step, cpu,
};
use rand::Rng;
use rand::rngs::StdRng;

/// Relative to the output scale: one f32 sum of squares and a few products per
/// value; only the summation order differs from the CPU reference.
const REL: f32 = 1e-5;
const ABS: f32 = 1e-6;
const EPS: f32 = 1e-6;

/// Random norm weights around 1, as stored in `dtype`, and their exact values.
fn weights(rng: &mut StdRng, width: usize, dtype: FloatFormat) -> (Vec<u8>, Vec<f32>) {
    let w: Vec<f32> = random_vec(rng, width, 0.5).iter().map(|v| 1.0 + v).collect();
    encode(&w, dtype)
}

/// The CPU reference of `shape` applied to the buffer contents `x` → `y`.
fn reference(x: &[f32], y: &mut [f32], weight: &[f32], shape: &RmsNormShape, tokens: usize) {
    let (w, h) = (shape.width as usize, shape.heads as usize);
    for t in 0..tokens {
        let src = shape.input.offset as usize + t * shape.input.token_stride as usize;
        let dst = shape.output.offset as usize + t * shape.output.token_stride as usize;
        cpu::rms_norm(&x[src..src + h * w], weight, shape.eps, &mut y[dst..dst + h * w]);
    }
}

/// Runs `shape` for `tokens` tokens, in place (`y_len == 0`) or into a fresh
/// buffer of `y_len` values, and compares the whole output buffer with the CPU.
#[allow(clippy::too_many_arguments)]
fn check(
    path: &str,
    ctx: &GpuContext,
    kernel: &RmsNorm,
    dtype: FloatFormat,
    rng: &mut StdRng,
    shape: RmsNormShape,
    tokens: usize,
    x_len: usize,
    y_len: usize,
) {
    let what = format!("{path} {dtype:?} {shape:?} tokens {tokens} in place {}", y_len == 0);
    let x = random_vec(rng, x_len, 2.0);
    let (weight_bytes, weight) = weights(rng, shape.width as usize, dtype);
    let weight_buffer = ctx.storage_buffer("norm weight", &weight_bytes);
    let x_buffer = upload(ctx, &x);
    let (want, got) = if y_len == 0 {
        let mut want = x.clone();
        reference(&x, &mut want, &weight, &shape, tokens);
        let buffers = RmsNormBuffers { x: &x_buffer, weight: &weight_buffer, bias: None, y: None };
        kernel
            .bind(ctx, &buffers, &shape)
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .run(ctx, Step::rows(tokens))
            .unwrap();
        (want, ctx.read_f32(&x_buffer, x_len).unwrap())
    } else {
        let init = vec![-7.0; y_len];
        let mut want = init.clone();
        reference(&x, &mut want, &weight, &shape, tokens);
        let y = upload(ctx, &init);
        let buffers =
            RmsNormBuffers { x: &x_buffer, weight: &weight_buffer, bias: None, y: Some(&y) };
        kernel
            .bind(ctx, &buffers, &shape)
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .run(ctx, Step::rows(tokens))
            .unwrap();
        (want, ctx.read_f32(&y, y_len).unwrap())
    };
    // The whole buffer: normalised rows and everything else untouched.
    assert_close(&what, &got, &want, REL, ABS);
}

#[test]
fn whole_rows_match_the_cpu_norm() {
    for dtype in [FloatFormat::F16, FloatFormat::F32] {
        for (path, ctx) in contexts() {
            let kernel = RmsNorm::new(ctx, dtype).unwrap();
            assert_eq!(kernel.uses_subgroups(), ctx.caps.subgroups);
            let mut rng = rng(21);
            for (tokens, width) in [(1, 896), (7, 64), (33, 896), (2, 4864), (3, 100)] {
                let max = tokens + 1;
                let shape = RmsNormShape::rows(max as u32, width as u32, EPS);
                check(path, ctx, &kernel, dtype, &mut rng, shape, tokens, max * width, max * width);
                check(path, ctx, &kernel, dtype, &mut rng, shape, tokens, max * width, 0);
            }
        }
    }
}

#[test]
fn layer_norm_rows_match_the_cpu_layer_norm() {
    for dtype in [FloatFormat::F16, FloatFormat::F32] {
        for (path, ctx) in contexts() {
            let kernel = RmsNorm::new(ctx, dtype).unwrap();
            let mut rng = rng(25);
            // StableLM-2-1.6B's hidden size, a tiny one, one past a workgroup.
            for (tokens, width) in [(1, 2048), (7, 64), (3, 257), (16, 2048)] {
                let what = format!("{path} {dtype:?} layer_norm tokens {tokens} width {width}");
                // Rows far from zero mean: an RMSNorm would differ by far more than the bound.
                let x: Vec<f32> =
                    random_vec(&mut rng, tokens * width, 2.0).iter().map(|v| v + 3.0).collect();
                let (weight_bytes, weight) = weights(&mut rng, width, dtype);
                let (bias_bytes, bias) = encode(&random_vec(&mut rng, width, 0.5), dtype);
                let mut want = vec![0.0; x.len()];
                cpu::layer_norm(&x, &weight, &bias, 1e-5, &mut want);
                let (x_buffer, y) = (upload(ctx, &x), upload(ctx, &vec![-7.0; x.len()]));
                let weight_buffer = ctx.storage_buffer("norm weight", &weight_bytes);
                let bias_buffer = ctx.storage_buffer("norm bias", &bias_bytes);
                let buffers = RmsNormBuffers {
                    x: &x_buffer,
                    weight: &weight_buffer,
                    bias: Some(&bias_buffer),
                    y: Some(&y),
                };
                let shape = RmsNormShape::rows(tokens as u32, width as u32, 1e-5);
                kernel
                    .bind(ctx, &buffers, &shape)
                    .unwrap_or_else(|e| panic!("{what}: {e}"))
                    .run(ctx, Step::rows(tokens))
                    .unwrap();
                let got = ctx.read_f32(&y, x.len()).unwrap();
                assert_close(&what, &got, &want, REL, ABS);
            }
        }
    }
}

#[test]
fn per_head_q_and_k_norm_inside_the_fused_qkv_buffer() {
    // Qwen3-0.6B: 16 q heads, 8 kv heads, head_dim 128; qkv rows of (16 + 2·8)·128.
    let (q_heads, kv_heads, d, tokens) = (16u32, 8u32, 128u32, 5usize);
    let row = (q_heads + 2 * kv_heads) * d;
    let qkv = RowLayout { offset: 0, token_stride: row };
    let k = RowLayout { offset: q_heads * d, token_stride: row };
    let packed_q = RowLayout { offset: 0, token_stride: q_heads * d };
    for (path, ctx) in contexts() {
        let kernel = RmsNorm::new(ctx, FloatFormat::F16).unwrap();
        let mut rng = rng(22);
        let len = tokens * row as usize;
        let q_shape = RmsNormShape::per_head(tokens as u32, d, q_heads, qkv, qkv, EPS);
        let k_shape = RmsNormShape::per_head(tokens as u32, d, kv_heads, k, k, EPS);
        check(path, ctx, &kernel, FloatFormat::F16, &mut rng, q_shape, tokens, len, 0);
        check(path, ctx, &kernel, FloatFormat::F16, &mut rng, k_shape, tokens, len, 0);
        let q_out = RmsNormShape::per_head(tokens as u32, d, q_heads, qkv, packed_q, EPS);
        check(
            path,
            ctx,
            &kernel,
            FloatFormat::F16,
            &mut rng,
            q_out,
            tokens,
            len,
            tokens * (q_heads * d) as usize,
        );
        // Fewer tokens than bound.
        check(path, ctx, &kernel, FloatFormat::F16, &mut rng, q_shape, 2, len, 0);
    }
}

#[test]
fn random_shapes_match_the_cpu_reference() {
    let (seed, cases) = common::random_run("rms_norm");
    let mut draw = rng(seed);
    for i in 0..cases {
        let dtype = [FloatFormat::F16, FloatFormat::F32][draw.random_range(0..2)];
        // One row (a decode step) or many; fewer rows than bound.
        let tokens = if draw.random_bool(0.3) { 1 } else { draw.random_range(2..=40) };
        let max_tokens = (tokens + draw.random_range(0..3)) as u32;
        let in_place = draw.random_bool(0.5);
        // Whole rows of any width, or per-head rows inside wider, offset token rows
        // (the q/k norm in the fused qkv buffer).
        let shape = if draw.random_bool(0.5) {
            RmsNormShape::rows(max_tokens, draw.random_range(1..=6000), EPS)
        } else {
            let (width, heads) = (draw.random_range(1..=300), draw.random_range(1..=8));
            let mut layout = || RowLayout {
                offset: draw.random_range(0..100),
                token_stride: heads * width + draw.random_range(0..50),
            };
            let input = layout();
            let output = if in_place { input } else { layout() };
            RmsNormShape::per_head(max_tokens, width, heads, input, output, EPS)
        };
        let len = |layout: RowLayout| (layout.offset + max_tokens * layout.token_stride) as usize;
        let y_len = if in_place { 0 } else { len(shape.output) };
        shout(&format!("case {i}: {dtype:?} {shape:?}, {tokens} tokens, in place {in_place}"));
        for (path, ctx) in contexts() {
            let kernel = RmsNorm::new(ctx, dtype).unwrap();
            let mut rng = rng(seed + i as u64);
            check(path, ctx, &kernel, dtype, &mut rng, shape, tokens, len(shape.input), y_len);
        }
    }
}

#[test]
fn more_rows_than_one_grid_dimension() {
    for (path, ctx) in contexts() {
        let mut small = ctx.clone();
        small.limits.max_compute_workgroups_per_dimension = 4;
        let kernel = RmsNorm::new(&small, FloatFormat::F32).unwrap();
        let shape = RmsNormShape::per_head(
            9,
            32,
            3,
            RowLayout { offset: 0, token_stride: 96 },
            RowLayout { offset: 0, token_stride: 96 },
            EPS,
        );
        // 27 rows on a 4 × 7 grid, one idle workgroup.
        check(path, &small, &kernel, FloatFormat::F32, &mut rng(23), shape, 9, 9 * 96, 9 * 96);
    }
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let (_, ctx) = &contexts()[0];
    let kernel = RmsNorm::new(ctx, FloatFormat::F16).unwrap();
    let x = upload(ctx, &[1.0; 4 * 64]);
    let y = upload(ctx, &[0.0; 4 * 64]);
    let weight = ctx.storage_buffer("w", &[0u8; 128]);
    let short_weight = ctx.storage_buffer("w", &[0u8; 64]);
    let rows = RmsNormShape::rows(4, 64, EPS);
    assert!(
        kernel
            .bind(ctx, &RmsNormBuffers { x: &x, weight: &weight, bias: None, y: Some(&y) }, &rows)
            .is_ok()
    );
    let shifted = RmsNormShape { output: RowLayout { offset: 1, token_stride: 64 }, ..rows };
    let overlapping = RmsNormShape { output: RowLayout { offset: 0, token_stride: 32 }, ..rows };
    let cases = [
        (
            "too many tokens for x",
            RmsNormBuffers { x: &x, weight: &weight, bias: None, y: Some(&y) },
            RmsNormShape::rows(5, 64, EPS),
        ),
        (
            "weight too short",
            RmsNormBuffers { x: &x, weight: &short_weight, bias: None, y: Some(&y) },
            rows,
        ),
        (
            "bias too short",
            RmsNormBuffers { x: &x, weight: &weight, bias: Some(&short_weight), y: Some(&y) },
            rows,
        ),
        (
            "y aliases the bias",
            RmsNormBuffers { x: &x, weight: &weight, bias: Some(&y), y: Some(&y) },
            rows,
        ),
        ("y aliases x", RmsNormBuffers { x: &x, weight: &weight, bias: None, y: Some(&x) }, rows),
        (
            "in place with two layouts",
            RmsNormBuffers { x: &x, weight: &weight, bias: None, y: None },
            shifted,
        ),
        (
            "overlapping output rows",
            RmsNormBuffers { x: &x, weight: &weight, bias: None, y: Some(&y) },
            overlapping,
        ),
        (
            "negative eps",
            RmsNormBuffers { x: &x, weight: &weight, bias: None, y: Some(&y) },
            RmsNormShape { eps: -1.0, ..rows },
        ),
    ];
    for (why, buffers, shape) in cases {
        assert!(
            matches!(
                kernel.bind(ctx, &buffers, &shape),
                Err(mlc_kernels::KernelError::InvalidArguments(_))
            ),
            "{why}: accepted"
        );
    }
}
