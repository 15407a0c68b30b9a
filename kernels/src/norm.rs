//! RMS normalisation (`shaders/rms_norm*.wgsl`):
//! `y = x · inverseSqrt(mean(x²) + eps) · w` over rows of `width` values, either
//! whole hidden states or each head of q/k (Qwen3, Gemma3), in place or not;
//! and, given a bias, LayerNorm (StableLM):
//! `y = (x − μ) · inverseSqrt(mean((x − μ)²) + eps) · w + b` — the same kernel,
//! with the mean reduced first.

use crate::buffers::{
    self, FloatFormat, bind_group, check_buffer, check_dimension, check_distinct, params_buffer,
    placeholder,
};
use crate::context::{Binding, ENABLE_SUBGROUPS, KernelLayout};
use crate::kernel::{Bound, Kernel, Part, PerRow};
use crate::{GpuContext, KernelError};

const RMS_NORM_WGSL: &str = include_str!("shaders/rms_norm.wgsl");
const RMS_NORM_SUBGROUP_WGSL: &str = include_str!("shaders/rms_norm_subgroup.wgsl");

/// Where the rows of one token sit in a buffer of f32 activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowLayout {
    /// Element index of token 0's first row.
    pub offset: u32,
    /// Elements from one token's rows to the next token's.
    pub token_stride: u32,
}

/// The rows an RMS norm normalises: `heads` rows of `width` values per token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsNormShape {
    /// Most tokens of a step.
    pub max_tokens: u32,
    /// Values per normalised row (hidden size, or head_dim).
    pub width: u32,
    /// Rows per token, contiguous within the token (1, or the number of heads).
    pub heads: u32,
    /// Rows of the input.
    pub input: RowLayout,
    /// Rows of the output (must equal `input` in place).
    pub output: RowLayout,
    /// The epsilon under the square root.
    pub eps: f32,
}

impl RmsNormShape {
    /// Packed `[tokens, width]` rows: the pre-norms of a decoder layer.
    pub fn rows(max_tokens: u32, width: u32, eps: f32) -> RmsNormShape {
        let layout = RowLayout { offset: 0, token_stride: width };
        RmsNormShape { max_tokens, width, heads: 1, input: layout, output: layout, eps }
    }

    /// `heads` rows of `head_dim` per token inside wider token rows, e.g. the q
    /// heads of a fused qkv buffer: `RowLayout { offset: 0, token_stride: qkv_width }`.
    pub fn per_head(
        max_tokens: u32,
        head_dim: u32,
        heads: u32,
        input: RowLayout,
        output: RowLayout,
        eps: f32,
    ) -> RmsNormShape {
        RmsNormShape { max_tokens, width: head_dim, heads, input, output, eps }
    }

    /// Elements a buffer with `layout` must hold for `max_tokens` tokens.
    fn extent(&self, layout: RowLayout) -> u64 {
        layout.offset as u64
            + (self.max_tokens as u64 - 1) * layout.token_stride as u64
            + self.heads as u64 * self.width as u64
    }
}

/// The buffers of one norm.
#[derive(Debug, Clone, Copy)]
pub struct RmsNormBuffers<'a> {
    /// Input activations (f32), also the output when `y` is `None`.
    pub x: &'a wgpu::Buffer,
    /// The norm weight `[width]`, f16 bits or f32 as the kernel was built for.
    pub weight: &'a wgpu::Buffer,
    /// LayerNorm's bias `[width]` (stored as the weight is); `None` for RMSNorm.
    pub bias: Option<&'a wgpu::Buffer>,
    /// Output activations (f32), or `None` to normalise `x` in place.
    pub y: Option<&'a wgpu::Buffer>,
}

/// The RMS norm kernel for one weight dtype.
pub struct RmsNorm {
    weight_dtype: FloatFormat,
    layout: KernelLayout,
    pipeline: wgpu::ComputePipeline,
    subgroups: bool,
    placeholder: wgpu::Buffer,
    max_binding: u64,
}

impl RmsNorm {
    /// Compiles the norm for weights stored as `weight_dtype`.
    pub fn new(ctx: &GpuContext, weight_dtype: FloatFormat) -> Result<RmsNorm, KernelError> {
        use Binding::{ReadOnly, ReadWrite, Uniform};
        // params, x, weight, y, bias (the order of rms_norm.wgsl).
        let layout =
            ctx.kernel_layout("rms_norm", &[Uniform, ReadOnly, ReadOnly, ReadWrite, ReadOnly]);
        let subgroups = ctx.caps.subgroups;
        let (source, entry) = if subgroups {
            (
                format!("{ENABLE_SUBGROUPS}{RMS_NORM_WGSL}\n{RMS_NORM_SUBGROUP_WGSL}"),
                "rms_norm_subgroup",
            )
        } else {
            (RMS_NORM_WGSL.to_string(), "rms_norm")
        };
        let constants = [("HALF", weight_dtype.half_constant())];
        let pipeline =
            ctx.compile_specialized("rms_norm", &source, &[entry], &layout, &constants)?.remove(0);
        Ok(RmsNorm {
            weight_dtype,
            layout,
            pipeline,
            subgroups,
            placeholder: placeholder(ctx, "rms_norm placeholder"),
            max_binding: buffers::max_binding(ctx),
        })
    }

    /// Whether the sum of squares is reduced with subgroup operations.
    pub fn uses_subgroups(&self) -> bool {
        self.subgroups
    }
}

impl Kernel for RmsNorm {
    type Buffers<'a> = RmsNormBuffers<'a>;
    type Shape = RmsNormShape;
    type Bound = Bound;

    /// Creates the bind group and parameter uniform of a norm of `shape`.
    fn bind(
        &self,
        ctx: &GpuContext,
        buffers: &RmsNormBuffers<'_>,
        shape: &RmsNormShape,
    ) -> Result<Bound, KernelError> {
        let tokens = check_dimension("rms_norm: max_tokens", shape.max_tokens as u64)?;
        let width = check_dimension("rms_norm: width", shape.width as u64)? as u64;
        let heads = check_dimension("rms_norm: heads", shape.heads as u64)? as u64;
        check_dimension("rms_norm: rows", tokens as u64 * heads)?;
        if !(shape.eps >= 0.0 && shape.eps.is_finite()) {
            return Err(KernelError::InvalidArguments(format!("rms_norm: eps = {}", shape.eps)));
        }
        // Rows written by different workgroups must not overlap.
        if shape.max_tokens > 1 && (shape.output.token_stride as u64) < heads * width {
            return Err(KernelError::InvalidArguments(format!(
                "rms_norm: output token stride {} is shorter than a token's {heads} × {width} values",
                shape.output.token_stride
            )));
        }
        check_buffer(
            "rms_norm: weight",
            buffers.weight,
            self.weight_dtype.bytes(width),
            self.max_binding,
        )?;
        if let Some(bias) = buffers.bias {
            check_buffer("rms_norm: bias", bias, self.weight_dtype.bytes(width), self.max_binding)?;
        }
        let input_bytes = shape.extent(shape.input) * 4;
        let output_bytes = shape.extent(shape.output) * 4;
        let (x, y, in_place) = match buffers.y {
            Some(y) => {
                check_buffer("rms_norm: x", buffers.x, input_bytes, self.max_binding)?;
                check_buffer("rms_norm: y", y, output_bytes, self.max_binding)?;
                check_distinct(
                    "rms_norm",
                    y,
                    &[Some(buffers.x), Some(buffers.weight), buffers.bias],
                )?;
                (buffers.x, y, 0)
            }
            None => {
                if shape.input != shape.output {
                    return Err(KernelError::InvalidArguments(
                        "rms_norm: in place, the input and output row layouts must be equal".into(),
                    ));
                }
                check_buffer("rms_norm: x", buffers.x, input_bytes, self.max_binding)?;
                check_distinct("rms_norm", buffers.x, &[Some(buffers.weight), buffers.bias])?;
                // The shader reads from y; x is not used.
                (&self.placeholder, buffers.x, 1)
            }
        };
        let params = params_buffer(
            ctx,
            "rms_norm params",
            &[
                shape.max_tokens,
                shape.width,
                shape.heads,
                shape.input.offset,
                shape.input.token_stride,
                shape.output.offset,
                shape.output.token_stride,
                shape.eps.to_bits(),
                in_place,
                buffers.bias.is_some() as u32,
            ],
        );
        let group = bind_group(
            ctx,
            "rms_norm",
            &self.layout,
            &[
                params.as_entire_binding(),
                x.as_entire_binding(),
                buffers.weight.as_entire_binding(),
                y.as_entire_binding(),
                buffers.bias.unwrap_or(&self.placeholder).as_entire_binding(),
            ],
        );
        let schedule = PerRow {
            label: "rms_norm",
            pipeline: self.pipeline.clone(),
            max_rows: shape.max_tokens,
            workgroups: |tokens: u32, heads: u32| tokens * heads,
        };
        let part = Part { bind_group: group, params, extent: shape.heads };
        Ok(Bound::new(ctx, "rms_norm", vec![part], schedule))
    }
}
