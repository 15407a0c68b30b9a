//! OLMo-2: Llama's decoder with the norms after each branch instead of
//! before it (`h + norm(attention(h))`, `h + norm(mlp(h))`), and queries and
//! keys RMS-normalised across all heads before RoPE (docs/families.md, "olmo2").

use super::{ConfigFields, ModelSpec, NormPlacement, ParamNames, QkNormWidth, RopeScaling};
use crate::EngineError;

pub(super) fn spec(fields: &ConfigFields<'_>) -> Result<ModelSpec, EngineError> {
    let theta = fields.optional("position_embedding_base")?.unwrap_or(10_000.0);
    let names = ParamNames {
        post_attn_norm: "post_attention_layernorm".into(),
        post_mlp_norm: "post_feedforward_layernorm".into(),
        ..ParamNames::llama_style("qkv_proj")
    };
    let mut spec = fields.common("olmo2", theta, names)?;
    spec.norms = NormPlacement::Post;
    spec.qk_norm = Some(QkNormWidth::AllHeads);
    spec.activation = fields.activation()?;
    spec.rope_scaling = fields.llama3_rope_scaling()?;
    // MLC hands any `rope_scaling` to its KV cache; only Llama-3's is implemented here.
    let scaling = fields.optional::<serde_json::Value>("rope_scaling")?;
    if spec.rope_scaling == RopeScaling::None && scaling.is_some_and(|v| !v.is_null()) {
        return Err(EngineError::Unsupported(
            "olmo2 with a rope_scaling other than llama3's is not implemented".into(),
        ));
    }
    Ok(spec)
}
