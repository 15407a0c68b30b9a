//! Qwen3.5 (`qwen3_5`, `qwen3_5_text`): Qwen3's decoder where three layers in
//! four are Gated DeltaNet layers (a causal convolution and a gated delta-rule
//! recurrence instead of attention), and the attention layers gate their
//! output with `sigmoid(gate)` from a second half of each query head.
//! The keys and defaults are mlc-llm's `Qwen35Config`
//! (`python/mlc_llm/model/qwen35/qwen35_model.py`; docs/families.md, "qwen3_5").

use serde_json::{Map, Value};

use super::{ConfigFields, LinearAttention, ModelSpec};
use crate::EngineError;
use mlc_kernels::cpu::DeltaNetShape;

/// `Qwen35Config`'s defaults, for keys a `model_config` leaves out.
fn defaults() -> [(&'static str, Value); 10] {
    [
        ("rms_norm_eps", 1e-6.into()),
        ("rope_theta", 10_000_000.into()),
        ("head_dim", 256.into()),
        ("linear_key_head_dim", 128.into()),
        ("linear_value_head_dim", 128.into()),
        ("linear_num_key_heads", 16.into()),
        ("linear_num_value_heads", 16.into()),
        ("linear_conv_kernel_dim", 4.into()),
        ("full_attention_interval", 4.into()),
        ("partial_rotary_factor", 0.25.into()),
    ]
}

pub(super) fn spec(fields: &ConfigFields<'_>) -> Result<ModelSpec, EngineError> {
    let mut flat = fields.chat().clone();
    flat.model_config = flatten(&flat.model_config);
    let fields = ConfigFields { config: &flat };
    let mut spec = super::qwen3::spec_of("qwen3_5", &fields)?;
    spec.attention_output_gate = true;
    let factor: f32 = fields.required("partial_rotary_factor")?;
    // Python's `int(head_dim * partial_rotary_factor)` (MLC's `rotary_dim`).
    spec.rotary_dim = (spec.head_dim as f32 * factor) as usize;
    if spec.rotary_dim == 0 || spec.rotary_dim > spec.head_dim || spec.rotary_dim % 2 != 0 {
        return Err(EngineError::Config(format!(
            "partial_rotary_factor {factor} gives {} rotated dimensions of head_dim {}",
            spec.rotary_dim, spec.head_dim
        )));
    }
    let shape = DeltaNetShape {
        key_heads: fields.required("linear_num_key_heads")?,
        value_heads: fields.required("linear_num_value_heads")?,
        key_dim: fields.required("linear_key_head_dim")?,
        value_dim: fields.required("linear_value_head_dim")?,
        conv_kernel: fields.required("linear_conv_kernel_dim")?,
    };
    let full_attention_interval: usize = fields.required("full_attention_interval")?;
    let sizes = [
        shape.key_heads,
        shape.value_heads,
        shape.key_dim,
        shape.value_dim,
        shape.conv_kernel,
        full_attention_interval,
    ];
    if sizes.contains(&0) || !shape.value_heads.is_multiple_of(shape.key_heads) {
        return Err(EngineError::Config(format!(
            "Gated DeltaNet sizes must be positive with linear_num_value_heads a multiple of \
             linear_num_key_heads, got {shape:?}, full_attention_interval {full_attention_interval}"
        )));
    }
    spec.linear_attention = Some(LinearAttention { full_attention_interval, shape });
    Ok(spec)
}

/// The text model's keys as one flat map, as `Qwen35Config.__post_init__`
/// reads them: `text_config`'s keys over the top level's, then
/// `rope_theta` and `partial_rotary_factor` from `rope_parameters`
/// (`text_config`'s, else the top level's), then the defaults.
fn flatten(config: &Map<String, Value>) -> Map<String, Value> {
    let mut flat = config.clone();
    let text = flat.remove("text_config");
    let mut rope = flat.remove("rope_parameters");
    if let Some(Value::Object(text)) = text {
        for (key, value) in text {
            match key.as_str() {
                "rope_parameters" => rope = Some(value),
                _ => {
                    flat.insert(key, value);
                }
            }
        }
    }
    if let Some(Value::Object(rope)) = rope {
        for key in ["rope_theta", "partial_rotary_factor"] {
            if let Some(value) = rope.get(key) {
                flat.insert(key.to_string(), value.clone());
            }
        }
    }
    for (key, value) in defaults() {
        if flat.get(key).is_none_or(Value::is_null) {
            flat.insert(key.to_string(), value);
        }
    }
    flat
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_config_and_rope_parameters_are_read_as_mlc_reads_them() {
        let Value::Object(config) = json!({
            "rope_theta": 5.0,
            "rope_parameters": {"rope_theta": 7.0},
            "text_config": {
                "hidden_size": 64,
                "rope_parameters": {"rope_theta": 9.0, "partial_rotary_factor": 0.5},
            },
        }) else {
            unreachable!()
        };
        let flat = flatten(&config);
        assert_eq!(flat["hidden_size"], 64);
        assert_eq!(flat["rope_theta"], 9.0);
        assert_eq!(flat["partial_rotary_factor"], 0.5);
        assert_eq!(flat["full_attention_interval"], 4);
        assert!(!flat.contains_key("text_config"));

        let Value::Object(top) = json!({"rope_parameters": {"rope_theta": 7.0}}) else {
            unreachable!()
        };
        let flat = flatten(&top);
        assert_eq!(flat["rope_theta"], 7.0);
        assert_eq!(flat["partial_rotary_factor"], 0.25);
    }

    /// A step's widest activation counts a Gated DeltaNet layer's
    /// convolution input (`[q | k | v]`) where it is wider than the MLP and
    /// the attention's q/k/v, and the MLP padded to whole groups otherwise.
    #[test]
    fn the_widest_activation_counts_the_delta_net_input() {
        let spec_with = |value_dim: usize| {
            let config = serde_json::from_value(json!({
                "model_type": "qwen3_5",
                "quantization": "q4f16_1",
                "vocab_size": 600,
                "context_window_size": 4096,
                "prefill_chunk_size": 2048,
                "model_config": {
                    "hidden_size": 64, "intermediate_size": 100, "num_hidden_layers": 4,
                    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                    "vocab_size": 600, "tie_word_embeddings": true,
                    "linear_num_key_heads": 4, "linear_num_value_heads": 8,
                    "linear_key_head_dim": 16, "linear_value_head_dim": value_dim,
                },
            }))
            .unwrap();
            crate::models::spec_for(&config).unwrap()
        };
        let wide = spec_with(32);
        // Gated q/k/v: (2·4 + 2·2) · 16 = 192; gate|up: 2 · 128 (100 padded to 128).
        assert_eq!((wide.qkv_width(), wide.padded_intermediate()), (192, 128));
        // q and k: 2 · 4 · 16 = 128, v: 8 · 32 = 256.
        assert_eq!(wide.widest_activation(), 384);
        // v: 8 · 8 = 64, so the convolution input is 192 and the MLP's 256 is widest.
        assert_eq!(spec_with(8).widest_activation(), 256);
    }
}
