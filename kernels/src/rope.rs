//! Fused rotary position embedding + KV-cache append (`shaders/rope_append.wgsl`).
//!
//! From the fused QKV projection `[tokens, (heads + 2·kv_heads)·head_dim]`
//! (`[q | k | v]` per token), optionally RMS-normalises every q and k head
//! (Qwen3's `q_norm`/`k_norm`), rotates q and k (rotate-half / NeoX) for their
//! absolute positions, writes the rotated queries to `[tokens, heads·head_dim]`
//! and the rotated keys and raw values into the layer's KV cache
//! (`[sequences, kv_heads, capacity, head_dim]` each: every sequence's
//! `[kv_heads, capacity, head_dim]` block of [`crate::cpu::KvLayout`] side by
//! side; the step names the sequence).

use bytemuck::{Pod, Zeroable};

use crate::buffers::{FloatFormat, check_distinct};
use crate::context::{Binding, KernelLayout, require_size};
use crate::cpu::{KvLayout, Rope};
use crate::kernel::{Bound, Kernel, Part, Schedule, Step, Workgroups};
use crate::{GpuContext, KernelError};

const SHADER: &str = include_str!("shaders/rope_append.wgsl");
/// RoPE's rotate-half formula, shared with the attention kernel's decode append.
pub(crate) const ROTATION: &str = include_str!("shaders/rope_rotation.wgsl");
const MAX_HEAD_DIM: usize = 256;
const MAX_WORKGROUPS: usize = 65_535;

/// The `(cos, sin)` of every rotated dimension at every cache position,
/// `[capacity, rotary_dim]` (the two elements of a pair have their own angle for
/// MLC's YaRN, [`Rope::yarn`]), computed on the CPU by [`Rope::cos_sin`] so the
/// GPU rotates by exactly the angles of the reference. One table serves all layers.
pub struct RopeTable {
    /// The table, `vec2<f32>` per (position, rotated dimension).
    pub buffer: wgpu::Buffer,
    /// Dimensions rotated at the start of each head.
    pub rotary_dim: usize,
    /// Positions covered.
    pub capacity: usize,
}

impl RopeTable {
    /// Uploads the table of `rope` for positions `0..capacity`.
    pub fn new(ctx: &GpuContext, rope: &Rope, capacity: usize) -> Result<RopeTable, KernelError> {
        if rope.rotary_dim == 0
            || !rope.rotary_dim.is_multiple_of(2)
            || rope.inv_freq.len() != rope.rotary_dim
        {
            return Err(KernelError::InvalidArguments(format!(
                "rope table: rotary_dim {} must be even and match {} frequencies",
                rope.rotary_dim,
                rope.inv_freq.len()
            )));
        }
        let mut table = Vec::with_capacity(capacity * rope.rotary_dim * 2);
        for position in 0..capacity {
            for (cos, sin) in rope.cos_sin(position) {
                table.extend([cos, sin]);
            }
        }
        Ok(RopeTable {
            buffer: ctx.storage_buffer("rope cos/sin", bytemuck::cast_slice(&table)),
            rotary_dim: rope.rotary_dim,
            capacity,
        })
    }
}

/// Qwen3's per-head RMSNorm of q and k before the rotation (weights shared by all heads).
#[derive(Clone, Copy)]
pub enum QkNorm<'a> {
    /// No q/k norm (Llama, Qwen2, ...).
    None,
    /// `head_dim` f32 weights each.
    F32 {
        /// `q_norm.weight`.
        q: &'a wgpu::Buffer,
        /// `k_norm.weight`.
        k: &'a wgpu::Buffer,
        /// `rms_norm_eps`.
        eps: f32,
    },
    /// `head_dim` f16 weights each, two per little-endian u32 word (as stored in the artifact).
    F16 {
        /// `q_norm.weight`.
        q: &'a wgpu::Buffer,
        /// `k_norm.weight`.
        k: &'a wgpu::Buffer,
        /// `rms_norm_eps`.
        eps: f32,
    },
}

/// The static shape of one layer's attention block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RopeShape {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (divides `heads`).
    pub kv_heads: usize,
    /// Dimension of one head (≤ 256).
    pub head_dim: usize,
    /// Positions the KV cache holds per sequence.
    pub capacity: usize,
    /// Sequences the KV cache holds.
    pub sequences: usize,
}

/// The buffers one bound kernel reads and writes.
pub struct RopeBuffers<'a> {
    /// Fused projection output, `[tokens, (heads + 2·kv_heads)·head_dim]` f32.
    pub qkv: &'a wgpu::Buffer,
    /// Rotated queries, `[tokens, heads·head_dim]` f32.
    pub q_out: &'a wgpu::Buffer,
    /// This layer's keys, `[sequences, kv_heads, capacity, head_dim]` in the
    /// kernel's cache format.
    pub k_cache: &'a wgpu::Buffer,
    /// This layer's values, `[sequences, kv_heads, capacity, head_dim]` (likewise).
    pub v_cache: &'a wgpu::Buffer,
    /// The shared cos/sin table.
    pub table: &'a RopeTable,
    /// Optional q/k norm.
    pub norm: QkNorm<'a>,
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
    capacity: u32,
    norm: u32,
    eps: f32,
    _pad: [u32; 2],
}

/// The compiled RoPE + KV-append pipeline; build once per device.
pub struct RopeAppend {
    layout: KernelLayout,
    pipeline: wgpu::ComputePipeline,
    /// How the cache stores keys and values.
    kv: FloatFormat,
}

impl RopeAppend {
    /// Compiles the kernel for a cache that stores `kv` (one portable f32
    /// path: the op is memory-bound and its only reduction is over one head).
    pub fn new(ctx: &GpuContext, kv: FloatFormat) -> Result<RopeAppend, KernelError> {
        use Binding::*;
        let layout = ctx.kernel_layout(
            "rope_append",
            &[Uniform, ReadOnly, ReadOnly, ReadOnly, ReadOnly, ReadWrite, ReadWrite, ReadWrite],
        );
        let pipeline = ctx
            .compile_entries(
                "rope_append",
                &format!("{}{ROTATION}\n{SHADER}", kv.kv_cache_wgsl(false)),
                &["rope_append"],
                &layout,
            )?
            .remove(0);
        Ok(RopeAppend { layout, pipeline, kv })
    }
}

impl Kernel for RopeAppend {
    type Buffers<'a> = RopeBuffers<'a>;
    type Shape = RopeShape;
    type Bound = Bound;

    /// Checks the buffers against `shape` and creates the bind group and the
    /// parameter block for one layer. The largest step it accepts is as many
    /// tokens as `qkv` and `q_out` hold.
    fn bind(
        &self,
        ctx: &GpuContext,
        buffers: &RopeBuffers<'_>,
        shape: &RopeShape,
    ) -> Result<Bound, KernelError> {
        let RopeShape { heads, kv_heads, head_dim, capacity, sequences } = *shape;
        let bad = |why: String| Err(KernelError::InvalidArguments(format!("rope_append: {why}")));
        let placeholder = ctx.empty_storage_buffer("rope_append no norm", 4);
        let (norm, eps, q_norm, k_norm) = check_rope_operands(
            "rope_append",
            shape,
            buffers.table,
            ([buffers.k_cache, buffers.v_cache], self.kv),
            buffers.norm,
            &placeholder,
        )?;
        if heads + kv_heads > MAX_WORKGROUPS {
            return bad(format!("{} head slots exceed one dispatch", heads + kv_heads));
        }
        let qkv_row = ((heads + 2 * kv_heads) * head_dim * 4) as u64;
        let q_row = (heads * head_dim * 4) as u64;
        let max_tokens = (buffers.qkv.size() / qkv_row).min(buffers.q_out.size() / q_row) as usize;
        if max_tokens == 0 {
            return bad("qkv or q_out cannot hold one token".into());
        }
        let rotary_dim = buffers.table.rotary_dim;

        let inputs = [Some(buffers.qkv), Some(&buffers.table.buffer), Some(q_norm), Some(k_norm)];
        check_distinct(
            "rope_append q_out",
            buffers.q_out,
            &[&inputs[..], &[Some(buffers.k_cache), Some(buffers.v_cache)]].concat(),
        )?;
        check_distinct(
            "rope_append k_cache",
            buffers.k_cache,
            &[&inputs[..], &[Some(buffers.v_cache)]].concat(),
        )?;
        check_distinct("rope_append v_cache", buffers.v_cache, &inputs)?;

        let params = Params {
            tokens: 0,
            start: 0,
            sequence: 0,
            heads: heads as u32,
            kv_heads: kv_heads as u32,
            head_dim: head_dim as u32,
            rotary_dim: rotary_dim as u32,
            capacity: capacity as u32,
            norm,
            eps,
            _pad: [0; 2],
        };
        let params_buffer = ctx.uniform_buffer("rope_append params", &params);
        let bind_group = ctx.bind_buffers(
            "rope_append",
            &self.layout,
            &[
                &params_buffer,
                buffers.qkv,
                &buffers.table.buffer,
                q_norm,
                k_norm,
                buffers.q_out,
                buffers.k_cache,
                buffers.v_cache,
            ],
        );
        let schedule = RopeSchedule {
            pipeline: self.pipeline.clone(),
            head_slots: (heads + kv_heads) as u32,
            capacity: capacity as u32,
            sequences: sequences as u32,
            max_tokens: max_tokens.min(MAX_WORKGROUPS) as u32,
        };
        let part = Part { bind_group, params: params_buffer, extent: 0 };
        Ok(Bound::new(ctx, "rope_append", vec![part], schedule))
    }
}

/// The checks of one layer's operands: the head counts and size (a multiple
/// of 4), the table against the shape, the caches' sizes (in format `kv`) and
/// the q/k norm weights'. Returns the norm's mode for the shaders (0 none, 1 f32, 2
/// f16), its epsilon and its q and k weights (`placeholder` where there are
/// none).
pub(crate) fn check_rope_operands<'a>(
    what: &str,
    shape: &RopeShape,
    table: &RopeTable,
    ([k_cache, v_cache], kv): ([&wgpu::Buffer; 2], FloatFormat),
    norm: QkNorm<'a>,
    placeholder: &'a wgpu::Buffer,
) -> Result<(u32, f32, &'a wgpu::Buffer, &'a wgpu::Buffer), KernelError> {
    let RopeShape { heads, kv_heads, head_dim, capacity, sequences } = *shape;
    let bad = |why: String| Err(KernelError::InvalidArguments(format!("{what}: {why}")));
    if sequences == 0 {
        return bad("the cache holds no sequence".into());
    }
    if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
        return bad(format!("{heads} heads cannot share {kv_heads} kv heads"));
    }
    // The cache is written four values at a time (an f16 cache packs them in two words).
    if head_dim == 0 || head_dim > MAX_HEAD_DIM || !head_dim.is_multiple_of(4) {
        return bad(format!("head_dim {head_dim} must be a multiple of 4 in 4..={MAX_HEAD_DIM}"));
    }
    if table.rotary_dim > head_dim {
        return bad(format!("rotary_dim {} exceeds head_dim {head_dim}", table.rotary_dim));
    }
    if table.capacity < capacity {
        return bad(format!(
            "the rope table covers {} positions, the cache {capacity}",
            table.capacity
        ));
    }
    let cache_bytes = kv.kv_cache_bytes(sequences, KvLayout { kv_heads, capacity, head_dim });
    require_size(&format!("{what} k_cache"), k_cache, cache_bytes)?;
    require_size(&format!("{what} v_cache"), v_cache, cache_bytes)?;
    let (mode, eps, q, k) = match norm {
        QkNorm::None => return Ok((0, 0.0, placeholder, placeholder)),
        QkNorm::F32 { q, k, eps } => (1, eps, q, k),
        QkNorm::F16 { q, k, eps } => (2, eps, q, k),
    };
    let bytes = if mode == 1 { head_dim * 4 } else { head_dim * 2 } as u64;
    require_size(&format!("{what} q_norm"), q, bytes)?;
    require_size(&format!("{what} k_norm"), k, bytes)?;
    Ok((mode, eps, q, k))
}

/// A step of [`RopeAppend`]: one workgroup per head slot (q heads, then k
/// heads) and token; the step sets the token count, the first position and
/// the sequence.
struct RopeSchedule {
    pipeline: wgpu::ComputePipeline,
    head_slots: u32,
    capacity: u32,
    sequences: u32,
    max_tokens: u32,
}

impl Schedule for RopeSchedule {
    fn uses_position(&self) -> bool {
        true
    }

    fn params(&self, step: Step, words: &mut Vec<u32>) -> Result<(), KernelError> {
        let Step { tokens, start, sequence } = step;
        if tokens == 0 || tokens > self.max_tokens {
            return Err(KernelError::InvalidArguments(format!(
                "rope_append: {tokens} tokens, the buffers hold 1..={}",
                self.max_tokens
            )));
        }
        if start as u64 + tokens as u64 > self.capacity as u64 {
            return Err(KernelError::InvalidArguments(format!(
                "rope_append: positions {start}..{} exceed the cache capacity {}",
                start as u64 + tokens as u64,
                self.capacity
            )));
        }
        if sequence >= self.sequences {
            return Err(KernelError::InvalidArguments(format!(
                "rope_append: sequence {sequence}, the cache holds {}",
                self.sequences
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
        dispatch(&self.pipeline, Workgroups::Grid(self.head_slots, step.tokens));
    }
}
