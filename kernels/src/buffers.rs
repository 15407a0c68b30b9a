//! Plumbing shared by the kernel wrappers: parameter uniforms, bind groups,
//! 2-D workgroup grids, splitting weights that exceed one storage binding into
//! row parts, and argument checks.
//!
//! Every shader follows one convention so that [`crate::Bound`] can drive
//! them all: binding 0 is a uniform parameter block whose first words are
//! those the step sets (the row count first), and linearly numbered
//! workgroups are spread over a 2-D grid (`id.x + id.y * count.x`).

use crate::context::KernelLayout;
use crate::cpu::KvLayout;
use crate::{GpuContext, KernelError};

/// Invocations per workgroup of every kernel here: the WebGPU default limit, so
/// the same pipelines run in browsers.
pub const WORKGROUP_SIZE: u32 = 256;

/// Largest storage binding the kernels use by default: WebGPU's default
/// `maxStorageBufferBindingSize` (and lavapipe's limit), whatever the device offers.
pub const DEFAULT_MAX_BINDING: u64 = 128 << 20;

/// Offset alignment of split bindings: WebGPU's default
/// `minStorageBufferOffsetAlignment`, the largest any adapter asks for.
pub const BINDING_ALIGNMENT: u64 = 256;

/// The largest storage binding the kernels use on `ctx`: the device's limit,
/// capped at [`DEFAULT_MAX_BINDING`].
pub fn max_binding(ctx: &GpuContext) -> u64 {
    ctx.limits.max_storage_buffer_binding_size.min(DEFAULT_MAX_BINDING)
}

/// How a float tensor is stored on the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FloatFormat {
    /// IEEE half bits, two per u32 word, the lower index in the low half (the
    /// shard's raw bytes; read with `unpack2x16float`).
    F16,
    /// IEEE single precision.
    F32,
}

impl FloatFormat {
    /// Bytes per value.
    pub fn size(self) -> u64 {
        match self {
            FloatFormat::F16 => 2,
            FloatFormat::F32 => 4,
        }
    }

    /// Bytes a buffer needs for `count` values, rounded up to whole u32 words
    /// (the shaders read f16 data as words).
    pub fn bytes(self, count: u64) -> u64 {
        (count * self.size()).div_ceil(4) * 4
    }

    /// Bytes one of a layer's caches (keys or values) takes in this format:
    /// `sequences` blocks of `layout`.
    pub fn kv_cache_bytes(self, sequences: usize, layout: KvLayout) -> u64 {
        let KvLayout { kv_heads, capacity, head_dim } = layout;
        self.bytes((sequences * kv_heads * capacity * head_dim) as u64)
    }

    /// WGSL that declares how a KV cache of this format is stored: the type
    /// `KvVec4` of four consecutive values of a head, `kv_load` (to f32) and
    /// `kv_store` (from f32). An f16 cache is two u32 words per four values,
    /// read and written with `unpack2x16float`/`pack2x16float`, so it needs no
    /// `shader-f16`; `native_f16` (a shader that enables f16) declares the same
    /// bytes as `vec4<f16>` and adds `kv_load_half`, four values as f16.
    pub(crate) fn kv_cache_wgsl(self, native_f16: bool) -> String {
        let storage = match (self, native_f16) {
            (FloatFormat::F32, _) => {
                "alias KvVec4 = vec4<f32>;\n\
                 fn kv_load(v: KvVec4) -> vec4<f32> { return v; }\n\
                 fn kv_store(v: vec4<f32>) -> KvVec4 { return v; }\n"
            }
            (FloatFormat::F16, false) => {
                "alias KvVec4 = vec2<u32>;\n\
                 fn kv_load(v: KvVec4) -> vec4<f32> { return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y)); }\n\
                 fn kv_store(v: vec4<f32>) -> KvVec4 { return vec2<u32>(pack2x16float(v.xy), pack2x16float(v.zw)); }\n"
            }
            (FloatFormat::F16, true) => {
                "alias KvVec4 = vec4<f16>;\n\
                 fn kv_load(v: KvVec4) -> vec4<f32> { return vec4<f32>(v); }\n\
                 fn kv_store(v: vec4<f32>) -> KvVec4 { return vec4<f16>(v); }\n"
            }
        };
        match native_f16 {
            true => format!(
                "{storage}fn kv_load_half(v: KvVec4) -> vec4<f16> {{ return vec4<f16>(v); }}\n"
            ),
            false => storage.to_string(),
        }
    }

    /// The value of the shaders' `HALF` override constant.
    pub(crate) fn half_constant(self) -> f64 {
        match self {
            FloatFormat::F16 => 1.0,
            FloatFormat::F32 => 0.0,
        }
    }
}

/// Spreads `count` workgroups over a grid `(x, y)` with `x ≤ max_per_dimension`
/// (WebGPU allows 65535 per dimension; a big lm_head or prefill needs more). The
/// shaders skip the at most `x - 1` surplus workgroups of the last grid row.
/// (`count` ≤ max², i.e. 4·10⁹ workgroups at WebGPU's limit, always holds.)
pub(crate) fn grid(count: u32, max_per_dimension: u32) -> (u32, u32) {
    if count <= max_per_dimension {
        (count, 1)
    } else {
        let y = count.div_ceil(max_per_dimension);
        (count.div_ceil(y), y)
    }
}

/// A parameter uniform holding `words` (f32 values as their bits), padded to
/// WGSL's 16-byte uniform struct granularity. Word 0 is the row count.
pub(crate) fn params_buffer(ctx: &GpuContext, label: &str, words: &[u32]) -> wgpu::Buffer {
    let mut padded = words.to_vec();
    padded.resize(words.len().div_ceil(4).max(1) * 4, 0);
    ctx.create_buffer_init(
        label,
        bytemuck::cast_slice(&padded),
        wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    )
}

/// A bind group for `layout` with `resources[i]` at binding `i` (whole buffers
/// or byte ranges of them).
pub(crate) fn bind_group(
    ctx: &GpuContext,
    label: &str,
    layout: &KernelLayout,
    resources: &[wgpu::BindingResource<'_>],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = resources
        .iter()
        .enumerate()
        .map(|(i, resource)| wgpu::BindGroupEntry { binding: i as u32, resource: resource.clone() })
        .collect();
    ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &layout.bind_group_layout,
        entries: &entries,
    })
}

/// `size` bytes of `buffer` from `offset`, as a binding.
pub(crate) fn range(buffer: &wgpu::Buffer, offset: u64, size: u64) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset,
        size: Some(wgpu::BufferSize::new(size.max(4)).expect("non-zero")),
    })
}

/// A 16-byte storage buffer bound where a kernel's optional input is absent
/// (a bind group must fill every binding of its layout).
pub(crate) fn placeholder(ctx: &GpuContext, label: &str) -> wgpu::Buffer {
    ctx.empty_storage_buffer(label, 16)
}

/// Consecutive row ranges `(first, count)` of a matrix whose row `r` takes
/// `bytes_per_row[i]` bytes in its `i`-th buffer, such that every range's
/// binding in every buffer is at most `max_binding` bytes and starts at a
/// multiple of `alignment` bytes.
pub(crate) fn split_rows(
    what: &str,
    rows: u64,
    bytes_per_row: &[u64],
    max_binding: u64,
    alignment: u64,
) -> Result<Vec<(u64, u64)>, KernelError> {
    // Rows per part must be a multiple of this for every buffer's offsets to align.
    let row_multiple = bytes_per_row
        .iter()
        .filter(|&&b| b > 0)
        .fold(1, |m, &b| lcm(m, alignment / gcd(alignment, b)));
    let widest = bytes_per_row.iter().copied().max().unwrap_or(0).max(1);
    let per_part = (max_binding / widest) / row_multiple * row_multiple;
    if per_part == 0 {
        return Err(KernelError::InvalidArguments(format!(
            "{what}: a row of {widest} bytes cannot be split into aligned bindings of at most {max_binding} bytes"
        )));
    }
    Ok((0..rows)
        .step_by(per_part as usize)
        .map(|first| (first, per_part.min(rows - first)))
        .collect())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b) * b
}

/// Fails unless `buffer` holds at least `bytes` bytes and, bound whole, fits
/// in one storage binding.
pub(crate) fn check_buffer(
    what: &str,
    buffer: &wgpu::Buffer,
    bytes: u64,
    max_binding: u64,
) -> Result<(), KernelError> {
    crate::context::require_size(what, buffer, bytes)?;
    if buffer.size() > max_binding {
        return Err(KernelError::InvalidArguments(format!(
            "{what}: {} bytes exceed one storage binding ({max_binding} bytes)",
            buffer.size()
        )));
    }
    Ok(())
}

/// Fails if the written buffer is also bound as an input: WebGPU (Dawn) rejects
/// a writable binding that aliases another binding of the same dispatch.
pub(crate) fn check_distinct(
    what: &str,
    written: &wgpu::Buffer,
    inputs: &[Option<&wgpu::Buffer>],
) -> Result<(), KernelError> {
    if inputs.iter().flatten().any(|input| *input == written) {
        return Err(KernelError::InvalidArguments(format!(
            "{what}: the output buffer is also bound as an input (use the in-place form instead)"
        )));
    }
    Ok(())
}

/// Fails unless `value` is positive and fits the shaders' u32 index math.
pub(crate) fn check_dimension(what: &str, value: u64) -> Result<u32, KernelError> {
    if value == 0 || value > u32::MAX as u64 / 4 {
        return Err(KernelError::InvalidArguments(format!("{what} = {value} is out of range")));
    }
    Ok(value as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_cover_every_workgroup_within_the_limit() {
        for (count, max) in [
            (0, 65535),
            (1, 65535),
            (65535, 65535),
            (65536, 65535),
            (200_000, 65535),
            (7, 3),
            (9, 3),
        ] {
            let (x, y) = grid(count, max);
            assert!(x <= max && y <= max, "{count}/{max}: ({x}, {y})");
            assert!(x * y >= count && x * y < count + x.max(1), "{count}/{max}: ({x}, {y})");
        }
    }

    #[test]
    fn row_parts_fit_and_stay_aligned() {
        // The 151936 × 2048 q4f16_1 lm_head of Qwen2.5-3B: 1024 bytes of codes and
        // 128 of scales per row, 148 MiB of codes in all.
        let parts = split_rows("lm_head", 151_936, &[1024, 128], DEFAULT_MAX_BINDING, 256).unwrap();
        assert_eq!(parts, vec![(0, 131_072), (131_072, 20_864)]);
        // Down-projection rows (K = 4864): 2432 + 304 bytes; parts must be multiples of 16 rows.
        for (first, count) in split_rows("down", 1000, &[2432, 304], 100_000, 256).unwrap() {
            assert_eq!(first * 2432 % 256, 0);
            assert_eq!(first * 304 % 256, 0);
            assert!(count * 2432 <= 100_000);
        }
        assert_eq!(split_rows("tiny", 10, &[64, 0], 1 << 20, 256).unwrap(), vec![(0, 10)]);
        assert!(split_rows("huge row", 10, &[4096], 2048, 256).is_err());
    }
}
