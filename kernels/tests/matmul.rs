//! `Matmul` against `cpu::matmul` on both paths, for every weight format, the
//! decode and prefill kernels, the bias / residual epilogues, split weights,
//! the 2-D workgroup grid and argument errors; and the decode products whose
//! input (an RMSNorm, a gated activation) is computed inside the kernel.

mod common;

use common::{TestWeight, assert_close, contexts, encode, random_vec, rng, shout, upload};
use mlc_kernels::matmul::COOP_MATVEC_MAX_ROWS;
use mlc_kernels::{
    Activation, FloatFormat, GpuContext, Kernel, Matmul, MatmulBuffers, MatmulInput, MatmulShape,
    Residual, Step, WeightFormat, cpu,
};
use rand::Rng;
use rand::rngs::StdRng;

/// Error bound relative to max |y|: every kernel computes in f32 and decodes
/// the weights exactly, so only the summation order differs from the CPU
/// reference.
const REL: f32 = 1e-4;
const ABS: f32 = 1e-5;

const FORMATS: [WeightFormat; 4] = [
    WeightFormat::Q4(FloatFormat::F16),
    WeightFormat::Q4(FloatFormat::F32),
    WeightFormat::Dense(FloatFormat::F16),
    WeightFormat::Dense(FloatFormat::F32),
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Extra {
    None,
    InPlace,
    Buffer,
}

#[derive(Debug, Clone, Copy)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    bias: bool,
    residual: Extra,
}

const fn case(m: usize, n: usize, k: usize, bias: bool, residual: Extra) -> Case {
    Case { m, n, k, bias, residual }
}

/// `x · Wᵀ` for `m` rows as `kernel` computes a step of `m` rows: the CPU
/// reference, or for a prefill on cooperative matrices the same product of x
/// and W rounded to f16 (what the tensor cores multiply), summed in f64; that
/// path's distance from the unrounded reference is printed, not asserted.
fn product_reference(kernel: &Matmul, x: &[f32], m: usize, weight: &cpu::Weight<'_>) -> Vec<f32> {
    let (n, k) = (weight.rows(), weight.cols());
    let mut exact = vec![0.0; m * n];
    cpu::matmul(x, m, weight, &mut exact);
    // A few rows run the matrix × vector kernel, in f32 like the reference.
    if !kernel.uses_cooperative_matrix() || m <= COOP_MATVEC_MAX_ROWS as usize {
        return exact;
    }
    let half = |v: f32| half::f16::from_f32(v).to_f64();
    let mut row = vec![0.0; k];
    let mut rounded = vec![0.0; m * n];
    for j in 0..n {
        weight.row(j, &mut row);
        let w: Vec<f64> = row.iter().map(|&v| half(v)).collect();
        for i in 0..m {
            let sum: f64 = x[i * k..(i + 1) * k].iter().zip(&w).map(|(&a, b)| half(a) * b).sum();
            rounded[i * n + j] = sum as f32;
        }
    }
    let scale = exact.iter().fold(0.0f32, |a, v| a.max(v.abs())).max(f32::MIN_POSITIVE);
    let worst = exact.iter().zip(&rounded).fold(0.0f32, |a, (e, r)| a.max((e - r).abs()));
    shout(&format!(
        "cooperative matrices, {m}×{n}×{k}: f16 inputs move the product by {:.2e} of max |y|",
        worst / scale
    ));
    rounded
}

/// Runs one product on the GPU (bound for `max_rows ≥ m` rows) and compares it
/// with the CPU reference plus the epilogue.
fn check(
    path: &str,
    ctx: &GpuContext,
    kernel: &Matmul,
    rng: &mut StdRng,
    c: Case,
    max_rows: usize,
) -> usize {
    let what = format!("{path} {:?} {c:?}", kernel.format());
    let weight = TestWeight::random(rng, kernel.format(), c.n, c.k);
    let x = random_vec(rng, c.m * c.k, 1.0);
    let (bias_bytes, bias) = encode(&random_vec(rng, c.n, 0.5), kernel.format().dtype());
    let residual = random_vec(rng, c.m * c.n, 1.0);

    let mut want = product_reference(kernel, &x, c.m, &weight.cpu());
    for (i, y) in want.iter_mut().enumerate() {
        if c.bias {
            *y += bias[i % c.n];
        }
        if c.residual != Extra::None {
            *y += residual[i];
        }
    }

    let mut x_padded = x.clone();
    x_padded.resize(max_rows * c.k, 0.0);
    let x_buffer = upload(ctx, &x_padded);
    let gpu_weight = weight.upload(ctx);
    let bias_buffer = ctx.storage_buffer("bias", &bias_bytes);
    let mut y_init =
        if c.residual == Extra::InPlace { residual.clone() } else { vec![-1e30; c.m * c.n] };
    y_init.resize(max_rows * c.n, -1e30);
    let y = upload(ctx, &y_init);
    let mut residual_padded = residual.clone();
    residual_padded.resize(max_rows * c.n, 0.0);
    let residual_buffer = upload(ctx, &residual_padded);
    let buffers = MatmulBuffers {
        x: &x_buffer,
        input: MatmulInput::Direct,
        weight: gpu_weight.weight(),
        bias: c.bias.then_some(&bias_buffer),
        residual: match c.residual {
            Extra::None => Residual::None,
            Extra::InPlace => Residual::InPlace,
            Extra::Buffer => Residual::Buffer(&residual_buffer),
        },
        y: &y,
    };
    let mut bound = kernel
        .bind(ctx, &buffers, &MatmulShape { max_rows: max_rows as u32 })
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    bound.run(ctx, Step::rows(c.m)).unwrap();
    let got = ctx.read_f32(&y, max_rows * c.n).unwrap();
    assert_close(&what, &got[..c.m * c.n], &want, REL, ABS);
    // Rows past the step's row count are untouched.
    assert!(got[c.m * c.n..].iter().all(|&v| v == -1e30), "{what}: wrote past row {}", c.m);
    bound.parts()
}

/// The kernels of both paths for `format`; checks the fast one uses what the adapter offers.
fn kernels(format: WeightFormat) -> Vec<(&'static str, &'static GpuContext, Matmul)> {
    contexts()
        .iter()
        .map(|(path, ctx)| {
            let kernel =
                Matmul::new(ctx, format).unwrap_or_else(|e| panic!("{path} {format:?}: {e}"));
            assert_eq!(kernel.uses_subgroups(), ctx.caps.subgroups);
            assert_eq!(kernel.uses_cooperative_matrix(), ctx.caps.cooperative_matrix);
            (*path, ctx, kernel)
        })
        .collect()
}

#[test]
fn q4f16_real_decode_shapes() {
    // Qwen2.5-0.5B: qkv (with its bias), gate_up, down (+ the residual in place);
    // then a vocabulary-sized row count over a short K, which the subgroup
    // kernel takes 8 rows a thread (the last set partial), for one row and
    // for a few.
    let cases = [
        case(1, 1152, 896, true, Extra::None),
        case(1, 9728, 896, false, Extra::None),
        case(1, 896, 4864, false, Extra::InPlace),
        case(1, 32768 + 37, 96, false, Extra::None),
        case(3, 32768 + 5, 64, true, Extra::None),
    ];
    for (path, ctx, kernel) in kernels(WeightFormat::Q4(FloatFormat::F16)) {
        let mut rng = rng(1);
        for c in cases {
            check(path, ctx, &kernel, &mut rng, c, c.m);
        }
    }
}

#[test]
fn q4f16_prefill_shapes() {
    let cases = [
        case(2, 61, 64, false, Extra::None),
        case(7, 130, 896, true, Extra::InPlace),
        // Few blocks: K split sixteen ways (a batched decode step's q/k/v
        // and down_proj).
        case(33, 1152, 896, true, Extra::Buffer),
        case(33, 96, 4864, false, Extra::InPlace),
        // 33 blocks: four ways.
        case(20, 4200, 96, false, Extra::None),
        // The tensor-core kernel's thin blocks (a batched decode step of 8
        // to 32 rows): q/k/v and down_proj split sixteen ways, a full block
        // and its fewest rows.
        case(32, 1152, 896, true, Extra::Buffer),
        case(8, 1152, 896, true, Extra::Buffer),
        case(32, 896, 4864, false, Extra::InPlace),
        // Enough output blocks not to split K, with a partial last block in
        // both m and n.
        case(129, 8200, 64, true, Extra::Buffer),
        // Few blocks, but partial sums too large to split K.
        case(200, 4000, 32, false, Extra::InPlace),
    ];
    for (path, ctx, kernel) in kernels(WeightFormat::Q4(FloatFormat::F16)) {
        let mut rng = rng(2);
        for c in cases {
            check(path, ctx, &kernel, &mut rng, c, c.m + 3);
        }
    }
}

#[test]
fn every_format_and_epilogue() {
    // Odd N, N not a multiple of the rows per workgroup or of the 64-wide tile.
    let cases = [
        case(1, 37, 32, false, Extra::None),
        case(1, 301, 64, true, Extra::InPlace),
        case(1, 70, 96, false, Extra::Buffer),
        case(2, 61, 64, true, Extra::None),
        case(7, 130, 96, false, Extra::Buffer),
        case(33, 65, 128, true, Extra::InPlace),
        // Enough rows for the decode kernel's 4-rows-per-thread variant, for
        // one row of x and for a few.
        case(1, 8197, 32, true, Extra::InPlace),
        case(6, 8197, 64, true, Extra::Buffer),
        // K long enough to be split, in uneven runs (130 steps of 16 over 4
        // splits), with the bias and residual added by the sum of the splits
        // (more rows than the matrix × vector kernel takes); and to take the
        // long-K decode kernel, for one row and for a few.
        case(37, 70, 2080, true, Extra::Buffer),
        case(1, 71, 2080, true, Extra::InPlace),
        case(5, 70, 2080, true, Extra::Buffer),
        // The most rows the matrix × vector kernel takes, and one more:
        // beside cooperative matrices, and without them.
        case(7, 130, 96, false, Extra::InPlace),
        case(8, 130, 96, false, Extra::None),
        case(16, 130, 96, false, Extra::InPlace),
        case(17, 130, 96, false, Extra::None),
    ];
    for format in FORMATS {
        for (path, ctx, kernel) in kernels(format) {
            let mut rng = rng(3);
            for c in cases {
                check(path, ctx, &kernel, &mut rng, c, c.m + 1);
            }
        }
    }
}

#[test]
fn random_shapes_formats_and_epilogues_match_the_cpu_reference() {
    let (seed, cases) = common::random_run("matmul");
    let all: Vec<_> = FORMATS.into_iter().map(|format| (format, kernels(format))).collect();
    let mut draw = rng(seed);
    for i in 0..cases {
        let (format, kernels) = &all[draw.random_range(0..all.len())];
        let c = case(
            draw.random_range(1..=40),
            draw.random_range(1..=700),
            32 * draw.random_range(1..=40),
            draw.random_bool(0.5),
            [Extra::None, Extra::InPlace, Extra::Buffer][draw.random_range(0..3)],
        );
        let max_rows = c.m + draw.random_range(0..4);
        shout(&format!("case {i}: {format:?} {c:?}, bound for {max_rows} rows"));
        for (path, ctx, kernel) in kernels {
            check(path, ctx, kernel, &mut rng(seed + i as u64), c, max_rows);
        }
    }
}

#[test]
fn weights_above_the_binding_limit_are_split_by_rows() {
    // A tiny split size stands in for 128 MiB: with K = 64 a q4 row takes 32
    // bytes of codes and 4 of f16 scales, and offsets must stay 256-aligned,
    // so parts hold multiples of 64 rows.
    for format in [
        WeightFormat::Q4(FloatFormat::F16),
        WeightFormat::Q4(FloatFormat::F32),
        WeightFormat::Dense(FloatFormat::F32),
    ] {
        for (path, ctx, mut kernel) in kernels(format) {
            kernel.set_weight_split_bytes(4096);
            let mut rng = rng(4);
            for c in [case(1, 300, 64, true, Extra::InPlace), case(5, 300, 64, true, Extra::Buffer)]
            {
                let parts = check(path, ctx, &kernel, &mut rng, c, c.m);
                assert!(
                    parts >= 3,
                    "{path} {format:?}: expected a split weight, got {parts} part(s)"
                );
            }
        }
    }
}

#[test]
fn more_workgroups_than_one_grid_dimension() {
    // Pretend the device allows 3 workgroups per dimension so that the 2-D grid
    // and the shaders' linear workgroup numbering are exercised at small sizes.
    for (path, ctx) in contexts() {
        let mut small = ctx.clone();
        small.limits.max_compute_workgroups_per_dimension = 3;
        let kernel = Matmul::new(&small, WeightFormat::Q4(FloatFormat::F16)).unwrap();
        let mut rng = rng(5);
        for c in [case(1, 301, 64, true, Extra::None), case(70, 150, 64, false, Extra::InPlace)] {
            check(path, &small, &kernel, &mut rng, c, c.m);
        }
    }
}

#[test]
fn one_binding_serves_decode_and_prefill() {
    let (n, k, max_rows) = (77, 96, 9);
    for (path, ctx, kernel) in kernels(WeightFormat::Q4(FloatFormat::F16)) {
        let mut rng = rng(6);
        let weight = TestWeight::random(&mut rng, kernel.format(), n, k);
        let x = random_vec(&mut rng, max_rows * k, 1.0);
        let (x_buffer, gpu_weight, y) =
            (upload(ctx, &x), weight.upload(ctx), upload(ctx, &vec![0.0; max_rows * n]));
        let buffers = MatmulBuffers {
            x: &x_buffer,
            input: MatmulInput::Direct,
            weight: gpu_weight.weight(),
            bias: None,
            residual: Residual::None,
            y: &y,
        };
        let mut bound =
            kernel.bind(ctx, &buffers, &MatmulShape { max_rows: max_rows as u32 }).unwrap();
        for rows in [1, max_rows, 1, 4] {
            bound.run(ctx, Step::rows(rows)).unwrap();
            let got = ctx.read_f32(&y, rows * n).unwrap();
            let want = product_reference(&kernel, &x[..rows * k], rows, &weight.cpu());
            assert_close(&format!("{path} rows {rows}"), &got, &want, REL, ABS);
        }
    }
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let (path, ctx) = &contexts()[0];
    let kernel = Matmul::new(ctx, WeightFormat::Q4(FloatFormat::F16)).unwrap();
    let mut rng = rng(7);
    let weight = TestWeight::random(&mut rng, kernel.format(), 40, 64);
    let gpu_weight = weight.upload(ctx);
    let x = upload(ctx, &vec![0.0; 2 * 64]);
    let y = upload(ctx, &vec![0.0; 2 * 40]);
    let small = upload(ctx, &[0.0; 8]);
    let ok = MatmulBuffers {
        x: &x,
        input: MatmulInput::Direct,
        weight: gpu_weight.weight(),
        bias: None,
        residual: Residual::None,
        y: &y,
    };
    assert!(
        kernel.bind(ctx, &ok, &MatmulShape { max_rows: 2 }).is_ok(),
        "{path}: the valid binding failed"
    );

    let mut ragged = gpu_weight.weight();
    ragged.cols = 48;
    let with_bias = MatmulBuffers { bias: Some(&small), ..ok };
    let aliased = MatmulBuffers { y: &x, ..ok };
    let mut no_scales = gpu_weight.weight();
    no_scales.scales = None;
    let mut too_many_rows = gpu_weight.weight();
    too_many_rows.rows = 41;
    let mut other_format = gpu_weight.weight();
    other_format.format = WeightFormat::Q4(FloatFormat::F32);
    let failures: [(&str, MatmulBuffers, u32); 9] = [
        ("a weight of another format", MatmulBuffers { weight: other_format, ..ok }, 2),
        ("K not a multiple of 32", MatmulBuffers { weight: ragged, ..ok }, 2),
        ("x too small", ok, 3),
        ("bias too small", with_bias, 2),
        ("y aliases x", aliased, 2),
        ("q4 without scales", MatmulBuffers { weight: no_scales, ..ok }, 2),
        ("weight data too small", MatmulBuffers { weight: too_many_rows, ..ok }, 1),
        ("residual too small", MatmulBuffers { residual: Residual::Buffer(&small), ..ok }, 2),
        ("zero rows", ok, 0),
    ];
    for (why, buffers, rows) in failures {
        match kernel.bind(ctx, &buffers, &MatmulShape { max_rows: rows }) {
            Err(mlc_kernels::KernelError::InvalidArguments(message)) => {
                eprintln!("{why}: {message}")
            }
            Err(other) => panic!("{why}: wrong error {other}"),
            Ok(_) => panic!("{why}: accepted"),
        }
    }
    let mut bound = kernel.bind(ctx, &ok, &MatmulShape { max_rows: 2 }).unwrap();
    assert!(bound.set_step(&ctx.queue, Step::rows(3)).is_err(), "more rows than bound");
    assert!(bound.run(ctx, Step::rows(2)).is_ok());
}

/// Rough decode / prefill throughput on the current adapter (not run by
/// default: `cargo test --test matmul -- --ignored --nocapture`). Prints, for
/// each path, the time per dispatch and the weight bytes read per second.
#[test]
#[ignore]
fn throughput() {
    use std::time::Instant;
    let shapes = [
        (1, 1152, 896),
        (1, 9728, 896),
        (1, 896, 4864),
        (1, 151_936, 896),
        (256, 9728, 896),
        (256, 896, 4864),
        (512, 1152, 896),
        (512, 896, 896),
        (512, 9728, 896),
        (512, 896, 4864),
    ];
    for (path, ctx) in contexts() {
        eprintln!("{path}: {} {:?}", ctx.adapter_info.name, ctx.caps);
        let kernel = Matmul::new(ctx, WeightFormat::Q4(FloatFormat::F16)).unwrap();
        let mut rng = rng(8);
        for (m, n, k) in shapes {
            let weight = TestWeight::random(&mut rng, kernel.format(), n, k);
            let gpu_weight = weight.upload(ctx);
            let x = upload(ctx, &random_vec(&mut rng, m * k, 1.0));
            let y = upload(ctx, &vec![0.0; m * n]);
            let buffers = MatmulBuffers {
                x: &x,
                input: MatmulInput::Direct,
                weight: gpu_weight.weight(),
                bias: None,
                residual: Residual::None,
                y: &y,
            };
            let mut bound =
                kernel.bind(ctx, &buffers, &MatmulShape { max_rows: m as u32 }).unwrap();
            bound.set_step(&ctx.queue, Step::rows(m)).unwrap();
            let repeats = if m == 1 { 200 } else { 20 };
            let time = |repeats: usize| {
                let start = Instant::now();
                let mut encoder = ctx.device.create_command_encoder(&Default::default());
                {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    for _ in 0..repeats {
                        bound.dispatch(&mut pass);
                    }
                }
                ctx.queue.submit([encoder.finish()]);
                ctx.read_f32(&y, 1).unwrap();
                start.elapsed().as_secs_f64()
            };
            time(2); // warm-up
            let seconds = (time(repeats + 1) - time(1)) / repeats as f64;
            let bytes = (weight.data.len() + weight.scale_bytes.len()) as f64;
            eprintln!(
                "  q4f16 {m:>4} × {k:>5} → {n:>6}: {:>8.1} µs/dispatch, {:>7.1} GB/s of weights, {:>7.2} TFLOP/s",
                seconds * 1e6,
                bytes / seconds / 1e9,
                2.0 * (m * n * k) as f64 / seconds / 1e12
            );
        }
    }
}

/// Binds `buffers` for one row, runs the product and compares `y` with `want`.
fn run_decode_and_compare(
    ctx: &GpuContext,
    kernel: &Matmul,
    buffers: &MatmulBuffers<'_>,
    what: &str,
    want: &[f32],
) {
    let mut bound = kernel
        .bind(ctx, buffers, &MatmulShape { max_rows: 1 })
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    bound.run(ctx, Step::rows(1)).unwrap();
    assert_close(what, &ctx.read_f32(buffers.y, want.len()).unwrap(), want, REL, ABS);
}

/// A decode product whose input is `rms_norm(x)` computed inside the kernel,
/// against the separate CPU ops.
fn check_normed(
    path: &str,
    ctx: &GpuContext,
    kernel: &Matmul,
    rng: &mut StdRng,
    n: usize,
    k: usize,
) {
    let format = kernel.format();
    let what = format!("{path} {format:?} normed {n}x{k}");
    let weight = TestWeight::random(rng, format, n, k);
    // An offset keeps the mean square away from 0, as in a residual stream.
    let x: Vec<f32> = random_vec(rng, k, 2.0).iter().map(|v| v + 0.5).collect();
    let (norm_bytes, norm) = encode(&random_vec(rng, k, 1.0), format.dtype());
    let eps = 1e-6;
    let mut normed = vec![0.0; k];
    cpu::rms_norm(&x, &norm, eps, &mut normed);
    let mut want = vec![0.0; n];
    cpu::matmul(&normed, 1, &weight.cpu(), &mut want);

    let norm_buffer = ctx.storage_buffer("norm", &norm_bytes);
    let (x_buffer, y) = (upload(ctx, &x), upload(ctx, &vec![-1e30; n]));
    let gpu_weight = weight.upload(ctx);
    let buffers = MatmulBuffers {
        x: &x_buffer,
        input: MatmulInput::Normed { weight: &norm_buffer, eps },
        weight: gpu_weight.weight(),
        bias: None,
        residual: Residual::None,
        y: &y,
    };
    run_decode_and_compare(ctx, kernel, &buffers, &what, &want);
}

/// A decode product whose input is `activation(gate) · up` computed inside the
/// kernel, with a bias and the residual added in place, against the separate
/// CPU ops.
fn check_gated(
    path: &str,
    ctx: &GpuContext,
    kernel: &Matmul,
    rng: &mut StdRng,
    activation: Activation,
    n: usize,
    k: usize,
) {
    let format = kernel.format();
    let what = format!("{path} {format:?} {activation:?} gated {n}x{k}");
    let weight = TestWeight::random(rng, format, n, k);
    let gate_up = random_vec(rng, 2 * k, 3.0);
    let mut activated = vec![0.0; k];
    match activation {
        Activation::Silu => cpu::silu_mul(&gate_up, k, &mut activated),
        Activation::GeluTanh => cpu::gelu_tanh_mul(&gate_up, k, &mut activated),
        Activation::Gelu => cpu::gelu_erf_mul(&gate_up, k, &mut activated),
    }
    let (bias_bytes, bias) = encode(&random_vec(rng, n, 0.5), format.dtype());
    let residual = random_vec(rng, n, 1.0);
    let mut want = vec![0.0; n];
    cpu::matmul(&activated, 1, &weight.cpu(), &mut want);
    for (i, y) in want.iter_mut().enumerate() {
        *y += bias[i] + residual[i];
    }

    let (x_buffer, y) = (upload(ctx, &gate_up), upload(ctx, &residual));
    let bias_buffer = ctx.storage_buffer("bias", &bias_bytes);
    let gpu_weight = weight.upload(ctx);
    let buffers = MatmulBuffers {
        x: &x_buffer,
        input: MatmulInput::Gated(activation),
        weight: gpu_weight.weight(),
        bias: Some(&bias_buffer),
        residual: Residual::InPlace,
        y: &y,
    };
    run_decode_and_compare(ctx, kernel, &buffers, &what, &want);
}

/// `bind_decode` against the separate CPU ops: the RMSNorm before q/k/v (narrow)
/// and gate/up (wide, ≥ 8192 rows), and each activation before down_proj with
/// its bias and in-place residual add.
#[test]
fn fused_decode_inputs_match_the_separate_ops() {
    let mut rng = rng(41);
    for format in FORMATS {
        for (path, ctx, kernel) in kernels(format) {
            for (n, k) in [(1152, 896), (9728, 128)] {
                check_normed(path, ctx, &kernel, &mut rng, n, k);
            }
            for activation in [Activation::Silu, Activation::GeluTanh, Activation::Gelu] {
                check_gated(path, ctx, &kernel, &mut rng, activation, 896, 4864);
            }
        }
    }
}

#[test]
fn random_fused_decode_inputs_match_the_separate_ops() {
    let (seed, cases) = common::random_run("matmul fused inputs");
    let all: Vec<_> = FORMATS.into_iter().map(|format| (format, kernels(format))).collect();
    let mut draw = rng(seed);
    for i in 0..cases {
        let (format, kernels) = &all[draw.random_range(0..all.len())];
        // A quarter of the products wide enough for the wide variant (8192 rows up).
        let n = if draw.random_bool(0.25) {
            draw.random_range(8192..=9000)
        } else {
            draw.random_range(1..=4000)
        };
        let k = 32 * draw.random_range(1..=40);
        let input =
            [None, Some(Activation::Silu), Some(Activation::GeluTanh), Some(Activation::Gelu)]
                [draw.random_range(0..4)];
        shout(&format!(
            "case {i}: {format:?} {n}x{k}, input {}",
            input.map_or("normed".into(), |a| format!("{a:?} gated"))
        ));
        for (path, ctx, kernel) in kernels {
            let mut rng = rng(seed + i as u64);
            match input {
                None => check_normed(path, ctx, kernel, &mut rng, n, k),
                Some(activation) => check_gated(path, ctx, kernel, &mut rng, activation, n, k),
            }
        }
    }
}

#[test]
fn fused_decode_inputs_check_their_buffers_and_take_one_row() {
    let ctx = &contexts()[0].1;
    let kernel = Matmul::new(ctx, WeightFormat::Q4(FloatFormat::F16)).unwrap();
    let mut rng = rng(42);
    let weight = TestWeight::random(&mut rng, kernel.format(), 64, 64);
    let gpu_weight = weight.upload(ctx);
    let (x, y) = (upload(ctx, &[0.0; 64]), upload(ctx, &[0.0; 64]));
    let buffers = MatmulBuffers {
        x: &x,
        input: MatmulInput::Direct,
        weight: gpu_weight.weight(),
        bias: None,
        residual: Residual::None,
        y: &y,
    };
    // A gated input reads 2K values.
    let err = kernel
        .bind(
            ctx,
            &MatmulBuffers { input: MatmulInput::Gated(Activation::Silu), ..buffers },
            &MatmulShape { max_rows: 1 },
        )
        .err()
        .expect("x too short")
        .to_string();
    assert!(err.contains("matmul: x"), "{err}");
    // A norm weight shorter than K.
    let short = ctx.storage_buffer("norm", &[0u8; 64]);
    let err = kernel
        .bind(
            ctx,
            &MatmulBuffers { input: MatmulInput::Normed { weight: &short, eps: 1e-6 }, ..buffers },
            &MatmulShape { max_rows: 1 },
        )
        .err()
        .expect("norm weight too short")
        .to_string();
    assert!(err.contains("norm weight"), "{err}");
    // Bound for a decode step only.
    let norm = ctx.storage_buffer("norm", &[0u8; 128]);
    let mut bound = kernel
        .bind(
            ctx,
            &MatmulBuffers { input: MatmulInput::Normed { weight: &norm, eps: 1e-6 }, ..buffers },
            &MatmulShape { max_rows: 1 },
        )
        .unwrap();
    assert!(bound.set_step(&ctx.queue, Step::rows(2)).is_err());
}
