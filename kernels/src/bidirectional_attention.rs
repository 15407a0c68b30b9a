//! An encoder's attention (`shaders/bidirectional_attention.wgsl`): every
//! position attends to every position of its input, read straight from the
//! fused `[q | k | v]` projection rows; [`cpu::bidirectional_attention`] is the
//! reference. The decoders' [`crate::Attention`] reads a KV cache and masks
//! the future, which an encoder has neither of.
//!
//! [`cpu::bidirectional_attention`]: crate::cpu::bidirectional_attention

use crate::buffers::{
    self, bind_group, check_buffer, check_dimension, check_distinct, params_buffer,
};
use crate::context::{Binding, KernelLayout};
use crate::kernel::{Bound, Kernel, Part, PerRow};
use crate::{GpuContext, KernelError};

const BIDIRECTIONAL_ATTENTION_WGSL: &str = include_str!("shaders/bidirectional_attention.wgsl");

/// The largest head the kernel holds (4 output dimensions per invocation of 64).
pub const MAX_ENCODER_HEAD_DIM: u32 = 256;

/// The compiled bidirectional attention.
pub struct BidirectionalAttention {
    layout: KernelLayout,
    pipeline: wgpu::ComputePipeline,
    max_binding: u64,
}

impl BidirectionalAttention {
    /// Compiles the kernel: one portable path (no optional feature).
    pub fn new(ctx: &GpuContext) -> Result<BidirectionalAttention, KernelError> {
        use Binding::{ReadOnly, ReadWrite, Uniform};
        // params, out, qkv (the order of bidirectional_attention.wgsl).
        let layout = ctx.kernel_layout("bidirectional attention", &[Uniform, ReadWrite, ReadOnly]);
        let pipeline = ctx
            .compile_entries(
                "bidirectional attention",
                BIDIRECTIONAL_ATTENTION_WGSL,
                &["attend"],
                &layout,
            )?
            .remove(0);
        Ok(BidirectionalAttention { layout, pipeline, max_binding: buffers::max_binding(ctx) })
    }
}

/// What stays fixed for one binding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BidirectionalAttentionShape {
    /// Most tokens of a step (one input).
    pub max_tokens: u32,
    /// Attention heads.
    pub heads: u32,
    /// Dimension of one head, at most [`MAX_ENCODER_HEAD_DIM`].
    pub head_dim: u32,
    /// The softmax scale (`head_dim^-0.5` for BERT).
    pub scale: f32,
}

/// The buffers of one binding (f32 activations).
#[derive(Debug, Clone, Copy)]
pub struct BidirectionalAttentionBuffers<'a> {
    /// The fused projection output `[tokens, 3 · heads · head_dim]`, `[q | k | v]` per token.
    pub qkv: &'a wgpu::Buffer,
    /// The attention output `[tokens, heads · head_dim]`, not `qkv`.
    pub out: &'a wgpu::Buffer,
}

impl Kernel for BidirectionalAttention {
    type Buffers<'a> = BidirectionalAttentionBuffers<'a>;
    type Shape = BidirectionalAttentionShape;
    type Bound = Bound;

    fn bind(
        &self,
        ctx: &GpuContext,
        buffers: &BidirectionalAttentionBuffers<'_>,
        shape: &BidirectionalAttentionShape,
    ) -> Result<Bound, KernelError> {
        const WHAT: &str = "bidirectional attention";
        let BidirectionalAttentionShape { max_tokens, heads, head_dim, scale } = *shape;
        let BidirectionalAttentionBuffers { qkv, out } = *buffers;
        if head_dim > MAX_ENCODER_HEAD_DIM {
            return Err(KernelError::InvalidArguments(format!(
                "{WHAT}: head_dim {head_dim} exceeds {MAX_ENCODER_HEAD_DIM}"
            )));
        }
        if !scale.is_finite() {
            return Err(KernelError::InvalidArguments(format!("{WHAT}: scale {scale}")));
        }
        let tokens = check_dimension(&format!("{WHAT}: max_tokens"), max_tokens as u64)? as u64;
        let width = check_dimension(&format!("{WHAT}: width"), heads as u64 * head_dim as u64)?;
        let values = check_dimension(&format!("{WHAT}: size"), tokens * 3 * width as u64)? as u64;
        check_buffer(&format!("{WHAT}: qkv"), qkv, values * 4, self.max_binding)?;
        check_buffer(&format!("{WHAT}: output"), out, values / 3 * 4, self.max_binding)?;
        check_distinct(WHAT, out, &[Some(qkv)])?;
        let params = params_buffer(ctx, WHAT, &[max_tokens, heads, head_dim, scale.to_bits()]);
        let group = bind_group(
            ctx,
            WHAT,
            &self.layout,
            &[params.as_entire_binding(), out.as_entire_binding(), qkv.as_entire_binding()],
        );
        let schedule = PerRow {
            label: WHAT,
            pipeline: self.pipeline.clone(),
            max_rows: max_tokens,
            workgroups: move |tokens: u32, _: u32| tokens * heads,
        };
        let part = Part { bind_group: group, params, extent: 0 };
        Ok(Bound::new(ctx, WHAT, vec![part], schedule))
    }
}
