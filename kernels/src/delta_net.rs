//! Qwen3.5's ops on the GPU (`shaders/delta_net.wgsl`; docs/kernels.md,
//! "Gated DeltaNet"): the attention layers' `[q | gate]` split and
//! `x · sigmoid(gate)`, and the Gated DeltaNet layers' causal convolution
//! with its window, gated delta rule with its state, and gated RMSNorm. The
//! CPU references are [`crate::cpu::causal_conv1d_silu`],
//! [`crate::cpu::gated_delta_rule`] and [`crate::cpu::gated_rms_norm`].

use crate::buffers::{
    self, FloatFormat, bind_group, check_buffer, check_dimension, check_distinct, params_buffer,
    placeholder,
};
use crate::context::{Binding, KernelLayout};
use crate::cpu::DeltaNetShape;
use crate::kernel::{Bound, Kernel, Part, PerRow};
use crate::{GpuContext, KernelError};

const DELTA_NET_WGSL: &str = include_str!("shaders/delta_net.wgsl");

/// Invocations per workgroup of the entry points with one invocation per value
/// or channel (`delta_rule` and `gated_norm` have workgroups of their own).
const WORKGROUP: u32 = 64;

/// Value columns per `delta_rule` workgroup (`RULE_COLUMNS` in the shader).
const RULE_COLUMNS: u32 = 32;

/// The largest key_dim `delta_rule` takes: its invocations keep at most
/// `RULE_SLICES · RULE_ROWS` = 8 · 16 rows of a column in registers
/// (Qwen3.5's heads have 128).
const RULE_MAX_KEY_DIM: usize = 128;

/// The five pipelines, compiled for one float format of the vector weights.
pub struct DeltaNet {
    layout: KernelLayout,
    split: wgpu::ComputePipeline,
    sigmoid: wgpu::ComputePipeline,
    conv: wgpu::ComputePipeline,
    rule: wgpu::ComputePipeline,
    norm: wgpu::ComputePipeline,
    weight_dtype: FloatFormat,
    max_binding: u64,
}

impl DeltaNet {
    /// Compiles the ops for vector weights (convolution taps, `A_log`,
    /// `dt_bias`, the gated norm's weight) stored as `weight_dtype`.
    pub fn new(ctx: &GpuContext, weight_dtype: FloatFormat) -> Result<DeltaNet, KernelError> {
        use Binding::{ReadOnly, ReadWrite, Uniform};
        let bindings =
            [Uniform, ReadWrite, ReadWrite, ReadOnly, ReadOnly, ReadOnly, ReadOnly, ReadOnly];
        let layout = ctx.kernel_layout("delta_net", &bindings);
        let entries = ["split_query_gate", "sigmoid_gate", "conv_silu", "delta_rule", "gated_norm"];
        let constants = [("HALF", weight_dtype.half_constant())];
        let mut pipelines = ctx
            .compile_specialized("delta_net", DELTA_NET_WGSL, &entries, &layout, &constants)?
            .into_iter();
        let mut next = || pipelines.next().expect("one pipeline per entry point");
        Ok(DeltaNet {
            split: next(),
            sigmoid: next(),
            conv: next(),
            rule: next(),
            norm: next(),
            layout,
            weight_dtype,
            max_binding: buffers::max_binding(ctx),
        })
    }
}

/// Which op a binding runs, with its sizes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DeltaNetOp {
    /// `input` rows `[q | gate per head, rest]` (`2 · heads · head_dim + rest`
    /// values) → `out` rows `[q, rest]` and `out2` rows of gates.
    SplitQueryGate {
        /// Query heads.
        heads: u32,
        /// Width of one head.
        head_dim: u32,
        /// The keys' and values' width after the queries.
        rest: u32,
    },
    /// `out = inputs[0] · sigmoid(inputs[1])` over rows of `width`.
    SigmoidGate {
        /// Values per row.
        width: u32,
    },
    /// The causal convolution with SiLU of `inputs[0]` (`[rows, channels]`),
    /// taps `weights[0]` (`[channels, kernel]`), window `out2`
    /// (`[kernel − 1, channels]`, read and replaced).
    ConvSilu(DeltaNetShape),
    /// The gated delta rule over `inputs[0]` (the convolution's output),
    /// `inputs[1]` (`in_proj_a` rows) and `inputs[2]` (`in_proj_b` rows), with
    /// `weights` `A_log` and `dt_bias`; the state in `out2`
    /// (`[value_heads, key_dim, value_dim]` f32, read and replaced).
    Rule(DeltaNetShape),
    /// `out = rms_norm(inputs[0]) · weights[0] · silu(inputs[1])` per group of
    /// `group` values, rows of `width`.
    GatedNorm {
        /// Values per row.
        width: u32,
        /// Values per group (one value head; the weight's length).
        group: u32,
        /// The norm's epsilon.
        eps: f32,
    },
}

/// What stays fixed for one binding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeltaNetBinding {
    /// The op.
    pub op: DeltaNetOp,
    /// Most rows (tokens) of a step.
    pub max_rows: u32,
}

/// The buffers of one op; those the op does not read are left `None`.
#[derive(Debug, Clone, Copy)]
pub struct DeltaNetBuffers<'a> {
    /// What it writes (f32 rows).
    pub out: &'a wgpu::Buffer,
    /// Its second output: the gates, the convolution's window or the state.
    pub out2: Option<&'a wgpu::Buffer>,
    /// f32 inputs, in the op's order.
    pub inputs: [Option<&'a wgpu::Buffer>; 3],
    /// Vector weights in the kernel's float format, in the op's order.
    pub weights: [Option<&'a wgpu::Buffer>; 2],
}

impl Kernel for DeltaNet {
    type Buffers<'a> = DeltaNetBuffers<'a>;
    type Shape = DeltaNetBinding;
    type Bound = Bound;

    fn bind(
        &self,
        ctx: &GpuContext,
        buffers: &DeltaNetBuffers<'_>,
        shape: &DeltaNetBinding,
    ) -> Result<Bound, KernelError> {
        let rows = check_dimension("delta_net: max_rows", shape.max_rows as u64)? as u64;
        let f32s = |n: u64| n * 4;
        let vector = |n: u64| self.weight_dtype.bytes(n);
        // (name, pipeline, parameter words, out, out2, inputs, weights (bytes each),
        // workgroups for a step of `rows`)
        type Count = Box<dyn Fn(u32) -> u32 + Send + Sync>;
        let (what, pipeline, words, sizes, workgroups): (_, _, Vec<u32>, [u64; 7], Count) =
            match shape.op {
                DeltaNetOp::SplitQueryGate { heads, head_dim, rest } => {
                    let width =
                        check_dimension("split_query_gate: width", (heads * head_dim) as u64)?;
                    let cols = 2 * width + rest;
                    (
                        "split_query_gate",
                        &self.split,
                        vec![heads, head_dim, cols],
                        [
                            f32s(rows * (width + rest) as u64),
                            f32s(rows * width as u64),
                            f32s(rows * cols as u64),
                            0,
                            0,
                            0,
                            0,
                        ],
                        Box::new(move |rows| (rows * cols).div_ceil(WORKGROUP)),
                    )
                }
                DeltaNetOp::SigmoidGate { width } => {
                    let width = check_dimension("sigmoid_gate: width", width as u64)?;
                    let size = f32s(rows * width as u64);
                    (
                        "sigmoid_gate",
                        &self.sigmoid,
                        vec![width],
                        [size, 0, size, size, 0, 0, 0],
                        Box::new(move |rows| (rows * width).div_ceil(WORKGROUP)),
                    )
                }
                DeltaNetOp::ConvSilu(delta) => {
                    let channels =
                        check_dimension("conv_silu: channels", delta.conv_channels() as u64)?;
                    let kernel = check_dimension("conv_silu: kernel", delta.conv_kernel as u64)?;
                    let size = f32s(rows * channels as u64);
                    (
                        "conv_silu",
                        &self.conv,
                        vec![channels, kernel],
                        [
                            size,
                            f32s((kernel as u64 - 1).max(1) * channels as u64),
                            size,
                            0,
                            0,
                            vector(channels as u64 * kernel as u64),
                            0,
                        ],
                        Box::new(move |_| channels.div_ceil(WORKGROUP)),
                    )
                }
                DeltaNetOp::Rule(delta) => {
                    let DeltaNetShape { key_heads, value_heads, key_dim, value_dim, .. } = delta;
                    if key_heads == 0 || !value_heads.is_multiple_of(key_heads) {
                        return Err(KernelError::InvalidArguments(format!(
                            "delta_rule: {value_heads} value heads over {key_heads} key heads"
                        )));
                    }
                    if key_dim > RULE_MAX_KEY_DIM {
                        return Err(KernelError::InvalidArguments(format!(
                            "delta_rule: key_dim {key_dim} above the kernel's {RULE_MAX_KEY_DIM}"
                        )));
                    }
                    let heads = value_heads as u64;
                    let channels = delta.conv_channels() as u64;
                    let tiles = (value_dim as u32).div_ceil(RULE_COLUMNS);
                    (
                        "delta_rule",
                        &self.rule,
                        vec![
                            key_heads as u32,
                            value_heads as u32,
                            key_dim as u32,
                            value_dim as u32,
                        ],
                        [
                            f32s(rows * delta.value_width() as u64),
                            f32s(heads * (key_dim * value_dim) as u64),
                            f32s(rows * channels),
                            f32s(rows * heads),
                            f32s(rows * heads),
                            vector(heads),
                            vector(heads),
                        ],
                        Box::new(move |_| value_heads as u32 * tiles),
                    )
                }
                DeltaNetOp::GatedNorm { width, group, eps } => {
                    if group == 0 || !width.is_multiple_of(group) {
                        return Err(KernelError::InvalidArguments(format!(
                            "gated_norm: rows of {width} in groups of {group}"
                        )));
                    }
                    let size = f32s(rows * width as u64);
                    (
                        "gated_norm",
                        &self.norm,
                        vec![width, group, eps.to_bits()],
                        [size, 0, size, size, 0, vector(group as u64), 0],
                        Box::new(move |rows| rows * (width / group)),
                    )
                }
            };
        // Placeholders for what the op does not use: a writable one apart, since
        // a writable binding may not alias another binding of the dispatch.
        let (spare, spare_out) = (placeholder(ctx, what), placeholder(ctx, what));
        let mut bound: Vec<&wgpu::Buffer> = Vec::with_capacity(7);
        let slots = [Some(buffers.out), buffers.out2]
            .into_iter()
            .chain(buffers.inputs)
            .chain(buffers.weights);
        let names = ["out", "out2", "input 0", "input 1", "input 2", "weight 0", "weight 1"];
        for (index, ((buffer, bytes), name)) in slots.zip(sizes).zip(names).enumerate() {
            match (buffer, bytes) {
                (Some(buffer), 0) => {
                    return Err(KernelError::InvalidArguments(format!(
                        "{what}: {name} is not read by this op ({} bytes given)",
                        buffer.size()
                    )));
                }
                (Some(buffer), bytes) => {
                    check_buffer(&format!("{what}: {name}"), buffer, bytes, self.max_binding)?;
                    bound.push(buffer);
                }
                (None, 0) => bound.push(if index == 1 { &spare_out } else { &spare }),
                (None, _) => {
                    return Err(KernelError::InvalidArguments(format!(
                        "{what}: {name} is missing"
                    )));
                }
            }
        }
        let inputs: Vec<Option<&wgpu::Buffer>> = bound[2..].iter().map(|b| Some(*b)).collect();
        check_distinct(what, buffers.out, &inputs)?;
        if let Some(out2) = buffers.out2 {
            check_distinct(what, out2, &inputs)?;
            check_distinct(what, out2, &[Some(buffers.out)])?;
        }
        let mut params = vec![shape.max_rows];
        params.extend(words);
        // The shader's `Params` has eight words whatever the op uses.
        params.resize(8, 0);
        let params = params_buffer(ctx, what, &params);
        let mut resources = vec![params.as_entire_binding()];
        resources.extend(bound.iter().map(|b| b.as_entire_binding()));
        let group = bind_group(ctx, what, &self.layout, &resources);
        let schedule = PerRow {
            label: what,
            pipeline: pipeline.clone(),
            max_rows: shape.max_rows,
            workgroups: move |rows: u32, _: u32| workgroups(rows),
        };
        let part = Part { bind_group: group, params, extent: 0 };
        Ok(Bound::new(ctx, what, vec![part], schedule))
    }
}
