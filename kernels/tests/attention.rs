//! Attention (prefill and split-sequence decode) against `cpu::causal_attention`.

mod common;

use common::{
    CACHE_FORMATS, assert_caches, assert_close, contexts, encode, invalid, random_vec, rng, shout,
    upload, upload_cache,
};
use mlc_kernels::attention::DEFAULT_MIN_CHUNK_LEN;
use mlc_kernels::cpu::{KvLayout, Rope, causal_attention};
use mlc_kernels::{
    Attention, AttentionBuffers, AttentionRows, AttentionScratch, AttentionShape, FloatFormat,
    GpuContext, Kernel, Queries, RopeTable, Step,
};

use rand::Rng;

/// What the tensor-core prefill kernel computes: the attention of q · scale, K
/// and V rounded to f16, with the weights rounded to f16 before they multiply V
/// (their sum, the denominator, unrounded); summed in f64.
#[allow(clippy::too_many_arguments)]
fn f16_attention(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    layout: KvLayout,
    heads: usize,
    start: usize,
    window: Option<usize>,
    scale: f32,
) -> Vec<f32> {
    let half = |v: f32| half::f16::from_f32(v).to_f64();
    let d = layout.head_dim;
    let group = heads / layout.kv_heads;
    let tokens = q.len() / (heads * d);
    let mut out = vec![0.0; q.len()];
    for t in 0..tokens {
        let visible = start + t + 1;
        let first = window.map_or(0, |w| visible.saturating_sub(w));
        for h in 0..heads {
            let kv = h / group;
            let query: Vec<f64> =
                q[(t * heads + h) * d..][..d].iter().map(|&v| half(v * scale)).collect();
            let scores: Vec<f64> = (first..visible)
                .map(|p| {
                    let key = &keys[layout.offset(kv, p)..][..d];
                    // The tensor cores sum in f32.
                    query.iter().zip(key).map(|(a, &b)| a * half(b)).sum::<f64>() as f32 as f64
                })
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f32> = scores.iter().map(|s| ((s - max) as f32).exp()).collect();
            let total: f64 = weights.iter().map(|&w| w as f64).sum();
            for c in 0..d {
                let sum: f64 = (first..visible)
                    .zip(&weights)
                    .map(|(p, &w)| half(w) * half(values[layout.offset(kv, p) + c]))
                    .sum();
                out[(t * heads + h) * d + c] = (sum / total) as f32;
            }
        }
    }
    out
}

/// The shape of a test with the default decode chunks.
fn shape(
    heads: usize,
    kv_heads: usize,
    capacity: usize,
    window: Option<usize>,
    scale: f32,
) -> AttentionShape {
    AttentionShape {
        heads,
        kv_heads,
        capacity,
        sequences: 1,
        window,
        scale,
        min_chunk_len: DEFAULT_MIN_CHUNK_LEN,
    }
}

/// Runs `tokens` queries at `start..start + tokens` over a random cache (in
/// the kernel's format) and compares with the CPU reference on the values the
/// cache holds (for a prefill on tensor cores, with the same computation on
/// f16-rounded inputs, [`f16_attention`]).
#[allow(clippy::too_many_arguments)]
fn check(
    ctx: &GpuContext,
    path: &str,
    kernel: &Attention,
    head_dim: usize,
    heads: usize,
    kv_heads: usize,
    tokens: usize,
    start: usize,
    min_chunk_len: usize,
    window: Option<usize>,
    seed: u64,
) {
    let kv = kernel.kv_format();
    let what = format!(
        "{path} {kv:?} cache, head_dim {head_dim}, {heads}/{kv_heads} heads, {tokens} tokens at {start} (chunks ≥ {min_chunk_len} keys, window {window:?})"
    );
    let mut rng = rng(seed);
    let capacity = start + tokens + 5;
    let layout = KvLayout { kv_heads, capacity, head_dim };
    // Large enough values that the softmax is far from uniform.
    let q = random_vec(&mut rng, tokens * heads * head_dim, 3.0);
    let (k_cache, keys) =
        upload_cache(ctx, &random_vec(&mut rng, kv_heads * capacity * head_dim, 1.0), kv);
    let (v_cache, values) =
        upload_cache(ctx, &random_vec(&mut rng, kv_heads * capacity * head_dim, 1.0), kv);
    let scale = (head_dim as f32).powf(-0.5);
    let mut want = vec![0.0; q.len()];
    causal_attention(&q, &keys, &values, layout, heads, start, window, scale, &mut want);
    // One f16 rounding of a weight near 1 moves the output by up to 2^-11 of a value.
    let mut rel = 1e-4;
    if tokens > 1 && kernel.uses_cooperative_matrix() {
        let rounded = f16_attention(&q, &keys, &values, layout, heads, start, window, scale);
        let scale_of = want.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let moved = want.iter().zip(&rounded).fold(0.0f32, |a, (w, r)| a.max((w - r).abs()));
        shout(&format!(
            "{what}: f16 inputs move the output by {:.2e} of max |y|",
            moved / scale_of
        ));
        want = rounded;
        rel = 1e-3;
    }

    let q_buffer = upload(ctx, &q);
    let out = ctx.empty_storage_buffer("out", (q.len() * 4) as u64);
    let scratch = AttentionScratch::new(ctx, heads, head_dim, capacity, 1);
    let buffers = AttentionBuffers {
        q: Queries::Rotated(&q_buffer),
        k_cache: &k_cache,
        v_cache: &v_cache,
        out: &out,
        scratch: &scratch,
        rows: None,
    };
    let shape =
        AttentionShape { heads, kv_heads, capacity, sequences: 1, window, scale, min_chunk_len };
    let mut bound = kernel.bind(ctx, &buffers, &shape).unwrap();
    bound.run(ctx, Step::at(tokens, start)).unwrap();
    let got = ctx.read_f32(&out, want.len()).unwrap();
    assert_close(&what, &got, &want, rel, 1e-5);
}

#[test]
fn prefill_matches_the_cpu_reference() {
    // (head_dim, heads, kv_heads, tokens, start)
    let cases = [
        (16, 4, 4, 37, 0),
        (16, 4, 2, 70, 13),
        (32, 4, 2, 33, 0),
        (32, 6, 6, 9, 40),
        (64, 14, 2, 40, 0),
        (64, 14, 2, 17, 100),
        (128, 8, 4, 19, 0),
        (128, 4, 2, 10, 30),
        (256, 2, 1, 7, 9),
        (80, 4, 2, 13, 3),
        // Groups larger than a workgroup's rows, and rows not a multiple of the group.
        (64, 16, 1, 20, 5),
        (32, 12, 4, 25, 7),
        // Head dim 64 (the tensor-core kernel where the device has it): several
        // blocks of tokens over many key tiles, a group of one, a group of 80.
        (64, 14, 2, 300, 70),
        (64, 4, 4, 130, 0),
        (64, 80, 1, 5, 2),
    ];
    for (path, ctx) in contexts() {
        let mut kernels = std::collections::HashMap::new();
        for (i, &(d, heads, kv_heads, tokens, start)) in cases.iter().enumerate() {
            // The cache formats take turns (both meet every head dim 64 path).
            let kv = CACHE_FORMATS[i % 2];
            let kernel =
                kernels.entry((d, kv)).or_insert_with(|| Attention::new(ctx, d, kv).unwrap());
            check(ctx, path, kernel, d, heads, kv_heads, tokens, start, 1, None, 200 + i as u64);
        }
    }
}

#[test]
fn decode_matches_the_cpu_reference_across_chunk_boundaries() {
    for (path, ctx) in contexts() {
        // Qwen2.5-0.5B's shape: 14 query heads on 2 kv heads of 64, its f16
        // cache on every path, an f32 one on the portable path.
        let chunk_lens: &[(usize, FloatFormat)] = if *path == "portable" {
            &[
                (DEFAULT_MIN_CHUNK_LEN, FloatFormat::F16),
                (128, FloatFormat::F16),
                (DEFAULT_MIN_CHUNK_LEN, FloatFormat::F32),
            ]
        } else {
            &[(DEFAULT_MIN_CHUNK_LEN, FloatFormat::F16)]
        };
        for &(min_chunk_len, kv) in chunk_lens {
            let kernel = Attention::new(ctx, 64, kv).unwrap();
            for (i, kv_len) in
                [1, 2, 31, 32, 33, 63, 64, 65, 128, 129, 257, 1500].into_iter().enumerate()
            {
                check(
                    ctx,
                    path,
                    &kernel,
                    64,
                    14,
                    2,
                    1,
                    kv_len - 1,
                    min_chunk_len,
                    None,
                    300 + i as u64,
                );
            }
        }
        for (i, (d, heads, kv_heads, kv_len)) in [
            (16, 4, 4, 70),
            (32, 4, 2, 200),
            (128, 16, 8, 130),
            (256, 2, 1, 65),
            (64, 16, 1, 300),
            (256, 8, 1, 40),
        ]
        .into_iter()
        .enumerate()
        {
            let kernel = Attention::new(ctx, d, CACHE_FORMATS[i % 2]).unwrap();
            check(ctx, path, &kernel, d, heads, kv_heads, 1, kv_len - 1, 1, None, 400 + i as u64);
        }
    }
}

#[test]
fn random_shapes_match_the_cpu_reference() {
    let (seed, cases) = common::random_run("attention");
    let mut draw = rng(seed);
    for i in 0..cases {
        let head_dim = 16 * draw.random_range(1..=16);
        let kv_heads = draw.random_range(1..=4);
        let heads = kv_heads * draw.random_range(1..=8);
        // Half decode steps (split over the context), half prefill steps.
        let tokens = if draw.random_bool(0.5) { 1 } else { draw.random_range(2..=40) };
        let start = draw.random_range(0..=300);
        let min_chunk_len = [1, 32, 64][draw.random_range(0..3)];
        let kv = CACHE_FORMATS[draw.random_range(0..2)];
        shout(&format!(
            "case {i}: head_dim {head_dim}, {heads}/{kv_heads} heads, {tokens} tokens at {start}, chunks ≥ {min_chunk_len}, {kv:?} cache"
        ));
        for (path, ctx) in contexts() {
            let kernel = Attention::new(ctx, head_dim, kv).unwrap();
            check(
                ctx,
                path,
                &kernel,
                head_dim,
                heads,
                kv_heads,
                tokens,
                start,
                min_chunk_len,
                None,
                seed + i as u64,
            );
        }
    }
}

#[test]
fn a_sliding_window_matches_the_cpu_reference() {
    for (path, ctx) in contexts() {
        let kernel = Attention::new(ctx, 32, FloatFormat::F32).unwrap();
        // (tokens, start, window): prefill blocks whose rows start past the
        // first tile of the block's keys, a prefill longer than the window,
        // decode steps inside, at and past the window, across chunks.
        for (i, (tokens, start, window)) in [
            (40, 0, 5),
            (70, 13, 33),
            (9, 100, 64),
            (1, 3, 8),
            (1, 63, 64),
            (1, 300, 37),
            (1, 500, 200),
        ]
        .into_iter()
        .enumerate()
        {
            check(ctx, path, &kernel, 32, 8, 2, tokens, start, 32, Some(window), 600 + i as u64);
        }
        // head_dim 64 takes the tensor-core prefill where the device has it.
        let kernel = Attention::new(ctx, 64, FloatFormat::F16).unwrap();
        for (i, (tokens, start, window)) in
            [(40, 0, 5), (70, 13, 33), (130, 0, 64), (9, 100, 64)].into_iter().enumerate()
        {
            check(ctx, path, &kernel, 64, 14, 2, tokens, start, 32, Some(window), 700 + i as u64);
        }
    }
    let (_, ctx) = &contexts()[0];
    let kernel = Attention::new(ctx, 16, FloatFormat::F32).unwrap();
    let buffer = |bytes| ctx.empty_storage_buffer("b", bytes);
    let (q, out, keys, values) =
        (buffer(4 * 16), buffer(4 * 16), buffer(4 * 16 * 8), buffer(4 * 16 * 8));
    let scratch = AttentionScratch::new(ctx, 1, 16, 8, 1);
    let buffers = AttentionBuffers {
        q: Queries::Rotated(&q),
        k_cache: &keys,
        v_cache: &values,
        out: &out,
        scratch: &scratch,
        rows: None,
    };
    let empty = shape(1, 1, 8, Some(0), 1.0);
    assert!(invalid(kernel.bind(ctx, &buffers, &empty)), "a window of no key");
}

/// A decode step from the unrotated q/k/v row ([`Queries::Projected`]) against
/// the CPU's rotation, append and attention: the output, the new key and value
/// in the cache, and every other cache position untouched.
#[allow(clippy::too_many_arguments)]
fn check_projected(
    ctx: &GpuContext,
    path: &str,
    kernel: &Attention,
    (head_dim, heads, kv_heads, rotary_dim): (usize, usize, usize, usize),
    start: usize,
    window: Option<usize>,
    seed: u64,
) {
    let kv = kernel.kv_format();
    let what = format!(
        "{path} projected decode, {kv:?} cache: head_dim {head_dim} (rotary {rotary_dim}), {heads}/{kv_heads} heads at {start}, window {window:?}"
    );
    let mut rng = rng(seed);
    let capacity = start + 4;
    let layout = KvLayout { kv_heads, capacity, head_dim };
    let qkv = random_vec(&mut rng, (heads + 2 * kv_heads) * head_dim, 3.0);
    let (k_cache, k_before) =
        upload_cache(ctx, &random_vec(&mut rng, kv_heads * capacity * head_dim, 1.0), kv);
    let (v_cache, v_before) =
        upload_cache(ctx, &random_vec(&mut rng, kv_heads * capacity * head_dim, 1.0), kv);
    let rope = Rope::new(1_000_000.0, rotary_dim, None);
    let scale = (head_dim as f32).powf(-0.5);

    let (mut q, mut k) =
        (qkv[..heads * head_dim].to_vec(), qkv[heads * head_dim..][..kv_heads * head_dim].to_vec());
    rope.apply(&mut q, head_dim, start);
    rope.apply(&mut k, head_dim, start);
    let (mut k_want, mut v_want) = (k_before.clone(), v_before.clone());
    for g in 0..kv_heads {
        let at = layout.offset(g, start);
        k_want[at..][..head_dim].copy_from_slice(&k[g * head_dim..][..head_dim]);
        v_want[at..][..head_dim]
            .copy_from_slice(&qkv[(heads + kv_heads + g) * head_dim..][..head_dim]);
    }
    let (k_want, v_want) = (encode(&k_want, kv).1, encode(&v_want, kv).1);
    let mut want = vec![0.0; heads * head_dim];
    causal_attention(&q, &k_want, &v_want, layout, heads, start, window, scale, &mut want);

    let qkv_buffer = upload(ctx, &qkv);
    let out = ctx.empty_storage_buffer("out", (want.len() * 4) as u64);
    let scratch = AttentionScratch::new(ctx, heads, head_dim, capacity, 1);
    let table = RopeTable::new(ctx, &rope, capacity).unwrap();
    let buffers = AttentionBuffers {
        q: Queries::Projected { qkv: &qkv_buffer, table: &table },
        k_cache: &k_cache,
        v_cache: &v_cache,
        out: &out,
        scratch: &scratch,
        rows: None,
    };
    let shape = shape(heads, kv_heads, capacity, window, scale);
    let mut bound = kernel.bind(ctx, &buffers, &shape).unwrap();
    assert!(invalid(bound.set_step(&ctx.queue, Step::at(2, start))), "{what}: two tokens");
    bound.run(ctx, Step::at(1, start)).unwrap();
    check_appended(ctx, &what, (&out, &want), (&k_cache, &k_want), (&v_cache, &v_want), kv);
}

/// Compares an appending step's output and both caches with the CPU's. An f16
/// cache may round the new key and value the other way than the CPU
/// ([`assert_caches`]): one f16 step, which moves the output by up to about
/// 2^-11 of a value.
fn check_appended(
    ctx: &GpuContext,
    what: &str,
    (out, want): (&wgpu::Buffer, &[f32]),
    (k_cache, k_want): (&wgpu::Buffer, &[f32]),
    (v_cache, v_want): (&wgpu::Buffer, &[f32]),
    kv: FloatFormat,
) {
    let rel = if kv == FloatFormat::F16 { 1e-3 } else { 1e-4 };
    let got = ctx.read_f32(out, want.len()).unwrap();
    assert_close(what, &got, want, rel, 1e-5);
    assert_caches(ctx, what, (k_cache, k_want), (v_cache, v_want), kv);
}

#[test]
fn decode_from_the_projection_rotates_appends_and_attends() {
    for (path, ctx) in contexts() {
        // Qwen2.5-0.5B's shape and f16 cache, across chunk boundaries (32-key chunks).
        let kernel = Attention::new(ctx, 64, FloatFormat::F16).unwrap();
        for (i, start) in [0, 1, 31, 32, 33, 100, 1500].into_iter().enumerate() {
            check_projected(ctx, path, &kernel, (64, 14, 2, 64), start, None, 800 + i as u64);
        }
        // A partial rotation (Phi's rotary dims), a group of one, a window; f32 caches.
        let kernel = Attention::new(ctx, 128, FloatFormat::F32).unwrap();
        check_projected(ctx, path, &kernel, (128, 16, 8, 64), 70, None, 810);
        check_projected(ctx, path, &kernel, (128, 4, 4, 128), 5, None, 811);
        let kernel = Attention::new(ctx, 32, FloatFormat::F32).unwrap();
        check_projected(ctx, path, &kernel, (32, 8, 2, 32), 300, Some(37), 812);
        check_projected(ctx, path, &kernel, (32, 8, 2, 16), 20, Some(8), 813);
    }
    // A group larger than one workgroup's rows cannot append in one place.
    let (_, ctx) = &contexts()[0];
    let kernel = Attention::new(ctx, 16, FloatFormat::F32).unwrap();
    assert!(kernel.appends_for(14, 2) && !kernel.appends_for(16, 1));
    let buffer = |bytes| ctx.empty_storage_buffer("b", bytes);
    let (qkv, out, cache) = (buffer(4 * 16 * 18), buffer(4 * 16 * 16), buffer(4 * 16 * 8));
    let table = RopeTable::new(ctx, &Rope::new(10_000.0, 16, None), 8).unwrap();
    let scratch = AttentionScratch::new(ctx, 16, 16, 8, 1);
    let buffers = AttentionBuffers {
        q: Queries::Projected { qkv: &qkv, table: &table },
        k_cache: &cache,
        v_cache: &buffer(4 * 16 * 8),
        out: &out,
        scratch: &scratch,
        rows: None,
    };
    let shape = shape(16, 1, 8, None, 1.0);
    assert!(invalid(kernel.bind(ctx, &buffers, &shape)), "16 heads on one kv head");
    let short = RopeTable::new(ctx, &Rope::new(10_000.0, 16, None), 4).unwrap();
    let buffers =
        AttentionBuffers { q: Queries::Projected { qkv: &qkv, table: &short }, ..buffers };
    let shape = AttentionShape { heads: 2, kv_heads: 1, ..shape };
    assert!(invalid(kernel.bind(ctx, &buffers, &shape)), "a table shorter than the cache");
}

/// A batched decode step ([`AttentionRows`]: one token for each of several
/// sequences, each at its own position) against each row's CPU rotation,
/// append and attention over its own sequence's block of the cache; blocks of
/// sequences without a row stay untouched. Then a plain decode step in the
/// last row's sequence reads that sequence's block.
fn check_batched(
    ctx: &GpuContext,
    path: &str,
    kernel: &Attention,
    (head_dim, heads, kv_heads, rotary_dim): (usize, usize, usize, usize),
    (sequences, rows): (usize, &[(usize, usize)]),
    window: Option<usize>,
    seed: u64,
) {
    let kv = kernel.kv_format();
    let what = format!(
        "{path} batched decode, {kv:?} cache: head_dim {head_dim} (rotary {rotary_dim}), {heads}/{kv_heads} heads, rows {rows:?} of {sequences} sequences, window {window:?}"
    );
    let mut rng = rng(seed);
    let latest = rows.iter().map(|&(_, position)| position).max().unwrap();
    let capacity = latest + 4;
    let layout = KvLayout { kv_heads, capacity, head_dim };
    let block = kv_heads * capacity * head_dim;
    let width = (heads + 2 * kv_heads) * head_dim;
    let qkv = random_vec(&mut rng, rows.len() * width, 3.0);
    let (k_cache, k_before) = upload_cache(ctx, &random_vec(&mut rng, sequences * block, 1.0), kv);
    let (v_cache, v_before) = upload_cache(ctx, &random_vec(&mut rng, sequences * block, 1.0), kv);
    let rope = Rope::new(1_000_000.0, rotary_dim, None);
    let scale = (head_dim as f32).powf(-0.5);

    let (mut k_want, mut v_want) = (k_before.clone(), v_before.clone());
    let mut want = vec![0.0; rows.len() * heads * head_dim];
    for (r, &(sequence, position)) in rows.iter().enumerate() {
        let row = &qkv[r * width..][..width];
        let (mut q, mut k) = (
            row[..heads * head_dim].to_vec(),
            row[heads * head_dim..][..kv_heads * head_dim].to_vec(),
        );
        rope.apply(&mut q, head_dim, position);
        rope.apply(&mut k, head_dim, position);
        let (keys, values) =
            (&mut k_want[sequence * block..][..block], &mut v_want[sequence * block..][..block]);
        for g in 0..kv_heads {
            let at = layout.offset(g, position);
            keys[at..][..head_dim].copy_from_slice(&encode(&k[g * head_dim..][..head_dim], kv).1);
            values[at..][..head_dim].copy_from_slice(
                &encode(&row[(heads + kv_heads + g) * head_dim..][..head_dim], kv).1,
            );
        }
        let out = &mut want[r * heads * head_dim..][..heads * head_dim];
        causal_attention(&q, keys, values, layout, heads, position, window, scale, out);
    }

    let qkv_buffer = upload(ctx, &qkv);
    let out = ctx.empty_storage_buffer("out", (want.len() * 4) as u64);
    let scratch = AttentionScratch::new(ctx, heads, head_dim, capacity, rows.len());
    let table = RopeTable::new(ctx, &rope, capacity).unwrap();
    let mut row_table = AttentionRows::new(ctx, sequences, capacity);
    row_table.set(&ctx.queue, rows).unwrap();
    let buffers = AttentionBuffers {
        q: Queries::Projected { qkv: &qkv_buffer, table: &table },
        k_cache: &k_cache,
        v_cache: &v_cache,
        out: &out,
        scratch: &scratch,
        rows: Some(&row_table),
    };
    let shape = AttentionShape { sequences, ..shape(heads, kv_heads, capacity, window, scale) };
    let mut bound = kernel.bind(ctx, &buffers, &shape).unwrap();
    let too_many = Step::at(rows.len() + 1, latest);
    assert!(invalid(bound.set_step(&ctx.queue, too_many)), "{what}: more rows than the scratch");
    bound.run(ctx, Step::at(rows.len(), latest)).unwrap();
    check_appended(ctx, &what, (&out, &want), (&k_cache, &k_want), (&v_cache, &v_want), kv);

    // A plain step of one sequence reads only that sequence's block.
    let (sequence, position) = rows[rows.len() - 1];
    let q = random_vec(&mut rng, heads * head_dim, 3.0);
    let mut want = vec![0.0; q.len()];
    let (keys, values) =
        (&k_want[sequence * block..][..block], &v_want[sequence * block..][..block]);
    causal_attention(&q, keys, values, layout, heads, position, window, scale, &mut want);
    let q_buffer = upload(ctx, &q);
    let single = AttentionScratch::new(ctx, heads, head_dim, capacity, 1);
    let buffers = AttentionBuffers {
        q: Queries::Rotated(&q_buffer),
        scratch: &single,
        rows: None,
        ..buffers
    };
    let mut bound = kernel.bind(ctx, &buffers, &shape).unwrap();
    let past = Step::at(1, position).in_sequence(sequences);
    assert!(invalid(bound.set_step(&ctx.queue, past)), "{what}: a sequence past the cache");
    bound.run(ctx, Step::at(1, position).in_sequence(sequence)).unwrap();
    let got = ctx.read_f32(&out, want.len()).unwrap();
    // (The CPU's rounding of the appended keys and values: check_appended.)
    let rel = if kv == FloatFormat::F16 { 1e-3 } else { 1e-4 };
    assert_close(&format!("{what}: then sequence {sequence} alone"), &got, &want, rel, 1e-5);
}

#[test]
fn batched_decode_matches_each_row_alone() {
    for (path, ctx) in contexts() {
        // Qwen2.5-0.5B's shape and f16 cache: rows of one to 47 chunks, in
        // sequences out of order.
        let kernel = Attention::new(ctx, 64, FloatFormat::F16).unwrap();
        let rows = [(3, 0), (0, 31), (4, 32), (1, 100), (2, 1500)];
        check_batched(ctx, path, &kernel, (64, 14, 2, 64), (6, &rows), None, 850);
        // A group of one with full rotation; a window and a partial rotation.
        let kernel = Attention::new(ctx, 128, FloatFormat::F32).unwrap();
        check_batched(ctx, path, &kernel, (128, 4, 4, 128), (2, &[(1, 70), (0, 3)]), None, 851);
        let kernel = Attention::new(ctx, 32, FloatFormat::F16).unwrap();
        let rows = [(1, 300), (0, 5), (2, 37)];
        check_batched(ctx, path, &kernel, (32, 8, 2, 16), (3, &rows), Some(37), 852);
    }
    // The row table refuses rows outside the cache, and no rows at all.
    let (_, ctx) = &contexts()[0];
    let mut table = AttentionRows::new(ctx, 2, 8);
    assert!(invalid(table.set(&ctx.queue, &[(2, 0)])), "a sequence past the cache");
    assert!(invalid(table.set(&ctx.queue, &[(0, 8)])), "a position past the cache");
    assert!(invalid(table.set(&ctx.queue, &[])), "no rows");
}

#[test]
fn decode_with_more_positions_than_chunks() {
    // 256 chunks at most: a 20000-position context uses chunks of several tiles.
    let (path, ctx) = &contexts()[1];
    let kernel = Attention::new(ctx, 16, FloatFormat::F16).unwrap();
    check(ctx, path, &kernel, 16, 2, 1, 1, 19_999, 1, None, 500);
}

#[test]
fn attention_rejects_wrong_shapes() {
    let (_, ctx) = &contexts()[0];
    assert!(invalid(Attention::new(ctx, 20, FloatFormat::F32)), "head_dim not a multiple of 16");
    assert!(invalid(Attention::new(ctx, 512, FloatFormat::F32)), "head_dim too large");
    let kernel = Attention::new(ctx, 16, FloatFormat::F32).unwrap();
    let q = ctx.empty_storage_buffer("q", 4 * 4 * 16 * 3);
    let out = ctx.empty_storage_buffer("out", 4 * 4 * 16 * 3);
    let cache = ctx.empty_storage_buffer("cache", 4 * 2 * 16 * 32);
    let values = ctx.empty_storage_buffer("values", 4 * 2 * 16 * 32);
    let scratch = AttentionScratch::new(ctx, 4, 16, 32, 1);
    let aliased = AttentionBuffers {
        q: Queries::Rotated(&q),
        k_cache: &cache,
        v_cache: &values,
        out: &q,
        scratch: &scratch,
        rows: None,
    };
    let shape = shape(4, 2, 32, None, 0.25);
    assert!(invalid(kernel.bind(ctx, &aliased, &shape)), "out aliases q");
    let shared_cache = AttentionBuffers { out: &out, v_cache: &cache, ..aliased };
    assert!(invalid(kernel.bind(ctx, &shared_cache, &shape)), "keys and values in one buffer");
    let buffers = AttentionBuffers { v_cache: &values, ..shared_cache };
    assert!(
        invalid(kernel.bind(ctx, &buffers, &AttentionShape { capacity: 33, ..shape })),
        "cache too small"
    );
    assert!(
        invalid(kernel.bind(ctx, &buffers, &AttentionShape { kv_heads: 3, ..shape })),
        "heads % kv_heads"
    );
    assert!(
        invalid(kernel.bind(ctx, &buffers, &AttentionShape { heads: 8, kv_heads: 1, ..shape })),
        "scratch"
    );
    let mut bound = kernel.bind(ctx, &buffers, &shape).unwrap();
    assert!(invalid(bound.set_step(&ctx.queue, Step::at(4, 0))), "more tokens than q holds");
    assert!(invalid(bound.set_step(&ctx.queue, Step::at(1, 32))), "past the capacity");
    bound.set_step(&ctx.queue, Step::at(3, 29)).unwrap();
    // An f16 cache takes half the bytes: the f32 cache of 32 positions holds
    // 64 in f16, but not 65.
    let half = Attention::new(ctx, 16, FloatFormat::F16).unwrap();
    let scratch = AttentionScratch::new(ctx, 4, 16, 65, 1);
    let buffers = AttentionBuffers { scratch: &scratch, ..buffers };
    half.bind(ctx, &buffers, &AttentionShape { capacity: 64, ..shape }).unwrap();
    assert!(
        invalid(half.bind(ctx, &buffers, &AttentionShape { capacity: 65, ..shape })),
        "f16 cache too small"
    );
}

/// Rough timings (run with `--ignored --nocapture` on a real GPU; meaningless on lavapipe).
#[test]
#[ignore]
fn bench_attention() {
    let (path, ctx) = &contexts()[1];
    for (d, heads, kv_heads, kv) in [
        (64, 14, 2, FloatFormat::F16),
        (64, 14, 2, FloatFormat::F32),
        (128, 16, 8, FloatFormat::F16),
    ] {
        let capacity = 16384;
        let mut rng = rng(900);
        let kernel = Attention::new(ctx, d, kv).unwrap();
        let q = upload(ctx, &random_vec(&mut rng, 2048 * heads * d, 1.0));
        let (k_cache, _) =
            upload_cache(ctx, &random_vec(&mut rng, kv_heads * capacity * d, 1.0), kv);
        let (v_cache, _) =
            upload_cache(ctx, &random_vec(&mut rng, kv_heads * capacity * d, 1.0), kv);
        let out = ctx.empty_storage_buffer("out", (2048 * heads * d * 4) as u64);
        let scratch = AttentionScratch::new(ctx, heads, d, capacity, 1);
        let buffers = AttentionBuffers {
            q: Queries::Rotated(&q),
            k_cache: &k_cache,
            v_cache: &v_cache,
            out: &out,
            scratch: &scratch,
            rows: None,
        };
        let shape = shape(heads, kv_heads, capacity, None, 0.125);
        let steps = [
            (1, 127, 200, 32),
            (1, 127, 200, 128),
            (1, 255, 200, 32),
            (1, 255, 200, 256),
            (1, 511, 200, 32),
            (1, 511, 200, 128),
            (1, 511, 200, 512),
            (1, 1023, 200, 1024),
            (1, 1023, 200, 32),
            (1, 4095, 200, 32),
            (1, 127, 200, 64),
            (1, 1023, 200, 64),
            (1, 4095, 200, 64),
            (1, 1023, 200, 128),
            (1, 4095, 200, 128),
            (1, 4095, 200, 256),
            (1, 16383, 50, 32),
            (512, 0, 20, 1),
            (128, 2048, 20, 1),
            (1024, 3072, 5, 1),
            (2048, 0, 3, 1),
            (2048, 2048, 3, 1),
        ];
        for (tokens, start, reps, chunk_len) in steps {
            let shape = AttentionShape { min_chunk_len: chunk_len, ..shape };
            let mut bound = kernel.bind(ctx, &buffers, &shape).unwrap();
            bound.set_step(&ctx.queue, Step::at(tokens, start)).unwrap();
            ctx.submit_pass("warm", |pass| bound.dispatch(pass));
            ctx.wait().unwrap();
            let t = std::time::Instant::now();
            ctx.submit_pass("bench", |pass| (0..reps).for_each(|_| bound.dispatch(pass)));
            ctx.wait().unwrap();
            let us = t.elapsed().as_secs_f64() * 1e6 / reps as f64;
            eprintln!(
                "{path} attention d {d} {heads}/{kv_heads} heads, {kv:?} cache: {tokens} tokens at {start} (chunks ≥ {chunk_len} keys): {us:.1} µs"
            );
        }
    }
}
