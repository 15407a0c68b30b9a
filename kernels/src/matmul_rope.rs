//! The decode qkv product with the attention epilogue
//! (`shaders/matmul_rope*.wgsl`): `rms_norm(x) · Wᵀ (+ bias)` for one token,
//! with the per-head q/k norm, the rotation and the KV-cache append of
//! [`crate::RopeAppend`] applied to each head before it leaves the workgroup.
//!
//! One workgroup computes the `head_dim` rows of one head slot of the fused
//! `[q heads | k heads | v heads]` weight, so a decode step writes the rotated
//! query heads and appends the key and value heads without the qkv activations
//! ever reaching memory, and without the rope dispatch (a decode step is bound
//! by its dispatch count: see docs/performance.md). Prefill keeps the separate
//! product and [`crate::RopeAppend`].

use bytemuck::{Pod, Zeroable};

use crate::buffers::{self, check_buffer, check_distinct, params_buffer, placeholder};
use crate::context::{Binding, ENABLE_SUBGROUPS, KernelLayout};
use crate::elementwise::ACTIVATION_WGSL;
use crate::kernel::{Bound, Kernel, Part, Schedule, Step, Workgroups};
use crate::matmul::{GpuWeight, NARROW_ROWS_PER_THREAD, NORMED_INPUT, TEAM, WeightFormat};
use crate::rope::{QkNorm, ROPE_MATH_WGSL, RopeShape, RopeTable, check_rope_operands};
use crate::{GpuContext, KernelError};

const MATMUL_WGSL: &str = include_str!("shaders/matmul.wgsl");
const SUBGROUP_WGSL: &str = include_str!("shaders/matmul_subgroup.wgsl");
const ROPE_WGSL: &str = include_str!("shaders/matmul_rope.wgsl");
const ROPE_SUBGROUP_WGSL: &str = include_str!("shaders/matmul_rope_subgroup.wgsl");
const MAX_HEAD_DIM: usize = 256;

/// The kernel's bindings, by number: matmul.wgsl's params, weight, scales, x,
/// bias and norm weight, then matmul_rope.wgsl's (the product's y, residual
/// and partial sums, bindings 5, 6 and 8, are not used).
const BINDINGS: [(u32, Binding); 13] = [
    (0, Binding::Uniform),
    (1, Binding::ReadOnly),
    (2, Binding::ReadOnly),
    (3, Binding::ReadOnly),
    (4, Binding::ReadOnly),
    (7, Binding::ReadOnly),
    (9, Binding::Uniform),
    (10, Binding::ReadOnly),
    (11, Binding::ReadOnly),
    (12, Binding::ReadOnly),
    (13, Binding::ReadWrite),
    (14, Binding::ReadWrite),
    (15, Binding::ReadWrite),
];

/// Storage buffers the kernel binds (WebGPU guarantees 8 per stage; native
/// adapters offer many more, and [`QkvRope::available`] says whether this
/// one does).
const STORAGE_BINDINGS: u32 = {
    let mut count = 0;
    let mut i = 0;
    while i < BINDINGS.len() {
        if !matches!(BINDINGS[i].1, Binding::Uniform) {
            count += 1;
        }
        i += 1;
    }
    count
};

/// The buffers of one layer's fused decode product.
pub struct QkvRopeBuffers<'a> {
    /// The residual stream, f32 `[1, K]` (normalised inside the kernel).
    pub x: &'a wgpu::Buffer,
    /// The RMSNorm weight `[K]` before the product, in the format's dtype.
    pub norm_weight: &'a wgpu::Buffer,
    /// That norm's epsilon.
    pub norm_eps: f32,
    /// The fused qkv weight `[(heads + 2·kv_heads)·head_dim, K]`.
    pub weight: GpuWeight<'a>,
    /// Optional bias `[(heads + 2·kv_heads)·head_dim]` in the format's dtype.
    pub bias: Option<&'a wgpu::Buffer>,
    /// Rotated queries, f32 `[1, heads·head_dim]`.
    pub q_out: &'a wgpu::Buffer,
    /// This layer's keys, `[kv_heads, capacity, head_dim]` f32.
    pub k_cache: &'a wgpu::Buffer,
    /// This layer's values, `[kv_heads, capacity, head_dim]` f32.
    pub v_cache: &'a wgpu::Buffer,
    /// The shared cos/sin table.
    pub table: &'a RopeTable,
    /// Optional per-head q/k norm (as [`crate::RopeAppend`]).
    pub qk_norm: QkNorm<'a>,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RopeParams {
    position: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    rotary_dim: u32,
    capacity: u32,
    norm: u32,
    eps: f32,
}

/// The compiled kernel for one weight format; build once per device, where
/// [`QkvRope::available`].
pub struct QkvRope {
    format: WeightFormat,
    layout: KernelLayout,
    pipeline: wgpu::ComputePipeline,
    placeholder: wgpu::Buffer,
    max_binding: u64,
}

impl QkvRope {
    /// Whether the device binds as many storage buffers as the kernel needs
    /// (else the qkv product and [`crate::RopeAppend`] run apart).
    pub fn available(ctx: &GpuContext) -> bool {
        ctx.limits.max_storage_buffers_per_shader_stage >= STORAGE_BINDINGS
    }

    /// Compiles the kernel for `format`: subgroup-reduced where the device has
    /// subgroups, else reduced in workgroup memory.
    pub fn new(ctx: &GpuContext, format: WeightFormat) -> Result<QkvRope, KernelError> {
        if !Self::available(ctx) {
            return Err(KernelError::InvalidArguments(format!(
                "qkv_rope: needs {STORAGE_BINDINGS} storage buffers per shader stage, the device binds {}",
                ctx.limits.max_storage_buffers_per_shader_stage
            )));
        }
        let layout = ctx.kernel_layout_at("qkv_rope", &BINDINGS);

        let (weights, format_constants) = format.shader_prefix();
        let prefix =
            format!("{ACTIVATION_WGSL}\n{weights}{MATMUL_WGSL}\n{ROPE_WGSL}\n{ROPE_MATH_WGSL}");
        let (source, entry) = match ctx.caps.subgroups {
            true => (
                format!("{ENABLE_SUBGROUPS}{prefix}\n{SUBGROUP_WGSL}\n{ROPE_SUBGROUP_WGSL}"),
                "matvec_rope_subgroup",
            ),
            false => (prefix, "matvec_rope"),
        };
        let mut constants = format_constants.to_vec();
        constants.push(("ROWS_PER_THREAD", NARROW_ROWS_PER_THREAD as f64));
        constants.push(("INPUT", NORMED_INPUT as f64));
        constants.push(("TEAM", TEAM as f64));
        let pipeline =
            ctx.compile_specialized("qkv_rope", &source, &[entry], &layout, &constants)?.remove(0);
        Ok(QkvRope {
            format,
            layout,
            pipeline,
            placeholder: placeholder(ctx, "qkv_rope placeholder"),
            max_binding: buffers::max_binding(ctx),
        })
    }

    /// Whether one layer of `shape` with this qkv weight can run fused: a head
    /// of at most 256 values and a weight that fits one binding.
    pub fn supports(&self, weight: &GpuWeight<'_>, shape: &RopeShape) -> bool {
        shape.head_dim <= MAX_HEAD_DIM
            && weight.format.data_bytes(weight.rows as u64, weight.cols as u64) <= self.max_binding
            && weight.format.scale_bytes(weight.rows as u64, weight.cols as u64) <= self.max_binding
    }
}

impl Kernel for QkvRope {
    type Buffers<'a> = QkvRopeBuffers<'a>;
    type Shape = RopeShape;
    type Bound = Bound;

    /// Checks the buffers against `shape` and creates the bind group and the
    /// parameter uniforms of one layer's decode product.
    fn bind(
        &self,
        ctx: &GpuContext,
        buffers: &QkvRopeBuffers<'_>,
        shape: &RopeShape,
    ) -> Result<Bound, KernelError> {
        let RopeShape { heads, kv_heads, head_dim, capacity } = *shape;
        let bad = |why: String| Err(KernelError::InvalidArguments(format!("qkv_rope: {why}")));
        let (norm, eps, q_norm, k_norm) = check_rope_operands(
            "qkv_rope",
            shape,
            buffers.table,
            [buffers.k_cache, buffers.v_cache],
            buffers.qk_norm,
            &self.placeholder,
        )?;
        let weight = &buffers.weight;
        let slots = heads + 2 * kv_heads;
        if weight.rows as usize != slots * head_dim {
            return bad(format!(
                "a weight of {} rows, but {slots} head slots of {head_dim} need {}",
                weight.rows,
                slots * head_dim
            ));
        }
        let parts = weight.plan("qkv_rope", self.format, self.max_binding)?;
        if parts.len() != 1 {
            return bad("the weight does not fit one binding".into());
        }
        let rotary_dim = buffers.table.rotary_dim;
        let (n, k) = (weight.rows as u64, weight.cols as u64);
        let dtype = self.format.dtype();
        check_buffer("qkv_rope: x", buffers.x, k * 4, self.max_binding)?;
        check_buffer(
            "qkv_rope: norm weight",
            buffers.norm_weight,
            dtype.bytes(k),
            self.max_binding,
        )?;
        if let Some(bias) = buffers.bias {
            check_buffer("qkv_rope: bias", bias, dtype.bytes(n), self.max_binding)?;
        }
        check_buffer(
            "qkv_rope: q_out",
            buffers.q_out,
            (heads * head_dim * 4) as u64,
            self.max_binding,
        )?;
        let inputs = [
            Some(buffers.x),
            Some(weight.data),
            weight.scales,
            buffers.bias,
            Some(buffers.norm_weight),
            Some(&buffers.table.buffer),
            Some(q_norm),
            Some(k_norm),
        ];
        let (q_out, k_cache, v_cache) = (buffers.q_out, buffers.k_cache, buffers.v_cache);
        check_distinct(
            "qkv_rope q_out",
            q_out,
            &[&inputs[..], &[Some(k_cache), Some(v_cache)]].concat(),
        )?;
        check_distinct("qkv_rope k_cache", k_cache, &[&inputs[..], &[Some(v_cache)]].concat())?;
        check_distinct("qkv_rope v_cache", v_cache, &inputs)?;

        // matmul.wgsl's Params: one row, all of W, the bias flag and the norm's eps.
        let product = params_buffer(
            ctx,
            "qkv_rope product params",
            &[
                1,
                n as u32,
                k as u32,
                0,
                n as u32,
                buffers.bias.is_some() as u32,
                buffers.norm_eps.to_bits(),
            ],
        );
        let rope = ctx.uniform_buffer(
            "qkv_rope params",
            &RopeParams {
                position: 0,
                heads: heads as u32,
                kv_heads: kv_heads as u32,
                head_dim: head_dim as u32,
                rotary_dim: rotary_dim as u32,
                capacity: capacity as u32,
                norm,
                eps,
            },
        );
        let [data, scales] = weight.resources(0, n, &self.placeholder);
        let resources = [
            product.as_entire_binding(),
            data,
            scales,
            buffers.x.as_entire_binding(),
            buffers.bias.unwrap_or(&self.placeholder).as_entire_binding(),
            buffers.norm_weight.as_entire_binding(),
            rope.as_entire_binding(),
            buffers.table.buffer.as_entire_binding(),
            q_norm.as_entire_binding(),
            k_norm.as_entire_binding(),
            q_out.as_entire_binding(),
            k_cache.as_entire_binding(),
            v_cache.as_entire_binding(),
        ];
        let entries: Vec<wgpu::BindGroupEntry> = BINDINGS
            .iter()
            .map(|&(binding, _)| binding)
            .zip(resources)
            .map(|(binding, resource)| wgpu::BindGroupEntry { binding, resource })
            .collect();
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("qkv_rope"),
            layout: &self.layout.bind_group_layout,
            entries: &entries,
        });
        let schedule = QkvRopeSchedule {
            pipeline: self.pipeline.clone(),
            slots: slots as u32,
            capacity: capacity as u32,
        };
        let part = Part { bind_group, params: rope, extent: n as u32 };
        Ok(Bound::new(ctx, "qkv_rope", vec![part], schedule))
    }
}

/// A step of [`QkvRope`]: one token, one workgroup per head slot; the step
/// sets the position.
struct QkvRopeSchedule {
    pipeline: wgpu::ComputePipeline,
    slots: u32,
    capacity: u32,
}

impl Schedule for QkvRopeSchedule {
    fn uses_position(&self) -> bool {
        true
    }

    fn params(&self, step: Step, words: &mut Vec<u32>) -> Result<(), KernelError> {
        let Step { tokens, start } = step;
        if tokens != 1 {
            return Err(KernelError::InvalidArguments(format!(
                "qkv_rope: {tokens} tokens; the fused product is for one (decode)"
            )));
        }
        if start >= self.capacity {
            return Err(KernelError::InvalidArguments(format!(
                "qkv_rope: position {start} exceeds the cache capacity {}",
                self.capacity
            )));
        }
        words.push(start);
        Ok(())
    }

    fn dispatches(
        &self,
        _: Step,
        _: u32,
        dispatch: &mut dyn FnMut(&wgpu::ComputePipeline, Workgroups),
    ) {
        dispatch(&self.pipeline, Workgroups::Linear(self.slots));
    }
}
