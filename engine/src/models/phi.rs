//! Phi-1.5 and Phi-2 (mlc-llm's `python/mlc_llm/model/phi/phi_model.py`):
//! one LayerNorm per layer feeding attention and the MLP in parallel,
//! `h = h + out_proj(attention(Wqkv(ln(h)))) + fc2(gelu_tanh(fc1(ln(h))))`,
//! a rotation of only the first `rotary_dim` dimensions of each head, a bias
//! on every projection, and a final LayerNorm before a biased `lm_head`
//! (never tied). MLC reads two configs into one model: `phi` (`Phi1Config`,
//! Hugging Face's names) and `phi-msft` (`PhiConfig`, GPT-2's names and an
//! explicit `rotary_dim`); both name the parameters alike (docs/families.md, "phi").

use super::{Activation, CommonKeys, ConfigFields, ModelSpec, NormPlacement, ParamNames};
use crate::EngineError;

/// MLC's Phi module paths (`PhiForCausalLM`).
fn names() -> ParamNames {
    ParamNames {
        embed: "transformer.embd".into(),
        layer_prefix: "transformer.h.".into(),
        attn_norm: "ln".into(),
        qkv: "mixer.Wqkv".into(),
        o_proj: "mixer.out_proj".into(),
        // The MLP reads the attention's norm (`NormPlacement::Parallel`).
        mlp_norm: String::new(),
        gate_up: "mlp.fc1".into(),
        down: "mlp.fc2".into(),
        final_norm: "lm_head.ln".into(),
        lm_head: "lm_head.linear".into(),
        ..ParamNames::llama_style("qkv_proj")
    }
}

/// The spec of a `phi` artifact, or of a `phi-msft` one when `msft`.
pub(super) fn spec(fields: &ConfigFields<'_>, msft: bool) -> Result<ModelSpec, EngineError> {
    // MLC's `__post_init__` writes the base it settled on (10000 by default).
    let theta = fields.optional("position_embedding_base")?.unwrap_or(10_000.0);
    let mut spec = match msft {
        true => fields.common_keys("phi-msft", theta, names(), &CommonKeys::PHI_MSFT)?,
        false => fields.common("phi", theta, names())?,
    };
    spec.rotary_dim = match msft {
        true => fields.required("rotary_dim")?,
        false => {
            let factor: f32 = fields.optional("partial_rotary_factor")?.unwrap_or(0.5);
            // `PhiConfig.from_phi1`: `int(partial_rotary_factor * head_dim)`.
            (factor * spec.head_dim as f32) as usize
        }
    };
    if spec.rotary_dim == 0 || spec.rotary_dim % 2 != 0 || spec.rotary_dim > spec.head_dim {
        return Err(EngineError::Config(format!(
            "phi's rotary_dim {} for head_dim {} must be even and in 2..=head_dim",
            spec.rotary_dim, spec.head_dim
        )));
    }
    spec.norms = NormPlacement::Parallel;
    // `PhiMLP`: `op.gelu(approximate="tanh")`, whatever the checkpoint names.
    spec.activation = Activation::GeluTanh;
    spec.gated_mlp = false;
    spec.qkv_bias = true;
    spec.dense_bias = true;
    spec.lm_head_bias = true;
    spec.tie_word_embeddings = false;
    Ok(spec)
}
