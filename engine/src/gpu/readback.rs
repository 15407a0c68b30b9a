//! Steps on their way from the GPU to the host: a submission with the map of
//! the staging buffer its result is copied into (the map itself is
//! [`mlc_kernels::readback`]'s future).

use mlc_kernels::readback::{MapRead, read_mapped, readback_buffer};
use mlc_kernels::result_bytes;
use mlc_kernels::sampling::TOKEN_WORDS;
use web_time::Instant;

use super::GpuBackend;
use crate::EngineError;

/// A forward pass handed to the queue, when, and the map of the buffer its
/// result is copied into. The map is asked for with the submission, not when
/// the host wants the result: a browser resolves maps only through its event
/// loop, so maps asked for one at a time would each wait a round trip after
/// their step is done, while maps asked for early are resolved together.
pub(super) struct Submitted {
    pub(super) index: wgpu::SubmissionIndex,
    pub(super) at: Instant,
    pub(super) mapped: MapRead,
}

/// A token chosen on the GPU, on its way to the host: the submission that
/// computes it copies its id (and `top` log probabilities) into `staging`.
pub struct GpuPending {
    pub(super) staging: wgpu::Buffer,
    pub(super) submitted: Submitted,
    pub(super) vocab: usize,
    pub(super) top: usize,
}

impl GpuBackend {
    /// Ends the pass, copies `bytes` of `source` to the host in the same
    /// submission, and returns them.
    pub(super) async fn submit_and_read(
        &mut self,
        source: &wgpu::Buffer,
        bytes: u64,
    ) -> Result<Vec<u8>, EngineError> {
        // Nothing is submitted to a lost device or after an unreported failure.
        self.settle().await?;
        let size = bytes.div_ceil(4).max(1) * 4;
        if self.staging.as_ref().is_none_or(|s| s.size() < size) {
            self.staging = Some(readback_buffer(&self.ctx, size));
        }
        let staging = self.staging.clone().expect("made above");
        let submitted = self.submit_copy(source, &staging, size);
        self.read_submitted(&staging, size, submitted).await
    }

    /// Ends the pass and submits the recorded work followed by a copy of the
    /// first `size` bytes of `source` into `staging`, whose map starts at
    /// once: it completes when the submission does, also while the host is
    /// still busy elsewhere.
    pub(super) fn submit_copy(
        &mut self,
        source: &wgpu::Buffer,
        staging: &wgpu::Buffer,
        size: u64,
    ) -> Submitted {
        self.submit_copies(&[(source, 0, staging, size)]).pop().expect("one copy, one submission")
    }

    /// [`GpuBackend::submit_copy`] of several `(source, offset, staging,
    /// size)` copies (from `offset` in `source`) in one submission, each
    /// staging buffer with its own map.
    fn submit_copies(
        &mut self,
        copies: &[(&wgpu::Buffer, u64, &wgpu::Buffer, u64)],
    ) -> Vec<Submitted> {
        self.pass = None;
        let mut encoder = self
            .encoder
            .take()
            .unwrap_or_else(|| self.ctx.device.create_command_encoder(&Default::default()));
        for &(source, offset, staging, size) in copies {
            encoder.copy_buffer_to_buffer(source, offset, staging, 0, size);
        }
        if let Some(profiler) = &self.profiler {
            profiler.resolve(&mut encoder);
        }
        let index = self.ctx.queue.submit([encoder.finish()]);
        self.count_submission();
        let at = Instant::now();
        copies
            .iter()
            .map(|&(_, _, staging, size)| {
                self.stats.readback_bytes += size;
                let mapped = MapRead::new(&staging.slice(..size));
                Submitted { index: index.clone(), at, mapped }
            })
            .collect()
    }

    /// Waits for a submission made by [`GpuBackend::submit_copy`] and returns
    /// the bytes it copied into `staging`.
    pub(super) async fn read_submitted(
        &mut self,
        staging: &wgpu::Buffer,
        size: u64,
        submitted: Submitted,
    ) -> Result<Vec<u8>, EngineError> {
        let Submitted { index, at, mapped } = submitted;
        let bytes = read_mapped(&self.ctx, staging, size, index, mapped).await?;
        self.stats.wait += at.elapsed();
        if let Some(profiler) = self.profiler.as_mut() {
            profiler.collect(&self.ctx).await?;
        }
        Ok(bytes)
    }

    /// Submits the recorded step with copies of sampled results to the
    /// host, in one submission: for each `(offset, top)`, the result at that
    /// byte offset of the sampler's token buffer, with `top` log
    /// probabilities (the token id alone when `top` is 0).
    pub(super) fn submit_tokens(
        &mut self,
        vocab: usize,
        results: &[(u64, usize)],
    ) -> Vec<GpuPending> {
        let token_out = self.prepared().sampling.token_buffer().clone();
        let staging: Vec<wgpu::Buffer> =
            results.iter().map(|_| self.token_staging_buffer()).collect();
        let copies: Vec<_> = results
            .iter()
            .zip(&staging)
            .map(|(&(offset, top), staging)| (&token_out, offset, staging, result_bytes(top)))
            .collect();
        let submitted = self.submit_copies(&copies);
        staging
            .into_iter()
            .zip(submitted)
            .zip(results)
            .map(|((staging, submitted), &(_, top))| GpuPending { staging, submitted, vocab, top })
            .collect()
    }

    /// A free staging buffer for a sampled result.
    fn token_staging_buffer(&mut self) -> wgpu::Buffer {
        self.token_staging
            .pop()
            .unwrap_or_else(|| readback_buffer(&self.ctx, (TOKEN_WORDS * 4) as u64))
    }
}
