//! Loading a model onto the GPU without surprises: the memory plan is
//! computed and checked against the adapter's limits before anything is
//! allocated, and every allocation and upload of the load runs inside wgpu
//! error scopes (out of memory, validation). A failure is
//! [`EngineError::GpuOutOfMemory`] printing the plan — never a panic, never
//! wgpu's bare message.

use std::future::Future;
use std::pin::Pin;

use mlc_kernels::GpuContext;
use mlc_loader::Artifact;

use super::{GpuBackend, GpuOptions};
use crate::memory::{DeviceLimits, MemoryPlan};
use crate::models::spec_for;
use crate::{EngineError, Model};

/// Loads `artifact` onto the GPU engine running on `ctx`.
pub fn load_gpu(
    artifact: &Artifact,
    ctx: GpuContext,
    options: GpuOptions,
) -> Result<Model<GpuBackend>, EngineError> {
    let spec = spec_for(&artifact.config)?;
    if spec.rolling_window.is_some() && spec.qk_norm.is_some() {
        // The ring keeps the projection's keys as they come, before any norm.
        return Err(EngineError::Unsupported(format!(
            "{} with a sliding window and a q/k norm on the GPU engine",
            spec.family
        )));
    }
    let options = options.for_model(&spec, mlc_kernels::buffers::max_binding(&ctx));
    let backend = GpuBackend::new(ctx, options);
    let plan = backend.memory_plan(&spec, artifact);
    let scope = LoadScope::checked(backend.context(), plan)?;
    // On an error here `scope` is dropped, which pops its scopes in order.
    #[cfg_attr(not(target_arch = "wasm32"), allow(unused_mut))]
    let mut model = Model::load(artifact, backend)?;
    let check = scope.end();
    #[cfg(not(target_arch = "wasm32"))]
    pollster::block_on(check.result())?;
    // A browser resolves error scopes only through its event loop: the
    // result is awaited by `GpuBackend::settle` (and before the first readback).
    #[cfg(target_arch = "wasm32")]
    model.backend_mut().defer_load_check(check);
    Ok(model)
}

/// The error scopes around a load: out of memory outside, validation inside.
pub(crate) struct LoadScope {
    validation: Option<wgpu::ErrorScopeGuard>,
    memory: Option<wgpu::ErrorScopeGuard>,
    plan: MemoryPlan,
}

impl LoadScope {
    /// Checks `plan` against the limits of `ctx`'s adapter (a refusal is
    /// [`EngineError::GpuOutOfMemory`] before anything is allocated), then
    /// opens the scopes on its device.
    pub(crate) fn checked(ctx: &GpuContext, plan: MemoryPlan) -> Result<LoadScope, EngineError> {
        let plan = plan.on_device(DeviceLimits {
            adapter: ctx.adapter_info.name.clone(),
            max_buffer_size: ctx.limits.max_buffer_size,
            max_storage_buffer_binding_size: ctx.limits.max_storage_buffer_binding_size,
        });
        if let Some(cause) = plan.problem() {
            return Err(EngineError::GpuOutOfMemory { plan: Box::new(plan), cause });
        }
        Ok(LoadScope::begin(&ctx.device, plan))
    }

    fn begin(device: &wgpu::Device, plan: MemoryPlan) -> LoadScope {
        let memory = Some(device.push_error_scope(wgpu::ErrorFilter::OutOfMemory));
        let validation = Some(device.push_error_scope(wgpu::ErrorFilter::Validation));
        LoadScope { validation, memory, plan }
    }

    /// Pops both scopes (innermost first, as wgpu requires).
    pub(crate) fn end(mut self) -> LoadCheck {
        let validation = self.validation.take().map(|scope| Box::pin(scope.pop()) as ScopeResult);
        let memory = self.memory.take().map(|scope| Box::pin(scope.pop()) as ScopeResult);
        LoadCheck {
            results: validation.into_iter().chain(memory).collect(),
            plan: std::mem::replace(&mut self.plan, empty_plan()),
        }
    }
}

impl Drop for LoadScope {
    fn drop(&mut self) {
        // Scopes must be popped in reverse order of their pushes.
        drop(self.validation.take());
        drop(self.memory.take());
    }
}

/// What a popped error scope captured, once the device says.
type ScopeResult = Pin<Box<dyn Future<Output = Option<wgpu::Error>>>>;

/// The popped scopes of a load with the plan their error reports.
pub struct LoadCheck {
    results: Vec<ScopeResult>,
    plan: MemoryPlan,
}

impl LoadCheck {
    /// `GpuOutOfMemory` with the plan when the device refused an allocation
    /// or upload of the load.
    pub async fn result(self) -> Result<(), EngineError> {
        for result in self.results {
            if let Some(error) = result.await {
                let cause =
                    format!("the device refused an allocation or upload while loading: {error}");
                return Err(EngineError::GpuOutOfMemory { plan: Box::new(self.plan), cause });
            }
        }
        Ok(())
    }
}

/// A placeholder left in a [`LoadScope`] whose plan moved to its [`LoadCheck`].
fn empty_plan() -> MemoryPlan {
    MemoryPlan {
        weights: Vec::new(),
        layers: 0,
        recurrent: 0,
        kv_positions: 0,
        sequences: 1,
        kv_buffer: 0,
        ring_buffer: 0,
        rope_table: 0,
        scratch: 0,
        activations: 0,
        max_rows: 0,
        largest: (String::new(), 0),
        device: None,
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    /// A load's steps: the default's 2,048 rows for Qwen2.5-0.5B (its gate|up
    /// activation, 9,728 columns, fits a 128 MiB binding up to 3,449 rows),
    /// never more than the model's prefill chunk, and no more than keep the
    /// widest activation in one binding (a 16,384-wide gated MLP: 1,024).
    #[test]
    fn a_step_takes_the_prefill_chunk_within_one_binding() {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../conformance/fixtures/tokenizers/qwen2.5-0.5b-instruct.mlc-chat-config.json");
        let config = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        let mut spec = crate::models::spec_for(&config).unwrap();
        let binding = mlc_kernels::buffers::DEFAULT_MAX_BINDING;
        let rows = |spec: &crate::models::ModelSpec, max_rows| {
            GpuOptions { max_rows, ..GpuOptions::default() }.for_model(spec, binding).max_rows
        };
        assert_eq!(spec.widest_activation(), 2 * 4864);
        assert_eq!(GpuOptions::default().for_model(&spec, binding).max_rows, 2048);
        assert_eq!(rows(&spec, 64), 64);
        spec.prefill_chunk_size = 512;
        assert_eq!(rows(&spec, 2048), 512);
        spec.prefill_chunk_size = 4096;
        spec.intermediate_size = 16384;
        assert_eq!(rows(&spec, 4096), 1024);
        assert_eq!(rows(&spec, 4096) * 2 * 16384 * 4, binding as usize);
        assert_eq!(GpuOptions::default().for_model(&spec, 1024).max_rows, 1);
    }

    /// The scopes turn what the device refuses into the typed error with the
    /// plan: here a buffer beyond `max_buffer_size`, which the plan's own
    /// check would have caught had it known about it.
    #[test]
    fn a_refused_allocation_inside_the_load_scope_is_gpu_out_of_memory_with_the_plan() {
        let Ok(ctx) = GpuContext::new_blocking(&mlc_kernels::ContextOptions::default()) else {
            panic!("a GPU adapter (lavapipe in CI)");
        };
        let mut plan = empty_plan();
        plan.kv_positions = 7;
        let scope = LoadScope::begin(&ctx.device, plan);
        let _too_big = ctx.empty_storage_buffer("too big", ctx.limits.max_buffer_size + 4);
        let error = pollster::block_on(scope.end().result()).unwrap_err();
        let EngineError::GpuOutOfMemory { plan, cause } = &error else { panic!("{error:?}") };
        assert_eq!(plan.kv_positions, 7);
        assert!(
            cause.starts_with("the device refused an allocation or upload while loading: "),
            "{cause}"
        );
        let message = error.to_string();
        assert!(
            message.contains("GPU memory plan:")
                && message.contains("KV cache     0.0 MiB (0 bytes) (7 positions"),
            "{message}"
        );
        // Nothing leaked out of the scopes: the device has no uncaptured error.
        ctx.health().check().unwrap();
    }
}
