//! `Embed` against `cpu::embed` on both paths: every table format, an
//! out-of-range id, the Gemma scale, split tables, the 2-D grid, errors.

mod common;

use common::{TestWeight, assert_close, contexts, random_run, rng, shout, upload, upload_u32};
use mlc_kernels::{
    Embed, EmbedBuffers, EmbedShape, FloatFormat, GpuContext, Kernel, Step, WeightFormat, cpu,
};
use rand::Rng;
use rand::rngs::StdRng;

const FORMATS: [WeightFormat; 4] = [
    WeightFormat::Q4(FloatFormat::F16),
    WeightFormat::Q4(FloatFormat::F32),
    WeightFormat::Dense(FloatFormat::F16),
    WeightFormat::Dense(FloatFormat::F32),
];

/// Looks up `tokens` (bound for `tokens + 2`) and compares with the CPU; returns the part count.
#[allow(clippy::too_many_arguments)]
fn check(
    path: &str,
    ctx: &GpuContext,
    kernel: &Embed,
    format: WeightFormat,
    rng: &mut StdRng,
    vocab: usize,
    hidden: usize,
    tokens: &[u32],
    scale: f32,
) -> usize {
    let what = format!("{path} {format:?} vocab {vocab} hidden {hidden} tokens {}", tokens.len());
    let table = TestWeight::random(rng, format, vocab, hidden);
    let mut want = vec![0.0; tokens.len() * hidden];
    // The CPU reference panics on an id outside the table; the kernel writes zeros.
    let valid: Vec<u32> = tokens.iter().map(|&t| t.min(vocab as u32 - 1)).collect();
    cpu::embed(&table.cpu(), &valid, &mut want);
    for (t, &token) in tokens.iter().enumerate() {
        for v in &mut want[t * hidden..(t + 1) * hidden] {
            *v = if (token as usize) < vocab { *v * scale } else { 0.0 };
        }
    }
    let max_tokens = tokens.len() + 2;
    let mut ids = tokens.to_vec();
    ids.resize(max_tokens, 0);
    let gpu_table = table.upload(ctx);
    let (ids, out) = (upload_u32(ctx, &ids), upload(ctx, &vec![f32::NAN; max_tokens * hidden]));
    let buffers = EmbedBuffers { table: gpu_table.weight(), tokens: &ids, out: &out };
    let mut bound = kernel
        .bind(ctx, &buffers, &EmbedShape { max_tokens: max_tokens as u32, scale })
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    bound.run(ctx, Step::rows(tokens.len())).unwrap();
    let got = ctx.read_f32(&out, max_tokens * hidden).unwrap();
    // Decoding is exact in f32 on every path.
    assert_close(&what, &got[..tokens.len() * hidden], &want, 0.0, 0.0);
    assert!(
        got[tokens.len() * hidden..].iter().all(|v| v.is_nan()),
        "{what}: wrote past the last token"
    );
    bound.parts()
}

#[test]
fn every_format_matches_the_cpu_lookup() {
    for format in FORMATS {
        for (path, ctx) in contexts() {
            let kernel = Embed::new(ctx, format).unwrap();
            let mut rng = rng(11);
            let vocab = 1000;
            for count in [1usize, 7, 33] {
                let mut tokens: Vec<u32> =
                    (0..count).map(|_| rng.random_range(0..vocab as u32)).collect();
                tokens[0] = vocab as u32 - 1;
                if count > 1 {
                    tokens[1] = vocab as u32 + 5; // outside the table: a zero row
                }
                check(path, ctx, &kernel, format, &mut rng, vocab, 896, &tokens, 1.0);
            }
            // Gemma multiplies the embedding by √hidden.
            check(path, ctx, &kernel, format, &mut rng, 50, 64, &[3, 49, 0, 3], 8.0);
        }
    }
}

#[test]
fn tables_above_the_binding_limit_are_split_by_rows() {
    for format in [WeightFormat::Q4(FloatFormat::F16), WeightFormat::Dense(FloatFormat::F32)] {
        for (path, ctx) in contexts() {
            let mut kernel = Embed::new(ctx, format).unwrap();
            kernel.set_weight_split_bytes(4096);
            let mut rng = rng(12);
            let tokens: Vec<u32> = (0..40).map(|i| (i * 37 % 300) as u32).collect();
            let parts = check(path, ctx, &kernel, format, &mut rng, 300, 64, &tokens, 1.0);
            assert!(parts >= 3, "{path} {format:?}: expected a split table, got {parts} part(s)");
        }
    }
}

#[test]
fn more_workgroups_than_one_grid_dimension() {
    for (path, ctx) in contexts() {
        let mut small = ctx.clone();
        small.limits.max_compute_workgroups_per_dimension = 2;
        let format = WeightFormat::Q4(FloatFormat::F16);
        let kernel = Embed::new(&small, format).unwrap();
        let tokens: Vec<u32> = (0..9).map(|i| i * 11).collect();
        // 9 tokens × 896 / 8 = 1008 invocations: 4 workgroups on a 2 × 2 grid;
        // 7 × 640 / 8 = 560: 3 workgroups on a 2 × 2 grid, one idle.
        check(path, &small, &kernel, format, &mut rng(13), 100, 896, &tokens, 1.0);
        check(path, &small, &kernel, format, &mut rng(14), 100, 640, &tokens[..7], 1.0);
    }
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let (_, ctx) = &contexts()[0];
    let format = WeightFormat::Q4(FloatFormat::F16);
    let kernel = Embed::new(ctx, format).unwrap();
    let table = TestWeight::random(&mut rng(15), format, 20, 64).upload(ctx);
    let ids = upload_u32(ctx, &[1, 2, 3, 4]);
    let out = upload(ctx, &[0.0; 4 * 64]);
    let ok = EmbedBuffers { table: table.weight(), tokens: &ids, out: &out };
    assert!(kernel.bind(ctx, &ok, &EmbedShape { max_tokens: 4, scale: 1.0 }).is_ok());
    let mut ragged = table.weight();
    ragged.cols = 40;
    for (why, buffers, tokens) in [
        ("too many tokens", ok, 5),
        ("hidden not a multiple of 32", EmbedBuffers { table: ragged, ..ok }, 1),
        ("the ids alias the output", EmbedBuffers { tokens: &out, ..ok }, 1),
    ] {
        assert!(
            matches!(
                kernel.bind(ctx, &buffers, &EmbedShape { max_tokens: tokens, scale: 1.0 }),
                Err(mlc_kernels::KernelError::InvalidArguments(_))
            ),
            "{why}: accepted"
        );
    }
}

#[test]
fn random_shapes_match_the_cpu_reference() {
    let (seed, cases) = random_run("embed");
    let mut draw = rng(seed);
    for i in 0..cases {
        let format = FORMATS[draw.random_range(0..FORMATS.len())];
        let vocab = draw.random_range(1..=3000);
        let hidden = 32 * draw.random_range(1..=32);
        let count = if draw.random_bool(0.3) { 1 } else { draw.random_range(2..=40) };
        // Ids in the table and, now and then, past it (a zero row).
        let tokens: Vec<u32> = (0..count)
            .map(|_| match draw.random_bool(0.1) {
                true => vocab as u32 + draw.random_range(0..5),
                false => draw.random_range(0..vocab as u32),
            })
            .collect();
        let scale = if draw.random_bool(0.5) { 1.0 } else { (hidden as f32).sqrt() };
        shout(&format!("case {i}: {format:?} vocab {vocab} hidden {hidden}, {count} tokens"));
        for (path, ctx) in contexts() {
            let kernel = Embed::new(ctx, format).unwrap();
            let mut rng = rng(seed + i as u64);
            check(path, ctx, &kernel, format, &mut rng, vocab, hidden, &tokens, scale);
        }
    }
}
