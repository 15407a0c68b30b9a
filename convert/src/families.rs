//! What each supported model family takes from a Hugging Face checkpoint:
//! its `model_config` as MLC's config dataclass parses `config.json`
//! (`python/mlc_llm/model/<family>/<family>_model.py`), and its parameters
//! with the Hugging Face tensors each one is made of
//! (`<family>_loader.py`, `loader/standard_loader.py`).

use serde_json::{Map, Value, json};

use crate::ConvertError;

/// `model_type` values the converter handles (the families the runtime runs).
pub const SUPPORTED_FAMILIES: &[&str] = &[
    "llama",
    "qwen2",
    "qwen3",
    "qwen3_5",
    "qwen3_5_text",
    "mistral",
    "ministral3",
    "phi3",
    "gemma",
    "gemma2",
    "gemma3_text",
    "olmo2",
    "stablelm",
    "phi",
    "gpt_neox",
    "bert",
];

/// Hugging Face tensors MLC's loaders declare unused (not converted, not
/// counted as parameters): `{layer}.self_attn.rotary_emb.inv_freq`.
const UNUSED_SUFFIX: &str = ".self_attn.rotary_emb.inv_freq";

/// The buffers `gpt_neox_loader.py` declares unused in each
/// `gpt_neox.layers.{L}.attention` (older checkpoints save them).
const NEOX_UNUSED_SUFFIXES: [&str; 3] =
    [".attention.rotary_emb.inv_freq", ".attention.masked_bias", ".attention.bias"];

/// A supported model family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `llama` (Llama-2/3, SmolLM2, TinyLlama, ...).
    Llama,
    /// `qwen2` (Qwen1.5/2/2.5).
    Qwen2,
    /// `qwen3` (Qwen3 dense).
    Qwen3,
    /// `qwen3_5` (Qwen3.5's vision-language checkpoint, whose text backbone
    /// is converted) and `qwen3_5_text` (`Qwen3_5ForCausalLM`): Gated
    /// DeltaNet layers between gated attention layers, norms stored as `1 + w`.
    Qwen35 {
        /// `qwen3_5_text`, the text-only checkpoint's `model_type`.
        text: bool,
    },
    /// `mistral` (Mistral-7B and derivatives): Llama's layout, never tied.
    Mistral,
    /// `ministral3` (Ministral 3: `Ministral3ForCausalLM`, or the text backbone
    /// of `Mistral3ForConditionalGeneration` under `language_model.`): Llama's
    /// layout with `rope_parameters` (YaRN) and `text_config` merged in.
    Ministral3,
    /// `phi3` (Phi-3/3.5-mini, Phi-4-mini): fused HF weights under `transformer.*` names.
    Phi3,
    /// `gemma` (Gemma 1): Llama's layout with norms stored as `1 + w`, always tied.
    Gemma,
    /// `gemma2`: four norms per layer stored as `1 + w`, always tied.
    Gemma2,
    /// `gemma3_text` (Gemma3ForCausalLM): Gemma-2's norms plus q/k norms, q, k
    /// and v kept apart, names under `language_model.`, `model_config` nested
    /// under `text_config`.
    Gemma3,
    /// `olmo2` (OLMo-2): Llama's layout with norms after each branch and q/k
    /// norms across all heads.
    Olmo2,
    /// `stablelm` (StableLM 2): LayerNorms with biases, partial rotary, an
    /// optional QKV bias, always an `lm_head`.
    StableLm,
    /// `phi` (Phi-1.5, Phi-2 as transformers' `PhiForCausalLM`): a parallel
    /// block under one LayerNorm, partial rotary, a non-gated GELU MLP and a
    /// bias on every projection.
    Phi,
    /// `gpt_neox` (GPTNeoXForCausalLM, RedPajama-INCITE): LayerNorms with
    /// biases, a per-head interleaved `query_key_value` reordered to
    /// `[q; k; v]`, partial rotary, a non-gated GELU MLP with f32 biases,
    /// parallel or sequential residuals, an untied `embed_out`.
    GptNeox,
    /// `bert` (BertModel, e.g. snowflake-arctic-embed): an encoder for
    /// embeddings, with q, k and v fused into one biased `qkv` projection.
    Bert,
}

impl Family {
    /// The family of `config.json`'s `model_type`, or `Unsupported` naming the
    /// supported list.
    pub fn from_hf_config(config: &Value) -> Result<Family, ConvertError> {
        let model_type = config.get("model_type").and_then(Value::as_str);
        match model_type {
            Some("llama") => Ok(Family::Llama),
            Some("qwen2") => Ok(Family::Qwen2),
            Some("qwen3") => Ok(Family::Qwen3),
            Some("qwen3_5") => Ok(Family::Qwen35 { text: false }),
            Some("qwen3_5_text") => Ok(Family::Qwen35 { text: true }),
            Some("mistral") => Ok(Family::Mistral),
            Some("ministral3") => Ok(Family::Ministral3),
            // The vision-language checkpoint: MLC converts it as `ministral3`
            // when its text backbone is one.
            Some("mistral3")
                if config.pointer("/text_config/model_type").and_then(Value::as_str)
                    == Some("ministral3") =>
            {
                Ok(Family::Ministral3)
            }
            Some("phi3") => Ok(Family::Phi3),
            Some("gemma") => Ok(Family::Gemma),
            Some("gemma2") => Ok(Family::Gemma2),
            Some("gemma3_text") => Ok(Family::Gemma3),
            Some("olmo2") => Ok(Family::Olmo2),
            Some("stablelm") => Ok(Family::StableLm),
            Some("phi") => Ok(Family::Phi),
            Some("gpt_neox") => Ok(Family::GptNeox),
            Some("bert") => Ok(Family::Bert),
            Some(old @ ("phi-msft" | "mixformer-sequential")) => Err(ConvertError::Unsupported {
                what: format!("model_type {old:?} (Microsoft's remote-code Phi checkpoints)"),
                message: "convert the transformers-format checkpoint (model_type \"phi\", \
                          e.g. microsoft/phi-2 and microsoft/phi-1_5 as published today)"
                    .into(),
            }),
            Some("gemma3") => Err(ConvertError::Unsupported {
                what: "model_type \"gemma3\" (Gemma3ForConditionalGeneration, with a vision tower)".into(),
                message: "the converter takes the text-only Gemma3ForCausalLM checkpoints (model_type \"gemma3_text\")"
                    .into(),
            }),
            other => Err(ConvertError::Unsupported {
                what: match other {
                    Some(name) => format!("model_type {name:?}"),
                    None => "a config.json without a string `model_type`".to_string(),
                },
                message: format!("the converter supports {}", SUPPORTED_FAMILIES.join(", ")),
            }),
        }
    }

    /// The `model_type` name.
    pub fn name(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
            Family::Qwen35 { text: false } => "qwen3_5",
            Family::Qwen35 { text: true } => "qwen3_5_text",
            Family::Mistral => "mistral",
            Family::Ministral3 => "ministral3",
            Family::Phi3 => "phi3",
            Family::Gemma => "gemma",
            Family::Gemma2 => "gemma2",
            Family::Gemma3 => "gemma3_text",
            Family::Olmo2 => "olmo2",
            Family::StableLm => "stablelm",
            Family::Phi => "phi",
            Family::GptNeox => "gpt_neox",
            Family::Bert => "bert",
        }
    }

    /// The fused QKV parameter's name (`self_attn.<name>`).
    fn qkv_name(self) -> &'static str {
        match self {
            Family::Llama
            | Family::Mistral
            | Family::Ministral3
            | Family::Phi3
            | Family::Gemma
            | Family::Gemma2
            | Family::Gemma3
            | Family::Olmo2
            | Family::StableLm => "qkv_proj",
            Family::Phi => "Wqkv",
            Family::GptNeox => "query_key_value",
            Family::Qwen2 | Family::Qwen3 | Family::Qwen35 { .. } => "c_attn",
            Family::Bert => "qkv",
        }
    }

    /// The conversation template `gen_config` is usually run with for this
    /// family, refined by what the tokenizer's special tokens show.
    pub fn default_conv_template(self, tokenizer_json: Option<&str>) -> &'static str {
        let has = |token: &str| tokenizer_json.is_some_and(|text| text.contains(token));
        match self {
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
            // MLC's `conversation_template/qwen3_5.py` (thinking on).
            Family::Qwen35 { .. } => "qwen3_5",
            Family::Mistral => "mistral_default",
            // MLC's `conversation_template/ministral3.py` (the Instruct model's).
            Family::Ministral3 => "ministral3",
            Family::Phi3 => "phi-3",
            Family::Gemma | Family::Gemma2 => "gemma_instruction",
            Family::Gemma3 => "gemma3_instruction",
            Family::Olmo2 => "olmo2",
            // WebLLM's stablelm-2-zephyr records name this template.
            Family::StableLm => "stablelm-2",
            // WebLLM's phi-2 and phi-1_5 records (MLC's `conversation_template/phi.py`).
            Family::Phi => "phi-2",
            // WebLLM's RedPajama-INCITE-Chat records (MLC's `conversation_template/redpajama.py`).
            Family::GptNeox => "redpajama_chat",
            // An encoder has no conversation: the plain template.
            Family::Bert => "LM",
            // SmolLM2 and other ChatML-tuned Llamas vs. Llama-3 vs. Llama-2.
            Family::Llama if has("<|im_start|>") => "chatml",
            Family::Llama if has("<|start_header_id|>") || tokenizer_json.is_none() => "llama-3",
            Family::Llama => "llama-2",
        }
    }

    /// The config dataclass's fields, in declaration order, with their
    /// defaults (`None`: required).
    fn fields(self) -> Vec<(&'static str, Option<Value>)> {
        let req = |name| (name, None);
        let opt = |name, value: Value| (name, Some(value));
        match self {
            Family::Llama => vec![
                req("hidden_size"),
                req("intermediate_size"),
                req("num_attention_heads"),
                req("num_hidden_layers"),
                req("rms_norm_eps"),
                req("vocab_size"),
                opt("tie_word_embeddings", json!(false)),
                opt("position_embedding_base", json!(0)),
                opt("rope_scaling", Value::Null),
                opt("context_window_size", json!(0)),
                opt("prefill_chunk_size", json!(0)),
                opt("num_key_value_heads", json!(0)),
                opt("head_dim", json!(0)),
                opt("tensor_parallel_shards", json!(1)),
                opt("pipeline_parallel_stages", json!(1)),
                opt("max_batch_size", json!(1)),
                opt("disaggregation", json!(false)),
            ],
            Family::Qwen2 | Family::Qwen3 => {
                let mut fields =
                    vec![req("hidden_act"), req("hidden_size"), req("intermediate_size")];
                if self == Family::Qwen3 {
                    fields.push(req("attention_bias"));
                }
                fields.extend([
                    req("num_attention_heads"),
                    req("num_hidden_layers"),
                    req("num_key_value_heads"),
                    req("rms_norm_eps"),
                    req("rope_theta"),
                    req("vocab_size"),
                    opt("tie_word_embeddings", json!(false)),
                    opt("context_window_size", json!(0)),
                    opt("prefill_chunk_size", json!(0)),
                    opt("tensor_parallel_shards", json!(1)),
                    opt("head_dim", json!(0)),
                    opt("dtype", json!("float32")),
                    opt("max_batch_size", json!(1)),
                ]);
                if self == Family::Qwen3 {
                    fields.push(opt("weight_block_size", Value::Null));
                }
                fields
            }
            // Qwen35Config's fields: every one has a default.
            Family::Qwen35 { .. } => vec![
                opt("hidden_size", json!(0)),
                opt("intermediate_size", json!(0)),
                opt("num_attention_heads", json!(0)),
                opt("num_hidden_layers", json!(0)),
                opt("num_key_value_heads", json!(0)),
                opt("rms_norm_eps", json!(1e-6)),
                opt("vocab_size", json!(0)),
                opt("rope_theta", json!(10_000_000)),
                opt("head_dim", json!(256)),
                opt("hidden_act", json!("silu")),
                opt("attention_bias", json!(false)),
                opt("tie_word_embeddings", json!(false)),
                opt("linear_key_head_dim", json!(128)),
                opt("linear_value_head_dim", json!(128)),
                opt("linear_num_key_heads", json!(16)),
                opt("linear_num_value_heads", json!(16)),
                opt("linear_conv_kernel_dim", json!(4)),
                opt("full_attention_interval", json!(4)),
                opt("partial_rotary_factor", json!(0.25)),
                opt("context_window_size", json!(0)),
                opt("prefill_chunk_size", json!(0)),
                opt("tensor_parallel_shards", json!(1)),
                opt("dtype", json!("float32")),
                opt("max_batch_size", json!(1)),
            ],
            // OLMo2Config's fields (its `= None` defaults are keys the checkpoint gives).
            Family::Olmo2 => vec![
                opt("vocab_size", Value::Null),
                opt("hidden_size", Value::Null),
                opt("num_attention_heads", Value::Null),
                opt("num_key_value_heads", json!(0)),
                opt("head_dim", json!(0)),
                opt("position_embedding_base", json!(0)),
                opt("rope_scaling", Value::Null),
                opt("intermediate_size", Value::Null),
                opt("hidden_act", Value::Null),
                opt("num_hidden_layers", Value::Null),
                opt("rms_norm_eps", json!(1e-5)),
                opt("tie_word_embeddings", json!(false)),
                opt("context_window_size", json!(0)),
                opt("prefill_chunk_size", json!(0)),
                opt("tensor_parallel_shards", json!(1)),
                opt("pipeline_parallel_stages", json!(1)),
                opt("max_batch_size", json!(1)),
            ],
            // StableLmConfig's fields.
            Family::StableLm => vec![
                req("vocab_size"),
                req("hidden_size"),
                req("num_hidden_layers"),
                req("num_attention_heads"),
                req("num_key_value_heads"),
                req("layer_norm_eps"),
                req("partial_rotary_factor"),
                req("rope_theta"),
                req("intermediate_size"),
                opt("use_qkv_bias", json!(false)),
                opt("head_dim", json!(0)),
                opt("context_window_size", json!(0)),
                opt("prefill_chunk_size", json!(0)),
                opt("tensor_parallel_shards", json!(1)),
                opt("max_batch_size", json!(1)),
            ],
            // GPTNeoXConfig's fields.
            Family::GptNeox => vec![
                req("use_parallel_residual"),
                req("hidden_size"),
                req("intermediate_size"),
                req("num_attention_heads"),
                req("num_hidden_layers"),
                req("layer_norm_eps"),
                req("vocab_size"),
                req("rotary_pct"),
                opt("position_embedding_base", json!(0)),
                opt("context_window_size", json!(0)),
                opt("head_dim", json!(0)),
                opt("prefill_chunk_size", json!(0)),
                opt("tensor_parallel_shards", json!(1)),
                opt("ffn_out_dtype", json!("float32")),
                opt("max_batch_size", json!(1)),
            ],
            // Phi1Config's fields (MLC's config class for `phi`).
            Family::Phi => vec![
                opt("vocab_size", json!(51200)),
                opt("hidden_size", json!(2048)),
                opt("intermediate_size", json!(8192)),
                opt("num_hidden_layers", json!(24)),
                opt("num_attention_heads", json!(32)),
                opt("layer_norm_eps", json!(1e-5)),
                opt("position_embedding_base", json!(0)),
                opt("partial_rotary_factor", json!(0.5)),
                opt("num_key_value_heads", json!(0)),
                opt("context_window_size", json!(0)),
                opt("prefill_chunk_size", json!(0)),
                opt("head_dim", json!(0)),
                opt("tensor_parallel_shards", json!(1)),
                opt("max_batch_size", json!(1)),
            ],
            Family::Mistral => vec![
                req("hidden_size"),
                req("intermediate_size"),
                req("num_attention_heads"),
                req("num_hidden_layers"),
                req("rms_norm_eps"),
                req("vocab_size"),
                opt("position_embedding_base", json!(0)),
                opt("num_key_value_heads", json!(0)),
                opt("head_dim", json!(0)),
                opt("context_window_size", json!(0)),
                opt("sliding_window_size", json!(0)),
                opt("prefill_chunk_size", json!(0)),
                opt("attention_sink_size", json!(4)),
                opt("tensor_parallel_shards", json!(1)),
                opt("max_batch_size", json!(1)),
            ],
            // Ministral3Config's fields.
            Family::Ministral3 => vec![
                req("hidden_size"),
                req("intermediate_size"),
                req("num_attention_heads"),
                req("num_hidden_layers"),
                req("rms_norm_eps"),
                req("vocab_size"),
                opt("attention_sink_size", json!(0)),
                opt("context_window_size", json!(0)),
                opt("dtype", json!("float32")),
                opt("head_dim", json!(0)),
                opt("hidden_act", json!("silu")),
                opt("max_batch_size", json!(1)),
                opt("num_key_value_heads", json!(0)),
                opt("position_embedding_base", json!(0)),
                opt("prefill_chunk_size", json!(0)),
                opt("rope_parameters", Value::Null),
                opt("sliding_window_size", json!(0)),
                opt("tensor_parallel_shards", json!(1)),
                opt("tie_word_embeddings", json!(false)),
                opt("weight_block_size", Value::Null),
                opt("modules_to_not_convert", json!([])),
            ],
            Family::Phi3 => vec![
                req("model_type"),
                req("hidden_size"),
                req("vocab_size"),
                req("num_hidden_layers"),
                req("num_attention_heads"),
                req("intermediate_size"),
                req("rms_norm_eps"),
                req("num_key_value_heads"),
                req("max_position_embeddings"),
                opt("position_embedding_base", json!(0)),
                opt("rope_scaling", Value::Null),
                opt("original_max_position_embeddings", json!(0)),
                opt("context_window_size", json!(0)),
                opt("prefill_chunk_size", json!(0)),
                opt("head_dim", json!(0)),
                opt("tensor_parallel_shards", json!(1)),
                opt("max_batch_size", json!(1)),
                opt("tie_word_embeddings", json!(false)),
                opt("partial_rotary_factor", json!(1.0)),
            ],
            // GemmaConfig's fields.
            Family::Gemma => vec![
                req("hidden_size"),
                req("intermediate_size"),
                req("attention_bias"),
                req("num_attention_heads"),
                req("num_key_value_heads"),
                req("head_dim"),
                req("num_hidden_layers"),
                req("rms_norm_eps"),
                req("vocab_size"),
                opt("hidden_activation", Value::Null),
                opt("position_embedding_base", json!(0)),
                opt("context_window_size", json!(0)),
                opt("prefill_chunk_size", json!(0)),
                opt("tensor_parallel_shards", json!(1)),
                opt("max_batch_size", json!(1)),
            ],
            // GemmaConfig's fields, then Gemma2Config's.
            Family::Gemma2 => {
                let mut fields = Family::Gemma.fields();
                fields.extend([
                    opt("attn_logit_softcapping", Value::Null),
                    opt("final_logit_softcapping", Value::Null),
                    opt("query_pre_attn_scalar", Value::Null),
                    opt("sliding_window", Value::Null),
                ]);
                fields
            }
            // Gemma3TextConfig's fields (its `sliding_window_pattern = 6` is a
            // class constant, not a field).
            Family::Gemma3 => vec![
                req("hidden_size"),
                req("intermediate_size"),
                req("num_hidden_layers"),
                opt("attention_bias", json!(false)),
                opt("num_attention_heads", json!(8)),
                opt("num_key_value_heads", json!(4)),
                opt("head_dim", json!(256)),
                opt("rms_norm_eps", json!(1e-6)),
                opt("hidden_activation", json!("gelu_pytorch_tanh")),
                opt("position_embedding_base", json!(1_000_000)),
                opt("rope_scaling", json!(0)),
                opt("context_window_size", json!(131_072)),
                opt("prefill_chunk_size", json!(0)),
                opt("query_pre_attn_scalar", json!(256)),
                opt("sliding_window_size", Value::Null),
            ],
            // BertConfig's fields.
            Family::Bert => vec![
                req("vocab_size"),
                req("hidden_size"),
                req("num_hidden_layers"),
                req("num_attention_heads"),
                req("intermediate_size"),
                req("hidden_act"),
                req("layer_norm_eps"),
                opt("context_window_size", json!(0)),
                opt("prefill_chunk_size", json!(0)),
                opt("tensor_parallel_shards", json!(1)),
                opt("type_vocab_size", json!(2)),
                opt("pad_token_id", json!(0)),
                opt("position_offset", json!(0)),
                opt("head_dim", json!(0)),
                opt("max_batch_size", json!(1)),
            ],
        }
    }

    /// `model_config` as `gen_config` writes it: `config.json` parsed by the
    /// family's config dataclass (`ConfigBase.from_dict` + `__post_init__`),
    /// then the command-line overrides applied (`ModelConfigOverride.apply`,
    /// which rebuilds the dataclass and so runs `__post_init__` again).
    pub fn model_config(
        self,
        hf: &Value,
        overrides: &Overrides,
    ) -> Result<Map<String, Value>, ConvertError> {
        let source =
            hf.as_object().ok_or_else(|| config_error("config.json is not an object".into()))?;
        if self == Family::Gemma3 {
            return gemma3_model_config(source, overrides);
        }
        let merged;
        let source = match self {
            Family::Ministral3 => {
                merged = ministral3_merge_text_config(source);
                &merged
            }
            _ => source,
        };
        let mut fields = Map::new();
        let mut kwargs = Map::new();
        let declared = self.fields();
        for (key, value) in source {
            if declared.iter().any(|(name, _)| name == key) {
                fields.insert(key.clone(), value.clone());
            } else {
                kwargs.insert(key.clone(), value.clone());
            }
        }
        let build = |fields: &Map<String, Value>| -> Result<Map<String, Value>, ConvertError> {
            let mut out = Map::new();
            for (name, default) in &declared {
                let value = match (fields.get(*name), default) {
                    (Some(value), _) => value.clone(),
                    (None, Some(default)) => default.clone(),
                    (None, None) => {
                        return Err(config_error(format!(
                            "config.json has no `{name}`, which {} needs",
                            self.name()
                        )));
                    }
                };
                out.insert(name.to_string(), value);
            }
            Ok(out)
        };
        let mut config = build(&fields)?;
        self.post_init(&mut config, &mut kwargs)?;
        // The overrides that are set (`None` ones are skipped), only for keys the
        // dataclass has: all three families have these.
        let mut applied = false;
        for (key, value) in [
            ("context_window_size", overrides.context_window_size),
            ("prefill_chunk_size", overrides.prefill_chunk_size),
            ("max_batch_size", Some(overrides.max_batch_size)),
        ] {
            if let Some(value) = value {
                config.insert(key.to_string(), json!(value));
                applied = true;
            }
        }
        if applied {
            // `from_dict(asdict())`: kwargs are gone by now.
            let mut config2 = build(&config)?;
            self.post_init(&mut config2, &mut Map::new())?;
            config = config2;
        }
        Ok(config)
    }

    /// The dataclass's `__post_init__`.
    fn post_init(
        self,
        config: &mut Map<String, Value>,
        kwargs: &mut Map<String, Value>,
    ) -> Result<(), ConvertError> {
        match self {
            Family::Mistral => return mistral_post_init(config, kwargs),
            Family::Ministral3 => return ministral3_post_init(config, kwargs),
            Family::Phi3 => return phi3_post_init(config, kwargs),
            Family::Gemma => return gemma_post_init(config, kwargs, "gemma"),
            Family::Gemma2 => return gemma2_post_init(config, kwargs),
            Family::Gemma3 => return gemma3_text_post_init(config, kwargs),
            Family::Olmo2 => return olmo2_post_init(config, kwargs),
            Family::StableLm => return stablelm_post_init(config, kwargs),
            Family::Phi => return phi_post_init(config, kwargs),
            Family::GptNeox => return gpt_neox_post_init(config, kwargs),
            Family::Bert => return bert_post_init(config, kwargs),
            Family::Qwen35 { .. } => return qwen35_post_init(config, kwargs, &self.fields()),
            Family::Llama | Family::Qwen2 | Family::Qwen3 => {}
        }
        if self == Family::Llama {
            take_rope_theta(config, kwargs);
            let scaling = &config["rope_scaling"];
            if !scaling.is_null() {
                match scaling.get("rope_type") {
                    None => {
                        config.insert("rope_scaling".into(), Value::Null);
                    }
                    Some(kind) if kind == "llama3" => {}
                    Some(kind) => {
                        return Err(ConvertError::Unsupported {
                            what: format!("rope_scaling.rope_type {kind} for llama"),
                            message: "MLC's Llama supports only \"llama3\" RoPE scaling".into(),
                        });
                    }
                }
            }
        }
        if self == Family::Qwen3 && kwargs.contains_key("quantization_config") {
            return Err(ConvertError::Unsupported {
                what: "a pre-quantized checkpoint (`quantization_config` in config.json)".into(),
                message: "convert from the unquantized Hugging Face weights".into(),
            });
        }
        if is_zero(&config["context_window_size"]) {
            let found = ["max_position_embeddings", "max_sequence_length"]
                .iter()
                .find_map(|name| kwargs.remove(*name));
            match found {
                Some(value) => {
                    config.insert("context_window_size".into(), value);
                }
                None => {
                    return Err(config_error(
                        "cannot determine the context window: config.json has none of `context_window_size`, \
                         `max_position_embeddings`, `max_sequence_length` (pass --context-window-size)"
                            .into(),
                    ));
                }
            }
        }
        let hidden = int(config, "hidden_size")?;
        let heads = int(config, "num_attention_heads")?;
        if heads <= 0 {
            return Err(config_error(format!("num_attention_heads must be positive, got {heads}")));
        }
        if self == Family::Llama {
            let stages = int(config, "pipeline_parallel_stages")?;
            if stages <= 0 || stages > int(config, "num_hidden_layers")? {
                return Err(config_error(format!("invalid pipeline_parallel_stages {stages}")));
            }
            if int(config, "num_key_value_heads")? == 0 {
                config.insert("num_key_value_heads".into(), json!(heads));
            }
        }
        if self != Family::Qwen3 && int(config, "head_dim")? == 0 {
            config.insert("head_dim".into(), json!(hidden.div_euclid(heads)));
        }
        let head_dim = int(config, "head_dim")?;
        let kv_heads = int(config, "num_key_value_heads")?;
        match self {
            // An `assert` in MLC's Qwen2Config.
            Family::Qwen2 if head_dim * heads != hidden => {
                return Err(config_error(format!(
                    "qwen2 needs head_dim × num_attention_heads = hidden_size, got {head_dim} × {heads} ≠ {hidden}"
                )));
            }
            // MLC's Qwen3 reads head_dim as given; 0 would build an empty model.
            Family::Qwen3 if head_dim <= 0 => {
                return Err(config_error(
                    "qwen3 config.json must give a positive `head_dim`".into(),
                ));
            }
            _ => {}
        }
        if kv_heads <= 0 || heads % kv_heads != 0 {
            return Err(config_error(format!(
                "num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kv_heads})"
            )));
        }
        // Python's `min(context, cap)`: the context value itself unless the cap is smaller.
        let cap = if self == Family::Qwen3 { 2048 } else { 8192 };
        let context = config["context_window_size"].clone();
        let context_int = int(config, "context_window_size")?;
        let prefill = int(config, "prefill_chunk_size")?;
        if prefill == 0 || prefill > context_int {
            let value = if cap < context_int { json!(cap) } else { context };
            config.insert("prefill_chunk_size".into(), value);
        }
        Ok(())
    }
}

/// `Qwen35Config.__post_init__`: `text_config`'s declared keys set over the
/// top level's (its other keys go to kwargs), `rope_theta` and
/// `partial_rotary_factor` from `rope_parameters` (`text_config`'s, else the
/// top level's), the context from `max_position_embeddings`, and the prefill
/// chunk `min(context, 2048)` when it is 0 or larger than the context.
fn qwen35_post_init(
    config: &mut Map<String, Value>,
    kwargs: &mut Map<String, Value>,
    declared: &[(&'static str, Option<Value>)],
) -> Result<(), ConvertError> {
    let apply_rope = |config: &mut Map<String, Value>, rope: &Value| {
        for key in ["rope_theta", "partial_rotary_factor"] {
            if let Some(value) = rope.get(key) {
                config.insert(key.into(), value.clone());
            }
        }
    };
    if let Some(Value::Object(text)) = kwargs.shift_remove("text_config") {
        for (key, value) in &text {
            match declared.iter().any(|(name, _)| name == key) {
                true => config.insert(key.clone(), value.clone()),
                false => kwargs.insert(key.clone(), value.clone()),
            };
        }
        if let Some(rope) = text.get("rope_parameters").filter(|r| r.is_object()) {
            apply_rope(config, rope);
        }
    }
    // The text config's `rope_parameters`, if any, replaced the top level's in kwargs.
    if let Some(rope) = kwargs.shift_remove("rope_parameters").filter(|r| r.is_object()) {
        apply_rope(config, &rope);
    }
    context_from_kwargs(config, kwargs)?;
    let context = int(config, "context_window_size")?;
    let prefill = int(config, "prefill_chunk_size")?;
    if prefill == 0 || prefill > context {
        config.insert("prefill_chunk_size".into(), json!(context.min(2048)));
    }
    let (heads, kv_heads) =
        (int(config, "num_attention_heads")?, int(config, "num_key_value_heads")?);
    let (key_heads, value_heads) =
        (int(config, "linear_num_key_heads")?, int(config, "linear_num_value_heads")?);
    if heads <= 0 || kv_heads <= 0 || heads % kv_heads != 0 {
        return Err(config_error(format!(
            "num_attention_heads ({heads}) must be a positive multiple of num_key_value_heads ({kv_heads})"
        )));
    }
    if key_heads <= 0 || value_heads <= 0 || value_heads % key_heads != 0 {
        return Err(config_error(format!(
            "linear_num_value_heads ({value_heads}) must be a positive multiple of \
             linear_num_key_heads ({key_heads})"
        )));
    }
    Ok(())
}

/// `position_embedding_base = kwargs.pop("rope_theta", 10000)` when it is 0
/// (Llama, Mistral, Phi-3, Gemma).
fn take_rope_theta(config: &mut Map<String, Value>, kwargs: &mut Map<String, Value>) {
    if is_zero(&config["position_embedding_base"]) {
        let base = kwargs.remove("rope_theta").unwrap_or(json!(10000));
        config.insert("position_embedding_base".into(), base);
    }
}

/// `context_window_size` from `max_position_embeddings` or `max_sequence_length`
/// when it is 0 (popped from kwargs, as MLC's configs do).
fn context_from_kwargs(
    config: &mut Map<String, Value>,
    kwargs: &mut Map<String, Value>,
) -> Result<(), ConvertError> {
    if !is_zero(&config["context_window_size"]) {
        return Ok(());
    }
    match ["max_position_embeddings", "max_sequence_length"]
        .iter()
        .find_map(|name| kwargs.remove(*name))
    {
        Some(value) => {
            config.insert("context_window_size".into(), value);
            Ok(())
        }
        None => Err(config_error(
            "cannot determine the context window: config.json has none of `context_window_size`, \
             `max_position_embeddings`, `max_sequence_length` (pass --context-window-size)"
                .into(),
        )),
    }
}

/// `hidden_size`, `num_attention_heads` (which must be positive) and
/// `head_dim`, defaulted to hidden / heads where it is missing or 0.
fn heads_and_head_dim(config: &mut Map<String, Value>) -> Result<(i64, i64, i64), ConvertError> {
    let hidden = int(config, "hidden_size")?;
    let heads = int(config, "num_attention_heads")?;
    if heads <= 0 {
        return Err(config_error(format!("num_attention_heads must be positive, got {heads}")));
    }
    if int(config, "head_dim")? == 0 {
        config.insert("head_dim".into(), json!(hidden.div_euclid(heads)));
    }
    Ok((hidden, heads, int(config, "head_dim")?))
}

/// The `assert head_dim * num_attention_heads == hidden_size` of MLC's
/// configs that split the hidden state evenly over the heads.
fn heads_divide_hidden(
    family: &str,
    (hidden, heads, head_dim): (i64, i64, i64),
) -> Result<(), ConvertError> {
    match head_dim * heads == hidden {
        true => Ok(()),
        false => Err(config_error(format!(
            "{family} needs head_dim × num_attention_heads = hidden_size, got {head_dim} × {heads} ≠ {hidden}"
        ))),
    }
}

/// `num_key_value_heads` (0 → heads) and `head_dim` (0 → hidden / heads)
/// defaults, and the GQA divisibility MLC asserts. Returns `(hidden, heads, head_dim)`.
fn default_heads(config: &mut Map<String, Value>) -> Result<(i64, i64, i64), ConvertError> {
    let hidden = int(config, "hidden_size")?;
    let heads = int(config, "num_attention_heads")?;
    if heads <= 0 {
        return Err(config_error(format!("num_attention_heads must be positive, got {heads}")));
    }
    if config["num_key_value_heads"].is_null() || int(config, "num_key_value_heads")? == 0 {
        config.insert("num_key_value_heads".into(), json!(heads));
    }
    if int(config, "head_dim")? == 0 {
        config.insert("head_dim".into(), json!(hidden.div_euclid(heads)));
    }
    let kv_heads = int(config, "num_key_value_heads")?;
    if kv_heads <= 0 || heads % kv_heads != 0 {
        return Err(config_error(format!(
            "num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kv_heads})"
        )));
    }
    Ok((hidden, heads, int(config, "head_dim")?))
}

/// `BertConfig.__post_init__`: `intermediate_size` null or -1 → 4 × hidden,
/// the context from `max_position_embeddings`, `head_dim` hidden / heads (which
/// must divide exactly), and a prefill chunk of the whole context (an encoder
/// sees its input at once), never larger than it.
fn bert_post_init(
    config: &mut Map<String, Value>,
    kwargs: &mut Map<String, Value>,
) -> Result<(), ConvertError> {
    let hidden = int(config, "hidden_size")?;
    if config["intermediate_size"].is_null() || int(config, "intermediate_size")? == -1 {
        config.insert("intermediate_size".into(), json!(4 * hidden));
    }
    context_from_kwargs(config, kwargs)?;
    heads_divide_hidden("bert", heads_and_head_dim(config)?)?;
    let context = config["context_window_size"].clone();
    let prefill = int(config, "prefill_chunk_size")?;
    if prefill == 0 || prefill > int(config, "context_window_size")? {
        config.insert("prefill_chunk_size".into(), context);
    }
    Ok(())
}

/// Phi-3's and Gemma's prefill rule: `min(context, 8192)` when unset or larger than the context.
fn cap_prefill(config: &mut Map<String, Value>) -> Result<(), ConvertError> {
    let context = int(config, "context_window_size")?;
    let prefill = int(config, "prefill_chunk_size")?;
    if prefill == 0 || prefill > context {
        config.insert("prefill_chunk_size".into(), json!(context.min(8192)));
    }
    Ok(())
}

/// `OLMo2Config.__post_init__`: head defaults, the RoPE base and context
/// window from Hugging Face's keys, Phi-3's and Gemma's prefill rule.
fn olmo2_post_init(
    config: &mut Map<String, Value>,
    kwargs: &mut Map<String, Value>,
) -> Result<(), ConvertError> {
    default_heads(config)?;
    take_rope_theta(config, kwargs);
    context_from_kwargs(config, kwargs)?;
    cap_prefill(config)
}

/// `StableLmConfig.__post_init__`: the context from Hugging Face's keys,
/// `head_dim` hidden / heads (which must divide exactly), Phi-3's prefill rule.
/// MLC's model has neither per-head q/k LayerNorms nor parallel residuals
/// (StableLM 2 12B's `qk_layernorm`, `use_parallel_residual`): a checkpoint
/// that turns either on is refused rather than converted into a different model.
fn stablelm_post_init(
    config: &mut Map<String, Value>,
    kwargs: &mut Map<String, Value>,
) -> Result<(), ConvertError> {
    for key in ["qk_layernorm", "use_parallel_residual"] {
        if kwargs.get(key) == Some(&json!(true)) {
            return Err(ConvertError::Unsupported {
                what: format!("stablelm with `{key}`"),
                message: "MLC's StableLM model has no such layers (StableLM 2 1.6B's layout only)"
                    .into(),
            });
        }
    }
    context_from_kwargs(config, kwargs)?;
    heads_divide_hidden("stablelm", default_heads(config)?)?;
    cap_prefill(config)
}

/// `Phi1Config.__post_init__`: the RoPE base from `rope_theta` (10000 by
/// default), the context from Hugging Face's keys, the prefill chunk
/// `min(context, 8192)`, `num_key_value_heads` and `intermediate_size`
/// (4 × hidden) when 0 or null, `head_dim` hidden / heads, which must divide
/// exactly. MLC's Phi has no per-head q/k LayerNorm: a checkpoint with
/// transformers' `qk_layernorm` is refused rather than converted into a
/// different model.
fn phi_post_init(
    config: &mut Map<String, Value>,
    kwargs: &mut Map<String, Value>,
) -> Result<(), ConvertError> {
    if kwargs.get("qk_layernorm") == Some(&json!(true)) {
        return Err(ConvertError::Unsupported {
            what: "phi with `qk_layernorm`".into(),
            message: "MLC's Phi model has no q/k LayerNorms".into(),
        });
    }
    take_rope_theta(config, kwargs);
    context_from_kwargs(config, kwargs)?;
    cap_prefill(config)?;
    let hidden = int(config, "hidden_size")?;
    if config["intermediate_size"].is_null() || int(config, "intermediate_size")? == 0 {
        config.insert("intermediate_size".into(), json!(4 * hidden));
    }
    heads_divide_hidden("phi", default_heads(config)?)?;
    Ok(())
}

/// `GPTNeoXConfig.__post_init__`: the context from Hugging Face's keys, the
/// RoPE base from `rope_theta` (10000 by default: MLC does not read the older
/// `rotary_emb_base`), `head_dim` hidden / heads (which must divide exactly),
/// the prefill chunk `min(context, 8192)`. MLC's model always has the
/// attention biases and computes the MLP in f32: a checkpoint without the
/// biases (`attention_bias: false`) or another `ffn_out_dtype` is refused
/// rather than converted into something MLC's loader would not load.
fn gpt_neox_post_init(
    config: &mut Map<String, Value>,
    kwargs: &mut Map<String, Value>,
) -> Result<(), ConvertError> {
    if kwargs.get("attention_bias") == Some(&json!(false)) {
        return Err(ConvertError::Unsupported {
            what: "gpt_neox with `attention_bias: false`".into(),
            message: "MLC's GPT-NeoX model always has the query_key_value and dense biases".into(),
        });
    }
    if config["ffn_out_dtype"] != json!("float32") {
        return Err(ConvertError::Unsupported {
            what: format!("gpt_neox with ffn_out_dtype {}", config["ffn_out_dtype"]),
            message: "the converter writes the MLP biases as float32 (MLC's default)".into(),
        });
    }
    context_from_kwargs(config, kwargs)?;
    take_rope_theta(config, kwargs);
    heads_divide_hidden("gpt_neox", heads_and_head_dim(config)?)?;
    cap_prefill(config)
}

/// `MistralConfig.__post_init__`: the HF `sliding_window` (null → -1) becomes
/// `sliding_window_size`; with a window the context is unbounded (-1) and the
/// prefill chunk is at most the window.
fn mistral_post_init(
    config: &mut Map<String, Value>,
    kwargs: &mut Map<String, Value>,
) -> Result<(), ConvertError> {
    take_rope_theta(config, kwargs);
    window_context_and_chunk(config, kwargs)?;
    if int(config, "attention_sink_size")? < 0 {
        return Err(config_error("attention_sink_size must not be negative".into()));
    }
    Ok(())
}

/// The window rules Mistral's and Ministral 3's configs share:
/// `sliding_window` (null → -1) becomes `sliding_window_size`; the context is
/// `max_position_embeddings` without a window and unbounded (-1) with one; the
/// head defaults; the prefill chunk is at most the window, the context and
/// 8192.
fn window_context_and_chunk(
    config: &mut Map<String, Value>,
    kwargs: &mut Map<String, Value>,
) -> Result<(), ConvertError> {
    if is_zero(&config["sliding_window_size"]) {
        let window = kwargs.remove("sliding_window").unwrap_or(json!(-1));
        config.insert("sliding_window_size".into(), window);
    }
    if config["sliding_window_size"].is_null() {
        config.insert("sliding_window_size".into(), json!(-1));
    }
    let sliding = int(config, "sliding_window_size")?;
    if is_zero(&config["context_window_size"]) {
        if sliding == -1 {
            context_from_kwargs(config, kwargs)?;
        } else {
            config.insert("context_window_size".into(), json!(-1));
        }
    }
    default_heads(config)?;
    if is_zero(&config["prefill_chunk_size"]) {
        let context = int(config, "context_window_size")?;
        let candidates = [sliding, context].into_iter().filter(|&v| v != -1);
        config.insert("prefill_chunk_size".into(), json!(candidates.fold(8192, i64::min)));
    }
    Ok(())
}

/// `Ministral3Config.from_dict`: a `text_config` object is merged over the
/// top level, whose `tie_word_embeddings` and `dtype` still win.
fn ministral3_merge_text_config(source: &Map<String, Value>) -> Map<String, Value> {
    let Some(Value::Object(text)) = source.get("text_config") else {
        return source.clone();
    };
    let mut merged = source.clone();
    merged.shift_remove("text_config");
    merged.extend(text.clone());
    for key in ["tie_word_embeddings", "dtype"] {
        if let Some(value) = source.get(key) {
            merged.insert(key.into(), value.clone());
        }
    }
    merged
}

/// `Ministral3Config.__post_init__`: a `quantization_config` (the FP8
/// checkpoints) is refused, the RoPE base is `rope_parameters.rope_theta`
/// (taken out of it), else `rope_theta`, else 10000; then Mistral's window
/// rules ([`window_context_and_chunk`]).
fn ministral3_post_init(
    config: &mut Map<String, Value>,
    kwargs: &mut Map<String, Value>,
) -> Result<(), ConvertError> {
    if kwargs.contains_key("quantization_config") {
        return Err(ConvertError::Unsupported {
            what: "a pre-quantized Ministral 3 checkpoint (`quantization_config`, FP8 weights)"
                .into(),
            message: "convert the BF16 release instead (e.g. Ministral-3-3B-Instruct-2512-BF16, \
                      the checkpoint WebLLM's -BF16 records come from)"
                .into(),
        });
    }
    if is_zero(&config["position_embedding_base"]) {
        let from_rope = config
            .get_mut("rope_parameters")
            .and_then(Value::as_object_mut)
            .and_then(|rope| rope.shift_remove("rope_theta"));
        let base = from_rope.or_else(|| kwargs.remove("rope_theta")).unwrap_or(json!(10000));
        config.insert("position_embedding_base".into(), base);
    }
    window_context_and_chunk(config, kwargs)
}

/// Reads Ministral 3's parameters under `language_model.` when `config.json`
/// is the vision-language one (`vision_config` at its top level), as
/// `ministral3_loader.py` does; the vision tower is not converted. A
/// checkpoint saved in transformers 5's layout instead (the backbone under
/// `model.language_model.`, `lm_head` at the top; `source_names` has no
/// `language_model.` tensor) is read from there: the same tensors.
pub fn ministral3_vlm_layout(params: &mut [Param], hf_config: &Value, source_names: &[String]) {
    if hf_config.get("vision_config").is_none() {
        return;
    }
    let transformers5 = !source_names.iter().any(|name| name.starts_with("language_model."))
        && source_names.iter().any(|name| name.starts_with("model.language_model."));
    for (source, _) in params.iter_mut().flat_map(|param| &mut param.sources) {
        *source = match source.strip_prefix("model.") {
            Some(rest) if transformers5 => format!("model.language_model.{rest}"),
            _ if transformers5 => source.clone(),
            _ => format!("language_model.{source}"),
        };
    }
}

/// `Phi3Config.__post_init__`: `rope_scaling` without `type` is dropped, `su`
/// is renamed `longrope` (the only kind accepted) and the two lengths are
/// copied into it; the context defaults to `max_position_embeddings`.
fn phi3_post_init(
    config: &mut Map<String, Value>,
    kwargs: &mut Map<String, Value>,
) -> Result<(), ConvertError> {
    take_rope_theta(config, kwargs);
    if let Some(scaling) = config.get("rope_scaling").and_then(Value::as_object).cloned() {
        match scaling.get("type") {
            None => {
                config.insert("rope_scaling".into(), Value::Null);
            }
            Some(kind) => {
                let mut scaling = scaling.clone();
                if kind == "su" {
                    scaling.insert("type".into(), json!("longrope"));
                }
                if scaling["type"] != "longrope" {
                    return Err(ConvertError::Unsupported {
                        what: format!("rope_scaling.type {} for phi3", scaling["type"]),
                        message: "MLC's Phi-3 supports only LongRoPE (\"longrope\" / \"su\")"
                            .into(),
                    });
                }
                scaling.insert("rope_type".into(), scaling["type"].clone());
                scaling.insert(
                    "max_position_embeddings".into(),
                    config["max_position_embeddings"].clone(),
                );
                scaling.insert(
                    "original_max_position_embeddings".into(),
                    config["original_max_position_embeddings"].clone(),
                );
                config.insert("rope_scaling".into(), Value::Object(scaling));
            }
        }
    }
    if is_zero(&config["context_window_size"]) {
        config.insert("context_window_size".into(), config["max_position_embeddings"].clone());
    }
    cap_prefill(config)?;
    heads_divide_hidden("phi3", default_heads(config)?)?;
    Ok(())
}

/// What MLC's Gemma configs (2 and 3) check alike: the activation, taken from
/// HF's `hidden_act` when `hidden_activation` is absent, must be a GELU, and
/// the attention has no bias.
fn gemma_activation_and_bias(
    config: &mut Map<String, Value>,
    kwargs: &Map<String, Value>,
    family: &str,
) -> Result<(), ConvertError> {
    if config["hidden_activation"].is_null() {
        config.insert(
            "hidden_activation".into(),
            kwargs.get("hidden_act").cloned().unwrap_or(Value::Null),
        );
    }
    if !matches!(config["hidden_activation"].as_str(), Some("gelu" | "gelu_pytorch_tanh")) {
        return Err(ConvertError::Unsupported {
            what: format!("hidden_activation {} for {family}", config["hidden_activation"]),
            message: "MLC's Gemma supports only GeLU".into(),
        });
    }
    if config["attention_bias"] == json!(true) {
        return Err(ConvertError::Unsupported {
            what: format!("attention_bias for {family}"),
            message: "MLC's Gemma has no attention bias".into(),
        });
    }
    Ok(())
}

/// `GemmaConfig.__post_init__`: a GELU activation, no attention bias, the
/// RoPE base and context window from Hugging Face's keys.
fn gemma_post_init(
    config: &mut Map<String, Value>,
    kwargs: &mut Map<String, Value>,
    family: &str,
) -> Result<(), ConvertError> {
    gemma_activation_and_bias(config, kwargs, family)?;
    take_rope_theta(config, kwargs);
    context_from_kwargs(config, kwargs)?;
    default_heads(config)?;
    cap_prefill(config)
}

/// `Gemma2Config.__post_init__` (after `GemmaConfig`'s): a GELU activation, no
/// attention bias, and the context window forced to `sliding_window`, since
/// MLC runs every layer with full attention.
fn gemma2_post_init(
    config: &mut Map<String, Value>,
    kwargs: &mut Map<String, Value>,
) -> Result<(), ConvertError> {
    gemma_post_init(config, kwargs, "gemma2")?;
    if config["sliding_window"].is_null() {
        return Err(config_error(
            "gemma2 config.json must give `sliding_window` (MLC uses it as the context window)"
                .into(),
        ));
    }
    config.insert("context_window_size".into(), config["sliding_window"].clone());
    Ok(())
}

/// `Gemma3Config` (the outer dataclass) of a `gemma3_text` checkpoint: the
/// whole `config.json` but `vocab_size` becomes its `text_config`, a
/// [`Family::Gemma3`] text config that keeps its leftover keys under
/// `kwargs` (`ConfigBase.asdict` drops only the outer `kwargs`); the outer
/// window sizes are the text config's, then the overrides apply to the outer ones.
fn gemma3_model_config(
    source: &Map<String, Value>,
    overrides: &Overrides,
) -> Result<Map<String, Value>, ConvertError> {
    let mut outer = Map::new();
    let outer_fields: [(&str, Value); 8] = [
        ("text_config", Value::Null),
        ("vocab_size", json!(262_208)),
        ("tensor_parallel_shards", json!(1)),
        ("max_batch_size", json!(1)),
        ("context_window_size", json!(-1)),
        ("sliding_window_size", json!(-1)),
        ("prefill_chunk_size", json!(-1)),
        ("is_text_model", json!(true)),
    ];
    let text_source: Map<String, Value> = source
        .iter()
        .filter(|(key, _)| !outer_fields.iter().any(|(name, _)| name == key))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    for (name, default) in outer_fields {
        outer.insert(name.into(), source.get(name).cloned().unwrap_or(default));
    }
    let mut text = Map::new();
    let mut kwargs = Map::new();
    let declared = Family::Gemma3.fields();
    for (key, value) in &text_source {
        if !declared.iter().any(|(name, _)| name == key) {
            kwargs.insert(key.clone(), value.clone());
        }
    }
    for (name, default) in &declared {
        let value = match (text_source.get(*name), default) {
            (Some(value), _) => value.clone(),
            (None, Some(default)) => default.clone(),
            (None, None) => {
                return Err(config_error(format!(
                    "config.json has no `{name}`, which gemma3 needs"
                )));
            }
        };
        text.insert(name.to_string(), value);
    }
    gemma3_text_post_init(&mut text, &mut kwargs)?;
    text.insert("kwargs".into(), Value::Object(kwargs));
    for key in ["context_window_size", "prefill_chunk_size", "sliding_window_size"] {
        if outer[key].as_f64().is_none_or(|v| v <= 0.0) {
            outer.insert(key.into(), text[key].clone());
        }
    }
    outer.insert("text_config".into(), Value::Object(text));
    for (key, value) in [
        ("context_window_size", overrides.context_window_size),
        ("prefill_chunk_size", overrides.prefill_chunk_size),
        ("max_batch_size", Some(overrides.max_batch_size)),
    ] {
        if let Some(value) = value {
            outer.insert(key.into(), json!(value));
        }
    }
    Ok(outer)
}

/// `Gemma3TextConfig.__post_init__`: a GELU, no attention bias, the HF
/// `sliding_window` as `sliding_window_size`, `rope_theta` as the base, and
/// the context forced to `max(sliding_window, 8192)` (its prefill chunk
/// having been capped at the context it had before).
fn gemma3_text_post_init(
    config: &mut Map<String, Value>,
    kwargs: &mut Map<String, Value>,
) -> Result<(), ConvertError> {
    gemma_activation_and_bias(config, kwargs, "gemma3")?;
    if config["sliding_window_size"].is_null() {
        config.insert(
            "sliding_window_size".into(),
            kwargs.get("sliding_window").cloned().unwrap_or(Value::Null),
        );
    }
    if config["position_embedding_base"].as_f64() == Some(1e6) {
        // Python's `pop` keeps the other keys' order (IndexMap's `remove` would not).
        if let Some(theta) = kwargs.shift_remove("rope_theta") {
            config.insert("position_embedding_base".into(), theta);
        }
    }
    context_from_kwargs(config, kwargs)?;
    let (hidden, heads, _) = default_heads(config)?;
    // An assertion of MLC's Gemma3TextModel.
    if hidden % heads != 0 {
        return Err(config_error(format!(
            "gemma3 needs hidden_size ({hidden}) to be a multiple of num_attention_heads ({heads})"
        )));
    }
    let context = int(config, "context_window_size")?;
    let prefill = int(config, "prefill_chunk_size")?;
    if prefill == 0 || prefill > context {
        config.insert("prefill_chunk_size".into(), json!(context.min(8192)));
    }
    let window = match &config["sliding_window_size"] {
        Value::Null => {
            return Err(config_error(
                "gemma3 config.json must give `sliding_window` (MLC sizes the context from it)"
                    .into(),
            ));
        }
        _ => int(config, "sliding_window_size")?,
    };
    config.insert("context_window_size".into(), json!(window.max(8192)));
    Ok(())
}

/// The `gen_config` command-line overrides of `model_config`.
#[derive(Clone, Debug)]
pub struct Overrides {
    /// `--context-window-size`.
    pub context_window_size: Option<i64>,
    /// `--prefill-chunk-size`.
    pub prefill_chunk_size: Option<i64>,
    /// `--max-batch-size` (the official default is 128).
    pub max_batch_size: i64,
}

fn config_error(message: String) -> ConvertError {
    ConvertError::Malformed { path: "config.json".into(), message }
}

/// Python's `value == 0` for the numbers a config holds.
fn is_zero(value: &Value) -> bool {
    value.as_f64() == Some(0.0)
}

/// An integer field of the parsed config (integral floats are accepted, as Python would).
fn int(config: &Map<String, Value>, key: &str) -> Result<i64, ConvertError> {
    let value = &config[key];
    value
        .as_i64()
        .or_else(|| value.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15).map(|f| f as i64))
        .ok_or_else(|| config_error(format!("`{key}` must be an integer, got {value}")))
}

/// The sizes the parameter shapes follow from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dims {
    /// `hidden_size`.
    pub hidden: usize,
    /// `intermediate_size`.
    pub intermediate: usize,
    /// `num_hidden_layers`.
    pub layers: usize,
    /// `num_attention_heads`.
    pub heads: usize,
    /// `num_key_value_heads`.
    pub kv_heads: usize,
    /// `head_dim`.
    pub head_dim: usize,
    /// `vocab_size`.
    pub vocab: usize,
    /// No `lm_head`: the embedding computes the logits.
    pub tie_word_embeddings: bool,
    /// Qwen3's `attention_bias`: biases on the fused QKV and on `o_proj`.
    pub attention_bias: bool,
    /// StableLM's `use_qkv_bias`: a bias on the fused QKV only.
    pub qkv_bias: bool,
    /// Rows of BERT's position table (`context_window_size`; 0 for a decoder).
    pub positions: usize,
    /// Rows of BERT's token-type table (`type_vocab_size`; 0 for a decoder).
    pub type_vocab: usize,
    /// Qwen3.5's Gated DeltaNet layers (`None` for other families).
    pub linear: Option<LinearDims>,
}

/// The sizes of Qwen3.5's Gated DeltaNet layers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinearDims {
    /// `linear_num_key_heads`.
    pub key_heads: usize,
    /// `linear_num_value_heads`.
    pub value_heads: usize,
    /// `linear_key_head_dim`.
    pub key_dim: usize,
    /// `linear_value_head_dim`.
    pub value_dim: usize,
    /// `linear_conv_kernel_dim`.
    pub conv_kernel: usize,
    /// `full_attention_interval`: layer `L` is full attention when `(L + 1) % it == 0`.
    pub full_attention_interval: usize,
}

impl Dims {
    /// Reads the sizes from a parsed `model_config` (Gemma 3's from its
    /// `text_config`, with the outer `vocab_size`).
    pub fn from_model_config(config: &Map<String, Value>) -> Result<Dims, ConvertError> {
        if let Some(Value::Object(text)) = config.get("text_config") {
            let mut flat = text.clone();
            flat.insert("vocab_size".into(), config["vocab_size"].clone());
            return Dims::from_model_config(&flat);
        }
        let size = |key: &str| -> Result<usize, ConvertError> {
            let v = int(config, key)?;
            usize::try_from(v)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| config_error(format!("`{key}` must be positive, got {v}")))
        };
        let flag = |key: &str| -> Result<bool, ConvertError> {
            match config.get(key) {
                None | Some(Value::Null) => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(other) => {
                    Err(config_error(format!("`{key}` must be true or false, got {other}")))
                }
            }
        };
        let is_encoder = config.contains_key("type_vocab_size");
        let encoder_size = |key: &str| if is_encoder { size(key) } else { Ok(0) };
        let heads = size("num_attention_heads")?;
        // An encoder's attention is multi-head, and so is GPT-NeoX's, whose
        // config has no `num_key_value_heads`: as many key/value heads as queries.
        let kv_heads = match is_encoder || !config.contains_key("num_key_value_heads") {
            true => heads,
            false => size("num_key_value_heads")?,
        };
        let linear = match config.contains_key("full_attention_interval") {
            true => Some(LinearDims {
                key_heads: size("linear_num_key_heads")?,
                value_heads: size("linear_num_value_heads")?,
                key_dim: size("linear_key_head_dim")?,
                value_dim: size("linear_value_head_dim")?,
                conv_kernel: size("linear_conv_kernel_dim")?,
                full_attention_interval: size("full_attention_interval")?,
            }),
            false => None,
        };
        Ok(Dims {
            hidden: size("hidden_size")?,
            intermediate: size("intermediate_size")?,
            layers: size("num_hidden_layers")?,
            heads,
            kv_heads,
            head_dim: size("head_dim")?,
            vocab: size("vocab_size")?,
            tie_word_embeddings: flag("tie_word_embeddings")?,
            attention_bias: flag("attention_bias")?,
            qkv_bias: flag("use_qkv_bias")?,
            positions: encoder_size("context_window_size")?,
            type_vocab: encoder_size("type_vocab_size")?,
            linear,
        })
    }
}

/// How a parameter is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The weight of a Linear or Embedding: group-quantized by q4 modes.
    Matrix,
    /// A norm weight or a bias: always cast to the model dtype.
    Vector,
    /// A Gemma or Qwen3.5 RMSNorm weight: stored as `1 + w` (MLC's loaders
    /// fold the `+1` of these families' norms into the weight), then cast
    /// like a vector.
    GemmaNorm,
    /// A bias stored as float32 whatever the model dtype (GPT-NeoX's MLP
    /// biases: its Linears compute in `ffn_out_dtype`, float32).
    F32Vector,
    /// GPT-NeoX's `query_key_value` weight (`Matrix`) or bias (`Vector`),
    /// whose rows Hugging Face interleaves per head (`[heads, 3, head_dim]`):
    /// reordered to `[q; k; v]` (`[3, heads, head_dim]`), as
    /// `gpt_neox_loader.py`'s `transform_qkv_layout` does, before it is stored.
    InterleavedQkv {
        /// `num_attention_heads`.
        heads: usize,
        /// A weight matrix (quantized like `Matrix`) rather than a bias.
        matrix: bool,
    },
}

/// One MLC parameter and the Hugging Face tensors it is made of, concatenated
/// along the first axis in this order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// The MLC name (`model.layers.0.self_attn.c_attn.weight`).
    pub name: String,
    /// Source tensors and the shape each must have.
    pub sources: Vec<(String, Vec<usize>)>,
    /// How it is stored.
    pub kind: Kind,
}

impl Param {
    /// The shape after concatenation.
    pub fn shape(&self) -> Vec<usize> {
        let mut shape = self.sources[0].1.clone();
        shape[0] = self.sources.iter().map(|(_, s)| s[0]).sum();
        shape
    }
}

/// Every parameter of `family` with sizes `d`.
pub fn params(family: Family, d: &Dims) -> Vec<Param> {
    if family == Family::Phi3 {
        return phi3_params(d);
    }
    if family == Family::Phi {
        return phi_params(d);
    }
    if family == Family::GptNeox {
        return gpt_neox_params(d);
    }
    let one = |name: String, shape: Vec<usize>, kind| Param {
        name: name.clone(),
        sources: vec![(name, shape)],
        kind,
    };
    if family == Family::Gemma3 {
        return gemma3_params(d);
    }
    if family == Family::Bert {
        return bert_params(d);
    }
    if let (Family::Qwen35 { .. }, Some(linear)) = (family, &d.linear) {
        return qwen35_params(d, linear);
    }
    let (h, q, kv) = (d.hidden, d.heads * d.head_dim, d.kv_heads * d.head_dim);
    let norm = match family {
        Family::Gemma | Family::Gemma2 => Kind::GemmaNorm,
        _ => Kind::Vector,
    };
    let mut out = vec![one("model.embed_tokens.weight".into(), vec![d.vocab, h], Kind::Matrix)];
    for layer in 0..d.layers {
        let p = format!("model.layers.{layer}");
        let attn = format!("{p}.self_attn");
        let mlp = format!("{p}.mlp");
        let qkv = format!("{attn}.{}", family.qkv_name());
        if family != Family::Olmo2 {
            out.push(one(format!("{p}.input_layernorm.weight"), vec![h], norm));
        }
        if family == Family::StableLm {
            out.push(one(format!("{p}.input_layernorm.bias"), vec![h], Kind::Vector));
        }
        out.push(Param {
            name: format!("{qkv}.weight"),
            sources: vec![
                (format!("{attn}.q_proj.weight"), vec![q, h]),
                (format!("{attn}.k_proj.weight"), vec![kv, h]),
                (format!("{attn}.v_proj.weight"), vec![kv, h]),
            ],
            kind: Kind::Matrix,
        });
        // Qwen2 always has a QKV bias, Qwen3 when `attention_bias` says so,
        // StableLM when `use_qkv_bias` does.
        let qkv_bias = family == Family::Qwen2
            || (family == Family::Qwen3 && d.attention_bias)
            || (family == Family::StableLm && d.qkv_bias);
        if qkv_bias {
            out.push(Param {
                name: format!("{qkv}.bias"),
                sources: vec![
                    (format!("{attn}.q_proj.bias"), vec![q]),
                    (format!("{attn}.k_proj.bias"), vec![kv]),
                    (format!("{attn}.v_proj.bias"), vec![kv]),
                ],
                kind: Kind::Vector,
            });
        }
        if family == Family::Qwen3 {
            out.push(one(format!("{attn}.q_norm.weight"), vec![d.head_dim], Kind::Vector));
            out.push(one(format!("{attn}.k_norm.weight"), vec![d.head_dim], Kind::Vector));
        }
        if family == Family::Olmo2 {
            out.push(one(format!("{attn}.q_norm.weight"), vec![q], Kind::Vector));
            out.push(one(format!("{attn}.k_norm.weight"), vec![kv], Kind::Vector));
        }
        out.push(one(format!("{attn}.o_proj.weight"), vec![h, q], Kind::Matrix));
        if family == Family::Qwen3 && d.attention_bias {
            out.push(one(format!("{attn}.o_proj.bias"), vec![h], Kind::Vector));
        }
        out.push(one(format!("{p}.post_attention_layernorm.weight"), vec![h], norm));
        if family == Family::StableLm {
            out.push(one(format!("{p}.post_attention_layernorm.bias"), vec![h], Kind::Vector));
        }
        if family == Family::Gemma2 {
            out.push(one(format!("{p}.pre_feedforward_layernorm.weight"), vec![h], norm));
        }
        if matches!(family, Family::Gemma2 | Family::Olmo2) {
            out.push(one(format!("{p}.post_feedforward_layernorm.weight"), vec![h], norm));
        }
        out.push(Param {
            name: format!("{mlp}.gate_up_proj.weight"),
            sources: vec![
                (format!("{mlp}.gate_proj.weight"), vec![d.intermediate, h]),
                (format!("{mlp}.up_proj.weight"), vec![d.intermediate, h]),
            ],
            kind: Kind::Matrix,
        });
        out.push(one(format!("{mlp}.down_proj.weight"), vec![h, d.intermediate], Kind::Matrix));
    }
    out.push(one("model.norm.weight".into(), vec![h], norm));
    if family == Family::StableLm {
        out.push(one("model.norm.bias".into(), vec![h], Kind::Vector));
    }
    // Gemma always reuses the embedding; Mistral's and StableLM's configs have
    // no tie flag and always build an `lm_head`.
    let tied = match family {
        Family::Gemma | Family::Gemma2 => true,
        Family::Mistral | Family::StableLm => false,
        _ => d.tie_word_embeddings,
    };
    if !tied {
        out.push(one("lm_head.weight".into(), vec![d.vocab, h], Kind::Matrix));
    }
    out
}

/// Gemma 3's parameters (`gemma3_loader.py`): the Hugging Face names under
/// `language_model.`, q, k and v unfused, `gate_up_proj` fused, every norm
/// (the q/k norms included) stored as `1 + w`, the embedding always tied.
fn gemma3_params(d: &Dims) -> Vec<Param> {
    let (h, q, kv) = (d.hidden, d.heads * d.head_dim, d.kv_heads * d.head_dim);
    let one = |hf: String, shape: Vec<usize>, kind| Param {
        name: format!("language_model.{hf}"),
        sources: vec![(hf, shape)],
        kind,
    };
    let mut out = vec![one("model.embed_tokens.weight".into(), vec![d.vocab, h], Kind::Matrix)];
    for layer in 0..d.layers {
        let p = format!("model.layers.{layer}");
        let (attn, mlp) = (format!("{p}.self_attn"), format!("{p}.mlp"));
        out.push(one(format!("{p}.input_layernorm.weight"), vec![h], Kind::GemmaNorm));
        out.extend([
            one(format!("{attn}.q_proj.weight"), vec![q, h], Kind::Matrix),
            one(format!("{attn}.k_proj.weight"), vec![kv, h], Kind::Matrix),
            one(format!("{attn}.v_proj.weight"), vec![kv, h], Kind::Matrix),
            one(format!("{attn}.o_proj.weight"), vec![h, q], Kind::Matrix),
            one(format!("{attn}.q_norm.weight"), vec![d.head_dim], Kind::GemmaNorm),
            one(format!("{attn}.k_norm.weight"), vec![d.head_dim], Kind::GemmaNorm),
        ]);
        for norm in ["post_attention", "pre_feedforward", "post_feedforward"] {
            out.push(one(format!("{p}.{norm}_layernorm.weight"), vec![h], Kind::GemmaNorm));
        }
        out.push(Param {
            name: format!("language_model.{mlp}.gate_up_proj.weight"),
            sources: vec![
                (format!("{mlp}.gate_proj.weight"), vec![d.intermediate, h]),
                (format!("{mlp}.up_proj.weight"), vec![d.intermediate, h]),
            ],
            kind: Kind::Matrix,
        });
        out.push(one(format!("{mlp}.down_proj.weight"), vec![h, d.intermediate], Kind::Matrix));
    }
    out.push(one("model.norm.weight".into(), vec![h], Kind::GemmaNorm));
    out
}

/// Qwen3.5's parameters (`qwen35_loader.py`): MLC's names under `model.`
/// made of Hugging Face tensors under `model.language_model.` (the
/// vision-language checkpoint; [`qwen35_text_layout`] reads a text-only
/// one); q, k (each query head `[q | gate]`) and v fused into `c_attn`,
/// gate and up into `gate_up_proj`, the linear layers' tensors renamed only
/// (`conv1d.weight` → `conv1d_weight`), `A_log` and `dt_bias` kept in f32,
/// every norm but the gated `linear_attn.norm` stored as `1 + w`.
fn qwen35_params(d: &Dims, linear: &LinearDims) -> Vec<Param> {
    const HF: &str = "model.language_model";
    let (h, q, kv) = (d.hidden, d.heads * d.head_dim, d.kv_heads * d.head_dim);
    let one = |mlc: &str, shape: Vec<usize>, kind| Param {
        name: format!("model.{mlc}"),
        sources: vec![(format!("{HF}.{mlc}"), shape)],
        kind,
    };
    let channels = 2 * linear.key_heads * linear.key_dim + linear.value_heads * linear.value_dim;
    let value_width = linear.value_heads * linear.value_dim;
    let mut out = vec![one("embed_tokens.weight", vec![d.vocab, h], Kind::Matrix)];
    for layer in 0..d.layers {
        let p = format!("layers.{layer}");
        out.push(one(&format!("{p}.input_layernorm.weight"), vec![h], Kind::GemmaNorm));
        if (layer + 1) % linear.full_attention_interval == 0 {
            let attn = format!("{p}.self_attn");
            out.push(Param {
                name: format!("model.{attn}.c_attn.weight"),
                sources: vec![
                    (format!("{HF}.{attn}.q_proj.weight"), vec![2 * q, h]),
                    (format!("{HF}.{attn}.k_proj.weight"), vec![kv, h]),
                    (format!("{HF}.{attn}.v_proj.weight"), vec![kv, h]),
                ],
                kind: Kind::Matrix,
            });
            if d.attention_bias {
                out.push(Param {
                    name: format!("model.{attn}.c_attn.bias"),
                    sources: vec![
                        (format!("{HF}.{attn}.q_proj.bias"), vec![2 * q]),
                        (format!("{HF}.{attn}.k_proj.bias"), vec![kv]),
                        (format!("{HF}.{attn}.v_proj.bias"), vec![kv]),
                    ],
                    kind: Kind::Vector,
                });
            }
            out.push(one(&format!("{attn}.o_proj.weight"), vec![h, q], Kind::Matrix));
            if d.attention_bias {
                out.push(one(&format!("{attn}.o_proj.bias"), vec![h], Kind::Vector));
            }
            out.push(one(&format!("{attn}.q_norm.weight"), vec![d.head_dim], Kind::GemmaNorm));
            out.push(one(&format!("{attn}.k_norm.weight"), vec![d.head_dim], Kind::GemmaNorm));
        } else {
            let lin = format!("{p}.linear_attn");
            out.extend([
                one(&format!("{lin}.in_proj_qkv.weight"), vec![channels, h], Kind::Matrix),
                one(&format!("{lin}.in_proj_z.weight"), vec![value_width, h], Kind::Matrix),
                one(&format!("{lin}.in_proj_a.weight"), vec![linear.value_heads, h], Kind::Matrix),
                one(&format!("{lin}.in_proj_b.weight"), vec![linear.value_heads, h], Kind::Matrix),
                one(&format!("{lin}.out_proj.weight"), vec![h, value_width], Kind::Matrix),
                Param {
                    name: format!("model.{lin}.conv1d_weight"),
                    sources: vec![(
                        format!("{HF}.{lin}.conv1d.weight"),
                        vec![channels, 1, linear.conv_kernel],
                    )],
                    kind: Kind::Vector,
                },
                one(&format!("{lin}.A_log"), vec![linear.value_heads], Kind::F32Vector),
                one(&format!("{lin}.dt_bias"), vec![linear.value_heads], Kind::F32Vector),
                one(&format!("{lin}.norm.weight"), vec![linear.value_dim], Kind::Vector),
            ]);
        }
        out.push(one(&format!("{p}.post_attention_layernorm.weight"), vec![h], Kind::GemmaNorm));
        let mlp = format!("{p}.mlp");
        out.push(Param {
            name: format!("model.{mlp}.gate_up_proj.weight"),
            sources: vec![
                (format!("{HF}.{mlp}.gate_proj.weight"), vec![d.intermediate, h]),
                (format!("{HF}.{mlp}.up_proj.weight"), vec![d.intermediate, h]),
            ],
            kind: Kind::Matrix,
        });
        out.push(one(&format!("{mlp}.down_proj.weight"), vec![h, d.intermediate], Kind::Matrix));
    }
    out.push(one("norm.weight", vec![h], Kind::GemmaNorm));
    if !d.tie_word_embeddings {
        // `lm_head` sits outside `model.` in both checkpoints.
        out.push(Param {
            name: "lm_head.weight".into(),
            sources: vec![("lm_head.weight".into(), vec![d.vocab, h])],
            kind: Kind::Matrix,
        });
    }
    out
}

/// Reads Qwen3.5's parameters from a text-only checkpoint
/// (`Qwen3_5ForCausalLM` saves the backbone under `model.`, not
/// `model.language_model.`) when `source_names` has no tensor under
/// `model.language_model.`. MLC's loader reads only the vision-language
/// layout; the tensors are the same.
pub fn qwen35_text_layout(params: &mut [Param], source_names: &[String]) {
    const HF: &str = "model.language_model.";
    if source_names.iter().any(|name| name.starts_with(HF)) {
        return;
    }
    for (source, _) in params.iter_mut().flat_map(|param| &mut param.sources) {
        if let Some(rest) = source.strip_prefix(HF) {
            *source = format!("model.{rest}");
        }
    }
}

/// BERT's parameters (`bert_loader.py`, Hugging Face names without a prefix):
/// every name kept, except `attention.self.{query,key,value}`, fused into
/// `attention.self.qkv` (weight and bias); the pooler is not converted (MLC's
/// model has none). Nothing is tied.
fn bert_params(d: &Dims) -> Vec<Param> {
    let (h, i) = (d.hidden, d.intermediate);
    let one = |name: String, shape: Vec<usize>, kind| Param {
        name: name.clone(),
        sources: vec![(name, shape)],
        kind,
    };
    let layer_norm = |prefix: &str| {
        [
            one(format!("{prefix}.LayerNorm.weight"), vec![h], Kind::Vector),
            one(format!("{prefix}.LayerNorm.bias"), vec![h], Kind::Vector),
        ]
    };
    let linear = |name: String, rows: usize, cols: usize| {
        [
            one(format!("{name}.weight"), vec![rows, cols], Kind::Matrix),
            one(format!("{name}.bias"), vec![rows], Kind::Vector),
        ]
    };
    let mut out = vec![
        one("embeddings.word_embeddings.weight".into(), vec![d.vocab, h], Kind::Matrix),
        one("embeddings.position_embeddings.weight".into(), vec![d.positions, h], Kind::Matrix),
        one("embeddings.token_type_embeddings.weight".into(), vec![d.type_vocab, h], Kind::Matrix),
    ];
    out.extend(layer_norm("embeddings"));
    for layer in 0..d.layers {
        let p = format!("encoder.layer.{layer}");
        let attn = format!("{p}.attention.self");
        let fused = |suffix: &str, shape: Vec<usize>, kind| Param {
            name: format!("{attn}.qkv.{suffix}"),
            sources: ["query", "key", "value"]
                .map(|part| (format!("{attn}.{part}.{suffix}"), shape.clone()))
                .to_vec(),
            kind,
        };
        out.push(fused("weight", vec![h, h], Kind::Matrix));
        out.push(fused("bias", vec![h], Kind::Vector));
        out.extend(linear(format!("{p}.attention.output.dense"), h, h));
        out.extend(layer_norm(&format!("{p}.attention.output")));
        out.extend(linear(format!("{p}.intermediate.dense"), i, h));
        out.extend(linear(format!("{p}.output.dense"), h, i));
        out.extend(layer_norm(&format!("{p}.output")));
    }
    out
}

/// MLC parameter `mlc`, Hugging Face tensor `hf` renamed (Phi and Phi-3).
fn renamed(mlc: String, hf: String, shape: Vec<usize>, kind: Kind) -> Param {
    Param { name: mlc, sources: vec![(hf, shape)], kind }
}

/// Phi's and Phi-3's embedding, under MLC's `transformer.embd`.
fn phi_embedding(d: &Dims) -> Param {
    renamed(
        "transformer.embd.weight".into(),
        "model.embed_tokens.weight".into(),
        vec![d.vocab, d.hidden],
        Kind::Matrix,
    )
}

/// Phi's parameters (`phi_loader.py`'s `phi1_huggingface`): transformers'
/// `PhiForCausalLM` names renamed to MLC's modules, `q_proj`, `k_proj` and
/// `v_proj` fused into `mixer.Wqkv` (weight and bias), a bias on every
/// Linear and LayerNorm, never tied.
fn phi_params(d: &Dims) -> Vec<Param> {
    let (h, i, q, kv) = (d.hidden, d.intermediate, d.heads * d.head_dim, d.kv_heads * d.head_dim);
    // A Linear (or LayerNorm, `cols` 0) and its bias.
    let with_bias = |mlc: String, hf: String, rows: usize, cols: usize| {
        let (shape, kind) = match cols {
            0 => (vec![rows], Kind::Vector),
            _ => (vec![rows, cols], Kind::Matrix),
        };
        [
            renamed(format!("{mlc}.weight"), format!("{hf}.weight"), shape, kind),
            renamed(format!("{mlc}.bias"), format!("{hf}.bias"), vec![rows], Kind::Vector),
        ]
    };
    let mut out = vec![phi_embedding(d)];
    for layer in 0..d.layers {
        let (mlc, hf) = (format!("transformer.h.{layer}"), format!("model.layers.{layer}"));
        out.extend(with_bias(format!("{mlc}.ln"), format!("{hf}.input_layernorm"), h, 0));
        let fused = |suffix: &str, cols: Option<usize>, kind| Param {
            name: format!("{mlc}.mixer.Wqkv.{suffix}"),
            sources: [("q_proj", q), ("k_proj", kv), ("v_proj", kv)]
                .map(|(part, rows)| {
                    let shape = cols.map_or(vec![rows], |cols| vec![rows, cols]);
                    (format!("{hf}.self_attn.{part}.{suffix}"), shape)
                })
                .to_vec(),
            kind,
        };
        out.push(fused("weight", Some(h), Kind::Matrix));
        out.push(fused("bias", None, Kind::Vector));
        out.extend(with_bias(
            format!("{mlc}.mixer.out_proj"),
            format!("{hf}.self_attn.dense"),
            h,
            q,
        ));
        out.extend(with_bias(format!("{mlc}.mlp.fc1"), format!("{hf}.mlp.fc1"), i, h));
        out.extend(with_bias(format!("{mlc}.mlp.fc2"), format!("{hf}.mlp.fc2"), h, i));
    }
    out.extend(with_bias("lm_head.ln".into(), "model.final_layernorm".into(), h, 0));
    out.extend(with_bias("lm_head.linear".into(), "lm_head".into(), d.vocab, h));
    out
}

/// GPT-NeoX's parameters (`gpt_neox_loader.py`): Hugging Face's names kept,
/// `query_key_value`'s rows reordered from per-head `[q_h, k_h, v_h]` to
/// `[q; k; v]`, the MLP biases stored as float32, a bias on every Linear
/// but `embed_out` and on every LayerNorm, never tied.
fn gpt_neox_params(d: &Dims) -> Vec<Param> {
    let (h, i, heads) = (d.hidden, d.intermediate, d.heads);
    let one = |name: String, shape: Vec<usize>, kind| renamed(name.clone(), name, shape, kind);
    let layer_norm = |name: &str| {
        [
            one(format!("{name}.weight"), vec![h], Kind::Vector),
            one(format!("{name}.bias"), vec![h], Kind::Vector),
        ]
    };
    let linear = |name: String, rows: usize, cols: usize, bias: Kind| {
        [
            one(format!("{name}.weight"), vec![rows, cols], Kind::Matrix),
            one(format!("{name}.bias"), vec![rows], bias),
        ]
    };
    let mut out = vec![one("gpt_neox.embed_in.weight".into(), vec![d.vocab, h], Kind::Matrix)];
    for layer in 0..d.layers {
        let p = format!("gpt_neox.layers.{layer}");
        out.extend(layer_norm(&format!("{p}.input_layernorm")));
        out.extend(layer_norm(&format!("{p}.post_attention_layernorm")));
        let qkv = format!("{p}.attention.query_key_value");
        out.push(one(
            format!("{qkv}.weight"),
            vec![3 * h, h],
            Kind::InterleavedQkv { heads, matrix: true },
        ));
        out.push(one(
            format!("{qkv}.bias"),
            vec![3 * h],
            Kind::InterleavedQkv { heads, matrix: false },
        ));
        out.extend(linear(format!("{p}.attention.dense"), h, h, Kind::Vector));
        out.extend(linear(format!("{p}.mlp.dense_h_to_4h"), i, h, Kind::F32Vector));
        out.extend(linear(format!("{p}.mlp.dense_4h_to_h"), h, i, Kind::F32Vector));
    }
    out.extend(layer_norm("gpt_neox.final_layer_norm"));
    out.push(one("embed_out.weight".into(), vec![d.vocab, h], Kind::Matrix));
    out
}

/// `[heads, 3, head_dim]` rows (of any width) as `[3, heads, head_dim]`:
/// Hugging Face's per-head `[q_h, k_h, v_h]` as MLC's `[q; k; v]`.
pub fn deinterleave_qkv(values: &[f32], heads: usize) -> Vec<f32> {
    // One head's q (or k, or v) rows: `head_dim` rows of the matrix, or
    // `head_dim` values of the bias.
    let block = values.len() / (3 * heads);
    let mut out = Vec::with_capacity(values.len());
    for part in 0..3 {
        for head in 0..heads {
            let start = (3 * head + part) * block;
            out.extend_from_slice(&values[start..start + block]);
        }
    }
    out
}

/// Phi-3's parameters: the checkpoint already fuses `qkv_proj` and
/// `gate_up_proj`; MLC renames the modules (`phi3_loader.py`).
fn phi3_params(d: &Dims) -> Vec<Param> {
    let (h, q, kv) = (d.hidden, d.heads * d.head_dim, d.kv_heads * d.head_dim);
    let mut out = vec![phi_embedding(d)];
    for layer in 0..d.layers {
        let (mlc, hf) = (format!("transformer.h.{layer}"), format!("model.layers.{layer}"));
        out.extend([
            renamed(
                format!("{mlc}.ln.weight"),
                format!("{hf}.input_layernorm.weight"),
                vec![h],
                Kind::Vector,
            ),
            renamed(
                format!("{mlc}.mixer.qkv_proj.weight"),
                format!("{hf}.self_attn.qkv_proj.weight"),
                vec![q + 2 * kv, h],
                Kind::Matrix,
            ),
            renamed(
                format!("{mlc}.mixer.out_proj.weight"),
                format!("{hf}.self_attn.o_proj.weight"),
                vec![h, q],
                Kind::Matrix,
            ),
            renamed(
                format!("{mlc}.post_attention_layernorm.weight"),
                format!("{hf}.post_attention_layernorm.weight"),
                vec![h],
                Kind::Vector,
            ),
            renamed(
                format!("{mlc}.mlp.gate_up_proj.weight"),
                format!("{hf}.mlp.gate_up_proj.weight"),
                vec![2 * d.intermediate, h],
                Kind::Matrix,
            ),
            renamed(
                format!("{mlc}.mlp.down_proj.weight"),
                format!("{hf}.mlp.down_proj.weight"),
                vec![h, d.intermediate],
                Kind::Matrix,
            ),
        ]);
    }
    out.push(renamed(
        "transformer.norm.weight".into(),
        "model.norm.weight".into(),
        vec![h],
        Kind::Vector,
    ));
    if !d.tie_word_embeddings {
        out.push(renamed(
            "lm_head.weight".into(),
            "lm_head.weight".into(),
            vec![d.vocab, h],
            Kind::Matrix,
        ));
    }
    out
}

/// Whether MLC's loaders declare source tensor `name` unused (it is then
/// neither converted nor counted in `BitsPerParam`).
pub fn is_declared_unused(name: &str) -> bool {
    (name.starts_with("model.layers.") && name.ends_with(UNUSED_SUFFIX))
        || (name.starts_with("gpt_neox.layers.")
            && NEOX_UNUSED_SUFFIXES.iter().any(|suffix| name.ends_with(suffix)))
}

/// The order the official converter emits `params` in (`_loading_order` of
/// its Hugging Face loader): the first use of each source tensor, walking the
/// checkpoint's tensors in its order. Returns that order (indices into
/// `params`) and the source tensors no parameter uses; fails naming the
/// first parameter source the checkpoint lacks.
pub fn emission_order(
    params: &[Param],
    source_names: &[String],
) -> Result<(Vec<usize>, Vec<String>), ConvertError> {
    let mut user = std::collections::HashMap::new();
    for (i, param) in params.iter().enumerate() {
        for (source, _) in &param.sources {
            user.insert(source.as_str(), i);
        }
    }
    let mut seen = vec![false; params.len()];
    let mut order = Vec::with_capacity(params.len());
    let mut unused = Vec::new();
    let mut present = std::collections::HashSet::new();
    for name in source_names {
        present.insert(name.as_str());
        match user.get(name.as_str()) {
            Some(&i) if !seen[i] => {
                seen[i] = true;
                order.push(i);
            }
            Some(_) => {}
            None if is_declared_unused(name) => {}
            None => unused.push(name.clone()),
        }
    }
    for param in params {
        if let Some((missing, _)) =
            param.sources.iter().find(|(s, _)| !present.contains(s.as_str()))
        {
            return Err(ConvertError::Tensor {
                name: missing.clone(),
                message: format!("is missing from the checkpoint (needed for `{}`)", param.name),
            });
        }
    }
    Ok((order, unused))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(value: &Value) -> Vec<&str> {
        value.as_object().unwrap().keys().map(String::as_str).collect()
    }

    fn overrides() -> Overrides {
        Overrides { context_window_size: None, prefill_chunk_size: None, max_batch_size: 128 }
    }

    #[test]
    fn an_unknown_model_type_names_the_supported_ones() {
        let error =
            Family::from_hf_config(&json!({"model_type": "mamba"})).unwrap_err().to_string();
        assert!(error.contains("\"mamba\"") && error.contains("llama, qwen2, qwen3"), "{error}");
    }

    #[test]
    fn a_smaller_context_override_shrinks_the_prefill_chunk() {
        let hf = json!({"model_type": "qwen2", "hidden_act": "silu", "hidden_size": 64, "intermediate_size": 128,
            "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
            "rope_theta": 1e6, "vocab_size": 100, "max_position_embeddings": 32768});
        let config = Family::Qwen2.model_config(&hf, &overrides()).unwrap();
        assert_eq!(
            (config["context_window_size"].clone(), config["prefill_chunk_size"].clone()),
            (json!(32768), json!(8192))
        );
        let small = Overrides { context_window_size: Some(1024), ..overrides() };
        let config = Family::Qwen2.model_config(&hf, &small).unwrap();
        assert_eq!(
            (config["context_window_size"].clone(), config["prefill_chunk_size"].clone()),
            (json!(1024), json!(1024))
        );
        assert_eq!(config["head_dim"], json!(16));
        assert_eq!(config["max_batch_size"], json!(128));
    }

    #[test]
    fn llama_takes_rope_theta_as_its_base_and_drops_typeless_scaling() {
        let hf = json!({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
            "num_hidden_layers": 2, "rms_norm_eps": 1e-5, "vocab_size": 100, "rope_theta": 500000.0,
            "rope_scaling": {"type": "linear", "factor": 2.0}, "max_position_embeddings": 4096});
        let config = Family::Llama.model_config(&hf, &overrides()).unwrap();
        assert_eq!(config["position_embedding_base"], json!(500000.0));
        assert_eq!(config["rope_scaling"], Value::Null);
        assert_eq!(config["num_key_value_heads"], json!(4));
        let bad = json!({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
            "num_hidden_layers": 2, "rms_norm_eps": 1e-5, "vocab_size": 100, "rope_scaling": {"rope_type": "yarn"},
            "max_position_embeddings": 4096});
        assert!(matches!(
            Family::Llama.model_config(&bad, &overrides()),
            Err(ConvertError::Unsupported { .. })
        ));
    }

    #[test]
    fn a_mistral_sliding_window_makes_the_context_unbounded() {
        let hf = json!({"model_type": "mistral", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
            "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "vocab_size": 100,
            "rope_theta": 10000.0, "sliding_window": 4096, "max_position_embeddings": 32768});
        let config = Family::Mistral.model_config(&hf, &overrides()).unwrap();
        let windows = [
            "context_window_size",
            "sliding_window_size",
            "prefill_chunk_size",
            "attention_sink_size",
        ]
        .map(|k| config[k].clone());
        assert_eq!(windows, [json!(-1), json!(4096), json!(4096), json!(4)]);
        assert_eq!(config["head_dim"], json!(16));
        let no_window = json!({"sliding_window": null, "max_position_embeddings": 32768});
        let mut hf2 = hf.clone();
        hf2.as_object_mut().unwrap().extend(no_window.as_object().unwrap().clone());
        let config = Family::Mistral.model_config(&hf2, &overrides()).unwrap();
        assert_eq!(
            [config["context_window_size"].clone(), config["sliding_window_size"].clone()],
            [json!(32768), json!(-1)]
        );
    }

    #[test]
    fn ministral3_merges_its_text_config_moves_rope_theta_and_reads_the_vlm_names() {
        // Mistral3ForConditionalGeneration's config.json, the text model under `text_config`.
        let rope = json!({"rope_type": "yarn", "type": "yarn", "rope_theta": 1000000.0, "factor": 16.0,
            "original_max_position_embeddings": 16384, "beta_fast": 32.0, "beta_slow": 1.0,
            "mscale": 1.0, "mscale_all_dim": 1.0, "llama_4_scaling_beta": 0.1});
        let hf = json!({"architectures": ["Mistral3ForConditionalGeneration"], "model_type": "mistral3",
            "tie_word_embeddings": true, "dtype": "bfloat16", "vision_config": {"model_type": "pixtral"},
            "text_config": {"model_type": "ministral3", "hidden_size": 3072, "intermediate_size": 9216,
                "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "num_hidden_layers": 26,
                "rms_norm_eps": 1e-5, "vocab_size": 131072, "max_position_embeddings": 262144,
                "sliding_window": null, "tie_word_embeddings": false, "rope_parameters": rope}});
        let family = Family::from_hf_config(&hf).unwrap();
        assert_eq!((family, family.name()), (Family::Ministral3, "ministral3"));
        assert_eq!(family.default_conv_template(None), "ministral3");
        let config = family.model_config(&hf, &overrides()).unwrap();
        assert_eq!(config["position_embedding_base"], json!(1000000.0));
        let kept = config["rope_parameters"].as_object().unwrap();
        assert!(!kept.contains_key("rope_theta") && kept["rope_type"] == "yarn");
        // The top level's tie flag and dtype win over text_config's.
        assert_eq!(
            (config["tie_word_embeddings"].clone(), config["dtype"].clone()),
            (json!(true), json!("bfloat16"))
        );
        let windows = ["context_window_size", "sliding_window_size", "prefill_chunk_size"]
            .map(|k| config[k].clone());
        assert_eq!(windows, [json!(262144), json!(-1), json!(8192)]);
        let d = Dims::from_model_config(&config).unwrap();
        assert_eq!((d.heads, d.kv_heads, d.head_dim, d.layers), (32, 8, 128, 26));
        let mut params = params(family, &d);
        let mut transformers5 = params.clone();
        ministral3_vlm_layout(&mut params, &hf, &["language_model.model.norm.weight".into()]);
        let qkv =
            params.iter().find(|p| p.name == "model.layers.0.self_attn.qkv_proj.weight").unwrap();
        assert_eq!(qkv.sources[0].0, "language_model.model.layers.0.self_attn.q_proj.weight");
        assert_eq!(params[0].sources[0].0, "language_model.model.embed_tokens.weight");
        assert!(!params.iter().any(|p| p.name == "lm_head.weight"), "tied");
        // transformers 5 saves the backbone under `model.language_model.`.
        ministral3_vlm_layout(
            &mut transformers5,
            &hf,
            &["model.language_model.norm.weight".into()],
        );
        assert_eq!(transformers5[0].sources[0].0, "model.language_model.embed_tokens.weight");

        // The text-only checkpoint keeps the plain names; FP8 weights are refused for the BF16 release.
        let text = hf["text_config"].clone();
        let mut plain = params_of(Family::from_hf_config(&text).unwrap(), &text);
        ministral3_vlm_layout(&mut plain, &text, &[]);
        assert_eq!(plain[0].sources[0].0, "model.embed_tokens.weight");
        assert!(plain.iter().any(|p| p.name == "lm_head.weight"), "untied");
        let mut fp8 = hf.clone();
        fp8["quantization_config"] = json!({"quant_method": "fp8", "activation_scheme": "static"});
        let error = Family::Ministral3.model_config(&fp8, &overrides()).unwrap_err();
        assert!(error.to_string().contains("-BF16"), "{error}");
        let other = json!({"model_type": "mistral3", "text_config": {"model_type": "mistral"}});
        assert!(Family::from_hf_config(&other).is_err());
    }

    fn params_of(family: Family, hf: &Value) -> Vec<Param> {
        let config = family.model_config(hf, &overrides()).unwrap();
        params(family, &Dims::from_model_config(&config).unwrap())
    }

    #[test]
    fn phi3_renames_su_drops_typeless_scaling_and_rejects_other_kinds() {
        let base = json!({"model_type": "phi3", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
            "num_hidden_layers": 2, "num_key_value_heads": 4, "rms_norm_eps": 1e-5, "vocab_size": 100,
            "max_position_embeddings": 131072, "original_max_position_embeddings": 4096});
        let with = |scaling: Value| {
            let mut hf = base.clone();
            hf.as_object_mut().unwrap().insert("rope_scaling".into(), scaling);
            Family::Phi3.model_config(&hf, &overrides())
        };
        let config =
            with(json!({"type": "su", "short_factor": [1.0], "long_factor": [2.0]})).unwrap();
        let scaling = &config["rope_scaling"];
        assert_eq!(
            keys(scaling),
            [
                "type",
                "short_factor",
                "long_factor",
                "rope_type",
                "max_position_embeddings",
                "original_max_position_embeddings"
            ]
        );
        assert_eq!(
            [scaling["type"].clone(), scaling["rope_type"].clone()],
            [json!("longrope"), json!("longrope")]
        );
        assert_eq!(
            [config["context_window_size"].clone(), config["prefill_chunk_size"].clone()],
            [json!(131072), json!(8192)]
        );
        assert_eq!(config["position_embedding_base"], json!(10000));
        assert_eq!(with(json!({"factor": 2.0})).unwrap()["rope_scaling"], Value::Null);
        assert!(matches!(
            with(json!({"type": "linear", "factor": 2.0})),
            Err(ConvertError::Unsupported { .. })
        ));
    }

    #[test]
    fn gemma2_forces_the_context_to_the_sliding_window_and_needs_a_gelu() {
        let hf = json!({"model_type": "gemma2", "hidden_size": 96, "intermediate_size": 128, "attention_bias": false,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "num_hidden_layers": 2,
            "rms_norm_eps": 1e-6, "vocab_size": 100, "hidden_act": "gelu_pytorch_tanh", "max_position_embeddings": 8192,
            "sliding_window": 4096, "final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0, "query_pre_attn_scalar": 32});
        let config = Family::Gemma2.model_config(&hf, &overrides()).unwrap();
        assert_eq!(
            [config["context_window_size"].clone(), config["prefill_chunk_size"].clone()],
            [json!(4096), json!(4096)]
        );
        assert_eq!(config["hidden_activation"], json!("gelu_pytorch_tanh"));
        let mut silu = hf.clone();
        silu.as_object_mut().unwrap().insert("hidden_act".into(), json!("silu"));
        assert!(matches!(
            Family::Gemma2.model_config(&silu, &overrides()),
            Err(ConvertError::Unsupported { .. })
        ));
    }

    #[test]
    fn qwen3_5_reads_its_text_config_and_rope_parameters_as_qwen35config_does() {
        // The vision-language checkpoint's layout (Qwen3.5-0.8B): the text model's keys
        // under `text_config`, the rotation under its `rope_parameters`.
        let hf = json!({"architectures": ["Qwen3_5ForConditionalGeneration"], "model_type": "qwen3_5",
            "tie_word_embeddings": true, "vision_config": {"depth": 12},
            "text_config": {"model_type": "qwen3_5_text", "hidden_size": 1024, "intermediate_size": 3584,
                "num_hidden_layers": 24, "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 256,
                "linear_num_value_heads": 16, "max_position_embeddings": 262144, "vocab_size": 248320,
                "layer_types": ["linear_attention"],
                "rope_parameters": {"rope_type": "default", "rope_theta": 10000000, "partial_rotary_factor": 0.25,
                    "mrope_section": [11, 11, 10]}}});
        let family = Family::from_hf_config(&hf).unwrap();
        assert_eq!(family, Family::Qwen35 { text: false });
        let config = family.model_config(&hf, &overrides()).unwrap();
        assert_eq!(config["hidden_size"], json!(1024));
        assert_eq!(config["tie_word_embeddings"], json!(true));
        assert_eq!(config["rope_theta"], json!(10000000));
        assert_eq!(config["context_window_size"], json!(262144));
        assert_eq!(config["prefill_chunk_size"], json!(2048));
        assert!(!config.contains_key("text_config") && !config.contains_key("layer_types"));
        let d = Dims::from_model_config(&config).unwrap();
        let linear = d.linear.clone().unwrap();
        assert_eq!(
            (linear.key_heads, linear.value_heads, linear.full_attention_interval),
            (16, 16, 4)
        );
        let mut params = params(family, &d);
        let c_attn =
            params.iter().find(|p| p.name == "model.layers.3.self_attn.c_attn.weight").unwrap();
        assert_eq!(c_attn.shape(), [(2 * 8 + 2 + 2) * 256, 1024]);
        assert_eq!(c_attn.sources[0].0, "model.language_model.layers.3.self_attn.q_proj.weight");
        // A text-only checkpoint (`Qwen3_5ForCausalLM`) keeps the backbone under `model.`.
        qwen35_text_layout(&mut params, &["model.embed_tokens.weight".to_string()]);
        let conv =
            params.iter().find(|p| p.name == "model.layers.0.linear_attn.conv1d_weight").unwrap();
        assert_eq!(conv.sources[0].0, "model.layers.0.linear_attn.conv1d.weight");
        assert_eq!(conv.shape(), [2 * 16 * 128 + 16 * 128, 1, 4]);
        let uneven = json!({"model_type": "qwen3_5_text", "linear_num_key_heads": 3,
            "num_attention_heads": 8, "num_key_value_heads": 2, "max_position_embeddings": 64});
        let error = Family::Qwen35 { text: true }.model_config(&uneven, &overrides()).unwrap_err();
        assert!(error.to_string().contains("linear_num_key_heads"), "{error}");
    }

    #[test]
    fn gemma3_nests_its_text_config_and_sizes_the_context_from_the_window() {
        let hf = json!({"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 64,
            "intermediate_size": 96, "num_hidden_layers": 7, "num_attention_heads": 4, "num_key_value_heads": 2,
            "head_dim": 16, "rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh", "rope_theta": 1000000.0,
            "rope_local_base_freq": 10000.0, "sliding_window": 512, "sliding_window_pattern": 6,
            "max_position_embeddings": 32768, "query_pre_attn_scalar": 24, "torch_dtype": "bfloat16",
            "vocab_size": 300});
        let config = Family::Gemma3.model_config(&hf, &overrides()).unwrap();
        assert_eq!(
            keys(&json!(config)),
            [
                "text_config",
                "vocab_size",
                "tensor_parallel_shards",
                "max_batch_size",
                "context_window_size",
                "sliding_window_size",
                "prefill_chunk_size",
                "is_text_model"
            ]
        );
        let outer =
            ["vocab_size", "context_window_size", "sliding_window_size", "prefill_chunk_size"]
                .map(|k| config[k].clone());
        assert_eq!(outer, [json!(300), json!(8192), json!(512), json!(8192)]);
        let text = &config["text_config"];
        assert_eq!(
            keys(text),
            [
                "hidden_size",
                "intermediate_size",
                "num_hidden_layers",
                "attention_bias",
                "num_attention_heads",
                "num_key_value_heads",
                "head_dim",
                "rms_norm_eps",
                "hidden_activation",
                "position_embedding_base",
                "rope_scaling",
                "context_window_size",
                "prefill_chunk_size",
                "query_pre_attn_scalar",
                "sliding_window_size",
                "kwargs"
            ]
        );
        assert_eq!(text["position_embedding_base"], json!(1000000.0));
        assert_eq!(text["context_window_size"], json!(8192));
        assert_eq!(text["query_pre_attn_scalar"], json!(24));
        // What MLC does not read stays under kwargs; `rope_theta` was taken.
        assert_eq!(
            keys(&text["kwargs"]),
            [
                "architectures",
                "model_type",
                "rope_local_base_freq",
                "sliding_window",
                "sliding_window_pattern",
                "max_position_embeddings",
                "torch_dtype"
            ]
        );
        let dims = Dims::from_model_config(&config).unwrap();
        assert_eq!(
            (dims.layers, dims.heads, dims.kv_heads, dims.head_dim, dims.vocab),
            (7, 4, 2, 16, 300)
        );

        // A longer window raises the context; an override sets the outer one only.
        let mut wide = hf.clone();
        wide["sliding_window"] = json!(16384);
        let config = Family::Gemma3.model_config(&wide, &overrides()).unwrap();
        assert_eq!(config["context_window_size"], json!(16384));
        let small = Overrides { context_window_size: Some(4096), ..overrides() };
        let config = Family::Gemma3.model_config(&hf, &small).unwrap();
        assert_eq!(config["context_window_size"], json!(4096));
        assert_eq!(config["text_config"]["context_window_size"], json!(8192));

        let mut silu = hf.clone();
        silu["hidden_activation"] = json!("silu");
        assert!(matches!(
            Family::Gemma3.model_config(&silu, &overrides()),
            Err(ConvertError::Unsupported { .. })
        ));
        let multimodal = Family::from_hf_config(&json!({"model_type": "gemma3"})).unwrap_err();
        assert!(multimodal.to_string().contains("gemma3_text"), "{multimodal}");
    }

    #[test]
    fn gemma3_keeps_q_k_and_v_apart_under_language_model() {
        let d = Dims {
            hidden: 64,
            intermediate: 96,
            layers: 1,
            heads: 4,
            kv_heads: 2,
            head_dim: 16,
            vocab: 300,
            tie_word_embeddings: false,
            attention_bias: false,
            qkv_bias: false,
            positions: 0,
            type_vocab: 0,
            linear: None,
        };
        let params = params(Family::Gemma3, &d);
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        let layer = "language_model.model.layers.0";
        assert_eq!(
            names,
            [
                "language_model.model.embed_tokens.weight".to_string(),
                format!("{layer}.input_layernorm.weight"),
                format!("{layer}.self_attn.q_proj.weight"),
                format!("{layer}.self_attn.k_proj.weight"),
                format!("{layer}.self_attn.v_proj.weight"),
                format!("{layer}.self_attn.o_proj.weight"),
                format!("{layer}.self_attn.q_norm.weight"),
                format!("{layer}.self_attn.k_norm.weight"),
                format!("{layer}.post_attention_layernorm.weight"),
                format!("{layer}.pre_feedforward_layernorm.weight"),
                format!("{layer}.post_feedforward_layernorm.weight"),
                format!("{layer}.mlp.gate_up_proj.weight"),
                format!("{layer}.mlp.down_proj.weight"),
                "language_model.model.norm.weight".to_string(),
            ]
        );
        let norms = params.iter().filter(|p| p.kind == Kind::GemmaNorm).count();
        assert_eq!(norms, 7, "four layer norms, q/k norms and the final norm store 1 + w");
        assert_eq!(
            params[2].sources,
            [("model.layers.0.self_attn.q_proj.weight".into(), vec![64, 64])]
        );
    }

    #[test]
    fn stablelm_refuses_the_layers_mlc_does_not_build() {
        let hf = json!({"model_type": "stablelm", "vocab_size": 100, "hidden_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 4,
            "layer_norm_eps": 1e-5, "partial_rotary_factor": 0.25, "rope_theta": 10000,
            "intermediate_size": 128, "max_position_embeddings": 512});
        let config = Family::StableLm.model_config(&hf, &overrides()).unwrap();
        assert_eq!(
            (config["head_dim"].clone(), config["prefill_chunk_size"].clone()),
            (json!(16), json!(512))
        );
        for key in ["qk_layernorm", "use_parallel_residual"] {
            let mut with = hf.clone();
            with[key] = json!(true);
            let error = Family::StableLm.model_config(&with, &overrides()).unwrap_err();
            assert!(error.to_string().contains(key), "{error}");
        }
    }

    #[test]
    fn phi_refuses_the_remote_code_format_and_q_k_layer_norms() {
        for old in ["phi-msft", "mixformer-sequential"] {
            let error = Family::from_hf_config(&json!({"model_type": old})).unwrap_err();
            assert!(error.to_string().contains(old), "{error}");
            assert!(error.to_string().contains("\"phi\""), "{error}");
        }
        let hf = json!({"model_type": "phi", "vocab_size": 100, "hidden_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": null,
            "max_position_embeddings": 512, "qk_layernorm": false});
        let config = Family::Phi.model_config(&hf, &overrides()).unwrap();
        assert_eq!(
            (config["intermediate_size"].clone(), config["num_key_value_heads"].clone()),
            (json!(256), json!(4))
        );
        let mut with = hf.clone();
        with["qk_layernorm"] = json!(true);
        let error = Family::Phi.model_config(&with, &overrides()).unwrap_err();
        assert!(error.to_string().contains("qk_layernorm"), "{error}");
    }

    #[test]
    fn gpt_neox_follows_its_config_class_and_refuses_what_mlc_cannot_load() {
        // RedPajama-INCITE-Chat-3B-v1's config.json (MLC's `redpajama_3b_v1` preset).
        let hf = json!({"model_type": "gpt_neox", "hidden_size": 2560, "intermediate_size": 10240,
            "num_attention_heads": 32, "num_hidden_layers": 32, "layer_norm_eps": 1e-5,
            "vocab_size": 50432, "rotary_pct": 1.0, "rotary_emb_base": 10000,
            "max_position_embeddings": 2048, "use_parallel_residual": false,
            "tie_word_embeddings": false, "hidden_act": "gelu"});
        let config = Family::GptNeox.model_config(&hf, &overrides()).unwrap();
        assert_eq!(
            (
                &config["head_dim"],
                &config["position_embedding_base"],
                &config["prefill_chunk_size"]
            ),
            (&json!(80), &json!(10000), &json!(2048))
        );
        let dims = Dims::from_model_config(&config).unwrap();
        assert_eq!((dims.kv_heads, dims.tie_word_embeddings), (32, false));
        let mut without = hf.clone();
        without.as_object_mut().unwrap().remove("rotary_pct");
        let error = Family::GptNeox.model_config(&without, &overrides()).unwrap_err();
        assert!(error.to_string().contains("rotary_pct"), "{error}");
        let mut unbiased = hf.clone();
        unbiased["attention_bias"] = json!(false);
        let error = Family::GptNeox.model_config(&unbiased, &overrides()).unwrap_err();
        assert!(error.to_string().contains("attention_bias"), "{error}");
        for (family, model_type) in [(Family::GptNeox, "gpt_neox"), (Family::Bert, "bert")] {
            let mut uneven = hf.clone();
            uneven["model_type"] = json!(model_type);
            uneven["head_dim"] = json!(64);
            let error = family.model_config(&uneven, &overrides()).unwrap_err();
            assert!(error.to_string().contains("64 × 32 ≠ 2560"), "{model_type}: {error}");
        }
        // Two heads of two values: [q0 k0 v0 q1 k1 v1] → [q0 q1 k0 k1 v0 v1].
        let interleaved = [0., 1., 10., 11., 20., 21., 2., 3., 12., 13., 22., 23.];
        let ordered = deinterleave_qkv(&interleaved, 2);
        assert_eq!(ordered, [0., 1., 2., 3., 10., 11., 12., 13., 20., 21., 22., 23.]);
    }

    #[test]
    fn the_default_template_follows_the_tokenizer() {
        assert_eq!(Family::Qwen2.default_conv_template(None), "qwen2");
        assert_eq!(Family::Qwen3.default_conv_template(Some("{}")), "qwen3");
        assert_eq!(
            Family::Llama.default_conv_template(Some(r#"{"content": "<|im_start|>"}"#)),
            "chatml"
        );
        assert_eq!(
            Family::Llama.default_conv_template(Some(r#"{"content": "<|start_header_id|>"}"#)),
            "llama-3"
        );
        assert_eq!(Family::Llama.default_conv_template(None), "llama-3");
        assert_eq!(Family::Llama.default_conv_template(Some(r#"{"content": "<s>"}"#)), "llama-2");
    }

    #[test]
    fn a_missing_source_tensor_is_named() {
        let d = Dims {
            hidden: 32,
            intermediate: 64,
            layers: 1,
            heads: 2,
            kv_heads: 1,
            head_dim: 16,
            vocab: 10,
            tie_word_embeddings: true,
            attention_bias: false,
            qkv_bias: false,
            positions: 0,
            type_vocab: 0,
            linear: None,
        };
        let params = params(Family::Llama, &d);
        let names: Vec<String> = params
            .iter()
            .flat_map(|p| p.sources.iter().map(|(s, _)| s.clone()))
            .filter(|s| !s.contains("v_proj"))
            .collect();
        let error = emission_order(&params, &names).unwrap_err().to_string();
        assert!(
            error.contains("model.layers.0.self_attn.v_proj.weight") && error.contains("missing"),
            "{error}"
        );
    }

    #[test]
    fn bert_follows_bert_config_and_fuses_q_k_v_with_their_biases() {
        let hf = json!({
            "model_type": "bert", "vocab_size": 100, "hidden_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 4, "intermediate_size": -1, "hidden_act": "gelu",
            "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "type_vocab_size": 2
        });
        let family = Family::from_hf_config(&hf).unwrap();
        let config = family.model_config(&hf, &overrides()).unwrap();
        assert_eq!(config["intermediate_size"], 256);
        assert_eq!(config["context_window_size"], 512);
        assert_eq!(config["prefill_chunk_size"], 512);
        assert_eq!(config["head_dim"], 16);
        assert!(!config.contains_key("max_position_embeddings"));
        let dims = Dims::from_model_config(&config).unwrap();
        let params = params(family, &dims);
        let qkv = params.iter().find(|p| p.name == "encoder.layer.0.attention.self.qkv.bias");
        let sources: Vec<&str> = qkv.unwrap().sources.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            sources,
            ["query", "key", "value"].map(|p| format!("encoder.layer.0.attention.self.{p}.bias"))
        );
        let position = params.iter().find(|p| p.name == "embeddings.position_embeddings.weight");
        assert_eq!(position.unwrap().shape(), vec![512, 64]);
        assert!(params.iter().all(|p| !p.name.starts_with("pooler.")));
        // Three embedding tables and their LayerNorm (two), then twelve per layer.
        assert_eq!(params.len(), 5 + 12);
    }
}
