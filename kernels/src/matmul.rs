//! `y = x · Wᵀ (+ bias) (+ residual)` for the weight formats of MLC artifacts
//! (`shaders/matmul*.wgsl`).
//!
//! One row of x (a decode step) runs a matrix × vector kernel in which a team of
//! threads (or one subgroup) reads each weight row; so do a few rows (a batched
//! decode step: up to [`MATVEC_MAX_ROWS`], or [`COOP_MATVEC_MAX_ROWS`] beside
//! cooperative matrices; one workgroup per row and weight row set, the rows of
//! a set adjacent so that the weights come from cache after the first); more
//! rows (prefill) run a kernel tiled over m and n through workgroup memory.
//! Weights stay in the form
//! the shard stores and are decoded inside the products. A weight larger than
//! one storage binding (a big lm_head) is bound as several row parts.
//!
//! A decode-only binding ([`MatmulInput::Normed`], [`MatmulInput::Gated`])
//! multiplies W with the RMSNorm of x or the gated activation of a `[gate; up]`
//! row, computed inside the kernel: a decode step is bound by its dispatch
//! count, and this removes the norm and activation dispatches (see
//! docs/performance.md).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Mutex;

use crate::buffers::{
    self, BINDING_ALIGNMENT, FloatFormat, bind_group, check_buffer, check_dimension,
    check_distinct, params_buffer, placeholder, range, split_rows,
};
use crate::context::{Binding, ENABLE_SUBGROUPS, KernelLayout};
use crate::elementwise::ACTIVATION_WGSL;
use crate::kernel::{Bound, Kernel, Part, Schedule, Step, Workgroups, check_rows};
use crate::{Activation, GpuContext, KernelError};

const DECODE_WGSL: &str = include_str!("shaders/matmul_decode.wgsl");
const WEIGHTS_WGSL: &str = include_str!("shaders/matmul_weights.wgsl");
const MATMUL_WGSL: &str = include_str!("shaders/matmul.wgsl");
const SUBGROUP_WGSL: &str = include_str!("shaders/matmul_subgroup.wgsl");
const COOP_WGSL: &str = include_str!("shaders/matmul_coop.wgsl");
/// What the tensor-core kernel's source starts with (naga's extension for
/// cooperative matrices; f16 for their inputs).
const ENABLE_COOP: &str = "enable f16;\nenable wgpu_cooperative_matrix;\n";

/// Weight rows one decode thread multiplies with the same slice of x
/// (`ROWS_PER_THREAD` in matmul.wgsl): more rows share more x loads but leave
/// fewer workgroups. Measured on an H100 (q4f16_1, K = 896): 4 rows per thread
/// read a 151936-row lm_head at 1.09 TB/s against 0.86 with 2, while 2 rows
/// keep a 896-row down projection at ~12 µs where 4 take ~18 µs (28 workgroups).
pub(crate) const NARROW_ROWS_PER_THREAD: u32 = 2;
/// The wider variant, used from [`WIDE_FROM_ROWS`] weight rows (per part) up.
const WIDE_ROWS_PER_THREAD: u32 = 4;
/// Weight rows from which the decode kernel takes 4 rows per thread.
const WIDE_FROM_ROWS: u32 = 8192;
/// Rows per thread of the subgroup decode kernel for the tallest matrices (a
/// vocabulary-sized lm_head), from [`TALL_FROM_ROWS`] rows: twice the bytes
/// in flight per thread and half the x loads per weight. Measured on an H100
/// (q4f16_1, K = 896): the 151936-row lm_head 1.06–1.08 → 1.18–1.19 TB/s,
/// while the 9728-row gate|up fell from ~0.41 to 0.33 TB/s with 8 (half the
/// workgroups, on 132 SMs).
const TALL_ROWS_PER_THREAD: u32 = 8;
/// Weight rows from which the subgroup decode kernel takes
/// [`TALL_ROWS_PER_THREAD`] rows per thread.
const TALL_FROM_ROWS: u32 = 32768;
/// Inputs from which a decode product with fewer than [`WIDE_FROM_ROWS`]
/// rows makes the whole workgroup one team: on an H100, teams of 32 gave the
/// 896 row pairs of down_proj (K = 4864) 56 workgroups that each walk all of
/// K (23.7 µs; one team per workgroup: 16.6 µs).
const LONG_K: u32 = 2048;
/// Threads per row set of the portable `matvec` (`TEAM` in matmul.wgsl).
pub(crate) const TEAM: u32 = 32;
/// Most rows of x that run the matrix × vector kernel (each row its own
/// workgroups) rather than the tiled one, whose 128-row blocks a few rows
/// leave mostly empty. Measured on an H100 (Qwen2.5-0.5B, batched decode
/// passes): 2 to 8 rows 1.6–2.7× faster on the matrix × vector kernel, 16
/// about even, 32 rows 1.4× and 64 rows 2.4× slower (its cost grows with
/// the rows; docs/performance.md).
pub const MATVEC_MAX_ROWS: u32 = 16;
/// [`MATVEC_MAX_ROWS`] where the thin tensor-core blocks exist: from 8 rows
/// `matmul_coop_thin` is faster. Measured on an H100 (Qwen2.5-0.5B, batched
/// decode passes, docs/performance.md): 6 rows 1.05× faster on the matrix ×
/// vector kernel, 8 rows 1.10×, 12 rows 1.37× and 16 rows 1.65× faster on
/// the thin blocks.
pub const COOP_MATVEC_MAX_ROWS: u32 = 7;
/// Output rows and columns of a `matmul_tiled` block.
const BLOCK: u32 = 128;
/// Rows of a thin block (`THIN_ROWS` in matmul_coop.wgsl): the
/// cooperative-matrix products of batched decode steps up to this many rows.
const THIN_ROWS: u32 = 32;
/// Blocks from which a product fills a large GPU without splitting K.
const WIDE_BLOCKS: u32 = 128;
/// Workgroups per block of a product split over K (`SPLITS` in matmul.wgsl):
/// the fewest that give [`WIDE_BLOCKS`] workgroups, or the most whose partial
/// sums fit. Sixteen serve the few blocks of a batched decode step's
/// narrow products (32 rows of down_proj at n = 896: 7 blocks).
const SPLITS: [u32; 2] = [4, 16];
/// Bytes of the partial sums that products split over K share (one buffer per
/// [`Matmul`]); a product whose splits would need more runs unsplit. 10 MiB
/// covers the q/k/v, o and down products of a 0.5B model at 512 rows.
pub const SPLIT_SCRATCH_BYTES: u64 = 10 << 20;

/// How a weight matrix `[N, K]` is stored: MLC's quantization modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    /// Group quantization (`q4f16_1`: `Q4(F16)`, `q4f32_1`: `Q4(F32)`): 4-bit
    /// codes, 8 per u32 word `[N, K/8]`, and one scale per 32 inputs `[N, K/32]`
    /// in the given dtype; `W[n, k] = (code - 7) · scale[n, k / 32]`.
    Q4(FloatFormat),
    /// Plain row-major values (`q0f16`: `Dense(F16)`, `q0f32`: `Dense(F32)`).
    Dense(FloatFormat),
}

impl WeightFormat {
    /// The format of the linear layers of an MLC quantization mode
    /// (`"q4f16_1"`, `"q4f32_1"`, `"q0f16"`, `"q0f32"`), if supported.
    pub fn from_quantization(name: &str) -> Option<WeightFormat> {
        match name {
            "q4f16_1" => Some(WeightFormat::Q4(FloatFormat::F16)),
            "q4f32_1" => Some(WeightFormat::Q4(FloatFormat::F32)),
            "q0f16" => Some(WeightFormat::Dense(FloatFormat::F16)),
            "q0f32" => Some(WeightFormat::Dense(FloatFormat::F32)),
            _ => None,
        }
    }

    /// The model dtype: of the scales or values, and of biases.
    pub fn dtype(self) -> FloatFormat {
        match self {
            WeightFormat::Q4(dtype) | WeightFormat::Dense(dtype) => dtype,
        }
    }

    /// Bytes of the codes (q4) or values (dense) of a `[rows, cols]` matrix.
    pub fn data_bytes(self, rows: u64, cols: u64) -> u64 {
        rows * self.row_bytes(cols)[0]
    }

    /// Bytes of the scales of a `[rows, cols]` matrix (0 for dense formats).
    pub fn scale_bytes(self, rows: u64, cols: u64) -> u64 {
        match self {
            WeightFormat::Q4(dtype) => dtype.bytes(rows * (cols / 32)),
            WeightFormat::Dense(_) => 0,
        }
    }

    /// Bytes per row in the data buffer and in the scale buffer.
    fn row_bytes(self, cols: u64) -> [u64; 2] {
        match self {
            WeightFormat::Q4(dtype) => [cols / 2, cols / 32 * dtype.size()],
            WeightFormat::Dense(dtype) => [cols * dtype.size(), 0],
        }
    }

    /// WGSL reading this format (`Eight`, `q4_centered`, `weights8`, bindings 1
    /// and 2), to be followed by a kernel; and the override constants it needs.
    pub(crate) fn shader_prefix(self) -> (String, [(&'static str, f64); 2]) {
        let quantized = matches!(self, WeightFormat::Q4(_)) as u8 as f64;
        (
            format!("{DECODE_WGSL}\n{WEIGHTS_WGSL}\n"),
            [("QUANTIZED", quantized), ("HALF", self.dtype().half_constant())],
        )
    }
}

/// The decode (one-row) pipelines of one input form.
#[derive(Clone)]
struct DecodePipelines {
    /// [`NARROW_ROWS_PER_THREAD`] rows per thread, teams of [`TEAM`] threads
    /// (or subgroups).
    narrow: wgpu::ComputePipeline,
    /// [`WIDE_ROWS_PER_THREAD`] rows per thread, for tall matrices.
    wide: wgpu::ComputePipeline,
    /// The portable kernel with the whole workgroup as one team, for a long K.
    long_k: wgpu::ComputePipeline,
    /// [`TALL_ROWS_PER_THREAD`] rows per thread, for the tallest matrices;
    /// only on subgroups (the portable kernel sums at most 4 rows a thread),
    /// compiled when a binding first has a part of [`TALL_FROM_ROWS`] rows.
    tall: Option<wgpu::ComputePipeline>,
}

impl DecodePipelines {
    /// The decode kernel of a `[n, k]` weight part: for a long K and few rows,
    /// the whole workgroup as one team, else 2 rows per thread, 4 for a tall
    /// matrix, 8 for the tallest (on subgroups); `rows` are the output rows
    /// per workgroup of the narrow, the wide and the tall kernel.
    fn choose(
        &self,
        k: u32,
        n: u32,
        [narrow, wide, tall_rows]: [u32; 3],
    ) -> (&wgpu::ComputePipeline, u32) {
        if let Some(tall) = self.tall.as_ref().filter(|_| n >= TALL_FROM_ROWS) {
            return (tall, n.div_ceil(tall_rows));
        }
        if n >= WIDE_FROM_ROWS {
            (&self.wide, n.div_ceil(wide))
        } else if k >= LONG_K {
            (&self.long_k, n.div_ceil(NARROW_ROWS_PER_THREAD))
        } else {
            (&self.narrow, n.div_ceil(narrow))
        }
    }
}

/// One tiled kernel's pipelines: whole, and split over K.
#[derive(Clone)]
struct Tiling {
    /// Rows of y in one workgroup's block.
    block_rows: u32,
    /// Each workgroup computes its block.
    whole: wgpu::ComputePipeline,
    /// For each count of [`SPLITS`]: the same, each block split over K into
    /// that many partial sums, and the sum of the partial sums with the epilogue.
    split: [(wgpu::ComputePipeline, wgpu::ComputePipeline); SPLITS.len()],
}

/// The prefill (several-row) pipelines.
#[derive(Clone)]
struct PrefillPipelines {
    /// Tiled over m and n through workgroup memory: on cooperative matrices
    /// (`matmul_coop`) where the device has them, else SIMT (`matmul_tiled`).
    tiled: Tiling,
    /// On cooperative matrices, blocks of [`THIN_ROWS`] rows
    /// (`matmul_coop_thin`) for the products of batched decode steps.
    thin: Option<Tiling>,
}

impl PrefillPipelines {
    /// Most rows that run the matrix × vector kernel instead.
    fn matvec_max_rows(&self) -> u32 {
        match self.thin {
            Some(_) => COOP_MATVEC_MAX_ROWS,
            None => MATVEC_MAX_ROWS,
        }
    }

    /// The tiling of a product of `rows` rows.
    fn for_rows(&self, rows: u32) -> &Tiling {
        match &self.thin {
            Some(thin) if rows <= thin.block_rows => thin,
            _ => &self.tiled,
        }
    }
}

/// How a product's step runs: the decode kernel for one row or a few (up to
/// [`MATVEC_MAX_ROWS`]), the tiled one (split over K when too few blocks fill
/// the GPU) for more.
struct MatmulSchedule {
    decode: DecodePipelines,
    /// `None` for a decode-only binding.
    prefill: Option<PrefillPipelines>,
    k: u32,
    matvec_rows: [u32; 3],
    max_rows: u32,
}

impl Schedule for MatmulSchedule {
    fn params(&self, step: Step, words: &mut Vec<u32>) -> Result<(), KernelError> {
        words.push(check_rows("matmul", step, self.max_rows)?);
        Ok(())
    }

    fn dispatches(
        &self,
        step: Step,
        part_rows: u32,
        dispatch: &mut dyn FnMut(&wgpu::ComputePipeline, Workgroups),
    ) {
        let rows = step.tokens;
        if rows == 0 {
            return;
        }
        match &self.prefill {
            Some(prefill) if rows > prefill.matvec_max_rows() => {
                let tiling = prefill.for_rows(rows);
                let blocks = part_rows.div_ceil(BLOCK) * rows.div_ceil(tiling.block_rows);
                match split_choice(blocks, rows, part_rows) {
                    Some(i) => {
                        let (split, sum_splits) = &tiling.split[i];
                        let outputs = rows * part_rows;
                        dispatch(split, Workgroups::Linear(blocks * SPLITS[i]));
                        dispatch(
                            sum_splits,
                            Workgroups::Linear(outputs.div_ceil(buffers::WORKGROUP_SIZE)),
                        );
                    }
                    None => dispatch(&tiling.whole, Workgroups::Linear(blocks)),
                }
            }
            // One row, a decode-only binding, or a few rows.
            _ => {
                let (pipeline, workgroups) =
                    self.decode.choose(self.k, part_rows, self.matvec_rows);
                dispatch(pipeline, Workgroups::Linear(workgroups * rows));
            }
        }
    }
}

/// Which count of [`SPLITS`] (its index) a product of `blocks` blocks and
/// `rows` × `n` outputs runs with, or `None` to run unsplit: unsplit when the
/// blocks fill the GPU alone, else the fewest splits that give
/// [`WIDE_BLOCKS`] workgroups, or the most whose partial sums fit.
fn split_choice(blocks: u32, rows: u32, n: u32) -> Option<usize> {
    if blocks >= WIDE_BLOCKS {
        return None;
    }
    let mut chosen = None;
    for (i, &splits) in SPLITS.iter().enumerate() {
        if !split_fits(splits, rows, n) {
            break;
        }
        chosen = Some(i);
        if blocks * splits >= WIDE_BLOCKS {
            break;
        }
    }
    chosen
}

/// Whether the partial sums of `rows` × `n` outputs split over K `splits`
/// ways fit the shared buffer.
fn split_fits(splits: u32, rows: u32, n: u32) -> bool {
    splits as u64 * rows as u64 * n as u64 * 4 <= SPLIT_SCRATCH_BYTES
}

/// A weight matrix `[rows, cols]` in GPU buffers, exactly as the shard stores
/// it (upload the shard bytes as-is). `cols` must be a multiple of 32.
#[derive(Debug, Clone, Copy)]
pub struct GpuWeight<'a> {
    /// How the weight is stored (a kernel binds only weights of the format
    /// it was compiled for).
    pub format: WeightFormat,
    /// Output features N (or vocabulary rows of an embedding table).
    pub rows: u32,
    /// Input features K (or the hidden size of an embedding table).
    pub cols: u32,
    /// q4: `q_weight`, u32 `[N, K/8]`; dense: the values `[N, K]`.
    pub data: &'a wgpu::Buffer,
    /// q4: `q_scale` `[N, K/32]` (f16 bits or f32); dense: `None`.
    pub scales: Option<&'a wgpu::Buffer>,
}

impl<'a> GpuWeight<'a> {
    /// Checks the weight against the format `compiled` of the kernel that
    /// binds it and splits its rows into parts whose bindings fit in
    /// `max_binding` bytes: `(first row, rows)` per part.
    pub(crate) fn plan(
        &self,
        what: &str,
        compiled: WeightFormat,
        max_binding: u64,
    ) -> Result<Vec<(u64, u64)>, KernelError> {
        let format = self.format;
        if format != compiled {
            return Err(KernelError::InvalidArguments(format!(
                "{what}: a {format:?} weight, but the kernel was compiled for {compiled:?} weights"
            )));
        }
        let rows = check_dimension(&format!("{what}: weight rows"), self.rows as u64)? as u64;
        let cols = check_dimension(&format!("{what}: weight columns"), self.cols as u64)? as u64;
        if !cols.is_multiple_of(32) {
            return Err(KernelError::InvalidArguments(format!(
                "{what}: {cols} weight columns; the kernels need a multiple of 32 (every MLC model has one)"
            )));
        }
        crate::context::require_size(
            &format!("{what}: weight data"),
            self.data,
            format.data_bytes(rows, cols),
        )?;
        match (format, self.scales) {
            (WeightFormat::Q4(_), Some(scales)) => crate::context::require_size(
                &format!("{what}: weight scales"),
                scales,
                format.scale_bytes(rows, cols),
            )?,
            (WeightFormat::Q4(_), None) => {
                return Err(KernelError::InvalidArguments(format!(
                    "{what}: a q4 weight needs its scale buffer"
                )));
            }
            (WeightFormat::Dense(_), Some(_)) => {
                return Err(KernelError::InvalidArguments(format!(
                    "{what}: a dense weight has no scales"
                )));
            }
            (WeightFormat::Dense(_), None) => {}
        }
        split_rows(what, rows, &format.row_bytes(cols), max_binding, BINDING_ALIGNMENT)
    }

    /// The data and scale bindings of rows `[first, first + count)`
    /// (`fallback` stands in for the scales of a dense weight).
    pub(crate) fn resources(
        &self,
        first: u64,
        count: u64,
        fallback: &'a wgpu::Buffer,
    ) -> [wgpu::BindingResource<'a>; 2] {
        let [data_row, scale_row] = self.format.row_bytes(self.cols as u64);
        // Sizes are rounded up to whole words; the buffers hold them (checked in `plan`).
        let words = |bytes: u64| bytes.div_ceil(4) * 4;
        let data = range(self.data, first * data_row, words(count * data_row));
        let scales = match self.scales {
            Some(scales) => range(scales, first * scale_row, words(count * scale_row)),
            None => fallback.as_entire_binding(),
        };
        [data, scales]
    }
}

/// matmul.wgsl's `INPUT` for a product of `rms_norm(x) · weight` (`NORMED`).
pub(crate) const NORMED_INPUT: u32 = 1;

/// What the product adds to `y` besides an optional bias.
#[derive(Debug, Clone, Copy)]
pub enum Residual<'a> {
    /// `y = x · Wᵀ (+ bias)`.
    None,
    /// `y += x · Wᵀ (+ bias)`: the residual connection in place
    /// (`h = h + o_proj(a)` with `y = h`).
    InPlace,
    /// `y = residual + x · Wᵀ (+ bias)`, `residual` shaped like `y` (and a
    /// different buffer: WebGPU forbids aliasing a written binding).
    Buffer(&'a wgpu::Buffer),
}

/// What the product multiplies W with.
#[derive(Debug, Clone, Copy)]
pub enum MatmulInput<'a> {
    /// x itself.
    Direct,
    /// `rms_norm(x) · weight` (f32 arithmetic, as [`crate::RmsNorm`]); `weight`
    /// `[K]` is in the format's dtype. Decode only (one row).
    Normed {
        /// The norm's weight.
        weight: &'a wgpu::Buffer,
        /// Added to the mean square.
        eps: f32,
    },
    /// `act(gate) · up` of x, a `[gate; up]` row of `2K` values (as
    /// [`crate::ElementwiseOp::Gated`]). Decode only (one row).
    Gated(Activation),
}

impl MatmulInput<'_> {
    /// The shader's `INPUT` constant.
    fn constant(&self) -> u32 {
        match self {
            MatmulInput::Direct => 0,
            MatmulInput::Normed { .. } => NORMED_INPUT,
            MatmulInput::Gated(Activation::Silu) => 2,
            MatmulInput::Gated(Activation::GeluTanh) => 3,
            MatmulInput::Gated(Activation::Gelu) => 4,
        }
    }
}

/// The buffers of one product.
#[derive(Debug, Clone, Copy)]
pub struct MatmulBuffers<'a> {
    /// Input activations, f32 `[rows, K]` (`[1, 2K]` for a gated input).
    pub x: &'a wgpu::Buffer,
    /// How the product's input is made from x.
    pub input: MatmulInput<'a>,
    /// The weight `[N, K]`.
    pub weight: GpuWeight<'a>,
    /// Optional bias `[N]` in the format's dtype (f16 bits for q4f16_1 / q0f16).
    pub bias: Option<&'a wgpu::Buffer>,
    /// Optional residual term.
    pub residual: Residual<'a>,
    /// Output, f32 `[rows, N]`.
    pub y: &'a wgpu::Buffer,
}

/// What stays fixed for one product binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulShape {
    /// Most rows of x a step may have (1 for a fused input).
    pub max_rows: u32,
}

/// The tensor-core kernels' whole source, for the weights whose reading
/// [`WeightFormat::shader_prefix`] gives.
fn coop_source(weights: &str) -> String {
    format!("{ENABLE_COOP}{ACTIVATION_WGSL}\n{weights}{MATMUL_WGSL}\n{COOP_WGSL}")
}

/// The shader of one weight format as this device compiles it.
struct Program {
    layout: KernelLayout,
    /// The whole shader, its decode entry point and format constants.
    source: String,
    matvec_entry: &'static str,
    format_constants: [(&'static str, f64); 2],
    /// Threads that share one set of weight rows in the decode kernel.
    threads_per_row_set: u32,
    subgroups: bool,
    /// The source of the tensor-core prefill kernel, where the device has
    /// cooperative matrices ([`crate::Capabilities::cooperative_matrix`]).
    coop_source: Option<String>,
}

impl Program {
    fn new(ctx: &GpuContext, format: WeightFormat) -> Program {
        use Binding::{ReadOnly, ReadWrite, Uniform};
        // params, weight, scales, x, bias, residual, y, norm weight, partial
        // sums (the order of matmul.wgsl).
        let layout = ctx.kernel_layout(
            "matmul",
            &[
                Uniform, ReadOnly, ReadOnly, ReadOnly, ReadOnly, ReadOnly, ReadWrite, ReadOnly,
                ReadWrite,
            ],
        );
        let caps = ctx.caps;
        let (weights, format_constants) = format.shader_prefix();
        let prefix = format!("{ACTIVATION_WGSL}\n{weights}");
        let (source, matvec_entry, threads_per_row_set) = if caps.subgroups {
            // Subgroups own row sets: size the rows of a workgroup so that even
            // the smallest subgroups each get one.
            let smallest = if caps.subgroup_min_size >= 4 { caps.subgroup_min_size } else { 32 };
            (
                format!("{ENABLE_SUBGROUPS}{prefix}{MATMUL_WGSL}\n{SUBGROUP_WGSL}"),
                "matvec_subgroup",
                smallest.min(256),
            )
        } else {
            (format!("{prefix}{MATMUL_WGSL}"), "matvec", TEAM)
        };
        let coop_source = caps.cooperative_matrix.then(|| coop_source(&weights));
        Program {
            layout,
            source,
            matvec_entry,
            format_constants,
            threads_per_row_set,
            subgroups: caps.subgroups,
            coop_source,
        }
    }

    /// Output rows per workgroup of a decode kernel with `rows_per_thread`.
    fn matvec_rows(&self, rows_per_thread: u32) -> u32 {
        buffers::WORKGROUP_SIZE / self.threads_per_row_set * rows_per_thread
    }

    /// The decode kernel for `rows_per_thread` and the `INPUT` constant `input`.
    fn compile_matvec(
        &self,
        ctx: &GpuContext,
        (entry, team): (&str, u32),
        rows_per_thread: u32,
        input: u32,
    ) -> Result<wgpu::ComputePipeline, KernelError> {
        let mut constants = self.format_constants.to_vec();
        constants.push(("ROWS_PER_THREAD", rows_per_thread as f64));
        constants.push(("INPUT", input as f64));
        constants.push(("TEAM", team as f64));
        if self.subgroups {
            constants.push(("SUBGROUP_ROWS", self.matvec_rows(rows_per_thread) as f64));
        }
        Ok(ctx
            .compile_specialized("matmul", &self.source, &[entry], &self.layout, &constants)?
            .remove(0))
    }

    /// The decode pipelines for the `INPUT` constant `input`, without the
    /// tall kernel (see [`Program::compile_tall`]).
    fn compile_decode(&self, ctx: &GpuContext, input: u32) -> Result<DecodePipelines, KernelError> {
        let entry = (self.matvec_entry, TEAM);
        Ok(DecodePipelines {
            narrow: self.compile_matvec(ctx, entry, NARROW_ROWS_PER_THREAD, input)?,
            wide: self.compile_matvec(ctx, entry, WIDE_ROWS_PER_THREAD, input)?,
            long_k: self.compile_matvec(
                ctx,
                ("matvec", buffers::WORKGROUP_SIZE),
                NARROW_ROWS_PER_THREAD,
                input,
            )?,
            tall: None,
        })
    }

    /// Adds the tall kernel to `pipelines` (of the `INPUT` constant `input`)
    /// where the device has subgroups and a part of `tallest` rows needs it;
    /// only a vocabulary-sized product does, so other forms never compile it.
    fn compile_tall(
        &self,
        ctx: &GpuContext,
        pipelines: &mut DecodePipelines,
        input: u32,
        tallest: u32,
    ) -> Result<(), KernelError> {
        if pipelines.tall.is_none() && self.subgroups && tallest >= TALL_FROM_ROWS {
            let entry = (self.matvec_entry, TEAM);
            pipelines.tall = Some(self.compile_matvec(ctx, entry, TALL_ROWS_PER_THREAD, input)?);
        }
        Ok(())
    }

    /// The tiled pipelines, whole and split over K: on cooperative matrices
    /// where the device has them (then also in thin blocks).
    fn compile_prefill(&self, ctx: &GpuContext) -> Result<PrefillPipelines, KernelError> {
        Ok(match &self.coop_source {
            Some(source) => PrefillPipelines {
                tiled: self.compile_tiling(ctx, source, "matmul_coop", BLOCK)?,
                thin: Some(self.compile_tiling(ctx, source, "matmul_coop_thin", THIN_ROWS)?),
            },
            None => PrefillPipelines {
                tiled: self.compile_tiling(ctx, &self.source, "matmul_tiled", BLOCK)?,
                thin: None,
            },
        })
    }

    /// The pipelines of tiled kernel `entry` of `source`, whose blocks have
    /// `block_rows` rows.
    fn compile_tiling(
        &self,
        ctx: &GpuContext,
        source: &str,
        entry: &str,
        block_rows: u32,
    ) -> Result<Tiling, KernelError> {
        let compile = |splits: u32, entries: &[&str]| {
            let mut constants = self.format_constants.to_vec();
            constants.push(("SPLITS", splits as f64));
            ctx.compile_specialized("matmul", source, entries, &self.layout, &constants)
        };
        let whole = compile(1, &[entry])?.remove(0);
        let pair = |splits: u32| -> Result<_, KernelError> {
            let mut pipelines = compile(splits, &[entry, "sum_splits"])?.into_iter();
            let mut next = || pipelines.next().expect("one pipeline per entry point");
            Ok((next(), next()))
        };
        let split = [pair(SPLITS[0])?, pair(SPLITS[1])?];
        Ok(Tiling { block_rows, whole, split })
    }
}

/// The matrix product kernel for one weight format, with its pipelines built
/// for the device's capabilities: a subgroup-reduced decode kernel where the
/// device has subgroups, a workgroup-reduced one elsewhere.
pub struct Matmul {
    format: WeightFormat,
    program: Program,
    prefill: PrefillPipelines,
    /// The decode pipelines of each input form by its `INPUT` constant: x
    /// itself from the start, the fused forms when first bound.
    decode: Mutex<HashMap<u32, DecodePipelines>>,
    placeholder: wgpu::Buffer,
    /// The partial sums of split products, made at the first prefill binding.
    partials: Mutex<Option<wgpu::Buffer>>,
    /// Stands in for `partials` where a binding never splits (a writable
    /// binding must not share the read-only placeholder).
    no_partials: wgpu::Buffer,
    max_binding: u64,
    split_bytes: u64,
}

impl Matmul {
    /// Compiles the decode and prefill pipelines for `format`.
    pub fn new(ctx: &GpuContext, format: WeightFormat) -> Result<Matmul, KernelError> {
        let program = Program::new(ctx, format);
        let direct = MatmulInput::Direct.constant();
        Ok(Matmul {
            format,
            decode: Mutex::new(HashMap::from([(direct, program.compile_decode(ctx, direct)?)])),
            prefill: program.compile_prefill(ctx)?,
            program,
            placeholder: placeholder(ctx, "matmul placeholder"),
            partials: Mutex::default(),
            no_partials: placeholder(ctx, "matmul partials placeholder"),
            max_binding: buffers::max_binding(ctx),
            split_bytes: buffers::max_binding(ctx),
        })
    }

    /// The decode pipelines of `input` for parts of at most `tallest` rows (a
    /// fused input's compiled at its first binding, the tall kernel at the
    /// first binding that needs it).
    fn decode_pipelines(
        &self,
        ctx: &GpuContext,
        input: &MatmulInput<'_>,
        tallest: u32,
    ) -> Result<DecodePipelines, KernelError> {
        let constant = input.constant();
        let mut compiled = self.decode.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let pipelines = match compiled.entry(constant) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(self.program.compile_decode(ctx, constant)?),
        };
        self.program.compile_tall(ctx, pipelines, constant, tallest)?;
        Ok(pipelines.clone())
    }

    /// The weight format this kernel reads.
    pub fn format(&self) -> WeightFormat {
        self.format
    }

    /// Whether the decode kernel reduces with subgroup operations.
    pub fn uses_subgroups(&self) -> bool {
        self.program.subgroups
    }

    /// Whether the prefill products run on cooperative matrices (tensor cores).
    pub fn uses_cooperative_matrix(&self) -> bool {
        self.program.coop_source.is_some()
    }

    /// The largest storage binding used (the device's limit, at most 128 MiB);
    /// weights above it are split by rows, activations above it are an error.
    pub fn max_binding_size(&self) -> u64 {
        self.max_binding
    }

    /// Lowers the binding size above which weights are split by rows (tests use
    /// a tiny value to exercise the split path on small matrices; activations
    /// stay limited by the device).
    pub fn set_weight_split_bytes(&mut self, bytes: u64) {
        self.split_bytes = bytes.min(self.max_binding).max(4);
    }

    /// The partial-sum buffer of split products (made at the first call).
    fn partials(&self, ctx: &GpuContext) -> wgpu::Buffer {
        let mut partials = self.partials.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        partials
            .get_or_insert_with(|| {
                ctx.empty_storage_buffer("matmul partial sums", SPLIT_SCRATCH_BYTES)
            })
            .clone()
    }
}

impl Kernel for Matmul {
    type Buffers<'a> = MatmulBuffers<'a>;
    type Shape = MatmulShape;
    type Bound = Bound;

    /// Creates the bind groups and parameter uniforms of `y = input · Wᵀ …`
    /// for up to `shape.max_rows` rows of x.
    fn bind(
        &self,
        ctx: &GpuContext,
        buffers: &MatmulBuffers<'_>,
        shape: &MatmulShape,
    ) -> Result<Bound, KernelError> {
        let max_rows = shape.max_rows;
        let input = buffers.input;
        if !matches!(input, MatmulInput::Direct) && max_rows != 1 {
            return Err(KernelError::InvalidArguments(format!(
                "matmul: a fused input ({input:?}) is for one row, not {max_rows}"
            )));
        }
        let what = "matmul";
        let weight = &buffers.weight;
        let parts = weight.plan(what, self.format, self.split_bytes)?;
        let (n, k) = (weight.rows as u64, weight.cols as u64);
        let m = check_dimension("matmul: max_rows", max_rows as u64)? as u64;
        check_dimension("matmul: output size", m * n)?;
        check_dimension("matmul: input size", m * k)?;
        let x_width = match input {
            MatmulInput::Gated(_) => 2 * k,
            _ => k,
        };
        check_buffer("matmul: x", buffers.x, m * x_width * 4, self.max_binding)?;
        let (norm_weight, eps) = match input {
            MatmulInput::Normed { weight, eps } => {
                check_buffer(
                    "matmul: norm weight",
                    weight,
                    self.format.dtype().bytes(k),
                    self.max_binding,
                )?;
                (Some(weight), eps)
            }
            _ => (None, 0.0),
        };
        check_buffer("matmul: y", buffers.y, m * n * 4, self.max_binding)?;
        if let Some(bias) = buffers.bias {
            check_buffer("matmul: bias", bias, self.format.dtype().bytes(n), self.max_binding)?;
        }
        let residual = match buffers.residual {
            Residual::Buffer(residual) => {
                check_buffer("matmul: residual", residual, m * n * 4, self.max_binding)?;
                Some(residual)
            }
            _ => None,
        };
        check_distinct(
            what,
            buffers.y,
            &[
                Some(buffers.x),
                Some(weight.data),
                weight.scales,
                buffers.bias,
                residual,
                norm_weight,
            ],
        )?;
        // Products of several rows may be split over K (see `split_fits`).
        let partials = match max_rows > 1 {
            true => self.partials(ctx),
            false => self.no_partials.clone(),
        };
        let epilogue = buffers.bias.is_some() as u32
            | (residual.is_some() as u32) << 1
            | (matches!(buffers.residual, Residual::InPlace) as u32) << 2;

        let tallest = parts.iter().map(|&(_, count)| count as u32).max().unwrap_or(0);
        let bound_parts = parts
            .into_iter()
            .map(|(first, count)| {
                let params = params_buffer(
                    ctx,
                    "matmul params",
                    &[
                        max_rows,
                        count as u32,
                        k as u32,
                        first as u32,
                        n as u32,
                        epilogue,
                        eps.to_bits(),
                    ],
                );
                let [data, scales] = weight.resources(first, count, &self.placeholder);
                let group = bind_group(
                    ctx,
                    "matmul",
                    &self.program.layout,
                    &[
                        params.as_entire_binding(),
                        data,
                        scales,
                        buffers.x.as_entire_binding(),
                        buffers.bias.unwrap_or(&self.placeholder).as_entire_binding(),
                        residual.unwrap_or(&self.placeholder).as_entire_binding(),
                        buffers.y.as_entire_binding(),
                        norm_weight.unwrap_or(&self.placeholder).as_entire_binding(),
                        partials.as_entire_binding(),
                    ],
                );
                Part { bind_group: group, params, extent: count as u32 }
            })
            .collect();
        let schedule = MatmulSchedule {
            decode: self.decode_pipelines(ctx, &input, tallest)?,
            prefill: matches!(input, MatmulInput::Direct).then(|| self.prefill.clone()),
            k: k as u32,
            matvec_rows: [
                self.program.matvec_rows(NARROW_ROWS_PER_THREAD),
                self.program.matvec_rows(WIDE_ROWS_PER_THREAD),
                self.program.matvec_rows(TALL_ROWS_PER_THREAD),
            ],
            max_rows,
        };
        Ok(Bound::new(ctx, "matmul", bound_parts, schedule))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The products of a 0.5B model (Qwen2.5's shapes) at the row counts of
    /// a batched decode step and of a prefill.
    #[test]
    fn products_split_over_k_as_far_as_their_blocks_need() {
        let blocks = |rows: u32, n: u32| n.div_ceil(BLOCK) * rows.div_ceil(BLOCK);
        let choice = |rows: u32, n: u32| split_choice(blocks(rows, n), rows, n).map(|i| SPLITS[i]);
        // 32 rows: down_proj and o_proj (n = 896, 7 blocks) and q/k/v (1152,
        // 9 blocks) take sixteen splits, gate_up (9728, 76 blocks) four, and
        // lm_head (151936) fills the GPU unsplit.
        assert_eq!(choice(32, 896), Some(16));
        assert_eq!(choice(32, 1152), Some(16));
        assert_eq!(choice(32, 9728), Some(4));
        assert_eq!(choice(32, 151_936), None);
        // 512 rows of down_proj: sixteen splits' partial sums would not fit.
        assert!(!split_fits(16, 512, 896));
        assert_eq!(choice(512, 896), Some(4));
        // 1,024 rows: 56 blocks, but not even four splits fit; 4,096 rows:
        // enough blocks.
        assert!(!split_fits(4, 1024, 896));
        assert_eq!(choice(1024, 896), None);
        assert_eq!(choice(4096, 896), None);
    }

    /// The 8-rows-a-thread kernel is compiled only for a part of a
    /// vocabulary's rows, and only where subgroups can reduce it: a
    /// model's other products and fused forms do not pay for it at load.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn the_tall_kernel_is_compiled_only_for_a_vocabulary_sized_part() {
        let ctx = GpuContext::new_blocking(&crate::ContextOptions::default())
            .expect("a GPU adapter (lavapipe in CI)");
        let program = Program::new(&ctx, WeightFormat::Q4(FloatFormat::F16));
        let input = MatmulInput::Direct.constant();
        let mut pipelines = program.compile_decode(&ctx, input).unwrap();
        assert!(pipelines.tall.is_none());
        program.compile_tall(&ctx, &mut pipelines, input, 9728).unwrap();
        assert!(pipelines.tall.is_none(), "gate_up's 9,728 rows take the wide kernel");
        program.compile_tall(&ctx, &mut pipelines, input, TALL_FROM_ROWS).unwrap();
        assert_eq!(pipelines.tall.is_some(), program.subgroups);
    }

    /// The tensor-core kernels' source is valid WGSL for naga, also where
    /// the adapter has no cooperative matrices to compile it for (lavapipe,
    /// CI): a device run is then the first to build it, not the first to
    /// find a typo.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn the_cooperative_matrix_source_validates() {
        for format in [FloatFormat::F16, FloatFormat::F32] {
            let (weights, _) = WeightFormat::Q4(format).shader_prefix();
            crate::context::assert_valid_wgsl(&coop_source(&weights));
        }
    }
}
