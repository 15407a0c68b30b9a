//! `mlc-chat-config.json` (docs/mlc-format.md, "Chat config").
//!
//! The schema's `version` has stayed `"0.1.0"` through every change, so the
//! parse is lenient: unknown keys are kept in `extra`, missing keys take
//! MLC's defaults. Only the keys nothing can be done without are required.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, SeqAccess, Visitor};

use crate::conv_template::{ConvTemplate, deserialize_conv_template};
use crate::{LoadError, Quantization, json};

/// The config's file name inside an artifact.
pub const CONFIG_FILE: &str = "mlc-chat-config.json";

/// The parsed `mlc-chat-config.json`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ChatConfig {
    /// Architecture key (`llama`, `qwen2`, ...). Required.
    pub model_type: String,
    /// Quantization name (`q4f16_1`, ...). Required; see [`ChatConfig::quantization`].
    pub quantization: String,
    /// The architecture config as MLC rewrote it; read it with
    /// [`ChatConfig::model_config_get`].
    #[serde(default)]
    pub model_config: serde_json::Map<String, serde_json::Value>,
    /// Rows of the embedding, width of the logits. Required.
    pub vocab_size: usize,
    /// Tokens at or above this id are padding (absent in older configs).
    #[serde(default)]
    pub active_vocab_size: Option<usize>,
    /// Maximum tokens in the KV cache; -1 when absent or when a sliding window is used.
    #[serde(default = "minus_one")]
    pub context_window_size: i64,
    /// Sliding window length; -1 when disabled.
    #[serde(default = "minus_one")]
    pub sliding_window_size: i64,
    /// Attention sink tokens with a sliding window; -1 when none.
    #[serde(default = "minus_one")]
    pub attention_sink_size: i64,
    /// Maximum tokens per prefill call; -1 when absent.
    #[serde(default = "minus_one")]
    pub prefill_chunk_size: i64,
    /// Default sampling temperature (1.0).
    #[serde(default = "one")]
    pub temperature: f32,
    /// Default top-p (1.0).
    #[serde(default = "one")]
    pub top_p: f32,
    /// Default repetition penalty (1.0).
    #[serde(default = "one")]
    pub repetition_penalty: f32,
    /// Default presence penalty (0.0).
    #[serde(default)]
    pub presence_penalty: f32,
    /// Default frequency penalty (0.0).
    #[serde(default)]
    pub frequency_penalty: f32,
    /// Tokenizer files shipped with the artifact (may be empty).
    #[serde(default)]
    pub tokenizer_files: Vec<String>,
    /// How the tokenizer's token strings map to bytes (docs/mlc-format.md, "Tokenizer files").
    #[serde(default)]
    pub tokenizer_info: Option<TokenizerInfo>,
    /// The conversation template.
    #[serde(default, deserialize_with = "deserialize_conv_template")]
    pub conv_template: Option<ConvTemplate>,
    /// Padding token (bookkeeping only).
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    /// BOS token (not prepended automatically; see `system_prefix_token_ids`).
    #[serde(default)]
    pub bos_token_id: Option<i64>,
    /// EOS token(s), from an int or a list; empty when absent. Stopping uses
    /// the template's `stop_token_ids`, not this.
    #[serde(default, deserialize_with = "deserialize_token_ids")]
    pub eos_token_id: Vec<i64>,
    /// Top-level keys this crate does not interpret, kept as found.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `tokenizer_info`: detected properties of the tokenizer (docs/mlc-format.md,
/// "Tokenizer files").
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct TokenizerInfo {
    /// `byte_level`, `byte_fallback` (the default) or `raw`.
    pub token_postproc_method: String,
    /// Whether the normalizer prepends `▁` when encoding.
    pub prepend_space_in_encode: bool,
    /// Whether the decoder strips one leading space.
    pub strip_space_in_decode: bool,
}

impl Default for TokenizerInfo {
    fn default() -> TokenizerInfo {
        TokenizerInfo {
            token_postproc_method: "byte_fallback".to_string(),
            prepend_space_in_encode: false,
            strip_space_in_decode: false,
        }
    }
}

impl ChatConfig {
    /// Parses the text of an `mlc-chat-config.json`.
    pub fn from_json(text: &str) -> Result<ChatConfig, LoadError> {
        ChatConfig::parse(text, CONFIG_FILE)
    }

    /// Parses config text read from `file`, naming it in errors.
    pub(crate) fn parse(text: &str, file: &str) -> Result<ChatConfig, LoadError> {
        json::parse(text).map_err(|message| LoadError::Config { file: file.to_string(), message })
    }

    /// The quantization, if this loader supports it.
    pub fn quantization(&self) -> Result<Quantization, LoadError> {
        Quantization::parse(&self.quantization)
    }

    /// Reads `model_config[key]` as a `T`. Absent and `null` read as `None`;
    /// a value of another type is an error naming the key.
    pub fn model_config_get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, LoadError> {
        match self.model_config.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(value) => T::deserialize(value).map(Some).map_err(|error| LoadError::Config {
                file: CONFIG_FILE.to_string(),
                message: format!("`model_config.{key}`: {error}"),
            }),
        }
    }
}

fn minus_one() -> i64 {
    -1
}

fn one() -> f32 {
    1.0
}

/// Deserializes a token id field that may be a single int, a list, or null.
fn deserialize_token_ids<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<i64>, D::Error> {
    struct IdsVisitor;

    impl<'de> Visitor<'de> for IdsVisitor {
        type Value = Vec<i64>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a token id or a list of token ids")
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_i64<E: de::Error>(self, id: i64) -> Result<Self::Value, E> {
            Ok(vec![id])
        }

        fn visit_u64<E: de::Error>(self, id: u64) -> Result<Self::Value, E> {
            i64::try_from(id)
                .map(|id| vec![id])
                .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(id), &self))
        }

        fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<Self::Value, S::Error> {
            Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))
        }
    }

    deserializer.deserialize_any(IdsVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY_QWEN2: &str = include_str!("../tests/fixtures/tiny-qwen2.mlc-chat-config.json");
    const SMOLLM2: &str = include_str!("../tests/fixtures/smollm2-135m.mlc-chat-config.json");
    const QWEN25: &str = include_str!("../tests/fixtures/qwen2.5-0.5b.mlc-chat-config.json");

    const MINIMAL: &str = r#"{"model_type": "llama", "quantization": "q4f16_1", "vocab_size": 32}"#;

    #[test]
    fn parses_the_conformance_config() {
        let config = ChatConfig::from_json(TINY_QWEN2).unwrap();
        assert_eq!(config.model_type, "qwen2");
        assert_eq!(config.quantization().unwrap(), Quantization::Q4F16_1);
        assert_eq!(config.vocab_size, 151936);
        assert_eq!(config.active_vocab_size, Some(151936));
        assert_eq!(
            (config.context_window_size, config.sliding_window_size, config.prefill_chunk_size),
            (4096, -1, 4096)
        );
        assert_eq!(config.eos_token_id, [151645]);
        assert_eq!(config.bos_token_id, Some(151643));
        assert!(config.tokenizer_files.is_empty());
        assert_eq!(config.tokenizer_info.as_ref().unwrap().token_postproc_method, "byte_fallback");
        let template = config.conv_template.as_ref().unwrap();
        assert_eq!(template.name.as_deref(), Some("qwen2"));
        assert_eq!(template.stop_token_ids, [151643, 151645]);
        assert_eq!(template.seps, ["<|im_end|>\n"]);
        assert_eq!(template.role_content_sep.as_deref(), Some("\n"));
        assert_eq!(template.roles["assistant"], "<|im_start|>assistant");
        assert!(!template.name_only);
        // Keys the structs do not model are kept, in file order.
        let extra: Vec<&str> = config.extra.keys().map(String::as_str).collect();
        assert_eq!(
            extra,
            [
                "version",
                "tensor_parallel_shards",
                "pipeline_parallel_stages",
                "model_task",
                "embedding_metadata"
            ]
        );
        assert_eq!(template.extra["messages"], serde_json::json!([]));
        assert_eq!(config.model_config_get::<usize>("head_dim").unwrap(), Some(16));
        assert_eq!(config.model_config_get::<f64>("rope_theta").unwrap(), Some(1e6));
    }

    #[test]
    fn parses_an_eos_list_and_generation_defaults() {
        let config = ChatConfig::from_json(QWEN25).unwrap();
        assert_eq!(config.eos_token_id, [151645, 151643]);
        assert_eq!((config.temperature, config.top_p, config.repetition_penalty), (0.7, 0.8, 1.1));
        assert_eq!(
            config.tokenizer_files,
            ["tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"]
        );
        // This config predates both fields.
        assert_eq!(config.active_vocab_size, None);
        assert!(!config.conv_template.unwrap().strip_reasoning_in_history);

        let smollm = ChatConfig::from_json(SMOLLM2).unwrap();
        assert_eq!(smollm.model_type, "llama");
        assert_eq!(
            smollm.model_config_get::<f64>("position_embedding_base").unwrap(),
            Some(100000.0)
        );
        assert_eq!(smollm.model_config_get::<serde_json::Value>("rope_scaling").unwrap(), None);
        assert_eq!(smollm.tokenizer_info.unwrap().token_postproc_method, "byte_level");
    }

    #[test]
    fn missing_fields_take_defaults() {
        let config = ChatConfig::from_json(MINIMAL).unwrap();
        assert!(config.model_config.is_empty());
        assert_eq!(config.active_vocab_size, None);
        assert_eq!(
            (
                config.context_window_size,
                config.sliding_window_size,
                config.attention_sink_size,
                config.prefill_chunk_size
            ),
            (-1, -1, -1, -1)
        );
        assert_eq!((config.temperature, config.top_p, config.repetition_penalty), (1.0, 1.0, 1.0));
        assert_eq!((config.presence_penalty, config.frequency_penalty), (0.0, 0.0));
        assert!(config.tokenizer_files.is_empty() && config.eos_token_id.is_empty());
        assert!(config.tokenizer_info.is_none() && config.conv_template.is_none());
        assert_eq!((config.pad_token_id, config.bos_token_id), (None, None));
        assert!(config.extra.is_empty());
        assert_eq!(config.model_config_get::<usize>("hidden_size").unwrap(), None);

        let partial = r#"{"model_type": "llama", "quantization": "q0f16", "vocab_size": 32,
            "tokenizer_info": {}, "conv_template": {"roles": {"user": "U"}, "seps": ["\n"]}, "eos_token_id": null}"#;
        let config = ChatConfig::from_json(partial).unwrap();
        assert_eq!(config.tokenizer_info, Some(TokenizerInfo::default()));
        let template = config.conv_template.unwrap();
        assert_eq!(template.system_template, "{system_message}");
        assert!(template.add_role_after_system_message);
        assert_eq!(template.role_templates["tool"], "{tool_message}");
        assert_eq!((template.role_content_sep, template.system_prefix_token_ids), (None, None));
        assert!(config.eos_token_id.is_empty());
    }

    #[test]
    fn legacy_string_template_keeps_only_the_name() {
        let text = r#"{"model_type": "llama", "quantization": "q4f16_1", "vocab_size": 32, "conv_template": "llama-2", "conv_config": {}}"#;
        let template = ChatConfig::from_json(text).unwrap().conv_template.unwrap();
        assert!(template.name_only);
        assert_eq!(template.name.as_deref(), Some("llama-2"));
        assert_eq!(
            template,
            ConvTemplate {
                name: Some("llama-2".into()),
                name_only: true,
                ..ConvTemplate::default()
            }
        );
    }

    #[test]
    fn errors_name_the_file_the_field_and_the_line() {
        let error = ChatConfig::from_json("{\"model_type\": \"llama\",\n \"vocab_size\": \"big\"}")
            .unwrap_err();
        let LoadError::Config { file, message } = &error else { panic!("{error:?}") };
        assert_eq!(file, CONFIG_FILE);
        assert!(message.starts_with("`vocab_size`: invalid type: string \"big\""), "{message}");
        assert!(message.contains("line 2"), "{message}");

        let error =
            ChatConfig::parse("{\"model_type\": ", "/models/x/mlc-chat-config.json").unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("/models/x/mlc-chat-config.json: ")
                && text.contains("EOF while parsing"),
            "{text}"
        );

        let error =
            ChatConfig::from_json(r#"{"quantization": "q4f16_1", "vocab_size": 3}"#).unwrap_err();
        assert!(error.to_string().contains("missing field `model_type`"), "{error}");

        let wrong_seps = MINIMAL.replace('}', r#", "conv_template": {"seps": "x"}}"#);
        let error = ChatConfig::from_json(&wrong_seps).unwrap_err();
        assert!(error.to_string().contains("`conv_template.seps`: invalid type"), "{error}");

        let error =
            ChatConfig::from_json(&MINIMAL.replace('}', r#", "eos_token_id": "2"}"#)).unwrap_err();
        assert!(error.to_string().contains("`eos_token_id`"), "{error}");
    }

    #[test]
    fn model_config_type_errors_name_the_key() {
        let config = ChatConfig::from_json(TINY_QWEN2).unwrap();
        let error = config.model_config_get::<u32>("hidden_act").unwrap_err();
        assert!(
            error.to_string().contains("`model_config.hidden_act`: invalid type: string \"silu\""),
            "{error}"
        );
    }

    #[test]
    fn unsupported_quantization_is_reported_on_access() {
        let config = ChatConfig::from_json(&MINIMAL.replace("q4f16_1", "q3f16_1")).unwrap();
        let error = config.quantization().unwrap_err();
        assert!(error.to_string().contains("`q3f16_1`"), "{error}");
    }
}
