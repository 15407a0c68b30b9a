//! The fast CPU engine's math: q4 weights times int16-quantized activations.
//!
//! The float32 reference ([`crate::cpu`]) decodes every weight to f32 and
//! multiplies in f32: exact, and far too slow to chat with. This module does
//! what llama.cpp does on a CPU. Weights are repacked once, at load, into
//! [`Q4Block`]s (32 codes and their scale side by side, in the order the SIMD
//! kernel reads them); each activation row is quantized per 32 values to
//! integers with one f32 scale ([`Q16Block`]: llama.cpp's Q8_0 scheme with 16
//! bits, see there why); the products are integer dot products summed per
//! whole block, scaled once per block, in one order for a prefill's tokens
//! ([`dot_q4_q16_with`]; [`dot_q4_q16_tokens`] on tokens laid out once) and a
//! decode step's one token against many weight rows ([`dot_rows_q4_q16`]):
//! AVX2 (a prefill on AVX-512 VNNI) or wasm `simd128` where available, a
//! portable scalar loop otherwise. A prefill may instead quantize to int8
//! ([`Q8Block`], llama.cpp's own width) and multiply with `vpdpbusd`
//! ([`matmul_q4_q8`]): faster, but outside the accuracy bound, so the engine
//! takes it only when asked.
//! Rows of a product are spread over rayon's pool natively
//! ([`matmul_q4_q16`]); the attention computes each
//! GQA group's scores into a per-thread buffer, then the softmax and the
//! weighted sum of values, in vectorized loops ([`attention`]).
//!
//! Quantizing the activations costs a little accuracy, which the conformance
//! suite bounds (`conformance/tests/cpu_fast.rs`; worst errors in
//! docs/performance.md).

mod attention;
mod blocks;
mod dot;
mod matmul;

pub use attention::{AttentionKernel, attention, attention_with};
pub use blocks::{
    ActivationBlock, BLOCK, Q4Block, Q4Packed, Q8Block, Q16Block, quantize_row, quantize_rows,
};
pub use dot::{DotKernel, dot_q4_q8_with, dot_q4_q16, dot_q4_q16_with, dot_rows_q4_q16};
#[cfg(target_arch = "x86_64")]
pub use dot::{Q8Tokens, Q16Tokens, dot_q4_q8_tokens, dot_q4_q16_tokens};
pub use matmul::{MatmulScratch, matmul_q4_q8, matmul_q4_q16};

/// Threads the products run on: rayon's pool (`RAYON_NUM_THREADS`, else one
/// per core), or 1 without the `parallel` feature (the wasm build).
pub fn threads() -> usize {
    #[cfg(feature = "parallel")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "parallel"))]
    1
}

/// Makes the calling thread one of the threads of rayon's global pool, the
/// pool the products run on, unless that pool exists already (then nothing
/// changes); returns whether it did. Call it on the thread that will run the
/// engine, before anything uses rayon. That thread then works on the
/// products it starts, and a pool of one thread per core has no extra
/// thread: otherwise the caller sleeps while the pool works on a product,
/// and runs the work between products (norms, attention, sampling) while the
/// pool's idle threads look for work, which rayon does for a while before
/// they sleep: on two cores, three busy threads (docs/performance.md, "The
/// engine's thread in the pool").
#[cfg(feature = "parallel")]
pub fn share_this_thread_with_the_pool() -> bool {
    rayon::ThreadPoolBuilder::new().use_current_thread().build_global().is_ok()
}

/// Values below which [`for_each_row_group`] gives a piece of rows to one
/// task: a prefill's norm of 64 rows of 896 makes four tasks, a decode
/// step's single row runs inline.
const VALUES_PER_ROW_GROUP: usize = 1 << 14;

/// Runs `task(first_row, rows)` over groups of whole rows of `out` (each
/// `width` values wide, the last group maybe shorter) on rayon's pool,
/// inline for one group or one thread: the row-wise work between a
/// prefill's products (norms, the gated activation, residual and bias adds),
/// which would otherwise leave every thread but the caller's idle. Each row
/// is computed as it would be alone, so the results do not depend on the
/// grouping.
pub fn for_each_row_group<T: Send>(
    out: &mut [T],
    width: usize,
    task: impl Fn(usize, &mut [T]) + Send + Sync,
) {
    let width = width.max(1);
    let rows = VALUES_PER_ROW_GROUP.div_ceil(width);
    for_each_chunk(out, rows * width, |group, values| task(group * rows, values));
}

/// Runs `task(index, chunk)` over `chunk`-sized pieces of `out`, on rayon's
/// pool when there is more than one thread and more than one piece, else
/// inline (the wasm build, `RAYON_NUM_THREADS=1`): a one-thread run pays no
/// scheduling.
pub(crate) fn for_each_chunk<T: Send>(
    out: &mut [T],
    chunk: usize,
    task: impl Fn(usize, &mut [T]) + Send + Sync,
) {
    #[cfg(feature = "parallel")]
    if rayon::current_num_threads() > 1 && out.len() > chunk {
        use rayon::prelude::*;
        out.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| task(i, c));
        return;
    }
    out.chunks_mut(chunk).enumerate().for_each(|(i, c)| task(i, c));
}
