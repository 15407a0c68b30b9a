//! Qwen3 (dense): Qwen2 plus a per-head RMSNorm of queries and keys before
//! RoPE, an explicit `head_dim`, and a QKV bias only when `attention_bias`.

use super::{ConfigFields, ModelSpec, ParamNames, QkNormWidth};
use crate::EngineError;

pub(super) fn spec(fields: &ConfigFields<'_>) -> Result<ModelSpec, EngineError> {
    spec_of("qwen3", fields)
}

/// Qwen3's attention and MLP under `family`'s name (Qwen3.5's attention
/// layers start from them).
pub(super) fn spec_of(
    family: &'static str,
    fields: &ConfigFields<'_>,
) -> Result<ModelSpec, EngineError> {
    let mut spec =
        fields.common(family, fields.required("rope_theta")?, ParamNames::llama_style("c_attn"))?;
    spec.qkv_bias = fields.optional("attention_bias")?.unwrap_or(false);
    spec.qk_norm = Some(QkNormWidth::Head);
    spec.activation = fields.activation()?;
    Ok(spec)
}
