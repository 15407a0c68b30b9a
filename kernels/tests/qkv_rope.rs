//! The decode qkv product with the rope epilogue (`QkvRope`) against the CPU
//! ops it fuses: `rms_norm`, `matmul` (+ bias), the optional per-head q/k norm,
//! the rotation and the KV append (as `rope_append` does them), on the
//! portable and subgroup paths; and the fallback where the device binds too
//! few storage buffers (WebGPU's default limits).

mod common;

use common::{TestWeight, assert_close, contexts, encode, random_vec, rng, shout, upload};
use mlc_kernels::cpu::{self, KvLayout, Rope};
use mlc_kernels::{
    FloatFormat, GpuContext, Kernel, KernelError, QkNorm, QkvRope, QkvRopeBuffers, RopeShape,
    RopeTable, Step, WeightFormat,
};
use rand::Rng;
use rand::rngs::StdRng;

#[derive(Clone, Copy, Debug)]
struct Case {
    format: WeightFormat,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    rotary_dim: usize,
    /// Hidden size K (a multiple of 32).
    k: usize,
    bias: bool,
    qk_norm: bool,
    position: usize,
}

fn check(ctx: &GpuContext, path: &str, kernel: &QkvRope, case: Case, rng: &mut StdRng) {
    let Case { format, heads, kv_heads, head_dim: d, rotary_dim, k, bias, qk_norm, position } =
        case;
    let what = format!("{path} {case:?}");
    let dtype = format.dtype();
    let slots = heads + 2 * kv_heads;
    let n = slots * d;
    let capacity = position + 3;
    let layout = KvLayout { kv_heads, capacity, head_dim: d };

    let weight = TestWeight::random(rng, format, n, k);
    // An offset keeps the mean square away from 0, as in a residual stream.
    let x: Vec<f32> = random_vec(rng, k, 2.0).iter().map(|v| v + 0.5).collect();
    let (norm_bytes, norm) = encode(&random_vec(rng, k, 1.0), dtype);
    let (bias_bytes, bias_values) = encode(&random_vec(rng, n, 0.5), dtype);
    let (q_norm_bytes, q_norm) = encode(&random_vec(rng, d, 1.5), dtype);
    let (k_norm_bytes, k_norm) = encode(&random_vec(rng, d, 1.5), dtype);
    // Other positions hold data the kernel must not touch.
    let k_before = random_vec(rng, kv_heads * capacity * d, 1.0);
    let v_before = random_vec(rng, kv_heads * capacity * d, 1.0);
    let eps = 1e-6;
    let rope = Rope::new(1_000_000.0, rotary_dim, None);

    // CPU reference: the separate ops.
    let mut normed = vec![0.0; k];
    cpu::rms_norm(&x, &norm, eps, &mut normed);
    let mut qkv = vec![0.0; n];
    cpu::matmul(&normed, 1, &weight.cpu(), &mut qkv);
    if bias {
        qkv.iter_mut().zip(&bias_values).for_each(|(y, b)| *y += b);
    }
    let mut q = qkv[..heads * d].to_vec();
    let mut keys = qkv[heads * d..][..kv_heads * d].to_vec();
    if qk_norm {
        for head in q.chunks_mut(d) {
            let raw = head.to_vec();
            cpu::rms_norm(&raw, &q_norm, eps, head);
        }
        for head in keys.chunks_mut(d) {
            let raw = head.to_vec();
            cpu::rms_norm(&raw, &k_norm, eps, head);
        }
    }
    rope.apply(&mut q, d, position);
    rope.apply(&mut keys, d, position);
    let (mut k_want, mut v_want) = (k_before.clone(), v_before.clone());
    for g in 0..kv_heads {
        let at = layout.offset(g, position);
        k_want[at..at + d].copy_from_slice(&keys[g * d..][..d]);
        v_want[at..at + d].copy_from_slice(&qkv[(heads + kv_heads + g) * d..][..d]);
    }

    // GPU.
    let gpu_weight = weight.upload(ctx);
    let x_buffer = upload(ctx, &x);
    let norm_buffer = ctx.storage_buffer("norm", &norm_bytes);
    let bias_buffer = ctx.storage_buffer("bias", &bias_bytes);
    let q_norm_buffer = ctx.storage_buffer("q_norm", &q_norm_bytes);
    let k_norm_buffer = ctx.storage_buffer("k_norm", &k_norm_bytes);
    let q_out = upload(ctx, &vec![-1e30; heads * d]);
    let k_cache = upload(ctx, &k_before);
    let v_cache = upload(ctx, &v_before);
    let table = RopeTable::new(ctx, &rope, capacity).unwrap();
    let norms = (&q_norm_buffer, &k_norm_buffer);
    let qk = match (qk_norm, dtype) {
        (false, _) => QkNorm::None,
        (true, FloatFormat::F32) => QkNorm::F32 { q: norms.0, k: norms.1, eps },
        (true, FloatFormat::F16) => QkNorm::F16 { q: norms.0, k: norms.1, eps },
    };
    let buffers = QkvRopeBuffers {
        x: &x_buffer,
        norm_weight: &norm_buffer,
        norm_eps: eps,
        weight: gpu_weight.weight(),
        bias: bias.then_some(&bias_buffer),
        q_out: &q_out,
        k_cache: &k_cache,
        v_cache: &v_cache,
        table: &table,
        qk_norm: qk,
    };
    let shape = RopeShape { heads, kv_heads, head_dim: d, capacity };
    assert!(kernel.supports(&buffers.weight, &shape), "{what}: supported");
    let mut bound = kernel.bind(ctx, &buffers, &shape).unwrap();
    bound.run(ctx, Step::at(1, position)).unwrap();

    let q_got = ctx.read_f32(&q_out, q.len()).unwrap();
    let k_got = ctx.read_f32(&k_cache, k_want.len()).unwrap();
    let v_got = ctx.read_f32(&v_cache, v_want.len()).unwrap();
    // The sums run in another order than the reference's (as the matmul tests allow).
    assert_close(&format!("{what} q"), &q_got, &q, 2e-5, 1e-5);
    assert_close(&format!("{what} k cache"), &k_got, &k_want, 2e-5, 1e-5);
    assert_close(&format!("{what} v cache"), &v_got, &v_want, 2e-5, 1e-5);
}

/// Runs `cases` on every path whose device binds the kernel's buffers, and
/// checks that the one under WebGPU's default limits refuses it.
fn run_cases(cases: &[Case], rng: &mut StdRng) {
    for (path, ctx) in contexts() {
        if *path == "webgpu-limits" {
            assert!(!QkvRope::available(ctx), "11 storage buffers exceed WebGPU's default 8");
            let format = WeightFormat::Q4(FloatFormat::F32);
            assert!(matches!(QkvRope::new(ctx, format), Err(KernelError::InvalidArguments(_))));
            continue;
        }
        assert!(QkvRope::available(ctx), "{path}: the adapter binds 11 storage buffers");
        let mut kernels: Vec<(WeightFormat, QkvRope)> = Vec::new();
        for case in cases {
            if !kernels.iter().any(|(format, _)| *format == case.format) {
                kernels.push((case.format, QkvRope::new(ctx, case.format).unwrap()));
            }
            let kernel = &kernels.iter().find(|(format, _)| *format == case.format).unwrap().1;
            check(ctx, path, kernel, *case, rng);
        }
    }
}

#[test]
fn fused_decode_matches_the_separate_ops() {
    let q4 = WeightFormat::Q4(FloatFormat::F16);
    let cases = [
        // Qwen2.5-0.5B: 14 q heads, 2 kv heads of 64, bias.
        Case {
            format: q4,
            heads: 14,
            kv_heads: 2,
            head_dim: 64,
            rotary_dim: 64,
            k: 896,
            bias: true,
            qk_norm: false,
            position: 37,
        },
        // Qwen3: per-head q/k norm (f16 weights), head 128, no bias.
        Case {
            format: q4,
            heads: 4,
            kv_heads: 2,
            head_dim: 128,
            rotary_dim: 128,
            k: 256,
            bias: false,
            qk_norm: true,
            position: 0,
        },
        // f32 q/k norm weights, a partial rotary part, a dense weight.
        Case {
            format: WeightFormat::Dense(FloatFormat::F32),
            heads: 6,
            kv_heads: 2,
            head_dim: 64,
            rotary_dim: 48,
            k: 128,
            bias: true,
            qk_norm: true,
            position: 4000,
        },
        // The largest head, f16 dense, q4f32.
        Case {
            format: WeightFormat::Dense(FloatFormat::F16),
            heads: 2,
            kv_heads: 1,
            head_dim: 256,
            rotary_dim: 256,
            k: 64,
            bias: false,
            qk_norm: false,
            position: 5,
        },
        Case {
            format: WeightFormat::Q4(FloatFormat::F32),
            heads: 8,
            kv_heads: 8,
            head_dim: 96,
            rotary_dim: 32,
            k: 3072,
            bias: true,
            qk_norm: false,
            position: 1,
        },
    ];
    run_cases(&cases, &mut rng(404));
}

#[test]
fn random_shapes_match_the_separate_ops() {
    let (seed, count) = common::random_run("qkv_rope");
    let mut draw = rng(seed);
    let formats = [
        WeightFormat::Q4(FloatFormat::F16),
        WeightFormat::Q4(FloatFormat::F32),
        WeightFormat::Dense(FloatFormat::F16),
        WeightFormat::Dense(FloatFormat::F32),
    ];
    let cases: Vec<Case> = (0..count)
        .map(|_| {
            let kv_heads = draw.random_range(1..=4);
            // Any head size (odd ones too) with a rotary part of any even width in it.
            let head_dim = draw.random_range(2..=256);
            Case {
                format: formats[draw.random_range(0..formats.len())],
                heads: kv_heads * draw.random_range(1..=6),
                kv_heads,
                head_dim,
                rotary_dim: 2 * draw.random_range(1..=head_dim / 2),
                k: 32 * draw.random_range(1..=48),
                bias: draw.random_bool(0.5),
                qk_norm: draw.random_bool(0.5),
                position: draw.random_range(0..=5000),
            }
        })
        .collect();
    for (i, case) in cases.iter().enumerate() {
        shout(&format!("case {i}: {case:?}"));
    }
    run_cases(&cases, &mut draw);
}

fn invalid<T>(result: Result<T, KernelError>) -> bool {
    matches!(result, Err(KernelError::InvalidArguments(_)))
}

#[test]
fn fused_decode_checks_its_shape_and_takes_one_token() {
    let (_, ctx) = &contexts()[0];
    let format = WeightFormat::Dense(FloatFormat::F32);
    let kernel = QkvRope::new(ctx, format).unwrap();
    let weight = TestWeight::random(&mut rng(1), format, 4 * 16, 32).upload(ctx);
    let table = RopeTable::new(ctx, &Rope::new(10_000.0, 16, None), 8).unwrap();
    let x = ctx.empty_storage_buffer("x", 32 * 4);
    let norm = ctx.empty_storage_buffer("norm", 32 * 4);
    let q_out = ctx.empty_storage_buffer("q", 2 * 16 * 4);
    let k_cache = ctx.empty_storage_buffer("k cache", 16 * 8 * 4);
    let v_cache = ctx.empty_storage_buffer("v cache", 16 * 8 * 4);
    let buffers = |q_out| QkvRopeBuffers {
        x: &x,
        norm_weight: &norm,
        norm_eps: 1e-6,
        weight: weight.weight(),
        bias: None,
        q_out,
        k_cache: &k_cache,
        v_cache: &v_cache,
        table: &table,
        qk_norm: QkNorm::None,
    };
    let shape = RopeShape { heads: 2, kv_heads: 1, head_dim: 16, capacity: 8 };
    assert!(invalid(kernel.bind(ctx, &buffers(&q_out), &RopeShape { heads: 3, ..shape })), "rows");
    assert!(
        invalid(kernel.bind(ctx, &buffers(&q_out), &RopeShape { capacity: 9, ..shape })),
        "table too short"
    );
    assert!(invalid(kernel.bind(ctx, &buffers(&x), &shape)), "q_out aliases x");
    let mut bound = kernel.bind(ctx, &buffers(&q_out), &shape).unwrap();
    assert!(invalid(bound.set_step(&ctx.queue, Step::at(2, 0))), "a prefill step");
    assert!(invalid(bound.set_step(&ctx.queue, Step::at(1, 8))), "past the capacity");
    bound.set_step(&ctx.queue, Step::at(1, 7)).unwrap();
}
