//! What a BERT artifact's `model_config` says about its encoder, read the way
//! MLC's `BertConfig` reads it (docs/families.md, "bert").

use mlc_loader::ChatConfig;
use serde::de::DeserializeOwned;

use crate::EngineError;

/// The activation after the intermediate projection (`hidden_act`, MLC's `ACT2FN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderActivation {
    /// `gelu`: the exact, erf-based GELU.
    Gelu,
    /// `gelu_new`: the tanh approximation.
    GeluTanh,
    /// `relu`.
    Relu,
    /// `silu` / `swish`.
    Silu,
}

/// A post-norm BERT encoder, as one artifact configures it.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderSpec {
    /// Residual stream width (the embedding's size).
    pub hidden_size: usize,
    /// Width of the intermediate projection.
    pub intermediate_size: usize,
    /// Encoder layers.
    pub num_layers: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Dimension of one head.
    pub head_dim: usize,
    /// Rows of the word embedding.
    pub vocab_size: usize,
    /// Rows of the token-type embedding (every input is type 0, as in MLC).
    pub type_vocab_size: usize,
    /// Rows of the position embedding (`model_config.context_window_size`).
    pub position_rows: usize,
    /// The longest input: the position table's rows, or fewer when the
    /// top-level `context_window_size` (an override) says so.
    pub context_window_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f32,
    /// The intermediate activation.
    pub activation: EncoderActivation,
}

impl EncoderSpec {
    /// Reads a `model_type: "bert"` config.
    pub fn from_config(config: &ChatConfig) -> Result<EncoderSpec, EngineError> {
        let required = |key: &str| -> Result<usize, EngineError> {
            get::<usize>(config, key)?
                .filter(|&v| v > 0)
                .ok_or_else(|| EngineError::Config(format!("model_config.{key} must be positive")))
        };
        let hidden_size = required("hidden_size")?;
        let num_heads = required("num_attention_heads")?;
        let head_dim = match get::<usize>(config, "head_dim")? {
            Some(d) if d > 0 => d,
            _ => hidden_size / num_heads,
        };
        if head_dim * num_heads != hidden_size {
            return Err(EngineError::Config(format!(
                "head_dim ({head_dim}) × num_attention_heads ({num_heads}) must equal hidden_size ({hidden_size})"
            )));
        }
        let activation = match get::<String>(config, "hidden_act")?.as_deref() {
            Some("gelu") => EncoderActivation::Gelu,
            Some("gelu_new") => EncoderActivation::GeluTanh,
            Some("relu") => EncoderActivation::Relu,
            Some("silu") | Some("swish") => EncoderActivation::Silu,
            other => {
                return Err(EngineError::Config(format!(
                    "model_config.hidden_act {other:?} is not one of MLC's BERT activations (gelu, gelu_new, relu, silu, swish)"
                )));
            }
        };
        let layer_norm_eps = get::<f32>(config, "layer_norm_eps")?
            .filter(|eps| eps.is_finite() && *eps >= 0.0)
            .ok_or_else(|| {
                EngineError::Config("model_config.layer_norm_eps must be finite and ≥ 0".into())
            })?;
        // The position table has model_config's rows; the top-level value can only shrink it.
        let table = required("context_window_size")?;
        let context_window_size = match usize::try_from(config.context_window_size) {
            Ok(top) if top > 0 => top.min(table),
            _ => table,
        };
        let type_vocab_size = get::<usize>(config, "type_vocab_size")?.unwrap_or(2);
        if config.vocab_size == 0 || type_vocab_size == 0 {
            return Err(EngineError::Config(
                "vocab_size and type_vocab_size must be positive".into(),
            ));
        }
        Ok(EncoderSpec {
            hidden_size,
            intermediate_size: required("intermediate_size")?,
            num_layers: required("num_hidden_layers")?,
            num_heads,
            head_dim,
            vocab_size: config.vocab_size,
            type_vocab_size,
            position_rows: table,
            context_window_size,
            layer_norm_eps,
            activation,
        })
    }

    /// The attention softmax scale, `head_dim^-0.5`.
    pub fn attention_scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

fn get<T: DeserializeOwned>(config: &ChatConfig, key: &str) -> Result<Option<T>, EngineError> {
    Ok(config.model_config_get(key)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(model_config: serde_json::Value, context: i64) -> ChatConfig {
        let json = serde_json::json!({
            "model_type": "bert", "quantization": "q0f32", "vocab_size": 100,
            "context_window_size": context, "model_config": model_config,
        });
        ChatConfig::from_json(&json.to_string()).expect("a config")
    }

    fn bert(act: &str) -> serde_json::Value {
        serde_json::json!({
            "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 128, "hidden_act": act, "layer_norm_eps": 1e-12,
            "context_window_size": 512, "head_dim": 16, "type_vocab_size": 2
        })
    }

    #[test]
    fn a_smaller_top_level_window_limits_inputs_but_not_the_position_table() {
        let spec = EncoderSpec::from_config(&config(bert("gelu"), 128)).unwrap();
        assert_eq!((spec.position_rows, spec.context_window_size), (512, 128));
        assert_eq!(spec.activation, EncoderActivation::Gelu);
        let spec = EncoderSpec::from_config(&config(bert("gelu_new"), -1)).unwrap();
        assert_eq!((spec.position_rows, spec.context_window_size), (512, 512));
        assert_eq!(spec.activation, EncoderActivation::GeluTanh);
    }

    #[test]
    fn an_activation_mlc_does_not_map_is_refused_by_name() {
        let err = EncoderSpec::from_config(&config(bert("quick_gelu"), 512)).unwrap_err();
        assert!(err.to_string().contains("quick_gelu"), "{err}");
    }
}
