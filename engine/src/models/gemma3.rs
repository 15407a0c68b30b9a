//! Gemma 3 (text): Gemma-2's decoder (Gemma's GeGLU, `√hidden` embedding
//! scale and tied output, [`super::gemma`]; sandwich norms) with per-head q/k RMSNorms, the softmax scale
//! `query_pre_attn_scalar^-0.5`, no soft-capping, and local layers that attend
//! over a sliding window between global ones (docs/families.md, "gemma3").
//!
//! What MLC computes, followed here: one RoPE base for every layer
//! (`position_embedding_base`; transformers rotates local layers with
//! `rope_local_base_freq`), no RoPE scaling, a global layer every sixth
//! (`sliding_window_pattern` is a class constant of MLC's config), and local
//! layers windowed to TVM's fixed 1024 positions whatever the checkpoint's
//! `sliding_window` says.

use serde_json::{Map, Value};

use super::{
    ConfigFields, ModelSpec, NormPlacement, ParamNames, QkNormWidth, SlidingWindow, gemma,
};
use crate::EngineError;

/// Keys a local layer's query sees: TVM's paged KV cache windows its
/// `mha_sliding` layers to 1024 positions, a constant of the cache.
pub const LOCAL_WINDOW: usize = 1024;
/// Layer `L` is global when `(L + 1) % 6 == 0` (MLC's `sliding_window_pattern`).
pub const GLOBAL_EVERY: usize = 6;

/// `Gemma3TextConfig`'s defaults, for keys a `model_config` leaves out.
fn text_defaults() -> [(&'static str, Value); 5] {
    [
        ("num_attention_heads", 8.into()),
        ("num_key_value_heads", 4.into()),
        ("head_dim", 256.into()),
        ("rms_norm_eps", 1e-6.into()),
        ("query_pre_attn_scalar", 256.into()),
    ]
}

pub(super) fn spec(fields: &ConfigFields<'_>) -> Result<ModelSpec, EngineError> {
    let mut flat = fields.chat().clone();
    flat.model_config = text_config(&flat.model_config)?;
    let fields = ConfigFields { config: &flat };
    let theta = match fields.optional("position_embedding_base")? {
        Some(theta) => theta,
        None => fields.optional("rope_theta")?.unwrap_or(1_000_000.0),
    };
    let mut spec = gemma::decoder(&fields, "gemma3", theta, ParamNames::gemma3())?;
    spec.norms = NormPlacement::Sandwich;
    spec.qk_norm = Some(QkNormWidth::Head);
    let scalar: f32 = fields.required("query_pre_attn_scalar")?;
    if !(scalar.is_finite() && scalar > 0.0) {
        return Err(EngineError::Config(format!(
            "query_pre_attn_scalar must be positive, got {scalar}"
        )));
    }
    spec.query_pre_attn_scalar = Some(scalar);
    spec.sliding_window = Some(SlidingWindow { size: LOCAL_WINDOW, pattern: GLOBAL_EVERY });
    Ok(spec)
}

/// The text model's keys as one flat map: MLC's `Gemma3Config` nests them
/// under `text_config` (for `gemma3` and `gemma3_text` alike), with the window
/// sizes and the vocabulary at the top. A flat `model_config` is read as is.
fn text_config(model_config: &Map<String, Value>) -> Result<Map<String, Value>, EngineError> {
    let mut flat = match model_config.get("text_config") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(text)) => text.clone(),
        Some(_) => {
            return Err(EngineError::Config("model_config.text_config must be an object".into()));
        }
    };
    for (key, value) in model_config {
        // MLC fills the top-level window sizes from the text config when they are ≤ 0.
        let top_wins = value.as_i64().is_some_and(|v| v > 0) || !flat.contains_key(key);
        if key != "text_config" && top_wins {
            flat.insert(key.clone(), value.clone());
        }
    }
    for (key, value) in text_defaults() {
        flat.entry(key).or_insert(value);
    }
    Ok(flat)
}
