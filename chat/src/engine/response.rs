//! Response assembly: what each choice came to ([`Outcome`]), the whole
//! responses of chat and text completions made from it, their stream chunks
//! ([`ChunkKind`]), and numbers formatted as WebLLM's JavaScript formats them.

use crate::openai::{
    AssistantMessage, ChatCompletion, ChatCompletionChoice, ChatCompletionChunk, ChoiceLogprobs,
    Completion, CompletionChoice, CompletionChunk, FinalCalls, FinishReason, GenerationStats,
    StreamId, ToolCall, ToolCallDelta, Usage,
};

use super::unix_seconds;

/// Stream deltas of a reply's tool calls (`index` for `id`, as WebLLM streams them).
pub(super) fn call_deltas(calls: &[ToolCall]) -> Vec<ToolCallDelta> {
    calls
        .iter()
        .zip(0..)
        .map(|(call, index)| ToolCallDelta {
            index,
            kind: call.kind.clone(),
            function: call.function.clone(),
        })
        .collect()
}

/// The chunk type of an API (chat or text completion).
pub(super) trait ChunkKind {
    /// The streamed chunk.
    type Chunk;
    /// A delta chunk.
    fn delta(id: &StreamId, text: String, logprobs: Option<ChoiceLogprobs>) -> Self::Chunk;
    /// The final chunk of a choice (with the reply's tool calls, chat only).
    fn finish(id: &StreamId, reason: FinishReason, calls: FinalCalls) -> Self::Chunk;
    /// The usage chunk.
    fn usage(id: &StreamId, usage: Usage) -> Self::Chunk;
}

/// `chat.completion.chunk`s.
pub(super) struct ChatChunks;

impl ChunkKind for ChatChunks {
    type Chunk = ChatCompletionChunk;

    fn delta(id: &StreamId, text: String, logprobs: Option<ChoiceLogprobs>) -> ChatCompletionChunk {
        ChatCompletionChunk::delta(id, text, logprobs)
    }

    fn finish(id: &StreamId, reason: FinishReason, calls: FinalCalls) -> ChatCompletionChunk {
        ChatCompletionChunk::finish(id, reason, calls)
    }

    fn usage(id: &StreamId, usage: Usage) -> ChatCompletionChunk {
        ChatCompletionChunk::usage(id, usage)
    }
}

/// `text_completion` chunks.
pub(super) struct TextChunks;

impl ChunkKind for TextChunks {
    type Chunk = CompletionChunk;

    fn delta(id: &StreamId, text: String, logprobs: Option<ChoiceLogprobs>) -> CompletionChunk {
        Completion::delta(id, text, logprobs)
    }

    fn finish(id: &StreamId, reason: FinishReason, _calls: FinalCalls) -> CompletionChunk {
        Completion::finish(id, reason)
    }

    fn usage(id: &StreamId, usage: Usage) -> CompletionChunk {
        Completion::usage(id, usage)
    }
}

/// `value.toFixed(4)` as JavaScript prints it, `NaN` and `Infinity` included.
pub(super) fn js_fixed4(value: f64) -> String {
    match value {
        v if v.is_nan() => "NaN".to_string(),
        v if v.is_infinite() => if v > 0.0 { "Infinity" } else { "-Infinity" }.to_string(),
        v => format!("{v:.4}"),
    }
}

/// One finished choice.
pub(super) struct ChoiceOutcome {
    pub(super) text: String,
    pub(super) finish_reason: FinishReason,
    pub(super) logprobs: Option<ChoiceLogprobs>,
    pub(super) stats: GenerationStats,
    /// The calls a tool-calling reply made.
    pub(super) tool_calls: Option<Vec<ToolCall>>,
}

impl ChoiceOutcome {
    /// A choice skipped because the request was interrupted before it began;
    /// `logprobs` is what its sampler reports for no token.
    pub(super) fn aborted(logprobs: Option<ChoiceLogprobs>) -> ChoiceOutcome {
        ChoiceOutcome {
            text: String::new(),
            finish_reason: FinishReason::Abort,
            logprobs,
            stats: GenerationStats::default(),
            tool_calls: None,
        }
    }
}

/// All choices of a request and their summed usage.
pub(super) struct Outcome {
    pub(super) choices: Vec<ChoiceOutcome>,
    pub(super) usage: Usage,
}

/// A chat request's response. A tool-call reply has `content: null`, as in
/// WebLLM, and so has any reply to a Hermes function-calling request
/// (`hermes_calling`; WebLLM's: a partial call array cut by `max_tokens` is not
/// content). A Qwen reply without calls is text.
pub(super) fn chat_completion(
    id: StreamId,
    outcome: Outcome,
    hermes_calling: bool,
) -> ChatCompletion {
    let choices = outcome
        .choices
        .into_iter()
        .zip(0..)
        .map(|(choice, index)| ChatCompletionChoice {
            index,
            finish_reason: choice.finish_reason,
            message: AssistantMessage {
                role: "assistant".to_string(),
                content: if choice.tool_calls.is_some() || hermes_calling {
                    None
                } else {
                    Some(choice.text)
                },
                tool_calls: choice.tool_calls,
            },
            logprobs: choice.logprobs,
        })
        .collect();
    ChatCompletion {
        id: id.id,
        object: "chat.completion".to_string(),
        created: unix_seconds(),
        model: id.model,
        choices,
        usage: outcome.usage,
    }
}

/// A text completion's response; `echoed_prompt` goes in front of each
/// choice's text (`echo`).
pub(super) fn text_completion(
    id: StreamId,
    outcome: Outcome,
    echoed_prompt: Option<&str>,
) -> Completion {
    let choices = outcome
        .choices
        .into_iter()
        .zip(0..)
        .map(|(choice, index)| CompletionChoice {
            index,
            text: match echoed_prompt {
                Some(prompt) => format!("{prompt}{}", choice.text),
                None => choice.text,
            },
            finish_reason: Some(choice.finish_reason),
            logprobs: Some(choice.logprobs),
        })
        .collect();
    Completion {
        id: id.id,
        object: "text_completion".to_string(),
        created: unix_seconds(),
        model: id.model,
        choices,
        usage: Some(outcome.usage),
    }
}
