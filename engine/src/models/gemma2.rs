//! Gemma-2: GeGLU (tanh) MLP, embeddings scaled by `√hidden_size`, four
//! RMSNorms per layer ("sandwich" norms around attention and MLP), a tied
//! output projection and soft-capped final logits (docs/families.md, "gemma2").
//!
//! MLC's quirks, followed here: the norm weights were stored as `1 + w` by the
//! converter (so the norm is a plain RMSNorm), attention-logit soft-capping is
//! ignored, every layer attends over the whole context (no alternating
//! sliding window; MLC caps the context at `sliding_window` instead), and the
//! softmax scale is `head_dim^-0.5` whatever `query_pre_attn_scalar` says.

use super::{Activation, ConfigFields, ModelSpec, ParamNames};
use crate::EngineError;

pub(super) fn spec(fields: &ConfigFields<'_>) -> Result<ModelSpec, EngineError> {
    if fields.optional::<bool>("attention_bias")?.unwrap_or(false) {
        return Err(EngineError::Config(
            "gemma2 with attention_bias is not supported (MLC rejects it too)".into(),
        ));
    }
    let theta = fields.optional("position_embedding_base")?.unwrap_or(10_000.0);
    let mut spec = fields.common("gemma2", theta, ParamNames::gemma_style())?;
    // MLC's GemmaMLP always uses the tanh approximation; `hidden_activation`
    // is only checked to be a GELU.
    match fields.optional::<String>("hidden_activation")?.as_deref() {
        Some("gelu") | Some("gelu_pytorch_tanh") | None => spec.activation = Activation::GeluTanh,
        Some(other) => {
            return Err(EngineError::Config(format!(
                "gemma2 hidden_activation `{other}` is not a GELU"
            )));
        }
    }
    spec.tie_word_embeddings = true;
    spec.embed_scale = fields.gemma_embed_scale(spec.hidden_size)?;
    spec.post_norms = true;
    spec.final_logit_softcap = fields.optional("final_logit_softcapping")?;
    if let Some(cap) = spec.final_logit_softcap.filter(|c| !(c.is_finite() && *c > 0.0)) {
        return Err(EngineError::Config(format!(
            "final_logit_softcapping must be positive, got {cap}"
        )));
    }
    Ok(spec)
}
