//! `Σ_k w[k] · a[k]` of q4 weight rows and int16 (or, for a prefill on
//! request, int8) activation rows.
//!
//! Every implementation computes the same numbers bit for bit, in one order:
//! per block the exact integer `Σ (c − 7)·a` is converted once and added,
//! scaled, to one accumulator per (weight row, activation row) pair: `acc +
//! (w.scale · a.scale) · sum`, multiply and add separate (no FMA), blocks in
//! order ([`scalar_dot`]). A decode step's product ([`dot_rows_q4_q16`]: one
//! token against many weight rows) and a prefill's ([`dot_q4_q16_with`],
//! [`dot_q4_q16_tokens`]: several tokens against weight rows) compute that
//! same order, so a token's result depends neither on how many tokens share
//! the call nor on the product that computed it. A SIMD kernel is tested
//! against the scalar one for exact equality. The int8 products
//! ([`dot_q4_q8_with`], `dot_q4_q8_tokens`) keep the same order, their
//! reference the same generic scalar loop.

use std::sync::OnceLock;

use super::blocks::{ActivationBlock, Q4Block, Q8Block, Q16Block};

/// The implementations of the products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DotKernel {
    /// Portable Rust.
    Scalar,
    /// x86_64 AVX2 (detected at run time).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// x86_64 AVX-512 F/BW with VNNI (detected at run time): a prefill's
    /// products sixteen tokens wide; a decode step runs the AVX2 kernel,
    /// which the weights' memory bandwidth bounds anyway (a sixteen-row
    /// AVX-512 one was no faster in a whole step: docs/performance.md, "A
    /// Xeon with AMX").
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
            if has_avx512() {
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

/// Whether this CPU runs [`DotKernel::Avx512`] (which uses AVX2 too).
#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni")
}

/// The dot product of a weight row and an activation row of as many blocks,
/// with the fastest kernel available.
pub fn dot_q4_q16(w: &[Q4Block], a: &[Q16Block]) -> f32 {
    let mut out = [0.0];
    dot_rows_q4_q16(DotKernel::best(), w, a, &mut out);
    out[0]
}

/// `out[t] = w · a[t]` for the `out.len()` activation rows of `a` (each
/// `w.len()` blocks) with a chosen kernel.
///
/// [`DotKernel::Avx2`] and [`DotKernel::Avx512`] lay the rows out
/// ([`Q16Tokens::gather`]) here, on every call: a product over many weight
/// rows gathers them once and calls [`dot_q4_q16_tokens`].
///
/// # Panics
/// When the sizes disagree, or `kernel` needs an instruction set this CPU
/// lacks.
pub fn dot_q4_q16_with(kernel: DotKernel, w: &[Q4Block], a: &[Q16Block], out: &mut [f32]) {
    assert_eq!(w.len() * out.len(), a.len(), "dot_q4_q16: weight and activation blocks differ");
    match kernel {
        DotKernel::Scalar => {
            for (y, a) in out.iter_mut().zip(a.chunks(w.len().max(1))) {
                *y = scalar_dot(w, a);
            }
        }
        #[cfg(target_arch = "x86_64")]
        DotKernel::Avx2 | DotKernel::Avx512 => {
            if out.is_empty() {
                return;
            }
            let mut tokens = Q16Tokens::default();
            tokens.gather(kernel, a, out.len());
            dot_q4_q16_tokens(w, &tokens, out);
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        DotKernel::Simd128 => simd128::dots(w, a, out),
    }
}

/// `out[n] = w[n] · a` for the `out.len()` weight rows of `w` (each
/// `a.len()` blocks, one after the other) against one activation row, with a
/// chosen kernel: a decode step's product.
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
        DotKernel::Scalar => {
            for (y, w) in out.iter_mut().zip(w.chunks(a.len().max(1))) {
                *y = scalar_dot(w, a);
            }
        }
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

/// One block of eight activation rows (tokens), laid out for the AVX2 prefill
/// kernel: two tokens per 256-bit vector, each one's values in the order of
/// the nibbles of a 16-bit lane of two code bytes ([`Q4Block`]: byte `j`
/// holds weights `j` and `j + 16`), so that one `vpmaddwd` with a memory
/// operand multiplies both tokens by the codes at one nibble position.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[repr(C, align(32))]
struct TokenGroup {
    /// Per pair of tokens `2p`, `2p + 1` and nibble position: `a[2k]`, `a[2k +
    /// 16]`, `a[2k + 1]` or `a[2k + 17]` for `k < 8`, of token `2p` then of
    /// token `2p + 1`.
    values: [[[i16; 16]; 4]; 4],
    /// Per token `7 · Σ a` (what `Σ c·a` of the unshifted codes exceeds
    /// `Σ (c − 7)·a` by), in the kernel's lane order (tokens 0, 2, 4, 6, 1,
    /// 3, 5, 7: three `vphaddd` of the four pairs' vectors leave the even
    /// tokens in the low half, the odd in the high half).
    sevens: [i32; 8],
    /// Per token the block's scale, in the same order.
    scales: [f32; 8],
}

/// One block of sixteen tokens for the AVX-512 prefill kernel: values
/// `2i`, `2i + 1` of token `t` in 32-bit lane `t` of vector `i`, so that one
/// `vpdpwssd` against codes `2i`, `2i + 1` broadcast to every lane adds two
/// products to each token's sum, and sixteen leave the tokens' block sums in
/// token order.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(64))]
struct WideTokenGroup {
    /// Per pair `i` of values, each token's two in its lane.
    pairs: [[[i16; 2]; 16]; 16],
    /// Per token `7 · Σ a`, in token order.
    sevens: [i32; 16],
    /// Per token the block's scale, in token order.
    scales: [f32; 16],
}

#[cfg(target_arch = "x86_64")]
impl Default for WideTokenGroup {
    fn default() -> Self {
        WideTokenGroup { pairs: [[[0; 2]; 16]; 16], sevens: [0; 16], scales: [0.0; 16] }
    }
}

/// One block of `T` tokens' int8 activations ([`Q8Block`]) for the int8
/// kernels, sixteen for AVX-512 VNNI and eight for AVX2: values `4i..4i + 4`
/// of token `t` in 32-bit lane `t` of vector `i`, so that one `vpdpbusd`
/// (or `vpmaddubsw`) against codes `4i..4i + 4` broadcast to every lane adds
/// four products (two pairs) to each token's sum, and eight leave the tokens'
/// block sums in token order.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(64))]
struct ByteGroup<const T: usize> {
    /// Per quad `i` of values, each token's four in its lane.
    values: [[[i8; 4]; T]; 8],
    /// Per token `7 · Σ a`, in token order.
    sevens: [i32; T],
    /// Per token the block's scale, in token order.
    scales: [f32; T],
}

#[cfg(target_arch = "x86_64")]
impl<const T: usize> Default for ByteGroup<T> {
    fn default() -> Self {
        ByteGroup { values: [[[0; 4]; T]; 8], sevens: [0; T], scales: [0.0; T] }
    }
}

/// How a kernel's group of tokens holds one block of each token.
#[cfg(target_arch = "x86_64")]
trait Group: Clone + Default {
    /// The activation blocks it holds.
    type Block: ActivationBlock;
    /// Tokens per group.
    const TOKENS: usize;
    /// Stores token `t`'s (of the group) values in the kernel's order.
    fn put(&mut self, t: usize, block: &Self::Block);
    /// The lane of token `t` in `sevens` and `scales`.
    fn lane(t: usize) -> usize;
    /// `sevens` and `scales`.
    fn sums_and_scales(&mut self) -> (&mut [i32], &mut [f32]);
}

/// A block's values by nibble position, eight each, for the int16 kernels'
/// layouts: code byte `2k` holds weights `2k` and `2k + 16`, byte `2k + 1`
/// weights `2k + 1` and `2k + 17`.
#[cfg(target_arch = "x86_64")]
fn nibble_slots(block: &Q16Block) -> impl Iterator<Item = (usize, [i16; 8])> + '_ {
    let values = &block.values;
    [0, 16, 1, 17]
        .into_iter()
        .enumerate()
        .map(|(position, first)| (position, std::array::from_fn(|k| values[2 * k + first])))
}

#[cfg(target_arch = "x86_64")]
impl Group for TokenGroup {
    type Block = Q16Block;
    const TOKENS: usize = 8;
    fn put(&mut self, t: usize, block: &Q16Block) {
        for (position, slots) in nibble_slots(block) {
            self.values[t / 2][position][8 * (t % 2)..][..8].copy_from_slice(&slots);
        }
    }
    fn lane(t: usize) -> usize {
        4 * (t % 2) + t / 2
    }
    fn sums_and_scales(&mut self) -> (&mut [i32], &mut [f32]) {
        (&mut self.sevens, &mut self.scales)
    }
}

#[cfg(target_arch = "x86_64")]
impl Group for WideTokenGroup {
    type Block = Q16Block;
    const TOKENS: usize = 16;
    fn put(&mut self, t: usize, block: &Q16Block) {
        for (pair, values) in self.pairs.iter_mut().zip(block.values.chunks_exact(2)) {
            pair[t].copy_from_slice(values);
        }
    }
    fn lane(t: usize) -> usize {
        t
    }
    fn sums_and_scales(&mut self) -> (&mut [i32], &mut [f32]) {
        (&mut self.sevens, &mut self.scales)
    }
}

#[cfg(target_arch = "x86_64")]
impl<const T: usize> Group for ByteGroup<T> {
    type Block = Q8Block;
    const TOKENS: usize = T;
    fn put(&mut self, t: usize, block: &Q8Block) {
        for (quad, values) in self.values.iter_mut().zip(block.values.chunks_exact(4)) {
            quad[t].copy_from_slice(values);
        }
    }
    fn lane(t: usize) -> usize {
        t
    }
    fn sums_and_scales(&mut self) -> (&mut [i32], &mut [f32]) {
        (&mut self.sevens, &mut self.scales)
    }
}

/// Lays out the `tokens` rows of `a` (`blocks` each) in groups of
/// `G::TOKENS` (the last padded with zero rows): group `g`'s block `b` at
/// `g · blocks + b`. Groups are laid out on rayon's pool.
#[cfg(target_arch = "x86_64")]
fn gather_groups<G: Group + Send>(
    groups: &mut Vec<G>,
    a: &[G::Block],
    tokens: usize,
    blocks: usize,
) {
    groups.clear();
    groups.resize(tokens.div_ceil(G::TOKENS) * blocks, G::default());
    super::for_each_chunk(groups, blocks.max(1), |g, group| {
        let first = g * G::TOKENS;
        for t in 0..G::TOKENS.min(tokens - first) {
            let row = &a[(first + t) * blocks..(first + t + 1) * blocks];
            for (group, block) in group.iter_mut().zip(row) {
                group.put(t, block);
                let lane = G::lane(t);
                let (sevens, scales) = group.sums_and_scales();
                sevens[lane] = 7 * (0..32).map(|j| block.value(j)).sum::<i32>();
                scales[lane] = block.scale();
            }
        }
    });
}

/// Activation rows laid out once for a prefill's products
/// ([`dot_q4_q16_tokens`]) by the kernel that will read them: in groups of
/// eight tokens for AVX2, sixteen for AVX-512. A product keeps one between
/// calls ([`super::MatmulScratch`]), so that a step allocates nothing after
/// its first.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Default)]
pub struct Q16Tokens {
    /// Activation rows gathered.
    tokens: usize,
    /// Blocks per row.
    blocks: usize,
    /// The rows as the last [`Q16Tokens::gather`] laid them out.
    layout: TokenLayout,
}

/// The groups of one kernel's layout: the one kept is the one the last
/// [`Q16Tokens::gather`] was for.
#[cfg(target_arch = "x86_64")]
#[derive(Debug)]
enum TokenLayout {
    /// Eight tokens a group, for AVX2.
    Avx2(Vec<TokenGroup>),
    /// Sixteen tokens a group, for AVX-512.
    Avx512(Vec<WideTokenGroup>),
}

#[cfg(target_arch = "x86_64")]
impl Default for TokenLayout {
    fn default() -> Self {
        TokenLayout::Avx2(Vec::new())
    }
}

#[cfg(target_arch = "x86_64")]
impl Q16Tokens {
    /// Lays out the `tokens` rows of `a` (each `a.len() / tokens` blocks)
    /// for `kernel` ([`DotKernel::Avx512`]; any other gets the AVX2 layout).
    pub fn gather(&mut self, kernel: DotKernel, a: &[Q16Block], tokens: usize) {
        let blocks = a.len() / tokens.max(1);
        self.tokens = tokens;
        self.blocks = blocks;
        // The groups are reused across calls; only a change of kernel (which
        // `DotKernel::best` never makes within a process) starts a new vector.
        let wide = kernel == DotKernel::Avx512;
        if wide != matches!(self.layout, TokenLayout::Avx512(_)) {
            self.layout = match wide {
                true => TokenLayout::Avx512(Vec::new()),
                false => TokenLayout::Avx2(Vec::new()),
            };
        }
        match &mut self.layout {
            TokenLayout::Avx2(groups) => gather_groups(groups, a, tokens, blocks),
            TokenLayout::Avx512(groups) => gather_groups(groups, a, tokens, blocks),
        }
    }

    /// The number of activation rows gathered.
    pub fn len(&self) -> usize {
        self.tokens
    }

    /// Whether no row was gathered.
    pub fn is_empty(&self) -> bool {
        self.tokens == 0
    }
}

/// `out[n · m + t] = w[n] · row t` for the `out.len() / m` weight rows of `w`
/// (one after the other) and the `m` activation rows [`Q16Tokens::gather`]
/// laid out in `tokens`, with the kernel they were laid out for; bit-equal to
/// [`dot_q4_q16_with`] and [`dot_rows_q4_q16`] with any kernel.
///
/// # Panics
/// When the sizes disagree, or this CPU lacks that kernel's instructions.
#[cfg(target_arch = "x86_64")]
pub fn dot_q4_q16_tokens(w: &[Q4Block], tokens: &Q16Tokens, out: &mut [f32]) {
    let (m, blocks) = (tokens.tokens, tokens.blocks);
    assert!(
        m > 0 && out.len().is_multiple_of(m) && out.len() / m * blocks == w.len(),
        "dot_q4_q16_tokens: {} weight blocks, {} results, {m} rows of {blocks} blocks",
        w.len(),
        out.len()
    );
    match &tokens.layout {
        TokenLayout::Avx512(groups) => {
            assert!(has_avx512(), "dot_q4_q16_tokens: this CPU lacks AVX-512 VNNI");
            // SAFETY: AVX-512 F/BW/VNNI are present (checked above); the sizes
            // were checked.
            unsafe { avx512::tokens(w, groups, m, blocks, out) }
        }
        TokenLayout::Avx2(groups) => {
            assert!(is_x86_feature_detected!("avx2"), "dot_q4_q16_tokens: this CPU lacks AVX2");
            // SAFETY: AVX2 is present (checked above); the sizes were checked.
            unsafe { avx2::tokens(w, groups, m, blocks, out) }
        }
    }
}

/// `out[t] = w · a[t]` for the `out.len()` int8 activation rows of `a`
/// (each `w.len()` blocks) with a chosen kernel, in the one order of every
/// product (the module's docs): [`DotKernel::Avx512`] and
/// [`DotKernel::Avx2`] lay the rows out ([`Q8Tokens::gather`]) and run
/// `vpdpbusd` or `vpmaddubsw`; every other kernel the scalar loop (the
/// reference).
///
/// # Panics
/// When the sizes disagree, or `kernel` needs an instruction set this CPU
/// lacks.
pub fn dot_q4_q8_with(kernel: DotKernel, w: &[Q4Block], a: &[Q8Block], out: &mut [f32]) {
    assert_eq!(w.len() * out.len(), a.len(), "dot_q4_q8: weight and activation blocks differ");
    #[cfg(target_arch = "x86_64")]
    if matches!(kernel, DotKernel::Avx2 | DotKernel::Avx512) && !out.is_empty() {
        let mut tokens = Q8Tokens::default();
        tokens.gather(kernel, a, out.len());
        return dot_q4_q8_tokens(w, &tokens, out);
    }
    // Every other kernel (and any kernel off x86_64) runs the reference.
    let _ = kernel;
    let len = w.len();
    for (t, y) in out.iter_mut().enumerate() {
        *y = scalar_dot(w, &a[t * len..(t + 1) * len]);
    }
}

/// int8 activation rows laid out once for [`dot_q4_q8_tokens`] by the
/// kernel that will read them: in groups of sixteen tokens for AVX-512 VNNI,
/// eight for AVX2. A product keeps one between calls
/// ([`super::MatmulScratch`]).
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Default)]
pub struct Q8Tokens {
    /// Activation rows gathered.
    tokens: usize,
    /// Blocks per row.
    blocks: usize,
    /// The groups, group `g`'s block `b` at `g · blocks + b`, of the last
    /// [`Q8Tokens::gather`]'s kernel.
    layout: ByteLayout,
}

/// The groups of one int8 kernel's layout.
#[cfg(target_arch = "x86_64")]
#[derive(Debug)]
enum ByteLayout {
    /// Eight tokens a group, for AVX2.
    Avx2(Vec<ByteGroup<8>>),
    /// Sixteen tokens a group, for AVX-512 VNNI.
    Avx512(Vec<ByteGroup<16>>),
}

#[cfg(target_arch = "x86_64")]
impl Default for ByteLayout {
    fn default() -> Self {
        ByteLayout::Avx512(Vec::new())
    }
}

#[cfg(target_arch = "x86_64")]
impl Q8Tokens {
    /// Lays out the `tokens` rows of `a` (each `a.len() / tokens` blocks)
    /// for `kernel` ([`DotKernel::Avx512`]; any other gets the AVX2 layout).
    pub fn gather(&mut self, kernel: DotKernel, a: &[Q8Block], tokens: usize) {
        self.tokens = tokens;
        self.blocks = a.len() / tokens.max(1);
        let wide = kernel == DotKernel::Avx512;
        if wide != matches!(self.layout, ByteLayout::Avx512(_)) {
            self.layout = match wide {
                true => ByteLayout::Avx512(Vec::new()),
                false => ByteLayout::Avx2(Vec::new()),
            };
        }
        match &mut self.layout {
            ByteLayout::Avx2(groups) => gather_groups(groups, a, tokens, self.blocks),
            ByteLayout::Avx512(groups) => gather_groups(groups, a, tokens, self.blocks),
        }
    }
}

/// `out[n · m + t] = w[n] · row t` for the `out.len() / m` weight rows of `w`
/// (one after the other) and the `m` int8 activation rows laid out in
/// `tokens`, with the kernel they were laid out for (`vpdpbusd` or
/// `vpmaddubsw`): bit-equal to [`dot_q4_q8_with`]'s scalar kernel.
///
/// # Panics
/// When the sizes disagree, or this CPU lacks that kernel's instructions.
#[cfg(target_arch = "x86_64")]
pub fn dot_q4_q8_tokens(w: &[Q4Block], tokens: &Q8Tokens, out: &mut [f32]) {
    let (m, blocks) = (tokens.tokens, tokens.blocks);
    assert!(
        m > 0 && out.len().is_multiple_of(m) && out.len() / m * blocks == w.len(),
        "dot_q4_q8_tokens: {} weight blocks, {} results, {m} rows of {blocks} blocks",
        w.len(),
        out.len()
    );
    match &tokens.layout {
        ByteLayout::Avx512(groups) => {
            assert!(has_avx512(), "dot_q4_q8_tokens: this CPU lacks AVX-512 VNNI");
            // SAFETY: AVX-512 F/BW/VNNI are present (checked above); the
            // sizes were checked.
            unsafe { avx512::bytes(w, groups, m, blocks, out) }
        }
        ByteLayout::Avx2(groups) => {
            assert!(is_x86_feature_detected!("avx2"), "dot_q4_q8_tokens: this CPU lacks AVX2");
            // SAFETY: AVX2 is present (checked above); the sizes were checked.
            unsafe { avx2::bytes(w, groups, m, blocks, out) }
        }
    }
}

/// One weight row against one activation row: per block the exact integer
/// `Σ (c − 7)·a`, converted once and scaled, added to a single accumulator
/// (`acc + (w.scale · a.scale) · sum`). The reference of every kernel.
fn scalar_dot<A: ActivationBlock>(w: &[Q4Block], a: &[A]) -> f32 {
    w.iter().zip(a).fold(0.0f32, |acc, (w, a)| {
        let sum: i32 = (0..32).map(|j| (w.code(j) as i32 - 7) * a.value(j)).sum();
        acc + (w.scale * a.scale()) * sum as f32
    })
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{ByteGroup, Q4Block, Q16Block, TokenGroup};

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
    /// row, in [`super::scalar_dot`]'s order.
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

    /// One weight row, in [`super::scalar_dot`]'s order.
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

    /// Blocks per pass of [`tokens`] over a task's weight rows: a group's
    /// 32 blocks (18 KB) stay in the 32 KB L1 cache while every row meets
    /// them. Whole rows of Qwen2.5-0.5B's down projection (152 blocks, 87
    /// KB) ran 1.2 against 1.35 billion token × weight blocks a second
    /// reloaded from L2 for each row; passes of 24 blocks cost its 28-block
    /// rows 4% in a second, 4-block pass.
    const CHUNK_BLOCKS: usize = 32;

    /// One weight row's blocks against a group of eight tokens' (as many),
    /// continuing `acc` (lanes in [`super::TokenGroup::sevens`]' order), in
    /// [`super::scalar_dot`]'s order: per block the codes are unpacked
    /// once into their four nibble positions (both halves the same row), four
    /// `vpmaddwd` and three adds give each pair of tokens' partial sums, and
    /// three `vphaddd` the eight tokens' block sums, which are offset by
    /// their `7 · Σ a`, converted, scaled and added to the accumulator.
    #[inline(always)]
    unsafe fn row_group(w: &[Q4Block], group: &[TokenGroup], mut acc: __m256) -> __m256 {
        // SAFETY (whole body): the caller has AVX2; `w` and `group` hold as
        // many blocks; the loads read each block's 16 code bytes (unaligned)
        // and the group's 32-byte aligned vectors.
        unsafe {
            let nibble = _mm256_set1_epi16(0x000F);
            for (w, group) in w.iter().zip(group) {
                let codes = _mm256_broadcastsi128_si256(_mm_loadu_si128(w.codes.as_ptr().cast()));
                let n = [
                    _mm256_and_si256(codes, nibble),
                    _mm256_and_si256(_mm256_srli_epi16(codes, 4), nibble),
                    _mm256_and_si256(_mm256_srli_epi16(codes, 8), nibble),
                    _mm256_srli_epi16(codes, 12),
                ];
                let v = &group.values;
                let s0 = pair_sums(&n, &v[0]);
                let s1 = pair_sums(&n, &v[1]);
                let s2 = pair_sums(&n, &v[2]);
                let s3 = pair_sums(&n, &v[3]);
                let sums = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
                let sevens = _mm256_load_si256(group.sevens.as_ptr().cast());
                let sums = _mm256_sub_epi32(sums, sevens);
                let scales =
                    _mm256_mul_ps(_mm256_set1_ps(w.scale), _mm256_load_ps(group.scales.as_ptr()));
                acc = _mm256_add_ps(acc, _mm256_mul_ps(scales, _mm256_cvtepi32_ps(sums)));
            }
            acc
        }
    }

    /// Four lanes of `Σ c·a` (unshifted codes) for each of two tokens (low
    /// and high half) against the four nibble positions `n` of a block.
    #[inline(always)]
    unsafe fn pair_sums(n: &[__m256i; 4], values: &[[i16; 16]; 4]) -> __m256i {
        // SAFETY (whole body): the caller has AVX2; the loads read 32-byte
        // aligned vectors of a `TokenGroup`.
        unsafe {
            let v = |i: usize| values[i].as_ptr().cast::<__m256i>();
            let m0 = _mm256_madd_epi16(n[0], _mm256_load_si256(v(0)));
            let m1 = _mm256_madd_epi16(n[1], _mm256_load_si256(v(1)));
            let m2 = _mm256_madd_epi16(n[2], _mm256_load_si256(v(2)));
            let m3 = _mm256_madd_epi16(n[3], _mm256_load_si256(v(3)));
            _mm256_add_epi32(_mm256_add_epi32(m0, m1), _mm256_add_epi32(m2, m3))
        }
    }

    /// The (at most eight) floats of `out` in the low lanes, zeros above: a
    /// full group's straight from `out`, a last, partial one's through a
    /// copy. A copy of a length known only at run time is a `memcpy` call,
    /// which for every row and pass of a prefill's products took ~2 % of its
    /// samples (docs/performance.md, "Row-wise work on the pool").
    #[inline(always)]
    unsafe fn load_up_to_8(out: &[f32]) -> __m256 {
        // SAFETY (whole body): the caller has AVX2; the load reads eight
        // floats of `out` or of `lanes`.
        unsafe {
            if out.len() == 8 {
                return _mm256_loadu_ps(out.as_ptr());
            }
            let mut lanes = [0.0f32; 8];
            lanes[..out.len()].copy_from_slice(out);
            _mm256_loadu_ps(lanes.as_ptr())
        }
    }

    /// Stores the low `out.len()` (at most eight) lanes of `v` into `out`, as
    /// [`load_up_to_8`] loads them.
    #[inline(always)]
    unsafe fn store_up_to_8(out: &mut [f32], v: __m256) {
        // SAFETY (whole body): the caller has AVX2; the store writes eight
        // floats of `out` or of `lanes`.
        unsafe {
            if out.len() == 8 {
                return _mm256_storeu_ps(out.as_mut_ptr(), v);
            }
            let mut lanes = [0.0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), v);
            out.copy_from_slice(&lanes[..out.len()]);
        }
    }

    /// [`super::dot_q4_q16_tokens`]: per group of eight tokens, passes of
    /// [`CHUNK_BLOCKS`] blocks over every weight row, each row's accumulator
    /// kept in `out` between passes (stored in token order, which a
    /// permutation undoes: the float values, hence the order of additions,
    /// are unchanged).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn tokens(
        w: &[Q4Block],
        groups: &[TokenGroup],
        m: usize,
        blocks: usize,
        out: &mut [f32],
    ) {
        // Rows of no blocks: no pass would write the (empty) sums.
        if blocks == 0 {
            return out.fill(0.0);
        }
        // SAFETY: AVX2 is enabled for this function; each call gets a row's
        // blocks and the group's, as many; `out` holds at most eight floats.
        unsafe {
            let to_tokens = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
            let to_lanes = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
            for g in 0..m.div_ceil(8) {
                let (first, count) = (8 * g, (m - 8 * g).min(8));
                let group = &groups[g * blocks..(g + 1) * blocks];
                for start in (0..blocks).step_by(CHUNK_BLOCKS) {
                    let end = (start + CHUNK_BLOCKS).min(blocks);
                    for (n, out) in out.chunks_exact_mut(m).enumerate() {
                        let out = &mut out[first..first + count];
                        let acc = match start {
                            0 => _mm256_setzero_ps(),
                            _ => _mm256_permutevar8x32_ps(load_up_to_8(out), to_lanes),
                        };
                        let row = &w[n * blocks + start..n * blocks + end];
                        let acc = row_group(row, &group[start..end], acc);
                        store_up_to_8(out, _mm256_permutevar8x32_ps(acc, to_tokens));
                    }
                }
            }
        }
    }

    /// One weight row's blocks against a group of eight tokens' int8 blocks
    /// (as many), continuing `acc` (lanes in token order), in
    /// [`super::scalar_dot`]'s order: per block the 32 codes are unpacked to
    /// bytes once; eight `vpmaddubsw` (codes `4i..4i + 4` broadcast as the
    /// unsigned operand) give each token's pairs of products in 16 bits,
    /// whose sums stay exact there (at most 8 · 2 · 15 · 127 = 30,480), and
    /// one `vpmaddwd` by ones each token's `Σ c·a` in its lane; minus
    /// `7 · Σ a`, converted, scaled and added to the accumulator.
    #[inline(always)]
    unsafe fn row_bytes(w: &[Q4Block], group: &[ByteGroup<8>], mut acc: __m256) -> __m256 {
        // SAFETY (whole body): the caller has AVX2; `w` and `group` hold as
        // many blocks; the loads read each block's 16 code bytes (unaligned),
        // `codes` and the group's 32-byte aligned vectors.
        unsafe {
            let nibble = _mm_set1_epi8(0x0F);
            let ones = _mm256_set1_epi16(1);
            let mut codes = [0i32; 8];
            for (w, group) in w.iter().zip(group) {
                let packed = _mm_loadu_si128(w.codes.as_ptr().cast());
                // Low nibbles: codes 0..16; high nibbles: codes 16..32.
                _mm_storeu_si128(codes.as_mut_ptr().cast(), _mm_and_si128(packed, nibble));
                let high = _mm_and_si128(_mm_srli_epi16(packed, 4), nibble);
                _mm_storeu_si128(codes.as_mut_ptr().add(4).cast(), high);
                // A macro, not a closure: a closure would be compiled without
                // the caller's target features.
                macro_rules! quad {
                    ($i:literal) => {
                        _mm256_maddubs_epi16(
                            _mm256_set1_epi32(codes[$i]),
                            _mm256_load_si256(group.values[$i].as_ptr().cast()),
                        )
                    };
                }
                let low = _mm256_add_epi16(
                    _mm256_add_epi16(quad!(0), quad!(1)),
                    _mm256_add_epi16(quad!(2), quad!(3)),
                );
                let high = _mm256_add_epi16(
                    _mm256_add_epi16(quad!(4), quad!(5)),
                    _mm256_add_epi16(quad!(6), quad!(7)),
                );
                let sums = _mm256_madd_epi16(_mm256_add_epi16(low, high), ones);
                let sevens = _mm256_load_si256(group.sevens.as_ptr().cast());
                let sums = _mm256_sub_epi32(sums, sevens);
                let scales =
                    _mm256_mul_ps(_mm256_set1_ps(w.scale), _mm256_load_ps(group.scales.as_ptr()));
                acc = _mm256_add_ps(acc, _mm256_mul_ps(scales, _mm256_cvtepi32_ps(sums)));
            }
            acc
        }
    }

    /// [`super::dot_q4_q8_tokens`] for the eight-token layout: per group,
    /// passes of [`CHUNK_BLOCKS`] blocks over every weight row, each row's
    /// accumulator kept in `out` between passes (lanes in token order).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn bytes(
        w: &[Q4Block],
        groups: &[ByteGroup<8>],
        m: usize,
        blocks: usize,
        out: &mut [f32],
    ) {
        // Rows of no blocks: no pass would write the (empty) sums.
        if blocks == 0 {
            return out.fill(0.0);
        }
        // SAFETY: AVX2 is enabled for this function; each call gets a row's
        // blocks and the group's, as many; `out` holds at most eight floats.
        unsafe {
            for g in 0..m.div_ceil(8) {
                let (first, count) = (8 * g, (m - 8 * g).min(8));
                let group = &groups[g * blocks..(g + 1) * blocks];
                for start in (0..blocks).step_by(CHUNK_BLOCKS) {
                    let end = (start + CHUNK_BLOCKS).min(blocks);
                    for (n, out) in out.chunks_exact_mut(m).enumerate() {
                        let out = &mut out[first..first + count];
                        let acc = match start {
                            0 => _mm256_setzero_ps(),
                            _ => load_up_to_8(out),
                        };
                        let row = &w[n * blocks + start..n * blocks + end];
                        store_up_to_8(out, row_bytes(row, &group[start..end], acc));
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::{ByteGroup, Q4Block, WideTokenGroup};

    /// Blocks per pass over a task's weight rows: a group's 32 blocks (36
    /// KB) stay in a 48 KB L1 cache while every row meets them.
    const CHUNK_BLOCKS: usize = 32;

    /// The passes of a sixteen-token kernel over `m` tokens of `blocks`
    /// blocks: per group `g` of sixteen tokens (its first token, and the
    /// mask of the lanes it fills), each run of [`CHUNK_BLOCKS`] blocks.
    fn passes(
        m: usize,
        blocks: usize,
    ) -> impl Iterator<Item = (usize, usize, __mmask16, Range<usize>)> {
        (0..m.div_ceil(16)).flat_map(move |g| {
            let (first, count) = (16 * g, (m - 16 * g).min(16));
            let mask = ((1u32 << count) - 1) as __mmask16;
            (0..blocks)
                .step_by(CHUNK_BLOCKS)
                .map(move |start| (g, first, mask, start..(start + CHUNK_BLOCKS).min(blocks)))
        })
    }

    /// Weight rows that [`rows_group`] multiplies at once: each vector of
    /// the tokens' values, loaded once, meets four rows' codes.
    const ROWS: usize = 4;

    /// One block's 32 codes as 16-bit values in weight order, aligned so
    /// that each pair is one 32-bit word of one cache line.
    #[derive(Clone, Copy)]
    #[repr(C, align(64))]
    struct Codes([i16; 32]);

    /// The codes of `w` (byte `j` holds weights `j` and `j + 16`), widened.
    #[inline]
    #[target_feature(enable = "avx2,avx512f")]
    unsafe fn unpack(w: &Q4Block, codes: &mut Codes) {
        // SAFETY: a 16-byte unaligned load of the block's codes and a
        // 64-byte aligned store of `codes`.
        unsafe {
            let packed = _mm_loadu_si128(w.codes.as_ptr().cast());
            let nibble = _mm_set1_epi8(0x0F);
            let low = _mm256_cvtepu8_epi16(_mm_and_si128(packed, nibble));
            let high = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), nibble));
            let both = _mm512_inserti64x4(_mm512_castsi256_si512(low), high, 1);
            _mm512_store_si512(codes.0.as_mut_ptr().cast(), both);
        }
    }

    /// `sum` plus, in each 32-bit lane, the two products of that lane's
    /// 16-bit pair of `values` with the pair at `pair`, broadcast
    /// (`vpdpwssd` with a broadcast memory operand). Written as assembly:
    /// from the intrinsic LLVM emits most of a kernel's `vpdpwssd` as
    /// `vpmaddwd` + `vpaddd`, two instructions for one, and the kernel runs
    /// 1.2× slower (docs/performance.md, "vpdpwssd as written").
    #[inline]
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn dpwssd(mut sum: __m512i, values: __m512i, pair: *const i16) -> __m512i {
        // SAFETY: the caller passes 4 readable bytes at `pair`.
        unsafe {
            std::arch::asm!(
                "vpdpwssd {sum}, {values}, dword ptr [{pair}]{{1to16}}",
                sum = inout(zmm_reg) sum,
                values = in(zmm_reg) values,
                pair = in(reg) pair,
                options(pure, readonly, nostack, preserves_flags),
            );
        }
        sum
    }

    /// `R` weight rows' blocks against a group of sixteen tokens' (as many):
    /// the rows' first blocks at `w[first]`, `w[first + stride]`, …,
    /// continuing `acc` (one vector per row, lanes in
    /// token order), in [`super::scalar_dot`]'s order: per block each row's
    /// codes are unpacked once, sixteen `vpdpwssd` per row (each vector of
    /// the tokens' values loaded once for the `R` rows, the row's code pair
    /// broadcast) give every token's exact `Σ c·a` in its lane, which is
    /// offset by `7 · Σ a`, converted, scaled and added to the row's
    /// accumulator.
    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
    unsafe fn rows_group<const R: usize>(
        (w, first, stride): (&[Q4Block], usize, usize),
        group: &[WideTokenGroup],
        acc: &mut [__m512; R],
    ) {
        // SAFETY (whole body): the features are enabled; every row holds as
        // many blocks as `group`; the loads read the group's 64-byte aligned
        // vectors and the pairs of `codes`.
        unsafe {
            let mut codes = [Codes([0; 32]); R];
            for (b, group) in group.iter().enumerate() {
                let block = |r: usize| &w[first + r * stride + b];
                for (r, codes) in codes.iter_mut().enumerate() {
                    unpack(block(r), codes);
                }
                // Four chains a row, so that the additions overlap. Unrolled
                // by hand: as a loop, the sums went to the stack.
                let mut sums = [[_mm512_setzero_si512(); 4]; R];
                macro_rules! pair {
                    ($($i:literal)*) => {$(
                        let values = _mm512_load_si512(group.pairs[$i].as_ptr().cast());
                        for r in 0..R {
                            let pair = codes[r].0.as_ptr().add(2 * $i);
                            sums[r][$i % 4] = dpwssd(sums[r][$i % 4], values, pair);
                        }
                    )*};
                }
                pair!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
                let sevens = _mm512_load_si512(group.sevens.as_ptr().cast());
                let scales = _mm512_load_ps(group.scales.as_ptr());
                for r in 0..R {
                    let [s0, s1, s2, s3] = sums[r];
                    let sum = _mm512_add_epi32(_mm512_add_epi32(s0, s1), _mm512_add_epi32(s2, s3));
                    let scale = _mm512_mul_ps(_mm512_set1_ps(block(r).scale), scales);
                    let term =
                        _mm512_mul_ps(scale, _mm512_cvtepi32_ps(_mm512_sub_epi32(sum, sevens)));
                    acc[r] = _mm512_add_ps(acc[r], term);
                }
            }
        }
    }

    /// One pass of [`tokens`] over the `R` weight rows from `n` (of `blocks`
    /// blocks each): their blocks from `start`, as many as `group` holds,
    /// against a group whose tokens from `first` (the lanes of `mask`) are
    /// the lanes of each row's accumulator in `out` (rows of `m` results).
    #[inline]
    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
    unsafe fn pass<const R: usize>(
        w: &[Q4Block],
        group: &[WideTokenGroup],
        (n, blocks, start): (usize, usize, usize),
        out: &mut [f32],
        (m, first, mask): (usize, usize, __mmask16),
    ) {
        assert!((n + R) * m <= out.len(), "pass: rows {n}.. past the results");
        let results = out.as_mut_ptr();
        // SAFETY: the features are enabled; row `n + r`'s results are
        // `out[(n + r) · m..][..m]` (in `out`: checked above), and the masked
        // loads and stores touch only the group's tokens of it, `first..m`.
        unsafe {
            let results = |r: usize| results.add((n + r) * m + first);
            let mut acc = [_mm512_setzero_ps(); R];
            if start > 0 {
                for (r, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_maskz_loadu_ps(mask, results(r));
                }
            }
            rows_group((w, n * blocks + start, blocks), group, &mut acc);
            for (r, acc) in acc.into_iter().enumerate() {
                _mm512_mask_storeu_ps(results(r), mask, acc);
            }
        }
    }

    /// [`super::dot_q4_q16_tokens`] for the sixteen-token layout: per group,
    /// passes of [`CHUNK_BLOCKS`] blocks over every weight row, [`ROWS`] at a
    /// time, each row's accumulator kept in `out` between passes (lanes in
    /// token order, loaded and stored under a mask for a last group of
    /// fewer).
    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn tokens(
        w: &[Q4Block],
        groups: &[WideTokenGroup],
        m: usize,
        blocks: usize,
        out: &mut [f32],
    ) {
        // Rows of no blocks: no pass would write the (empty) sums.
        if blocks == 0 {
            return out.fill(0.0);
        }
        let n_rows = out.len() / m;
        for (g, first, mask, chunk) in passes(m, blocks) {
            let group = &groups[g * blocks..][chunk.clone()];
            let tokens = (m, first, mask);
            // SAFETY: the features are enabled for this function; every row
            // passed exists.
            unsafe {
                let mut n = 0;
                while n + ROWS <= n_rows {
                    pass::<ROWS>(w, group, (n, blocks, chunk.start), out, tokens);
                    n += ROWS;
                }
                for n in n..n_rows {
                    pass::<1>(w, group, (n, blocks, chunk.start), out, tokens);
                }
            }
        }
    }

    /// One weight row's blocks against a group of sixteen tokens' int8
    /// blocks (as many), continuing `acc` (lanes in token order), in
    /// [`super::scalar_dot`]'s order: per block the 32 codes are unpacked to
    /// bytes once, and eight `vpdpbusd` (codes `4i..4i + 4` broadcast as the
    /// unsigned operand, the tokens' values `4i..4i + 4` as the signed one)
    /// give each token's `Σ c·a` in its lane; minus `7 · Σ a`, converted,
    /// scaled and added to the accumulator.
    #[inline(always)]
    unsafe fn row_bytes(w: &[Q4Block], group: &[ByteGroup<16>], mut acc: __m512) -> __m512 {
        // SAFETY (whole body): the caller has AVX-512 F/BW/VNNI; `w` and
        // `group` hold as many blocks; the loads read each block's 16 code
        // bytes (unaligned), `codes` and the group's 64-byte aligned vectors.
        unsafe {
            let nibble = _mm_set1_epi8(0x0F);
            let mut codes = [0i32; 8];
            for (w, group) in w.iter().zip(group) {
                let packed = _mm_loadu_si128(w.codes.as_ptr().cast());
                // Low nibbles: codes 0..16; high nibbles: codes 16..32.
                _mm_storeu_si128(codes.as_mut_ptr().cast(), _mm_and_si128(packed, nibble));
                let high = _mm_and_si128(_mm_srli_epi16(packed, 4), nibble);
                _mm_storeu_si128(codes.as_mut_ptr().add(4).cast(), high);
                // A macro, not a closure: a closure would be compiled without
                // the caller's target features.
                macro_rules! quad {
                    ($sum:expr, $i:literal) => {
                        _mm512_dpbusd_epi32(
                            $sum,
                            _mm512_set1_epi32(codes[$i]),
                            _mm512_load_si512(group.values[$i].as_ptr().cast()),
                        )
                    };
                }
                // Two chains of four, so that the additions overlap.
                let even = quad!(_mm512_setzero_si512(), 0);
                let odd = quad!(_mm512_setzero_si512(), 1);
                let (even, odd) = (quad!(even, 2), quad!(odd, 3));
                let (even, odd) = (quad!(even, 4), quad!(odd, 5));
                let (even, odd) = (quad!(even, 6), quad!(odd, 7));
                let sevens = _mm512_load_si512(group.sevens.as_ptr().cast());
                let sums = _mm512_sub_epi32(_mm512_add_epi32(even, odd), sevens);
                let scales =
                    _mm512_mul_ps(_mm512_set1_ps(w.scale), _mm512_load_ps(group.scales.as_ptr()));
                acc = _mm512_add_ps(acc, _mm512_mul_ps(scales, _mm512_cvtepi32_ps(sums)));
            }
            acc
        }
    }

    /// [`super::dot_q4_q8_tokens`]: per group of sixteen tokens, passes of
    /// [`CHUNK_BLOCKS`] blocks (20 KB of a group) over every weight row, each
    /// row's accumulator kept in `out` between passes (lanes in token
    /// order, loaded and stored under a mask for a last group of fewer).
    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn bytes(
        w: &[Q4Block],
        groups: &[ByteGroup<16>],
        m: usize,
        blocks: usize,
        out: &mut [f32],
    ) {
        // Rows of no blocks: no pass would write the (empty) sums.
        if blocks == 0 {
            return out.fill(0.0);
        }
        // SAFETY: the features are enabled for this function; each call gets
        // a row's blocks and the group's, as many; the masked loads and
        // stores touch only the group's results of the row.
        unsafe {
            for (g, first, mask, chunk) in passes(m, blocks) {
                let group = &groups[g * blocks..][chunk.clone()];
                for (n, out) in out.chunks_exact_mut(m).enumerate() {
                    let out = out[first..].as_mut_ptr();
                    let acc = match chunk.start {
                        0 => _mm512_setzero_ps(),
                        _ => _mm512_maskz_loadu_ps(mask, out),
                    };
                    let acc = row_bytes(&w[n * blocks..][chunk.clone()], group, acc);
                    _mm512_mask_storeu_ps(out, mask, acc);
                }
            }
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    use core::arch::wasm32::*;

    use super::{Q4Block, Q16Block};

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

    /// The block's 32 activations as four i16x8.
    #[inline(always)]
    fn values(a: &Q16Block) -> [v128; 4] {
        // SAFETY: v128 loads of the block's 64 value bytes in four pieces;
        // `v128_load` takes unaligned addresses.
        std::array::from_fn(|i| unsafe { v128_load(a.values.as_ptr().add(8 * i).cast()) })
    }

    /// Four lanes of `i32x4.dot_i16x8_s` of unpacked codes and values,
    /// summing to the block's exact `Σ (c − 7)·a`.
    #[inline(always)]
    fn lanes(codes: &[v128; 4], values: &[v128; 4]) -> v128 {
        let dot = |i: usize| i32x4_dot_i16x8(codes[i], values[i]);
        i32x4_add(i32x4_add(dot(0), dot(1)), i32x4_add(dot(2), dot(3)))
    }

    /// The sums of four vectors' lanes, in order: lanes (0, 2) and (1, 3)
    /// of vectors 0 and 1 (2 and 3), then the two halves.
    #[inline(always)]
    fn sums(l: [v128; 4]) -> v128 {
        let pairs = |x: v128, y: v128| {
            i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(x, y), i32x4_shuffle::<2, 6, 3, 7>(x, y))
        };
        let (t0, t1) = (pairs(l[0], l[1]), pairs(l[2], l[3]));
        i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(t0, t1), i32x4_shuffle::<2, 3, 6, 7>(t0, t1))
    }

    /// A vector's four lanes.
    #[inline(always)]
    fn store(acc: v128) -> [f32; 4] {
        [
            f32x4_extract_lane::<0>(acc),
            f32x4_extract_lane::<1>(acc),
            f32x4_extract_lane::<2>(acc),
            f32x4_extract_lane::<3>(acc),
        ]
    }

    /// One weight row against one activation row.
    fn dot(w: &[Q4Block], a: &[Q16Block]) -> f32 {
        w.iter().zip(a).fold(0.0f32, |acc, (w, a)| {
            let l = lanes(&unpack(w), &values(a));
            let sum = i32x4_extract_lane::<0>(l)
                + i32x4_extract_lane::<1>(l)
                + i32x4_extract_lane::<2>(l)
                + i32x4_extract_lane::<3>(l);
            acc + (w.scale * a.scale) * sum as f32
        })
    }

    /// [`super::dot_q4_q16_with`] in [`super::scalar_dot`]'s order: four
    /// activation rows at a time (each weight block unpacked once for them,
    /// their block sums gathered into one vector, scaled and added to one
    /// accumulator), the rest one at a time.
    pub(super) fn dots(w: &[Q4Block], a: &[Q16Block], out: &mut [f32]) {
        let blocks = w.len();
        let mut tiles = out.chunks_exact_mut(4);
        let mut first = 0;
        for out4 in &mut tiles {
            let a = &a[first * blocks..(first + 4) * blocks];
            let mut acc = f32x4_splat(0.0);
            for (b, w) in w.iter().enumerate() {
                let codes = unpack(w);
                let token = |t: usize| &a[t * blocks + b];
                let sums = sums(std::array::from_fn(|t| lanes(&codes, &values(token(t)))));
                let a_scales =
                    f32x4(token(0).scale, token(1).scale, token(2).scale, token(3).scale);
                let scales = f32x4_mul(f32x4_splat(w.scale), a_scales);
                acc = f32x4_add(acc, f32x4_mul(scales, f32x4_convert_i32x4(sums)));
            }
            out4.copy_from_slice(&store(acc));
            first += 4;
        }
        for y in tiles.into_remainder() {
            *y = dot(w, &a[first * blocks..(first + 1) * blocks]);
            first += 1;
        }
    }

    /// [`super::dot_rows_q4_q16`] in [`super::scalar_dot`]'s order: four
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
                let sums = sums(std::array::from_fn(|r| lanes(&unpack(row(r)), &values)));
                let w_scales = f32x4(row(0).scale, row(1).scale, row(2).scale, row(3).scale);
                let scales = f32x4_mul(w_scales, f32x4_splat(a.scale));
                acc = f32x4_add(acc, f32x4_mul(scales, f32x4_convert_i32x4(sums)));
            }
            out4.copy_from_slice(&store(acc));
            first += 4;
        }
        for y in tiles.into_remainder() {
            *y = dot(&w[first * blocks..(first + 1) * blocks], a);
            first += 1;
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

    /// Deterministic pseudo-random int8 activation blocks covering the
    /// extremes (±127).
    fn byte_rows(len: usize, seed: u32) -> Vec<Q8Block> {
        let mut state = seed ^ 0x5bd1_e995;
        let mut next = move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            state >> 8
        };
        (0..len)
            .map(|b| {
                let values: [i8; 32] = std::array::from_fn(|j| match (b + j) % 7 {
                    0 => 127,
                    1 => -127,
                    _ => ((next() % 255) as i32 - 127) as i8,
                });
                Q8Block { scale: (next() % 1000) as f32 * 1e-4 + 1e-4, values }
            })
            .collect()
    }

    /// One block's product in f64 from the decoded integers.
    fn exact_block<A: ActivationBlock>(w: &Q4Block, a: &A) -> f64 {
        let isum: i64 = (0..32).map(|j| (w.code(j) as i64 - 7) * a.value(j) as i64).sum();
        w.scale as f64 * a.scale() as f64 * isum as f64
    }

    /// The same product in f64 from the decoded integers.
    fn exact<A: ActivationBlock>(w: &[Q4Block], a: &[A]) -> f64 {
        w.iter().zip(a).map(|(w, a)| exact_block(w, a)).sum()
    }

    /// Every kernel this target has.
    fn kernels() -> Vec<DotKernel> {
        let mut kernels = vec![DotKernel::Scalar];
        // Every x86_64 CI runner has AVX2; a machine without it fails here
        // rather than pass without testing the kernel users run.
        #[cfg(target_arch = "x86_64")]
        {
            assert!(is_x86_feature_detected!("avx2"), "this test needs an AVX2 CPU");
            kernels.push(DotKernel::Avx2);
            // Not every runner has AVX-512; say so where it is not tested.
            match has_avx512() {
                true => kernels.push(DotKernel::Avx512),
                false => eprintln!("this CPU lacks AVX-512 VNNI: its kernel is not tested here"),
            }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        kernels.push(DotKernel::Simd128);
        kernels
    }

    /// `tokens` activation rows against one weight row with `kernel`, bits.
    fn products(kernel: DotKernel, len: usize, tokens: usize, seed: u32) -> Vec<u32> {
        let (w, _) = rows(len, seed);
        let a: Vec<Q16Block> = (0..tokens).flat_map(|t| rows(len, seed + 1 + t as u32).1).collect();
        let mut out = vec![0.0f32; tokens];
        dot_q4_q16_with(kernel, &w, &a, &mut out);
        out.iter().map(|v| v.to_bits()).collect()
    }

    /// `count` weight rows against one activation row with `kernel`, bits.
    fn row_products(kernel: DotKernel, len: usize, count: usize, seed: u32) -> Vec<u32> {
        let w: Vec<Q4Block> = (0..count).flat_map(|r| rows(len, seed + 1 + r as u32).0).collect();
        let (_, a) = rows(len, seed);
        let mut out = vec![0.0f32; count];
        dot_rows_q4_q16(kernel, &w, &a, &mut out);
        out.iter().map(|v| v.to_bits()).collect()
    }

    /// The scalar kernel is within rounding of the exact product: one
    /// rounding per block term and per addition.
    #[test]
    fn scalar_kernel_equals_the_decoded_product() {
        for len in [1, 3, 4, 18, 35, 144] {
            for seed in 0..8 {
                let (w, a) = rows(len, seed * 977 + len as u32);
                let got = scalar_dot(&w, &a) as f64;
                let exact = exact(&w, &a);
                let magnitude: f64 = w.iter().zip(&a).map(|(w, a)| exact_block(w, a).abs()).sum();
                let bound = 4.0 * f32::EPSILON as f64 * (len as f64 + 1.0) * magnitude;
                assert!((got - exact).abs() <= bound, "{len} blocks: {got} vs {exact}");
            }
        }
    }

    /// The int8 products: the scalar kernel within rounding of the exact
    /// product, and every kernel (`vpmaddubsw` on AVX2, `vpdpbusd` on
    /// AVX-512 VNNI, through [`dot_q4_q8_with`] and through one [`Q8Tokens`]
    /// gathered into again and again, across kernels, with 1 to 5 weight
    /// rows) bit-equal to the scalar one on edge lengths (0 blocks; 35 make
    /// two of the kernels' 32-block passes, the second resumed from the
    /// results of the first) and 1 to 37 tokens (groups of eight or sixteen
    /// and their remainders).
    #[test]
    fn int8_products_equal_the_scalar_kernel_bit_for_bit() {
        #[cfg(target_arch = "x86_64")]
        let mut gathered = Q8Tokens::default();
        for len in [0, 1, 2, 3, 5, 18, 35, 144] {
            for m in 1..=37 {
                let seed = m as u32 * 613 + len as u32;
                let w: Vec<Q4Block> = (0..5).flat_map(|r| rows(len, seed + r).0).collect();
                let a: Vec<Q8Block> =
                    (0..m).flat_map(|t| byte_rows(len, seed + 50 + t as u32)).collect();
                let want: Vec<Vec<f32>> = (0..5)
                    .map(|n| {
                        let w = &w[n * len..(n + 1) * len];
                        (0..m).map(|t| scalar_dot(w, &a[t * len..(t + 1) * len])).collect()
                    })
                    .collect();
                for (n, want) in want.iter().enumerate() {
                    let w = &w[n * len..(n + 1) * len];
                    for (t, y) in want.iter().enumerate() {
                        let a = &a[t * len..(t + 1) * len];
                        let (exact, got) = (exact(w, a), *y as f64);
                        let magnitude: f64 =
                            w.iter().zip(a).map(|(w, a)| exact_block(w, a).abs()).sum();
                        let bound = 4.0 * f32::EPSILON as f64 * (len as f64 + 1.0) * magnitude;
                        assert!((got - exact).abs() <= bound, "{len} blocks: {got} vs {exact}");
                    }
                    for kernel in kernels() {
                        let mut got = vec![f32::NAN; m];
                        dot_q4_q8_with(kernel, w, &a, &mut got);
                        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&got), bits(want), "{kernel:?}: {len} blocks, {m} tokens");
                    }
                }
                #[cfg(target_arch = "x86_64")]
                for kernel in kernels().into_iter().filter(|&k| k != DotKernel::Scalar) {
                    for count in 1..=5 {
                        gathered.gather(kernel, &a, m);
                        let mut got = vec![f32::NAN; count * m];
                        dot_q4_q8_tokens(&w[..count * len], &gathered, &mut got);
                        for (i, y) in got.iter().enumerate() {
                            let (n, t) = (i / m, i % m);
                            let at = format!("{kernel:?}: {len} blocks, {count} rows: {n}, {t}");
                            assert_eq!(y.to_bits(), want[n][t].to_bits(), "{at}");
                        }
                    }
                }
            }
        }
    }

    /// The codes' offset of 7 comes back through the activations' sum: codes
    /// all 7 make every product exactly zero however large `Σ a`, codes all
    /// 0 make it `−7 · Σ a` per block (scaled), and codes all 15 `8 · Σ a`,
    /// with every kernel and token count.
    #[test]
    fn the_zero_point_is_corrected_through_the_activations_sum() {
        for m in [1, 4, 16, 17, 37] {
            let a: Vec<Q8Block> = (0..m)
                .flat_map(|t| {
                    (0..3).map(move |b| Q8Block {
                        scale: 0.5,
                        values: [((t + b) % 20) as i8 * 5 + 20; 32],
                    })
                })
                .collect();
            for (code, factor) in [(7u8, 0), (0, -7), (15, 8)] {
                let w = vec![Q4Block { scale: 0.25, codes: [code | (code << 4); 16] }; 3];
                let want: Vec<f32> = (0..m)
                    .map(|t| {
                        let sum: i32 =
                            a[t * 3..(t + 1) * 3].iter().map(|b| 32 * b.values[0] as i32).sum();
                        (factor * sum) as f32 * 0.125
                    })
                    .collect();
                for kernel in kernels() {
                    let mut got = vec![f32::NAN; m];
                    dot_q4_q8_with(kernel, &w, &a, &mut got);
                    assert_eq!(got, want, "{kernel:?}: code {code}, {m} tokens");
                }
            }
        }
    }

    /// A prefill's products over 1 to 37 tokens (every tile and its
    /// remainders, the last group of eight padded) on edge lengths: every
    /// kernel equals the scalar one bit for bit, and each token's result
    /// equals a decode step's product of that token, with every kernel.
    #[test]
    fn prefill_products_equal_the_scalar_kernel_and_decode_bit_for_bit() {
        for len in [1, 2, 3, 5, 18, 35, 144] {
            for tokens in 1..=37 {
                let seed = tokens as u32 * 131 + len as u32;
                let want = products(DotKernel::Scalar, len, tokens, seed);
                for kernel in kernels() {
                    assert_eq!(
                        products(kernel, len, tokens, seed),
                        want,
                        "{kernel:?}: {len} blocks, {tokens} tokens"
                    );
                }
                let (w, _) = rows(len, seed);
                for (t, bits) in want.iter().enumerate() {
                    let a = rows(len, seed + 1 + t as u32).1;
                    for kernel in kernels() {
                        let mut one = [0.0f32];
                        dot_rows_q4_q16(kernel, &w, &a, &mut one);
                        assert_eq!(one[0].to_bits(), *bits, "{kernel:?}: {len} blocks, token {t}");
                    }
                    assert_eq!(dot_q4_q16(&w, &a).to_bits(), *bits, "{len} blocks, token {t}");
                }
            }
        }
    }

    /// The decode product over 1 to 19 weight rows (two eight-row tiles,
    /// four-row tiles and every remainder) equals the scalar kernel bit for
    /// bit on every kernel this CPU runs.
    #[test]
    fn row_products_equal_the_scalar_kernel_bit_for_bit() {
        for len in [1, 2, 3, 5, 18, 35, 48, 144] {
            for count in 1..=19 {
                let seed = count as u32 * 977 + len as u32;
                let want = row_products(DotKernel::Scalar, len, count, seed);
                for (r, bits) in want.iter().enumerate() {
                    let (w, _) = rows(len, seed + 1 + r as u32);
                    let (_, a) = rows(len, seed);
                    assert_eq!(scalar_dot(&w, &a).to_bits(), *bits, "{len} blocks, row {r}");
                }
                for kernel in kernels() {
                    assert_eq!(
                        row_products(kernel, len, count, seed),
                        want,
                        "{kernel:?}: {len} blocks, {count} rows"
                    );
                }
            }
        }
    }

    /// The AVX2 and AVX-512 products of 1 to 5 weight rows (AVX-512's
    /// four-row passes and the rows left over; of 0 to 35 blocks) and 1 to
    /// 37 tokens gathered once (groups of eight or sixteen
    /// and their padding; 35 blocks make two of the kernels' 32-block passes,
    /// the second resumed from the results of the first): bit-equal to the
    /// scalar kernel, results stored per weight row, every one written. One
    /// [`Q16Tokens`] is gathered into again and again across sizes and
    /// kernels, as `MatmulScratch` keeps one.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn gathered_tokens_against_weight_rows_equal_the_scalar_kernel() {
        let wide = kernels().into_iter().filter(|&k| k != DotKernel::Scalar);
        let mut tokens = Q16Tokens::default();
        for (kernel, len) in wide.flat_map(|k| [0, 1, 3, 35].map(|len| (k, len))) {
            for count in 1..=5 {
                for m in 1..=37 {
                    let seed = (count * 19 + m) as u32 * 7 + len as u32;
                    let w: Vec<Q4Block> =
                        (0..count).flat_map(|r| rows(len, seed + r as u32).0).collect();
                    let a: Vec<Q16Block> =
                        (0..m).flat_map(|t| rows(len, seed + 100 + t as u32).1).collect();
                    tokens.gather(kernel, &a, m);
                    assert_eq!(tokens.len(), m);
                    let mut got = vec![f32::NAN; count * m];
                    dot_q4_q16_tokens(&w, &tokens, &mut got);
                    for (i, y) in got.iter().enumerate() {
                        let (n, t) = (i / m, i % m);
                        let want =
                            scalar_dot(&w[n * len..(n + 1) * len], &a[t * len..(t + 1) * len]);
                        let at = format!("{kernel:?}: {len} blocks, row {n}, token {t}");
                        assert_eq!(y.to_bits(), want.to_bits(), "{at}");
                    }
                }
            }
        }
    }
}
