//! Shared helpers of the kernel tests: one GPU context per path (portable
//! forced, fast = whatever the adapter offers, and portable under WebGPU's
//! default limits), random data and weights in the artifact formats, and
//! tolerance checks.
#![allow(dead_code)]

use std::io::Write;
use std::sync::OnceLock;

use half::f16;
use mlc_kernels::{
    Capabilities, ContextOptions, FloatFormat, GpuContext, GpuWeight, KernelError, WeightFormat,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Writes to the test binary's stderr even while the harness captures output,
/// so that a missing fast path is visible in every run, not only on failure.
pub fn shout(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// The paths every test runs: `portable` (forced: no subgroups), `fast`
/// (the adapter's subgroups) and `webgpu-limits` (portable under
/// WebGPU's default limits). Built once per test binary.
pub fn contexts() -> &'static [(&'static str, GpuContext)] {
    static CONTEXTS: OnceLock<Vec<(&'static str, GpuContext)>> = OnceLock::new();
    CONTEXTS.get_or_init(|| {
        let portable = GpuContext::new_blocking(&ContextOptions { portable_only: true, ..Default::default() })
            .expect("no WebGPU adapter (install mesa-vulkan-drivers; VK_ICD_FILENAMES=.../lvp_icd.x86_64.json)");
        let fast = GpuContext::new_blocking(&ContextOptions::default()).expect("no WebGPU adapter");
        assert!(!portable.caps.shader_f16 && !portable.caps.subgroups, "the portable context must not use fast paths");
        if !fast.caps.subgroups {
            shout(&format!(
                "WARNING: adapter {:?} lacks subgroups: the subgroup FAST PATH IS NOT TESTED (the fast run repeats the portable kernels)",
                fast.adapter_info.name
            ));
        }
        if !fast.caps.cooperative_matrix {
            shout(&format!(
                "WARNING: adapter {:?} lacks 16×16×16 f16 → f32 cooperative matrices: the TENSOR-CORE PREFILL PATH IS NOT TESTED here (it runs on the lent GPU, docs/kernels.md)",
                fast.adapter_info.name
            ));
        }
        vec![("portable", portable), ("fast", fast), ("webgpu-limits", webgpu_default_limits())]
    })
}

/// The portable path on a device created with WebGPU's *default* limits (256
/// invocations and 16 KiB of workgroup memory per workgroup, 8 storage buffers
/// per stage, 128 MiB per binding) instead of the adapter's: what every browser
/// guarantees, so a kernel that exceeds them fails here.
fn webgpu_default_limits() -> GpuContext {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
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
    GpuContext::from_device(device, queue, adapter.get_info(), limits, Capabilities::PORTABLE)
}

/// A seeded generator (every test is reproducible).
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// The seed and the number of cases of a random-shape test:
/// `MLC_KERNEL_SEED` (default: a fixed one, so CI is repeatable) and
/// `MLC_KERNEL_CASES` (default 12). The seed is printed, so a failure found
/// with another one can be replayed.
pub fn random_run(test: &str) -> (u64, usize) {
    let number = |name: &str| std::env::var(name).ok().and_then(|value| value.parse().ok());
    let seed = number("MLC_KERNEL_SEED").unwrap_or(20_261_204);
    let cases = number("MLC_KERNEL_CASES").unwrap_or(12) as usize;
    shout(&format!("{test}: MLC_KERNEL_SEED={seed} MLC_KERNEL_CASES={cases}"));
    (seed, cases)
}

/// `n` values uniform in `[-scale, scale)`.
pub fn random_vec(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

/// Values as stored in `dtype` (f16 bits two per word, or f32), and the exact
/// f32 values the GPU will see (rounded to f16 where stored as f16).
pub fn encode(values: &[f32], dtype: FloatFormat) -> (Vec<u8>, Vec<f32>) {
    match dtype {
        FloatFormat::F16 => {
            let halves: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
            let bytes = halves.iter().flat_map(|h| h.to_bits().to_le_bytes()).collect();
            (bytes, halves.iter().map(|h| h.to_f32()).collect())
        }
        FloatFormat::F32 => (bytemuck::cast_slice(values).to_vec(), values.to_vec()),
    }
}

/// A KV cache holding `values` as `format` stores them, and the values the
/// GPU reads (rounded to f16 where the cache stores f16).
pub fn upload_cache(
    ctx: &GpuContext,
    values: &[f32],
    format: FloatFormat,
) -> (wgpu::Buffer, Vec<f32>) {
    let (bytes, stored) = encode(values, format);
    (ctx.storage_buffer("test cache", &bytes), stored)
}

/// The first `count` values of a KV cache stored as `format`.
pub fn read_cache(
    ctx: &GpuContext,
    buffer: &wgpu::Buffer,
    count: usize,
    format: FloatFormat,
) -> Vec<f32> {
    match format {
        FloatFormat::F32 => ctx.read_f32(buffer, count).unwrap(),
        FloatFormat::F16 => ctx
            .read_u32(buffer, count.div_ceil(2))
            .unwrap()
            .into_iter()
            .flat_map(|word| [word as u16, (word >> 16) as u16])
            .map(|bits| f16::from_bits(bits).to_f32())
            .take(count)
            .collect(),
    }
}

/// Both KV cache formats: f32 (a q4f32 model's) and f16 (a q4f16 model's).
pub const CACHE_FORMATS: [FloatFormat; 2] = [FloatFormat::F32, FloatFormat::F16];

/// Compares the caches a kernel wrote (keys rotated on the GPU, values
/// copied) with the CPU's, as stored in `format`: f32 keys within the
/// rotation's rounding and values exact; f16 ones within one f16 step (WGSL
/// leaves the rounding of a conversion to f16 to the device).
pub fn assert_caches(
    ctx: &GpuContext,
    what: &str,
    (k_cache, k_want): (&wgpu::Buffer, &[f32]),
    (v_cache, v_want): (&wgpu::Buffer, &[f32]),
    format: FloatFormat,
) {
    let k_got = read_cache(ctx, k_cache, k_want.len(), format);
    let v_got = read_cache(ctx, v_cache, v_want.len(), format);
    match format {
        FloatFormat::F32 => {
            assert_close(&format!("{what}: k cache"), &k_got, k_want, 2e-6, 1e-6);
            assert_eq!(v_got, v_want, "{what}: v cache must be an exact copy");
        }
        FloatFormat::F16 => {
            assert_close(&format!("{what}: k cache"), &k_got, k_want, 1e-3, 1e-6);
            assert_close(&format!("{what}: v cache"), &v_got, v_want, 1e-3, 1e-6);
        }
    }
}

/// A storage buffer holding f32 `values`.
pub fn upload(ctx: &GpuContext, values: &[f32]) -> wgpu::Buffer {
    ctx.storage_buffer("test f32", bytemuck::cast_slice(values))
}

/// A storage buffer holding u32 `values`.
pub fn upload_u32(ctx: &GpuContext, values: &[u32]) -> wgpu::Buffer {
    ctx.storage_buffer("test u32", bytemuck::cast_slice(values))
}

/// A random weight `[rows, cols]` in `format`, as a shard stores it, plus the
/// exact values it decodes to (what the CPU reference multiplies with).
pub struct TestWeight {
    /// Output features N.
    pub rows: usize,
    /// Input features K.
    pub cols: usize,
    /// The storage format.
    pub format: WeightFormat,
    /// Codes (q4, `[N, K/8]` words) or values (dense) as bytes.
    pub data: Vec<u8>,
    /// Scale bytes (q4 only).
    pub scale_bytes: Vec<u8>,
    /// q4 codes as words (for the CPU reference).
    pub q_weight: Vec<u32>,
    /// Decoded scales (q4) or values (dense) in f32.
    pub values: Vec<f32>,
}

impl TestWeight {
    /// Random codes 0..=15 with scales around 0.02 (q4), or values in ±0.1 (dense).
    pub fn random(rng: &mut StdRng, format: WeightFormat, rows: usize, cols: usize) -> TestWeight {
        match format {
            WeightFormat::Q4(dtype) => {
                let q_weight: Vec<u32> = (0..rows * cols / 8).map(|_| rng.random()).collect();
                let scales: Vec<f32> =
                    (0..rows * cols / 32).map(|_| rng.random_range(0.002..0.04)).collect();
                let (scale_bytes, scales) = encode(&scales, dtype);
                TestWeight {
                    rows,
                    cols,
                    format,
                    data: bytemuck::cast_slice(&q_weight).to_vec(),
                    scale_bytes,
                    q_weight,
                    values: scales,
                }
            }
            WeightFormat::Dense(dtype) => {
                let (data, values) = encode(&random_vec(rng, rows * cols, 0.1), dtype);
                TestWeight {
                    rows,
                    cols,
                    format,
                    data,
                    scale_bytes: Vec::new(),
                    q_weight: Vec::new(),
                    values,
                }
            }
        }
    }

    /// The CPU reference's view of the weight.
    pub fn cpu(&self) -> mlc_kernels::cpu::Weight<'_> {
        match self.format {
            WeightFormat::Q4(_) => mlc_kernels::cpu::Weight::Q4(mlc_kernels::cpu::Q4Matrix {
                rows: self.rows,
                cols: self.cols,
                q_weight: &self.q_weight,
                scales: &self.values,
            }),
            WeightFormat::Dense(_) => mlc_kernels::cpu::Weight::Dense {
                rows: self.rows,
                cols: self.cols,
                values: &self.values,
            },
        }
    }

    /// Uploads the weight; keep the result alive while it is bound.
    pub fn upload(&self, ctx: &GpuContext) -> GpuWeightBuffers {
        let data = ctx.storage_buffer("test weight", &self.data);
        let scales = matches!(self.format, WeightFormat::Q4(_))
            .then(|| ctx.storage_buffer("test scales", &self.scale_bytes));
        GpuWeightBuffers {
            format: self.format,
            rows: self.rows as u32,
            cols: self.cols as u32,
            data,
            scales,
        }
    }
}

/// The GPU buffers of a [`TestWeight`].
pub struct GpuWeightBuffers {
    pub format: WeightFormat,
    pub rows: u32,
    pub cols: u32,
    pub data: wgpu::Buffer,
    pub scales: Option<wgpu::Buffer>,
}

impl GpuWeightBuffers {
    /// The kernels' view of the weight.
    pub fn weight(&self) -> GpuWeight<'_> {
        GpuWeight {
            format: self.format,
            rows: self.rows,
            cols: self.cols,
            data: &self.data,
            scales: self.scales.as_ref(),
        }
    }
}

/// Whether a kernel refused its arguments (rather than failing otherwise).
pub fn invalid<T>(result: Result<T, KernelError>) -> bool {
    matches!(result, Err(KernelError::InvalidArguments(_)))
}

/// The largest |value|.
pub fn max_abs(values: &[f32]) -> f32 {
    values.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// Asserts `max |got - want| ≤ rel · max |want| + abs`, i.e. an error small
/// relative to the output's scale, and that every value is finite.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], rel: f32, abs: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let (mut worst, mut at) = (0.0f32, 0);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "{what}: non-finite value {g} at {i}");
        let d = (g - w).abs();
        if d > worst {
            (worst, at) = (d, i);
        }
    }
    let bound = rel * max_abs(want) + abs;
    eprintln!(
        "{what}: max |Δ| / max |want| = {:.2e}",
        worst / max_abs(want).max(f32::MIN_POSITIVE)
    );
    assert!(
        worst <= bound,
        "{what}: max |Δ| = {worst:e} at {at} (got {}, want {}) exceeds {bound:e} (scale {})",
        got[at],
        want[at],
        max_abs(want)
    );
}
