//! Gemma (the first generation, e.g. gemma-2b-it): Llama's pre-norm decoder
//! with a GeGLU (tanh) MLP, embeddings scaled by `√hidden_size`, head_dim
//! given apart from the hidden size, and a tied output projection
//! (docs/families.md, "gemma"). Gemma 2 builds on it ([`super::gemma2`]).
//!
//! MLC's quirks, followed here: the norm weights were stored as `1 + w` by the
//! converter (so the norm is a plain RMSNorm), and the MLP always uses the tanh
//! approximation of GELU.

use super::{Activation, ConfigFields, ModelSpec, ParamNames};
use crate::EngineError;

pub(super) fn spec(fields: &ConfigFields<'_>) -> Result<ModelSpec, EngineError> {
    let theta = fields.optional("position_embedding_base")?.unwrap_or(10_000.0);
    decoder(fields, "gemma", theta, ParamNames::llama_style("qkv_proj"))
}

/// What every Gemma generation shares: no attention bias, a GELU MLP, tied
/// and scaled embeddings; the generation gives its RoPE base and names.
pub(super) fn decoder(
    fields: &ConfigFields<'_>,
    family: &'static str,
    rope_theta: f32,
    names: ParamNames,
) -> Result<ModelSpec, EngineError> {
    if fields.optional::<bool>("attention_bias")?.unwrap_or(false) {
        return Err(EngineError::Config(format!(
            "{family} with attention_bias is not supported (MLC rejects it too)"
        )));
    }
    let mut spec = fields.common(family, rope_theta, names)?;
    // MLC's GemmaMLP always uses the tanh approximation; the activation
    // (`hidden_activation`, else Hugging Face's `hidden_act`) is only checked
    // to be a GELU.
    let activation = match fields.optional::<String>("hidden_activation")? {
        Some(name) => Some(name),
        None => fields.optional("hidden_act")?,
    };
    match activation.as_deref() {
        Some("gelu") | Some("gelu_pytorch_tanh") | None => spec.activation = Activation::GeluTanh,
        Some(other) => {
            return Err(EngineError::Config(format!(
                "{family} hidden_activation `{other}` is not a GELU (MLC requires gelu or gelu_pytorch_tanh)"
            )));
        }
    }
    spec.tie_word_embeddings = true;
    spec.embed_scale = fields.gemma_embed_scale(spec.hidden_size)?;
    Ok(spec)
}
