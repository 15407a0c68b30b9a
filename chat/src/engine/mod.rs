//! The chat engine: OpenAI-style chat and text completions on a loaded model,
//! generating the way WebLLM 0.2.86 does (docs/sampling.md; docs/chat.md,
//! "WebLLM's request contract").
//!
//! One request runs its `n` choices one after the other. A chat choice builds
//! the conversation from the request, keeps the KV cache when the history
//! equals the conversation left by the previous request (multi-round reuse,
//! docs/chat.md, "How WebLLM builds a prompt") and otherwise resets it, prefills the prompt, then
//! samples one token per step until a stop rule fires. Tokens are chosen where
//! the logits are: a plain argmax for plain greedy requests, the backend's
//! sampling chain (bias, penalties, temperature, top-p and the draw)
//! otherwise. The logits never come to the host: the backend keeps the
//! penalties' counts of the round itself (each draw adds its token), and
//! log probabilities come back with the token.
//!
//! Decode steps are queued ahead: step N + 1, fed on the device by the token
//! step N chose there (`StepInput::Queued`), is recorded and submitted before
//! the host reads token N ([`STEPS_AHEAD`] steps), so the host's recording
//! overlaps the device's work (greedy decoding on an H100 went from 373 to
//! 563 tokens/s). Only a grammar
//! rules that out (its next mask follows token N, on the host): a round with
//! one goes step by step, waiting for each token. Each step's uniform is drawn
//! from the request's generator when the step is queued, in token order
//! either way, so seeded streams are the same. Steps queued past the end of
//! the round (a stop token or string, an interrupt) are dropped with their draws:
//! the KV cache and the generator are left as a step-by-step round leaves
//! them (the counts it added on the device die with the round: each round
//! starts its own).
//!
//! Structured output (`response_format`, `tools`) compiles a grammar once per
//! request; each choice follows it with its own matcher, whose token mask goes
//! into the step's sampling (on a GPU it is uploaded and applied there).
//!
//! By stage: `plan.rs` resolves a request (sampling over the model's
//! defaults, stop rules, structure, each choice's prompt), `generation.rs` runs
//! its choices (prefill, queued decode steps, stream chunks), `response.rs`
//! assembles the response and the chunks; this file holds the engine, its
//! setup and the public entry points.
//!
//! Requests are `async` because the model's readbacks are (see
//! [`mlc_engine::ModelFuture`]); native callers drive them with
//! `pollster::block_on`. A browser caller also sets a [`Pause`], awaited
//! after every token, so the page keeps painting and an interrupt arrives.

mod generation;
mod plan;
mod response;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mlc_kernels::cpu::Minstd;
use mlc_loader::{Artifact, ChatConfig, ConvTemplate, LoadError};
use web_time::{Instant, SystemTime, UNIX_EPOCH};

use crate::conversation::Conversation;
use crate::error::ChatError;
use crate::grammar::GrammarCompiler;
use crate::openai::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Completion, CompletionChunk,
    CompletionRequest, FinishReason, GenerationConfig, GenerationStats,
};
use crate::tokenizer::{Tokenizer, TokenizerError};
use crate::tools::{self, ToolFormat, tool_format};
use crate::validate::{validate_chat_request, validate_completion_request};
use mlc_engine::backend::StepInput;
use mlc_engine::sampling::TokenCounts;
use mlc_engine::{EngineError, LanguageModel};

use plan::{Kept, Sampler};
use response::{ChatChunks, TextChunks, js_fixed4};

/// The tokenizer file every MLC artifact ships.
pub(crate) const TOKENIZER_FILE: &str = "tokenizer.json";

/// The modulus of WebLLM's seed (`setSeed` reduces the seed by it).
const SEED_MODULUS: f64 = 2_147_483_647.0;

/// Why a chat engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EngineSetupError {
    /// `mlc-chat-config.json` has no `conv_template`, which chat needs.
    #[error("mlc-chat-config.json has no conv_template; the chat engine needs one")]
    MissingTemplate,
    /// The tokenizer could not be loaded.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The artifact's tokenizer file could not be read.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// Makes the future a request awaits after each generated token: in a
/// browser, one that gives the event loop a turn (a page stays responsive and
/// an interrupt can land while a CPU-bound generation runs).
pub type Pause = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()>>>>;

/// Watches a chat round's output as it grows, streamed or not, to journal it
/// (the browser module's resumable generation): called with the ids appended
/// since the previous call, the text they add (a stream delta), and the
/// tokens the round has processed so far (prompt and output).
pub type OutputHook = Box<dyn FnMut(&[u32], &str, usize)>;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request is invalid or does not fit: WebLLM's error, name and message.
    #[error(transparent)]
    Chat(#[from] ChatError),
    /// The model failed while running.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<TokenizerError> for RequestError {
    fn from(error: TokenizerError) -> RequestError {
        RequestError::Chat(error.into())
    }
}

impl RequestError {
    /// Whether the request itself is at fault (HTTP 400) rather than the engine (500).
    pub fn is_client_error(&self) -> bool {
        match self {
            RequestError::Chat(ChatError::Tokenizer(_)) => false,
            RequestError::Chat(_) => true,
            RequestError::Engine(error) => matches!(
                error,
                EngineError::EmptyInput
                    | EngineError::ContextWindowExceeded { .. }
                    | EngineError::TokenOutOfRange { .. }
            ),
        }
    }
}

/// A loaded model with its tokenizer and template, answering chat and text
/// completion requests one at a time, and the conversation its KV cache holds.
pub struct ChatEngine {
    model: Box<dyn LanguageModel>,
    tokenizer: Tokenizer,
    /// The artifact's config, with `context_window_size` lowered to what the
    /// KV cache holds on this backend, so the context check uses the real limit.
    config: ChatConfig,
    template: ConvTemplate,
    model_id: String,
    /// Positions the KV cache holds.
    capacity: usize,
    /// The conversation on the KV cache after the previous chat request.
    kept: Conversation,
    /// How the previous round ended (`None` after a reset or a failure).
    last_finish: Option<FinishReason>,
    rng: Minstd,
    interrupt: Arc<AtomicBool>,
    /// Awaited after every token (`None`: carry on at once).
    pause: Option<Pause>,
    /// Told about the output as it grows (`None`: nobody watches).
    output_hook: Option<OutputHook>,
    /// The text of the last finished choice (WebLLM's `getMessage`).
    last_message: String,
    /// The counters of the last round, until cleared (`runtimeStatsText`).
    last_round: Option<GenerationStats>,
    /// How this model calls tools (`None`: `tools` are refused).
    tools: Option<ToolFormat>,
    /// The vocabulary indexed for grammars, built by the first request that needs it.
    grammars: Option<GrammarCompiler>,
}

impl ChatEngine {
    /// An engine for `model`, loaded from `artifact`: the tokenizer is read
    /// from the artifact's files and the model id is the artifact's name.
    pub fn new(
        model: Box<dyn LanguageModel>,
        artifact: &Artifact,
    ) -> Result<ChatEngine, EngineSetupError> {
        let tokenizer = Tokenizer::from_bytes(&artifact.file(TOKENIZER_FILE)?)?;
        ChatEngine::from_parts(
            model,
            tokenizer,
            artifact.config.clone(),
            model_id_of(artifact.source()),
        )
    }

    /// An engine from its parts; `model_id` is what responses name.
    pub fn from_parts(
        model: Box<dyn LanguageModel>,
        tokenizer: Tokenizer,
        mut config: ChatConfig,
        model_id: String,
    ) -> Result<ChatEngine, EngineSetupError> {
        let template = tools::with_tool_role(
            config.conv_template.clone().ok_or(EngineSetupError::MissingTemplate)?,
        );
        let capacity = match usize::try_from(config.context_window_size) {
            Ok(window) if window > 0 => window.min(model.context_capacity()),
            _ => model.context_capacity(),
        };
        if config.sliding_window_size == -1 {
            config.context_window_size = capacity as i64;
        }
        let tools = tool_format(&model_id, &template);
        Ok(ChatEngine {
            model,
            tokenizer,
            config,
            template,
            model_id,
            capacity,
            kept: Conversation::default(),
            last_finish: None,
            rng: clock_seeded_rng(),
            interrupt: Arc::new(AtomicBool::new(false)),
            pause: None,
            output_hook: None,
            last_message: String::new(),
            last_round: None,
            tools,
            grammars: None,
        })
    }

    /// Sets what requests await after each generated token.
    pub fn set_pause(&mut self, pause: Pause) {
        self.pause = Some(pause);
    }

    /// Sets (or clears) what is told about the output of the requests that follow.
    pub fn set_output_hook(&mut self, hook: Option<OutputHook>) {
        self.output_hook = hook;
    }

    /// The text of the last finished choice (WebLLM's `getMessage`).
    pub fn last_message(&self) -> &str {
        &self.last_message
    }

    /// The counters of the last round (prompt, prefill and decode), if any
    /// since the last [`clear_stats`](Self::clear_stats).
    pub fn last_round_stats(&self) -> Option<GenerationStats> {
        self.last_round
    }

    /// Forgets the last round's counters (WebLLM's `resetChat(false)`).
    pub fn clear_stats(&mut self) {
        self.last_round = None;
    }

    /// WebLLM's `runtimeStatsText`: `prefill: X tokens/sec, decoding: Y
    /// tokens/sec` with 4 decimals, from the last round (`NaN` when nothing
    /// was measured, as JavaScript prints 0/0).
    pub fn runtime_stats_text(&self) -> String {
        let stats = self.last_round.unwrap_or_default();
        let prefill = stats.prompt_tokens as f64 / stats.prefill_time_s;
        let decoding = stats.decode_tokens as f64 / stats.decode_time_s;
        format!(
            "prefill: {} tokens/sec, decoding: {} tokens/sec",
            js_fixed4(prefill),
            js_fixed4(decoding)
        )
    }

    /// The model id responses carry.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Replaces the model id responses carry (and with it, for WebLLM's Hermes
    /// ids, the tool-call format).
    pub fn set_model_id(&mut self, model_id: String) {
        self.tools = tool_format(&model_id, &self.template);
        self.model_id = model_id;
    }

    /// How this model calls tools (`None`: requests with `tools` are refused).
    pub fn tool_format(&self) -> Option<ToolFormat> {
        self.tools
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The conversation template.
    pub fn template(&self) -> &ConvTemplate {
        &self.template
    }

    /// The model's config (`context_window_size` as this backend holds it).
    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    /// A flag that, once set from anywhere, ends the running request with
    /// `finish_reason: "abort"` at its next step (WebLLM's `interruptGenerate`);
    /// choices not started yet come back empty. Each request clears it first.
    pub fn interrupt_handle(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.interrupt)
    }

    /// Empties the KV cache and forgets the conversation (WebLLM's `resetChat`).
    pub fn reset(&mut self) {
        self.model.reset();
        self.kept = Conversation::default();
        self.last_finish = None;
    }

    /// WebLLM's `forwardTokensAndSample`: feeds `ids` to the model after the
    /// tokens it already holds (a prefill, or one decode step when
    /// `is_prefill` is false) and draws the next token with the model's
    /// sampling defaults from `mlc-chat-config.json`. A prefill starts the
    /// penalties' counts afresh. The kept conversation is forgotten, so the
    /// next chat request prefills its whole prompt on an emptied cache.
    pub async fn forward_tokens_and_sample(
        &mut self,
        ids: &[u32],
        is_prefill: bool,
    ) -> Result<u32, RequestError> {
        if ids.is_empty() {
            return Err(ChatError::Error("inputIds must not be empty".to_string()).into());
        }
        if !is_prefill && ids.len() != 1 {
            return Err(
                ChatError::Error("a decode step takes exactly one token id".to_string()).into()
            );
        }
        let vocab = self.config.vocab_size;
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(ChatError::Error(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            ))
            .into());
        }
        if self.model.position() + ids.len() > self.capacity {
            return Err(ChatError::Error(format!(
                "{} tokens in the context and {} more exceed its {} tokens; call resetChat() first",
                self.model.position(),
                ids.len(),
                self.capacity
            ))
            .into());
        }
        self.kept = Conversation::default();
        self.last_finish = None;
        let sampler = Sampler::new(&self.config, &GenerationConfig::default());
        let counts = if is_prefill { TokenCounts::Start(&[]) } else { TokenCounts::Kept };
        self.queue_step(StepInput::Tokens(ids), counts, &sampler, None)?;
        Ok(self.model.next_queued().await?.token)
    }

    /// `chat.completions.create`: validates the request, runs its choices and
    /// returns the response. When `stream` is set, every chunk WebLLM would
    /// yield goes to `on_chunk` as it is made, and the returned value is the
    /// response the stream adds up to (same id).
    pub async fn chat_completion(
        &mut self,
        request: &ChatCompletionRequest,
        on_chunk: impl FnMut(ChatCompletionChunk),
    ) -> Result<ChatCompletion, RequestError> {
        self.chat(request, &[], on_chunk).await
    }

    /// Continues a chat request whose round was cut short after it generated
    /// `generated` (output ids, after any preloaded ones) and streamed their
    /// text: the prompt and those ids are prefilled on an empty KV cache, the
    /// request's generator is advanced past their draws (one per token) and
    /// penalties count them, so a seeded or greedy request goes on as the
    /// uninterrupted round would have; the stream carries what follows their
    /// text. The request must have one choice (WebLLM's error otherwise).
    pub async fn resume_chat_completion(
        &mut self,
        request: &ChatCompletionRequest,
        generated: &[u32],
        on_chunk: impl FnMut(ChatCompletionChunk),
    ) -> Result<ChatCompletion, RequestError> {
        if request.n.unwrap_or(1) > 1 {
            return Err(ChatError::Error(
                "Resumable generation currently requires n <= 1.".to_string(),
            )
            .into());
        }
        self.chat(request, generated, on_chunk).await
    }

    /// [`chat_completion`](Self::chat_completion), continued after `resumed`
    /// output ids when there are any.
    async fn chat(
        &mut self,
        request: &ChatCompletionRequest,
        resumed: &[u32],
        mut on_chunk: impl FnMut(ChatCompletionChunk),
    ) -> Result<ChatCompletion, RequestError> {
        let started = Instant::now();
        self.interrupt.store(false, Ordering::SeqCst);
        validate_chat_request(request, &self.model_id, self.tools)?;
        let mut plan = self.plan(
            &request.generation,
            request.stream,
            request.stream_options.as_ref(),
            request.n,
            started,
        );
        let structure = self.structure(request)?;
        plan.constraint = structure.constraint;
        plan.tool_calls = structure.parse;
        let enable_thinking = request.extra_body.as_ref().and_then(|extra| extra.enable_thinking);
        let messages = &structure.messages;
        let prepare = |engine: &mut ChatEngine, kept: Kept| {
            engine.prepare_chat(messages, enable_thinking, kept, &plan.stop, resumed)
        };
        let outcome = self
            .run::<ChatChunks>(request.seed, resumed.len(), &plan, &mut on_chunk, prepare)
            .await?;
        let hermes_calling = plan.tool_calls == Some(ToolFormat::Hermes);
        Ok(response::chat_completion(plan.id, outcome, hermes_calling))
    }

    /// `completions.create`: the prompt encoded as-is on an empty KV cache (no
    /// template, no prefix ids); the template's stop tokens and strings still
    /// apply. Streaming as in [`chat_completion`](Self::chat_completion).
    pub async fn completion(
        &mut self,
        request: &CompletionRequest,
        mut on_chunk: impl FnMut(CompletionChunk),
    ) -> Result<Completion, RequestError> {
        let started = Instant::now();
        self.interrupt.store(false, Ordering::SeqCst);
        validate_completion_request(request)?;
        let plan = self.plan(
            &request.generation,
            request.stream,
            request.stream_options.as_ref(),
            request.n,
            started,
        );
        let prepare = |engine: &mut ChatEngine, _kept: Kept| {
            engine.prepare_completion(&request.prompt, &plan.stop)
        };
        let outcome =
            self.run::<TextChunks>(request.seed, 0, &plan, &mut on_chunk, prepare).await?;
        // `echo` only applies to a whole response, as in WebLLM.
        let echo = request.echo == Some(true) && request.stream != Some(true);
        Ok(response::text_completion(plan.id, outcome, echo.then_some(request.prompt.as_str())))
    }
}

/// The model id of an artifact from what was opened: the folder name, or the
/// repository name of a Hugging Face URL (`.../<name>/resolve/<revision>/`).
pub fn model_id_of(source: &str) -> String {
    let mut segments: Vec<&str> =
        source.split(['/', '\\']).filter(|segment| !segment.is_empty()).collect();
    if segments.len() >= 3 && segments[segments.len() - 2] == "resolve" {
        segments.truncate(segments.len() - 2);
    }
    segments.last().map_or_else(|| source.to_string(), |name| name.to_string())
}

/// WebLLM's unseeded generator: seeded with `Date.now()`.
fn clock_seeded_rng() -> Minstd {
    let millis =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis());
    Minstd::new((millis % u128::from(u64::MAX)) as u64)
}

/// Seconds since the Unix epoch.
fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_come_from_folder_names_and_hugging_face_urls() {
        assert_eq!(
            model_id_of("/data/smollm2-135m-instruct-q4f16_1-mlc"),
            "smollm2-135m-instruct-q4f16_1-mlc"
        );
        assert_eq!(model_id_of("/data/model/"), "model");
        assert_eq!(
            model_id_of(
                "https://huggingface.co/mlc-ai/Qwen2.5-0.5B-Instruct-q4f16_1-MLC/resolve/main/"
            ),
            "Qwen2.5-0.5B-Instruct-q4f16_1-MLC"
        );
    }
}
