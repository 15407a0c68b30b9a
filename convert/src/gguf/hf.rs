//! From llama.cpp's conventions back to Hugging Face's: the config keys, the
//! tensor names, and the row order of llama's Q/K projections.

use serde_json::{Map, Value, json};

use super::header::{GgufHeader, GgufValue};
use crate::ConvertError;

/// The architectures (`general.architecture`) this converter maps, with their
/// Hugging Face class names.
pub const ARCHITECTURES: &[(&str, &str)] =
    &[("llama", "LlamaForCausalLM"), ("qwen2", "Qwen2ForCausalLM"), ("qwen3", "Qwen3ForCausalLM")];

/// The Hugging Face name of GGUF tensor `name`, or `None` when it has none
/// (`rope_freqs.weight`, which llama.cpp precomputes from the config) or is
/// unknown.
pub fn hf_tensor_name(name: &str) -> Option<String> {
    let fixed = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(n) = fixed {
        return Some(n.to_string());
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    if layer.is_empty()
        || !layer.bytes().all(|b| b.is_ascii_digit())
        || (layer.len() > 1 && layer.starts_with('0'))
    {
        return None;
    }
    let (module, suffix) = rest.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let hf = match (module, suffix) {
        ("attn_norm", "weight") => "input_layernorm",
        ("ffn_norm", "weight") => "post_attention_layernorm",
        ("attn_q", _) => "self_attn.q_proj",
        ("attn_k", _) => "self_attn.k_proj",
        ("attn_v", _) => "self_attn.v_proj",
        ("attn_output", _) => "self_attn.o_proj",
        ("attn_q_norm", "weight") => "self_attn.q_norm",
        ("attn_k_norm", "weight") => "self_attn.k_norm",
        ("ffn_gate", _) => "mlp.gate_proj",
        ("ffn_up", _) => "mlp.up_proj",
        ("ffn_down", _) => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{suffix}"))
}

/// Which heads' permutation llama.cpp applied to a tensor (see [`unpermute_rows`]).
pub fn permutation_heads(arch: &str, gguf_name: &str, config: &Value) -> Option<usize> {
    // Only llama.cpp's `LlamaModel` permutes (for its interleaved RoPE); the
    // Qwen converters keep Hugging Face's row order.
    if arch != "llama" {
        return None;
    }
    let module = gguf_name.strip_prefix("blk.")?.split_once('.')?.1;
    let key = match module {
        "attn_q.weight" | "attn_q.bias" => "num_attention_heads",
        "attn_k.weight" | "attn_k.bias" => "num_key_value_heads",
        _ => return None,
    };
    config.get(key)?.as_u64().map(|n| n as usize)
}

/// Undoes llama.cpp's `permute(w, n_head)`: within each head of `head_dim`
/// rows, the converter stored HF row `a · head_dim/2 + b` (`a` ∈ {0, 1}) at
/// row `2b + a` (pairing the two rotary halves for its interleaved RoPE).
/// `data` is row-major with `rows` rows of `row_len` values.
pub fn unpermute_rows(
    data: &[f32],
    rows: usize,
    row_len: usize,
    n_head: usize,
    name: &str,
) -> Result<Vec<f32>, ConvertError> {
    if n_head == 0
        || !rows.is_multiple_of(n_head)
        || !(rows / n_head).is_multiple_of(2)
        || Some(data.len()) != rows.checked_mul(row_len)
    {
        return Err(ConvertError::Tensor {
            name: name.to_string(),
            message: format!(
                "{rows} rows cannot be split into {n_head} heads of an even size for the Q/K un-permutation"
            ),
        });
    }
    let head_dim = rows / n_head;
    let half = head_dim / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for a in 0..2 {
            for b in 0..half {
                let hf_row = h * head_dim + a * half + b;
                let gguf_row = h * head_dim + 2 * b + a;
                out[hf_row * row_len..(hf_row + 1) * row_len]
                    .copy_from_slice(&data[gguf_row * row_len..(gguf_row + 1) * row_len]);
            }
        }
    }
    Ok(out)
}

/// Reads metadata key `<arch>.<suffix>`.
fn arch_key<'a>(header: &'a GgufHeader, arch: &str, suffix: &str) -> Option<&'a GgufValue> {
    header.get(&format!("{arch}.{suffix}"))
}

/// A required unsigned integer, or an error naming the key.
fn required_u64(header: &GgufHeader, arch: &str, suffix: &str) -> Result<u64, ConvertError> {
    let key = format!("{arch}.{suffix}");
    match header.get(&key) {
        Some(v) => v.as_u64().ok_or_else(|| ConvertError::Unsupported {
            what: format!("GGUF metadata `{key}` = {v:?}"),
            message: "expected one non-negative integer (per-layer arrays are not supported)"
                .into(),
        }),
        None => Err(ConvertError::Unsupported {
            what: format!("GGUF without `{key}`"),
            message: "the model's hyper-parameters must be in the metadata".into(),
        }),
    }
}

/// The equivalent Hugging Face `config.json` of a GGUF of architecture
/// `arch`: hyper-parameters from `<arch>.*`, special token ids from
/// `tokenizer.ggml.*`, tied embeddings when there is no `output.weight`.
/// `rope_scaling` is the (possibly recovered) scaling entry, or `None`.
pub fn hf_config(
    header: &GgufHeader,
    arch: &str,
    rope_scaling: Option<Value>,
) -> Result<Value, ConvertError> {
    let Some(&(_, class)) = ARCHITECTURES.iter().find(|(a, _)| *a == arch) else {
        return Err(ConvertError::Unsupported {
            what: format!("GGUF architecture \"{arch}\""),
            message: "supported: llama, qwen2, qwen3".into(),
        });
    };
    let hidden = required_u64(header, arch, "embedding_length")?;
    let layers = required_u64(header, arch, "block_count")?;
    let heads = required_u64(header, arch, "attention.head_count")?;
    let kv_heads = match arch_key(header, arch, "attention.head_count_kv") {
        Some(_) => required_u64(header, arch, "attention.head_count_kv")?,
        None => heads,
    };
    let ffn = required_u64(header, arch, "feed_forward_length")?;
    if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
        return Err(ConvertError::Unsupported {
            what: format!("{heads} attention heads with {kv_heads} KV heads"),
            message: "the head count must be a non-zero multiple of the KV head count".into(),
        });
    }
    let head_dim = match arch_key(header, arch, "attention.key_length") {
        Some(_) => required_u64(header, arch, "attention.key_length")?,
        None => hidden / heads,
    };
    if let Some(v) = arch_key(header, arch, "attention.value_length")
        && v.as_u64() != Some(head_dim)
    {
        return Err(ConvertError::Unsupported {
            what: format!("{arch}.attention.value_length {v:?} ≠ key_length {head_dim}"),
            message: "keys and values must have the same head size".into(),
        });
    }
    if let Some(v) = arch_key(header, arch, "rope.dimension_count")
        && v.as_u64() != Some(head_dim)
    {
        return Err(ConvertError::Unsupported {
            what: format!("{arch}.rope.dimension_count {v:?} with head_dim {head_dim}"),
            message: "partial rotary embeddings are not supported".into(),
        });
    }
    let eps = arch_key(header, arch, "attention.layer_norm_rms_epsilon")
        .and_then(GgufValue::as_f64)
        .ok_or_else(|| ConvertError::Unsupported {
            what: format!("GGUF without `{arch}.attention.layer_norm_rms_epsilon`"),
            message: "an RMSNorm model is expected".into(),
        })?;
    // llama.cpp's default when the key is absent.
    let rope_theta =
        arch_key(header, arch, "rope.freq_base").and_then(GgufValue::as_f64).unwrap_or(10000.0);
    let vocab = match arch_key(header, arch, "vocab_size").and_then(GgufValue::as_u64) {
        Some(v) => v,
        None => match header.get("tokenizer.ggml.tokens").and_then(GgufValue::as_array) {
            Some(tokens) => tokens.len() as u64,
            None => {
                header.tensor("token_embd.weight").and_then(|t| t.dims.get(1).copied()).unwrap_or(0)
            }
        },
    };

    let mut c = Map::new();
    c.insert("architectures".into(), json!([class]));
    c.insert("model_type".into(), json!(arch));
    c.insert("hidden_size".into(), json!(hidden));
    c.insert("intermediate_size".into(), json!(ffn));
    c.insert("num_attention_heads".into(), json!(heads));
    c.insert("num_hidden_layers".into(), json!(layers));
    c.insert("num_key_value_heads".into(), json!(kv_heads));
    c.insert("head_dim".into(), json!(head_dim));
    c.insert("hidden_act".into(), json!("silu"));
    c.insert("rms_norm_eps".into(), json!(f32_decimal(eps)));
    c.insert("rope_theta".into(), json!(f32_decimal(rope_theta)));
    c.insert("rope_scaling".into(), rope_scaling.unwrap_or(Value::Null));
    if let Some(ctx) = arch_key(header, arch, "context_length").and_then(GgufValue::as_u64) {
        c.insert("max_position_embeddings".into(), json!(ctx));
    }
    c.insert("vocab_size".into(), json!(vocab));
    c.insert("tie_word_embeddings".into(), json!(header.tensor("output.weight").is_none()));
    let has_bias = header.tensors.iter().any(|t| t.name.ends_with(".attn_q.bias"));
    if arch != "qwen2" {
        c.insert("attention_bias".into(), json!(has_bias));
    }
    for (key, hf) in [
        ("tokenizer.ggml.bos_token_id", "bos_token_id"),
        ("tokenizer.ggml.eos_token_id", "eos_token_id"),
        ("tokenizer.ggml.padding_token_id", "pad_token_id"),
    ] {
        if let Some(id) = header.get(key).and_then(GgufValue::as_u64) {
            c.insert(hf.into(), json!(id));
        }
    }
    Ok(Value::Object(c))
}

/// The generation settings a GGUF carries: its special token ids and, in
/// files that have them, llama.cpp's `general.sampling.*` recommendations.
pub fn generation_config(header: &GgufHeader) -> Option<Value> {
    let mut g = Map::new();
    for (key, hf) in [
        ("tokenizer.ggml.bos_token_id", "bos_token_id"),
        ("tokenizer.ggml.eos_token_id", "eos_token_id"),
        ("tokenizer.ggml.padding_token_id", "pad_token_id"),
    ] {
        if let Some(id) = header.get(key).and_then(GgufValue::as_u64) {
            g.insert(hf.into(), json!(id));
        }
    }
    for (key, hf) in [
        ("general.sampling.temp", "temperature"),
        ("general.sampling.top_p", "top_p"),
        ("general.sampling.top_k", "top_k"),
    ] {
        if let Some(v) = header.get(key).and_then(GgufValue::as_f64) {
            g.insert(hf.into(), json!(f32_decimal(v)));
        }
    }
    (!g.is_empty()).then_some(Value::Object(g))
}

/// A float that GGUF stored as f32, written as its shortest f32 decimal
/// (1e-5 rather than 9.999999747378752e-06) — what the Hugging Face config
/// held before llama.cpp narrowed it. Whole numbers stay floats (100000.0).
pub fn f32_decimal(v: f64) -> f64 {
    let narrowed = v as f32;
    if f64::from(narrowed) == v {
        // Shortest round-trip decimal of the f32, parsed back as f64.
        narrowed.to_string().parse().unwrap_or(v)
    } else {
        v
    }
}

/// Recovers Llama-3 RoPE scaling from llama.cpp's precomputed
/// `rope_freqs.weight` (the per-frequency divisors it writes instead of the
/// config entry): tries the parameter sets Llama 3.x uses and returns the
/// entry whose divisors match, or `None`.
pub fn llama3_rope_scaling(
    freqs: &[f32],
    head_dim: usize,
    rope_theta: f64,
    context_length: Option<u64>,
) -> Option<Value> {
    if freqs.len() * 2 != head_dim {
        return None;
    }
    let factor = freqs.iter().copied().fold(f32::MIN, f32::max) as f64;
    let mut originals = vec![8192u64, 4096, 2048, 16384, 32768];
    if let Some(c) = context_length {
        originals.retain(|&o| o <= c);
    }
    for &original in &originals {
        for low in [1.0f64, 2.0, 0.5, 4.0] {
            for high in [4.0f64, 2.0, 8.0, 1.0, 16.0, 32.0] {
                if high <= low {
                    continue;
                }
                // llama.cpp's `generate_extra_tensors` for LlamaModel.
                let low_wavelen = original as f64 / low;
                let high_wavelen = original as f64 / high;
                let matches = freqs.iter().enumerate().all(|(i, &got)| {
                    let freq = 1.0 / rope_theta.powf((2 * i) as f64 / head_dim as f64);
                    let wavelen = 2.0 * std::f64::consts::PI / freq;
                    let want = if wavelen < high_wavelen {
                        1.0
                    } else if wavelen > low_wavelen {
                        factor
                    } else {
                        let smooth = (original as f64 / wavelen - low) / (high - low);
                        1.0 / ((1.0 - smooth) / factor + smooth)
                    };
                    ((want as f32) - got).abs() <= 1e-4 * got.abs().max(1.0)
                });
                if matches {
                    return Some(json!({
                        "factor": f32_decimal(factor),
                        "low_freq_factor": low,
                        "high_freq_factor": high,
                        "original_max_position_embeddings": original,
                        "rope_type": "llama3"
                    }));
                }
            }
        }
    }
    None
}
