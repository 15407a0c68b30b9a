//! Ministral 3 (Ministral-3-3B Base / Instruct / Reasoning): Llama's decoder
//! with YaRN RoPE scaling as TVM's paged KV cache applies it for MLC, and the
//! softmax scale multiplied by YaRN's `sm²` (docs/families.md, "ministral3").

use mlc_kernels::cpu::YarnScaling;
use serde::Deserialize;

use super::{ConfigFields, ModelSpec, ParamNames, RopeScaling};
use crate::EngineError;

/// `rope_parameters` as MLC's Ministral3Config leaves it (`rope_theta` moved
/// out to `position_embedding_base`).
#[derive(Deserialize)]
struct RopeParameters {
    rope_type: Option<String>,
    /// Required by MLC's attention whenever `rope_parameters` exists.
    factor: f32,
    #[serde(default)]
    mscale_all_dim: f32,
    original_max_position_embeddings: Option<f32>,
    beta_fast: Option<f32>,
    beta_slow: Option<f32>,
}

pub(super) fn spec(fields: &ConfigFields<'_>) -> Result<ModelSpec, EngineError> {
    match fields.optional::<String>("hidden_act")?.as_deref() {
        None | Some("silu") | Some("swish") => {}
        Some(other) => {
            return Err(EngineError::Config(format!(
                "model_config.hidden_act `{other}` is not supported for ministral3 (silu)"
            )));
        }
    }
    let theta = match fields.optional::<f32>("position_embedding_base")? {
        Some(base) if base > 0.0 => base,
        _ => 10_000.0,
    };
    // WebLLM reads the top-level window sizes (after a model record's
    // overrides): with `sliding_window_size` > 0 the KV cache rolls, as Mistral's.
    let mut spec =
        fields.common_rolling("ministral3", theta, ParamNames::llama_style("qkv_proj"))?;
    let Some(value) = fields.optional::<serde_json::Value>("rope_parameters")? else {
        return Ok(spec);
    };
    let rope: RopeParameters = serde_json::from_value(value)
        .map_err(|e| EngineError::Config(format!("model_config.rope_parameters: {e}")))?;
    // MLC's attention: sm = 0.1·mscale_all_dim·ln(factor) + 1 (1 for factor ≤ 1),
    // applied squared to the softmax scale when mscale_all_dim is set.
    if rope.mscale_all_dim != 0.0 && rope.factor > 1.0 {
        let sm = 0.1 * rope.mscale_all_dim * rope.factor.ln() + 1.0;
        spec.attention_scale_factor = sm * sm;
    }
    // TVM rotates with plain RoPE when there is no `rope_type`.
    match rope.rope_type.as_deref() {
        None => {}
        Some("yarn") => {
            let need = |value: Option<f32>, key: &str| {
                value.ok_or_else(|| {
                    EngineError::Config(format!(
                        "model_config.rope_parameters.{key} is missing (yarn)"
                    ))
                })
            };
            spec.rope_scaling = RopeScaling::Yarn(YarnScaling {
                factor: rope.factor,
                original_max_position_embeddings: need(
                    rope.original_max_position_embeddings,
                    "original_max_position_embeddings",
                )?,
                beta_fast: need(rope.beta_fast, "beta_fast")?,
                beta_slow: need(rope.beta_slow, "beta_slow")?,
            });
        }
        Some(other) => {
            return Err(EngineError::Config(format!(
                "model_config.rope_parameters.rope_type `{other}` is not supported for ministral3 (yarn)"
            )));
        }
    }
    Ok(spec)
}
