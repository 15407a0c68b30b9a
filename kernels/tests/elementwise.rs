//! `Elementwise` against `cpu::{add_in_place, silu_mul, gelu_tanh_mul, gelu_erf_mul, silu, gelu_tanh,
//! gelu_erf, softcap}`
//! on both paths, including large gate values, the 2-D grid and errors.

mod common;

use common::{assert_close, contexts, random_run, random_vec, rng, shout, upload};
use mlc_kernels::{
    Activation, Bound, Elementwise, ElementwiseBuffers, ElementwiseOp, ElementwiseShape,
    GpuContext, Kernel, KernelError, Step, cpu,
};
use rand::Rng;
use rand::rngs::StdRng;

/// Binds `op` reading `input` and writing `out`, for `max_rows` rows of `width`.
fn bind(
    kernel: &Elementwise,
    ctx: &GpuContext,
    op: ElementwiseOp,
    input: &wgpu::Buffer,
    out: &wgpu::Buffer,
    max_rows: u32,
    width: u32,
) -> Result<Bound, KernelError> {
    kernel.bind(ctx, &ElementwiseBuffers { input, out }, &ElementwiseShape { op, max_rows, width })
}

/// Relative to the output scale: the GPU's exp / tanh are accurate to a few
/// ulp, the rest is the same f32 arithmetic as the CPU.
const REL: f32 = 1e-5;
const ABS: f32 = 1e-6;

fn check_add(
    path: &str,
    ctx: &GpuContext,
    kernel: &Elementwise,
    rng: &mut StdRng,
    rows: usize,
    width: usize,
) {
    let max = rows + 1;
    let (a, b) = (random_vec(rng, max * width, 3.0), random_vec(rng, max * width, 3.0));
    let mut want = a.clone();
    cpu::add_in_place(&mut want[..rows * width], &b[..rows * width]);
    let (a_buffer, b_buffer) = (upload(ctx, &a), upload(ctx, &b));
    let mut bound =
        bind(kernel, ctx, ElementwiseOp::Add, &b_buffer, &a_buffer, max as u32, width as u32)
            .unwrap();
    bound.run(ctx, Step::rows(rows)).unwrap();
    let got = ctx.read_f32(&a_buffer, max * width).unwrap();
    assert_close(&format!("{path} add {rows}×{width}"), &got, &want, 0.0, 0.0);
}

fn check_gated(
    path: &str,
    ctx: &GpuContext,
    kernel: &Elementwise,
    rng: &mut StdRng,
    act: Activation,
    rows: usize,
    width: usize,
) {
    let max = rows + 1;
    let mut gate_up = random_vec(rng, max * 2 * width, 4.0);
    // Large gates: exp overflows in silu, tanh saturates in gelu.
    gate_up[0] = 95.0;
    gate_up[1] = -95.0;
    gate_up[2] = 1e4;
    gate_up[3] = -1e4;
    let init = vec![-7.0; max * width];
    let mut want = init.clone();
    match act {
        Activation::Silu => {
            cpu::silu_mul(&gate_up[..rows * 2 * width], width, &mut want[..rows * width])
        }
        Activation::GeluTanh => {
            cpu::gelu_tanh_mul(&gate_up[..rows * 2 * width], width, &mut want[..rows * width])
        }
        Activation::Gelu => {
            cpu::gelu_erf_mul(&gate_up[..rows * 2 * width], width, &mut want[..rows * width])
        }
    }
    let (input, out) = (upload(ctx, &gate_up), upload(ctx, &init));
    let mut bound =
        bind(kernel, ctx, ElementwiseOp::Gated(act), &input, &out, max as u32, width as u32)
            .unwrap();
    bound.run(ctx, Step::rows(rows)).unwrap();
    let got = ctx.read_f32(&out, max * width).unwrap();
    assert_close(&format!("{path} {act:?} {rows}×{width}"), &got, &want, REL, ABS);
}

fn check_plain(
    path: &str,
    ctx: &GpuContext,
    kernel: &Elementwise,
    rng: &mut StdRng,
    act: Activation,
    rows: usize,
    width: usize,
) {
    let max = rows + 1;
    let mut input = random_vec(rng, max * width, 4.0);
    // Large inputs: exp overflows in silu, tanh saturates in gelu.
    input[0] = 95.0;
    input[1] = -95.0;
    input[2] = 1e4;
    input[3] = -1e4;
    let init = vec![-7.0; max * width];
    let mut want = init.clone();
    want[..rows * width].copy_from_slice(&input[..rows * width]);
    match act {
        Activation::Silu => cpu::silu(&mut want[..rows * width]),
        Activation::GeluTanh => cpu::gelu_tanh(&mut want[..rows * width]),
        Activation::Gelu => cpu::gelu_erf(&mut want[..rows * width]),
    }
    let (input_buffer, out) = (upload(ctx, &input), upload(ctx, &init));
    let op = ElementwiseOp::Plain(act);
    let mut bound = bind(kernel, ctx, op, &input_buffer, &out, max as u32, width as u32).unwrap();
    bound.run(ctx, Step::rows(rows)).unwrap();
    let got = ctx.read_f32(&out, max * width).unwrap();
    assert_close(&format!("{path} plain {act:?} {rows}×{width}"), &got, &want, REL, ABS);
}

fn check_softcap(
    path: &str,
    ctx: &GpuContext,
    kernel: &Elementwise,
    rng: &mut StdRng,
    rows: usize,
    width: usize,
    cap: f32,
) {
    let max = rows + 1;
    // Logits far beyond the cap (saturated), near it, and well inside it.
    let mut input = random_vec(rng, max * width, 4.0 * cap);
    input[0] = 1e6;
    input[1] = -1e6;
    input[2] = 0.0;
    let init = vec![-7.0; max * width];
    let mut want = init.clone();
    cpu::softcap(&input[..rows * width], cap, &mut want[..rows * width]);
    let (input_buffer, out) = (upload(ctx, &input), upload(ctx, &init));
    let mut bound = bind(
        kernel,
        ctx,
        ElementwiseOp::Softcap(cap),
        &input_buffer,
        &out,
        max as u32,
        width as u32,
    )
    .unwrap();
    bound.run(ctx, Step::rows(rows)).unwrap();
    let got = ctx.read_f32(&out, max * width).unwrap();
    assert_close(&format!("{path} softcap {cap} {rows}×{width}"), &got, &want, REL, ABS);
    assert!(
        got[..rows * width].iter().all(|v| v.abs() <= cap),
        "{path}: a capped logit exceeds the cap"
    );
}

#[test]
fn softcap_matches_the_cpu() {
    for (path, ctx) in contexts() {
        let kernel = Elementwise::new(ctx).unwrap();
        let mut rng = rng(33);
        for (rows, width, cap) in [(1, 1027, 30.0), (5, 256, 30.0), (3, 100, 2.5)] {
            check_softcap(path, ctx, &kernel, &mut rng, rows, width, cap);
        }
        let a = upload(ctx, &[0.0; 32]);
        let b = upload(ctx, &[0.0; 32]);
        assert!(
            bind(&kernel, ctx, ElementwiseOp::Softcap(0.0), &a, &b, 1, 32).is_err(),
            "zero cap"
        );
        assert!(
            bind(&kernel, ctx, ElementwiseOp::Softcap(30.0), &a, &a, 1, 32).is_err(),
            "in place"
        );
    }
}

#[test]
fn residual_add_gated_and_plain_activations_match_the_cpu() {
    for (path, ctx) in contexts() {
        let kernel = Elementwise::new(ctx).unwrap();
        let mut rng = rng(31);
        for (rows, width) in [(1, 896), (7, 4864), (33, 100), (2, 3)] {
            check_add(path, ctx, &kernel, &mut rng, rows, width);
            for act in [Activation::Silu, Activation::GeluTanh, Activation::Gelu] {
                check_gated(path, ctx, &kernel, &mut rng, act, rows, width);
                if width >= 4 {
                    check_plain(path, ctx, &kernel, &mut rng, act, rows, width);
                }
            }
        }
    }
}

#[test]
fn more_workgroups_than_one_grid_dimension() {
    for (path, ctx) in contexts() {
        let mut small = ctx.clone();
        small.limits.max_compute_workgroups_per_dimension = 3;
        let kernel = Elementwise::new(&small).unwrap();
        let mut rng = rng(32);
        // 7 × 300 = 2100 values: 9 workgroups on a 3 × 3 grid; 5 × 300: 6 on 3 × 2.
        for rows in [7, 5] {
            check_add(path, &small, &kernel, &mut rng, rows, 300);
            check_gated(path, &small, &kernel, &mut rng, Activation::Silu, rows, 300);
        }
    }
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let (_, ctx) = &contexts()[0];
    let kernel = Elementwise::new(ctx).unwrap();
    let a = upload(ctx, &[0.0; 64]);
    let b = upload(ctx, &[0.0; 32]);
    assert!(bind(&kernel, ctx, ElementwiseOp::Add, &b, &a, 1, 32).is_ok());
    assert!(bind(&kernel, ctx, ElementwiseOp::Add, &b, &a, 2, 32).is_err(), "b too small");
    assert!(bind(&kernel, ctx, ElementwiseOp::Add, &a, &a, 1, 32).is_err(), "a aliases b");
    assert!(
        bind(&kernel, ctx, ElementwiseOp::Gated(Activation::Silu), &b, &a, 1, 32).is_err(),
        "gate_up too small"
    );
    assert!(bind(&kernel, ctx, ElementwiseOp::Gated(Activation::Silu), &a, &b, 1, 32).is_ok());
    assert!(
        bind(&kernel, ctx, ElementwiseOp::Gated(Activation::GeluTanh), &a, &b, 1, 0).is_err(),
        "zero width"
    );
    assert!(
        bind(&kernel, ctx, ElementwiseOp::Plain(Activation::GeluTanh), &b, &a, 2, 32).is_err(),
        "input too small"
    );
    assert!(bind(&kernel, ctx, ElementwiseOp::Plain(Activation::GeluTanh), &b, &a, 1, 32).is_ok());
    let mut bound = bind(&kernel, ctx, ElementwiseOp::Add, &b, &a, 1, 32).unwrap();
    assert!(bound.set_step(&ctx.queue, Step::rows(2)).is_err(), "more rows than bound");
}

#[test]
fn random_shapes_match_the_cpu_reference() {
    let (seed, cases) = random_run("elementwise");
    let mut draw = rng(seed);
    for i in 0..cases {
        let rows = if draw.random_bool(0.3) { 1 } else { draw.random_range(2..=40) };
        let width = draw.random_range(1..=5000);
        let op = match draw.random_range(0..8) {
            0 => ElementwiseOp::Add,
            1 => ElementwiseOp::Gated(Activation::Silu),
            2 => ElementwiseOp::Gated(Activation::GeluTanh),
            3 => ElementwiseOp::Plain(Activation::Silu),
            4 => ElementwiseOp::Plain(Activation::GeluTanh),
            5 => ElementwiseOp::Gated(Activation::Gelu),
            6 => ElementwiseOp::Plain(Activation::Gelu),
            _ => ElementwiseOp::Softcap(draw.random_range(0.5..50.0)),
        };
        shout(&format!("case {i}: {op:?}, {rows} rows of {width}"));
        for (path, ctx) in contexts() {
            let kernel = Elementwise::new(ctx).unwrap();
            let mut rng = rng(seed + i as u64);
            match op {
                ElementwiseOp::Add => check_add(path, ctx, &kernel, &mut rng, rows, width),
                ElementwiseOp::Gated(act) => {
                    check_gated(path, ctx, &kernel, &mut rng, act, rows, width.max(4))
                }
                ElementwiseOp::Plain(act) => {
                    check_plain(path, ctx, &kernel, &mut rng, act, rows, width.max(4))
                }
                ElementwiseOp::Softcap(cap) => {
                    check_softcap(path, ctx, &kernel, &mut rng, rows, width.max(3), cap)
                }
            }
        }
    }
}
