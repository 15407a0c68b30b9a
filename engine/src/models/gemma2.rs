//! Gemma-2: Gemma ([`super::gemma`]) with four RMSNorms per layer ("sandwich"
//! norms around attention and MLP) and soft-capped final logits
//! (docs/families.md, "gemma2").
//!
//! MLC's quirks, followed here: attention-logit soft-capping is ignored, every
//! layer attends over the whole context (no alternating sliding window; MLC
//! caps the context at `sliding_window` instead), and the softmax scale is
//! `head_dim^-0.5` whatever `query_pre_attn_scalar` says.

use super::{ConfigFields, ModelSpec, NormPlacement, ParamNames, gemma};
use crate::EngineError;

pub(super) fn spec(fields: &ConfigFields<'_>) -> Result<ModelSpec, EngineError> {
    let theta = fields.optional("position_embedding_base")?.unwrap_or(10_000.0);
    let mut spec = gemma::decoder(fields, "gemma2", theta, ParamNames::gemma_style())?;
    spec.norms = NormPlacement::Sandwich;
    spec.final_logit_softcap = fields.optional("final_logit_softcapping")?;
    if let Some(cap) = spec.final_logit_softcap.filter(|c| !(c.is_finite() && *c > 0.0)) {
        return Err(EngineError::Config(format!(
            "final_logit_softcapping must be positive, got {cap}"
        )));
    }
    Ok(spec)
}
