//! Model families. Each family file maps its `model_config` onto a
//! [`ModelSpec`]; the shared pre-norm decoder in [`decoder`] runs every family
//! on any [`crate::backend::Backend`].

pub mod decoder;
mod gemma;
mod gemma2;
mod gemma3;
mod gpt_neox;
mod llama;
mod ministral3;
mod mistral;
mod olmo2;
mod phi;
mod phi3;
mod qwen2;
mod qwen3;
mod qwen3_5;
mod spec;
mod stablelm;

pub use spec::{
    Activation, LinearAttention, LongRope, ModelSpec, NormPlacement, ParamNames, QkNormWidth,
    RopeScaling, SlidingWindow,
};

use mlc_kernels::cpu::{Llama3Scaling, RollingWindow};
use mlc_loader::ChatConfig;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::EngineError;

/// `model_type` values this runtime implements.
pub const SUPPORTED_FAMILIES: &[&str] = &[
    "llama",
    "qwen2",
    "qwen3",
    "qwen3_5",
    "qwen3_5_text",
    "mistral",
    "ministral3",
    "phi3",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3_text",
    "olmo2",
    "stablelm",
    "phi",
    "phi-msft",
    "gpt_neox",
];

/// The decoder description of an artifact, or a clear error when its family is
/// not supported or its `model_config` is incomplete.
pub fn spec_for(config: &ChatConfig) -> Result<ModelSpec, EngineError> {
    let fields = ConfigFields { config };
    match config.model_type.as_str() {
        "llama" => llama::spec(&fields),
        "qwen2" => qwen2::spec(&fields),
        "qwen3" => qwen3::spec(&fields),
        "qwen3_5" | "qwen3_5_text" => qwen3_5::spec(&fields),
        "mistral" => mistral::spec(&fields),
        "ministral3" => ministral3::spec(&fields),
        "phi3" => phi3::spec(&fields),
        "gemma" => gemma::spec(&fields),
        "gemma2" => gemma2::spec(&fields),
        "gemma3" | "gemma3_text" => gemma3::spec(&fields),
        "olmo2" => olmo2::spec(&fields),
        "stablelm" => stablelm::spec(&fields),
        "phi" => phi::spec(&fields, false),
        "phi-msft" => phi::spec(&fields, true),
        "gpt_neox" => gpt_neox::spec(&fields),
        other if crate::kind::EMBEDDING_FAMILIES.contains(&other) => {
            Err(EngineError::NotAChatModel { model_type: other.to_string() })
        }
        other => Err(EngineError::UnsupportedModelType {
            model_type: other.to_string(),
            supported: SUPPORTED_FAMILIES.join(", "),
        }),
    }
}

/// The `model_config` keys of the fields every family shares.
pub(crate) struct CommonKeys {
    hidden: &'static str,
    intermediate: &'static str,
    layers: &'static str,
    heads: &'static str,
    kv_heads: &'static str,
    /// The norms' epsilon; any key but `rms_norm_eps` names LayerNorms.
    eps: &'static str,
}

impl CommonKeys {
    /// Hugging Face's names, as most MLC configs keep them.
    const HF: CommonKeys = CommonKeys {
        hidden: "hidden_size",
        intermediate: "intermediate_size",
        layers: "num_hidden_layers",
        heads: "num_attention_heads",
        kv_heads: "num_key_value_heads",
        eps: "rms_norm_eps",
    };

    /// MLC's `PhiConfig` (`phi-msft`): GPT-2's names.
    const PHI_MSFT: CommonKeys = CommonKeys {
        hidden: "n_embd",
        intermediate: "n_inner",
        layers: "n_layer",
        heads: "n_head",
        kv_heads: "n_head_kv",
        eps: "layer_norm_epsilon",
    };
}

/// Typed reads of `model_config`, with errors that name the missing or
/// ill-typed key.
pub(crate) struct ConfigFields<'a> {
    config: &'a ChatConfig,
}

impl ConfigFields<'_> {
    /// A key the family cannot do without.
    pub fn required<T: DeserializeOwned>(&self, key: &str) -> Result<T, EngineError> {
        self.optional(key)?
            .ok_or_else(|| EngineError::Config(format!("model_config.{key} is missing")))
    }

    /// A key with a default (absent or `null` reads as `None`).
    pub fn optional<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, EngineError> {
        Ok(self.config.model_config_get(key)?)
    }

    /// The whole chat config, for top-level fields.
    pub fn chat(&self) -> &ChatConfig {
        self.config
    }

    /// Fills the fields every family reads the same way; the family supplies the
    /// RoPE base (whose key differs), its parameter names and its variations.
    pub fn common(
        &self,
        family: &'static str,
        rope_theta: f32,
        names: ParamNames,
    ) -> Result<ModelSpec, EngineError> {
        // StableLM's, Phi's and GPT-NeoX's norms are LayerNorms with their own epsilon key.
        let keys = match family {
            "stablelm" | "phi" | "gpt_neox" => {
                CommonKeys { eps: "layer_norm_eps", ..CommonKeys::HF }
            }
            _ => CommonKeys::HF,
        };
        self.common_keys(family, rope_theta, names, &keys)
    }

    /// [`ConfigFields::common`] reading the shared fields under `keys` (Phi-2's
    /// `phi-msft` config names them after GPT-2).
    pub fn common_keys(
        &self,
        family: &'static str,
        rope_theta: f32,
        names: ParamNames,
        keys: &CommonKeys,
    ) -> Result<ModelSpec, EngineError> {
        self.spec_with(family, rope_theta, names, keys, None)
    }

    /// [`ConfigFields::common`] for a family whose KV cache rolls when the
    /// config sets a sliding window ([`ConfigFields::rolling_window`]): the
    /// spec then has that window and no context limit, as MLC's Mistral has
    /// (`context_window_size` -1).
    pub fn common_rolling(
        &self,
        family: &'static str,
        rope_theta: f32,
        names: ParamNames,
    ) -> Result<ModelSpec, EngineError> {
        let rolling = self.rolling_window()?;
        self.spec_with(family, rope_theta, names, &CommonKeys::HF, rolling)
    }

    /// MLC's rolling KV cache as WebLLM sets it up (`llm_chat.ts`): the
    /// top-level `sliding_window_size` (none when not positive) with
    /// `attention_sink_size` sinks. Like WebLLM, refuses a config that also
    /// sets `context_window_size` or leaves the sink size negative; like TVM's
    /// `EnableSlidingWindowForSeq`, a sink size not below the window.
    pub fn rolling_window(&self) -> Result<Option<RollingWindow>, EngineError> {
        let chat = self.chat();
        let Ok(size) = usize::try_from(chat.sliding_window_size) else { return Ok(None) };
        if size == 0 {
            return Ok(None);
        }
        if chat.context_window_size != -1 {
            return Err(EngineError::Config(format!(
                "context_window_size ({}) and sliding_window_size ({size}) are both set; set one of them \
                 to -1 (WebLLM's WindowSizeConfigurationError)",
                chat.context_window_size
            )));
        }
        let sink = usize::try_from(chat.attention_sink_size).map_err(|_| {
            EngineError::Config(format!(
                "attention_sink_size must not be negative with a sliding window, got {} \
                 (WebLLM's AttentionSinkSizeError)",
                chat.attention_sink_size
            ))
        })?;
        if sink >= size {
            return Err(EngineError::Config(format!(
                "attention_sink_size ({sink}) must be below sliding_window_size ({size})"
            )));
        }
        Ok(Some(RollingWindow { size, sink }))
    }

    /// The shared fields under `keys`, with a rolling KV cache or a context window.
    fn spec_with(
        &self,
        family: &'static str,
        rope_theta: f32,
        names: ParamNames,
        keys: &CommonKeys,
        rolling: Option<RollingWindow>,
    ) -> Result<ModelSpec, EngineError> {
        let hidden_size: usize = self.required(keys.hidden)?;
        let num_heads: usize = self.required(keys.heads)?;
        let num_kv_heads: usize = self.optional(keys.kv_heads)?.unwrap_or(num_heads);
        let head_dim = match self.optional::<usize>("head_dim")? {
            Some(d) => d,
            None if num_heads > 0 => hidden_size / num_heads,
            None => 0,
        };
        let spec = ModelSpec {
            family,
            hidden_size,
            intermediate_size: self.required(keys.intermediate)?,
            num_layers: self.required(keys.layers)?,
            num_heads,
            num_kv_heads,
            head_dim,
            vocab_size: self.chat().vocab_size,
            rms_norm_eps: self.required(keys.eps)?,
            layer_norm: keys.eps != "rms_norm_eps",
            rope_theta,
            rope_scaling: RopeScaling::None,
            rotary_dim: head_dim,
            embed_scale: 1.0,
            norms: NormPlacement::Pre,
            final_logit_softcap: None,
            activation: Activation::Silu,
            gated_mlp: true,
            dense_bias: false,
            lm_head_bias: false,
            tie_word_embeddings: self.optional("tie_word_embeddings")?.unwrap_or(false),
            qkv_bias: false,
            qk_norm: None,
            query_pre_attn_scalar: None,
            attention_scale_factor: 1.0,
            sliding_window: None,
            linear_attention: None,
            attention_output_gate: false,
            // A rolling cache bounds memory, not the sequence (MLC sets -1).
            context_window_size: match rolling {
                Some(_) => usize::MAX,
                None => self.window("context_window_size")?,
            },
            rolling_window: rolling,
            prefill_chunk_size: self.window("prefill_chunk_size")?,
            names,
        };
        validate(&spec)?;
        Ok(spec)
    }

    /// A window size: the top-level value (what WebLLM reads), else model_config's.
    fn window(&self, key: &str) -> Result<usize, EngineError> {
        let top = match key {
            "context_window_size" => self.chat().context_window_size,
            _ => self.chat().prefill_chunk_size,
        };
        let value = if top > 0 { top } else { self.optional::<i64>(key)?.unwrap_or(-1) };
        usize::try_from(value).ok().filter(|&v| v > 0).ok_or_else(|| {
            EngineError::Config(format!(
                "{key} must be positive (sliding-window models are not supported yet), got {value}"
            ))
        })
    }

    /// `rope_scaling` as MLC's Llama-style models read it: kept only when it
    /// has a `rope_type`, and only `llama3` exists ([`RopeScaling::None`] when dropped).
    pub fn llama3_rope_scaling(&self) -> Result<RopeScaling, EngineError> {
        let Some(value) = self.optional::<serde_json::Value>("rope_scaling")? else {
            return Ok(RopeScaling::None);
        };
        if value.get("rope_type").is_none() {
            return Ok(RopeScaling::None);
        }
        let s: Llama3Keys = serde_json::from_value(value)
            .map_err(|e| EngineError::Config(format!("model_config.rope_scaling: {e}")))?;
        if s.rope_type != "llama3" {
            return Err(EngineError::Config(format!(
                "model_config.rope_scaling.rope_type `{}` is not supported (llama3)",
                s.rope_type
            )));
        }
        Ok(RopeScaling::Llama3(Llama3Scaling {
            factor: s.factor,
            low_freq_factor: s.low_freq_factor,
            high_freq_factor: s.high_freq_factor,
            original_max_position_embeddings: s.original_max_position_embeddings,
        }))
    }

    /// Gemma's embedding scale `√hidden`, as MLC multiplies by `hidden_size ** 0.5`
    /// in the activation dtype: a float16 model scales by the f16-rounded constant.
    pub fn gemma_embed_scale(&self, hidden_size: usize) -> Result<f32, EngineError> {
        let scale = (hidden_size as f32).sqrt();
        Ok(match self.chat().quantization()?.model_dtype() {
            mlc_loader::DType::F16 => half::f16::from_f32(scale).to_f32(),
            _ => scale,
        })
    }

    /// The MLP activation named by `hidden_act` (default SiLU).
    pub fn activation(&self) -> Result<Activation, EngineError> {
        match self.optional::<String>("hidden_act")?.as_deref() {
            None | Some("silu") | Some("swish") => Ok(Activation::Silu),
            Some("gelu_pytorch_tanh") | Some("gelu_new") => Ok(Activation::GeluTanh),
            Some(other) => Err(EngineError::Config(format!(
                "model_config.hidden_act `{other}` is not supported (silu, gelu_pytorch_tanh)"
            ))),
        }
    }
}

/// The `rope_scaling` keys of a `llama3` scaling.
#[derive(Deserialize)]
struct Llama3Keys {
    rope_type: String,
    factor: f32,
    low_freq_factor: f32,
    high_freq_factor: f32,
    original_max_position_embeddings: f32,
}

/// Rejects shapes no decoder can run, before any weight is read.
fn validate(spec: &ModelSpec) -> Result<(), EngineError> {
    let positive = [
        ("hidden_size", spec.hidden_size),
        ("intermediate_size", spec.intermediate_size),
        ("num_hidden_layers", spec.num_layers),
        ("num_attention_heads", spec.num_heads),
        ("num_key_value_heads", spec.num_kv_heads),
        ("head_dim", spec.head_dim),
        ("vocab_size", spec.vocab_size),
    ];
    if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
        return Err(EngineError::Config(format!("model_config.{key} must be positive")));
    }
    if !spec.num_heads.is_multiple_of(spec.num_kv_heads) {
        return Err(EngineError::Config(format!(
            "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
            spec.num_heads, spec.num_kv_heads
        )));
    }
    if !spec.head_dim.is_multiple_of(2) {
        return Err(EngineError::Config(format!(
            "head_dim ({}) must be even for RoPE",
            spec.head_dim
        )));
    }
    let eps_valid = spec.rms_norm_eps.is_finite() && spec.rms_norm_eps >= 0.0;
    let base_valid = spec.rope_theta.is_finite() && spec.rope_theta > 0.0;
    if !(eps_valid && base_valid) {
        return Err(EngineError::Config(
            "rms_norm_eps and the RoPE base must be finite and positive".into(),
        ));
    }
    Ok(())
}
