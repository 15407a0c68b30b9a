//! What a model family tells the shared decoder: its shape, its numerics and
//! the names of its parameters in the artifact.

use mlc_kernels::cpu::{DeltaNetShape, Llama3Scaling, RollingWindow, Rope, YarnScaling};

/// Phi-3's LongRoPE frequencies, as MLC applies them (docs/families.md, "phi3").
#[derive(Debug, Clone, PartialEq)]
pub struct LongRope {
    /// One divisor per rotated pair: `short_factor` (see `phi3.rs` for why not `long_factor`).
    pub factors: Vec<f32>,
    /// Factor on `cos` and `sin`: `sqrt(1 + ln(max / original) / ln(original))`, or 1.
    pub mscale: f32,
}

/// RoPE frequency scaling: at most one kind per model, so one enum rather
/// than an option per kind.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE, `inv_freq(i) = theta^(-2i / rotary_dim)`.
    None,
    /// Llama-3 frequency scaling (Llama, OLMo-2).
    Llama3(Llama3Scaling),
    /// Phi-3 LongRoPE frequency factors.
    LongRope(LongRope),
    /// YaRN as TVM applies it for MLC (Ministral 3), one frequency per dimension.
    Yarn(YarnScaling),
}

/// The activation of the gated MLP: the kernels' own type, one for every engine.
pub use mlc_kernels::Activation;

/// Parameter names of one family, as they appear in `tensor-cache.json`
/// (without the `.q_weight` / `.q_scale` / `.weight` suffix).
#[derive(Debug, Clone)]
pub struct ParamNames {
    /// Token embedding table.
    pub embed: String,
    /// Prefix of layer `L`'s parameters: `{layer_prefix}{L}.`.
    pub layer_prefix: String,
    /// RMSNorm before attention.
    pub attn_norm: String,
    /// Fused `[q; k; v]` projection.
    pub qkv: String,
    /// The q, k and v projections when the artifact stores them apart (Gemma 3);
    /// they are stacked into the fused projection on load.
    pub separate_qkv: Option<[String; 3]>,
    /// Attention output projection.
    pub o_proj: String,
    /// Per-head query norm (Qwen3).
    pub q_norm: String,
    /// Per-head key norm (Qwen3).
    pub k_norm: String,
    /// RMSNorm before the MLP.
    pub mlp_norm: String,
    /// RMSNorm of the attention output before its residual add (sandwich norms).
    pub post_attn_norm: String,
    /// RMSNorm of the MLP output before its residual add (sandwich norms).
    pub post_mlp_norm: String,
    /// Fused `[gate; up]` projection.
    pub gate_up: String,
    /// MLP output projection.
    pub down: String,
    /// Final RMSNorm.
    pub final_norm: String,
    /// Output projection when the embedding is not tied.
    pub lm_head: String,
    /// Prefix of a Gated DeltaNet layer's parameters within the layer
    /// (Qwen3.5's `linear_attn`; [`ModelSpec::linear_attention`]).
    pub linear_attn: String,
}

impl ParamNames {
    /// The names used by MLC's Llama-style families (`model.layers.L.*`).
    pub fn llama_style(qkv: &str) -> ParamNames {
        ParamNames {
            embed: "model.embed_tokens".into(),
            layer_prefix: "model.layers.".into(),
            attn_norm: "input_layernorm".into(),
            qkv: format!("self_attn.{qkv}"),
            separate_qkv: None,
            o_proj: "self_attn.o_proj".into(),
            q_norm: "self_attn.q_norm".into(),
            k_norm: "self_attn.k_norm".into(),
            mlp_norm: "post_attention_layernorm".into(),
            post_attn_norm: String::new(),
            post_mlp_norm: String::new(),
            gate_up: "mlp.gate_up_proj".into(),
            down: "mlp.down_proj".into(),
            final_norm: "model.norm".into(),
            lm_head: "lm_head".into(),
            linear_attn: "linear_attn".into(),
        }
    }

    /// Gemma's names: Llama's, with four norms per layer around attention and MLP.
    pub fn gemma_style() -> ParamNames {
        ParamNames {
            mlp_norm: "pre_feedforward_layernorm".into(),
            post_attn_norm: "post_attention_layernorm".into(),
            post_mlp_norm: "post_feedforward_layernorm".into(),
            ..ParamNames::llama_style("qkv_proj")
        }
    }

    /// Gemma 3's names: Gemma's under `language_model.`, with q, k and v
    /// projections stored apart.
    pub fn gemma3() -> ParamNames {
        let gemma = ParamNames::gemma_style();
        let prefixed = |name: &str| format!("language_model.{name}");
        ParamNames {
            embed: prefixed(&gemma.embed),
            layer_prefix: prefixed(&gemma.layer_prefix),
            separate_qkv: Some(["q_proj", "k_proj", "v_proj"].map(|p| format!("self_attn.{p}"))),
            final_norm: prefixed(&gemma.final_norm),
            lm_head: prefixed(&gemma.lm_head),
            ..gemma
        }
    }

    /// Full name of a per-layer parameter.
    pub fn layer(&self, layer: usize, param: &str) -> String {
        format!("{}{layer}.{param}", self.layer_prefix)
    }
}

/// Gemma 3's local attention: most layers see only the last `size` positions,
/// every `pattern`-th layer (1-based) sees the whole context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindow {
    /// Keys a local layer's query sees, its own included.
    pub size: usize,
    /// Layer `L` is global when `(L + 1) % pattern == 0`.
    pub pattern: usize,
}

/// Qwen3.5's Gated DeltaNet layers: every layer but each
/// `full_attention_interval`-th (1-based) replaces attention with the
/// recurrence of [`mlc_kernels::cpu::gated_delta_rule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearAttention {
    /// Layer `L` is full attention when `(L + 1) % full_attention_interval == 0`.
    pub full_attention_interval: usize,
    /// Heads, head widths and convolution taps of every linear layer.
    pub shape: DeltaNetShape,
}

/// A pre-norm decoder-only transformer, as one family configures it.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// `model_type` of the artifact.
    pub family: &'static str,
    /// Residual stream width.
    pub hidden_size: usize,
    /// MLP width (each of gate and up).
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (GQA when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Dimension of one head.
    pub head_dim: usize,
    /// Rows of the embedding and width of the logits.
    pub vocab_size: usize,
    /// The norms' epsilon (`rms_norm_eps`, or StableLM's `layer_norm_eps`).
    pub rms_norm_eps: f32,
    /// The layer and final norms are LayerNorms with a bias (StableLM, Phi,
    /// GPT-NeoX), not RMSNorms.
    pub layer_norm: bool,
    /// RoPE base.
    pub rope_theta: f32,
    /// How the RoPE frequencies are scaled, if at all.
    pub rope_scaling: RopeScaling,
    /// Dimensions rotated at the start of each head (`head_dim` unless Phi's
    /// `partial_rotary_factor` < 1); the rest pass through.
    pub rotary_dim: usize,
    /// Factor on the embedding rows (`√hidden_size` for Gemma, else 1).
    pub embed_scale: f32,
    /// Where each layer's RMSNorms sit around attention and the MLP.
    pub norms: NormPlacement,
    /// Gemma-2's final logit soft-capping, `tanh(logits / c) · c`.
    pub final_logit_softcap: Option<f32>,
    /// The MLP's activation.
    pub activation: Activation,
    /// The MLP is gated, `down(act(gate) · up)` over a fused `[gate; up]`
    /// projection (every family but Phi and GPT-NeoX), rather than
    /// `down(act(up))` (Phi's `fc2(gelu_new(fc1))`).
    pub gated_mlp: bool,
    /// The attention output and both MLP projections have a bias (Phi,
    /// GPT-NeoX; the QKV bias is [`ModelSpec::qkv_bias`], `lm_head`'s
    /// [`ModelSpec::lm_head_bias`]).
    pub dense_bias: bool,
    /// `lm_head` has a bias (Phi; GPT-NeoX's `embed_out` has none).
    pub lm_head_bias: bool,
    /// Logits use the embedding table instead of `lm_head`.
    pub tie_word_embeddings: bool,
    /// The fused QKV projection has a bias (Qwen2).
    pub qkv_bias: bool,
    /// Queries and keys are RMS-normalised before RoPE, per head (Qwen3,
    /// Gemma 3) or across all heads (OLMo-2).
    pub qk_norm: Option<QkNormWidth>,
    /// The softmax scale is `query_pre_attn_scalar^-0.5` instead of
    /// `head_dim^-0.5` (Gemma 3).
    pub query_pre_attn_scalar: Option<f32>,
    /// Factor on the softmax scale (Ministral 3's YaRN `sm²`; 1 otherwise).
    pub attention_scale_factor: f32,
    /// Local (sliding-window) and global layers (Gemma 3).
    pub sliding_window: Option<SlidingWindow>,
    /// Gated DeltaNet layers between the attention layers (Qwen3.5).
    pub linear_attention: Option<LinearAttention>,
    /// The query projection gives each head `[q | gate]` and the attention
    /// output is multiplied by `sigmoid(gate)` before `o_proj` (Qwen3.5).
    pub attention_output_gate: bool,
    /// MLC's rolling KV cache (Mistral's `sliding_window_size` with attention
    /// sinks): every layer holds the sinks and the newest tokens only, and the
    /// sequence is unbounded. Not Gemma 3's [`ModelSpec::sliding_window`],
    /// which masks a full cache.
    pub rolling_window: Option<RollingWindow>,
    /// Most tokens the KV cache holds (prompt and generated); `usize::MAX`
    /// with a [`ModelSpec::rolling_window`].
    pub context_window_size: usize,
    /// Most tokens forwarded in one prefill call.
    pub prefill_chunk_size: usize,
    /// Parameter names in the artifact.
    pub names: ParamNames,
}

/// Where a layer's norms sit: `x` is the residual stream, `f` attention or the MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormPlacement {
    /// `x + f(norm(x))`: Llama and most families.
    Pre,
    /// `x + norm(f(norm(x)))`: Gemma 2 and 3.
    Sandwich,
    /// `x + norm(f(x))`: OLMo-2.
    Post,
    /// `x + attention(norm(x)) + mlp(norm'(x))`, both branches reading the
    /// same `x`: one norm feeding both (Phi's parallel block), or a norm of
    /// its own for the MLP when the family names `mlp_norm` (GPT-NeoX's
    /// `use_parallel_residual`).
    Parallel,
}

impl NormPlacement {
    /// Whether the branch input is normalised.
    pub fn before(self) -> bool {
        matches!(self, NormPlacement::Pre | NormPlacement::Sandwich | NormPlacement::Parallel)
    }

    /// Whether the branch output is normalised before the residual add.
    pub fn after(self) -> bool {
        matches!(self, NormPlacement::Sandwich | NormPlacement::Post)
    }
}

/// What one query/key RMSNorm spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNormWidth {
    /// Each head on its own, one `head_dim` weight shared by the heads.
    Head,
    /// All query heads as one vector (and all key heads), a weight per value.
    AllHeads,
}

impl ModelSpec {
    /// Width of the fused QKV projection output (with each query head's
    /// gate when [`ModelSpec::attention_output_gate`]).
    pub fn qkv_width(&self) -> usize {
        let query_heads = if self.attention_output_gate { 2 } else { 1 } * self.num_heads;
        (query_heads + 2 * self.num_kv_heads) * self.head_dim
    }

    /// The MLP's intermediate size padded to whole groups of 32, as MLC
    /// stores `down_proj` and as the loader widens `gate_up` to match
    /// (`weights.rs`, `pad_intermediate`).
    pub fn padded_intermediate(&self) -> usize {
        self.intermediate_size.next_multiple_of(32)
    }

    /// Columns of the widest activation a step computes, the logits aside:
    /// the gate|up product's output (the intermediate size padded to 32,
    /// twice when gated), the fused q/k/v projection's, the hidden state, a
    /// Gated DeltaNet layer's convolution input and its `z` gate.
    pub fn widest_activation(&self) -> usize {
        let padded_i = self.padded_intermediate();
        let mlp = if self.gated_mlp { 2 * padded_i } else { padded_i };
        let linear = self
            .linear_attention
            .as_ref()
            .map_or(0, |linear| linear.shape.conv_channels().max(linear.shape.value_width()));
        [self.hidden_size, self.qkv_width(), mlp, linear].into_iter().max().unwrap_or(1)
    }

    /// The Gated DeltaNet shape of layer `layer`, `None` for an attention layer.
    pub fn linear_layer(&self, layer: usize) -> Option<&DeltaNetShape> {
        let linear = self.linear_attention.as_ref()?;
        (!(layer + 1).is_multiple_of(linear.full_attention_interval)).then_some(&linear.shape)
    }

    /// Whether a forward pass leaves state that cannot be rewound to an
    /// earlier position (Gated DeltaNet layers): the KV cache of the other
    /// families can be cut back, a recurrent state cannot.
    pub fn recurrent(&self) -> bool {
        self.linear_attention.is_some()
    }

    /// Whether the context can be cut back to an earlier position. Neither
    /// a recurrent state nor a rolling KV cache can: a pass that evicted a
    /// token from the window cannot bring it back.
    pub fn rewindable(&self) -> bool {
        !self.recurrent() && self.rolling_window.is_none()
    }

    /// The rotation shared by all layers.
    pub fn rope(&self) -> Rope {
        let (theta, rotary_dim) = (self.rope_theta, self.rotary_dim);
        match &self.rope_scaling {
            RopeScaling::None => Rope::new(theta, rotary_dim, None),
            RopeScaling::Llama3(s) => Rope::new(theta, rotary_dim, Some(*s)),
            RopeScaling::LongRope(long) => {
                Rope::longrope(theta, rotary_dim, &long.factors, long.mscale)
            }
            RopeScaling::Yarn(s) => Rope::yarn(theta, rotary_dim, *s),
        }
    }

    /// Attention softmax scale, `head_dim^-0.5` unless the family sets
    /// `query_pre_attn_scalar`, times [`ModelSpec::attention_scale_factor`].
    pub fn attention_scale(&self) -> f32 {
        self.attention_scale_factor
            / self.query_pre_attn_scalar.unwrap_or(self.head_dim as f32).sqrt()
    }

    /// The sliding window of layer `layer`, `None` for a global layer.
    pub fn attention_window(&self, layer: usize) -> Option<usize> {
        let window = self.sliding_window?;
        (!(layer + 1).is_multiple_of(window.pattern)).then_some(window.size)
    }
}
