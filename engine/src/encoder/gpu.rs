//! The encoder on the GPU: the ops of [`super::CpuEncoder`] as WGSL dispatches
//! of `mlc-kernels` — the embedding lookup, the residual add, LayerNorm (the
//! norm kernel's LayerNorm mode, StableLM's), the products with their bias and
//! residual epilogues, the plain activations (GPT-NeoX's exact GELU) and the
//! encoder's own bidirectional attention (docs/kernels.md).
//!
//! An encoder has one step per input and no cache, so it needs none of the
//! decoder engine's slots and pool (`engine/src/gpu/recorder.rs`): every op is
//! bound once at load, for inputs of up to `context_window_size` tokens, to
//! activation buffers of that size, and an input is one compute pass whose
//! dispatches are those bound ops in order, then one readback. Each input runs
//! alone, as on the CPU (docs/families.md, "bert").
//!
//! Weights are uploaded as f32 (`WeightFormat::Dense(F32)`), whatever the
//! artifact stores: WebLLM publishes BERT as q0f32, whose values are exact in
//! f32 and would be rounded by an f16 upload; a q0f16 artifact is widened
//! exactly. The products sum in f32 (on tensor cores their inputs are rounded
//! to f16 in workgroup memory, as for every product: docs/kernels.md).

use mlc_kernels::{
    BidirectionalAttention, BidirectionalAttentionBuffers, BidirectionalAttentionShape, Bound,
    Elementwise, ElementwiseBuffers, ElementwiseOp, ElementwiseShape, Embed, EmbedBuffers,
    EmbedShape, FloatFormat, GpuContext, GpuWeight, Kernel, Matmul, MatmulBuffers, MatmulInput,
    MatmulShape, Residual, RmsNorm, RmsNormBuffers, RmsNormShape, Step, WeightFormat,
};
use mlc_loader::Artifact;

use super::weights::{EncoderWeights, Linear, Norm};
use super::{EmbeddingModel, EncoderActivation, EncoderSpec};
use crate::gpu::load::LoadScope;
use crate::memory::MemoryPlan;
use crate::{EngineError, ModelFuture};

/// The format every encoder weight is uploaded in (module docs).
const FORMAT: WeightFormat = WeightFormat::Dense(FloatFormat::F32);

/// A BERT encoder with its weights and bound kernels on a GPU device.
pub struct GpuEncoder {
    spec: EncoderSpec,
    ctx: GpuContext,
    /// Token ids of the input, u32 `[context_window_size]`.
    tokens: wgpu::Buffer,
    /// The last hidden state, f32 `[context_window_size, hidden]`.
    hidden: wgpu::Buffer,
    /// Every op of the forward pass, bound once, in the order they run.
    ops: Vec<Bound>,
    /// The load's error scopes, which a browser resolves only through its
    /// event loop: awaited before the first input.
    #[cfg(target_arch = "wasm32")]
    load_check: Option<crate::LoadCheck>,
}

/// A projection's weight and bias on the device.
struct GpuLinear {
    rows: usize,
    cols: usize,
    weight: wgpu::Buffer,
    bias: wgpu::Buffer,
}

impl GpuLinear {
    fn upload(ctx: &GpuContext, name: &str, linear: &Linear) -> GpuLinear {
        GpuLinear {
            rows: linear.rows,
            cols: linear.cols,
            weight: f32_buffer(ctx, name, &linear.weight),
            bias: f32_buffer(ctx, name, &linear.bias),
        }
    }

    fn weight(&self) -> GpuWeight<'_> {
        GpuWeight {
            format: FORMAT,
            rows: self.rows as u32,
            cols: self.cols as u32,
            data: &self.weight,
            scales: None,
        }
    }
}

/// LayerNorm's weight and bias on the device.
struct GpuNorm {
    weight: wgpu::Buffer,
    bias: wgpu::Buffer,
}

impl GpuNorm {
    fn upload(ctx: &GpuContext, name: &str, norm: &Norm) -> GpuNorm {
        GpuNorm {
            weight: f32_buffer(ctx, name, &norm.weight),
            bias: f32_buffer(ctx, name, &norm.bias),
        }
    }
}

fn f32_buffer(ctx: &GpuContext, label: &str, values: &[f32]) -> wgpu::Buffer {
    ctx.storage_buffer(label, bytemuck::cast_slice(values))
}

/// The compiled kernels the encoder binds.
struct Kernels {
    embed: Embed,
    matmul: Matmul,
    norm: RmsNorm,
    elementwise: Elementwise,
    attention: BidirectionalAttention,
}

/// The activation buffers, each sized for the longest input.
struct Activations {
    /// The hidden state between layers (`x`), and the output.
    x: wgpu::Buffer,
    /// A residual sum before its LayerNorm; the word embeddings first.
    sum: wgpu::Buffer,
    /// The attention output; the position embeddings first.
    attention: wgpu::Buffer,
    qkv: wgpu::Buffer,
    inner: wgpu::Buffer,
    activated: wgpu::Buffer,
    /// Positions `0..context_window_size`, the position table's row ids.
    positions: wgpu::Buffer,
    tokens: wgpu::Buffer,
}

impl GpuEncoder {
    /// Reads the encoder of a `model_type: "bert"` artifact onto `ctx`'s
    /// device. Fails for an activation without a GPU kernel (`relu`: the CPU
    /// encoder runs it) and, with [`EngineError::GpuOutOfMemory`], when the
    /// device cannot hold the weights.
    pub fn load(artifact: &Artifact, ctx: GpuContext) -> Result<GpuEncoder, EngineError> {
        let spec = super::spec_for(&artifact.config)?;
        let activation = match spec.activation {
            EncoderActivation::Gelu => mlc_kernels::Activation::Gelu,
            EncoderActivation::GeluTanh => mlc_kernels::Activation::GeluTanh,
            EncoderActivation::Silu => mlc_kernels::Activation::Silu,
            EncoderActivation::Relu => {
                return Err(EngineError::Unsupported(
                    "the GPU encoder has no relu kernel; run this embedding model on the CPU"
                        .into(),
                ));
            }
        };
        let weights = EncoderWeights::load(&spec, artifact)?;
        let scope = LoadScope::checked(&ctx, memory_plan(&spec))?;
        // On an error here `scope` is dropped, which pops its scopes in order.
        let (tokens, hidden, ops) = upload_and_bind(&ctx, &spec, &weights, activation)?;
        let check = scope.end();
        #[cfg(not(target_arch = "wasm32"))]
        pollster::block_on(check.result())?;
        Ok(GpuEncoder {
            spec,
            ctx,
            tokens,
            hidden,
            ops,
            #[cfg(target_arch = "wasm32")]
            load_check: Some(check),
        })
    }

    /// The device the encoder runs on.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Waits for what the device has not said yet — in a browser the load's
    /// error scopes (out of memory with the plan) and the shader compilations
    /// resolve only through the event loop — and fails on a lost device or
    /// an error it reported. Natively the load already waited for both.
    pub async fn settle(&mut self) -> Result<(), EngineError> {
        #[cfg(target_arch = "wasm32")]
        if let Some(check) = self.load_check.take() {
            check.result().await?;
        }
        Ok(self.ctx.health().settle().await?)
    }

    /// Runs the forward pass of `tokens` (checked) and reads back the first
    /// `rows` rows of the last hidden state.
    async fn forward(&mut self, tokens: &[u32], rows: usize) -> Result<Vec<f32>, EngineError> {
        super::check_input(&self.spec, tokens)?;
        // A lost device fails here rather than after recording a pass it will not run.
        self.settle().await?;
        let queue = &self.ctx.queue;
        queue.write_buffer(&self.tokens, 0, bytemuck::cast_slice(tokens));
        let step = Step::rows(tokens.len());
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for op in &mut self.ops {
                op.set_step(queue, step)?;
                op.dispatch(&mut pass);
            }
        }
        queue.submit([encoder.finish()]);
        let bytes = (rows * self.spec.hidden_size * 4) as u64;
        let read = self.ctx.read_bytes(&self.hidden, bytes).await?;
        Ok(bytemuck::pod_collect_to_vec(&read))
    }
}

impl EmbeddingModel for GpuEncoder {
    fn spec(&self) -> &EncoderSpec {
        &self.spec
    }

    fn encode<'a>(&'a mut self, tokens: &'a [u32]) -> ModelFuture<'a, Vec<f32>> {
        Box::pin(self.forward(tokens, tokens.len()))
    }

    /// Reads back only each input's first row, the embedding.
    fn embed<'a>(&'a mut self, inputs: &'a [Vec<u32>]) -> ModelFuture<'a, Vec<Vec<f32>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(inputs.len());
            for tokens in inputs {
                out.push(self.forward(tokens, 1).await?);
            }
            Ok(out)
        })
    }
}

/// Uploads the weights and binds every op for inputs of up to
/// `context_window_size` tokens: the token buffer, the output and the ops.
fn upload_and_bind(
    ctx: &GpuContext,
    spec: &EncoderSpec,
    w: &EncoderWeights,
    activation: mlc_kernels::Activation,
) -> Result<(wgpu::Buffer, wgpu::Buffer, Vec<Bound>), EngineError> {
    let (n, h, i) = (spec.context_window_size, spec.hidden_size, spec.intermediate_size);
    let kernels = Kernels {
        embed: Embed::new(ctx, FORMAT)?,
        matmul: Matmul::new(ctx, FORMAT)?,
        norm: RmsNorm::new(ctx, FloatFormat::F32)?,
        elementwise: Elementwise::new(ctx)?,
        attention: BidirectionalAttention::new(ctx)?,
    };
    let rows =
        |width: usize| ctx.empty_storage_buffer("encoder activations", (n * width * 4) as u64);
    let positions: Vec<u32> = (0..n as u32).collect();
    let a = Activations {
        x: rows(h),
        sum: rows(h),
        attention: rows(h),
        qkv: rows(3 * h),
        inner: rows(i),
        activated: rows(i),
        positions: ctx.storage_buffer("encoder positions", bytemuck::cast_slice(&positions)),
        tokens: ctx.empty_storage_buffer("encoder tokens", (n * 4) as u64),
    };
    // Every input is token type 0 (as in MLC): its row is folded into the
    // position table, so one lookup adds both.
    let mut position = w.position.clone();
    for row in position.chunks_mut(h) {
        for (p, t) in row.iter_mut().zip(&w.token_type[..h]) {
            *p += t;
        }
    }
    let word = f32_buffer(ctx, "embeddings.word_embeddings", &w.word);
    let position = f32_buffer(ctx, "embeddings.position_embeddings + token type 0", &position);
    let table = |data, rows| GpuWeight { format: FORMAT, rows, cols: h as u32, data, scales: None };
    let max = n as u32;
    let embed = EmbedShape { max_tokens: max, scale: 1.0 };
    let mut ops = vec![
        kernels.embed.bind(
            ctx,
            &EmbedBuffers {
                table: table(&word, spec.vocab_size as u32),
                tokens: &a.tokens,
                out: &a.sum,
            },
            &embed,
        )?,
        kernels.embed.bind(
            ctx,
            &EmbedBuffers {
                table: table(&position, spec.position_rows as u32),
                tokens: &a.positions,
                out: &a.attention,
            },
            &embed,
        )?,
        kernels.elementwise.bind(
            ctx,
            &ElementwiseBuffers { input: &a.attention, out: &a.sum },
            &ElementwiseShape { op: ElementwiseOp::Add, max_rows: max, width: h as u32 },
        )?,
    ];
    let norm = |ops: &mut Vec<Bound>, norm: &GpuNorm| -> Result<(), EngineError> {
        let buffers = RmsNormBuffers {
            x: &a.sum,
            weight: &norm.weight,
            bias: Some(&norm.bias),
            y: Some(&a.x),
        };
        let shape = RmsNormShape::rows(max, h as u32, spec.layer_norm_eps);
        ops.push(kernels.norm.bind(ctx, &buffers, &shape)?);
        Ok(())
    };
    // `y = x · Wᵀ + b (+ residual)`.
    let linear = |ops: &mut Vec<Bound>,
                  layer: &GpuLinear,
                  x: &wgpu::Buffer,
                  residual: Residual<'_>,
                  y: &wgpu::Buffer|
     -> Result<(), EngineError> {
        let buffers = MatmulBuffers {
            x,
            input: MatmulInput::Direct,
            weight: layer.weight(),
            bias: Some(&layer.bias),
            residual,
            y,
        };
        ops.push(kernels.matmul.bind(ctx, &buffers, &MatmulShape { max_rows: max })?);
        Ok(())
    };
    norm(&mut ops, &GpuNorm::upload(ctx, "embeddings.LayerNorm", &w.embedding_norm))?;
    for (l, layer) in w.layers.iter().enumerate() {
        let name = |what: &str| format!("encoder.layer.{l}.{what}");
        let qkv = GpuLinear::upload(ctx, &name("attention.self.qkv"), &layer.qkv);
        let attention_out =
            GpuLinear::upload(ctx, &name("attention.output.dense"), &layer.attention_out);
        let intermediate = GpuLinear::upload(ctx, &name("intermediate.dense"), &layer.intermediate);
        let output = GpuLinear::upload(ctx, &name("output.dense"), &layer.output);
        linear(&mut ops, &qkv, &a.x, Residual::None, &a.qkv)?;
        ops.push(kernels.attention.bind(
            ctx,
            &BidirectionalAttentionBuffers { qkv: &a.qkv, out: &a.attention },
            &BidirectionalAttentionShape {
                max_tokens: max,
                heads: spec.num_heads as u32,
                head_dim: spec.head_dim as u32,
                scale: spec.attention_scale(),
            },
        )?);
        linear(&mut ops, &attention_out, &a.attention, Residual::Buffer(&a.x), &a.sum)?;
        norm(
            &mut ops,
            &GpuNorm::upload(ctx, &name("attention.output.LayerNorm"), &layer.attention_norm),
        )?;
        linear(&mut ops, &intermediate, &a.x, Residual::None, &a.inner)?;
        ops.push(kernels.elementwise.bind(
            ctx,
            &ElementwiseBuffers { input: &a.inner, out: &a.activated },
            &ElementwiseShape {
                op: ElementwiseOp::Plain(activation),
                max_rows: max,
                width: i as u32,
            },
        )?);
        linear(&mut ops, &output, &a.activated, Residual::Buffer(&a.x), &a.sum)?;
        norm(&mut ops, &GpuNorm::upload(ctx, &name("output.LayerNorm"), &layer.output_norm))?;
    }
    Ok((a.tokens, a.x, ops))
}

/// What the load allocates, checked against the adapter's limits before
/// anything is (docs/reliability.md): every weight as f32, the activations
/// of the longest input, the products' partial sums.
fn memory_plan(spec: &EncoderSpec) -> MemoryPlan {
    let (n, h, i, layers) =
        (spec.context_window_size, spec.hidden_size, spec.intermediate_size, spec.num_layers);
    let bytes = |values: usize| (values * 4) as u64;
    let word = bytes(spec.vocab_size * h);
    let activations = bytes(n * (6 * h + 2 * i));
    let largest = [
        ("the word embedding table", word),
        ("the intermediate activations", bytes(n * i)),
        ("the intermediate projection", bytes(i * h)),
    ]
    .into_iter()
    .max_by_key(|(_, bytes)| *bytes)
    .expect("three candidates");
    MemoryPlan {
        weights: vec![
            ("embedding", word + bytes(spec.position_rows * h)),
            ("attention", layers as u64 * bytes(4 * h * h + 4 * h)),
            ("mlp", layers as u64 * bytes(2 * h * i + h + i)),
            ("norms", (2 * layers as u64 + 1) * bytes(2 * h)),
        ],
        layers: 0,
        recurrent: 0,
        kv_positions: 0,
        sequences: 1,
        kv_buffer: 0,
        ring_buffer: 0,
        rope_table: 0,
        scratch: mlc_kernels::matmul::SPLIT_SCRATCH_BYTES + bytes(2 * n),
        activations,
        max_rows: n,
        largest: (largest.0.to_string(), largest.1),
        device: None,
    }
}
