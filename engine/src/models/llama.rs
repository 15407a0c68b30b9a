//! Llama (Llama-2/3/3.x, SmolLM2, TinyLlama, ...): the plain pre-norm decoder
//! with fused `qkv_proj`, no biases, SiLU MLP, and Llama-3 RoPE scaling.

use super::{ConfigFields, ModelSpec, ParamNames};
use crate::EngineError;

pub(super) fn spec(fields: &ConfigFields<'_>) -> Result<ModelSpec, EngineError> {
    let theta = fields.optional("position_embedding_base")?.unwrap_or(10_000.0);
    let mut spec = fields.common("llama", theta, ParamNames::llama_style("qkv_proj"))?;
    spec.rope_scaling = fields.llama3_rope_scaling()?;
    Ok(spec)
}
