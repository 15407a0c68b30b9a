//! Shared helpers of the rope / attention / sampling tests: one GPU context per
//! path (portable and fast), random data and tolerance checks.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use mlc_kernels::{Capabilities, ContextOptions, GpuContext};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The paths every GPU test runs: `portable` (f32, no subgroups, forced),
/// `fast` (whatever the adapter offers) and `webgpu-limits` (portable under
/// WebGPU's default limits). Built once per test binary.
pub fn contexts() -> &'static [(&'static str, GpuContext)] {
    static CONTEXTS: OnceLock<Vec<(&'static str, GpuContext)>> = OnceLock::new();
    CONTEXTS.get_or_init(|| {
        let portable = GpuContext::new_blocking(&ContextOptions { portable_only: true })
            .expect("no WebGPU adapter (install mesa-vulkan-drivers; VK_ICD_FILENAMES=.../lvp_icd.x86_64.json)");
        let fast = GpuContext::new_blocking(&ContextOptions::default()).expect("no WebGPU adapter");
        eprintln!(
            "adapter: {} ({:?}); fast path caps: {:?}",
            fast.adapter_info.name, fast.adapter_info.backend, fast.caps
        );
        if !fast.caps.subgroups {
            eprintln!(
                "WARNING: adapter {:?} has no subgroups: the FAST-PATH tests below only re-run the PORTABLE kernels",
                fast.adapter_info.name
            );
        }
        vec![("portable", portable), ("fast", fast), ("webgpu-limits", webgpu_default_limits())]
    })
}

/// The portable path on a device created with WebGPU's *default* limits (256
/// invocations and 16 KiB of workgroup memory per workgroup, 8 storage buffers
/// per stage, 128 MiB per binding) instead of the adapter's: what every browser
/// guarantees, so a kernel that exceeds them fails here.
fn webgpu_default_limits() -> GpuContext {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))
    .expect("no WebGPU adapter");
    let limits = wgpu::Limits::default();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("webgpu default limits"),
        required_limits: limits.clone(),
        ..Default::default()
    }))
    .expect("device with the WebGPU default limits");
    GpuContext {
        device: Arc::new(device),
        queue: Arc::new(queue),
        adapter_info: adapter.get_info(),
        limits,
        caps: Capabilities::PORTABLE,
    }
}

/// A seeded generator (every test is reproducible).
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `n` values uniform in `[-scale, scale)`.
pub fn random_vec(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

/// A storage buffer holding `values`.
pub fn upload(ctx: &GpuContext, values: &[f32]) -> wgpu::Buffer {
    ctx.storage_buffer("test data", bytemuck::cast_slice(values))
}

/// A storage buffer holding `values` (u32).
pub fn upload_u32(ctx: &GpuContext, values: &[u32]) -> wgpu::Buffer {
    ctx.storage_buffer("test data", bytemuck::cast_slice(values))
}

/// Asserts `|got − want| ≤ rel · max|want| + abs` element-wise.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], rel: f32, abs: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let tolerance = rel * scale + abs;
    let (worst, error) = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .enumerate()
        .fold((0, 0.0f32), |best, (i, e)| if e > best.1 || e.is_nan() { (i, e) } else { best });
    assert!(
        error <= tolerance,
        "{what}: element {worst} is {} but should be {} (error {error:e} > tolerance {tolerance:e}, max|y| {scale})",
        got[worst],
        want[worst]
    );
}
