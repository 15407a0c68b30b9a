//! The GPU device every kernel runs on, and what it can do.
//!
//! Kernels have a portable path (f32 arithmetic, f16 data read through
//! `unpack2x16float`, no subgroups) that runs on every WebGPU adapter, and fast
//! paths (f16 arithmetic, subgroup reductions) that are chosen at run time when
//! the adapter has the feature. [`Capabilities`] is that choice; tests force the
//! portable path by building the context with fast paths disabled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{DeviceHealth, KernelError};

/// Which optional shader features the kernels may use on this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `enable f16;` is available (WebGPU `shader-f16`).
    pub shader_f16: bool,
    /// Subgroup operations are available (`subgroupAdd`, ...).
    pub subgroups: bool,
    /// Smallest subgroup size the adapter reports (0 when unknown).
    pub subgroup_min_size: u32,
    /// Cooperative matrices (tensor cores) of 16 × 16 × 16 with f16 inputs and
    /// an f32 accumulator, on subgroups of exactly 32 invocations: what the
    /// prefill products' tensor-core kernel (`shaders/matmul_coop.wgsl`) needs.
    /// Native only (wgpu's browser backend maps no subgroup matrices).
    pub cooperative_matrix: bool,
}

impl Capabilities {
    /// No optional feature: the path every WebGPU adapter can run.
    pub const PORTABLE: Capabilities = Capabilities {
        shader_f16: false,
        subgroups: false,
        subgroup_min_size: 0,
        cooperative_matrix: false,
    };
}

/// What a shader that uses subgroup operations starts with: browsers (Tint)
/// need WGSL's `enable subgroups;`, which naga (native) rejects.
pub(crate) const ENABLE_SUBGROUPS: &str =
    if cfg!(target_arch = "wasm32") { "enable subgroups;\n" } else { "" };

/// How to pick the device.
#[derive(Debug, Clone, Default)]
pub struct ContextOptions {
    /// Use only the portable path even if the adapter offers f16 or subgroups.
    pub portable_only: bool,
    /// Leave the cooperative matrices (tensor cores) unused even where the
    /// adapter offers them: the prefill products then run the SIMT kernel.
    pub no_cooperative_matrix: bool,
}

impl ContextOptions {
    /// Options taken from the environment: `MLC_WGPU_PORTABLE=1` forces the
    /// portable path (CI runs the suite both ways); `MLC_WGPU_NO_COOP_MATRIX=1`
    /// keeps the prefill products off the tensor cores (the baseline a
    /// benchmark compares them with).
    pub fn from_env() -> Self {
        let set = |name| std::env::var(name).is_ok_and(|v| v != "0" && !v.is_empty());
        ContextOptions {
            portable_only: set("MLC_WGPU_PORTABLE"),
            no_cooperative_matrix: set("MLC_WGPU_NO_COOP_MATRIX"),
        }
    }
}

/// Workgroup memory the tensor-core kernels use at most (`matmul_coop.wgsl`'s
/// two pairs of tiles and its staging area take 48 KiB, `attention_coop.wgsl`'s
/// tiles 45 KiB); an adapter offering less keeps the SIMT kernels.
const COOP_WORKGROUP_BYTES: u32 = 48 * 1024;

/// Whether `adapter` offers what the tensor-core prefill kernel needs: the
/// experimental cooperative-matrix feature with a 16 × 16 × 16 configuration of
/// f16 inputs and an f32 accumulator, f16 shaders, [`COOP_WORKGROUP_BYTES`] of
/// workgroup memory, and subgroups of exactly 32
/// invocations (the kernel gives each of a workgroup's 8 subgroups its own
/// sub-block). The configurations the H200 lists are in docs/kernels.md.
fn offers_cooperative_matrix(adapter: &wgpu::Adapter) -> bool {
    let features = adapter.features();
    let info = adapter.get_info();
    let needed = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
        | wgpu::Features::SHADER_F16
        | wgpu::Features::SUBGROUP;
    features.contains(needed)
        && info.subgroup_min_size == 32
        && info.subgroup_max_size == 32
        && adapter.limits().max_compute_workgroup_storage_size >= COOP_WORKGROUP_BYTES
        && adapter.cooperative_matrix_properties().iter().any(|p| {
            (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
                && p.ab_type == wgpu::CooperativeScalarType::F16
                && p.cr_type == wgpu::CooperativeScalarType::F32
        })
}

/// A wgpu device and queue with the capabilities the kernels were built for.
#[derive(Clone)]
pub struct GpuContext {
    /// The logical device.
    pub device: Arc<wgpu::Device>,
    /// Its queue.
    pub queue: Arc<wgpu::Queue>,
    /// Adapter description (name, backend, driver).
    pub adapter_info: wgpu::AdapterInfo,
    /// The limits the device was created with (the adapter's own).
    pub limits: wgpu::Limits,
    /// The optional features the kernels use.
    pub caps: Capabilities,
    /// Errors and loss the device reported outside error scopes.
    health: Arc<DeviceHealth>,
    /// Bytes of every buffer made through this context (shared by its clones).
    created_bytes: Arc<AtomicU64>,
}

impl GpuContext {
    /// Opens the best adapter (high performance, from `WGPU_BACKEND` etc. when set)
    /// and requests a device with the adapter's limits and the optional features
    /// the kernels can use.
    pub async fn new(options: &ContextOptions) -> Result<GpuContext, KernelError> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| KernelError::NoAdapter(e.to_string()))?;
        let adapter_features = adapter.features();
        let adapter_info = adapter.get_info();
        let adapter_limits = adapter.limits();
        let mut caps = Capabilities {
            shader_f16: adapter_features.contains(wgpu::Features::SHADER_F16),
            subgroups: adapter_features.contains(wgpu::Features::SUBGROUP),
            subgroup_min_size: adapter_info.subgroup_min_size,
            cooperative_matrix: !options.no_cooperative_matrix
                && offers_cooperative_matrix(&adapter),
        };
        if options.portable_only {
            caps = Capabilities::PORTABLE;
        }
        let mut required_features = wgpu::Features::empty();
        if caps.shader_f16 {
            required_features |= wgpu::Features::SHADER_F16;
        }
        if caps.subgroups {
            required_features |= wgpu::Features::SUBGROUP;
        }
        if caps.cooperative_matrix {
            required_features |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        }
        // Timestamps (and, where the adapter has them, timestamps between the
        // dispatches of a pass) let `bench --profile` time each kernel of a step.
        for feature in
            [wgpu::Features::TIMESTAMP_QUERY, wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES]
        {
            if adapter_features.contains(feature) {
                required_features |= feature;
            }
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("mlc-wgpu"),
                required_features,
                required_limits: adapter_limits.clone(),
                experimental_features: if caps.cooperative_matrix {
                    // SAFETY: the one experimental feature asked for is the
                    // cooperative matrix, and only `matmul_coop` uses it, with the
                    // 16 × 16 × 16 f16 → f32 configuration the adapter listed;
                    // tests compare its products with the CPU reference.
                    unsafe { wgpu::ExperimentalFeatures::enabled() }
                } else {
                    wgpu::ExperimentalFeatures::disabled()
                },
                ..Default::default()
            })
            .await
            .map_err(|e| KernelError::NoDevice(e.to_string()))?;
        // wgpu's browser backend neither reports nor requests `subgroups`
        // (wgpu 30 maps 16 WebGPU features, not that one), so in a browser the
        // device has them only when the page's requestDevice asked for them
        // (web/js/subgroups.js does while the engine loads): ask the device.
        #[cfg(target_arch = "wasm32")]
        if !options.portable_only {
            caps.subgroups =
                device.as_webgpu().is_some_and(|device| device.features().has("subgroups"));
        }
        Ok(GpuContext::from_device(device, queue, adapter_info, adapter_limits, caps))
    }

    /// A context over a device created elsewhere (with `limits` and the
    /// features `caps` needs). Its uncaptured errors and its loss are recorded
    /// from now on ([`GpuContext::health`]) instead of panicking.
    // In a browser wgpu's handles are neither `Send` nor `Sync`; the module runs on one
    // thread there, and the `Arc` only shares the device with the readback futures.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        adapter_info: wgpu::AdapterInfo,
        limits: wgpu::Limits,
        caps: Capabilities,
    ) -> GpuContext {
        let health = DeviceHealth::watch(&device);
        GpuContext {
            device: Arc::new(device),
            queue: Arc::new(queue),
            adapter_info,
            limits,
            caps,
            health,
            created_bytes: Arc::default(),
        }
    }

    /// What the device reported outside error scopes: check it before
    /// trusting a result ([`DeviceHealth::check`], [`DeviceHealth::settle`]).
    pub fn health(&self) -> &DeviceHealth {
        &self.health
    }

    /// The error the scope `scope` (around the compilation of `label`)
    /// captured. Natively it is known at once; in a browser it arrives later,
    /// so it is kept for [`DeviceHealth::settle`], which the readbacks await.
    fn compile_error(&self, label: &str, scope: wgpu::ErrorScopeGuard) -> Option<KernelError> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            pollster::block_on(scope.pop()).map(|error| KernelError::Shader {
                label: label.to_string(),
                message: error.to_string(),
            })
        }
        #[cfg(target_arch = "wasm32")]
        {
            self.health.defer(label, Box::pin(scope.pop()));
            None
        }
    }

    /// Blocking [`GpuContext::new`] for native callers and tests.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(options: &ContextOptions) -> Result<GpuContext, KernelError> {
        pollster::block_on(Self::new(options))
    }

    /// Compiles one WGSL compute shader into a pipeline with an automatic layout,
    /// turning validation errors into a [`KernelError`] instead of a panic.
    pub fn compile(
        &self,
        label: &str,
        wgsl: &str,
        entry_point: &str,
    ) -> Result<wgpu::ComputePipeline, KernelError> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(label),
            source: wgpu::ShaderSource::Wgsl(wgsl.into()),
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(label),
            layout: None,
            module: &module,
            entry_point: Some(entry_point),
            compilation_options: Default::default(),
            cache: None,
        });
        match self.compile_error(label, scope) {
            Some(error) => Err(error),
            None => Ok(pipeline),
        }
    }

    /// A storage buffer initialised with `contents` (padded to a multiple of 4 bytes).
    ///
    /// Created unmapped and filled through the queue: a buffer the device
    /// cannot allocate is then an error in the caller's error scope (or the
    /// recorded uncaptured error), where `create_buffer_init` would panic
    /// mapping it. The bytes land before the next submission's work.
    pub fn storage_buffer(&self, label: &str, contents: &[u8]) -> wgpu::Buffer {
        let mut padded;
        let bytes = if contents.len().is_multiple_of(4) && !contents.is_empty() {
            contents
        } else {
            padded = contents.to_vec();
            padded.resize(contents.len().div_ceil(4).max(1) * 4, 0);
            &padded
        };
        let buffer = self.empty_storage_buffer(label, bytes.len() as u64);
        self.queue.write_buffer(&buffer, 0, bytes);
        buffer
    }

    /// Makes a buffer as `descriptor` says and counts its bytes
    /// ([`GpuContext::created_bytes`]); every buffer of the kernels and the
    /// engine is made here.
    pub fn create_buffer(&self, descriptor: &wgpu::BufferDescriptor<'_>) -> wgpu::Buffer {
        self.created_bytes.fetch_add(descriptor.size, Ordering::Relaxed);
        self.device.create_buffer(descriptor)
    }

    /// A buffer of `usage` holding `contents` (a multiple of 4 bytes), counted.
    pub fn create_buffer_init(
        &self,
        label: &str,
        contents: &[u8],
        usage: wgpu::BufferUsages,
    ) -> wgpu::Buffer {
        use wgpu::util::DeviceExt;
        self.created_bytes.fetch_add(contents.len() as u64, Ordering::Relaxed);
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents,
            usage,
        })
    }

    /// Bytes of all buffers made through this context so far, freed or not:
    /// what the memory plan is checked against (the engine frees nothing
    /// while a model is loaded, so after a load and a step it is what is held).
    pub fn created_bytes(&self) -> u64 {
        self.created_bytes.load(Ordering::Relaxed)
    }

    /// An uninitialised (zeroed) storage buffer of `size` bytes.
    pub fn empty_storage_buffer(&self, label: &str, size: u64) -> wgpu::Buffer {
        self.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.div_ceil(4).max(1) * 4,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A uniform buffer holding `value`.
    pub fn uniform_buffer<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.create_buffer_init(
            label,
            bytemuck::bytes_of(value),
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )
    }
}

/// How a kernel's shader uses one binding of its bind group (see [`KernelLayout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// `var<uniform>`: the kernel's small parameter block.
    Uniform,
    /// `var<storage, read>`.
    ReadOnly,
    /// `var<storage, read_write>`.
    ReadWrite,
}

/// An explicit bind-group layout (group 0) shared by
/// every entry point of one shader, so a kernel made of several passes needs a
/// single bind group.
#[derive(Debug, Clone)]
pub struct KernelLayout {
    /// The layout of bind group 0.
    pub bind_group_layout: wgpu::BindGroupLayout,
    /// The pipeline layout holding it.
    pub pipeline_layout: wgpu::PipelineLayout,
    /// The kinds the layout was built from, in binding order.
    pub bindings: Vec<Binding>,
}

impl GpuContext {
    /// Builds the layout of a compute kernel whose binding `i` is used as `bindings[i]`.
    pub fn kernel_layout(&self, label: &str, bindings: &[Binding]) -> KernelLayout {
        let numbered: Vec<(u32, Binding)> =
            bindings.iter().enumerate().map(|(i, &kind)| (i as u32, kind)).collect();
        self.kernel_layout_at(label, &numbered)
    }

    /// Builds the layout of a compute kernel that uses only some binding
    /// numbers (a shader appended to another's, skipping bindings it does not
    /// read): `(binding, kind)` pairs.
    pub fn kernel_layout_at(&self, label: &str, bindings: &[(u32, Binding)]) -> KernelLayout {
        let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
            .iter()
            .map(|&(binding, kind)| wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match kind {
                        Binding::Uniform => wgpu::BufferBindingType::Uniform,
                        Binding::ReadOnly => wgpu::BufferBindingType::Storage { read_only: true },
                        Binding::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let bind_group_layout =
            self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(label),
                entries: &entries,
            });
        let pipeline_layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(label),
            bind_group_layouts: &[Some(&bind_group_layout)],
            immediate_size: 0,
        });
        let bindings = bindings.iter().map(|&(_, kind)| kind).collect();
        KernelLayout { bind_group_layout, pipeline_layout, bindings }
    }

    /// Compiles one WGSL module and builds a pipeline for each of `entry_points`,
    /// all with `layout`; validation errors become a [`KernelError`].
    pub fn compile_entries(
        &self,
        label: &str,
        wgsl: &str,
        entry_points: &[&str],
        layout: &KernelLayout,
    ) -> Result<Vec<wgpu::ComputePipeline>, KernelError> {
        self.compile_specialized(label, wgsl, entry_points, layout, &[])
    }

    /// [`GpuContext::compile_entries`] with values for the module's `override`
    /// constants (the same values for every entry point): one readable shader
    /// serves several weight formats without text substitution.
    pub fn compile_specialized(
        &self,
        label: &str,
        wgsl: &str,
        entry_points: &[&str],
        layout: &KernelLayout,
        constants: &[(&str, f64)],
    ) -> Result<Vec<wgpu::ComputePipeline>, KernelError> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(label),
            source: wgpu::ShaderSource::Wgsl(wgsl.into()),
        });
        let pipelines = entry_points
            .iter()
            .map(|entry| {
                self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&format!("{label}::{entry}")),
                    layout: Some(&layout.pipeline_layout),
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants,
                        ..Default::default()
                    },
                    cache: None,
                })
            })
            .collect();
        match self.compile_error(label, scope) {
            Some(error) => Err(error),
            None => Ok(pipelines),
        }
    }

    /// A bind group for `layout` binding `buffers[i]` (whole) at binding `i`.
    pub fn bind_buffers(
        &self,
        label: &str,
        layout: &KernelLayout,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, buffer)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: buffer.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &layout.bind_group_layout,
            entries: &entries,
        })
    }

    /// Waits until the GPU has finished all submitted work (native only; a
    /// no-op on the web, where readbacks wait instead).
    pub fn wait(&self) -> Result<(), KernelError> {
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| KernelError::DeviceLost(e.to_string()))?;
        Ok(())
    }

    /// Records one compute pass with `record` and submits it (does not wait).
    pub fn submit_pass(&self, label: &str, record: impl FnOnce(&mut wgpu::ComputePass<'_>)) {
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: None,
            });
            record(&mut pass);
        }
        self.queue.submit([encoder.finish()]);
    }
}

/// Fails with [`KernelError::InvalidArguments`] unless `buffer` holds at least `bytes` bytes.
pub fn require_size(what: &str, buffer: &wgpu::Buffer, bytes: u64) -> Result<(), KernelError> {
    if buffer.size() < bytes {
        return Err(KernelError::InvalidArguments(format!(
            "{what}: buffer has {} bytes, the shape needs {bytes}",
            buffer.size()
        )));
    }
    Ok(())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn a_shader_that_does_not_compile_is_an_error_naming_it_not_a_panic() {
        let ctx = GpuContext::new_blocking(&ContextOptions::default())
            .expect("a GPU adapter (lavapipe in CI)");
        let error = ctx
            .compile(
                "broken kernel",
                "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }",
                "main",
            )
            .unwrap_err();
        assert!(
            matches!(&error, KernelError::Shader { label, .. } if label == "broken kernel"),
            "{error:?}"
        );
        assert!(
            error.to_string().starts_with("shader `broken kernel` failed to compile: "),
            "{error}"
        );
        ctx.health().check().unwrap();
    }
}

/// Panics with naga's report unless `source` is valid WGSL with every
/// capability: for the tensor-core kernels, which an adapter without
/// cooperative matrices (lavapipe, CI) never compiles, so that a typo is
/// found by the tests rather than by the first device run.
#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) fn assert_valid_wgsl(source: &str) {
    use wgpu::naga::valid::{Capabilities, ValidationFlags, Validator};
    let module = wgpu::naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|error| panic!("{}", error.emit_to_string(source)));
    Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|error| panic!("{}", error.emit_to_string(source)));
}
