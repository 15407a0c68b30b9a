//! StableLM 2 (stablelm-2-zephyr-1_6b): Llama's pre-norm decoder and names
//! with LayerNorms (weight and bias, `layer_norm_eps`) instead of RMSNorms,
//! a rotation of only the first `head_dim · partial_rotary_factor`
//! dimensions, an optional QKV bias (`use_qkv_bias`) and always an `lm_head`
//! (MLC's `StableLmConfig` has no tie flag; docs/families.md, "stablelm").

use super::{ConfigFields, ModelSpec, ParamNames};
use crate::EngineError;

pub(super) fn spec(fields: &ConfigFields<'_>) -> Result<ModelSpec, EngineError> {
    let theta: f32 = fields.required("rope_theta")?;
    let mut spec = fields.common("stablelm", theta, ParamNames::llama_style("qkv_proj"))?;
    spec.tie_word_embeddings = false;
    spec.qkv_bias = fields.optional("use_qkv_bias")?.unwrap_or(false);
    let factor: f32 = fields.required("partial_rotary_factor")?;
    // Python's `int(head_dim * partial_rotary_factor)` (MLC's `rotary_dim`).
    spec.rotary_dim = (spec.head_dim as f32 * factor) as usize;
    if spec.rotary_dim == 0 || spec.rotary_dim % 2 != 0 || spec.rotary_dim > spec.head_dim {
        return Err(EngineError::Config(format!(
            "partial_rotary_factor {factor} gives rotary_dim {} for head_dim {}; it must be even and in 2..=head_dim",
            spec.rotary_dim, spec.head_dim
        )));
    }
    Ok(spec)
}
