//! Llama (Llama-2/3/3.x, SmolLM2, TinyLlama, ...): the plain pre-norm decoder
//! with fused `qkv_proj`, no biases, SiLU MLP, and Llama-3 RoPE scaling.

use mlc_kernels::cpu::Llama3Scaling;
use serde::Deserialize;

use super::{ConfigFields, ModelSpec, ParamNames};
use crate::EngineError;

/// MLC keeps `rope_scaling` only when it has a `rope_type`; only `llama3` exists.
#[derive(Deserialize)]
struct RopeScaling {
    rope_type: String,
    factor: f32,
    low_freq_factor: f32,
    high_freq_factor: f32,
    original_max_position_embeddings: f32,
}

pub(super) fn spec(fields: &ConfigFields<'_>) -> Result<ModelSpec, EngineError> {
    let theta = fields.optional("position_embedding_base")?.unwrap_or(10_000.0);
    let mut spec = fields.common("llama", theta, ParamNames::llama_style("qkv_proj"))?;
    spec.rope_scaling = match fields.optional::<serde_json::Value>("rope_scaling")? {
        Some(value) if value.get("rope_type").is_some() => {
            let s: RopeScaling = serde_json::from_value(value)
                .map_err(|e| EngineError::Config(format!("model_config.rope_scaling: {e}")))?;
            if s.rope_type != "llama3" {
                return Err(EngineError::Config(format!(
                    "model_config.rope_scaling.rope_type `{}` is not supported (llama3)",
                    s.rope_type
                )));
            }
            Some(Llama3Scaling {
                factor: s.factor,
                low_freq_factor: s.low_freq_factor,
                high_freq_factor: s.high_freq_factor,
                original_max_position_embeddings: s.original_max_position_embeddings,
            })
        }
        _ => None,
    };
    Ok(spec)
}
