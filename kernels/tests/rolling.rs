//! The rolling KV cache's `gather` and `keep` against `cpu::gather_rolling`
//! and `RollingWindow::slot`: the held tokens rotated at their places in the
//! attention cache, the pass's rows kept unrotated in their ring slots (the
//! last row of a slot when a pass wraps the ring), other sequences untouched.

mod common;

use common::{
    CACHE_FORMATS, assert_caches, contexts, encode, invalid, random_vec, rng, shout, upload,
    upload_cache,
};
use mlc_kernels::cpu::{KvLayout, RollingWindow, Rope, gather_rolling};
use mlc_kernels::{
    FloatFormat, Kernel, RollingBuffers, RollingCache, RollingShape, RopeTable, Step,
};

#[test]
fn gather_and_keep_match_the_cpu_reference() {
    let (heads, kv_heads, d, rotary_dim) = (4, 2, 16, 12);
    let window = RollingWindow { size: 10, sink: 3 };
    let (sequences, sequence, capacity) = (2, 1, 16);
    let rope = Rope::new(10_000.0, rotary_dim, None);
    let width = (heads + 2 * kv_heads) * d;
    let ring = KvLayout { kv_heads, capacity: window.size, head_dim: d };
    let layout = KvLayout { kv_heads, capacity, head_dim: d };
    let table: Vec<(f32, f32)> = (0..capacity).flat_map(|p| rope.cos_sin(p)).collect();
    // Starts before the window fills, at it, past it; passes of one row, a few,
    // and more than the ring's non-sink slots (a wrap within the pass).
    let cases = [(4, 3), (10, 1), (23, 1), (31, 6), (40, 9), (2, 9)];
    for ((ctx_name, ctx), kv) in contexts().iter().flat_map(|c| CACHE_FORMATS.map(|kv| (c, kv))) {
        shout(&format!("rolling on {ctx_name}, {kv:?} attention cache"));
        let kernel = RollingCache::new(ctx, kv).unwrap();
        for (case, &(start, tokens)) in cases.iter().enumerate() {
            let what = format!("{ctx_name} {kv:?} cache, start {start}, {tokens} rows");
            let mut rng = rng(case as u64);
            let qkv = random_vec(&mut rng, tokens * width, 2.0);
            let block = kv_heads * d;
            let ring_k = random_vec(&mut rng, sequences * block * window.size, 1.0);
            let ring_v = random_vec(&mut rng, sequences * block * window.size, 1.0);
            let (k_cache, k_before) =
                upload_cache(ctx, &random_vec(&mut rng, sequences * block * capacity, 1.0), kv);
            let (v_cache, v_before) =
                upload_cache(ctx, &random_vec(&mut rng, sequences * block * capacity, 1.0), kv);

            // CPU: gather from sequence 1's ring block, then keep its rows in order.
            let ring_block =
                |all: &[f32]| all[sequence * block * window.size..][..block * window.size].to_vec();
            let (mut k_want, mut v_want) = (k_before.clone(), v_before.clone());
            let cache_block = sequence * block * capacity..(sequence + 1) * block * capacity;
            gather_rolling(
                window,
                start,
                (&ring_block(&ring_k), &ring_block(&ring_v)),
                ring,
                &table[..window.size * rotary_dim],
                &mut k_want[cache_block.clone()],
                &mut v_want[cache_block],
                layout,
            );
            let (k_want, v_want) = (encode(&k_want, kv).1, encode(&v_want, kv).1);
            let (mut ring_k_want, mut ring_v_want) = (ring_k.clone(), ring_v.clone());
            for t in 0..tokens {
                let slot = window.slot(start + t);
                for g in 0..kv_heads {
                    let at = sequence * block * window.size + ring.offset(g, slot);
                    let row = &qkv[t * width..][..width];
                    ring_k_want[at..at + d].copy_from_slice(&row[(heads + g) * d..][..d]);
                    ring_v_want[at..at + d]
                        .copy_from_slice(&row[(heads + kv_heads + g) * d..][..d]);
                }
            }

            let table_buffer = RopeTable::new(ctx, &rope, capacity).unwrap();
            let (qkv_buffer, ring_k_buffer, ring_v_buffer) =
                (upload(ctx, &qkv), upload(ctx, &ring_k), upload(ctx, &ring_v));
            let buffers = RollingBuffers {
                qkv: &qkv_buffer,
                table: &table_buffer,
                ring_k: &ring_k_buffer,
                ring_v: &ring_v_buffer,
                k_cache: &k_cache,
                v_cache: &v_cache,
            };
            let shape = RollingShape { heads, kv_heads, head_dim: d, window, capacity, sequences };
            let mut bound = kernel.bind(ctx, &buffers, &shape).unwrap();
            bound.run(ctx, Step::at(tokens, start).in_sequence(sequence)).unwrap();

            assert_caches(ctx, &what, (&k_cache, &k_want), (&v_cache, &v_want), kv);
            assert_eq!(
                ctx.read_f32(&ring_k_buffer, ring_k.len()).unwrap(),
                ring_k_want,
                "{what}: ring k"
            );
            assert_eq!(
                ctx.read_f32(&ring_v_buffer, ring_v.len()).unwrap(),
                ring_v_want,
                "{what}: ring v"
            );
        }
    }
}

#[test]
fn rolling_rejects_wrong_shapes() {
    let (_, ctx) = &contexts()[0];
    let kernel = RollingCache::new(ctx, FloatFormat::F32).unwrap();
    let (kv_heads, d, capacity) = (1, 16, 8);
    let window = RollingWindow { size: 4, sink: 1 };
    let table = RopeTable::new(ctx, &Rope::new(10_000.0, d, None), capacity).unwrap();
    let qkv = ctx.empty_storage_buffer("qkv", 4 * 4 * d as u64 * 2);
    let [ring_k, ring_v] =
        ["ring k", "ring v"].map(|name| ctx.empty_storage_buffer(name, 4 * 4 * 16 * 4));
    // Room for a head of 24 values, so only the rule refuses a head of 18.
    let [cache, v_cache] =
        ["cache", "v cache"].map(|name| ctx.empty_storage_buffer(name, 4 * 24 * 8));
    let small = ctx.empty_storage_buffer("small", 4 * 16 * 4);
    let buffers = |k_cache| RollingBuffers {
        qkv: &qkv,
        table: &table,
        ring_k: &ring_k,
        ring_v: &ring_v,
        k_cache,
        v_cache: &v_cache,
    };
    let shape = RollingShape { heads: 2, kv_heads, head_dim: d, window, capacity, sequences: 1 };
    kernel.bind(ctx, &buffers(&cache), &shape).unwrap();
    assert!(invalid(kernel.bind(ctx, &buffers(&small), &shape)), "cache too small");
    assert!(
        invalid(kernel.bind(ctx, &buffers(&cache), &RollingShape { kv_heads: 3, ..shape })),
        "heads % kv_heads"
    );
    let sinks_fill_the_window = RollingWindow { size: 4, sink: 4 };
    assert!(
        invalid(kernel.bind(
            ctx,
            &buffers(&cache),
            &RollingShape { window: sinks_fill_the_window, ..shape }
        )),
        "no rolling slot"
    );
    assert!(
        invalid(kernel.bind(ctx, &buffers(&cache), &RollingShape { capacity: 3, ..shape })),
        "window beyond the capacity"
    );
    let odd = RollingShape { heads: 1, head_dim: 18, ..shape };
    assert!(invalid(kernel.bind(ctx, &buffers(&cache), &odd)), "head_dim not a multiple of 4");
    assert!(invalid(kernel.bind(ctx, &buffers(&ring_k), &shape)), "k_cache aliases ring_k");
    // An f16 cache takes half the bytes: `small` holds 8 positions in f16.
    let half = RollingCache::new(ctx, FloatFormat::F16).unwrap();
    half.bind(ctx, &buffers(&small), &shape).unwrap();
    let two_kv_heads = RollingShape { heads: 2, kv_heads: 2, ..shape };
    assert!(invalid(half.bind(ctx, &buffers(&small), &two_kv_heads)), "f16 cache too small");
}
