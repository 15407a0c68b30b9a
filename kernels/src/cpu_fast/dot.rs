//! `Σ_k w[k] · a[k]` of a q4 weight row and int16 activation rows.
//!
//! Every implementation computes the same numbers bit for bit, in one of two
//! orders. A prefill's products ([`dot_q4_q16_with`]: several tokens against
//! one weight row) keep eight exact integer lanes per block, lane `m` summing
//! `(c − 7)·a` over weights `2m, 2m + 1, 16 + 2m, 17 + 2m` (what AVX2's
//! `vpmaddwd` on the low and high nibbles yields); each lane accumulates
//! `acc[m] += (w.scale · a.scale) · lane` with separate multiply and add (no
//! FMA), and the result is
//! `((acc0 + acc4) + (acc2 + acc6)) + ((acc1 + acc5) + (acc3 + acc7))`; a
//! token's result does not depend on how many tokens share the call. A decode step's product ([`dot_rows_q4_q16`]: one token
//! against many weight rows) adds each block's whole exact sum, scaled, to
//! one accumulator. A SIMD kernel is tested against the scalar one of its
//! order for exact equality.

use std::sync::OnceLock;

use super::blocks::{Q4Block, Q16Block};

/// The implementations of [`dot_q4_q16`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DotKernel {
    /// Portable Rust.
    Scalar,
    /// x86_64 AVX2 (detected at run time).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// x86_64 AVX-512 with VNNI (detected at run time): two tokens per
    /// 512-bit register for a prefill's products, AVX2 for one token.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// WebAssembly SIMD (the browser build enables `simd128`).
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    Simd128,
}

impl DotKernel {
    /// The fastest kernel this CPU runs.
    pub fn best() -> DotKernel {
        static BEST: OnceLock<DotKernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            if avx512::detected() {
                return DotKernel::Avx512;
            }
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") {
                return DotKernel::Avx2;
            }
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            return DotKernel::Simd128;
            #[allow(unreachable_code)]
            DotKernel::Scalar
        })
    }
}

/// The dot product of a weight row and an activation row of as many blocks,
/// with the fastest kernel available.
pub fn dot_q4_q16(w: &[Q4Block], a: &[Q16Block]) -> f32 {
    let mut out = [0.0];
    dot_q4_q16_with(DotKernel::best(), w, a, &mut out);
    out[0]
}

/// `out[t] = w · a[t]` for the `out.len()` activation rows of `a` (each
/// `w.len()` blocks) with a chosen kernel. A SIMD kernel unpacks each weight
/// block once for up to eight rows (a prefill's tokens).
///
/// [`DotKernel::Avx512`] lays the rows out in pairs ([`pair_rows`]) here, on
/// every call: a product over many weight rows pairs them once and calls
/// [`dot_q4_q16_pairs`].
///
/// # Panics
/// When the sizes disagree, or `kernel` needs an instruction set this CPU
/// lacks.
pub fn dot_q4_q16_with(kernel: DotKernel, w: &[Q4Block], a: &[Q16Block], out: &mut [f32]) {
    assert_eq!(w.len() * out.len(), a.len(), "dot_q4_q16: weight and activation blocks differ");
    match kernel {
        DotKernel::Scalar => {
            for (y, a) in out.iter_mut().zip(a.chunks(w.len().max(1))) {
                *y = scalar(w, a);
            }
        }
        #[cfg(target_arch = "x86_64")]
        DotKernel::Avx2 => {
            assert!(is_x86_feature_detected!("avx2"), "dot_q4_q16: this CPU lacks AVX2");
            // SAFETY: AVX2 is present (checked above); the sizes were checked.
            unsafe { avx2::dots(w, a, out) }
        }
        #[cfg(target_arch = "x86_64")]
        DotKernel::Avx512 if out.len() == 1 => dot_q4_q16_with(DotKernel::Avx2, w, a, out),
        #[cfg(target_arch = "x86_64")]
        DotKernel::Avx512 => {
            let mut pairs = Vec::new();
            pair_rows(a, w.len(), &mut pairs);
            dot_q4_q16_pairs(w, &pairs, out);
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        DotKernel::Simd128 => simd128::dots(w, a, out),
    }
}

/// `out[n] = w[n] · a` for the `out.len()` weight rows of `w` (each
/// `a.len()` blocks, one after the other) against one activation row, with a
/// chosen kernel: a decode step's product.
///
/// Its order differs from [`dot_q4_q16_with`]'s: per block the exact integer
/// `Σ (c − 7)·a` is converted once and added, scaled, to one accumulator per
/// row, so that the kernels can sum whole blocks across rows instead of
/// keeping eight float lanes per row (a quarter faster on AVX2). Every
/// kernel computes this order bit for bit; the two orders differ by
/// rounding only (and this one rounds less).
///
/// # Panics
/// When the sizes disagree, or `kernel` needs an instruction set this CPU
/// lacks.
pub fn dot_rows_q4_q16(kernel: DotKernel, w: &[Q4Block], a: &[Q16Block], out: &mut [f32]) {
    assert_eq!(
        out.len() * a.len(),
        w.len(),
        "dot_rows_q4_q16: weight and activation blocks differ"
    );
    match kernel {
        DotKernel::Scalar => scalar_rows(w, a, out),
        #[cfg(target_arch = "x86_64")]
        DotKernel::Avx2 | DotKernel::Avx512 => {
            assert!(is_x86_feature_detected!("avx2"), "dot_rows_q4_q16: this CPU lacks AVX2");
            // SAFETY: AVX2 is present (checked above); the sizes were checked.
            unsafe { avx2::rows(w, a, out) }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        DotKernel::Simd128 => simd128::rows(w, a, out),
    }
}

/// One block of two activation rows, laid out for [`DotKernel::Avx512`]: a
/// 512-bit load gives both rows' values 0..16 (or 16..32), another both
/// scales, each broadcast over the eight lanes of its row.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[repr(C, align(64))]
pub struct Q16Pair {
    /// Values 0..16 of the first row, then of the second.
    low: [[i16; 16]; 2],
    /// Values 16..32 of the first row, then of the second.
    high: [[i16; 16]; 2],
    /// The first row's scale eight times, then the second's.
    scales: [[f32; 8]; 2],
}

/// Lays out the rows of `a` (each `blocks` blocks) in pairs into `out`:
/// pair `p`'s block `b` at `p · blocks + b`, holding rows `2p` and `2p + 1`
/// (an odd last row is paired with zeros).
#[cfg(target_arch = "x86_64")]
pub fn pair_rows(a: &[Q16Block], blocks: usize, out: &mut Vec<Q16Pair>) {
    let rows = a.len() / blocks.max(1);
    out.clear();
    out.resize(rows.div_ceil(2) * blocks, Q16Pair::default());
    for (t, row) in a.chunks(blocks.max(1)).enumerate() {
        let (pairs, half) = (&mut out[t / 2 * blocks..(t / 2 + 1) * blocks], t % 2);
        for (pair, block) in pairs.iter_mut().zip(row) {
            pair.low[half].copy_from_slice(&block.values[..16]);
            pair.high[half].copy_from_slice(&block.values[16..]);
            pair.scales[half] = [block.scale; 8];
        }
    }
}

/// `out[t] = w · row t` for the `out.len()` activation rows that
/// [`pair_rows`] laid out in `pairs`, with [`DotKernel::Avx512`]; bit-equal to
/// [`dot_q4_q16_with`] with any kernel.
///
/// # Panics
/// When the sizes disagree, or this CPU lacks AVX-512 VNNI.
#[cfg(target_arch = "x86_64")]
pub fn dot_q4_q16_pairs(w: &[Q4Block], pairs: &[Q16Pair], out: &mut [f32]) {
    assert_eq!(
        out.len().div_ceil(2) * w.len(),
        pairs.len(),
        "dot_q4_q16_pairs: weight and activation blocks differ"
    );
    assert!(avx512::detected(), "dot_q4_q16_pairs: this CPU lacks AVX-512 VNNI");
    // SAFETY: the features are present (checked above); the sizes were checked.
    unsafe { avx512::dots(w, pairs, out) }
}

/// The fixed reduction of the eight lane accumulators.
#[inline(always)]
fn reduce(acc: [f32; 8]) -> f32 {
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

fn scalar(w: &[Q4Block], a: &[Q16Block]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (w, a) in w.iter().zip(a) {
        let term = |j: usize| (w.code(j) as i32 - 7) * a.values[j] as i32;
        let scale = w.scale * a.scale;
        for (m, acc) in acc.iter_mut().enumerate() {
            let lane = term(2 * m) + term(2 * m + 1) + term(16 + 2 * m) + term(17 + 2 * m);
            *acc += scale * lane as f32;
        }
    }
    reduce(acc)
}

/// One weight row against one activation row in the decode order: per
/// block the exact integer `Σ (c − 7)·a`, converted once and scaled, added to
/// a single accumulator (`acc += (w.scale · a.scale) · sum`).
fn scalar_rows(w: &[Q4Block], a: &[Q16Block], out: &mut [f32]) {
    for (n, y) in out.iter_mut().enumerate() {
        let row = &w[n * a.len()..(n + 1) * a.len()];
        *y = row.iter().zip(a).fold(0.0f32, |acc, (w, a)| {
            let sum: i32 = (0..32).map(|j| (w.code(j) as i32 - 7) * a.values[j] as i32).sum();
            acc + (w.scale * a.scale) * sum as f32
        });
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Q4Block, Q16Block};

    /// The block's 32 codes as two i16x16 (weights 0..16, 16..32), minus 7.
    #[inline(always)]
    unsafe fn unpack(w: &Q4Block) -> (__m256i, __m256i) {
        // SAFETY (whole body): the caller has AVX2; the load reads the
        // block's 16 code bytes, unaligned.
        unsafe {
            let packed = _mm_loadu_si128(w.codes.as_ptr().cast());
            let mask = _mm_set1_epi8(0x0F);
            let seven = _mm256_set1_epi16(7);
            let low = _mm256_cvtepu8_epi16(_mm_and_si128(packed, mask));
            let high = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), mask));
            (_mm256_sub_epi16(low, seven), _mm256_sub_epi16(high, seven))
        }
    }

    /// `acc += (w.scale · a.scale) · lanes`, the lanes from `vpmaddwd`.
    #[inline(always)]
    unsafe fn accumulate(
        acc: __m256,
        (low, high): (__m256i, __m256i),
        w: &Q4Block,
        a: &Q16Block,
    ) -> __m256 {
        // SAFETY (whole body): the caller has AVX2; the loads read the
        // block's 64 value bytes, unaligned.
        unsafe {
            let first = _mm256_loadu_si256(a.values.as_ptr().cast());
            let second = _mm256_loadu_si256(a.values.as_ptr().add(16).cast());
            let lanes =
                _mm256_add_epi32(_mm256_madd_epi16(low, first), _mm256_madd_epi16(high, second));
            let scale = _mm256_set1_ps(w.scale * a.scale);
            _mm256_add_ps(acc, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(lanes)))
        }
    }

    /// [`super::reduce`] of a vector.
    #[inline(always)]
    pub(super) unsafe fn reduce(acc: __m256) -> f32 {
        // SAFETY: the caller has AVX2.
        unsafe {
            let pairs = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
            let halves = _mm_add_ps(pairs, _mm_movehl_ps(pairs, pairs));
            _mm_cvtss_f32(_mm_add_ss(halves, _mm_shuffle_ps(halves, halves, 1)))
        }
    }

    /// How far ahead of the block it multiplies a product asks for weights,
    /// in blocks (640 bytes): a decode step streams every weight from memory
    /// once, and without the hint most of its time waited on those loads.
    const PREFETCH_BLOCKS: usize = 32;

    /// `T` activation rows against one weight row: each weight block is
    /// unpacked once for all of them.
    #[inline(always)]
    unsafe fn tile<const T: usize>(w: &[Q4Block], a: &[Q16Block], out: &mut [f32]) {
        let blocks = w.len();
        // SAFETY: the caller has AVX2; `a` holds `T` rows of `blocks` blocks.
        // A prefetch never faults, so its address may lie past the row (the
        // next rows of the matrix, or nothing): `wrapping_add` computes it
        // without claiming it is in bounds.
        unsafe {
            let mut acc = [_mm256_setzero_ps(); T];
            for (b, w) in w.iter().enumerate() {
                let ahead = (w as *const Q4Block).wrapping_add(PREFETCH_BLOCKS);
                _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                let codes = unpack(w);
                for (t, acc) in acc.iter_mut().enumerate() {
                    *acc = accumulate(*acc, codes, w, &a[t * blocks + b]);
                }
            }
            for (y, acc) in out.iter_mut().zip(acc) {
                *y = reduce(acc);
            }
        }
    }

    /// The sum of a vector's eight lanes, in every lane of the low half.
    #[inline(always)]
    unsafe fn lane_sum(v: __m256i) -> __m128i {
        // SAFETY: the caller has AVX2.
        unsafe {
            let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
            _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1))
        }
    }

    /// `7 · Σ a` over the block, in every lane of the low half: what
    /// `Σ c·a` of the unshifted codes exceeds `Σ (c − 7)·a` by.
    #[inline(always)]
    unsafe fn sevens(first: __m256i, second: __m256i) -> __m128i {
        // SAFETY: the caller has AVX2.
        unsafe {
            let seven = _mm256_set1_epi16(7);
            lane_sum(_mm256_add_epi32(
                _mm256_madd_epi16(seven, first),
                _mm256_madd_epi16(seven, second),
            ))
        }
    }

    /// The even 16-bit values of each 128-bit half, then the odd, as 64-bit
    /// quarters 0, 1 (evens of both halves) and 2, 3 (odds).
    #[inline(always)]
    unsafe fn evens_then_odds(v: __m256i, gather: __m256i) -> __m256i {
        // SAFETY: the caller has AVX2.
        unsafe { _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, gather), 0b11_01_10_00) }
    }

    /// Four lanes of `Σ c·a` (unshifted codes) for each of two rows' blocks:
    /// `even` in the low half, `odd` in the high half.
    #[inline(always)]
    unsafe fn pair_lanes(
        even: &Q4Block,
        odd: &Q4Block,
        act: &[__m256i; 4],
        nibble: __m256i,
    ) -> __m256i {
        // SAFETY (whole body): the caller has AVX2; the loads read each
        // block's 16 code bytes, unaligned.
        unsafe {
            let codes = _mm256_loadu2_m128i(odd.codes.as_ptr().cast(), even.codes.as_ptr().cast());
            let nibbles = [
                _mm256_and_si256(codes, nibble),
                _mm256_and_si256(_mm256_srli_epi16(codes, 4), nibble),
                _mm256_and_si256(_mm256_srli_epi16(codes, 8), nibble),
                _mm256_srli_epi16(codes, 12),
            ];
            _mm256_add_epi32(
                _mm256_add_epi32(
                    _mm256_madd_epi16(nibbles[0], act[0]),
                    _mm256_madd_epi16(nibbles[1], act[1]),
                ),
                _mm256_add_epi32(
                    _mm256_madd_epi16(nibbles[2], act[2]),
                    _mm256_madd_epi16(nibbles[3], act[3]),
                ),
            )
        }
    }

    /// Eight weight rows (`w`, one after the other) against one activation
    /// row, in [`super::scalar_rows`]' order.
    ///
    /// Two rows' blocks share a register (row `2p` in the low half, `2p + 1`
    /// in the high half); four shifts and masks of its 16-bit lanes give
    /// each nibble position of the 32 code bytes as 16-bit codes, with no
    /// lane-crossing unpack, and the activations are gathered once per block
    /// into the matching order (`act_low[k] = a[2k]`, `act_high[k] = a[2k + 16]`,
    /// ... for k < 8, in both halves). Per block the eight rows' exact sums
    /// land in one vector (rows 0, 2, 4, 6, 1, 3, 5, 7), which is scaled and
    /// added to one accumulator.
    #[inline(always)]
    unsafe fn row_tile8(w: &[Q4Block], a: &[Q16Block], out: &mut [f32]) {
        let blocks = a.len();
        // SAFETY: the caller has AVX2; `w` holds 8 rows of `blocks` blocks
        // and `out` 8 values. The prefetches stream the next 8 rows (160
        // bytes per block step, all of them over the row), which may lie
        // past the matrix: a prefetch never faults, and `wrapping_add`
        // computes the address without claiming it in bounds.
        unsafe {
            let next = w.as_ptr().wrapping_add(8 * blocks);
            let nibble = _mm256_set1_epi16(0x000F);
            // Within each 128-bit half: the even 16-bit values, then the odd.
            let gather = _mm256_setr_epi8(
                0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9, 12, 13, 2,
                3, 6, 7, 10, 11, 14, 15,
            );
            let mut acc = _mm256_setzero_ps();
            for (b, a) in a.iter().enumerate() {
                _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(8 * b).cast());
                _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(8 * b + 4).cast());
                let first = _mm256_loadu_si256(a.values.as_ptr().cast());
                let second = _mm256_loadu_si256(a.values.as_ptr().add(16).cast());
                // [evens of 0..16, odds of 0..16] (then of 16..32) as 64-bit
                // quarters 0, 1 | 2, 3, each half broadcast below.
                let (low, high) = (evens_then_odds(first, gather), evens_then_odds(second, gather));
                // Code byte 2k holds weights 2k (low nibble) and 2k + 16 (high
                // nibble), byte 2k + 1 weights 2k + 1 and 2k + 17.
                let act = [
                    _mm256_permute2x128_si256(low, low, 0x00),
                    _mm256_permute2x128_si256(high, high, 0x00),
                    _mm256_permute2x128_si256(low, low, 0x11),
                    _mm256_permute2x128_si256(high, high, 0x11),
                ];
                let row: [&Q4Block; 8] = std::array::from_fn(|r| &w[r * blocks + b]);
                let pairs = [
                    pair_lanes(row[0], row[1], &act, nibble),
                    pair_lanes(row[2], row[3], &act, nibble),
                    pair_lanes(row[4], row[5], &act, nibble),
                    pair_lanes(row[6], row[7], &act, nibble),
                ];
                let sums = _mm256_hadd_epi32(
                    _mm256_hadd_epi32(pairs[0], pairs[1]),
                    _mm256_hadd_epi32(pairs[2], pairs[3]),
                );
                let sums =
                    _mm256_sub_epi32(sums, _mm256_broadcastsi128_si256(sevens(first, second)));
                let w_scales = _mm256_setr_ps(
                    row[0].scale,
                    row[2].scale,
                    row[4].scale,
                    row[6].scale,
                    row[1].scale,
                    row[3].scale,
                    row[5].scale,
                    row[7].scale,
                );
                let scales = _mm256_mul_ps(w_scales, _mm256_set1_ps(a.scale));
                acc = _mm256_add_ps(acc, _mm256_mul_ps(scales, _mm256_cvtepi32_ps(sums)));
            }
            let in_order = _mm256_permutevar8x32_ps(acc, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_ps(out.as_mut_ptr(), in_order);
        }
    }

    /// One weight row, in [`super::scalar_rows`]' order.
    #[inline(always)]
    unsafe fn row1(w: &[Q4Block], a: &[Q16Block]) -> f32 {
        // SAFETY: the caller has AVX2; `w` and `a` have as many blocks.
        unsafe {
            let mut acc = 0.0f32;
            for (w, a) in w.iter().zip(a) {
                let first = _mm256_loadu_si256(a.values.as_ptr().cast());
                let second = _mm256_loadu_si256(a.values.as_ptr().add(16).cast());
                let packed = _mm_loadu_si128(w.codes.as_ptr().cast());
                let mask = _mm_set1_epi8(0x0F);
                let low = _mm256_cvtepu8_epi16(_mm_and_si128(packed, mask));
                let high = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), mask));
                let lanes = _mm256_add_epi32(
                    _mm256_madd_epi16(low, first),
                    _mm256_madd_epi16(high, second),
                );
                let sum = _mm_sub_epi32(lane_sum(lanes), sevens(first, second));
                acc += (w.scale * a.scale) * _mm_cvtsi128_si32(sum) as f32;
            }
            acc
        }
    }

    /// [`super::dot_rows_q4_q16`]: eight weight rows at a time, the rest
    /// one at a time.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn rows(w: &[Q4Block], a: &[Q16Block], out: &mut [f32]) {
        let blocks = a.len();
        let mut tiles = out.chunks_exact_mut(8);
        let mut first = 0;
        // SAFETY: AVX2 is enabled for this function; each tile gets its
        // weight rows and as many results.
        unsafe {
            for out8 in &mut tiles {
                row_tile8(&w[first * blocks..(first + 8) * blocks], a, out8);
                first += 8;
            }
            for y in tiles.into_remainder() {
                *y = row1(&w[first * blocks..(first + 1) * blocks], a);
                first += 1;
            }
        }
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dots(w: &[Q4Block], a: &[Q16Block], out: &mut [f32]) {
        let blocks = w.len();
        let mut rows = out.chunks_exact_mut(8);
        let mut first = 0;
        // SAFETY: AVX2 is enabled for this function; each tile gets its rows.
        // Eight accumulators, the two unpacked halves and the loaded values
        // fit the sixteen ymm registers.
        unsafe {
            for out8 in &mut rows {
                tile::<8>(w, &a[first * blocks..(first + 8) * blocks], out8);
                first += 8;
            }
            let mut rows = rows.into_remainder().chunks_exact_mut(4);
            for out4 in &mut rows {
                tile::<4>(w, &a[first * blocks..(first + 4) * blocks], out4);
                first += 4;
            }
            for y in rows.into_remainder().chunks_mut(1) {
                tile::<1>(w, &a[first * blocks..(first + 1) * blocks], y);
                first += 1;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Q4Block, Q16Pair, avx2};

    /// Whether this CPU runs [`dots`].
    pub(super) fn detected() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx2")
    }

    /// The block's 32 codes minus 7 as two i16x32: weights 0..16 (then
    /// 16..32) twice, once for each row of a pair.
    #[inline(always)]
    unsafe fn unpack(w: &Q4Block) -> (__m512i, __m512i) {
        // SAFETY (whole body): the caller has AVX-512BW; the load reads the
        // block's 16 code bytes, unaligned.
        unsafe {
            let packed = _mm256_broadcastsi128_si256(_mm_loadu_si128(w.codes.as_ptr().cast()));
            let mask = _mm256_set1_epi8(0x0F);
            let seven = _mm512_set1_epi16(7);
            let low = _mm512_cvtepu8_epi16(_mm256_and_si256(packed, mask));
            let high = _mm512_cvtepu8_epi16(_mm256_and_si256(_mm256_srli_epi16(packed, 4), mask));
            (_mm512_sub_epi16(low, seven), _mm512_sub_epi16(high, seven))
        }
    }

    /// `P` pairs of activation rows against one weight row: per block, two
    /// multiply-adds give both rows' eight integer lanes (the lanes of
    /// `vpmaddwd` on the low and high nibbles, as in the AVX2 kernel), which
    /// are scaled and added to the pair's accumulator like eight-lane ones.
    #[inline(always)]
    unsafe fn tile<const P: usize>(w: &[Q4Block], pairs: &[Q16Pair], out: &mut [f32]) {
        let blocks = w.len();
        // SAFETY: the caller has AVX-512 VNNI; `pairs` holds `P` pairs of
        // `blocks` blocks, each 64-byte aligned; `out` holds up to `2P` rows.
        unsafe {
            let mut acc = [_mm512_setzero_ps(); P];
            for (b, w) in w.iter().enumerate() {
                let (low, high) = unpack(w);
                let w_scale = _mm512_set1_ps(w.scale);
                for (p, acc) in acc.iter_mut().enumerate() {
                    let pair = &pairs[p * blocks + b];
                    let first = _mm512_load_si512(pair.low.as_ptr().cast());
                    let second = _mm512_load_si512(pair.high.as_ptr().cast());
                    let lanes = _mm512_dpwssd_epi32(_mm512_madd_epi16(low, first), high, second);
                    let scale = _mm512_mul_ps(w_scale, _mm512_load_ps(pair.scales.as_ptr().cast()));
                    *acc = _mm512_add_ps(*acc, _mm512_mul_ps(scale, _mm512_cvtepi32_ps(lanes)));
                }
            }
            for (rows, acc) in out.chunks_mut(2).zip(acc) {
                rows[0] = avx2::reduce(_mm512_castps512_ps256(acc));
                if let Some(second) = rows.get_mut(1) {
                    *second = avx2::reduce(_mm512_extractf32x8_ps(acc, 1));
                }
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vnni,avx2")]
    pub(super) unsafe fn dots(w: &[Q4Block], pairs: &[Q16Pair], out: &mut [f32]) {
        let blocks = w.len();
        let mut first = 0;
        // SAFETY: the features are enabled for this function; each tile gets
        // its pairs. Eight accumulators, the unpacked codes and the loaded
        // values fit the 32 zmm registers.
        unsafe {
            let mut rows = out.chunks_exact_mut(16);
            for out16 in &mut rows {
                tile::<8>(w, &pairs[first * blocks..(first + 8) * blocks], out16);
                first += 8;
            }
            let mut rows = rows.into_remainder().chunks_exact_mut(8);
            for out8 in &mut rows {
                tile::<4>(w, &pairs[first * blocks..(first + 4) * blocks], out8);
                first += 4;
            }
            for out2 in rows.into_remainder().chunks_mut(2) {
                tile::<1>(w, &pairs[first * blocks..(first + 1) * blocks], out2);
                first += 1;
            }
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    use core::arch::wasm32::*;

    use super::{Q4Block, Q16Block, reduce};

    /// The block's 32 codes minus 7 as four i16x8: weights 0..8, 8..16,
    /// 16..24 and 24..32.
    #[inline(always)]
    fn unpack(w: &Q4Block) -> [v128; 4] {
        // SAFETY: a v128 load of the block's 16 code bytes; `v128_load`
        // takes unaligned addresses.
        let packed = unsafe { v128_load(w.codes.as_ptr().cast()) };
        let seven = i16x8_splat(7);
        let (low, high) = (v128_and(packed, u8x16_splat(0x0F)), u8x16_shr(packed, 4));
        [
            i16x8_sub(u16x8_extend_low_u8x16(low), seven),
            i16x8_sub(u16x8_extend_high_u8x16(low), seven),
            i16x8_sub(u16x8_extend_low_u8x16(high), seven),
            i16x8_sub(u16x8_extend_high_u8x16(high), seven),
        ]
    }

    /// `acc += (w.scale · a.scale) · lanes`, the lanes from
    /// `i32x4.dot_i16x8_s`: lanes 0..4 from weights 0..8 and 16..24, lanes
    /// 4..8 from 8..16 and 24..32.
    #[inline(always)]
    fn accumulate(acc: [v128; 2], codes: &[v128; 4], w: &Q4Block, a: &Q16Block) -> [v128; 2] {
        // SAFETY: v128 loads of the block's 64 value bytes in four pieces.
        let values: [v128; 4] =
            std::array::from_fn(|i| unsafe { v128_load(a.values.as_ptr().add(8 * i).cast()) });
        let lanes = |i: usize| {
            i32x4_add(
                i32x4_dot_i16x8(codes[i], values[i]),
                i32x4_dot_i16x8(codes[i + 2], values[i + 2]),
            )
        };
        let scale = f32x4_splat(w.scale * a.scale);
        let term = |i: usize| f32x4_mul(scale, f32x4_convert_i32x4(lanes(i)));
        [f32x4_add(acc[0], term(0)), f32x4_add(acc[1], term(1))]
    }

    /// `T` activation rows against one weight row: each weight block is
    /// unpacked once for all of them.
    #[inline(always)]
    fn tile<const T: usize>(w: &[Q4Block], a: &[Q16Block], out: &mut [f32]) {
        let blocks = w.len();
        let mut acc = [[f32x4_splat(0.0); 2]; T];
        for (b, w) in w.iter().enumerate() {
            let codes = unpack(w);
            for (t, acc) in acc.iter_mut().enumerate() {
                *acc = accumulate(*acc, &codes, w, &a[t * blocks + b]);
            }
        }
        for (y, [first, second]) in out.iter_mut().zip(acc) {
            *y = reduce(lanes(first, second));
        }
    }

    /// `out[t] = w · a[t]`, four rows at a time (eight accumulators and
    /// the four unpacked code vectors fill a 16-register x86 machine that
    /// runs the module), the rest one at a time with [`dot`].
    pub(super) fn dots(w: &[Q4Block], a: &[Q16Block], out: &mut [f32]) {
        let blocks = w.len();
        let mut rows = out.chunks_exact_mut(4);
        let mut first = 0;
        for out4 in &mut rows {
            tile::<4>(w, &a[first * blocks..(first + 4) * blocks], out4);
            first += 4;
        }
        for y in rows.into_remainder() {
            *y = dot(w, &a[first * blocks..(first + 1) * blocks]);
            first += 1;
        }
    }

    /// The block's four lanes of `i32x4.dot_i16x8_s`, summing to the exact
    /// `Σ (c − 7)·a`.
    #[inline(always)]
    fn block_lanes(w: &Q4Block, values: &[v128; 4]) -> v128 {
        let codes = unpack(w);
        let dot = |i: usize| i32x4_dot_i16x8(codes[i], values[i]);
        i32x4_add(i32x4_add(dot(0), dot(1)), i32x4_add(dot(2), dot(3)))
    }

    /// The block's 32 activations as four i16x8.
    #[inline(always)]
    fn values(a: &Q16Block) -> [v128; 4] {
        // SAFETY: v128 loads of the block's 64 value bytes in four pieces;
        // `v128_load` takes unaligned addresses.
        std::array::from_fn(|i| unsafe { v128_load(a.values.as_ptr().add(8 * i).cast()) })
    }

    /// [`super::dot_rows_q4_q16`] in [`super::scalar_rows`]' order: four
    /// weight rows at a time (their block sums gathered into one vector,
    /// scaled and added to one accumulator), the rest one at a time.
    pub(super) fn rows(w: &[Q4Block], a: &[Q16Block], out: &mut [f32]) {
        let blocks = a.len();
        let mut tiles = out.chunks_exact_mut(4);
        let mut first = 0;
        for out4 in &mut tiles {
            let w = &w[first * blocks..(first + 4) * blocks];
            let mut acc = f32x4_splat(0.0);
            for (b, a) in a.iter().enumerate() {
                let values = values(a);
                let row = |r: usize| &w[r * blocks + b];
                let l: [v128; 4] = std::array::from_fn(|r| block_lanes(row(r), &values));
                // Lanes (0, 2) and (1, 3) of rows 0 and 1 (2 and 3), then
                // the two halves: the four rows' sums in order.
                let pairs = |x: v128, y: v128| {
                    i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(x, y), i32x4_shuffle::<2, 6, 3, 7>(x, y))
                };
                let (t0, t1) = (pairs(l[0], l[1]), pairs(l[2], l[3]));
                let sums = i32x4_add(
                    i32x4_shuffle::<0, 1, 4, 5>(t0, t1),
                    i32x4_shuffle::<2, 3, 6, 7>(t0, t1),
                );
                let w_scales = f32x4(row(0).scale, row(1).scale, row(2).scale, row(3).scale);
                let scales = f32x4_mul(w_scales, f32x4_splat(a.scale));
                acc = f32x4_add(acc, f32x4_mul(scales, f32x4_convert_i32x4(sums)));
            }
            out4.copy_from_slice(&[
                f32x4_extract_lane::<0>(acc),
                f32x4_extract_lane::<1>(acc),
                f32x4_extract_lane::<2>(acc),
                f32x4_extract_lane::<3>(acc),
            ]);
            first += 4;
        }
        for y in tiles.into_remainder() {
            let w = &w[first * blocks..(first + 1) * blocks];
            *y = w.iter().zip(a).fold(0.0f32, |acc, (w, a)| {
                let l = block_lanes(w, &values(a));
                let sum = i32x4_extract_lane::<0>(l)
                    + i32x4_extract_lane::<1>(l)
                    + i32x4_extract_lane::<2>(l)
                    + i32x4_extract_lane::<3>(l);
                acc + (w.scale * a.scale) * sum as f32
            });
            first += 1;
        }
    }

    /// One row (a decode step): the same operations as `tile::<1>`, which
    /// Chromium 156 ran ~15% slower in decode (12.1–13.8 against
    /// 15.0–16.0 tok/s on SmolLM2, docs/performance.md).
    fn dot(w: &[Q4Block], a: &[Q16Block]) -> f32 {
        let seven = i16x8_splat(7);
        let (mut first_acc, mut second_acc) = (f32x4_splat(0.0), f32x4_splat(0.0));
        for (w, a) in w.iter().zip(a) {
            // SAFETY: v128 loads of the block's 16 code bytes and of its 64
            // value bytes in four pieces; `v128_load` takes unaligned addresses.
            let (packed, values) = unsafe {
                let at = |i: usize| v128_load(a.values.as_ptr().add(8 * i).cast());
                (v128_load(w.codes.as_ptr().cast()), [at(0), at(1), at(2), at(3)])
            };
            let low = v128_and(packed, u8x16_splat(0x0F));
            let high = u8x16_shr(packed, 4);
            let term = |codes: v128, values: v128| i32x4_dot_i16x8(i16x8_sub(codes, seven), values);
            let first = i32x4_add(
                term(u16x8_extend_low_u8x16(low), values[0]),
                term(u16x8_extend_low_u8x16(high), values[2]),
            );
            let second = i32x4_add(
                term(u16x8_extend_high_u8x16(low), values[1]),
                term(u16x8_extend_high_u8x16(high), values[3]),
            );
            let scale = f32x4_splat(w.scale * a.scale);
            first_acc = f32x4_add(first_acc, f32x4_mul(scale, f32x4_convert_i32x4(first)));
            second_acc = f32x4_add(second_acc, f32x4_mul(scale, f32x4_convert_i32x4(second)));
        }
        reduce(lanes(first_acc, second_acc))
    }

    /// The eight accumulator lanes in order.
    fn lanes(first: v128, second: v128) -> [f32; 8] {
        [
            f32x4_extract_lane::<0>(first),
            f32x4_extract_lane::<1>(first),
            f32x4_extract_lane::<2>(first),
            f32x4_extract_lane::<3>(first),
            f32x4_extract_lane::<0>(second),
            f32x4_extract_lane::<1>(second),
            f32x4_extract_lane::<2>(second),
            f32x4_extract_lane::<3>(second),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random blocks covering the extremes (codes 0 and
    /// 15, values ±32767).
    fn rows(len: usize, seed: u32) -> (Vec<Q4Block>, Vec<Q16Block>) {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            state >> 8
        };
        let w = (0..len)
            .map(|_| Q4Block {
                scale: (next() % 1000) as f32 * 1e-4 + 1e-3,
                codes: std::array::from_fn(|_| next() as u8),
            })
            .collect();
        let a = (0..len)
            .map(|b| {
                let values: [i16; 32] = std::array::from_fn(|j| match (b + j) % 11 {
                    0 => 32767,
                    1 => -32767,
                    _ => ((next() % 65535) as i32 - 32767) as i16,
                });
                Q16Block { scale: (next() % 1000) as f32 * 1e-6 + 1e-6, values }
            })
            .collect();
        (w, a)
    }

    /// One block's product in f64 from the decoded integers.
    fn exact_block(w: &Q4Block, a: &Q16Block) -> f64 {
        let isum: i64 = (0..32).map(|j| (w.code(j) as i64 - 7) * a.values[j] as i64).sum();
        w.scale as f64 * a.scale as f64 * isum as f64
    }

    /// The same product in f64 from the decoded integers.
    fn exact(w: &[Q4Block], a: &[Q16Block]) -> f64 {
        w.iter().zip(a).map(|(w, a)| exact_block(w, a)).sum()
    }

    #[test]
    fn scalar_kernel_equals_the_decoded_product() {
        for len in [1, 3, 4, 18, 35] {
            let (w, a) = rows(len, len as u32);
            let mut got = [0.0];
            dot_q4_q16_with(DotKernel::Scalar, &w, &a, &mut got);
            let got = got[0] as f64;
            let want = exact(&w, &a);
            assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "{len}: {got} vs {want}");
        }
    }

    /// `tokens` activation rows against one weight row with `kernel`, bits.
    fn products(kernel: DotKernel, len: usize, tokens: usize, seed: u32) -> Vec<u32> {
        let (w, _) = rows(len, seed);
        let a: Vec<Q16Block> = (0..tokens).flat_map(|t| rows(len, seed + 1 + t as u32).1).collect();
        let mut out = vec![0.0f32; tokens];
        dot_q4_q16_with(kernel, &w, &a, &mut out);
        out.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn a_row_s_result_does_not_depend_on_the_rows_beside_it() {
        let together = products(DotKernel::best(), 18, 7, 3);
        let (w, _) = rows(18, 3);
        for (t, bits) in together.into_iter().enumerate() {
            let a = rows(18, 3 + 1 + t as u32).1;
            assert_eq!(dot_q4_q16(&w, &a).to_bits(), bits, "row {t}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_kernel_equals_the_scalar_kernel_bit_for_bit() {
        // Every x86_64 CI runner has AVX2; a machine without it fails here
        // rather than pass without testing the kernel users run.
        assert!(is_x86_feature_detected!("avx2"), "this test needs an AVX2 CPU");
        for len in [1, 2, 3, 4, 5, 8, 18, 35, 64, 144] {
            for (tokens, seed) in [(1, 0), (2, 1), (4, 2), (5, 3), (8, 4), (9, 5), (13, 6)] {
                let seed = seed * 131 + len as u32;
                assert_eq!(
                    products(DotKernel::Avx2, len, tokens, seed),
                    products(DotKernel::Scalar, len, tokens, seed),
                    "{len} blocks, {tokens} rows"
                );
            }
        }
    }

    /// `count` weight rows against one activation row with `kernel`, bits.
    fn row_products(kernel: DotKernel, len: usize, count: usize, seed: u32) -> Vec<u32> {
        let w: Vec<Q4Block> = (0..count).flat_map(|r| rows(len, seed + 1 + r as u32).0).collect();
        let (_, a) = rows(len, seed);
        let mut out = vec![0.0f32; count];
        dot_rows_q4_q16(kernel, &w, &a, &mut out);
        out.iter().map(|v| v.to_bits()).collect()
    }

    /// The decode product over 1 to 19 weight rows (two eight-row tiles,
    /// four-row tiles and every remainder) equals the decode order's scalar
    /// kernel bit for bit on every kernel this CPU runs, and the exact
    /// product within rounding.
    #[test]
    fn row_products_equal_the_scalar_kernel_bit_for_bit() {
        for len in [1, 2, 3, 5, 18, 35, 48, 144] {
            for count in 1..=19 {
                let seed = count as u32 * 977 + len as u32;
                let want = row_products(DotKernel::Scalar, len, count, seed);
                for (r, bits) in want.iter().enumerate() {
                    let (w, _) = rows(len, seed + 1 + r as u32);
                    let (_, a) = rows(len, seed);
                    let (got, exact) = (f32::from_bits(*bits) as f64, exact(&w, &a));
                    // One rounding per block term and per addition.
                    let magnitude: f64 =
                        w.iter().zip(&a).map(|(w, a)| exact_block(w, a).abs()).sum();
                    let bound = 4.0 * f32::EPSILON as f64 * (len as f64 + 1.0) * magnitude;
                    assert!(
                        (got - exact).abs() <= bound,
                        "{len} blocks, row {r}: {got} vs {exact}"
                    );
                }
                assert_eq!(
                    row_products(DotKernel::best(), len, count, seed),
                    want,
                    "{:?}: {len} blocks, {count} rows",
                    DotKernel::best()
                );
                #[cfg(target_arch = "x86_64")]
                assert_eq!(row_products(DotKernel::Avx2, len, count, seed), want, "AVX2");
            }
        }
    }

    /// Rows 1 to 37 (every tile and its remainders, odd counts paired with
    /// zeros) over edge lengths: equal to the scalar kernel bit for bit. A
    /// CPU without AVX-512 VNNI (some CI runners) has nothing to test here.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_kernel_equals_the_scalar_kernel_bit_for_bit() {
        if !avx512::detected() {
            eprintln!("this CPU lacks AVX-512 VNNI: its kernel is not tested here");
            return;
        }
        assert_eq!(DotKernel::best(), DotKernel::Avx512);
        for len in [1, 2, 3, 5, 18, 35, 144] {
            for tokens in 1..=37 {
                let seed = tokens as u32 * 131 + len as u32;
                assert_eq!(
                    products(DotKernel::Avx512, len, tokens, seed),
                    products(DotKernel::Scalar, len, tokens, seed),
                    "{len} blocks, {tokens} rows"
                );
            }
        }
    }

    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[test]
    fn simd128_kernel_equals_the_scalar_kernel_bit_for_bit() {
        for len in [1, 2, 3, 4, 5, 8, 18, 35, 64, 144] {
            for tokens in [1, 2, 4, 5, 8, 9, 13] {
                let seed = tokens as u32 * 131 + len as u32;
                assert_eq!(
                    products(DotKernel::Simd128, len, tokens, seed),
                    products(DotKernel::Scalar, len, tokens, seed),
                    "{len} blocks, {tokens} rows"
                );
            }
        }
    }
}
