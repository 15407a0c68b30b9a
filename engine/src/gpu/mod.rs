//! The WebGPU backend: every op of the decoder is a WGSL dispatch recorded into
//! one compute pass per step, submitted when the host needs a result.
//!
//! Bind groups are built once. Each op call of a forward pass is a numbered
//! *slot*; activation buffers come from a pool that hands them out in the same
//! order every step, so a slot sees the same buffers each time and reuses the
//! bound kernel it made the first time (only the token count and position are
//! written per step). A decode step therefore allocates nothing, submits once,
//! and reads back 4 bytes: the token id (with log probabilities, also its
//! probability and the top ids'). The penalties' counts stay on the GPU.
//!
//! This file holds the ops (the [`Backend`] implementation: which kernel each
//! op binds, with which buffers and shape); `recorder.rs` the slots, the pool
//! and the compute pass; `readback.rs` the submissions whose results come back.
//! Readbacks are futures ([`mlc_kernels::readback`]): natively `device.poll`
//! waits for the GPU before the future is awaited, so it is ready at once; in
//! a browser the await hands control back to the event loop until WebGPU
//! resolves the map.

pub(crate) mod load;
mod readback;
mod recorder;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use web_time::Instant;

use mlc_kernels::attention::DEFAULT_MIN_CHUNK_LEN;
use mlc_kernels::cpu::{DeltaNetShape, KvLayout, RollingWindow};
use mlc_kernels::{
    Attention, AttentionBuffers, AttentionRows, AttentionScratch, AttentionShape, Bound, DeltaNet,
    DeltaNetBinding, DeltaNetBuffers, DeltaNetOp, Draw, Elementwise, ElementwiseBuffers,
    ElementwiseOp, ElementwiseShape, Embed, EmbedBuffers, EmbedShape, FloatFormat, GpuContext,
    GpuWeight, Kernel, MAX_BATCH_ROWS, Matmul, MatmulBuffers, MatmulInput, MatmulShape, QkNorm,
    Queries, Residual, RmsNorm, RmsNormBuffers, RmsNormShape, RollingBuffers, RollingCache,
    RollingShape, RopeAppend, RopeBuffers, RopeShape, RopeTable, RowDraw, RowLayout,
    SampleSettings, SampledResult, Sampler, SamplerBuffers, SamplerShape, SamplerWorkspace,
    WeightFormat, result_bytes,
};
use mlc_loader::{DType, Quantization, Tensor};

use crate::EngineError;
use crate::backend::{
    Backend, DeltaNetWeights, LinearSource, MatrixSource, PassInput, Placement, RowPlace,
};
use crate::models::{Activation, ModelSpec, QkNormWidth};
use crate::profile::{Profile, Profiler};
use crate::sampling::{Drawn, SamplingStep, TokenCounts};

pub use readback::GpuPending;
use recorder::{BoundOp, Pool, Slot};

/// How much the GPU engine allocates up front.
#[derive(Debug, Clone)]
pub struct GpuOptions {
    /// Most tokens one forward call processes (prefill is cut into chunks of this).
    pub max_rows: usize,
    /// KV cache positions; `None` takes `min(context_window_size, 4096)`.
    pub context_length: Option<usize>,
    /// Sequences held at once, each with its own KV cache, recurrent state
    /// and sampler (continuous batching; docs/ARCHITECTURE.md).
    pub sequences: usize,
}

impl Default for GpuOptions {
    /// Steps of up to 2,048 tokens, MLC's usual `prefill_chunk_size`
    /// ([`GpuOptions::for_model`] lowers it to the model's): a long prompt's
    /// passes then give the attention and the products enough blocks to fill
    /// a large GPU (on an H100 a 4,096-token prompt ran 31.6k tok/s in steps
    /// of 512 and of 1,024 rows, 38.0k in steps of 2,048; docs/performance.md).
    /// The activations of a 0.5B model take ~166 MB instead of ~41 MB.
    fn default() -> Self {
        GpuOptions { max_rows: 2048, context_length: None, sequences: 1 }
    }
}

impl GpuOptions {
    /// These options as a load of `spec` uses them, on a device whose
    /// largest storage binding the kernels use is `max_binding` bytes: a
    /// step takes at most the model's prefill chunk of rows (a rolling
    /// cache's, exactly that many: what its rows see depends on where each
    /// pass starts), and no more rows than keep the widest activation
    /// within one binding (each is bound whole).
    pub fn for_model(mut self, spec: &ModelSpec, max_binding: u64) -> GpuOptions {
        let chunk = spec.prefill_chunk_size.max(1);
        self.max_rows = match spec.rolling_window {
            Some(_) => self.max_rows.max(chunk),
            None => self.max_rows.min(chunk),
        };
        let rows_that_fit = max_binding / (4 * spec.widest_activation() as u64);
        self.max_rows = self.max_rows.min(rows_that_fit.max(1) as usize);
        self
    }

    /// KV cache positions for `spec`: `context_length`, default 4096, at
    /// most the model's context window; with a rolling cache the places a
    /// pass attends over, the window and a step's rows.
    pub fn kv_positions(&self, spec: &ModelSpec) -> usize {
        match spec.rolling_window {
            Some(window) => window.size + self.step_rows(),
            None => self.context_length.unwrap_or(4096).min(spec.context_window_size).max(1),
        }
    }

    /// Most tokens of one step (at least 1).
    pub fn step_rows(&self) -> usize {
        self.max_rows.max(1)
    }
}

/// Counters that show what a step cost (tests assert on them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuStats {
    /// Command buffers submitted.
    pub submissions: u64,
    /// Bytes copied back to the host.
    pub readback_bytes: u64,
    /// Buffers created for activations.
    pub activation_buffers: u64,
    /// Kernels bound (bind groups and parameter blocks created).
    pub bindings: u64,
    /// Host time spent recording forward passes: from the first op recorded
    /// after a submission to the next submission, summed.
    pub encode: Duration,
    /// Time from a submission to its readback's bytes on the host.
    pub wait: Duration,
}

/// Activations `[rows, cols]` (f32) in a pooled GPU buffer sized for the
/// largest step; returned to the pool when dropped.
pub struct GpuTensor {
    buffer: wgpu::Buffer,
    rows: usize,
    cols: usize,
    /// Rows the buffer holds (what its kernels are bound for).
    capacity: usize,
    pool: Rc<RefCell<Pool>>,
}

impl Drop for GpuTensor {
    fn drop(&mut self) {
        self.pool.borrow_mut().release(self.buffer.clone());
    }
}

/// A linear layer's weight (as stored in the shard) and bias on the GPU.
pub struct GpuLinear {
    format: WeightFormat,
    rows: usize,
    cols: usize,
    data: wgpu::Buffer,
    scales: Option<wgpu::Buffer>,
    bias: Option<wgpu::Buffer>,
}

impl GpuLinear {
    fn weight(&self) -> GpuWeight<'_> {
        GpuWeight {
            format: self.format,
            rows: self.rows as u32,
            cols: self.cols as u32,
            data: &self.data,
            scales: self.scales.as_ref(),
        }
    }
}

/// The kernels of one model, compiled for its weight format and head size.
struct Kernels {
    matmul: Matmul,
    embed: Embed,
    norm: RmsNorm,
    elementwise: Elementwise,
    rope: RopeAppend,
    attention: Attention,
    sampler: Sampler,
    /// Qwen3.5's ops (the gated attention output, the Gated DeltaNet layers),
    /// compiled only for a model that has them.
    delta_net: Option<DeltaNet>,
    /// A rolling KV cache's gather and keep, for a model that has one.
    rolling: Option<RollingCache>,
}

/// Per-model GPU state created by [`Backend::prepare`].
struct Prepared {
    kernels: Kernels,
    dtype: FloatFormat,
    capacity: usize,
    rope_table: RopeTable,
    scratch: AttentionScratch,
    /// Each attention layer's K and V cache in `dtype`: every sequence's positions side
    /// by side (`[sequences, kv_heads, capacity, head_dim]`), so that one
    /// dispatch attends rows of several sequences. With a rolling cache, what
    /// a pass attends over: the held tokens gathered from `rings`, then the
    /// pass's rows.
    kv: Vec<(wgpu::Buffer, wgpu::Buffer)>,
    /// A rolling cache's rings, each layer's unrotated keys and values of the
    /// tokens it holds (`[sequences, kv_heads, window, head_dim]`); none
    /// without one.
    rings: Vec<(wgpu::Buffer, wgpu::Buffer)>,
    /// The rows of a batched step, for the attention kernel.
    batch_rows: AttentionRows,
    /// Each sequence's recurrent states.
    sequences: Vec<SequenceBuffers>,
    /// Every sequence's sampler state (penalty counts, bias, mask, drawn
    /// token) and the rows of the next draw.
    sampling: SamplerWorkspace,
    /// The sequence passes and draws act on ([`Backend::select_sequence`]).
    selected: usize,
    /// Where the unfused forms of `norm_linear` and `gated_linear_add` put the
    /// norm or activation before the product (consumed at once, so shared by
    /// every slot; replaced by a larger one when a slot needs more).
    norm_scratch: Option<wgpu::Buffer>,
    gated_scratch: Option<wgpu::Buffer>,
    tokens: wgpu::Buffer,
}

/// What the GPU engine keeps for one sequence besides its KV cache.
struct SequenceBuffers {
    /// Each Gated DeltaNet layer's convolution window and state (f32, zero at
    /// the start of a sequence), by layer.
    recurrent: Vec<Option<(wgpu::Buffer, wgpu::Buffer)>>,
}

impl SequenceBuffers {
    fn new(ctx: &GpuContext, spec: &ModelSpec) -> SequenceBuffers {
        // A Gated DeltaNet layer has a convolution window and a state.
        let recurrent = (0..spec.num_layers)
            .map(|l| {
                spec.linear_layer(l).map(|shape| {
                    let window = (shape.conv_kernel - 1).max(1) * shape.conv_channels() * 4;
                    let state = shape.value_heads * shape.key_dim * shape.value_dim * 4;
                    (
                        ctx.empty_storage_buffer("conv window", window as u64),
                        ctx.empty_storage_buffer("delta state", state as u64),
                    )
                })
            })
            .collect();
        SequenceBuffers { recurrent }
    }
}

/// The GPU backend.
pub struct GpuBackend {
    ctx: GpuContext,
    options: GpuOptions,
    prepared: Option<Prepared>,
    /// The load's error scopes, still to be awaited (a browser's).
    #[cfg(target_arch = "wasm32")]
    load_check: Option<load::LoadCheck>,
    pool: Rc<RefCell<Pool>>,
    slots: Vec<Option<Slot>>,
    next_slot: usize,
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    /// Ops recorded since the last submission.
    unsubmitted: usize,
    staging: Option<wgpu::Buffer>,
    /// Staging buffers for sampled results (token ids, log probabilities),
    /// free for the next submission.
    token_staging: Vec<wgpu::Buffer>,
    stats: GpuStats,
    /// When the recording now under way began.
    encode_started: Option<Instant>,
    profiler: Option<Profiler>,
}

impl GpuBackend {
    /// A backend on `ctx`; the model-specific state is built by `prepare`.
    pub fn new(ctx: GpuContext, options: GpuOptions) -> GpuBackend {
        GpuBackend {
            ctx,
            options,
            prepared: None,
            #[cfg(target_arch = "wasm32")]
            load_check: None,
            pool: Rc::default(),
            slots: Vec::new(),
            next_slot: 0,
            encoder: None,
            pass: None,
            unsubmitted: 0,
            staging: None,
            token_staging: Vec::new(),
            stats: GpuStats::default(),
            encode_started: None,
            profiler: None,
        }
    }

    /// What loading `artifact` as `spec` allocates on this device with these options.
    pub fn memory_plan(
        &self,
        spec: &ModelSpec,
        artifact: &mlc_loader::Artifact,
    ) -> crate::memory::MemoryPlan {
        let positions = self.options.kv_positions(spec);
        crate::memory::MemoryPlan::new(
            spec,
            &artifact.index,
            artifact.quantization(),
            positions,
            self.options.sequences,
            self.max_rows(),
            self.max_binding(),
        )
    }

    /// Keeps the load's error-scope results for [`GpuBackend::settle`].
    #[cfg(target_arch = "wasm32")]
    pub fn defer_load_check(&mut self, check: load::LoadCheck) {
        self.load_check = Some(check);
    }

    /// Waits for what the device has not reported yet (in a browser: the
    /// load's error scopes, shader compilations) and fails if the load ran
    /// out of memory, a shader failed, an error went uncaptured, or the
    /// device was lost. Natively everything is known already.
    pub async fn settle(&mut self) -> Result<(), EngineError> {
        #[cfg(target_arch = "wasm32")]
        if let Some(check) = self.load_check.take() {
            check.result().await?;
        }
        Ok(self.ctx.health().settle().await?)
    }

    /// The device this backend runs on.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Work counters since the backend was made.
    pub fn stats(&self) -> GpuStats {
        GpuStats { activation_buffers: self.pool.borrow().created, ..self.stats }
    }

    /// Times every kernel of the following forward passes with GPU timestamps
    /// (see [`crate::profile`]); fails where the adapter cannot. Steps must
    /// be taken one at a time meanwhile: the stamps of a step queued while
    /// another is still running would overwrite the other's.
    pub fn start_profiling(&mut self) -> Result<(), EngineError> {
        self.profiler = Some(Profiler::new(&self.ctx)?);
        Ok(())
    }

    /// Stops profiling and returns what was measured since it started.
    pub fn stop_profiling(&mut self) -> Option<Profile> {
        self.profiler.take().map(|mut profiler| profiler.take())
    }

    /// The selected sequence's buffers.
    fn sequence(&self) -> &SequenceBuffers {
        let prepared = self.prepared();
        &prepared.sequences[prepared.selected]
    }

    fn prepared(&self) -> &Prepared {
        self.prepared.as_ref().expect("Backend::prepare runs before any op")
    }

    fn max_rows(&self) -> usize {
        self.options.step_rows()
    }

    /// A pooled `[rows, cols]` tensor. Its buffer holds `max_rows` rows, so the
    /// same buffer (and bound kernels) serve every step, unless that would
    /// exceed one storage binding (logits of a large vocabulary): then it holds
    /// exactly `rows`.
    fn tensor(&mut self, rows: usize, cols: usize) -> GpuTensor {
        let full = self.max_rows().max(rows);
        let capacity = if (full * cols * 4) as u64 <= self.max_binding() { full } else { rows };
        let buffer = self.pool.borrow_mut().acquire(&self.ctx, (capacity * cols * 4) as u64);
        GpuTensor { buffer, rows, cols, capacity, pool: self.pool.clone() }
    }

    /// The largest storage binding the kernels use.
    fn max_binding(&self) -> u64 {
        mlc_kernels::buffers::max_binding(&self.ctx)
    }
}

/// The WGSL weight format of an artifact's quantization.
fn weight_format(quantization: Quantization) -> (WeightFormat, FloatFormat) {
    match quantization {
        Quantization::Q4F16_1 => (WeightFormat::Q4(FloatFormat::F16), FloatFormat::F16),
        Quantization::Q4F32_1 => (WeightFormat::Q4(FloatFormat::F32), FloatFormat::F32),
        Quantization::Q0F16 => (WeightFormat::Dense(FloatFormat::F16), FloatFormat::F16),
        Quantization::Q0F32 => (WeightFormat::Dense(FloatFormat::F32), FloatFormat::F32),
    }
}

/// The bytes of `tensor` in the model's float dtype (f16 bits or f32),
/// converting when the artifact stored another float type.
fn float_bytes(tensor: &Tensor<'_>, dtype: FloatFormat) -> Result<Vec<u8>, EngineError> {
    Ok(match (tensor.dtype, dtype) {
        (DType::F16, FloatFormat::F16) | (DType::F32, FloatFormat::F32) => tensor.bytes.to_vec(),
        (_, FloatFormat::F32) => bytemuck::cast_slice(&tensor.to_f32_vec()?).to_vec(),
        (_, FloatFormat::F16) => {
            let halves: Vec<u16> = tensor
                .to_f32_vec()?
                .into_iter()
                .map(|v| half::f16::from_f32(v).to_bits())
                .collect();
            bytemuck::cast_slice(&halves).to_vec()
        }
    })
}

impl Backend for GpuBackend {
    type Tensor = GpuTensor;
    type Linear = GpuLinear;
    type Vector = wgpu::Buffer;
    type Pending = GpuPending;

    fn prepare(&mut self, spec: &ModelSpec, quantization: Quantization) -> Result<(), EngineError> {
        let ctx = &self.ctx;
        let (format, dtype) = weight_format(quantization);
        let kernels = Kernels {
            matmul: Matmul::new(ctx, format)?,
            embed: Embed::new(ctx, format)?,
            norm: RmsNorm::new(ctx, dtype)?,
            elementwise: Elementwise::new(ctx)?,
            // The KV cache stores the model's activation type, as MLC's does.
            rope: RopeAppend::new(ctx, dtype)?,
            attention: Attention::new(ctx, spec.head_dim, dtype)?,
            sampler: Sampler::new(ctx)?,
            delta_net: match spec.recurrent() || spec.attention_output_gate {
                true => Some(DeltaNet::new(ctx, dtype)?),
                false => None,
            },
            rolling: match spec.rolling_window {
                Some(_) => Some(RollingCache::new(ctx, dtype)?),
                None => None,
            },
        };
        let capacity = self.options.kv_positions(spec);
        let sequences = self.options.sequences.max(1);
        let layout = KvLayout { kv_heads: spec.num_kv_heads, capacity, head_dim: spec.head_dim };
        let cache_bytes = dtype.kv_cache_bytes(sequences, layout);
        // A Gated DeltaNet layer has no KV cache (a word stands in for it).
        let kv = (0..spec.num_layers)
            .map(|l| {
                let bytes = if spec.linear_layer(l).is_some() { 4 } else { cache_bytes };
                (
                    ctx.empty_storage_buffer("k cache", bytes),
                    ctx.empty_storage_buffer("v cache", bytes),
                )
            })
            .collect();
        let rings = match spec.rolling_window {
            Some(window) => {
                let bytes =
                    (sequences * spec.num_kv_heads * window.size * spec.head_dim * 4) as u64;
                let ring = |label| ctx.empty_storage_buffer(label, bytes);
                (0..spec.num_layers).map(|_| (ring("k ring"), ring("v ring"))).collect()
            }
            None => Vec::new(),
        };
        let batch_rows = sequences.min(MAX_BATCH_ROWS);
        let max_rows = self.max_rows();
        self.prepared = Some(Prepared {
            kernels,
            dtype,
            capacity,
            rope_table: RopeTable::new(ctx, &spec.rope(), capacity)?,
            scratch: AttentionScratch::new(
                ctx,
                spec.num_heads,
                spec.head_dim,
                capacity,
                batch_rows,
            ),
            kv,
            rings,
            batch_rows: AttentionRows::new(ctx, sequences, capacity),
            sequences: (0..sequences).map(|_| SequenceBuffers::new(ctx, spec)).collect(),
            sampling: SamplerWorkspace::new(ctx, spec.vocab_size, sequences)?,
            selected: 0,
            norm_scratch: None,
            gated_scratch: None,
            tokens: ctx.empty_storage_buffer("tokens", (max_rows * 4) as u64),
        });
        Ok(())
    }

    fn max_sequences(&self) -> usize {
        self.options.sequences.max(1)
    }

    fn select_sequence(&mut self, sequence: usize) -> Result<(), EngineError> {
        let prepared = self.prepared.as_mut().ok_or_else(|| {
            EngineError::Config("the GPU engine selects a sequence after prepare".into())
        })?;
        if sequence >= prepared.sequences.len() {
            return Err(EngineError::Unsupported(format!(
                "sequence {sequence}: this GPU engine holds {} (GpuOptions::sequences)",
                prepared.sequences.len()
            )));
        }
        prepared.selected = sequence;
        Ok(())
    }

    fn max_tokens_per_call(&self, spec: &ModelSpec, all_logits: bool) -> usize {
        let capacity = self.prepared.as_ref().map_or(self.max_rows(), |p| p.capacity);
        let mut rows = self.max_rows().min(capacity);
        if all_logits {
            // The logits of every row must fit one storage binding.
            rows = rows.min((self.max_binding() / (spec.vocab_size as u64 * 4)).max(1) as usize);
        }
        rows
    }

    fn context_capacity(&self, spec: &ModelSpec) -> usize {
        match spec.rolling_window {
            // The rings bound memory, not the sequence.
            Some(_) => spec.context_window_size,
            None => self.prepared.as_ref().map_or(spec.context_window_size, |p| p.capacity),
        }
    }

    fn load_linear(&mut self, source: &LinearSource<'_>) -> Result<GpuLinear, EngineError> {
        let dtype = self.prepared().dtype;
        let label = source.name.as_str();
        // The weight's format is how its source stores it, floats in the model's dtype.
        let (format, data, scales) = match &source.matrix {
            MatrixSource::Q4 { q_weight, q_scale } => (
                WeightFormat::Q4(dtype),
                self.ctx.storage_buffer(label, &q_weight.bytes),
                Some(self.ctx.storage_buffer(label, &float_bytes(q_scale, dtype)?)),
            ),
            MatrixSource::Dense(values) => (
                WeightFormat::Dense(dtype),
                self.ctx.storage_buffer(label, &float_bytes(values, dtype)?),
                None,
            ),
        };
        let bias = match &source.bias {
            Some(bias) => Some(self.ctx.storage_buffer(label, &float_bytes(bias, dtype)?)),
            None => None,
        };
        Ok(GpuLinear { format, rows: source.rows, cols: source.cols, data, scales, bias })
    }

    fn load_vector(&mut self, source: &Tensor<'_>) -> Result<wgpu::Buffer, EngineError> {
        let bytes = float_bytes(source, self.prepared().dtype)?;
        Ok(self.ctx.storage_buffer(source.name, &bytes))
    }

    fn begin(&mut self, input: PassInput<'_>) -> Result<(), EngineError> {
        // Parameter and token writes apply at the next submission, so work
        // recorded by an earlier call (a prefill chunk) must be submitted first.
        self.flush();
        self.begin_step();
        self.encode_started.get_or_insert_with(Instant::now);
        let prepared = self.prepared();
        let tokens = prepared.tokens.clone();
        let token_out = prepared.sampling.token_buffer().clone();
        let token_offset = prepared.sampling.token_offset(prepared.selected);
        match input {
            PassInput::Tokens(ids) => {
                self.ctx.queue.write_buffer(&tokens, 0, bytemuck::cast_slice(ids))
            }
            // Copied in the command stream, after the queued step that samples it.
            PassInput::Queued => {
                let encoder = self.encoder.get_or_insert_with(|| {
                    self.ctx.device.create_command_encoder(&Default::default())
                });
                encoder.copy_buffer_to_buffer(&token_out, token_offset, &tokens, 0, 4);
            }
            // The host's tokens land first (a queue write precedes the
            // submission's commands), then each device token is copied over
            // its row's placeholder.
            PassInput::Rows(rows) => {
                let ids: Vec<u32> = rows.iter().map(|row| row.token.unwrap_or(0)).collect();
                self.ctx.queue.write_buffer(&tokens, 0, bytemuck::cast_slice(&ids));
                let sampling = &self.prepared().sampling;
                let copies: Vec<(u64, u64)> = rows
                    .iter()
                    .enumerate()
                    .filter(|(_, row)| row.token.is_none())
                    .map(|(i, row)| (sampling.token_offset(row.sequence), 4 * i as u64))
                    .collect();
                if !copies.is_empty() {
                    let encoder = self.encoder.get_or_insert_with(|| {
                        self.ctx.device.create_command_encoder(&Default::default())
                    });
                    for (from, to) in copies {
                        encoder.copy_buffer_to_buffer(&token_out, from, &tokens, to, 4);
                    }
                }
            }
        }
        Ok(())
    }

    fn embed(
        &mut self,
        table: &GpuLinear,
        input: PassInput<'_>,
        scale: f32,
    ) -> Result<GpuTensor, EngineError> {
        // A queued token is not checked here: an invalid one (non-finite
        // logits) is reported by `take_token`, and its successor discarded.
        let outside = |token: &u32| *token as usize >= table.rows;
        let host_token_outside = match input {
            PassInput::Tokens(tokens) => tokens.iter().copied().find(outside),
            PassInput::Queued => None,
            PassInput::Rows(rows) => rows.iter().filter_map(|row| row.token).find(outside),
        };
        if let Some(token) = host_token_outside {
            return Err(EngineError::TokenOutOfRange { token, vocab_size: table.rows });
        }
        let out = self.tensor(input.len(), table.cols);
        let token_buffer = self.prepared().tokens.clone();
        let max_rows = out.capacity.min(self.max_rows()) as u32;
        let key = vec![table.data.clone(), token_buffer.clone(), out.buffer.clone()];
        let slot = self.slot(
            || "embed".into(),
            key,
            |b| {
                let buffers =
                    EmbedBuffers { table: table.weight(), tokens: &token_buffer, out: &out.buffer };
                let shape = EmbedShape { max_tokens: max_rows, scale };
                Ok(BoundOp::Plain(b.prepared().kernels.embed.bind(&b.ctx, &buffers, &shape)?))
            },
        )?;
        self.record(slot, input.len(), 0)?;
        Ok(out)
    }

    fn rms_norm(
        &mut self,
        x: &GpuTensor,
        weight: &wgpu::Buffer,
        eps: f32,
    ) -> Result<GpuTensor, EngineError> {
        self.norm(x, weight, None, eps)
    }

    fn layer_norm(
        &mut self,
        x: &GpuTensor,
        weight: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        eps: f32,
    ) -> Result<GpuTensor, EngineError> {
        self.norm(x, weight, Some(bias), eps)
    }

    fn linear(&mut self, x: &GpuTensor, linear: &GpuLinear) -> Result<GpuTensor, EngineError> {
        let out = self.tensor(x.rows, linear.rows);
        self.matmul(x, linear, (&out.buffer, out.capacity), Residual::None)?;
        Ok(out)
    }

    fn linear_add(
        &mut self,
        x: &GpuTensor,
        linear: &GpuLinear,
        residual: &mut GpuTensor,
    ) -> Result<(), EngineError> {
        let y = residual.buffer.clone();
        self.matmul(x, linear, (&y, residual.capacity), Residual::InPlace)
    }

    fn add(&mut self, residual: &mut GpuTensor, x: &GpuTensor) -> Result<(), EngineError> {
        let max_rows = residual.capacity.min(x.capacity) as u32;
        let key = vec![residual.buffer.clone(), x.buffer.clone()];
        let slot = self.slot(
            || "add".into(),
            key,
            |b| {
                let buffers = ElementwiseBuffers { input: &x.buffer, out: &residual.buffer };
                let shape =
                    ElementwiseShape { op: ElementwiseOp::Add, max_rows, width: x.cols as u32 };
                Ok(BoundOp::Plain(b.prepared().kernels.elementwise.bind(&b.ctx, &buffers, &shape)?))
            },
        )?;
        self.record(slot, x.rows, 0)
    }

    fn softcap(&mut self, x: &GpuTensor, cap: f32) -> Result<GpuTensor, EngineError> {
        let out = self.tensor(x.rows, x.cols);
        let max_rows = x.capacity.min(out.capacity) as u32;
        let key = vec![x.buffer.clone(), out.buffer.clone()];
        let slot = self.slot(
            || "softcap".into(),
            key,
            |b| {
                let buffers = ElementwiseBuffers { input: &x.buffer, out: &out.buffer };
                let op = ElementwiseOp::Softcap(cap);
                let shape = ElementwiseShape { op, max_rows, width: x.cols as u32 };
                Ok(BoundOp::Plain(b.prepared().kernels.elementwise.bind(&b.ctx, &buffers, &shape)?))
            },
        )?;
        self.record(slot, x.rows, 0)?;
        Ok(out)
    }

    fn activation(
        &mut self,
        x: &GpuTensor,
        activation: Activation,
    ) -> Result<GpuTensor, EngineError> {
        let out = self.tensor(x.rows, x.cols);
        let max_rows = x.capacity.min(out.capacity) as u32;
        let key = vec![x.buffer.clone(), out.buffer.clone()];
        let slot = self.slot(
            || format!("{activation:?}"),
            key,
            |b| {
                let buffers = ElementwiseBuffers { input: &x.buffer, out: &out.buffer };
                let op = ElementwiseOp::Plain(activation);
                let shape = ElementwiseShape { op, max_rows, width: x.cols as u32 };
                Ok(BoundOp::Plain(b.prepared().kernels.elementwise.bind(&b.ctx, &buffers, &shape)?))
            },
        )?;
        self.record(slot, x.rows, 0)?;
        Ok(out)
    }

    fn gated(
        &mut self,
        gate_up: &GpuTensor,
        activation: Activation,
    ) -> Result<GpuTensor, EngineError> {
        let intermediate = gate_up.cols / 2;
        let out = self.tensor(gate_up.rows, intermediate);
        let max_rows = gate_up.capacity.min(out.capacity) as u32;
        let key = vec![gate_up.buffer.clone(), out.buffer.clone()];
        let slot = self.slot(
            || format!("{activation:?} gate"),
            key,
            |b| {
                let buffers = ElementwiseBuffers { input: &gate_up.buffer, out: &out.buffer };
                let op = ElementwiseOp::Gated(activation);
                let shape = ElementwiseShape { op, max_rows, width: intermediate as u32 };
                Ok(BoundOp::Plain(b.prepared().kernels.elementwise.bind(&b.ctx, &buffers, &shape)?))
            },
        )?;
        self.record(slot, gate_up.rows, 0)?;
        Ok(out)
    }

    fn norm_linear(
        &mut self,
        x: &GpuTensor,
        norm: &wgpu::Buffer,
        eps: f32,
        linear: &GpuLinear,
    ) -> Result<GpuTensor, EngineError> {
        let out = self.tensor(x.rows, linear.rows);
        let max_rows = x.capacity.min(out.capacity) as u32;
        let scratch =
            self.scratch(|p| &mut p.norm_scratch, "normed activations", max_rows as usize * x.cols);
        let mut key = vec![x.buffer.clone(), norm.clone(), linear.data.clone(), out.buffer.clone()];
        key.extend(linear.bias.clone());
        let name = || format!("rms_norm+matmul {}x{}", linear.cols, linear.rows);
        let slot = self.slot(name, key, |b| {
            let kernels = &b.prepared().kernels;
            let product = MatmulBuffers {
                x: &x.buffer,
                input: MatmulInput::Normed { weight: norm, eps },
                weight: linear.weight(),
                bias: linear.bias.as_ref(),
                residual: Residual::None,
                y: &out.buffer,
            };
            let decode = kernels.matmul.bind(&b.ctx, &product, &MatmulShape { max_rows: 1 })?;
            let shape = RmsNormShape::rows(max_rows, x.cols as u32, eps);
            let norm = kernels.norm.bind(
                &b.ctx,
                &RmsNormBuffers { x: &x.buffer, weight: norm, bias: None, y: Some(&scratch) },
                &shape,
            )?;
            let separate = MatmulBuffers { x: &scratch, input: MatmulInput::Direct, ..product };
            let product = kernels.matmul.bind(&b.ctx, &separate, &MatmulShape { max_rows })?;
            Ok(BoundOp::Fused { decode, separate: vec![norm, product] })
        })?;
        self.record(slot, x.rows, 0)?;
        Ok(out)
    }

    fn gated_linear_add(
        &mut self,
        gate_up: &GpuTensor,
        activation: Activation,
        linear: &GpuLinear,
        residual: &mut GpuTensor,
    ) -> Result<(), EngineError> {
        let y = residual.buffer.clone();
        let max_rows = gate_up.capacity.min(residual.capacity) as u32;
        let scratch = self.scratch(
            |p| &mut p.gated_scratch,
            "gated activations",
            max_rows as usize * linear.cols,
        );
        let mut key = vec![gate_up.buffer.clone(), linear.data.clone(), y.clone()];
        key.extend(linear.bias.clone());
        let name =
            || format!("{activation:?} gate+matmul {}x{} +residual", linear.cols, linear.rows);
        let slot = self.slot(name, key, |b| {
            let kernels = &b.prepared().kernels;
            let product = MatmulBuffers {
                x: &gate_up.buffer,
                input: MatmulInput::Gated(activation),
                weight: linear.weight(),
                bias: linear.bias.as_ref(),
                residual: Residual::InPlace,
                y: &y,
            };
            let decode = kernels.matmul.bind(&b.ctx, &product, &MatmulShape { max_rows: 1 })?;
            let gated = kernels.elementwise.bind(
                &b.ctx,
                &ElementwiseBuffers { input: &gate_up.buffer, out: &scratch },
                &ElementwiseShape {
                    op: ElementwiseOp::Gated(activation),
                    max_rows,
                    width: linear.cols as u32,
                },
            )?;
            let separate = MatmulBuffers { x: &scratch, input: MatmulInput::Direct, ..product };
            let product = kernels.matmul.bind(&b.ctx, &separate, &MatmulShape { max_rows })?;
            Ok(BoundOp::Fused { decode, separate: vec![gated, product] })
        })?;
        self.record(slot, gate_up.rows, 0)
    }

    fn attention(
        &mut self,
        spec: &ModelSpec,
        layer: usize,
        qkv: &GpuTensor,
        qk_norm: Option<&(wgpu::Buffer, wgpu::Buffer)>,
        place: Placement<'_>,
    ) -> Result<GpuTensor, EngineError> {
        let (heads, kv_heads, d) = (spec.num_heads, spec.num_kv_heads, spec.head_dim);
        // A rolling cache gathers what the sequence holds before the pass's
        // rows are rotated and appended after it: a batched step's rows each
        // over their own sequence, and the pass at its place in the window.
        let place = match (spec.rolling_window, place) {
            (Some(_), Placement::Rows(rows)) => {
                return self.attention_by_row(spec, layer, qkv, qk_norm, rows);
            }
            (Some(window), Placement::Run { start }) => {
                self.roll(spec, layer, qkv, window, start)?;
                Placement::Run { start: window.held(start) }
            }
            (None, place) => place,
        };
        // Without a per-head norm a decode step's attention rotates and
        // appends by itself: one dispatch and one parameter write fewer per
        // layer, and a batched step's rows take the same dispatch.
        let all_heads_norm = spec.qk_norm == Some(QkNormWidth::AllHeads);
        let appends = (qk_norm.is_none() || all_heads_norm)
            && self.prepared().kernels.attention.appends_for(heads, kv_heads);
        if let Placement::Rows(rows) = place
            && !(appends && rows.len() <= MAX_BATCH_ROWS)
        {
            return self.attention_by_row(spec, layer, qkv, qk_norm, rows);
        }
        // A norm across all heads runs before the rotation, in place on the
        // q and k spans of the qkv rows; the rope kernel norms only per head.
        let qk_norm = match (qk_norm, all_heads_norm) {
            (Some((q_norm, k_norm)), true) => {
                self.norm_span(qkv, 0, heads * d, q_norm, spec.rms_norm_eps)?;
                self.norm_span(qkv, heads * d, kv_heads * d, k_norm, spec.rms_norm_eps)?;
                None
            }
            (qk_norm, _) => qk_norm,
        };
        let start = match place {
            Placement::Run { start } => start,
            Placement::Rows(rows) => return self.attention_rows(spec, layer, qkv, rows),
        };
        self.check_positions(start, qkv.rows)?;
        let q = self.tensor(qkv.rows, heads * d);
        let (k_cache, v_cache) = self.prepared().kv[layer].clone();

        let shape = self.rope_shape(spec);
        let bind_rope = |b: &Self| -> Result<Bound, EngineError> {
            let prepared = b.prepared();
            let buffers = RopeBuffers {
                qkv: &qkv.buffer,
                q_out: &q.buffer,
                k_cache: &k_cache,
                v_cache: &v_cache,
                table: &prepared.rope_table,
                norm: b.qk_norm(spec, qk_norm),
            };
            Ok(prepared.kernels.rope.bind(&b.ctx, &buffers, &shape)?)
        };
        if appends {
            let out = self.tensor(qkv.rows, heads * d);
            let key =
                vec![qkv.buffer.clone(), q.buffer.clone(), k_cache.clone(), out.buffer.clone()];
            let slot = self.slot(
                || "rope_append+attention".into(),
                key,
                |b| {
                    let projected =
                        Queries::Projected { qkv: &qkv.buffer, table: &b.prepared().rope_table };
                    let decode = b.bind_attention(spec, layer, projected, &out, false)?;
                    let attention =
                        b.bind_attention(spec, layer, Queries::Rotated(&q.buffer), &out, false)?;
                    Ok(BoundOp::Fused { decode, separate: vec![bind_rope(b)?, attention] })
                },
            )?;
            self.record(slot, qkv.rows, start)?;
            return Ok(out);
        }
        let mut key = vec![qkv.buffer.clone(), q.buffer.clone(), k_cache.clone()];
        key.extend(qk_norm.iter().flat_map(|(a, b)| [a.clone(), b.clone()]));
        let rope_slot =
            self.slot(|| "rope_append".into(), key, |b| Ok(BoundOp::Plain(bind_rope(b)?)))?;
        self.record(rope_slot, qkv.rows, start)?;
        let out = self.tensor(q.rows, q.cols);
        let key = vec![q.buffer.clone(), k_cache.clone(), out.buffer.clone()];
        let attention_slot = self.slot(
            || "attention".into(),
            key,
            |b| {
                Ok(BoundOp::Plain(b.bind_attention(
                    spec,
                    layer,
                    Queries::Rotated(&q.buffer),
                    &out,
                    false,
                )?))
            },
        )?;
        self.record(attention_slot, q.rows, start)?;
        Ok(out)
    }

    fn row(&mut self, x: &GpuTensor, index: usize) -> Result<GpuTensor, EngineError> {
        let out = self.tensor(1, x.cols);
        self.copy_row(x, index, &out, 0);
        Ok(out)
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn to_host(&mut self, x: &GpuTensor) -> Result<Vec<f32>, EngineError> {
        // `read` polls the device to completion before it awaits, so this
        // `block_on` never parks.
        pollster::block_on(self.read(x))
    }

    #[cfg(target_arch = "wasm32")]
    fn to_host(&mut self, _x: &GpuTensor) -> Result<Vec<f32>, EngineError> {
        Err(EngineError::BlockingReadback)
    }

    async fn read(&mut self, x: &GpuTensor) -> Result<Vec<f32>, EngineError> {
        let bytes = self.submit_and_read(&x.buffer.clone(), (x.rows * x.cols * 4) as u64).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes[..x.rows * x.cols * 4]))
    }

    fn queue_argmax(&mut self, logits: &GpuTensor) -> Result<GpuPending, EngineError> {
        let sequence = self.prepared().selected;
        let mut pending = self.queue_rows(logits, &[(sequence, None)])?;
        Ok(pending.pop().expect("one row, one token"))
    }

    async fn take_token(&mut self, pending: GpuPending) -> Result<Option<Drawn>, EngineError> {
        let GpuPending { staging, submitted, vocab, top } = pending;
        let bytes = self.read_submitted(&staging, result_bytes(top), submitted).await?;
        self.token_staging.push(staging);
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes);
        let SampledResult { token, probabilities } = SampledResult::from_words(&words, top, vocab);
        Ok(token.map(|token| Drawn { token, probabilities }))
    }

    fn queue_sample(
        &mut self,
        logits: &GpuTensor,
        step: &SamplingStep<'_>,
    ) -> Result<GpuPending, EngineError> {
        let sequence = self.prepared().selected;
        let mut pending = self.queue_rows(logits, &[(sequence, Some(step))])?;
        Ok(pending.pop().expect("one row, one token"))
    }

    /// Every row drawn by one sampler dispatch (rows in its grid, each with
    /// its sequence's counts, bias and mask) and one submission that brings
    /// every row's token back.
    fn queue_draws(
        &mut self,
        logits: &GpuTensor,
        draws: &[(usize, Option<&SamplingStep<'_>>)],
    ) -> Result<Vec<GpuPending>, EngineError> {
        let pending = self.queue_rows(logits, draws)?;
        if let Some(&(last, _)) = draws.last() {
            self.select_sequence(last)?;
        }
        Ok(pending)
    }

    fn split_query_gate(
        &mut self,
        spec: &ModelSpec,
        qkv: &GpuTensor,
    ) -> Result<(GpuTensor, GpuTensor), EngineError> {
        let width = spec.num_heads * spec.head_dim;
        let plain = self.tensor(qkv.rows, qkv.cols - width);
        let gate = self.tensor(qkv.rows, width);
        let op = DeltaNetOp::SplitQueryGate {
            heads: spec.num_heads as u32,
            head_dim: spec.head_dim as u32,
            rest: (qkv.cols - 2 * width) as u32,
        };
        let max_rows = qkv.capacity.min(plain.capacity).min(gate.capacity);
        let outputs = (&plain.buffer, Some(&gate.buffer));
        self.delta_net_op(
            "split_query_gate",
            op,
            max_rows,
            outputs,
            [Some(qkv), None, None],
            [None, None],
            qkv.rows,
        )?;
        Ok((plain, gate))
    }

    fn sigmoid_gate(&mut self, x: &GpuTensor, gate: &GpuTensor) -> Result<GpuTensor, EngineError> {
        let out = self.tensor(x.rows, x.cols);
        let op = DeltaNetOp::SigmoidGate { width: x.cols as u32 };
        let max_rows = x.capacity.min(gate.capacity).min(out.capacity);
        let inputs = [Some(x), Some(gate), None];
        self.delta_net_op(
            "sigmoid_gate",
            op,
            max_rows,
            (&out.buffer, None),
            inputs,
            [None, None],
            x.rows,
        )?;
        Ok(out)
    }

    fn delta_net(
        &mut self,
        shape: &DeltaNetShape,
        layer: usize,
        qkv: &GpuTensor,
        a: &GpuTensor,
        b: &GpuTensor,
        weights: &DeltaNetWeights<Self>,
    ) -> Result<GpuTensor, EngineError> {
        let (window, state) = self.sequence().recurrent[layer].clone().ok_or_else(|| {
            EngineError::Config(format!("layer {layer} is not a Gated DeltaNet layer"))
        })?;
        let convolved = self.tensor(qkv.rows, qkv.cols);
        let max_rows = qkv.capacity.min(convolved.capacity);
        self.delta_net_op(
            "conv_silu",
            DeltaNetOp::ConvSilu(*shape),
            max_rows,
            (&convolved.buffer, Some(&window)),
            [Some(qkv), None, None],
            [Some(&weights.conv), None],
            qkv.rows,
        )?;
        let out = self.tensor(qkv.rows, shape.value_width());
        let max_rows = max_rows.min(a.capacity).min(b.capacity).min(out.capacity);
        self.delta_net_op(
            "delta_rule",
            DeltaNetOp::Rule(*shape),
            max_rows,
            (&out.buffer, Some(&state)),
            [Some(&convolved), Some(a), Some(b)],
            [Some(&weights.a_log), Some(&weights.dt_bias)],
            qkv.rows,
        )?;
        Ok(out)
    }

    fn gated_rms_norm(
        &mut self,
        shape: &DeltaNetShape,
        x: &GpuTensor,
        weight: &wgpu::Buffer,
        z: &GpuTensor,
        eps: f32,
    ) -> Result<GpuTensor, EngineError> {
        let out = self.tensor(x.rows, x.cols);
        let op = DeltaNetOp::GatedNorm { width: x.cols as u32, group: shape.value_dim as u32, eps };
        let max_rows = x.capacity.min(z.capacity).min(out.capacity);
        let inputs = [Some(x), Some(z), None];
        self.delta_net_op(
            "gated_norm",
            op,
            max_rows,
            (&out.buffer, None),
            inputs,
            [Some(weight), None],
            x.rows,
        )?;
        Ok(out)
    }

    fn reset_cache(&mut self) {
        // KV positions are written before they are read, so stale entries past
        // the new position are never attended to: nothing to clear there. The
        // Gated DeltaNet layers' windows and states start over from zero,
        // cleared in the command stream before the next step's work.
        let buffers: Vec<wgpu::Buffer> = match &self.prepared {
            Some(prepared) => prepared.sequences[prepared.selected]
                .recurrent
                .iter()
                .flatten()
                .flat_map(|(w, s)| [w.clone(), s.clone()])
                .collect(),
            None => Vec::new(),
        };
        if buffers.is_empty() {
            return;
        }
        self.pass = None;
        let encoder = self
            .encoder
            .get_or_insert_with(|| self.ctx.device.create_command_encoder(&Default::default()));
        for buffer in &buffers {
            encoder.clear_buffer(buffer, 0, None);
        }
    }
}

impl GpuBackend {
    /// A batched pass's attention in one dispatch (and a combination of
    /// chunks): each row's query and key rotated for its position, its key and
    /// value appended to its own sequence's cache, and its query attended
    /// there ([`AttentionRows`]).
    fn attention_rows(
        &mut self,
        spec: &ModelSpec,
        layer: usize,
        qkv: &GpuTensor,
        rows: &[RowPlace],
    ) -> Result<GpuTensor, EngineError> {
        for row in rows {
            self.check_positions(row.position, 1)?;
        }
        let places: Vec<(usize, usize)> = rows.iter().map(|r| (r.sequence, r.position)).collect();
        let queue = self.ctx.queue.clone();
        let prepared = self.prepared.as_mut().expect("Backend::prepare runs before any op");
        prepared.batch_rows.set(&queue, &places)?;
        let out = self.tensor(qkv.rows, spec.num_heads * spec.head_dim);
        let (k_cache, _) = self.prepared().kv[layer].clone();
        let key = vec![qkv.buffer.clone(), k_cache, out.buffer.clone()];
        let slot = self.slot(
            || "attention (batched rows)".into(),
            key,
            |b| {
                let projected =
                    Queries::Projected { qkv: &qkv.buffer, table: &b.prepared().rope_table };
                Ok(BoundOp::Plain(b.bind_attention(spec, layer, projected, &out, true)?))
            },
        )?;
        let latest = rows.iter().map(|row| row.position).max().unwrap_or(0);
        self.record(slot, rows.len(), latest)?;
        Ok(out)
    }

    /// A batched pass's attention where the rows cannot share a dispatch (a
    /// per-head q/k norm, which the rope kernel applies): each row on its own,
    /// over its sequence's cache. The rows are copied out together, attended
    /// in one compute pass and copied back together: a copy ends the pass, so
    /// interleaving them would end and begin one per row. Leaves the selected
    /// sequence as it was.
    fn attention_by_row(
        &mut self,
        spec: &ModelSpec,
        layer: usize,
        qkv: &GpuTensor,
        qk_norm: Option<&(wgpu::Buffer, wgpu::Buffer)>,
        rows: &[RowPlace],
    ) -> Result<GpuTensor, EngineError> {
        let selected = self.prepared().selected;
        let singles: Vec<GpuTensor> = (0..rows.len())
            .map(|index| {
                let one = self.tensor(1, qkv.cols);
                self.copy_row(qkv, index, &one, 0);
                one
            })
            .collect();
        let mut attended = Vec::with_capacity(rows.len());
        for (row, one) in rows.iter().zip(&singles) {
            self.select_sequence(row.sequence)?;
            let place = Placement::Run { start: row.position };
            attended.push(self.attention(spec, layer, one, qk_norm, place)?);
        }
        self.select_sequence(selected)?;
        let out = self.tensor(qkv.rows, spec.num_heads * spec.head_dim);
        for (index, row) in attended.iter().enumerate() {
            self.copy_row(row, 0, &out, index);
        }
        Ok(out)
    }

    /// Binds (once per slot) and records one of Qwen3.5's ops over `rows` rows.
    #[allow(clippy::too_many_arguments)]
    fn delta_net_op(
        &mut self,
        name: &'static str,
        op: DeltaNetOp,
        max_rows: usize,
        outputs: (&wgpu::Buffer, Option<&wgpu::Buffer>),
        inputs: [Option<&GpuTensor>; 3],
        weights: [Option<&wgpu::Buffer>; 2],
        rows: usize,
    ) -> Result<(), EngineError> {
        let (out, out2) = outputs;
        let inputs = inputs.map(|t| t.map(|t| &t.buffer));
        let mut key: Vec<wgpu::Buffer> = vec![out.clone()];
        key.extend(out2.cloned());
        key.extend(inputs.iter().flatten().map(|b| (*b).clone()));
        key.extend(weights.iter().flatten().map(|b| (*b).clone()));
        let slot = self.slot(
            || name.into(),
            key,
            |b| {
                let kernel = b.prepared().kernels.delta_net.as_ref().ok_or_else(|| {
                    EngineError::Config(format!("{name}: the model has no Qwen3.5 layers"))
                })?;
                let buffers = DeltaNetBuffers { out, out2, inputs, weights };
                let shape = DeltaNetBinding { op, max_rows: max_rows as u32 };
                Ok(BoundOp::Plain(kernel.bind(&b.ctx, &buffers, &shape)?))
            },
        )?;
        self.record(slot, rows, 0)
    }

    /// The norm kernel over `x`: an RMSNorm, or with `bias` a LayerNorm.
    fn norm(
        &mut self,
        x: &GpuTensor,
        weight: &wgpu::Buffer,
        bias: Option<&wgpu::Buffer>,
        eps: f32,
    ) -> Result<GpuTensor, EngineError> {
        let out = self.tensor(x.rows, x.cols);
        let shape = RmsNormShape::rows(x.capacity.min(out.capacity) as u32, x.cols as u32, eps);
        let mut key = vec![x.buffer.clone(), weight.clone(), out.buffer.clone()];
        key.extend(bias.cloned());
        let name = if bias.is_some() { "layer_norm" } else { "rms_norm" };
        let slot = self.slot(
            || name.into(),
            key,
            |b| {
                let buffers = RmsNormBuffers { x: &x.buffer, weight, bias, y: Some(&out.buffer) };
                Ok(BoundOp::Plain(b.prepared().kernels.norm.bind(&b.ctx, &buffers, &shape)?))
            },
        )?;
        self.record(slot, x.rows, 0)?;
        Ok(out)
    }

    /// A rolling cache's gather of the tokens the selected sequence holds
    /// into layer `layer`'s attention cache, and the keep of the pass's rows
    /// (at `start`, in the sequence) into its ring.
    fn roll(
        &mut self,
        spec: &ModelSpec,
        layer: usize,
        qkv: &GpuTensor,
        window: RollingWindow,
        start: usize,
    ) -> Result<(), EngineError> {
        // The kernels' step carries positions as u32 words.
        let needed = start + qkv.rows;
        if u32::try_from(needed).is_err() {
            return Err(EngineError::ContextWindowExceeded { needed, window: u32::MAX as usize });
        }
        let (k_cache, v_cache) = self.prepared().kv[layer].clone();
        let (ring_k, ring_v) = self.prepared().rings[layer].clone();
        let key = vec![qkv.buffer.clone(), ring_k.clone()];
        let slot = self.slot(
            || "rolling".into(),
            key,
            |b| {
                let prepared = b.prepared();
                let buffers = RollingBuffers {
                    qkv: &qkv.buffer,
                    table: &prepared.rope_table,
                    ring_k: &ring_k,
                    ring_v: &ring_v,
                    k_cache: &k_cache,
                    v_cache: &v_cache,
                };
                let shape = RollingShape {
                    heads: spec.num_heads,
                    kv_heads: spec.num_kv_heads,
                    head_dim: spec.head_dim,
                    window,
                    capacity: prepared.capacity,
                    sequences: prepared.sequences.len(),
                };
                let kernel =
                    prepared.kernels.rolling.as_ref().expect("compiled for a rolling cache");
                Ok(BoundOp::Plain(kernel.bind(&b.ctx, &buffers, &shape)?))
            },
        )?;
        self.record(slot, qkv.rows, start)
    }

    /// The rope kernels' shape for `spec` and this cache.
    fn rope_shape(&self, spec: &ModelSpec) -> RopeShape {
        RopeShape {
            heads: spec.num_heads,
            kv_heads: spec.num_kv_heads,
            head_dim: spec.head_dim,
            capacity: self.prepared().capacity,
            sequences: self.prepared().sequences.len(),
        }
    }

    /// Fails unless the cache holds positions `start..start + rows`.
    fn check_positions(&self, start: usize, rows: usize) -> Result<(), EngineError> {
        let capacity = self.prepared().capacity;
        if start + rows > capacity {
            return Err(EngineError::ContextWindowExceeded {
                needed: start + rows,
                window: capacity,
            });
        }
        Ok(())
    }

    /// A per-head q/k norm's weights as the rope kernels read them (in the model dtype).
    fn qk_norm<'a>(
        &self,
        spec: &ModelSpec,
        weights: Option<&'a (wgpu::Buffer, wgpu::Buffer)>,
    ) -> QkNorm<'a> {
        let eps = spec.rms_norm_eps;
        match (weights, self.prepared().dtype) {
            (None, _) => QkNorm::None,
            (Some((q, k)), FloatFormat::F16) => QkNorm::F16 { q, k, eps },
            (Some((q, k)), FloatFormat::F32) => QkNorm::F32 { q, k, eps },
        }
    }

    /// The attention kernel of layer `layer` bound to its cache, `queries` and
    /// `out`; `batched` binds the rows of batched steps.
    fn bind_attention(
        &self,
        spec: &ModelSpec,
        layer: usize,
        queries: Queries<'_>,
        out: &GpuTensor,
        batched: bool,
    ) -> Result<Bound, EngineError> {
        let prepared = self.prepared();
        let (k_cache, v_cache) = &prepared.kv[layer];
        let buffers = AttentionBuffers {
            q: queries,
            k_cache,
            v_cache,
            out: &out.buffer,
            scratch: &prepared.scratch,
            rows: batched.then_some(&prepared.batch_rows),
        };
        let shape = AttentionShape {
            heads: spec.num_heads,
            kv_heads: spec.num_kv_heads,
            capacity: prepared.capacity,
            sequences: prepared.sequences.len(),
            window: spec.attention_window(layer),
            scale: spec.attention_scale(),
            min_chunk_len: DEFAULT_MIN_CHUNK_LEN,
        };
        Ok(prepared.kernels.attention.bind(&self.ctx, &buffers, &shape)?)
    }

    /// `y = x · Wᵀ (+ bias)`, or `y += …` for [`Residual::InPlace`]; `y` is a
    /// buffer with its capacity in rows.
    fn matmul(
        &mut self,
        x: &GpuTensor,
        linear: &GpuLinear,
        (y, y_capacity): (&wgpu::Buffer, usize),
        residual: Residual<'_>,
    ) -> Result<(), EngineError> {
        let max_rows = x.capacity.min(y_capacity) as u32;
        let in_place = matches!(residual, Residual::InPlace);
        let mut key = vec![x.buffer.clone(), linear.data.clone(), y.clone()];
        key.extend(linear.bias.clone());
        let name = || {
            format!(
                "matmul {}x{}{}",
                linear.cols,
                linear.rows,
                if in_place { " +residual" } else { "" }
            )
        };
        let slot = self.slot(name, key, |b| {
            let buffers = MatmulBuffers {
                x: &x.buffer,
                input: MatmulInput::Direct,
                weight: linear.weight(),
                bias: linear.bias.as_ref(),
                residual: if in_place { Residual::InPlace } else { Residual::None },
                y,
            };
            let shape = MatmulShape { max_rows };
            Ok(BoundOp::Plain(b.prepared().kernels.matmul.bind(&b.ctx, &buffers, &shape)?))
        })?;
        self.record(slot, x.rows, 0)
    }

    /// RMS-normalises, in place, the `width` values from column `offset` of
    /// every row of `x` (one span per token, one weight per value).
    fn norm_span(
        &mut self,
        x: &GpuTensor,
        offset: usize,
        width: usize,
        weight: &wgpu::Buffer,
        eps: f32,
    ) -> Result<(), EngineError> {
        let span = RowLayout { offset: offset as u32, token_stride: x.cols as u32 };
        let shape = RmsNormShape::per_head(x.capacity as u32, width as u32, 1, span, span, eps);
        let key = vec![x.buffer.clone(), weight.clone()];
        let slot = self.slot(
            || format!("rms_norm of columns {offset}..{}", offset + width),
            key,
            |b| {
                let buffers = RmsNormBuffers { x: &x.buffer, weight, bias: None, y: None };
                Ok(BoundOp::Plain(b.prepared().kernels.norm.bind(&b.ctx, &buffers, &shape)?))
            },
        )?;
        self.record(slot, x.rows, 0)
    }

    /// A scratch buffer of at least `values` f32s from the field `which` picks.
    fn scratch(
        &mut self,
        which: impl FnOnce(&mut Prepared) -> &mut Option<wgpu::Buffer>,
        label: &str,
        values: usize,
    ) -> wgpu::Buffer {
        let bytes = (values.max(1) * 4) as u64;
        let ctx = &self.ctx;
        let slot = which(self.prepared.as_mut().expect("Backend::prepare runs before any op"));
        match slot {
            Some(buffer) if buffer.size() >= bytes => buffer.clone(),
            _ => slot.insert(ctx.empty_storage_buffer(label, bytes)).clone(),
        }
    }

    /// Records the draw of row `i` of `logits` for sequence `draws[i].0`
    /// (`None`: its most likely token; else as the step says) in one sampler
    /// dispatch, and submits the step with a copy of each row's result.
    fn queue_rows(
        &mut self,
        logits: &GpuTensor,
        draws: &[(usize, Option<&SamplingStep<'_>>)],
    ) -> Result<Vec<GpuPending>, EngineError> {
        // Nothing is submitted to a lost device or after an unreported failure.
        self.ctx.health().check()?;
        if draws.len() > logits.rows {
            return Err(EngineError::Config(format!(
                "{} draws from {} rows of logits",
                draws.len(),
                logits.rows
            )));
        }
        let vocab = logits.cols;
        let slot = self.sampler_slot(&logits.buffer, vocab)?;
        let queue = self.ctx.queue.clone();
        let sampling = &mut self.prepared.as_mut().expect("a sampler slot is bound").sampling;
        // A round's counts start here; after that the sampler adds each draw
        // on the GPU (this write lands before the step, after earlier steps).
        for &(sequence, step) in draws {
            if let Some(SamplingStep { counts: TokenCounts::Start(pairs), .. }) = step {
                sampling.set_counts(&queue, sequence, pairs)?;
            }
        }
        let rows: Vec<RowDraw<'_>> = draws
            .iter()
            .map(|&(sequence, step)| RowDraw {
                sequence,
                draw: match step {
                    None => Draw::Argmax,
                    Some(step) => Draw::Sample(SampleSettings {
                        params: step.params,
                        active_vocab: step.active_vocab,
                        logit_bias: step.logit_bias,
                        token_mask: step.token_mask,
                        uniform: step.uniform,
                        top_logprobs: step.top_logprobs,
                    }),
                },
            })
            .collect();
        sampling.set_draws(&queue, &rows)?;
        let results: Vec<(u64, usize)> = draws
            .iter()
            .enumerate()
            .map(|(row, &(sequence, _))| {
                (sampling.token_offset(sequence), sampling.top_logprobs(row))
            })
            .collect();
        // One dispatch whatever the rows (they come from the workspace).
        self.record(slot, 1, 0)?;
        Ok(self.submit_tokens(vocab, &results))
    }

    /// The slot of the sampler bound to `logits` (rows of `vocab`).
    fn sampler_slot(&mut self, logits: &wgpu::Buffer, vocab: usize) -> Result<usize, EngineError> {
        let rows = (logits.size() / (vocab as u64 * 4)) as usize;
        self.slot(
            || "sampler".into(),
            vec![logits.clone()],
            |b| {
                let buffers = SamplerBuffers { logits, workspace: &b.prepared().sampling };
                let shape = SamplerShape { rows };
                let sampler = b.prepared().kernels.sampler.bind(&b.ctx, &buffers, &shape)?;
                Ok(BoundOp::Sampler(Box::new(sampler)))
            },
        )
    }
}
