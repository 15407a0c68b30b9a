//! OpenAI-style request and response types in WebLLM 0.2.86's shape
//! (docs/chat.md, "WebLLM's request contract"), shared by the native server and the JS API.
//!
//! Numbers WebLLM checks with JS comparisons (penalties, `top_p`, `seed`, ...)
//! are kept as `f64` so that validation sees exactly what the client sent.
//! Response JSON follows WebLLM key for key: e.g. a delta chunk's choice has
//! `logprobs: null` while the final chunk's choice has no `logprobs` key.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::js;

/// `messages[i].content`: a string or content parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts (text and images).
    Parts(Vec<ContentPart>),
}

/// One element of a content-part array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// `{type: "text", text}`.
    Text {
        /// The text.
        text: String,
    },
    /// `{type: "image_url", image_url: {url, detail?}}`.
    ImageUrl {
        /// The image.
        image_url: ImageUrl,
    },
}

/// The `image_url` object of an image part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUrl {
    /// `data:image...` or `http...`.
    pub url: String,
    /// Unsupported by WebLLM; kept to compare and report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A request message. `role` stays a string so that an unknown role is
/// WebLLM's `UnsupportedRoleError`, not a parse error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The content; `null`/absent is allowed by the type only for assistants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    /// Replaces the template's role string (user and assistant messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls of an assistant message (kept, not rendered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The call a tool message answers (ignored by WebLLM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A message of `role` with text content and nothing else.
    pub fn new(role: &str, text: &str) -> ChatMessage {
        ChatMessage {
            role: role.to_string(),
            content: Some(MessageContent::Text(text.to_string())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
        }
    }
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// A single stop string.
    One(String),
    /// Several stop strings.
    Many(Vec<String>),
}

/// `logit_bias`: token-id strings to biases, in the order the client sent them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogitBias(pub Vec<(String, f64)>);

impl LogitBias {
    /// The entries in the order JS `for...in` visits them (what decides which
    /// invalid entry WebLLM reports first).
    pub fn js_order(&self) -> Vec<(&str, f64)> {
        js::property_order(&self.0, |(key, _)| key)
            .into_iter()
            .map(|(key, bias)| (key.as_str(), *bias))
            .collect()
    }

    /// `(token id, bias)` pairs with the keys read by JS `parseInt`, as WebLLM
    /// applies them; keys that are not numbers are left out (validation rejects them).
    pub fn token_biases(&self) -> Vec<(i64, f64)> {
        self.js_order()
            .into_iter()
            .filter_map(|(key, bias)| js::parse_int(key).map(|id| (id, bias)))
            .collect()
    }
}

impl Serialize for LogitBias {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for LogitBias {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<LogitBias, D::Error> {
        struct OrderedMap;

        impl<'de> Visitor<'de> for OrderedMap {
            type Value = LogitBias;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of token ids to numbers")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<LogitBias, M::Error> {
                let mut entries: Vec<(String, f64)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, f64>()? {
                    // A repeated key keeps its first position and its last value, as in JS.
                    match entries.iter_mut().find(|(k, _)| *k == key) {
                        Some(entry) => entry.1 = value,
                        None => entries.push((key, value)),
                    }
                }
                Ok(LogitBias(entries))
            }
        }

        deserializer.deserialize_map(OrderedMap)
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` and no choices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
}

/// `response_format` (constrained decoding; validated here, applied by
/// `chat::response_format`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseFormat {
    /// `text`, `json_object`, `grammar`, OpenAI's `json_schema`, or
    /// `structural_tag` (refused); other values are accepted and leave decoding free.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// OpenAI's form, for type `json_schema`: `{name, schema, strict}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<JsonSchemaFormat>,
    /// JSON Schema, as a JSON string (WebLLM does not stringify objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    /// EBNF grammar text for type `grammar`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grammar: Option<String>,
    /// Structural tag (object or string) for type `structural_tag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structural_tag: Option<serde_json::Value>,
}

/// OpenAI's `response_format.json_schema`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JsonSchemaFormat {
    /// The schema's name (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the format is for (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON schema (an object; a JSON string is also read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    /// OpenAI's strict mode; the output always follows the schema here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// A tool the model may call (`tools[i]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    pub function: FunctionDefinition,
}

/// A callable function's description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDefinition {
    /// The function name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
}

/// `tool_choice`: `"none"`, `"auto"`, or a named function (kept, unused by WebLLM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `"none"` or `"auto"`.
    Mode(String),
    /// `{type: "function", function: {name}}`.
    Function {
        /// Always `function`.
        #[serde(rename = "type")]
        kind: String,
        /// The function to call.
        function: FunctionName,
    },
}

/// A function referred to by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionName {
    /// The function name.
    pub name: String,
}

/// A tool call in an assistant message or a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call id (WebLLM numbers them `"0"`, `"1"`, ...).
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function and its arguments.
    pub function: FunctionCall,
}

/// A function call: name and JSON-encoded arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The function name.
    pub name: String,
    /// The arguments as a JSON string.
    pub arguments: String,
}

/// A tool call in a streamed delta.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Position of the call.
    pub index: u32,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function and its arguments.
    pub function: FunctionCall,
}

/// WebLLM's `GenerationConfig`: the per-request sampling and stopping fields
/// shared by chat and text completions (docs/sampling.md, "Parameters"). Unset fields fall
/// back to the model's `mlc-chat-config.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationConfig {
    /// In [-2, 2].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// In [-2, 2].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Greater than 0 (WebLLM extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f64>,
    /// Greater than 0; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
    /// Added to the template's stop strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// In (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// At least 0; 0 is greedy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Token id strings to biases in [-100, 100].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<LogitBias>,
    /// Return log probabilities (only filled when `top_logprobs > 0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// 0..=5 alternatives per token; requires `logprobs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<i64>,
    /// Disable stop tokens and all stop strings, `stop` included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
}

/// `extra_body` of a chat request (WebLLM extensions).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatExtraBody {
    /// `false` inserts an empty `<think>` block after the assistant header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_thinking: Option<bool>,
    /// Adds `usage.extra.latencyBreakdown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_latency_breakdown: Option<bool>,
}

/// `chat.completions.create` request (docs/chat.md, "WebLLM's request
/// contract"). Unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    /// The conversation; the last message is from `user` or `tool`.
    pub messages: Vec<ChatMessage>,
    /// Stream chunks instead of one response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Only with `stream: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Number of choices (not above 1 when streaming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// RNG seed; must be an integer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<f64>,
    /// Selects among loaded models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Sampling and stopping.
    #[serde(flatten)]
    pub generation: GenerationConfig,
    /// Constrained decoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Tools (function-calling models only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Accepted and kept; WebLLM does not use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// WebLLM extensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_body: Option<ChatExtraBody>,
}

/// `finish_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop token or stop string.
    Stop,
    /// `max_tokens` or the context window.
    Length,
    /// A function-calling reply.
    ToolCalls,
    /// Interrupted.
    Abort,
}

/// One token's log probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    /// The token's text.
    pub token: String,
    /// UTF-8 bytes of the text.
    pub bytes: Option<Vec<u8>>,
    /// Natural log of the probability.
    pub logprob: f64,
}

/// A sampled token's log probability and the most likely alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token's text.
    pub token: String,
    /// UTF-8 bytes of the text.
    pub bytes: Option<Vec<u8>>,
    /// Natural log of the probability.
    pub logprob: f64,
    /// `top_logprobs` alternatives.
    pub top_logprobs: Vec<TopLogprob>,
}

/// `choices[i].logprobs` when requested.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChoiceLogprobs {
    /// One entry per token.
    pub content: Vec<TokenLogprob>,
}

/// The assistant message of a non-streaming choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: String,
    /// The reply; `null` when the reply is tool calls.
    pub content: Option<String>,
    /// Parsed tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

/// One choice of a [`ChatCompletion`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChoice {
    /// Position among the `n` choices.
    pub index: u32,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// The reply.
    pub message: AssistantMessage,
    /// `null` unless `logprobs` was requested.
    pub logprobs: Option<ChoiceLogprobs>,
}

/// Non-streaming chat response (docs/chat.md, "WebLLM's request contract").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// A bare UUID (no `chatcmpl-` prefix).
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds, taken when the response is built.
    pub created: u64,
    /// The model id.
    pub model: String,
    /// The choices.
    pub choices: Vec<ChatCompletionChoice>,
    /// Token counts and timings (summed over choices).
    pub usage: Usage,
}

/// What the final chunk of a chat choice says about tool calls (WebLLM's
/// `makeStreamFinalChunk`).
#[derive(Debug, Clone, PartialEq)]
pub enum FinalCalls {
    /// A request without `tools`: the delta is `{}`.
    NotCalling,
    /// A function-calling request: the delta is `{role: "assistant"}`, with
    /// the calls when the reply ended by itself; a reply cut by `max_tokens`
    /// (or an interrupt) carries none, only `finish_reason`.
    Calling(Option<Vec<ToolCallDelta>>),
}

/// The `delta` of a streamed chunk; the final chunk's delta is `{}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// New text since the previous chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// `assistant` on every content delta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Tool calls, on the final chunk of a function-calling reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

/// One choice of a [`ChatCompletionChunk`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// Always 0 (streaming has one choice).
    pub index: u32,
    /// The increment.
    pub delta: Delta,
    /// `null` until the final chunk.
    pub finish_reason: Option<FinishReason>,
    /// Present (possibly `null`) on delta chunks, absent on the final chunk.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_or_null"
    )]
    pub logprobs: Option<Option<ChoiceLogprobs>>,
}

/// A streamed chat chunk (docs/chat.md, "WebLLM's request contract").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    /// Shared by all chunks of a stream (bare UUID).
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds at stream start, shared by all chunks.
    pub created: u64,
    /// The model id.
    pub model: String,
    /// One choice, or none in the usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Only in the usage chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// Identity shared by all chunks of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamId {
    /// The stream's UUID.
    pub id: String,
    /// Unix seconds at stream start.
    pub created: u64,
    /// The model id.
    pub model: String,
}

impl ChatCompletionChunk {
    /// A delta chunk: `{content, role: "assistant"}`, `finish_reason: null`,
    /// and `logprobs` (`null` unless requested).
    pub fn delta(
        stream: &StreamId,
        content: String,
        logprobs: Option<ChoiceLogprobs>,
    ) -> ChatCompletionChunk {
        let delta =
            Delta { content: Some(content), role: Some("assistant".to_string()), tool_calls: None };
        ChatCompletionChunk::with_choice(
            stream,
            ChunkChoice { index: 0, delta, finish_reason: None, logprobs: Some(logprobs) },
        )
    }

    /// The final chunk: `delta: {}` (or the tool calls) and the finish reason, no `logprobs` key.
    pub fn finish(
        stream: &StreamId,
        finish_reason: FinishReason,
        calls: FinalCalls,
    ) -> ChatCompletionChunk {
        let delta = match calls {
            FinalCalls::NotCalling => Delta::default(),
            FinalCalls::Calling(tool_calls) => {
                Delta { content: None, role: Some("assistant".to_string()), tool_calls }
            }
        };
        ChatCompletionChunk::with_choice(
            stream,
            ChunkChoice { index: 0, delta, finish_reason: Some(finish_reason), logprobs: None },
        )
    }

    /// The usage chunk sent last when `stream_options.include_usage`: no choices.
    pub fn usage(stream: &StreamId, usage: Usage) -> ChatCompletionChunk {
        ChatCompletionChunk::new(stream, Vec::new(), Some(usage))
    }

    fn with_choice(stream: &StreamId, choice: ChunkChoice) -> ChatCompletionChunk {
        ChatCompletionChunk::new(stream, vec![choice], None)
    }

    fn new(
        stream: &StreamId,
        choices: Vec<ChunkChoice>,
        usage: Option<Usage>,
    ) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: stream.id.clone(),
            object: "chat.completion.chunk".to_string(),
            created: stream.created,
            model: stream.model.clone(),
            choices,
            usage,
        }
    }
}

/// `extra_body` of a text-completion request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionExtraBody {
    /// Adds `usage.extra.latencyBreakdown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_latency_breakdown: Option<bool>,
}

/// `completions.create` request (docs/chat.md, "WebLLM's request contract"): a raw
/// prompt, no template.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    /// The prompt, encoded as-is.
    pub prompt: String,
    /// Prepend the prompt to the returned text (non-streaming only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<bool>,
    /// Stream chunks instead of one response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Only with `stream: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Number of choices (not above 1 when streaming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// RNG seed; must be an integer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<f64>,
    /// Selects among loaded models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Sampling and stopping.
    #[serde(flatten)]
    pub generation: GenerationConfig,
    /// Unsupported: present (even `null`) means `UnsupportedFieldsError`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_or_null"
    )]
    pub suffix: Option<Option<String>>,
    /// Unsupported: present (even `null`) means `UnsupportedFieldsError`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_or_null"
    )]
    pub user: Option<Option<String>>,
    /// Unsupported: present (even `null`) means `UnsupportedFieldsError`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_or_null"
    )]
    pub best_of: Option<Option<u32>>,
    /// WebLLM extensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_body: Option<CompletionExtraBody>,
}

/// One choice of a [`Completion`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionChoice {
    /// Position among the `n` choices.
    pub index: u32,
    /// The text (or, streamed, the increment).
    pub text: String,
    /// `null` on streamed increments.
    pub finish_reason: Option<FinishReason>,
    /// Present (possibly `null`) except on the final streamed chunk.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_or_null"
    )]
    pub logprobs: Option<Option<ChoiceLogprobs>>,
}

/// Text-completion response, and also each streamed chunk (WebLLM uses one
/// type for both, `object: "text_completion"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// A bare UUID.
    pub id: String,
    /// Always `text_completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model id.
    pub model: String,
    /// The choices (none in the usage chunk).
    pub choices: Vec<CompletionChoice>,
    /// Always on a response; only in the usage chunk of a stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// A streamed text-completion chunk.
pub type CompletionChunk = Completion;

impl Completion {
    /// A streamed increment: `text`, `finish_reason: null`, `logprobs` (`null` unless requested).
    pub fn delta(
        stream: &StreamId,
        text: String,
        logprobs: Option<ChoiceLogprobs>,
    ) -> CompletionChunk {
        let choice =
            CompletionChoice { index: 0, text, finish_reason: None, logprobs: Some(logprobs) };
        Completion::new(stream, vec![choice], None)
    }

    /// The final streamed chunk: empty text and the finish reason, no `logprobs` key.
    pub fn finish(stream: &StreamId, finish_reason: FinishReason) -> CompletionChunk {
        let choice = CompletionChoice {
            index: 0,
            text: String::new(),
            finish_reason: Some(finish_reason),
            logprobs: None,
        };
        Completion::new(stream, vec![choice], None)
    }

    /// The usage chunk sent last when `stream_options.include_usage`: no choices.
    pub fn usage(stream: &StreamId, usage: Usage) -> CompletionChunk {
        Completion::new(stream, Vec::new(), Some(usage))
    }

    fn new(stream: &StreamId, choices: Vec<CompletionChoice>, usage: Option<Usage>) -> Completion {
        Completion {
            id: stream.id.clone(),
            object: "text_completion".to_string(),
            created: stream.created,
            model: stream.model.clone(),
            choices,
            usage,
        }
    }
}

/// Token counts plus WebLLM's timing fields (docs/sampling.md, "Usage statistics").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// New prompt tokens of the round, without `system_prefix_token_ids`.
    pub prompt_tokens: usize,
    /// Sampled tokens of the round.
    pub completion_tokens: usize,
    /// Sum of the two.
    pub total_tokens: usize,
    /// WebLLM's timings.
    pub extra: UsageExtra,
}

/// `usage.extra`. Ratios over zero are NaN/∞ as in JS and serialize as `null`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageExtra {
    /// Request arrival to response, seconds.
    #[serde(deserialize_with = "number_or_null")]
    pub e2e_latency_s: f64,
    /// Prompt tokens per second of prefill.
    #[serde(deserialize_with = "number_or_null")]
    pub prefill_tokens_per_s: f64,
    /// Decode steps per second.
    #[serde(deserialize_with = "number_or_null")]
    pub decode_tokens_per_s: f64,
    /// Equal to the prefill time.
    #[serde(deserialize_with = "number_or_null")]
    pub time_to_first_token_s: f64,
    /// Decode time per decode step.
    #[serde(deserialize_with = "number_or_null")]
    pub time_per_output_token_s: f64,
    /// Grammar matcher setup (grammar/json_object only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grammar_init_s: Option<f64>,
    /// Grammar time per token (grammar/json_object only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grammar_per_token_s: Option<f64>,
    /// Per-token timings, with `extra_body.enable_latency_breakdown`.
    #[serde(default, rename = "latencyBreakdown", skip_serializing_if = "Option::is_none")]
    pub latency_breakdown: Option<LatencyBreakdown>,
}

/// Per-sampled-token timings in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyBreakdown {
    /// Custom logit processor.
    pub logit_processor_time: Vec<f64>,
    /// `logit_bias`.
    pub logit_bias_time: Vec<f64>,
    /// Penalties.
    pub penalty_time: Vec<f64>,
    /// Softmax and sampling.
    pub sample_time: Vec<f64>,
    /// The whole step.
    pub total_time: Vec<f64>,
    /// Grammar bitmask.
    pub grammar_bitmask_time: Vec<f64>,
}

/// Counters of one round, or summed over the `n` choices of a request, from
/// which [`Usage`] is computed as WebLLM 0.2.86 does.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GenerationStats {
    /// New prompt tokens (without prefix ids).
    pub prompt_tokens: usize,
    /// Every sampled token: the first (from prefill) and each decode step's,
    /// a final stop token included.
    pub completion_tokens: usize,
    /// Decode steps.
    pub decode_tokens: usize,
    /// Prompt assembly, tokenization, prefill and first sample (with the
    /// first decode step queued ahead, when it is), seconds.
    pub prefill_time_s: f64,
    /// Sum of the decode steps, seconds, each until its token is on the host:
    /// a step taken on its own from its start, a step queued ahead from the
    /// previous token's arrival there (the device runs it meanwhile).
    pub decode_time_s: f64,
    /// Grammar matcher setup and per-token time, when a grammar was used.
    pub grammar_s: Option<(f64, f64)>,
}

impl std::ops::AddAssign for GenerationStats {
    fn add_assign(&mut self, other: GenerationStats) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.decode_tokens += other.decode_tokens;
        self.prefill_time_s += other.prefill_time_s;
        self.decode_time_s += other.decode_time_s;
        self.grammar_s = match (self.grammar_s, other.grammar_s) {
            (Some((a, b)), Some((c, d))) => Some((a + c, b + d)),
            (one, other) => one.or(other),
        };
    }
}

impl Usage {
    /// `usage` from the counters and the request's end-to-end latency.
    pub fn from_stats(
        stats: &GenerationStats,
        e2e_latency_s: f64,
        latency_breakdown: Option<LatencyBreakdown>,
    ) -> Usage {
        let decode_tokens = stats.decode_tokens as f64;
        let decode_tokens_per_s =
            if stats.decode_time_s > 0.0 { decode_tokens / stats.decode_time_s } else { 0.0 };
        let completion_tokens = stats.completion_tokens as f64;
        Usage {
            prompt_tokens: stats.prompt_tokens,
            completion_tokens: stats.completion_tokens,
            total_tokens: stats.prompt_tokens + stats.completion_tokens,
            extra: UsageExtra {
                e2e_latency_s,
                prefill_tokens_per_s: stats.prompt_tokens as f64 / stats.prefill_time_s,
                decode_tokens_per_s,
                time_to_first_token_s: stats.prefill_time_s,
                time_per_output_token_s: stats.decode_time_s / decode_tokens,
                grammar_init_s: stats.grammar_s.map(|(init, _)| init),
                grammar_per_token_s: stats
                    .grammar_s
                    .map(|(_, per_token)| per_token / completion_tokens),
                latency_breakdown,
            },
        }
    }
}

/// An OpenAI-style error body, `{"error": {...}}`, carrying WebLLM's name as `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorObject,
}

/// The `error` object of an [`ErrorResponse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// WebLLM's message text.
    pub message: String,
    /// WebLLM's error name, e.g. `ContextWindowSizeExceededError`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending parameter, when known.
    pub param: Option<String>,
    /// A machine-readable code, when known.
    pub code: Option<String>,
}

impl From<&super::ChatError> for ErrorResponse {
    fn from(error: &super::ChatError) -> ErrorResponse {
        ErrorResponse {
            error: ErrorObject {
                message: error.message(),
                kind: error.name().to_string(),
                param: None,
                code: None,
            },
        }
    }
}

/// Deserializes a key that may be `null`: absent → `None` (via `default`),
/// `null` → `Some(None)`, a value → `Some(Some(v))`.
fn present_or_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Deserializes a number that JS may have written as `null` (NaN, ∞).
fn number_or_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Option::<f64>::deserialize(deserializer).map(|value| value.unwrap_or(f64::NAN))
}
