//! GPT-NeoX (RedPajama-INCITE; mlc-llm's `python/mlc_llm/model/gpt_neox/`):
//! LayerNorms with biases (`layer_norm_eps`), a fused `query_key_value`
//! projection with a bias, a rotation of only the first
//! `int(head_dim · rotary_pct)` dimensions of each head, a non-gated MLP
//! `dense_4h_to_h(gelu(dense_h_to_4h(x)))` with the exact GELU and biases,
//! and an untied `embed_out` without a bias. With `use_parallel_residual`
//! both branches read the layer input through a norm each,
//! `h + attention(ln1(h)) + mlp(ln2(h))`; without it (RedPajama) the layer
//! is the usual pre-norm pair (docs/families.md, "gpt_neox").
//!
//! MLC's loader reorders Hugging Face's per-head interleaved `[q_h, k_h, v_h]`
//! rows into `[q; k; v]` when it converts, so the artifact's fused projection
//! already has the layout every family's attention reads.

use super::{Activation, ConfigFields, ModelSpec, NormPlacement, ParamNames};
use crate::EngineError;

/// MLC's GPT-NeoX module paths (`GPTNeoXForCausalLM`).
fn names() -> ParamNames {
    ParamNames {
        embed: "gpt_neox.embed_in".into(),
        layer_prefix: "gpt_neox.layers.".into(),
        attn_norm: "input_layernorm".into(),
        qkv: "attention.query_key_value".into(),
        o_proj: "attention.dense".into(),
        mlp_norm: "post_attention_layernorm".into(),
        gate_up: "mlp.dense_h_to_4h".into(),
        down: "mlp.dense_4h_to_h".into(),
        final_norm: "gpt_neox.final_layer_norm".into(),
        lm_head: "embed_out".into(),
        ..ParamNames::llama_style("qkv_proj")
    }
}

pub(super) fn spec(fields: &ConfigFields<'_>) -> Result<ModelSpec, EngineError> {
    // `GPTNeoXConfig.__post_init__` writes the base it settled on (`rope_theta`
    // of the checkpoint, else 10000).
    let theta = fields.optional("position_embedding_base")?.unwrap_or(10_000.0);
    let mut spec = fields.common("gpt_neox", theta, names())?;
    if spec.num_kv_heads != spec.num_heads || spec.head_dim * spec.num_heads != spec.hidden_size {
        return Err(EngineError::Config(format!(
            "gpt_neox needs head_dim · num_attention_heads = hidden_size and no grouped KV heads, got {} · {} for {} ({} KV heads)",
            spec.head_dim, spec.num_heads, spec.hidden_size, spec.num_kv_heads
        )));
    }
    let pct: f32 = fields.required("rotary_pct")?;
    // `create_paged_kv_cache`: `rotary_dim = int(head_dim * rotary_pct)`.
    spec.rotary_dim = (spec.head_dim as f32 * pct) as usize;
    if spec.rotary_dim == 0 || spec.rotary_dim % 2 != 0 || spec.rotary_dim > spec.head_dim {
        return Err(EngineError::Config(format!(
            "rotary_pct {pct} gives rotary_dim {} for head_dim {}; it must be even and in 2..=head_dim",
            spec.rotary_dim, spec.head_dim
        )));
    }
    if fields.required::<bool>("use_parallel_residual")? {
        spec.norms = NormPlacement::Parallel;
    }
    // `GPTNeoXMLP`: `op.gelu`, the exact form, whatever `hidden_act` names.
    spec.activation = Activation::Gelu;
    spec.gated_mlp = false;
    spec.qkv_bias = true;
    spec.dense_bias = true;
    // `embed_out` is `nn.Linear(..., bias=False)` and never tied.
    spec.lm_head_bias = false;
    spec.tie_word_embeddings = false;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::spec_for;
    use mlc_loader::ChatConfig;

    fn config(model_config: serde_json::Value) -> ChatConfig {
        serde_json::from_value(serde_json::json!({
            "model_type": "gpt_neox",
            "quantization": "q4f16_1",
            "vocab_size": 50432,
            "context_window_size": 2048,
            "prefill_chunk_size": 2048,
            "model_config": model_config,
        }))
        .unwrap()
    }

    /// RedPajama-INCITE-Chat-3B-v1's `model_config`, as MLC writes it.
    fn redpajama() -> serde_json::Value {
        serde_json::json!({
            "use_parallel_residual": false,
            "hidden_size": 2560,
            "intermediate_size": 10240,
            "num_attention_heads": 32,
            "num_hidden_layers": 32,
            "layer_norm_eps": 1e-5,
            "vocab_size": 50432,
            "rotary_pct": 1.0,
            "position_embedding_base": 10000,
            "context_window_size": 2048,
            "head_dim": 80,
            "prefill_chunk_size": 2048,
            "tensor_parallel_shards": 1,
            "ffn_out_dtype": "float32",
            "max_batch_size": 80
        })
    }

    #[test]
    fn redpajama_is_a_sequential_layernorm_decoder_with_exact_gelu() {
        let spec = spec_for(&config(redpajama())).unwrap();
        assert_eq!(spec.norms, NormPlacement::Pre);
        assert!(spec.layer_norm && spec.dense_bias && spec.qkv_bias && !spec.lm_head_bias);
        assert!(!spec.gated_mlp && !spec.tie_word_embeddings);
        assert_eq!(spec.activation, Activation::Gelu);
        assert_eq!((spec.head_dim, spec.rotary_dim, spec.num_kv_heads), (80, 80, 32));
        assert_eq!(spec.names.qkv, "attention.query_key_value");
        assert_eq!(spec.names.mlp_norm, "post_attention_layernorm");
        assert_eq!(spec.names.lm_head, "embed_out");
    }

    #[test]
    fn parallel_residual_and_partial_rotary_are_read() {
        let mut model = redpajama();
        model["use_parallel_residual"] = true.into();
        // Pythia's 0.25 of 80: int(20.0) = 20.
        model["rotary_pct"] = 0.25.into();
        let spec = spec_for(&config(model)).unwrap();
        assert_eq!(spec.norms, NormPlacement::Parallel);
        assert_eq!(spec.rotary_dim, 20);
    }

    #[test]
    fn missing_or_odd_keys_are_named() {
        let mut model = redpajama();
        model.as_object_mut().unwrap().remove("rotary_pct");
        let err = spec_for(&config(model)).unwrap_err().to_string();
        assert!(err.contains("rotary_pct"), "{err}");
        let mut model = redpajama();
        model["rotary_pct"] = 0.1875.into();
        let err = spec_for(&config(model)).unwrap_err().to_string();
        assert!(err.contains("rotary_dim 15"), "{err}");
        let mut model = redpajama();
        model.as_object_mut().unwrap().remove("use_parallel_residual");
        let err = spec_for(&config(model)).unwrap_err().to_string();
        assert!(err.contains("use_parallel_residual"), "{err}");
    }
}
