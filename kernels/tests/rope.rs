//! `rope_append` against `cpu::{rms_norm, Rope}`: rotated queries, rotated keys
//! and raw values appended to the cache, earlier cache positions untouched.

mod common;

use common::{
    CACHE_FORMATS, assert_caches, assert_close, contexts, encode, invalid, random_vec, rng, shout,
    upload, upload_cache,
};
use half::f16;
use mlc_kernels::cpu::{KvLayout, Llama3Scaling, Rope, YarnScaling, rms_norm};
use mlc_kernels::{
    FloatFormat, GpuContext, Kernel, QkNorm, RopeAppend, RopeBuffers, RopeShape, RopeTable, Step,
};
use rand::Rng;

#[derive(Clone, Copy, Debug)]
enum Norm {
    None,
    F32,
    F16,
}

/// The frequency rule of a case.
#[derive(Clone, Copy, Debug)]
enum Scaling {
    None,
    Llama3,
    /// Phi-3.5's LongRoPE short factors with its attention scaling.
    LongRope,
    /// Ministral 3's YaRN as TVM computes it: the two elements of a pair turn
    /// at different rates.
    Yarn,
}

#[derive(Clone, Copy, Debug)]
struct Case {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    rotary_dim: usize,
    norm: Norm,
    scaling: Scaling,
    tokens: usize,
    start: usize,
}

/// Checks `case` on `kernel`, whose cache stores `kv`.
fn check(
    ctx: &GpuContext,
    path: &str,
    (kernel, kv): (&RopeAppend, FloatFormat),
    case: Case,
    seed: u64,
) {
    let Case { heads, kv_heads, head_dim: d, rotary_dim, norm, scaling, tokens, start } = case;
    let what = format!("{path} {kv:?} cache {case:?}");
    let mut rng = rng(seed);
    let capacity = start + tokens + 3;
    let layout = KvLayout { kv_heads, capacity, head_dim: d };
    let width = (heads + 2 * kv_heads) * d;
    let qkv = random_vec(&mut rng, tokens * width, 2.0);
    // Earlier positions (and the spare ones) hold data the kernel must not touch.
    let (k_cache, k_before) =
        upload_cache(ctx, &random_vec(&mut rng, kv_heads * capacity * d, 1.0), kv);
    let (v_cache, v_before) =
        upload_cache(ctx, &random_vec(&mut rng, kv_heads * capacity * d, 1.0), kv);
    let q_weight = random_vec(&mut rng, d, 1.5);
    let k_weight = random_vec(&mut rng, d, 1.5);
    // The reference sees the weights the GPU sees (f16-rounded for the f16 case).
    let as_f16 = |w: &[f32]| w.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>();
    let (q_weight, k_weight) = match norm {
        Norm::F16 => (
            as_f16(&q_weight).iter().map(|v| v.to_f32()).collect(),
            as_f16(&k_weight).iter().map(|v| v.to_f32()).collect(),
        ),
        _ => (q_weight, k_weight),
    };
    let eps = 1e-6;
    let llama3 = Llama3Scaling {
        factor: 32.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192.0,
    };
    let rope = match scaling {
        Scaling::None => Rope::new(500_000.0, rotary_dim, None),
        Scaling::Llama3 => Rope::new(500_000.0, rotary_dim, Some(llama3)),
        Scaling::LongRope => {
            let factors: Vec<f32> = (0..rotary_dim / 2).map(|i| 1.0 + 0.37 * i as f32).collect();
            Rope::longrope(10_000.0, rotary_dim, &factors, 1.19)
        }
        Scaling::Yarn => {
            let yarn = YarnScaling {
                factor: 16.0,
                original_max_position_embeddings: 16_384.0,
                beta_fast: 32.0,
                beta_slow: 1.0,
            };
            Rope::yarn(1_000_000.0, rotary_dim, yarn)
        }
    };

    // CPU reference.
    let mut q_want = vec![0.0; tokens * heads * d];
    let (mut k_want, mut v_want) = (k_before.clone(), v_before.clone());
    for t in 0..tokens {
        let row = &qkv[t * width..][..width];
        let mut q = row[..heads * d].to_vec();
        let mut k = row[heads * d..][..kv_heads * d].to_vec();
        if !matches!(norm, Norm::None) {
            let (q_in, k_in) = (q.clone(), k.clone());
            rms_norm(&q_in, &q_weight, eps, &mut q);
            rms_norm(&k_in, &k_weight, eps, &mut k);
        }
        rope.apply(&mut q, d, start + t);
        rope.apply(&mut k, d, start + t);
        q_want[t * heads * d..][..heads * d].copy_from_slice(&q);
        for g in 0..kv_heads {
            let at = layout.offset(g, start + t);
            k_want[at..at + d].copy_from_slice(&encode(&k[g * d..][..d], kv).1);
            v_want[at..at + d]
                .copy_from_slice(&encode(&row[(heads + kv_heads + g) * d..][..d], kv).1);
        }
    }

    // GPU.
    let qkv_buffer = upload(ctx, &qkv);
    let q_out = ctx.empty_storage_buffer("q", (tokens * heads * d * 4) as u64);
    let table = RopeTable::new(ctx, &rope, capacity).unwrap();
    let (q_norm, k_norm) = match norm {
        Norm::F16 => (
            ctx.storage_buffer("q_norm", bytemuck::cast_slice(&as_f16(&q_weight))),
            ctx.storage_buffer("k_norm", bytemuck::cast_slice(&as_f16(&k_weight))),
        ),
        _ => (upload(ctx, &q_weight), upload(ctx, &k_weight)),
    };
    let norm = match norm {
        Norm::None => QkNorm::None,
        Norm::F32 => QkNorm::F32 { q: &q_norm, k: &k_norm, eps },
        Norm::F16 => QkNorm::F16 { q: &q_norm, k: &k_norm, eps },
    };
    let buffers = RopeBuffers {
        qkv: &qkv_buffer,
        q_out: &q_out,
        k_cache: &k_cache,
        v_cache: &v_cache,
        table: &table,
        norm,
    };
    let mut bound = kernel
        .bind(ctx, &buffers, &RopeShape { heads, kv_heads, head_dim: d, capacity, sequences: 1 })
        .unwrap();
    bound.run(ctx, Step::at(tokens, start)).unwrap();

    let q_got = ctx.read_f32(&q_out, q_want.len()).unwrap();
    assert_close(&format!("{what} q"), &q_got, &q_want, 2e-6, 1e-6);
    assert_caches(ctx, &what, (&k_cache, &k_want), (&v_cache, &v_want), kv);
}

#[test]
fn rope_append_matches_the_cpu_reference() {
    let cases = [
        // head_dim 16/32/64/128, GQA 1, 2, 7, prefill and decode, start > 0.
        Case {
            heads: 4,
            kv_heads: 4,
            head_dim: 16,
            rotary_dim: 16,
            norm: Norm::None,
            scaling: Scaling::None,
            tokens: 5,
            start: 0,
        },
        Case {
            heads: 4,
            kv_heads: 2,
            head_dim: 32,
            rotary_dim: 32,
            norm: Norm::F32,
            scaling: Scaling::None,
            tokens: 3,
            start: 7,
        },
        Case {
            heads: 14,
            kv_heads: 2,
            head_dim: 64,
            rotary_dim: 64,
            norm: Norm::None,
            scaling: Scaling::None,
            tokens: 9,
            start: 0,
        },
        Case {
            heads: 14,
            kv_heads: 2,
            head_dim: 64,
            rotary_dim: 64,
            norm: Norm::None,
            scaling: Scaling::None,
            tokens: 1,
            start: 4000,
        },
        // Qwen3 (q/k norm with f16 weights), Llama-3 scaling, partial rotary.
        Case {
            heads: 16,
            kv_heads: 8,
            head_dim: 128,
            rotary_dim: 128,
            norm: Norm::F16,
            scaling: Scaling::None,
            tokens: 4,
            start: 11,
        },
        Case {
            heads: 8,
            kv_heads: 2,
            head_dim: 64,
            rotary_dim: 64,
            norm: Norm::None,
            scaling: Scaling::Llama3,
            tokens: 6,
            start: 20000,
        },
        Case {
            heads: 4,
            kv_heads: 1,
            head_dim: 128,
            rotary_dim: 32,
            norm: Norm::None,
            scaling: Scaling::None,
            tokens: 2,
            start: 5,
        },
        // Phi-4-mini: LongRoPE on a partial rotary (0.75 of the head).
        Case {
            heads: 6,
            kv_heads: 2,
            head_dim: 64,
            rotary_dim: 48,
            norm: Norm::None,
            scaling: Scaling::LongRope,
            tokens: 5,
            start: 3,
        },
        Case {
            heads: 2,
            kv_heads: 1,
            head_dim: 256,
            rotary_dim: 256,
            norm: Norm::F32,
            scaling: Scaling::None,
            tokens: 2,
            start: 1,
        },
        // Ministral-3-3B: 128-wide heads, GQA, YaRN at positions where the
        // angles of a pair's two elements have drifted far apart.
        Case {
            heads: 4,
            kv_heads: 1,
            head_dim: 128,
            rotary_dim: 128,
            norm: Norm::None,
            scaling: Scaling::Yarn,
            tokens: 3,
            start: 900,
        },
    ];
    for (path, ctx) in contexts() {
        let kernels = CACHE_FORMATS.map(|kv| RopeAppend::new(ctx, kv).unwrap());
        // The cache formats take turns.
        for (i, case) in cases.iter().enumerate() {
            check(ctx, path, (&kernels[i % 2], CACHE_FORMATS[i % 2]), *case, 100 + i as u64);
        }
    }
}

#[test]
fn random_shapes_match_the_cpu_reference() {
    let (seed, cases) = common::random_run("rope_append");
    let mut draw = rng(seed);
    for i in 0..cases {
        let kv_heads = draw.random_range(1..=4);
        // Any head size the kernel takes (a multiple of 4), a rotary part of any even width in it.
        let head_dim = 4 * draw.random_range(1..=64);
        let case = Case {
            heads: kv_heads * draw.random_range(1..=8),
            kv_heads,
            head_dim,
            rotary_dim: 2 * draw.random_range(1..=head_dim / 2),
            norm: [Norm::None, Norm::F32, Norm::F16][draw.random_range(0..3)],
            scaling: [Scaling::None, Scaling::Llama3, Scaling::LongRope][draw.random_range(0..3)],
            tokens: if draw.random_bool(0.3) { 1 } else { draw.random_range(2..=40) },
            start: draw.random_range(0..=5000),
        };
        let kv = CACHE_FORMATS[draw.random_range(0..2)];
        shout(&format!("case {i}: {case:?}, {kv:?} cache"));
        for (path, ctx) in contexts() {
            let kernel = RopeAppend::new(ctx, kv).unwrap();
            check(ctx, path, (&kernel, kv), case, seed + i as u64);
        }
    }
}

#[test]
fn rope_append_rejects_wrong_shapes() {
    let (_, ctx) = &contexts()[0];
    let kernel = RopeAppend::new(ctx, FloatFormat::F32).unwrap();
    let table = RopeTable::new(ctx, &Rope::new(10_000.0, 16, None), 8).unwrap();
    let qkv = ctx.empty_storage_buffer("qkv", 4 * 16 * 4 * 2);
    let q_out = ctx.empty_storage_buffer("q", 4 * 16 * 2 * 2);
    let cache = ctx.empty_storage_buffer("cache", 4 * 16 * 8);
    let v_cache = ctx.empty_storage_buffer("v cache", 4 * 16 * 8);
    let small = ctx.empty_storage_buffer("small", 4 * 16 * 4);
    let buffers = |k_cache| RopeBuffers {
        qkv: &qkv,
        q_out: &q_out,
        k_cache,
        v_cache: &v_cache,
        table: &table,
        norm: QkNorm::None,
    };
    let shape = RopeShape { heads: 2, kv_heads: 1, head_dim: 16, capacity: 8, sequences: 1 };
    assert!(invalid(kernel.bind(ctx, &buffers(&small), &shape)), "cache too small");
    assert!(
        invalid(kernel.bind(ctx, &buffers(&cache), &RopeShape { kv_heads: 3, ..shape })),
        "heads % kv_heads"
    );
    assert!(
        invalid(kernel.bind(ctx, &buffers(&cache), &RopeShape { capacity: 9, ..shape })),
        "table too short"
    );
    assert!(
        invalid(kernel.bind(ctx, &buffers(&cache), &RopeShape { head_dim: 8, ..shape })),
        "rotary > head_dim"
    );
    assert!(invalid(kernel.bind(ctx, &buffers(&qkv), &shape)), "k_cache aliases qkv");
    let odd = RopeShape { heads: 1, head_dim: 18, capacity: 4, ..shape };
    assert!(invalid(kernel.bind(ctx, &buffers(&cache), &odd)), "head_dim not a multiple of 4");
    // An f16 cache takes half the bytes: `small` holds 8 positions in f16.
    let half = RopeAppend::new(ctx, FloatFormat::F16).unwrap();
    half.bind(ctx, &buffers(&small), &shape).unwrap();
    let two_kv_heads = RopeShape { kv_heads: 2, ..shape };
    assert!(invalid(half.bind(ctx, &buffers(&small), &two_kv_heads)), "f16 cache too small");
    let mut bound = kernel.bind(ctx, &buffers(&cache), &shape).unwrap();
    assert!(invalid(bound.set_step(&ctx.queue, Step::at(2, 7))), "past the capacity");
    assert!(
        invalid(bound.set_step(&ctx.queue, Step::at(3, 0))),
        "more tokens than the buffers hold"
    );
    assert!(invalid(bound.set_step(&ctx.queue, Step::at(0, 0))), "no tokens");
    bound.set_step(&ctx.queue, Step::at(2, 6)).unwrap();
}
