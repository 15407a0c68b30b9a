//! Results on their way from the GPU to the host: the staging buffers
//! results are copied into, and their maps as futures (natively the device is
//! polled first; in a browser the event loop resolves them).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use mlc_kernels::GpuContext;
use web_time::Instant;

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

/// A buffer of `size` bytes that results are copied into and mapped from.
pub(super) fn readback_buffer(ctx: &GpuContext, size: u64) -> wgpu::Buffer {
    ctx.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Waits for the map of `staging` (`mapped`, started with `submission`) and
/// copies its first `size` bytes out. Natively the device is polled until
/// `submission` is done first (later ones may still run), so the map
/// callback has already run when the future is awaited; in a browser the
/// await yields to the event loop.
pub(super) async fn read_mapped(
    ctx: &GpuContext,
    staging: &wgpu::Buffer,
    size: u64,
    submission: wgpu::SubmissionIndex,
    mapped: MapRead,
) -> Result<Vec<u8>, EngineError> {
    let lost = |message: String| {
        ctx.health().record_lost(message.clone());
        EngineError::Gpu(mlc_kernels::KernelError::DeviceLost(message))
    };
    let slice = staging.slice(..size);
    // Unmaps on every exit, also when the future is dropped mid-wait, so the
    // next step can copy into the staging buffer again.
    let _unmap = Unmap(staging);
    #[cfg(not(target_arch = "wasm32"))]
    ctx.device
        .poll(wgpu::PollType::Wait { submission_index: Some(submission), timeout: None })
        .map_err(|e| lost(e.to_string()))?;
    #[cfg(target_arch = "wasm32")]
    let _ = submission;
    // A lost device fails the map (WebGPU rejects `mapAsync`), so this never hangs.
    mapped.await.map_err(|e| lost(e.to_string()))?;
    let bytes = slice.get_mapped_range().map_err(|e| lost(e.to_string()))?.to_vec();
    // What a device computed while it was being lost, or after an error, is no result.
    ctx.health().settle().await?;
    Ok(bytes)
}

/// Unmaps a staging buffer when dropped.
struct Unmap<'a>(&'a wgpu::Buffer);

impl Drop for Unmap<'_> {
    fn drop(&mut self) {
        self.0.unmap();
    }
}

/// Resolves when wgpu reports that a `map_async` finished (or failed).
pub(super) struct MapRead {
    state: Arc<Mutex<MapState>>,
}

/// What the map callback left for [`MapRead`], and whom to wake.
#[derive(Default)]
struct MapState {
    result: Option<Result<(), wgpu::BufferAsyncError>>,
    waker: Option<Waker>,
}

impl MapRead {
    /// Starts mapping `slice` for reading.
    pub(super) fn new(slice: &wgpu::BufferSlice<'_>) -> MapRead {
        let state = Arc::new(Mutex::new(MapState::default()));
        let callback_state = Arc::clone(&state);
        slice.map_async(wgpu::MapMode::Read, move |result| {
            let mut state = callback_state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            state.result = Some(result);
            if let Some(waker) = state.waker.take() {
                waker.wake();
            }
        });
        MapRead { state }
    }
}

impl Future for MapRead {
    type Output = Result<(), wgpu::BufferAsyncError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match state.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
