//! The ops a decoder needs from the hardware it runs on.
//!
//! The family's forward pass ([`crate::models::decoder`]) is written once
//! against this trait; the CPU engine implements it with eager f32 math, the
//! GPU engine by recording WGSL dispatches.

use mlc_kernels::cpu::{DeltaNetShape, RollingWindow};
use mlc_loader::{Quantization, Tensor};

use crate::EngineError;
use crate::models::{Activation, ModelSpec};
use crate::sampling::{Drawn, SamplingStep};

/// The stored form of a weight matrix `[rows, cols]`.
pub enum MatrixSource<'a> {
    /// MLC q4 group quantization: `q_weight` u32 `[rows, groups·4]`, `q_scale` `[rows, groups]`.
    Q4 {
        /// Packed codes.
        q_weight: Tensor<'a>,
        /// Group scales (f16 for q4f16_1, f32 for q4f32_1).
        q_scale: Tensor<'a>,
    },
    /// Unquantized `[rows, cols]` (q0f16 / q0f32).
    Dense(Tensor<'a>),
}

/// A linear layer (or embedding table) as stored in the artifact.
pub struct LinearSource<'a> {
    /// Parameter name without suffix.
    pub name: String,
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// The matrix.
    pub matrix: MatrixSource<'a>,
    /// Bias, `[rows]`, when the layer has one.
    pub bias: Option<Tensor<'a>>,
}

/// One decoder layer's weights, in a backend's own representation.
pub struct LayerWeights<B: Backend + ?Sized> {
    /// RMSNorm before attention ([`crate::models::NormPlacement::before`]).
    pub attn_norm: Option<B::Vector>,
    /// Fused `[q; k; v]` projection (with its bias, if any).
    pub qkv: B::Linear,
    /// Query and key norms (`head_dim` weights each, or all heads' width:
    /// [`crate::models::QkNormWidth`]).
    pub qk_norm: Option<(B::Vector, B::Vector)>,
    /// Attention output projection.
    pub o_proj: B::Linear,
    /// RMSNorm before the MLP (none where the MLP reads the attention's
    /// normalised input: Phi's [`crate::models::NormPlacement::Parallel`]).
    pub mlp_norm: Option<B::Vector>,
    /// Norms of the attention and MLP outputs
    /// ([`crate::models::NormPlacement::after`]).
    pub post_norms: Option<(B::Vector, B::Vector)>,
    /// Fused `[gate; up]` projection, or the up projection of a non-gated
    /// MLP (Phi's `fc1`, [`crate::models::ModelSpec::gated_mlp`]).
    pub gate_up: B::Linear,
    /// MLP output projection.
    pub down: B::Linear,
    /// Bias of `attn_norm` when the family's norms are LayerNorms (StableLM,
    /// Phi: [`crate::models::ModelSpec::layer_norm`]).
    pub attn_norm_bias: Option<B::Vector>,
    /// Bias of `mlp_norm`, likewise.
    pub mlp_norm_bias: Option<B::Vector>,
    /// A Gated DeltaNet layer's own parameters (Qwen3.5's linear layers,
    /// [`crate::models::ModelSpec::linear_layer`]); such a layer keeps its
    /// `in_proj_qkv` in `qkv` and its `out_proj` in `o_proj`, and has no q/k norm.
    pub delta_net: Option<DeltaNetWeights<B>>,
}

/// The parameters of a Gated DeltaNet layer beside its `in_proj_qkv` and
/// `out_proj` (MLC's `linear_attn.*`; docs/families.md, "qwen3_5").
pub struct DeltaNetWeights<B: Backend + ?Sized> {
    /// `in_proj_z`: the output gate, `[value_heads · value_dim, hidden]`.
    pub z: B::Linear,
    /// `in_proj_a`: the decay's input, `[value_heads, hidden]`.
    pub a: B::Linear,
    /// `in_proj_b`: the update rate's input, `[value_heads, hidden]`.
    pub b: B::Linear,
    /// `conv1d_weight`, `[channels, 1, kernel]` flattened.
    pub conv: B::Vector,
    /// `A_log`, `[value_heads]` (f32 in the artifact).
    pub a_log: B::Vector,
    /// `dt_bias`, `[value_heads]` (f32 in the artifact).
    pub dt_bias: B::Vector,
    /// The gated RMSNorm's weight, `[value_dim]` (stored as is, no `1 + w`).
    pub norm: B::Vector,
}

/// All weights of a decoder, in a backend's own representation.
pub struct DecoderWeights<B: Backend + ?Sized> {
    /// Token embedding table (also the output projection when tied).
    pub embed: B::Linear,
    /// The layers, in order.
    pub layers: Vec<LayerWeights<B>>,
    /// Final RMSNorm (or LayerNorm's weight).
    pub final_norm: B::Vector,
    /// The final LayerNorm's bias (StableLM, Phi).
    pub final_norm_bias: Option<B::Vector>,
    /// Output projection when the embedding is not tied.
    pub lm_head: Option<B::Linear>,
}

/// The tokens a step of one sequence starts from.
#[derive(Debug, Clone, Copy)]
pub enum StepInput<'a> {
    /// Token ids from the host.
    Tokens(&'a [u32]),
    /// The one token that the last [`Backend::queue_argmax`] or
    /// [`Backend::queue_sample`] left on the device, read there: the host
    /// need not have seen it yet.
    Queued,
}

impl StepInput<'_> {
    /// Tokens in the step.
    pub fn len(&self) -> usize {
        PassInput::from(*self).len()
    }

    /// Whether the step has no token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The tokens a forward pass starts from: a step of the selected sequence
/// ([`Placement::Run`]), or one token per sequence of a batched pass
/// ([`Placement::Rows`]).
#[derive(Debug, Clone, Copy)]
pub enum PassInput<'a> {
    /// Token ids from the host.
    Tokens(&'a [u32]),
    /// The token the selected sequence's last draw left on the device
    /// ([`StepInput::Queued`]).
    Queued,
    /// Row `i`'s token, from the host or left on the device by its
    /// sequence's last draw.
    Rows(&'a [RowToken]),
}

impl PassInput<'_> {
    /// Tokens in the pass.
    pub fn len(&self) -> usize {
        match self {
            PassInput::Tokens(tokens) => tokens.len(),
            PassInput::Queued => 1,
            PassInput::Rows(rows) => rows.len(),
        }
    }

    /// Whether the pass has no token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a> From<StepInput<'a>> for PassInput<'a> {
    fn from(input: StepInput<'a>) -> PassInput<'a> {
        match input {
            StepInput::Tokens(tokens) => PassInput::Tokens(tokens),
            StepInput::Queued => PassInput::Queued,
        }
    }
}

/// The token of one row of a batched pass ([`PassInput::Rows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowToken {
    /// The sequence the row continues.
    pub sequence: usize,
    /// The token from the host, or `None` for the one the sequence's last
    /// draw left on the device (as [`StepInput::Queued`] reads it).
    pub token: Option<u32>,
}

/// Where the rows of a forward pass sit: in which sequence's KV cache, at
/// which position. A backend keeps each sequence's cache, recurrent state and
/// sampler apart ([`Backend::select_sequence`]); a pass either continues the
/// selected sequence or takes one token of each of several sequences at once
/// (a batched decode step, whose products read each weight once for all rows).
#[derive(Debug, Clone, Copy)]
pub enum Placement<'a> {
    /// The rows are consecutive tokens of the selected sequence, the first at
    /// position `start`.
    Run {
        /// Position of the first row.
        start: usize,
    },
    /// Row `i` is one token of sequence `rows[i].sequence` at `rows[i].position`.
    Rows(&'a [RowPlace]),
}

/// One row of a batched pass ([`Placement::Rows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowPlace {
    /// The sequence the token belongs to.
    pub sequence: usize,
    /// Its position in that sequence.
    pub position: usize,
}

impl Placement<'_> {
    /// The position of row `row` in its sequence.
    pub fn position(&self, row: usize) -> usize {
        match self {
            Placement::Run { start } => start + row,
            Placement::Rows(rows) => rows[row].position,
        }
    }

    /// The position row `row` is rotated at: its position, or under a
    /// rolling KV cache its place among what its pass sees, the tokens
    /// evicted before the pass's first row not counted
    /// ([`RollingWindow::evicted`]).
    pub fn rotation(&self, row: usize, rolling: Option<RollingWindow>) -> usize {
        let first = match self {
            Placement::Run { start } => *start,
            Placement::Rows(rows) => rows[row].position,
        };
        self.position(row) - rolling.map_or(0, |window| window.evicted(first))
    }
}

/// Hardware that can run a decoder's ops. Activations are `[tokens, width]`.
///
/// The ops only record work; the readbacks (`read`, `take_token`) are
/// `async` because a browser delivers a GPU result only after control returns
/// to its event loop. Natively the GPU engine waits inside the call, so the
/// future is ready when first polled. The futures are not `Send` (wgpu's web
/// types are not), which is why the `async_fn_in_trait` lint is allowed: the
/// trait is only used through generics on one thread, never as `dyn`.
#[allow(async_fn_in_trait)]
pub trait Backend {
    /// Activations resident on the backend.
    type Tensor;
    /// A linear layer's weight (and optional bias), or an embedding table.
    type Linear;
    /// A vector parameter (norm weights).
    type Vector;
    /// A token chosen on the device whose id the host has not read yet.
    type Pending;

    /// Builds what the backend needs for this model before its weights load
    /// (kernels for its weight format, the KV cache).
    fn prepare(
        &mut self,
        _spec: &ModelSpec,
        _quantization: Quantization,
    ) -> Result<(), EngineError> {
        Ok(())
    }
    /// Most tokens one forward call may carry (with every position's logits
    /// when `all_logits`); longer inputs are cut into calls of this size.
    fn max_tokens_per_call(&self, _spec: &ModelSpec, _all_logits: bool) -> usize {
        usize::MAX
    }
    /// Positions the KV cache can hold.
    fn context_capacity(&self, spec: &ModelSpec) -> usize {
        spec.context_window_size
    }
    /// Most sequences the backend keeps at once, each with its own KV cache,
    /// recurrent state and sampler (1: the backend runs one sequence).
    fn max_sequences(&self) -> usize {
        1
    }
    /// Makes `sequence` (below [`Backend::max_sequences`]) the one that
    /// [`Placement::Run`] passes, draws and [`Backend::reset_cache`] act on.
    fn select_sequence(&mut self, sequence: usize) -> Result<(), EngineError> {
        match sequence {
            0 => Ok(()),
            _ => Err(not_on_this_backend("more than one sequence")),
        }
    }
    /// Starts a forward pass over `input`.
    fn begin(&mut self, _input: PassInput<'_>) -> Result<(), EngineError> {
        Ok(())
    }
    /// Takes a linear layer's (or embedding table's) stored weights.
    fn load_linear(&mut self, source: &LinearSource<'_>) -> Result<Self::Linear, EngineError>;
    /// Takes a vector parameter (f16, bf16 or f32).
    fn load_vector(&mut self, source: &Tensor<'_>) -> Result<Self::Vector, EngineError>;
    /// Rows of `table` for each token of `input`, times `scale` (1, or `√hidden` for Gemma).
    fn embed(
        &mut self,
        table: &Self::Linear,
        input: PassInput<'_>,
        scale: f32,
    ) -> Result<Self::Tensor, EngineError>;
    /// Row-wise RMSNorm.
    fn rms_norm(
        &mut self,
        x: &Self::Tensor,
        weight: &Self::Vector,
        eps: f32,
    ) -> Result<Self::Tensor, EngineError>;
    /// Row-wise LayerNorm, `(x − μ) · rsqrt(σ² + eps) · weight + bias`
    /// (StableLM's and Phi's norms).
    fn layer_norm(
        &mut self,
        x: &Self::Tensor,
        weight: &Self::Vector,
        bias: &Self::Vector,
        eps: f32,
    ) -> Result<Self::Tensor, EngineError>;
    /// `x · Wᵀ (+ bias)`.
    fn linear(
        &mut self,
        x: &Self::Tensor,
        weight: &Self::Linear,
    ) -> Result<Self::Tensor, EngineError>;
    /// `residual += x · Wᵀ (+ bias)`.
    fn linear_add(
        &mut self,
        x: &Self::Tensor,
        weight: &Self::Linear,
        residual: &mut Self::Tensor,
    ) -> Result<(), EngineError>;
    /// `residual += x` (the residual add after a sandwich norm).
    fn add(&mut self, residual: &mut Self::Tensor, x: &Self::Tensor) -> Result<(), EngineError>;
    /// `tanh(x / cap) · cap`, elementwise (Gemma-2's final logits).
    fn softcap(&mut self, x: &Self::Tensor, cap: f32) -> Result<Self::Tensor, EngineError>;
    /// The gated activation of a `[gate | up]` row: `act(gate) · up`.
    fn gated(
        &mut self,
        gate_up: &Self::Tensor,
        activation: Activation,
    ) -> Result<Self::Tensor, EngineError>;
    /// `act(x)`, elementwise: the activation of a non-gated MLP (Phi's
    /// `fc1 → gelu_new → fc2`).
    fn activation(
        &mut self,
        x: &Self::Tensor,
        activation: Activation,
    ) -> Result<Self::Tensor, EngineError>;
    /// `rms_norm(x) · Wᵀ (+ bias)`: the norm before a projection, which a
    /// backend may fuse into the product.
    fn norm_linear(
        &mut self,
        x: &Self::Tensor,
        norm: &Self::Vector,
        eps: f32,
        weight: &Self::Linear,
    ) -> Result<Self::Tensor, EngineError> {
        let normed = self.rms_norm(x, norm, eps)?;
        self.linear(&normed, weight)
    }
    /// `residual += act(gate) · up · Wᵀ (+ bias)`: the MLP's activation and
    /// output projection, which a backend may fuse.
    fn gated_linear_add(
        &mut self,
        gate_up: &Self::Tensor,
        activation: Activation,
        weight: &Self::Linear,
        residual: &mut Self::Tensor,
    ) -> Result<(), EngineError> {
        let activated = self.gated(gate_up, activation)?;
        self.linear_add(&activated, weight, residual)
    }
    /// Attention of layer `layer` for tokens placed as `place` says: splits
    /// the fused QKV rows, applies the optional q/k norm and RoPE, appends keys
    /// and values to each row's KV cache, and attends causally over it.
    fn attention(
        &mut self,
        spec: &ModelSpec,
        layer: usize,
        qkv: &Self::Tensor,
        qk_norm: Option<&(Self::Vector, Self::Vector)>,
        place: Placement<'_>,
    ) -> Result<Self::Tensor, EngineError>;
    /// Splits rows of Qwen3.5's fused projection, `[q | gate]` per query head
    /// then keys and values, into `[q; k; v]` rows (what
    /// [`Backend::attention`] reads) and the gates `[tokens, heads · head_dim]`.
    fn split_query_gate(
        &mut self,
        _spec: &ModelSpec,
        _qkv: &Self::Tensor,
    ) -> Result<(Self::Tensor, Self::Tensor), EngineError> {
        Err(not_on_this_backend("the gated attention output (Qwen3.5)"))
    }
    /// `x · sigmoid(gate)`, elementwise (Qwen3.5's gated attention output).
    fn sigmoid_gate(
        &mut self,
        _x: &Self::Tensor,
        _gate: &Self::Tensor,
    ) -> Result<Self::Tensor, EngineError> {
        Err(not_on_this_backend("the gated attention output (Qwen3.5)"))
    }
    /// The recurrence of Gated DeltaNet layer `layer` over the rows of
    /// `qkv = in_proj_qkv(x)`, `a = in_proj_a(x)` and `b = in_proj_b(x)`:
    /// the causal convolution with SiLU, the gates, and the delta rule,
    /// reading and advancing the layer's recurrent state (kept with the KV
    /// cache, emptied by [`Backend::reset_cache`]). Returns the heads'
    /// outputs `[tokens, value_heads · value_dim]`, before the gated norm.
    fn delta_net(
        &mut self,
        _shape: &DeltaNetShape,
        _layer: usize,
        _qkv: &Self::Tensor,
        _a: &Self::Tensor,
        _b: &Self::Tensor,
        _weights: &DeltaNetWeights<Self>,
    ) -> Result<Self::Tensor, EngineError> {
        Err(not_on_this_backend("Gated DeltaNet layers (Qwen3.5)"))
    }
    /// `rms_norm(x) · weight · silu(z)` per value head (`shape.value_dim`
    /// values, `weight`'s length), the norm of a Gated DeltaNet layer's output.
    fn gated_rms_norm(
        &mut self,
        _shape: &DeltaNetShape,
        _x: &Self::Tensor,
        _weight: &Self::Vector,
        _z: &Self::Tensor,
        _eps: f32,
    ) -> Result<Self::Tensor, EngineError> {
        Err(not_on_this_backend("Gated DeltaNet layers (Qwen3.5)"))
    }
    /// Row `index` of `x` (the last one is the only one whose logits a
    /// prefill needs; a batched step draws from each row in turn).
    fn row(&mut self, x: &Self::Tensor, index: usize) -> Result<Self::Tensor, EngineError>;
    /// Copies a tensor to the host, blocking until it is there: the trace
    /// points of a forward pass call it in the middle of recording. A backend
    /// that cannot block (the GPU engine in a browser) returns an error; the
    /// generation path uses [`Backend::read`] instead.
    fn to_host(&mut self, x: &Self::Tensor) -> Result<Vec<f32>, EngineError>;
    /// Copies a tensor to the host, awaiting the device instead of blocking
    /// (the readback a browser allows).
    async fn read(&mut self, x: &Self::Tensor) -> Result<Vec<f32>, EngineError> {
        self.to_host(x)
    }
    /// Starts choosing the most likely token of a one-row logits tensor
    /// (lowest id among ties) without waiting for it: the device keeps it
    /// as the input of a following [`PassInput::Queued`] pass, and
    /// [`Backend::take_token`] brings it to the host. The host can so record
    /// the next step while the device still computes this one.
    fn queue_argmax(&mut self, logits: &Self::Tensor) -> Result<Self::Pending, EngineError>;
    /// Starts drawing the next token of a one-row logits tensor as `step`
    /// says, without waiting for it: the sampled counterpart of
    /// [`Backend::queue_argmax`], with the same hand-over to the next pass
    /// and to [`Backend::take_token`]. The backend keeps the penalties'
    /// counts itself ([`crate::sampling::TokenCounts`]): it restarts them when
    /// the step says so and adds the drawn token, before the host reads it.
    /// The step's probabilities, if asked for, come back with the token.
    fn queue_sample(
        &mut self,
        logits: &Self::Tensor,
        step: &SamplingStep<'_>,
    ) -> Result<Self::Pending, EngineError>;
    /// Starts the draw of every row of `logits`, a batched step's: row i for
    /// sequence `draws[i].0`, as its step says or (`None`) the most likely
    /// token, each exactly as [`Backend::queue_sample`] or
    /// [`Backend::queue_argmax`] would on that row alone with that sequence
    /// selected. Leaves the last row's sequence selected. A backend may hand
    /// all of them to the device at once (the GPU engine: one submission).
    fn queue_draws(
        &mut self,
        logits: &Self::Tensor,
        draws: &[(usize, Option<&SamplingStep<'_>>)],
    ) -> Result<Vec<Self::Pending>, EngineError> {
        let mut pending = Vec::with_capacity(draws.len());
        for (index, &(sequence, step)) in draws.iter().enumerate() {
            self.select_sequence(sequence)?;
            let row = self.row(logits, index)?;
            pending.push(match step {
                None => self.queue_argmax(&row)?,
                Some(step) => self.queue_sample(&row, step)?,
            });
        }
        Ok(pending)
    }
    /// A queued token (with its probabilities, when the step asked for
    /// them), or `None` when its logits were not all finite.
    async fn take_token(&mut self, pending: Self::Pending) -> Result<Option<Drawn>, EngineError>;
    /// Forgets the selected sequence's KV cache and recurrent state.
    fn reset_cache(&mut self);
}

/// The error of an op a backend does not implement (the GPU engine's
/// Qwen3.5 ops, which it refuses in [`Backend::prepare`] before they are reached).
fn not_on_this_backend(what: &str) -> EngineError {
    EngineError::Unsupported(format!("{what}: not implemented on this backend"))
}
