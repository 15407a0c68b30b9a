//! `Σ_k w[k] · a[k]` of a q4 weight row and an int16 activation row.
//!
//! Every implementation computes the same numbers bit for bit: each block's
//! integer sum `Σ (c − 7)·a` is exact (|sum| ≤ 32 · 8 · 32767 < 2²⁴, so its
//! f32 conversion is exact too), and the float part is fixed —
//! `acc[b % 4] += (w.scale · a.scale) · isum` with separate multiply and add
//! (no FMA), then `(acc[0] + acc[1]) + (acc[2] + acc[3])`. A SIMD kernel is
//! so tested against the scalar one for exact equality.

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
    dot_q4_q16_with(DotKernel::best(), w, a)
}

/// [`dot_q4_q16`] with a chosen kernel.
///
/// # Panics
/// When the rows differ in length, or `kernel` is AVX2 on a CPU without it.
pub fn dot_q4_q16_with(kernel: DotKernel, w: &[Q4Block], a: &[Q16Block]) -> f32 {
    assert_eq!(w.len(), a.len(), "dot_q4_q16: weight and activation blocks differ");
    let mut acc = [0.0f32; 4];
    match kernel {
        DotKernel::Scalar => scalar(w, a, &mut acc),
        #[cfg(target_arch = "x86_64")]
        DotKernel::Avx2 => {
            assert!(is_x86_feature_detected!("avx2"), "dot_q4_q16: this CPU lacks AVX2");
            // SAFETY: AVX2 is present (checked above); the slices are in bounds.
            unsafe { avx2::dot(w, a, &mut acc) }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        DotKernel::Simd128 => simd128::dot(w, a, &mut acc),
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

/// Adds block `b`'s contribution to its lane.
#[inline(always)]
fn accumulate(acc: &mut [f32; 4], b: usize, w: &Q4Block, a: &Q16Block, isum: i32) {
    acc[b % 4] += (w.scale * a.scale) * isum as f32;
}

/// `Σ (c − 7)·a` of one block, in plain integer arithmetic.
#[inline(always)]
fn block_isum(w: &Q4Block, a: &Q16Block) -> i32 {
    let mut sum = 0i32;
    for j in 0..16 {
        let byte = w.codes[j];
        sum += ((byte & 0xF) as i32 - 7) * a.values[j] as i32;
        sum += ((byte >> 4) as i32 - 7) * a.values[j + 16] as i32;
    }
    sum
}

fn scalar(w: &[Q4Block], a: &[Q16Block], acc: &mut [f32; 4]) {
    for (b, (w, a)) in w.iter().zip(a).enumerate() {
        accumulate(acc, b, w, a, block_isum(w, a));
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Q4Block, Q16Block, accumulate};

    /// `Σ (c − 7)·a` of one block as eight i32 lanes: the low nibbles
    /// (weights 0..16) and the high ones (16..32) widened to i16, offset by
    /// −7, and multiplied by the values into i32 pairs (`vpmaddwd`).
    #[inline(always)]
    unsafe fn block_lanes(w: &Q4Block, a: &Q16Block) -> __m256i {
        // SAFETY (whole body): the caller has AVX2; the loads read the
        // block's 16 code bytes and 64 value bytes, unaligned.
        unsafe {
            let packed = _mm_loadu_si128(w.codes.as_ptr().cast());
            let mask = _mm_set1_epi8(0x0F);
            let seven = _mm256_set1_epi16(7);
            let low = _mm256_cvtepu8_epi16(_mm_and_si128(packed, mask));
            let high = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), mask));
            let first = _mm256_loadu_si256(a.values.as_ptr().cast());
            let second = _mm256_loadu_si256(a.values.as_ptr().add(16).cast());
            _mm256_add_epi32(
                _mm256_madd_epi16(_mm256_sub_epi16(low, seven), first),
                _mm256_madd_epi16(_mm256_sub_epi16(high, seven), second),
            )
        }
    }

    /// Four blocks at a time: their lanes reduced to one i32 per block by
    /// horizontal adds, converted and scaled in one vector.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dot(w: &[Q4Block], a: &[Q16Block], acc: &mut [f32; 4]) {
        let quads = w.len() / 4;
        // SAFETY: AVX2 is enabled for this function; indices stay below `quads * 4 ≤ len`.
        unsafe {
            let mut sum = _mm_setzero_ps();
            for q in 0..quads {
                let (w4, a4) = (&w[q * 4..q * 4 + 4], &a[q * 4..q * 4 + 4]);
                let s01 =
                    _mm256_hadd_epi32(block_lanes(&w4[0], &a4[0]), block_lanes(&w4[1], &a4[1]));
                let s23 =
                    _mm256_hadd_epi32(block_lanes(&w4[2], &a4[2]), block_lanes(&w4[3], &a4[3]));
                let s = _mm256_hadd_epi32(s01, s23);
                let isum = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
                let w_scale = _mm_set_ps(w4[3].scale, w4[2].scale, w4[1].scale, w4[0].scale);
                let a_scale = _mm_set_ps(a4[3].scale, a4[2].scale, a4[1].scale, a4[0].scale);
                let scale = _mm_mul_ps(w_scale, a_scale);
                sum = _mm_add_ps(sum, _mm_mul_ps(scale, _mm_cvtepi32_ps(isum)));
            }
            _mm_storeu_ps(acc.as_mut_ptr(), sum);
            for b in quads * 4..w.len() {
                let mut lanes = [0i32; 8];
                _mm256_storeu_si256(lanes.as_mut_ptr().cast(), block_lanes(&w[b], &a[b]));
                accumulate(acc, b, &w[b], &a[b], lanes.iter().sum());
            }
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    use core::arch::wasm32::*;

    use super::{Q4Block, Q16Block, accumulate};

    /// `Σ (c − 7)·a` of one block: codes widened to i16 and offset, times
    /// the values into i32 pairs (`i32x4.dot_i16x8_s`).
    #[inline(always)]
    fn block_isum(w: &Q4Block, a: &Q16Block) -> i32 {
        // SAFETY: v128 loads of the block's 16 code bytes and of its 64 value
        // bytes in four pieces; `v128_load` takes unaligned addresses.
        let (packed, values) = unsafe {
            let at = |i: usize| v128_load(a.values.as_ptr().add(8 * i).cast());
            (v128_load(w.codes.as_ptr().cast()), [at(0), at(1), at(2), at(3)])
        };
        let seven = i16x8_splat(7);
        let low = v128_and(packed, u8x16_splat(0x0F));
        let high = u8x16_shr(packed, 4);
        let weights = [
            u16x8_extend_low_u8x16(low),
            u16x8_extend_high_u8x16(low),
            u16x8_extend_low_u8x16(high),
            u16x8_extend_high_u8x16(high),
        ];
        let mut lanes = i32x4_splat(0);
        for (w, a) in weights.into_iter().zip(values) {
            lanes = i32x4_add(lanes, i32x4_dot_i16x8(i16x8_sub(w, seven), a));
        }
        i32x4_extract_lane::<0>(lanes)
            + i32x4_extract_lane::<1>(lanes)
            + i32x4_extract_lane::<2>(lanes)
            + i32x4_extract_lane::<3>(lanes)
    }

    pub(super) fn dot(w: &[Q4Block], a: &[Q16Block], acc: &mut [f32; 4]) {
        for (b, (w, a)) in w.iter().zip(a).enumerate() {
            accumulate(acc, b, w, a, block_isum(w, a));
        }
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

    /// The same product in f64 from the decoded integers.
    fn exact(w: &[Q4Block], a: &[Q16Block]) -> f64 {
        w.iter()
            .zip(a)
            .map(|(w, a)| {
                let isum: i64 = (0..32).map(|j| (w.code(j) as i64 - 7) * a.values[j] as i64).sum();
                w.scale as f64 * a.scale as f64 * isum as f64
            })
            .sum()
    }

    #[test]
    fn scalar_kernel_equals_the_decoded_product() {
        for len in [1, 3, 4, 18, 35] {
            let (w, a) = rows(len, len as u32);
            let got = dot_q4_q16_with(DotKernel::Scalar, &w, &a) as f64;
            let want = exact(&w, &a);
            assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "{len}: {got} vs {want}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_kernel_equals_the_scalar_kernel_bit_for_bit() {
        // Every x86_64 CI runner has AVX2; a machine without it fails here
        // rather than pass without testing the kernel users run.
        assert!(is_x86_feature_detected!("avx2"), "this test needs an AVX2 CPU");
        assert_eq!(DotKernel::best(), DotKernel::Avx2);
        for len in [1, 2, 3, 4, 5, 8, 18, 35, 64, 144] {
            for seed in 0..8 {
                let (w, a) = rows(len, seed * 131 + len as u32);
                let simd = dot_q4_q16_with(DotKernel::Avx2, &w, &a);
                let scalar = dot_q4_q16_with(DotKernel::Scalar, &w, &a);
                assert_eq!(simd.to_bits(), scalar.to_bits(), "{len} blocks, seed {seed}");
            }
        }
    }

    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[test]
    fn simd128_kernel_equals_the_scalar_kernel_bit_for_bit() {
        for len in [1, 2, 3, 4, 5, 8, 18, 35, 64, 144] {
            let (w, a) = rows(len, len as u32);
            let simd = dot_q4_q16_with(DotKernel::Simd128, &w, &a);
            let scalar = dot_q4_q16_with(DotKernel::Scalar, &w, &a);
            assert_eq!(simd.to_bits(), scalar.to_bits(), "{len} blocks");
        }
    }
}
