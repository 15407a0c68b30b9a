//! Causal grouped-query attention, one (token, KV head) pair at a time.
//!
//! The query heads that read one KV head (a GQA group) are computed together:
//! each key and value row is loaded once for all of them, as llama.cpp does.
//! For each pair the scores of every visible key go into a reusable buffer
//! (one per thread, so a step allocates nothing once it has grown), then the
//! maximum, the exponentials and their sum, and the weighted sum of the value
//! rows as one `o += w · v` per row. Every loop is written over whole rows in
//! eight independent lanes so that the compiler vectorizes it: the same
//! code is compiled for AVX2 (chosen at run time with
//! `is_x86_feature_detected!`, as the q4 product is), for wasm `simd128` (the
//! browser build enables it for the whole crate) and for the baseline
//! (SSE2 on x86_64). The results are within rounding of
//! [`crate::cpu::causal_attention`]: dot products sum in eight lanes and the
//! exponential is a polynomial ([`exp_in_place`]), not libm's.

use std::cell::RefCell;

use super::for_each_chunk;
use crate::cpu::KvLayout;

/// Query-position pairs below which the attention runs on one thread: a
/// decode step over a short context is cheaper than the scheduling.
const PARALLEL_WORK: usize = 1 << 16;

thread_local! {
    /// The scores of one (token, KV head) pair, `group × keys`; kept per
    /// thread, with room for the whole cache, so that a decode step reuses
    /// the buffer of the previous one and allocates nothing.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The instruction sets [`attention_with`] compiles its loops for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKernel {
    /// The target's baseline (SSE2 on x86_64; `simd128` in the browser
    /// build, which enables it for the whole crate).
    Baseline,
    /// x86_64 AVX2: eight lanes per instruction (detected at run time).
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl AttentionKernel {
    /// The widest one this CPU runs.
    pub fn best() -> AttentionKernel {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            return AttentionKernel::Avx2;
        }
        AttentionKernel::Baseline
    }
}

/// The same result as [`crate::cpu::causal_attention`] (`out[t, h] =
/// softmax(q[t, h] · Kᵀ · scale) · V` over positions `..= start + t`, the
/// last `window` of them when there is one), within rounding, with the
/// widest kernel this CPU runs. (Token, KV head) pairs run on rayon's pool
/// when the work is large enough.
#[allow(clippy::too_many_arguments)] // the reference's operands, each named
pub fn attention(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    layout: KvLayout,
    heads: usize,
    start: usize,
    window: Option<usize>,
    scale: f32,
    out: &mut [f32],
) {
    let kernel = AttentionKernel::best();
    attention_with(kernel, q, keys, values, layout, heads, start, window, scale, out);
}

/// [`attention`] with a chosen kernel.
///
/// # Panics
/// When the sizes disagree, or `kernel` needs an instruction set this CPU
/// lacks.
#[allow(clippy::too_many_arguments)] // the reference's operands, each named
pub fn attention_with(
    kernel: AttentionKernel,
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    layout: KvLayout,
    heads: usize,
    start: usize,
    window: Option<usize>,
    scale: f32,
    out: &mut [f32],
) {
    let (d, kv_heads) = (layout.head_dim, layout.kv_heads);
    assert!(heads.is_multiple_of(kv_heads), "attention: {heads} heads over {kv_heads} KV heads");
    let group = heads / kv_heads;
    let tokens = q.len() / (heads * d).max(1);
    assert_eq!(q.len(), tokens * heads * d, "attention: query size");
    assert_eq!(out.len(), q.len(), "attention: output size");
    #[cfg(target_arch = "x86_64")]
    if kernel == AttentionKernel::Avx2 {
        assert!(is_x86_feature_detected!("avx2"), "attention: this CPU lacks AVX2");
    }
    // The output rows of one (token, KV head) pair, `group` heads of `d`,
    // are contiguous: `out[t, g·group + j]`.
    let pair = group * d;
    if pair == 0 {
        return;
    }
    let work = tokens * heads * (start + tokens) * d;
    let chunk = if work >= PARALLEL_WORK { pair } else { out.len().max(1) };
    for_each_chunk(out, chunk, |c, part| {
        SCORES.with_borrow_mut(|scores| {
            for (i, o) in part.chunks_mut(pair).enumerate() {
                let index = c * (chunk / pair) + i;
                let (t, g) = (index / kv_heads, index % kv_heads);
                let visible = start + t + 1;
                let first = window.map_or(0, |w| visible.saturating_sub(w));
                let n = visible - first;
                let span = layout.offset(g, first)..layout.offset(g, first) + n * d;
                let heads = Group {
                    queries: &q[index * pair..][..pair],
                    keys: &keys[span.clone()],
                    values: &values[span],
                    d,
                    scale,
                };
                // Room for every position of the cache at the first call, so
                // that a later step, which sees one key more, never grows it.
                let most = group * layout.capacity.max(n);
                if scores.capacity() < most {
                    scores.reserve_exact(most - scores.len());
                }
                scores.resize(group * n, 0.0);
                match kernel {
                    AttentionKernel::Baseline => heads.run(scores, o, baseline_dot),
                    // SAFETY: AVX2 is present (checked above).
                    #[cfg(target_arch = "x86_64")]
                    AttentionKernel::Avx2 => unsafe { heads.run_avx2(scores, o) },
                }
            }
        })
    });
}

/// One (token, KV head) pair: its group's query rows against the KV head's
/// visible key and value rows.
struct Group<'a> {
    /// `group × d`: the query heads reading this KV head.
    queries: &'a [f32],
    /// `n × d`: the visible keys, oldest first.
    keys: &'a [f32],
    /// `n × d`: their values.
    values: &'a [f32],
    /// Head dimension.
    d: usize,
    /// Applied to every score.
    scale: f32,
}

impl Group<'_> {
    /// [`Group::run`] compiled for AVX2.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn run_avx2(&self, scores: &mut [f32], out: &mut [f32]) {
        // SAFETY: the caller's CPU has AVX2.
        self.run(scores, out, |a, b| unsafe { avx2_dot(a, b) })
    }

    /// `out[j] = softmax(queries[j] · keysᵀ · scale) · values` for each head
    /// `j` of the group, with the given dot product (each equals the
    /// portable eight-lane `dot` bit for bit); `scores` holds `group × n`
    /// floats.
    #[inline(always)]
    fn run(&self, scores: &mut [f32], out: &mut [f32], dot: impl Fn(&[f32], &[f32]) -> f32) {
        let d = self.d;
        let n = self.keys.len() / d.max(1);
        if n == 0 || d == 0 {
            out.fill(0.0);
            return;
        }
        // Scores, key by key: a key row is loaded once for the whole group.
        for (p, key) in self.keys.chunks_exact(d).enumerate() {
            for (j, query) in self.queries.chunks_exact(d).enumerate() {
                scores[j * n + p] = dot(query, key) * self.scale;
            }
        }
        // Softmax per head; the weights are divided by their sum before the
        // values are summed, as the reference does (`w / total · v`).
        for row in scores.chunks_exact_mut(n) {
            let max = max(row);
            let total = exp_in_place(row, max);
            row.iter_mut().for_each(|w| *w /= total);
        }
        out.fill(0.0);
        // Weighted sum, value row by value row, in position order: each
        // output element sums exactly as the reference's does.
        for (p, value) in self.values.chunks_exact(d).enumerate() {
            for (j, o) in out.chunks_exact_mut(d).enumerate() {
                let w = scores[j * n + p];
                o.iter_mut().zip(value).for_each(|(o, &v)| *o += w * v);
            }
        }
    }
}

/// `Σ a[i] · b[i]` in eight lanes (lane `l` sums `i ≡ l mod 8`), reduced as
/// a tree, then the tail in order. The other builds' products equal it bit
/// for bit (in wasm it is the tests' reference only).
#[cfg(any(test, not(all(target_arch = "wasm32", target_feature = "simd128"))))]
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let (a_tail, b_tail) = (a8.remainder(), b8.remainder());
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut sum = lanes(acc);
    for (x, y) in a_tail.iter().zip(b_tail) {
        sum += x * y;
    }
    sum
}

/// `dot` with AVX2: one 256-bit multiply and add per eight elements, the
/// tree as two 128-bit halves added, then their halves, then two lanes.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn avx2_dot(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let len = a.len().min(b.len());
    let whole = len / 8 * 8;
    // SAFETY: AVX2 is present (the caller's contract); every load reads
    // eight floats below `whole ≤ len` of both slices.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for i in (0..whole).step_by(8) {
            let x = _mm256_loadu_ps(a.as_ptr().add(i));
            let y = _mm256_loadu_ps(b.as_ptr().add(i));
            acc = _mm256_add_ps(acc, _mm256_mul_ps(x, y));
        }
        // (a0 + a4, a1 + a5, a2 + a6, a3 + a7), then (· + a2-lane, · + a3-lane).
        let four = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let two = _mm_add_ps(four, _mm_movehl_ps(four, four));
        let mut sum = _mm_cvtss_f32(_mm_add_ss(two, _mm_movehdup_ps(two)));
        for i in whole..len {
            sum += a[i] * b[i];
        }
        sum
    }
}

/// `dot` as the baseline build runs it: in `simd128` where the build
/// enables it (the browser's), as two four-lane accumulators reduced in the
/// same tree.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn baseline_dot(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::wasm32::*;
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let (a_tail, b_tail) = (a8.remainder(), b8.remainder());
    let (mut low, mut high) = (f32x4_splat(0.0), f32x4_splat(0.0));
    for (x, y) in a8.zip(b8) {
        // SAFETY: each chunk holds eight floats; wasm loads need no alignment.
        let load = |s: &[f32], at: usize| unsafe { v128_load(s[at..at + 4].as_ptr().cast()) };
        low = f32x4_add(low, f32x4_mul(load(x, 0), load(y, 0)));
        high = f32x4_add(high, f32x4_mul(load(x, 4), load(y, 4)));
    }
    let four = f32x4_add(low, high);
    let two = f32x4_add(four, i32x4_shuffle::<2, 3, 2, 3>(four, four));
    let mut sum = f32x4_extract_lane::<0>(two) + f32x4_extract_lane::<1>(two);
    for (x, y) in a_tail.iter().zip(b_tail) {
        sum += x * y;
    }
    sum
}

/// `dot` as the baseline build runs it: the portable loop.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn baseline_dot(a: &[f32], b: &[f32]) -> f32 {
    dot(a, b)
}

/// `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))`: halves added to
/// halves, which a vector unit does in three shuffles and adds.
#[inline(always)]
fn lanes(a: [f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// The largest element (`f32::max` in eight lanes: the same value as a
/// sequential fold).
#[inline(always)]
fn max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            acc[l] = acc[l].max(c[l]);
        }
    }
    tail.iter().fold(acc.into_iter().fold(f32::NEG_INFINITY, f32::max), |m, &x| m.max(x))
}

/// `row[i] = exp(row[i] − max)` and their sum (in eight lanes). The
/// exponential is Cephes' `expf` (argument reduction by `ln 2` in two parts,
/// a degree-6 polynomial, the power of two put into the exponent bits),
/// written without branches or library calls so that it vectorizes; its
/// error is within two ulps of libm's for the arguments here (`≤ 0`), and
/// `exp(0)` is exactly 1. Arguments below −87.3 are clamped there (the
/// result, ~1e-38, stays a normal float).
#[inline(always)]
fn exp_in_place(row: &mut [f32], max: f32) -> f32 {
    /// 1.5 · 2²³: adding it rounds a float of magnitude below 2²² to an
    /// integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 = LN2_HI + LN2_LO, LN2_HI with few enough bits that n · LN2_HI is
    // exact (Cephes).
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const P: [f32; 6] =
        [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];
    for x in row.iter_mut() {
        let x0 = (*x - max).max(-87.3);
        let shifted = x0 * LOG2E + ROUND;
        let n = shifted - ROUND;
        let r = x0 - n * LN2_HI - n * LN2_LO;
        let mut y = P[0];
        for c in &P[1..] {
            y = y * r + c;
        }
        let y = y * (r * r) + r + 1.0;
        let power = (shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32 + 127) << 23;
        *x = y * f32::from_bits(power as u32);
    }
    let mut acc = [0.0f32; 8];
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            acc[l] += c[l];
        }
    }
    tail.iter().fold(lanes(acc), |s, &x| s + x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::causal_attention;

    /// Every kernel this CPU runs.
    fn kernels() -> Vec<AttentionKernel> {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            return vec![AttentionKernel::Baseline, AttentionKernel::Avx2];
        }
        vec![AttentionKernel::Baseline]
    }

    /// A small deterministic generator (xorshift), values in `[-1, 1)`.
    fn noise(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1 << 23) as f32 - 1.0
            })
            .collect()
    }

    #[test]
    fn every_dot_product_equals_the_portable_one_bit_for_bit() {
        for len in [0, 1, 7, 8, 9, 16, 63, 64, 100, 128] {
            let (a, b) = (noise(len, 5), noise(len, 6));
            let want = dot(&a, &b).to_bits();
            assert_eq!(baseline_dot(&a, &b).to_bits(), want, "baseline, {len}");
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 was detected.
                assert_eq!(unsafe { avx2_dot(&a, &b) }.to_bits(), want, "AVX2, {len}");
            }
        }
    }

    #[test]
    fn exp_is_within_two_ulps_of_libm() {
        let mut xs: Vec<f32> = (0..19_800).map(|i| -(i as f32) * 0.0044).collect();
        xs.extend([0.0, -1e-30, -0.5, -87.0, -87.3]);
        let mut got = xs.clone();
        let total = exp_in_place(&mut got, 0.0);
        for (&x, &g) in xs.iter().zip(&got) {
            let want = x.exp();
            let ulps = (g.to_bits() as i64 - want.to_bits() as i64).abs();
            assert!(ulps <= 2, "exp({x}) = {g}, libm {want}: {ulps} ulps");
        }
        assert_eq!(got[xs.len() - 5], 1.0, "exp(0) is exactly 1");
        let want: f64 = got.iter().map(|&g| g as f64).sum();
        assert!((total as f64 - want).abs() < 1e-5 * want);
    }

    #[test]
    fn attention_equals_the_reference_over_gqa_shapes_windows_and_starts() {
        // (heads, kv_heads, head_dim): one head per KV head, groups of 3 and
        // 7, and head dims with and without a tail beyond the eight lanes.
        for (heads, kv_heads, d) in [(4, 4, 16), (9, 3, 64), (14, 2, 12), (6, 2, 5)] {
            let capacity = 80;
            let layout = KvLayout { kv_heads, capacity, head_dim: d };
            let keys = noise(kv_heads * capacity * d, 1);
            let values = noise(kv_heads * capacity * d, 2);
            // A first prefill, a decode step late in the context, a prefill
            // after earlier tokens large enough to run on the pool.
            for (start, tokens) in [(0, 5), (57, 1), (20, 40)] {
                let q: Vec<f32> = noise(tokens * heads * d, 3).iter().map(|x| x * 3.0).collect();
                for window in [None, Some(1), Some(9), Some(200)] {
                    let mut want = vec![0.0; q.len()];
                    let scale = 1.0 / (d as f32).sqrt();
                    causal_attention(
                        &q, &keys, &values, layout, heads, start, window, scale, &mut want,
                    );
                    for kernel in kernels() {
                        let mut got = vec![f32::NAN; q.len()];
                        attention_with(
                            kernel, &q, &keys, &values, layout, heads, start, window, scale,
                            &mut got,
                        );
                        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                            assert!(
                                (g - w).abs() < 1e-5,
                                "{kernel:?} heads {heads}/{kv_heads} d {d} start {start} \
                                 tokens {tokens} window {window:?} at {i}: {g} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }
}
