//! The `conv_template` object of `mlc-chat-config.json` (docs/mlc-format.md,
//! "Conversation template").

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// A conversation template: how messages are rendered into the prompt.
///
/// Missing fields take the defaults of MLC's python `Conversation` class.
/// Configs written before March 2024 give the template as a bare string naming
/// a built-in template; such a config parses to a template whose
/// [`name_only`](ConvTemplate::name_only) flag is set, with only `name` filled
/// in, so callers can map the name to a template of their own or reject it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct ConvTemplate {
    /// Informational name (`qwen2`, `chatml`, `llama-3`, ...).
    pub name: Option<String>,
    /// The system block; `{system_message}` is replaced by the system message.
    pub system_template: String,
    /// The default system message.
    pub system_message: String,
    /// Token ids (not text) put before the first prompt, e.g. BOS.
    pub system_prefix_token_ids: Option<Vec<u32>>,
    /// When false and the system prompt is not empty, the first message is
    /// rendered without its role prefix.
    pub add_role_after_system_message: bool,
    /// Role display strings, by role (`user`, `assistant`, `tool`).
    pub roles: BTreeMap<String, String>,
    /// Wrappers of message content, by role (`{user_message}` etc. is replaced).
    pub role_templates: BTreeMap<String, String>,
    /// Separators after messages (one or two entries).
    pub seps: Vec<String>,
    /// Between role and content; WebLLM uses `": "` when absent.
    pub role_content_sep: Option<String>,
    /// Between role and the open reply; WebLLM uses `": "` when absent.
    pub role_empty_sep: Option<String>,
    /// Stop strings, matched on decoded text.
    pub stop_str: Vec<String>,
    /// Stop tokens.
    pub stop_token_ids: Vec<u32>,
    /// Drop reasoning (`...</think>`) from earlier assistant turns (MLC only).
    pub strip_reasoning_in_history: bool,
    /// Tool/function JSON inserted at `{function_string}`.
    pub function_string: String,
    /// Whether function calling is on.
    pub use_function_calling: bool,
    /// Set when the config named a built-in template with the legacy string
    /// form: every field but `name` then holds its default.
    #[serde(skip)]
    pub name_only: bool,
    /// Fields this crate does not interpret (e.g. `messages`), kept as found.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for ConvTemplate {
    fn default() -> ConvTemplate {
        let role_templates = [
            ("user", "{user_message}"),
            ("assistant", "{assistant_message}"),
            ("tool", "{tool_message}"),
        ];
        ConvTemplate {
            name: None,
            system_template: "{system_message}".to_string(),
            system_message: String::new(),
            system_prefix_token_ids: None,
            add_role_after_system_message: true,
            roles: BTreeMap::new(),
            role_templates: role_templates
                .into_iter()
                .map(|(role, text)| (role.to_string(), text.to_string()))
                .collect(),
            seps: Vec::new(),
            role_content_sep: None,
            role_empty_sep: None,
            stop_str: Vec::new(),
            stop_token_ids: Vec::new(),
            strip_reasoning_in_history: false,
            function_string: String::new(),
            use_function_calling: false,
            name_only: false,
            extra: serde_json::Map::new(),
        }
    }
}

/// Deserializes `conv_template`: an object, a legacy template name, or null.
pub(crate) fn deserialize_conv_template<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ConvTemplate>, D::Error> {
    struct TemplateVisitor;

    impl<'de> Visitor<'de> for TemplateVisitor {
        type Value = Option<ConvTemplate>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a conversation template object or the name of a built-in template")
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
            Ok(Some(ConvTemplate {
                name: Some(name.to_string()),
                name_only: true,
                ..ConvTemplate::default()
            }))
        }

        fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
            ConvTemplate::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }

    deserializer.deserialize_any(TemplateVisitor)
}
