//! Elementwise ops on f32 activations (`shaders/elementwise.wgsl`): the residual
//! add `a += b`, the gated activations of the MLP, `act(gate) · up` over
//! MLC's fused `[gate | up]` rows, the plain ones `act(x)` of a non-gated MLP
//! (Phi, GPT-NeoX), and Gemma-2's logit soft-capping.

use crate::buffers::{
    self, WORKGROUP_SIZE, bind_group, check_buffer, check_dimension, check_distinct, params_buffer,
};
use crate::context::{Binding, KernelLayout};
use crate::kernel::{Bound, Kernel, Part, PerRow};
use crate::{GpuContext, KernelError};

const ELEMENTWISE_WGSL: &str = include_str!("shaders/elementwise.wgsl");
pub(crate) const ACTIVATION_WGSL: &str = include_str!("shaders/activation.wgsl");

/// The activation of an MLP (gated, or plain for Phi).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// SwiGLU: `silu(gate) · up` (Llama, Qwen, Mistral, Phi-3).
    Silu,
    /// GeGLU with the tanh approximation of GELU (Gemma, `gelu_pytorch_tanh`).
    GeluTanh,
    /// The exact, erf-based GELU (GPT-NeoX's plain MLP: MLC's `op.gelu`).
    Gelu,
}

/// The elementwise kernels (one shader, one pipeline per op).
pub struct Elementwise {
    layout: KernelLayout,
    add: wgpu::ComputePipeline,
    silu_mul: wgpu::ComputePipeline,
    gelu_tanh_mul: wgpu::ComputePipeline,
    silu_plain: wgpu::ComputePipeline,
    gelu_tanh_plain: wgpu::ComputePipeline,
    gelu_mul: wgpu::ComputePipeline,
    gelu_plain: wgpu::ComputePipeline,
    softcap: wgpu::ComputePipeline,
    max_binding: u64,
}

impl Elementwise {
    /// Compiles the eight ops. They need no optional feature: each is a pure
    /// stream of loads and stores, so there is no fast path to choose.
    pub fn new(ctx: &GpuContext) -> Result<Elementwise, KernelError> {
        use Binding::{ReadOnly, ReadWrite, Uniform};
        // params, out, input (the order of elementwise.wgsl).
        let layout = ctx.kernel_layout("elementwise", &[Uniform, ReadWrite, ReadOnly]);
        let entries = [
            "add_in_place",
            "silu_mul",
            "gelu_tanh_mul",
            "silu_plain",
            "gelu_tanh_plain",
            "gelu_mul",
            "gelu_plain",
            "softcap",
        ];
        let mut pipelines = ctx
            .compile_specialized(
                "elementwise",
                &format!("{ACTIVATION_WGSL}\n{ELEMENTWISE_WGSL}"),
                &entries,
                &layout,
                &[],
            )?
            .into_iter();
        let mut next = || pipelines.next().expect("one pipeline per entry point");
        Ok(Elementwise {
            add: next(),
            silu_mul: next(),
            gelu_tanh_mul: next(),
            silu_plain: next(),
            gelu_tanh_plain: next(),
            gelu_mul: next(),
            gelu_plain: next(),
            softcap: next(),
            layout,
            max_binding: buffers::max_binding(ctx),
        })
    }
}

/// Which elementwise op a binding runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ElementwiseOp {
    /// `out += input` over `[rows, width]` values (the residual add).
    Add,
    /// `out = tanh(input / cap) · cap` over `[rows, width]` values (`cap`
    /// positive and finite).
    Softcap(f32),
    /// `out[t, j] = act(input[t, j]) · input[t, width + j]`: input rows
    /// `[gate | up]` of `2 · width`, output rows of `width`.
    Gated(Activation),
    /// `out = act(input)` over `[rows, width]` values: the activation of a
    /// non-gated MLP (Phi's `fc1 → gelu_new → fc2`, GPT-NeoX's `gelu`).
    Plain(Activation),
}

/// What stays fixed for one elementwise binding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ElementwiseShape {
    /// The op.
    pub op: ElementwiseOp,
    /// Most rows of a step.
    pub max_rows: u32,
    /// Values per output row.
    pub width: u32,
}

/// The buffers of one elementwise op (f32 activations).
#[derive(Debug, Clone, Copy)]
pub struct ElementwiseBuffers<'a> {
    /// What the op reads.
    pub input: &'a wgpu::Buffer,
    /// What it writes (and, for [`ElementwiseOp::Add`], reads), not `input`.
    pub out: &'a wgpu::Buffer,
}

impl Kernel for Elementwise {
    type Buffers<'a> = ElementwiseBuffers<'a>;
    type Shape = ElementwiseShape;
    type Bound = Bound;

    /// Binds `out` (`[rows, width]`) and `input` (`[rows, width]`, or
    /// `[rows, 2 · width]` for a gated activation).
    fn bind(
        &self,
        ctx: &GpuContext,
        buffers: &ElementwiseBuffers<'_>,
        shape: &ElementwiseShape,
    ) -> Result<Bound, KernelError> {
        let ElementwiseShape { op, max_rows, width } = *shape;
        let ElementwiseBuffers { input, out } = *buffers;
        let (what, pipeline, input_factor, cap) = match op {
            ElementwiseOp::Add => ("add_in_place", &self.add, 1, 0.0),
            ElementwiseOp::Softcap(cap) => {
                if !(cap.is_finite() && cap > 0.0) {
                    return Err(KernelError::InvalidArguments(format!(
                        "softcap: cap {cap} must be positive and finite"
                    )));
                }
                ("softcap", &self.softcap, 1, cap)
            }
            ElementwiseOp::Gated(Activation::Silu) => ("gated activation", &self.silu_mul, 2, 0.0),
            ElementwiseOp::Gated(Activation::GeluTanh) => {
                ("gated activation", &self.gelu_tanh_mul, 2, 0.0)
            }
            ElementwiseOp::Plain(Activation::Silu) => ("activation", &self.silu_plain, 1, 0.0),
            ElementwiseOp::Plain(Activation::GeluTanh) => {
                ("activation", &self.gelu_tanh_plain, 1, 0.0)
            }
            ElementwiseOp::Gated(Activation::Gelu) => ("gated activation", &self.gelu_mul, 2, 0.0),
            ElementwiseOp::Plain(Activation::Gelu) => ("activation", &self.gelu_plain, 1, 0.0),
        };
        let rows = check_dimension(&format!("{what}: max_rows"), max_rows as u64)? as u64;
        let width = check_dimension(&format!("{what}: width"), width as u64)?;
        let values = check_dimension(&format!("{what}: size"), rows * width as u64 * input_factor)?
            as u64
            / input_factor;
        check_buffer(&format!("{what}: output"), out, values * 4, self.max_binding)?;
        check_buffer(
            &format!("{what}: input"),
            input,
            values * input_factor * 4,
            self.max_binding,
        )?;
        check_distinct(what, out, &[Some(input)])?;
        let params = params_buffer(ctx, what, &[max_rows, width, cap.to_bits()]);
        let group = bind_group(
            ctx,
            what,
            &self.layout,
            &[params.as_entire_binding(), out.as_entire_binding(), input.as_entire_binding()],
        );
        let schedule = PerRow {
            label: what,
            pipeline: pipeline.clone(),
            max_rows,
            workgroups: move |rows: u32, _: u32| (rows * width).div_ceil(WORKGROUP_SIZE),
        };
        let part = Part { bind_group: group, params, extent: 0 };
        Ok(Bound::new(ctx, what, vec![part], schedule))
    }
}
