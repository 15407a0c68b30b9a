//! Mistral (Mistral-7B v0.1–v0.3 and derivatives): Llama's decoder with an
//! untied `lm_head` always and an optional sliding window (docs/families.md, "mistral").

use super::{ConfigFields, ModelSpec, ParamNames};
use crate::EngineError;

pub(super) fn spec(fields: &ConfigFields<'_>) -> Result<ModelSpec, EngineError> {
    // WebLLM reads the top-level window sizes (after a model record's overrides),
    // so that is what decides whether the ring-buffer KV cache would be needed.
    let sliding = fields.chat().sliding_window_size;
    if sliding > 0 {
        return Err(EngineError::Unsupported(format!(
            "mistral with sliding_window_size {sliding}: the sliding-window KV cache (a ring buffer with attention \
             sinks) is not implemented; set sliding_window_size to -1 and a positive context_window_size, as \
             WebLLM's prebuilt Mistral records do (context_window_size 4096)"
        )));
    }
    let theta = fields.optional("position_embedding_base")?.unwrap_or(10_000.0);
    let mut spec = fields.common("mistral", theta, ParamNames::llama_style("qkv_proj"))?;
    // MistralConfig has no `tie_word_embeddings`: MLC always builds an `lm_head`.
    spec.tie_word_embeddings = false;
    Ok(spec)
}
