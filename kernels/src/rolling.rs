//! MLC's rolling KV cache (`shaders/rolling.wgsl`; docs/families.md,
//! "mistral"): before a pass's rotation, append and attention, `gather` puts
//! the tokens a layer's ring holds, each key rotated at its place, at the
//! start of the layer's attention cache, and `keep` then writes the pass's
//! unrotated keys and values into the ring. The CPU reference is
//! [`crate::cpu::gather_rolling`] with [`RollingWindow::slot`].

use bytemuck::{Pod, Zeroable};

use crate::buffers::{FloatFormat, check_distinct};
use crate::context::{Binding, KernelLayout, require_size};
use crate::cpu::{KvLayout, RollingWindow};
use crate::kernel::{Bound, Kernel, Part, Schedule, Step, Workgroups};
use crate::rope::{ROTATION, RopeTable};
use crate::{GpuContext, KernelError};

const SHADER: &str = include_str!("shaders/rolling.wgsl");
const MAX_WORKGROUPS: usize = 65_535;

/// The static shape of one layer's rolling cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollingShape {
    /// Query heads (the row layout of the fused projection).
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Dimension of one head.
    pub head_dim: usize,
    /// The window: the ring holds `window.size` tokens per sequence.
    pub window: RollingWindow,
    /// Places of the attention cache per sequence (at least the window).
    pub capacity: usize,
    /// Sequences both caches hold.
    pub sequences: usize,
}

/// The buffers one bound kernel reads and writes.
pub struct RollingBuffers<'a> {
    /// Fused projection output, `[tokens, (heads + 2·kv_heads)·head_dim]` f32.
    pub qkv: &'a wgpu::Buffer,
    /// The shared cos/sin table (places `0..window.size` at least).
    pub table: &'a RopeTable,
    /// The ring's unrotated keys, `[sequences, kv_heads, window.size, head_dim]`
    /// f32 (whatever the attention cache stores: the ring is small).
    pub ring_k: &'a wgpu::Buffer,
    /// The ring's values, the same layout.
    pub ring_v: &'a wgpu::Buffer,
    /// The attention cache's keys, `[sequences, kv_heads, capacity, head_dim]`
    /// in the kernel's cache format.
    pub k_cache: &'a wgpu::Buffer,
    /// The attention cache's values, the same layout.
    pub v_cache: &'a wgpu::Buffer,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    tokens: u32,
    start: u32,
    sequence: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    rotary_dim: u32,
    size: u32,
    sink: u32,
    capacity: u32,
    _pad: [u32; 2],
}

/// The compiled gather and keep pipelines; build once per device.
pub struct RollingCache {
    layout: KernelLayout,
    gather: wgpu::ComputePipeline,
    keep: wgpu::ComputePipeline,
    /// How the attention cache stores keys and values.
    kv: FloatFormat,
}

impl RollingCache {
    /// Compiles the kernel for an attention cache that stores `kv` (copies and
    /// one rotation per element: portable f32).
    pub fn new(ctx: &GpuContext, kv: FloatFormat) -> Result<RollingCache, KernelError> {
        use Binding::*;
        let layout = ctx.kernel_layout(
            "rolling",
            &[Uniform, ReadOnly, ReadOnly, ReadWrite, ReadWrite, ReadWrite, ReadWrite],
        );
        let mut pipelines = ctx.compile_entries(
            "rolling",
            &format!("{}{ROTATION}\n{SHADER}", kv.kv_cache_wgsl(false)),
            &["gather", "keep"],
            &layout,
        )?;
        let keep = pipelines.remove(1);
        let gather = pipelines.remove(0);
        Ok(RollingCache { layout, gather, keep, kv })
    }
}

impl Kernel for RollingCache {
    type Buffers<'a> = RollingBuffers<'a>;
    type Shape = RollingShape;
    type Bound = Bound;

    /// Checks the buffers against `shape` and creates the bind group and the
    /// parameter block for one layer. The largest step it accepts is as many
    /// tokens as `qkv` holds.
    fn bind(
        &self,
        ctx: &GpuContext,
        buffers: &RollingBuffers<'_>,
        shape: &RollingShape,
    ) -> Result<Bound, KernelError> {
        let RollingShape { heads, kv_heads, head_dim, window, capacity, sequences } = *shape;
        let bad = |why: String| Err(KernelError::InvalidArguments(format!("rolling: {why}")));
        if window.sink >= window.size || capacity < window.size || window.size > MAX_WORKGROUPS {
            return bad(format!(
                "window {} with {} sinks over {capacity} places",
                window.size, window.sink
            ));
        }
        // The attention cache is written four values at a time.
        if kv_heads == 0
            || heads % kv_heads != 0
            || head_dim == 0
            || !head_dim.is_multiple_of(4)
            || sequences == 0
        {
            return bad(format!("{heads} heads, {kv_heads} kv heads of {head_dim}"));
        }
        let rotary_dim = buffers.table.rotary_dim;
        if rotary_dim > head_dim || buffers.table.capacity < window.size {
            return bad(format!(
                "the rope table ({} places of {rotary_dim}) does not cover the window",
                buffers.table.capacity
            ));
        }
        let block = (sequences * kv_heads * head_dim * 4) as u64;
        require_size("rolling ring_k", buffers.ring_k, block * window.size as u64)?;
        require_size("rolling ring_v", buffers.ring_v, block * window.size as u64)?;
        let cache = self.kv.kv_cache_bytes(sequences, KvLayout { kv_heads, capacity, head_dim });
        require_size("rolling k_cache", buffers.k_cache, cache)?;
        require_size("rolling v_cache", buffers.v_cache, cache)?;
        let qkv_row = ((heads + 2 * kv_heads) * head_dim * 4) as u64;
        let max_tokens = ((buffers.qkv.size() / qkv_row) as usize).min(MAX_WORKGROUPS);
        if max_tokens == 0 {
            return bad("qkv cannot hold one token".into());
        }
        let read = [Some(buffers.qkv), Some(&buffers.table.buffer)];
        let written = [buffers.ring_k, buffers.ring_v, buffers.k_cache, buffers.v_cache];
        for (i, buffer) in written.iter().enumerate() {
            let others: Vec<Option<&wgpu::Buffer>> = written
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, b)| Some(*b))
                .collect();
            check_distinct("rolling", buffer, &[&read[..], &others].concat())?;
        }
        let params = Params {
            tokens: 0,
            start: 0,
            sequence: 0,
            heads: heads as u32,
            kv_heads: kv_heads as u32,
            head_dim: head_dim as u32,
            rotary_dim: rotary_dim as u32,
            size: window.size as u32,
            sink: window.sink as u32,
            capacity: capacity as u32,
            _pad: [0; 2],
        };
        let params_buffer = ctx.uniform_buffer("rolling params", &params);
        let bind_group = ctx.bind_buffers(
            "rolling",
            &self.layout,
            &[
                &params_buffer,
                buffers.qkv,
                &buffers.table.buffer,
                buffers.ring_k,
                buffers.ring_v,
                buffers.k_cache,
                buffers.v_cache,
            ],
        );
        let schedule = RollingSchedule {
            gather: self.gather.clone(),
            keep: self.keep.clone(),
            kv_heads: kv_heads as u32,
            size: window.size as u32,
            sequences: sequences as u32,
            max_tokens: max_tokens as u32,
        };
        let part = Part { bind_group, params: params_buffer, extent: 0 };
        Ok(Bound::new(ctx, "rolling", vec![part], schedule))
    }
}

/// A step of [`RollingCache`]: `gather` over the held places, then `keep`
/// over the rows, one workgroup per (place or row, kv head); the step sets
/// the row count, the pass's first position (in the sequence, any size) and
/// the sequence.
struct RollingSchedule {
    gather: wgpu::ComputePipeline,
    keep: wgpu::ComputePipeline,
    kv_heads: u32,
    size: u32,
    sequences: u32,
    max_tokens: u32,
}

impl Schedule for RollingSchedule {
    fn uses_position(&self) -> bool {
        true
    }

    fn params(&self, step: Step, words: &mut Vec<u32>) -> Result<(), KernelError> {
        let Step { tokens, start, sequence } = step;
        if tokens == 0 || tokens > self.max_tokens || sequence >= self.sequences {
            return Err(KernelError::InvalidArguments(format!(
                "rolling: {tokens} tokens of sequence {sequence}; the buffers hold 1..={} tokens \
                 of {} sequences",
                self.max_tokens, self.sequences
            )));
        }
        words.extend([tokens, start, sequence]);
        Ok(())
    }

    fn dispatches(
        &self,
        step: Step,
        _: u32,
        dispatch: &mut dyn FnMut(&wgpu::ComputePipeline, Workgroups),
    ) {
        dispatch(&self.gather, Workgroups::Grid(step.start.min(self.size), self.kv_heads));
        dispatch(&self.keep, Workgroups::Grid(step.tokens, self.kv_heads));
    }
}
