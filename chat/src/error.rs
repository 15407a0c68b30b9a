//! Chat errors with WebLLM's error names and message texts (docs/chat.md, "WebLLM's request
//! contract").
//!
//! Applications match WebLLM errors by `.name` and message text (across a
//! worker boundary they even arrive as the string `"<name>: <message>"`), so
//! each variant reproduces both exactly; [`ChatError`]'s `Display` is that string.

use super::js::number_to_string;
use super::tokenizer::TokenizerError;
use super::tool_models::{FUNCTION_CALLING_MODEL_IDS, QWEN_TOOL_MODELS};

/// A request or conversation error, as WebLLM would throw it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", self.name(), self.message())]
pub enum ChatError {
    /// `messages` is empty: WebLLM crashes reading the last message's role.
    EmptyMessages,
    /// A user message with content parts sent to a model that is not a VLM.
    UserMessageContentForNonVlm {
        /// The selected model id.
        model_id: String,
        /// The content as JS prints it (`[object Object]` per part).
        content: String,
    },
    /// A `system` message that is not the first message.
    SystemMessageOrder,
    /// The last message is not from `user` or `tool`; WebLLM words this
    /// differently in `create()` and in the conversation builder.
    MessageOrder(&'static str),
    /// A message whose content must be a string (`"assistant's message"`).
    ContentType(String),
    /// A message role WebLLM does not know.
    UnsupportedRole(String),
    /// `stream` with `n > 1`.
    StreamingCount,
    /// A `seed` that is not an integer.
    SeedType(f64),
    /// `response_format.schema` without type `json_object`.
    InvalidResponseFormat,
    /// `response_format.grammar` and type `grammar` not given together.
    InvalidResponseFormatGrammar,
    /// `response_format.structural_tag` and type `structural_tag` not given together.
    InvalidResponseFormatStructuralTag,
    /// `tools` for a model without function calling.
    UnsupportedModelId(String),
    /// `response_format` could not be compiled into a grammar matcher.
    GrammarMatcherInit {
        /// The `response_format.type`.
        kind: String,
        /// Why (the grammar engine's message).
        cause: String,
    },
    /// Hermes tool calling with a `response_format` of the caller's (its JSON).
    CustomResponseFormat(String),
    /// Hermes tool calling with a system message of the caller's.
    CustomSystemPrompt,
    /// A tool-calling reply that is not JSON (the reply, the parser's message).
    ToolCallOutputParse {
        /// The reply text.
        output: String,
        /// The JSON parser's message.
        error: String,
    },
    /// A tool-calling reply of the wrong JSON type (`array` expected).
    ToolCallOutputInvalidType(&'static str),
    /// A tool call without `name` or `arguments` (the call's JSON).
    ToolCallOutputMissingFields(String),
    /// `stream_options` without `stream: true`.
    InvalidStreamOptions,
    /// Request fields WebLLM rejects, in the request class named.
    UnsupportedFields {
        /// The offending fields.
        fields: Vec<String>,
        /// The request class, e.g. `CompletionCreateParams`.
        class: &'static str,
    },
    /// A parameter at or below its minimum.
    MinValue {
        /// The parameter name.
        param: &'static str,
        /// The exclusive minimum.
        min: f64,
    },
    /// A parameter outside its range (WebLLM's own `RangeError`).
    Range {
        /// The parameter name.
        param: &'static str,
        /// The lower bound as printed.
        min: f64,
        /// The upper bound.
        max: f64,
        /// Appended after a space, e.g. `Got 7`.
        detail: Option<String>,
    },
    /// A negative parameter that must be non-negative.
    NonNegative(&'static str),
    /// A `logit_bias` key that does not parse as an integer.
    InvalidNumberString {
        /// The parameter name (`logit_bias's keys`).
        param: &'static str,
        /// The key.
        value: String,
    },
    /// A parameter set without the one it depends on.
    Dependency {
        /// The parameter that was set.
        dependent: &'static str,
        /// The parameter it needs.
        required: &'static str,
        /// The value it needs, as printed.
        value: &'static str,
    },
    /// The new prompt does not fit beside what the KV cache already holds.
    ContextWindowSizeExceeded {
        /// Tokens of the new prompt (without `system_prefix_token_ids`).
        prompt_tokens: usize,
        /// The configured context window.
        context_window_size: i64,
    },
    /// More than one text part in a message.
    MultipleTextContent,
    /// An image part for a model without an image encoder.
    CannotFindImageEmbed,
    /// `encoding_format: "base64"` (WebLLM returns floats only).
    EmbeddingUnsupportedEncodingFormat,
    /// `embeddings.create` on a model whose record is not an embedding model.
    EmbeddingUnsupportedModel(String),
    /// An embedding input longer than the context window.
    EmbeddingExceedContextWindowSize {
        /// The model's context window.
        context_window_size: usize,
        /// Tokens of the offending input.
        input_size: usize,
    },
    /// An empty embedding input (an empty string, array or token array).
    EmbeddingInputEmpty,
    /// A request for the other kind of model than the one loaded (a chat
    /// request to an embedding model, or the reverse).
    IncorrectPipelineLoaded {
        /// The loaded model.
        model_id: String,
        /// The pipeline the request needs: `LLMChatPipeline` or `EmbeddingPipeline`.
        pipeline: &'static str,
        /// The request class, e.g. `ChatCompletionRequest`.
        request_name: &'static str,
    },
    /// A plain JS `Error` of WebLLM's (e.g. `Role is not supported: tool`).
    Error(String),
    /// The tokenizer failed.
    Tokenizer(#[from] TokenizerError),
}

impl ChatError {
    /// WebLLM's `error.name`.
    pub fn name(&self) -> &'static str {
        match self {
            ChatError::EmptyMessages => "TypeError",
            ChatError::UserMessageContentForNonVlm { .. } => "UserMessageContentErrorForNonVLM",
            ChatError::SystemMessageOrder => "SystemMessageOrderError",
            ChatError::MessageOrder(_) => "MessageOrderError",
            ChatError::ContentType(_) => "ContentTypeError",
            ChatError::UnsupportedRole(_) => "UnsupportedRoleError",
            ChatError::StreamingCount => "StreamingCountError",
            ChatError::SeedType(_) => "SeedTypeError",
            ChatError::InvalidResponseFormat => "InvalidResponseFormatError",
            ChatError::InvalidResponseFormatGrammar => "InvalidResponseFormatGrammarError",
            ChatError::InvalidResponseFormatStructuralTag => {
                "InvalidResponseFormatStructuralTagError"
            }
            ChatError::UnsupportedModelId(_) => "UnsupportedModelIdError",
            ChatError::GrammarMatcherInit { .. } => "GrammarMatcherInitError",
            ChatError::CustomResponseFormat(_) => "CustomResponseFormatError",
            ChatError::CustomSystemPrompt => "CustomSystemPromptError",
            ChatError::ToolCallOutputParse { .. } => "ToolCallOutputParseError",
            ChatError::ToolCallOutputInvalidType(_) => "ToolCallOutputInvalidTypeError",
            ChatError::ToolCallOutputMissingFields(_) => "JSONFieldError",
            ChatError::InvalidStreamOptions => "InvalidStreamOptionsError",
            ChatError::UnsupportedFields { .. } => "UnsupportedFieldsError",
            ChatError::MinValue { .. } => "MinValueError",
            ChatError::Range { .. } => "RangeError",
            ChatError::NonNegative(_) => "NonNegativeError",
            ChatError::InvalidNumberString { .. } => "InvalidNumberStringError",
            ChatError::Dependency { .. } => "DependencyError",
            ChatError::ContextWindowSizeExceeded { .. } => "ContextWindowSizeExceededError",
            ChatError::MultipleTextContent => "MultipleTextContentError",
            ChatError::CannotFindImageEmbed => "CannotFindImageEmbedError",
            ChatError::EmbeddingUnsupportedEncodingFormat => {
                "EmbeddingUnsupportedEncodingFormatError"
            }
            ChatError::EmbeddingUnsupportedModel(_) => "EmbeddingUnsupportedModelError",
            ChatError::EmbeddingExceedContextWindowSize { .. } => {
                "EmbeddingExceedContextWindowSizeError"
            }
            ChatError::EmbeddingInputEmpty => "EmbeddingInputEmptyError",
            ChatError::IncorrectPipelineLoaded { .. } => "IncorrectPipelineLoadedError",
            ChatError::Error(_) | ChatError::Tokenizer(_) => "Error",
        }
    }

    /// WebLLM's `error.message`, exactly.
    pub fn message(&self) -> String {
        match self {
            ChatError::EmptyMessages => {
                "Cannot read properties of undefined (reading 'role')".to_string()
            }
            ChatError::UserMessageContentForNonVlm { model_id, content } => format!(
                "The model loaded is not of type ModelType.VLM (vision-language model). Therefore, user message only \
                 supports string content, but received: {content}\nLoaded modelId: {model_id}, modelType: LLM"
            ),
            ChatError::SystemMessageOrder => {
                "System prompt should always be the first message in `messages`.".to_string()
            }
            ChatError::MessageOrder(message) => message.to_string(),
            ChatError::ContentType(what) => format!("{what} should have string content."),
            ChatError::UnsupportedRole(role) => format!("Unsupported role of message: {role}"),
            ChatError::StreamingCount => "When streaming, `n` cannot be > 1.".to_string(),
            ChatError::SeedType(seed) => {
                format!("`seed` should be an integer, but got {}", number_to_string(*seed))
            }
            ChatError::InvalidResponseFormat => {
                "JSON schema is only supported with `json_object` response format.".to_string()
            }
            ChatError::InvalidResponseFormatGrammar => both_or_neither("grammar"),
            ChatError::InvalidResponseFormatStructuralTag => both_or_neither("structural_tag"),
            ChatError::UnsupportedModelId(model_id) => {
                format!(
                    "{model_id} is not supported for ChatCompletionRequest.tools. Currently, models that support function \
                 calling are: {}",
                    FUNCTION_CALLING_MODEL_IDS.join(", ")
                ) + QWEN_TOOL_MODELS
            }
            ChatError::GrammarMatcherInit { kind, cause } => {
                format!(
                    "Failed to initialize the grammar matcher for response format `{kind}`: {cause}"
                )
            }
            ChatError::CustomResponseFormat(format) => format!(
                "When using Hermes-2-Pro function calling via ChatCompletionRequest.tools, cannot specify customized \
                 response_format. We will set it for you internally. Currently set to: {format}"
            ),
            ChatError::CustomSystemPrompt => {
                "When using Hermes-2-Pro function calling via ChatCompletionRequest.tools, \
                                              cannot specify customized system prompt."
                    .to_string()
            }
            ChatError::ToolCallOutputParse { output, error } => format!(
                "Internal error: error encountered when parsing outputMessage for function calling. Got outputMessage: \
                 {output}\nGot error: {error}"
            ),
            ChatError::ToolCallOutputInvalidType(kind) => {
                format!("Internal error: expect output of function calling to be an {kind}")
            }
            ChatError::ToolCallOutputMissingFields(object) => {
                format!(
                    "Expect generated tool call to have fields \"`name`\", \"`arguments`\", but got object: {object}"
                )
            }
            ChatError::InvalidStreamOptions => {
                "Only specify stream_options when stream=True.".to_string()
            }
            ChatError::UnsupportedFields { fields, class } => {
                format!(
                    "The following fields in {class} are not yet supported: \n{}",
                    fields.join(", ")
                )
            }
            ChatError::MinValue { param, min } => {
                format!("Make sure `{param}` > {}.", number_to_string(*min))
            }
            ChatError::Range { param, min, max, detail } => {
                let detail = detail.as_ref().map(|detail| format!(" {detail}")).unwrap_or_default();
                format!(
                    "Make sure {} < {param} <= {}.{detail}",
                    number_to_string(*min),
                    number_to_string(*max)
                )
            }
            ChatError::NonNegative(param) => format!("Make sure {param} >= 0."),
            ChatError::InvalidNumberString { param, value } => {
                // WebLLM appends the value only when it is truthy (not "").
                let got = if value.is_empty() { String::new() } else { format!(" Got {value}") };
                format!("Make sure {param} to be number represented in string.{got}")
            }
            ChatError::Dependency { dependent, required, value } => {
                format!("{dependent} requires {required} to be {value}.")
            }
            ChatError::ContextWindowSizeExceeded { prompt_tokens, context_window_size } => format!(
                "Prompt tokens exceed context window size: number of prompt tokens: {prompt_tokens}; context window \
                 size: {context_window_size}\nConsider shortening the prompt, or increase `context_window_size`, or \
                 using sliding window via `sliding_window_size`."
            ),
            ChatError::EmbeddingUnsupportedEncodingFormat => {
                "Embedding in base64 format is currently not supported.".to_string()
            }
            ChatError::EmbeddingUnsupportedModel(model) => format!(
                "Trying to run embeddings.create() with {model}, which does not have \
                 ModelRecord.model_type === ModelType.embedding in the model record. Either make \
                 sure an embedding model is loaded, or specify the model type in ModelRecord."
            ),
            // WebLLM's text has no space after the first full stop.
            ChatError::EmbeddingExceedContextWindowSize { context_window_size, input_size } => {
                format!(
                    "The embedding model you are using only supports up to {context_window_size} \
                     context size.However, an input in the batch has size {input_size}."
                )
            }
            ChatError::EmbeddingInputEmpty => {
                "Embedding input cannot be empty string or empty token array.".to_string()
            }
            ChatError::IncorrectPipelineLoaded { model_id, pipeline, request_name } => format!(
                "{request_name} expects model to be loaded with {pipeline}. However, {model_id} \
                 is not loaded with this pipeline."
            ),
            ChatError::MultipleTextContent => {
                "Each message can have at most one text contentPart, but received more than 1."
                    .to_string()
            }
            ChatError::CannotFindImageEmbed => {
                "Received image input but model does not have kernel image_embed. Make \
                                                sure to only pass in image to a vision model."
                    .to_string()
            }
            ChatError::Error(message) => message.clone(),
            ChatError::Tokenizer(error) => error.to_string(),
        }
    }
}

/// The two-sentence message of the `response_format` field/type pairing errors.
fn both_or_neither(kind: &str) -> String {
    format!(
        "When ResponseFormat.type is `{kind}`, ResponseFormat.{kind} needs to be specified.\nWhen \
         ResponseFormat.{kind} is specified, ResponseFormat.type needs to be {kind}."
    )
}
