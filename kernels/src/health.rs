//! What a device reports on its own: errors no error scope captured and the
//! loss of the device, recorded instead of wgpu's default handler (which
//! panics), and — in a browser — error scopes whose result arrives later.
//!
//! A result computed after any of these is not to be trusted, so readbacks
//! check [`DeviceHealth`] before they hand data out.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::KernelError;

/// The result of a popped error scope that a browser resolves later (`Send`
/// natively, as wgpu's is, so a context can move to another thread).
#[cfg(target_arch = "wasm32")]
pub type ScopeFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Option<wgpu::Error>>>>;
/// The result of a popped error scope that a browser resolves later (`Send`
/// natively, as wgpu's is, so a context can move to another thread).
#[cfg(not(target_arch = "wasm32"))]
pub type ScopeFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<wgpu::Error>> + Send>>;

/// What one device reported; shared by every clone of its `GpuContext`.
#[derive(Default)]
pub struct DeviceHealth {
    /// Why the device was lost, once it was (shared with the device's callback).
    lost: Arc<Mutex<Option<String>>>,
    /// The first error no scope captured (shared with the device's handler).
    uncaptured: Arc<Mutex<Option<String>>>,
    /// Shader compilations whose error scope has not resolved yet (label,
    /// result): a browser's; natively scopes resolve at once.
    pending: Mutex<Vec<(String, ScopeFuture)>>,
}

impl DeviceHealth {
    /// Starts recording `device`'s uncaptured errors and its loss.
    // In a browser nothing is `Send` (one thread); the `Arc` is what native contexts share.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub(crate) fn watch(device: &wgpu::Device) -> Arc<DeviceHealth> {
        let health = Arc::new(DeviceHealth::default());
        // The handlers hold only the two records (plain data, `Send` everywhere).
        let errors = Arc::clone(&health.uncaptured);
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            log_error(&format!("mlc-wgpu: GPU error: {error}"));
            lock(&errors).get_or_insert_with(|| error.to_string());
        }));
        let lost = Arc::clone(&health.lost);
        device.set_device_lost_callback(move |reason, message| {
            let text = match message.is_empty() {
                true => format!("{reason:?}"),
                false => format!("{reason:?}: {message}"),
            };
            log_error(&format!("mlc-wgpu: the GPU device was lost ({text})"));
            lock(&lost).get_or_insert(text);
        });
        health
    }

    /// Records that the device was lost, when a call found out before the
    /// device's own callback ran (the first reason stays): what fails after
    /// a loss is then reported as the loss, not as the errors it causes.
    pub fn record_lost(&self, reason: String) {
        lock(&self.lost).get_or_insert(reason);
    }

    /// Why the device was lost, if it was.
    pub fn lost(&self) -> Option<String> {
        lock(&self.lost).clone()
    }

    /// Fails once the device was lost ([`KernelError::DeviceLost`]) or
    /// reported an error outside any scope ([`KernelError::Gpu`]).
    pub fn check(&self) -> Result<(), KernelError> {
        if let Some(reason) = self.lost() {
            return Err(KernelError::DeviceLost(reason));
        }
        match lock(&self.uncaptured).clone() {
            Some(message) => Err(KernelError::Gpu(message)),
            None => Ok(()),
        }
    }

    /// Keeps the unresolved result of the error scope around the compilation
    /// of shader `label`, for [`DeviceHealth::settle`]. (Natively only the
    /// tests call it: there scopes resolve at once.)
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn defer(&self, label: &str, result: ScopeFuture) {
        lock(&self.pending).push((label.to_string(), result));
    }

    /// Waits for the error scopes still unresolved (a browser's), then
    /// [`DeviceHealth::check`]s: a shader that failed to compile is
    /// [`KernelError::Shader`] here, not silence.
    pub async fn settle(&self) -> Result<(), KernelError> {
        let pending = std::mem::take(&mut *lock(&self.pending));
        for (label, result) in pending {
            if let Some(error) = result.await {
                return Err(KernelError::Shader { label, message: error.to_string() });
            }
        }
        self.check()
    }
}

/// The data behind `mutex`, also after a panic elsewhere poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Says what happened where a person can see it: the console in a browser,
/// stderr natively.
fn log_error(message: &str) {
    #[cfg(target_arch = "wasm32")]
    web_sys::console::error_1(&message.into());
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{message}");
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    /// What a browser does: the compile's scope resolves only later. The
    /// failure must come out of `settle`, not vanish.
    #[test]
    fn a_scope_resolved_later_surfaces_its_shader_error_at_settle() {
        let health = DeviceHealth::default();
        let error = wgpu::Error::Validation {
            source: "invalid WGSL".into(),
            description: "expected `fn`".to_string(),
        };
        health.defer("ok", Box::pin(std::future::ready(None)));
        health.defer("broken", Box::pin(std::future::ready(Some(error))));
        let settled = pollster::block_on(health.settle());
        assert!(
            matches!(&settled, Err(KernelError::Shader { label, message }) if label == "broken" && message.contains("expected `fn`")),
            "{settled:?}"
        );
        // Reported once; nothing else is wrong with the device.
        pollster::block_on(health.settle()).unwrap();
    }
}
