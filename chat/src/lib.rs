//! Foundations of the chat engine, reproducing WebLLM 0.2.86's observable
//! behaviour: tokenizer conventions, prompt rendering and multi-round KV
//! reuse, stop handling and stream deltas, OpenAI-style request/response
//! types, and request validation with WebLLM's error names and messages.
//!
//! A chat request flows through these modules as follows:
//! [`validate_chat_request`] → [`Conversation::from_request`] →
//! [`can_reuse_kv_cache`] (keep or reset the KV cache) →
//! [`Conversation::start_round`] → [`Conversation::prompt_tokens`] →
//! [`check_context_window`] → prefill, then for each sampled token
//! [`OutputStream::push`] and [`OutputStream::next_delta`] → finally
//! [`Conversation::finish_reply`] with [`OutputStream::text`].
//! Structured output (`response_format`, `tools`) adds a grammar matcher that
//! masks each step's tokens: [`grammar_of`] / [`tool_format`] → a
//! [`GrammarCompiler`]'s [`TokenMatcher`] → [`parse_calls`] on the reply.
//! Embeddings (an encoder, not a chat model) go through [`create_embeddings`].
//! docs/chat.md and docs/structured-output.md list where this deliberately
//! differs from WebLLM.

mod conversation;
mod ebnf;
mod embeddings;
mod engine;
mod error;
mod grammar;
mod js;
mod openai;
mod response_format;
mod stream;
mod structural_tag;
mod tokenizer;
mod tool_models;
mod tools;
mod validate;

pub use conversation::{
    ConvMessage, Conversation, EMPTY_THINKING_BLOCK, PromptTokens, Role, Turn, can_reuse_kv_cache,
};
pub use embeddings::{
    Embedder, Embedding, EmbeddingConvention, EmbeddingInput, EmbeddingRequest, EmbeddingResponse,
    EmbeddingUsage, EmbeddingUsageExtra, EmbeddingVector, check_request as check_embedding_request,
    create_embeddings, tokenize_inputs as tokenize_embedding_inputs,
};
pub use engine::{ChatEngine, EngineSetupError, OutputHook, Pause, RequestError, model_id_of};
pub use error::ChatError;
pub use grammar::{Grammar, GrammarCompiler, TokenMatcher};
pub use openai::*;
pub use response_format::grammar_of;
pub use stream::{OutputStream, StopConditions};
pub use tokenizer::{Tokenizer, TokenizerError};
pub use tool_models::FUNCTION_CALLING_MODEL_IDS;
pub use tools::{ToolFormat, parse_calls, tool_format};
pub use validate::{
    check_chat_request, check_completion_request, check_context_window, check_generation_config,
    validate_chat_request, validate_completion_request,
};
