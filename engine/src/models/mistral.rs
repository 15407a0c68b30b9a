//! Mistral (Mistral-7B v0.1–v0.3 and derivatives): Llama's decoder with an
//! untied `lm_head` always and an optional sliding window, which MLC runs as a
//! rolling KV cache with attention sinks (docs/families.md, "mistral").

use super::{ConfigFields, ModelSpec, ParamNames};
use crate::EngineError;

pub(super) fn spec(fields: &ConfigFields<'_>) -> Result<ModelSpec, EngineError> {
    let theta = fields.optional("position_embedding_base")?.unwrap_or(10_000.0);
    // WebLLM reads the top-level window sizes (after a model record's
    // overrides): with `sliding_window_size` > 0 the KV cache rolls.
    let mut spec = fields.common_rolling("mistral", theta, ParamNames::llama_style("qkv_proj"))?;
    // MistralConfig has no `tie_word_embeddings`: MLC always builds an `lm_head`.
    spec.tie_word_embeddings = false;
    Ok(spec)
}
