//! Request validation in WebLLM 0.2.86's order, with its errors
//! (docs/chat.md, "WebLLM's request contract"; docs/sampling.md, "Parameters").
//!
//! WebLLM checks in two stages: request fields synchronously in `create()`
//! (`check_*_request`), generation parameters later, once the model lock is
//! held — for a stream, on the first `next()` ([`check_generation_config`]).
//! The first failing check wins, so the order of the checks is part of the
//! behaviour.

use mlc_loader::ChatConfig;

use super::error::ChatError;
use super::js::{number_to_string, parse_int};
use super::openai::{
    ChatCompletionRequest, CompletionRequest, GenerationConfig, MessageContent, ResponseFormat,
    StreamOptions,
};
use super::tools::{ToolFormat, check_hermes_request};

/// Both stages of chat-request validation for a request to `model_id`, whose
/// tool-call format is `tools` (`None`: `tools` are refused, as WebLLM refuses
/// them outside its list; see [`super::tool_format`]).
pub fn validate_chat_request(
    request: &ChatCompletionRequest,
    model_id: &str,
    tools: Option<ToolFormat>,
) -> Result<(), ChatError> {
    check_chat_request(request, model_id, tools)?;
    check_generation_config(&request.generation)
}

/// Both stages of text-completion validation.
pub fn validate_completion_request(request: &CompletionRequest) -> Result<(), ChatError> {
    check_completion_request(request)?;
    check_generation_config(&request.generation)
}

/// The request-field checks of `chat.completions.create` (WebLLM's
/// `postInitAndCheckFields`); `model_id` is the selected model and `tools`
/// its tool-call format. Models here are text-only (`ModelType.LLM`), so
/// content parts are always rejected.
pub fn check_chat_request(
    request: &ChatCompletionRequest,
    model_id: &str,
    tools: Option<ToolFormat>,
) -> Result<(), ChatError> {
    for (index, message) in request.messages.iter().enumerate() {
        if message.role == "user" && !matches!(message.content, Some(MessageContent::Text(_))) {
            let content = js_string_of_content(message.content.as_ref());
            return Err(ChatError::UserMessageContentForNonVlm {
                model_id: model_id.to_string(),
                content,
            });
        }
        if message.role == "system" && index != 0 {
            return Err(ChatError::SystemMessageOrder);
        }
    }
    let last = request.messages.last().ok_or(ChatError::EmptyMessages)?;
    if last.role != "user" && last.role != "tool" {
        return Err(ChatError::MessageOrder(
            "Last message should be from either `user` or `tool`.",
        ));
    }
    check_choice_count(request.stream, request.n)?;
    check_seed(request.seed)?;
    if let Some(format) = &request.response_format {
        check_response_format(format)?;
    }
    if request.tools.is_some() {
        match tools {
            None => return Err(ChatError::UnsupportedModelId(model_id.to_string())),
            Some(ToolFormat::Hermes) => check_hermes_request(request)?,
            Some(ToolFormat::Qwen) => {}
        }
    }
    check_stream_options(request.stream, request.stream_options.as_ref())
}

/// The request-field checks of `completions.create`.
pub fn check_completion_request(request: &CompletionRequest) -> Result<(), ChatError> {
    let present = [
        ("suffix", request.suffix.is_some()),
        ("user", request.user.is_some()),
        ("best_of", request.best_of.is_some()),
    ];
    let fields: Vec<String> =
        present.iter().filter(|(_, present)| *present).map(|(name, _)| name.to_string()).collect();
    if !fields.is_empty() {
        return Err(ChatError::UnsupportedFields { fields, class: "CompletionCreateParams" });
    }
    check_choice_count(request.stream, request.n)?;
    check_seed(request.seed)?;
    check_stream_options(request.stream, request.stream_options.as_ref())
}

/// The generation-parameter checks (`postInitAndCheckGenerationConfigValues`).
pub fn check_generation_config(config: &GenerationConfig) -> Result<(), ChatError> {
    for (param, value) in [
        ("frequency_penalty", config.frequency_penalty),
        ("presence_penalty", config.presence_penalty),
    ] {
        // WebLLM tests the value for truthiness first, so 0 is never checked.
        if value.is_some_and(|value| value != 0.0 && !(-2.0..=2.0).contains(&value)) {
            return Err(ChatError::Range { param, min: -2.0, max: 2.0, detail: None });
        }
    }
    if config.repetition_penalty.is_some_and(|value| value <= 0.0) {
        return Err(ChatError::MinValue { param: "repetition_penalty", min: 0.0 });
    }
    if config.max_tokens.is_some_and(|value| value <= 0) {
        return Err(ChatError::MinValue { param: "max_tokens", min: 0.0 });
    }
    if config.top_p.is_some_and(|value| value <= 0.0 || value > 1.0) {
        return Err(ChatError::Range { param: "top_p", min: 0.0, max: 1.0, detail: None });
    }
    if config.temperature.is_some_and(|value| value < 0.0) {
        return Err(ChatError::NonNegative("temperature"));
    }
    if let Some(bias) = &config.logit_bias {
        for (key, value) in bias.js_order() {
            if !(-100.0..=100.0).contains(&value) {
                let detail = format!("Got {} for tokenID {key}", number_to_string(value));
                return Err(ChatError::Range {
                    param: "logit_bias",
                    min: -100.0,
                    max: 100.0,
                    detail: Some(detail),
                });
            }
            if parse_int(key).is_none() {
                return Err(ChatError::InvalidNumberString {
                    param: "logit_bias's keys",
                    value: key.to_string(),
                });
            }
        }
    }
    if let Some(top_logprobs) = config.top_logprobs {
        if config.logprobs != Some(true) {
            return Err(ChatError::Dependency {
                dependent: "top_logprobs",
                required: "logprobs",
                value: "true",
            });
        }
        if !(0..=5).contains(&top_logprobs) {
            return Err(ChatError::Range {
                param: "top_logprobs",
                min: 0.0,
                max: 5.0,
                detail: Some(format!("Got {top_logprobs}")),
            });
        }
    }
    Ok(())
}

/// WebLLM's prefill-time check: without a sliding window, the new prompt
/// tokens plus the tokens already in the KV cache must fit the context window.
/// `prompt_tokens` excludes `system_prefix_token_ids`, as in WebLLM.
pub fn check_context_window(
    prompt_tokens: usize,
    kv_cache_tokens: usize,
    config: &ChatConfig,
) -> Result<(), ChatError> {
    let needed = (prompt_tokens + kv_cache_tokens) as i64;
    if config.sliding_window_size == -1 && needed > config.context_window_size {
        return Err(ChatError::ContextWindowSizeExceeded {
            prompt_tokens,
            context_window_size: config.context_window_size,
        });
    }
    Ok(())
}

/// `stream` together with `n > 1`.
fn check_choice_count(stream: Option<bool>, n: Option<u32>) -> Result<(), ChatError> {
    if stream == Some(true) && n.is_some_and(|n| n > 1) {
        return Err(ChatError::StreamingCount);
    }
    Ok(())
}

/// `Number.isInteger(seed)`.
fn check_seed(seed: Option<f64>) -> Result<(), ChatError> {
    match seed {
        Some(seed) if !(seed.is_finite() && seed.fract() == 0.0) => Err(ChatError::SeedType(seed)),
        _ => Ok(()),
    }
}

/// `stream_options` only with `stream: true`.
fn check_stream_options(
    stream: Option<bool>,
    options: Option<&StreamOptions>,
) -> Result<(), ChatError> {
    if options.is_some() && stream != Some(true) {
        return Err(ChatError::InvalidStreamOptions);
    }
    Ok(())
}

/// `schema` only with `json_object`; `grammar` and `structural_tag` exactly
/// with their own type.
fn check_response_format(format: &ResponseFormat) -> Result<(), ChatError> {
    let kind = format.kind.as_deref();
    if format.schema.is_some() && kind != Some("json_object") {
        return Err(ChatError::InvalidResponseFormat);
    }
    if format.grammar.is_some() != (kind == Some("grammar")) {
        return Err(ChatError::InvalidResponseFormatGrammar);
    }
    if format.structural_tag.is_some() != (kind == Some("structural_tag")) {
        return Err(ChatError::InvalidResponseFormatStructuralTag);
    }
    Ok(())
}

/// `${content}` in JS for a non-string message content: each part object
/// prints as `[object Object]`, joined by commas; a missing content as `null`.
fn js_string_of_content(content: Option<&MessageContent>) -> String {
    match content {
        None => "null".to_string(),
        Some(MessageContent::Text(text)) => text.clone(),
        Some(MessageContent::Parts(parts)) => vec!["[object Object]"; parts.len()].join(","),
    }
}
