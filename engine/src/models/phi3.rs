//! Phi-3 / Phi-3.5 / Phi-4-mini: Llama's math under other parameter names
//! (`transformer.h.L.*`), a rotation of only the first
//! `head_dim · partial_rotary_factor` dimensions, and LongRoPE (docs/families.md, "phi3").

use serde::Deserialize;

use super::{ConfigFields, LongRope, ModelSpec, ParamNames, RopeScaling};
use crate::EngineError;

/// `rope_scaling` as MLC's Phi3Config leaves it: `type` (`su` renamed to
/// `longrope`) plus the two lengths it copies in.
#[derive(Deserialize)]
struct LongRopeKeys {
    #[serde(rename = "type")]
    kind: String,
    short_factor: Vec<f32>,
    long_factor: Vec<f32>,
    max_position_embeddings: f32,
    original_max_position_embeddings: f32,
}

/// MLC's Phi-3 module paths.
fn names() -> ParamNames {
    ParamNames {
        embed: "transformer.embd".into(),
        layer_prefix: "transformer.h.".into(),
        attn_norm: "ln".into(),
        qkv: "mixer.qkv_proj".into(),
        o_proj: "mixer.out_proj".into(),
        final_norm: "transformer.norm".into(),
        ..ParamNames::llama_style("qkv_proj")
    }
}

pub(super) fn spec(fields: &ConfigFields<'_>) -> Result<ModelSpec, EngineError> {
    let theta = fields.optional("position_embedding_base")?.unwrap_or(10_000.0);
    let mut spec = fields.common("phi3", theta, names())?;
    let factor: f32 = fields.optional("partial_rotary_factor")?.unwrap_or(1.0);
    // Python's `int(head_dim * partial_rotary_factor)`.
    spec.rotary_dim = (spec.head_dim as f32 * factor) as usize;
    if spec.rotary_dim == 0 || spec.rotary_dim % 2 != 0 || spec.rotary_dim > spec.head_dim {
        return Err(EngineError::Config(format!(
            "partial_rotary_factor {factor} gives rotary_dim {} for head_dim {}; it must be even and in 2..=head_dim",
            spec.rotary_dim, spec.head_dim
        )));
    }
    let scaling = match fields.optional::<serde_json::Value>("rope_scaling")? {
        Some(value) if value.get("type").is_some() => value,
        _ => return Ok(spec),
    };
    let s: LongRopeKeys = serde_json::from_value(scaling)
        .map_err(|e| EngineError::Config(format!("model_config.rope_scaling: {e}")))?;
    if s.kind != "longrope" {
        return Err(EngineError::Config(format!(
            "model_config.rope_scaling.type `{}` is not supported (longrope)",
            s.kind
        )));
    }
    let pairs = spec.rotary_dim / 2;
    if s.short_factor.len() != pairs || s.long_factor.len() != pairs {
        return Err(EngineError::Config(format!(
            "model_config.rope_scaling: short_factor and long_factor need {pairs} values each (rotary_dim / 2), got {} and {}",
            s.short_factor.len(),
            s.long_factor.len()
        )));
    }
    let (max, original) = (s.max_position_embeddings, s.original_max_position_embeddings);
    if !(original > 1.0 && max > 0.0) {
        return Err(EngineError::Config(format!(
            "model_config.rope_scaling: position lengths {max} / {original} are invalid"
        )));
    }
    let mscale =
        if max > original { (1.0 + (max / original).ln() / original.ln()).sqrt() } else { 1.0 };
    // MLC switches to `long_factor` only for a forward call of more than
    // `original_max_position_embeddings` tokens. Capping the prefill chunk there
    // means no call ever is, so `short_factor` is exactly what MLC would use.
    spec.prefill_chunk_size = spec.prefill_chunk_size.min(original as usize);
    spec.rope_scaling = RopeScaling::LongRope(LongRope { factors: s.short_factor, mscale });
    Ok(spec)
}
