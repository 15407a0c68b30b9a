//! Embedding lookup (`shaders/embed.wgsl`): `out[t, :] = table[tokens[t], :] · scale`
//! for a table in any weight format, split by rows when it exceeds one binding.

use crate::buffers::{
    self, WORKGROUP_SIZE, bind_group, check_buffer, check_dimension, check_distinct, params_buffer,
    placeholder,
};
use crate::context::{Binding, KernelLayout};
use crate::kernel::{Bound, Kernel, Part, PerRow};
use crate::matmul::{GpuWeight, WeightFormat};
use crate::{GpuContext, KernelError};

const EMBED_WGSL: &str = include_str!("shaders/embed.wgsl");

/// Values one invocation writes (one q4 word).
const VALUES_PER_INVOCATION: u32 = 8;

/// The buffers of one lookup.
#[derive(Debug, Clone, Copy)]
pub struct EmbedBuffers<'a> {
    /// The table `[vocab, hidden]`, as stored (the same buffers serve a tied lm_head).
    pub table: GpuWeight<'a>,
    /// Token ids, u32 `[tokens]`. An id ≥ vocab gives a zero row.
    pub tokens: &'a wgpu::Buffer,
    /// Output, f32 `[tokens, hidden]`.
    pub out: &'a wgpu::Buffer,
}

/// What stays fixed for one lookup binding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmbedShape {
    /// Most tokens of a step.
    pub max_tokens: u32,
    /// Factor of every row (1, or √hidden for Gemma).
    pub scale: f32,
}

/// The embedding lookup for one table format.
pub struct Embed {
    format: WeightFormat,
    layout: KernelLayout,
    pipeline: wgpu::ComputePipeline,
    placeholder: wgpu::Buffer,
    max_binding: u64,
    split_bytes: u64,
}

impl Embed {
    /// Compiles the lookup for tables in `format`.
    pub fn new(ctx: &GpuContext, format: WeightFormat) -> Result<Embed, KernelError> {
        use Binding::{ReadOnly, ReadWrite, Uniform};
        // params, table data, table scales, tokens, out (the order of embed.wgsl).
        let layout =
            ctx.kernel_layout("embed", &[Uniform, ReadOnly, ReadOnly, ReadOnly, ReadWrite]);
        // The gather is exact on every device: no f16 path (it would only add rounding).
        let (prefix, constants) = format.shader_prefix();
        let pipeline = ctx
            .compile_specialized(
                "embed",
                &format!("{prefix}{EMBED_WGSL}"),
                &["embed"],
                &layout,
                &constants,
            )?
            .remove(0);
        Ok(Embed {
            format,
            layout,
            pipeline,
            placeholder: placeholder(ctx, "embed placeholder"),
            max_binding: buffers::max_binding(ctx),
            split_bytes: buffers::max_binding(ctx),
        })
    }

    /// Lowers the binding size above which weights are split by rows (tests use
    /// a tiny value to exercise the split path on small matrices; activations
    /// stay limited by the device).
    pub fn set_weight_split_bytes(&mut self, bytes: u64) {
        self.split_bytes = bytes.min(self.max_binding).max(4);
    }
}

impl Kernel for Embed {
    type Buffers<'a> = EmbedBuffers<'a>;
    type Shape = EmbedShape;
    type Bound = Bound;

    /// Creates the bind groups of a lookup of up to `shape.max_tokens` tokens.
    fn bind(
        &self,
        ctx: &GpuContext,
        buffers: &EmbedBuffers<'_>,
        shape: &EmbedShape,
    ) -> Result<Bound, KernelError> {
        let EmbedShape { max_tokens, scale } = *shape;
        let table = &buffers.table;
        let parts = table.plan("embed", self.format, self.split_bytes)?;
        let (vocab, hidden) = (table.rows, table.cols);
        let t = check_dimension("embed: max_tokens", max_tokens as u64)? as u64;
        check_dimension("embed: output size", t * hidden as u64)?;
        check_buffer("embed: tokens", buffers.tokens, t * 4, self.max_binding)?;
        check_buffer("embed: out", buffers.out, t * hidden as u64 * 4, self.max_binding)?;
        check_distinct(
            "embed",
            buffers.out,
            &[Some(buffers.tokens), Some(table.data), table.scales],
        )?;
        let bound_parts = parts
            .into_iter()
            .map(|(first, count)| {
                let params = params_buffer(
                    ctx,
                    "embed params",
                    &[max_tokens, hidden, first as u32, count as u32, vocab, scale.to_bits()],
                );
                let [data, scales] = table.resources(first, count, &self.placeholder);
                let group = bind_group(
                    ctx,
                    "embed",
                    &self.layout,
                    &[
                        params.as_entire_binding(),
                        data,
                        scales,
                        buffers.tokens.as_entire_binding(),
                        buffers.out.as_entire_binding(),
                    ],
                );
                Part { bind_group: group, params, extent: count as u32 }
            })
            .collect();
        let per_token = hidden / VALUES_PER_INVOCATION;
        let schedule = PerRow {
            label: "embed",
            pipeline: self.pipeline.clone(),
            max_rows: max_tokens,
            workgroups: move |rows: u32, _part_rows: u32| {
                (rows * per_token).div_ceil(WORKGROUP_SIZE)
            },
        };
        Ok(Bound::new(ctx, "embed", bound_parts, schedule))
    }
}
