//! Results on their way from the GPU to the host: the staging buffers they
//! are copied into, and their maps as one future (natively the device is
//! polled first; in a browser the event loop resolves it). Every readback of
//! the crate and of the engine goes through [`read_mapped`].

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::{GpuContext, KernelError};

impl GpuContext {
    /// Copies `size` bytes of `buffer` back to the CPU (waits for the GPU).
    pub async fn read_bytes(
        &self,
        buffer: &wgpu::Buffer,
        size: u64,
    ) -> Result<Vec<u8>, KernelError> {
        let size = size.div_ceil(4) * 4;
        let staging = readback_buffer(self, size);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
        let submission = self.queue.submit([encoder.finish()]);
        let mapped = MapRead::new(&staging.slice(..size));
        read_mapped(self, &staging, size, submission, mapped).await
    }

    /// Blocking read of `count` f32 values from the start of `buffer`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_f32(&self, buffer: &wgpu::Buffer, count: usize) -> Result<Vec<f32>, KernelError> {
        let bytes = pollster::block_on(self.read_bytes(buffer, (count * 4) as u64))?;
        Ok(bytemuck::pod_collect_to_vec(&bytes[..count * 4]))
    }

    /// Blocking read of `count` u32 values from the start of `buffer`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_u32(&self, buffer: &wgpu::Buffer, count: usize) -> Result<Vec<u32>, KernelError> {
        let bytes = pollster::block_on(self.read_bytes(buffer, (count * 4) as u64))?;
        Ok(bytemuck::pod_collect_to_vec(&bytes[..count * 4]))
    }
}

/// A buffer of `size` bytes that results are copied into and mapped from.
pub fn readback_buffer(ctx: &GpuContext, size: u64) -> wgpu::Buffer {
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
pub async fn read_mapped(
    ctx: &GpuContext,
    staging: &wgpu::Buffer,
    size: u64,
    submission: wgpu::SubmissionIndex,
    mapped: MapRead,
) -> Result<Vec<u8>, KernelError> {
    let lost = |message: String| {
        ctx.health().record_lost(message.clone());
        KernelError::DeviceLost(message)
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
pub struct MapRead {
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
    pub fn new(slice: &wgpu::BufferSlice<'_>) -> MapRead {
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
