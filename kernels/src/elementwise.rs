//! Elementwise ops on f32 activations (`shaders/elementwise.wgsl`): the residual
//! add `a += b`, the gated activations of the MLP, `act(gate) · up` over
//! MLC's fused `[gate | up]` rows, and Gemma-2's logit soft-capping.

use crate::buffers::{
    self, Bound, WORKGROUP_SIZE, bind_group, check_buffer, check_dimension, check_distinct,
    params_buffer,
};
use crate::context::{Binding, KernelLayout};
use crate::{GpuContext, KernelError};

const ELEMENTWISE_WGSL: &str = include_str!("shaders/elementwise.wgsl");
pub(crate) const ACTIVATION_WGSL: &str = include_str!("shaders/activation.wgsl");

/// The activation of a gated MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// SwiGLU: `silu(gate) · up` (Llama, Qwen, Mistral, Phi-3).
    Silu,
    /// GeGLU with the tanh approximation of GELU (Gemma, `gelu_pytorch_tanh`).
    GeluTanh,
}

/// The elementwise kernels (one shader, one pipeline per op).
pub struct Elementwise {
    layout: KernelLayout,
    add: wgpu::ComputePipeline,
    silu_mul: wgpu::ComputePipeline,
    gelu_tanh_mul: wgpu::ComputePipeline,
    softcap: wgpu::ComputePipeline,
    max_binding: u64,
}

impl Elementwise {
    /// Compiles the four ops. They need no optional feature: each is a pure
    /// stream of loads and stores, so there is no fast path to choose.
    pub fn new(ctx: &GpuContext) -> Result<Elementwise, KernelError> {
        use Binding::{ReadOnly, ReadWrite, Uniform};
        // params, out, input (the order of elementwise.wgsl).
        let layout = ctx.kernel_layout("elementwise", &[Uniform, ReadWrite, ReadOnly]);
        let entries = ["add_in_place", "silu_mul", "gelu_tanh_mul", "softcap"];
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
            softcap: next(),
            layout,
            max_binding: buffers::max_binding(ctx),
        })
    }

    /// `a += b` over `[rows, width]` f32 values, for up to `max_rows` rows.
    pub fn bind_add(
        &self,
        ctx: &GpuContext,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        max_rows: u32,
        width: u32,
    ) -> Result<Bound, KernelError> {
        self.bind(ctx, "add_in_place", &self.add, a, b, max_rows, width, 1, 0.0)
    }

    /// `out = tanh(input / cap) · cap` over `[rows, width]` f32 values, for up
    /// to `max_rows` rows (`cap` positive and finite).
    pub fn bind_softcap(
        &self,
        ctx: &GpuContext,
        input: &wgpu::Buffer,
        out: &wgpu::Buffer,
        max_rows: u32,
        width: u32,
        cap: f32,
    ) -> Result<Bound, KernelError> {
        if !(cap.is_finite() && cap > 0.0) {
            return Err(KernelError::InvalidArguments(format!(
                "softcap: cap {cap} must be positive and finite"
            )));
        }
        self.bind(ctx, "softcap", &self.softcap, out, input, max_rows, width, 1, cap)
    }

    /// `out[t, j] = act(gate_up[t, j]) · gate_up[t, intermediate + j]`: input rows
    /// `[gate | up]` of `2 · intermediate`, output rows of `intermediate`.
    pub fn bind_gated(
        &self,
        ctx: &GpuContext,
        activation: Activation,
        gate_up: &wgpu::Buffer,
        out: &wgpu::Buffer,
        max_rows: u32,
        intermediate: u32,
    ) -> Result<Bound, KernelError> {
        let pipeline = match activation {
            Activation::Silu => &self.silu_mul,
            Activation::GeluTanh => &self.gelu_tanh_mul,
        };
        self.bind(ctx, "gated activation", pipeline, out, gate_up, max_rows, intermediate, 2, 0.0)
    }

    /// Binds `out` (`[rows, width]`, written) and `input` (`[rows, input_factor · width]`);
    /// `cap` is the soft-capping constant (unused by the other ops).
    #[allow(clippy::too_many_arguments)]
    fn bind(
        &self,
        ctx: &GpuContext,
        what: &'static str,
        pipeline: &wgpu::ComputePipeline,
        out: &wgpu::Buffer,
        input: &wgpu::Buffer,
        max_rows: u32,
        width: u32,
        input_factor: u64,
        cap: f32,
    ) -> Result<Bound, KernelError> {
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
        let schedule =
            Box::new(move |rows: u32, _: u32| (0, (rows * width).div_ceil(WORKGROUP_SIZE)).into());
        Ok(Bound::new(
            ctx,
            what,
            vec![pipeline.clone()],
            vec![(group, params, 0)],
            max_rows,
            schedule,
        ))
    }
}
