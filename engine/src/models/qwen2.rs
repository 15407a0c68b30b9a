//! Qwen2 / Qwen2.5: Llama's decoder with a bias on the fused QKV projection
//! (`c_attn`) and the RoPE base under `rope_theta`.

use super::{ConfigFields, ModelSpec, ParamNames};
use crate::EngineError;

pub(super) fn spec(fields: &ConfigFields<'_>) -> Result<ModelSpec, EngineError> {
    let mut spec = fields.common(
        "qwen2",
        fields.required("rope_theta")?,
        ParamNames::llama_style("c_attn"),
    )?;
    spec.qkv_bias = true;
    spec.activation = fields.activation()?;
    Ok(spec)
}
