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
//! Requests are `async` because the model's readbacks are (see
//! [`mlc_engine::ModelFuture`]); native callers drive them with
//! `pollster::block_on`. A browser caller also sets a [`Pause`], awaited
//! after every token, so the page keeps painting and an interrupt arrives.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mlc_kernels::cpu::{Minstd, SamplingParams, TokenProbabilities};
use mlc_loader::{Artifact, ChatConfig, ConvTemplate, LoadError};
use std::borrow::Cow;
use web_time::{Instant, SystemTime, UNIX_EPOCH};

use super::conversation::{Conversation, EMPTY_THINKING_BLOCK, can_reuse_kv_cache};
use super::error::ChatError;
use super::grammar::{GrammarCompiler, TokenMatcher};
use super::openai::{
    AssistantMessage, ChatCompletion, ChatCompletionChoice, ChatCompletionChunk,
    ChatCompletionRequest, ChatMessage, ChoiceLogprobs, Completion, CompletionChoice,
    CompletionChunk, CompletionRequest, FinalCalls, FinishReason, GenerationConfig,
    GenerationStats, StreamId, StreamOptions, TokenLogprob, ToolCall, ToolCallDelta, TopLogprob,
    Usage,
};
use super::response_format::grammar_of;
use super::stream::{OutputStream, StopConditions};
use super::tokenizer::{Tokenizer, TokenizerError};
use super::tools::{self, ToolFormat, tool_format};
use super::validate::{check_context_window, validate_chat_request, validate_completion_request};
use mlc_engine::backend::StepInput;
use mlc_engine::sampling::{Drawn, SamplingStep, TokenCounts};
use mlc_engine::{EngineError, LanguageModel, STEPS_AHEAD};

/// The tokenizer file every MLC artifact ships.
const TOKENIZER_FILE: &str = "tokenizer.json";

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
        let choices = outcome
            .choices
            .into_iter()
            .zip(0..)
            .map(|(choice, index)| ChatCompletionChoice {
                index,
                finish_reason: choice.finish_reason,
                message: AssistantMessage {
                    role: "assistant".to_string(),
                    // A tool-call reply has `content: null`, as in WebLLM, and so has any reply
                    // to a Hermes function-calling request (WebLLM's: a partial call array cut by
                    // `max_tokens` is not content). A Qwen reply without calls is text.
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
        Ok(ChatCompletion {
            id: plan.id.id,
            object: "chat.completion".to_string(),
            created: unix_seconds(),
            model: plan.id.model,
            choices,
            usage: outcome.usage,
        })
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
        let choices = outcome
            .choices
            .into_iter()
            .zip(0..)
            .map(|(choice, index)| CompletionChoice {
                index,
                text: if echo { format!("{}{}", request.prompt, choice.text) } else { choice.text },
                finish_reason: Some(choice.finish_reason),
                logprobs: Some(choice.logprobs),
            })
            .collect();
        Ok(Completion {
            id: plan.id.id,
            object: "text_completion".to_string(),
            created: unix_seconds(),
            model: plan.id.model,
            choices,
            usage: Some(outcome.usage),
        })
    }

    /// What a request's fields resolve to.
    fn plan(
        &self,
        generation: &GenerationConfig,
        stream: Option<bool>,
        stream_options: Option<&StreamOptions>,
        n: Option<u32>,
        started: Instant,
    ) -> Plan {
        let streaming = stream == Some(true);
        Plan {
            sampler: Sampler::new(&self.config, generation),
            stop: StopConditions::new(&self.template, generation),
            // WebLLM reads `n` for truthiness: absent and 0 both mean one choice.
            choices: n.unwrap_or(1).max(1),
            id: StreamId {
                id: uuid::Uuid::new_v4().to_string(),
                created: unix_seconds(),
                model: self.model_id.clone(),
            },
            streaming,
            include_usage: streaming
                && stream_options.and_then(|options| options.include_usage) == Some(true),
            started,
            constraint: None,
            tool_calls: None,
        }
    }

    /// What a chat request's `tools` and `response_format` make of it: the
    /// messages to render, the grammar compiled (WebLLM's
    /// `GrammarMatcherInitError` when it does not compile), and whether the
    /// reply is read as tool calls.
    fn structure<'r>(
        &mut self,
        request: &'r ChatCompletionRequest,
    ) -> Result<Structure<'r>, RequestError> {
        let requested = || -> Result<_, ChatError> {
            let grammar = request.response_format.as_ref().map(grammar_of).transpose()?.flatten();
            let kind = request
                .response_format
                .as_ref()
                .and_then(|format| format.kind.as_deref())
                .unwrap_or("text");
            Ok((grammar, kind))
        };
        let (messages, grammar, parse, kind) = match (&request.tools, self.tools) {
            (Some(tools), Some(format)) => {
                let plan = tools::plan(format, request, tools)?;
                // The type WebLLM's error would name: Hermes calls are its `json_object`.
                let kind = if format == ToolFormat::Hermes { "json_object" } else { "grammar" };
                match plan.grammar {
                    Some(grammar) => (Cow::Owned(plan.messages), Some(grammar), plan.parse, kind),
                    // Calls not wanted (Qwen's `tool_choice: "none"`): the response format applies.
                    None => {
                        let (grammar, kind) = requested()?;
                        (Cow::Owned(plan.messages), grammar, plan.parse, kind)
                    }
                }
            }
            _ => {
                let (grammar, kind) = requested()?;
                // Manual function calling on Qwen2.5: its template has no `tool` role, so
                // results go back the way Qwen2.5's own chat template sends them.
                let manual_qwen = self.tools == Some(ToolFormat::Qwen)
                    && !self.template.roles.contains_key("tool")
                    && request.messages.iter().any(|message| message.role == "tool");
                let messages = if manual_qwen {
                    Cow::Owned(tools::qwen_tool_turns(&request.messages))
                } else {
                    Cow::Borrowed(&request.messages[..])
                };
                (messages, grammar, None, kind)
            }
        };
        let constraint = match grammar {
            None => None,
            Some(grammar) => {
                let started = Instant::now();
                let fail =
                    |cause: String| ChatError::GrammarMatcherInit { kind: kind.to_string(), cause };
                let matcher =
                    self.grammar_compiler().map_err(fail)?.matcher(&grammar).map_err(fail)?;
                Some(Constraint { matcher, init_s: started.elapsed().as_secs_f64() })
            }
        };
        Ok(Structure { messages, constraint, parse })
    }

    /// The vocabulary indexed for grammars (built on first use: it reads every
    /// token's bytes). A reply ends at the template's stop tokens.
    fn grammar_compiler(&mut self) -> Result<&GrammarCompiler, String> {
        if self.grammars.is_none() {
            let ends = &self.template.stop_token_ids;
            if ends.is_empty() {
                return Err(
                    "the conversation template has no stop token to end a constrained reply"
                        .to_string(),
                );
            }
            let json = self.tokenizer.to_json().map_err(|error| error.to_string())?;
            self.grammars =
                Some(GrammarCompiler::new(json.as_bytes(), self.config.vocab_size, ends)?);
        }
        Ok(self.grammars.as_ref().expect("built above"))
    }

    /// Runs the choices of a request with `seed` applied (WebLLM seeds once per
    /// request and reseeds from the clock afterwards, whatever happened), past
    /// the draws of `replayed` tokens a cut-short run took already.
    async fn run<K: ChunkKind>(
        &mut self,
        seed: Option<f64>,
        replayed: usize,
        plan: &Plan,
        on_chunk: &mut dyn FnMut(K::Chunk),
        mut prepare: impl FnMut(&mut ChatEngine, Kept) -> Result<Prepared, RequestError>,
    ) -> Result<Outcome, RequestError> {
        if let Some(seed) = seed {
            // Validation accepted only integers; WebLLM leaves negative seeds
            // undefined, here they wrap into range.
            self.rng = Minstd::new(seed.rem_euclid(SEED_MODULUS) as u64);
        }
        for _ in 0..replayed {
            self.rng.next_f32();
        }
        let outcome = self.run_choices::<K>(plan, on_chunk, &mut prepare).await;
        self.rng = clock_seeded_rng();
        outcome
    }

    /// The choices of a request, one after the other, and their usage.
    async fn run_choices<K: ChunkKind>(
        &mut self,
        plan: &Plan,
        on_chunk: &mut dyn FnMut(K::Chunk),
        prepare: &mut impl FnMut(&mut ChatEngine, Kept) -> Result<Prepared, RequestError>,
    ) -> Result<Outcome, RequestError> {
        let mut choices = Vec::with_capacity(plan.choices as usize);
        let mut stats = GenerationStats::default();
        for _ in 0..plan.choices {
            // One interrupt stops every remaining choice, as in WebLLM.
            let choice = match self.interrupt.load(Ordering::SeqCst) {
                true => ChoiceOutcome::aborted(&plan.sampler),
                false => self.run_choice::<K>(plan, on_chunk, prepare).await?,
            };
            stats += choice.stats;
            choices.push(choice);
        }
        let usage = Usage::from_stats(&stats, plan.started.elapsed().as_secs_f64(), None);
        if plan.include_usage {
            on_chunk(K::usage(&plan.id, usage.clone()));
        }
        Ok(Outcome { choices, usage })
    }

    /// One choice: prompt, generation, then the conversation kept for the next request.
    async fn run_choice<K: ChunkKind>(
        &mut self,
        plan: &Plan,
        on_chunk: &mut dyn FnMut(K::Chunk),
        prepare: &mut impl FnMut(&mut ChatEngine, Kept) -> Result<Prepared, RequestError>,
    ) -> Result<ChoiceOutcome, RequestError> {
        let round_start = Instant::now();
        // Forget the kept conversation before anything can fail, so that a
        // failed round makes the next request reset the KV cache.
        let kept =
            Kept { conversation: std::mem::take(&mut self.kept), finish: self.last_finish.take() };
        let prepared = prepare(self, kept)?;
        let mut emit = |text: String, logprobs: Option<ChoiceLogprobs>| {
            if plan.streaming {
                on_chunk(K::delta(&plan.id, text, logprobs));
            }
        };
        let mut matcher = plan.constraint.as_ref().map(|constraint| constraint.matcher.clone());
        let generated = self
            .generate(
                &prepared.ids,
                prepared.output,
                &plan.sampler,
                matcher.as_mut(),
                round_start,
                &mut emit,
            )
            .await?;
        let mut finish_reason = generated.output.finish_reason().unwrap_or(FinishReason::Stop);
        let text = generated.output.text().to_string();
        // As in WebLLM, only a reply that ended by itself is read as tool calls.
        let tool_calls = match plan.tool_calls {
            Some(format) if finish_reason == FinishReason::Stop => {
                tools::parse_calls(format, &text)?
            }
            _ => None,
        };
        if tool_calls.is_some() {
            finish_reason = FinishReason::ToolCalls;
        }
        if plan.streaming {
            let calls = match plan.tool_calls {
                Some(_) => FinalCalls::Calling(tool_calls.as_deref().map(call_deltas)),
                None => FinalCalls::NotCalling,
            };
            on_chunk(K::finish(&plan.id, finish_reason, calls));
        }
        if let Some(mut conversation) = prepared.conversation {
            conversation.finish_reply(&text)?;
            self.kept = conversation;
            self.last_finish = Some(finish_reason);
        }
        let grammar_s = plan
            .constraint
            .as_ref()
            .map(|constraint| (constraint.init_s, generated.grammar_time_s));
        let stats =
            GenerationStats { prompt_tokens: prepared.prompt_tokens, grammar_s, ..generated.stats };
        self.last_message.clone_from(&text);
        self.last_round = Some(stats);
        let logprobs =
            plan.sampler.logprobs.map(|_| ChoiceLogprobs { content: generated.logprobs });
        Ok(ChoiceOutcome { text, finish_reason, logprobs, stats, tool_calls })
    }

    /// A chat round's prompt (WebLLM's `prefill`): reuses the KV cache when the
    /// request's history equals the kept conversation, else resets it. A
    /// round `resumed` after output ids starts afresh and prefills them too.
    fn prepare_chat(
        &mut self,
        messages: &[ChatMessage],
        enable_thinking: Option<bool>,
        kept: Kept,
        stop: &StopConditions,
        resumed: &[u32],
    ) -> Result<Prepared, RequestError> {
        let history = Conversation::from_request(&self.template, messages)?;
        let reuse =
            resumed.is_empty() && can_reuse_kv_cache(&kept.conversation, kept.finish, &history);
        let mut conversation = match reuse {
            true => kept.conversation,
            false => {
                self.model.reset();
                history
            }
        };
        let last = messages.last().ok_or(ChatError::EmptyMessages)?;
        conversation.start_round(&self.template, last, enable_thinking)?;
        let mut prompt = conversation.prompt_tokens(&self.template, &self.tokenizer, !reuse)?;
        prompt.ids.extend_from_slice(resumed);
        self.check_fits(prompt.ids.len())?;
        // WebLLM puts the empty thinking block's ids into the output itself.
        let preloaded = match enable_thinking {
            Some(false) => self.tokenizer.encode(EMPTY_THINKING_BLOCK)?,
            _ => Vec::new(),
        };
        let output =
            OutputStream::resumed(self.tokenizer.clone(), stop.clone(), preloaded, resumed)?;
        Ok(Prepared {
            ids: prompt.ids,
            prompt_tokens: prompt.prompt_tokens,
            output,
            conversation: Some(conversation),
        })
    }

    /// A text completion's prompt: the raw text on an empty KV cache.
    fn prepare_completion(
        &mut self,
        prompt: &str,
        stop: &StopConditions,
    ) -> Result<Prepared, RequestError> {
        self.model.reset();
        let ids = self.tokenizer.encode(prompt)?;
        self.check_fits(ids.len())?;
        let output = OutputStream::new(self.tokenizer.clone(), stop.clone());
        Ok(Prepared { prompt_tokens: ids.len(), ids, output, conversation: None })
    }

    /// WebLLM's context check before prefill. The count includes
    /// `system_prefix_token_ids` (WebLLM leaves them out and would then
    /// overrun the cache by their number).
    fn check_fits(&self, prompt_ids: usize) -> Result<(), ChatError> {
        check_context_window(prompt_ids, self.model.position(), &self.config)
    }

    /// The generation loop (WebLLM's prefill step and decode steps): each
    /// sampled token goes through `output`'s stop rules, then the context
    /// rule; `emit` gets each stream delta; the pause is awaited and then the
    /// interrupt flag is checked before every decode step's token is taken.
    /// With a `matcher`, each step draws only among the tokens its grammar allows.
    ///
    /// Without a grammar each step is queued ahead, before the previous token
    /// is read (see the module docs). Whatever
    /// ends the round, a step still queued is dropped again, so the KV cache
    /// holds what a step-by-step round leaves: the prompt and every output
    /// token but the last.
    async fn generate(
        &mut self,
        prompt: &[u32],
        output: OutputStream,
        sampler: &Sampler,
        matcher: Option<&mut TokenMatcher>,
        round_start: Instant,
        emit: &mut dyn FnMut(String, Option<ChoiceLogprobs>),
    ) -> Result<Generated, RequestError> {
        let generated = self.decode(prompt, output, sampler, matcher, round_start, emit).await;
        self.model.drop_queued();
        generated
    }

    /// The loop of [`generate`](Self::generate), which may leave a step queued.
    ///
    /// Decode time counts, for a step taken on its own, from its start (after
    /// the pause) until its token is on the host; for a step queued ahead,
    /// from the previous token on the host until its own, since the device
    /// runs it while the host handles that token and pauses.
    async fn decode(
        &mut self,
        prompt: &[u32],
        mut output: OutputStream,
        sampler: &Sampler,
        mut matcher: Option<&mut TokenMatcher>,
        round_start: Instant,
        emit: &mut dyn FnMut(String, Option<ChoiceLogprobs>),
    ) -> Result<Generated, RequestError> {
        // A grammar's next mask needs the previous token on the host.
        let pipelined = matcher.is_none();
        let mut logprobs = Vec::new();
        let mut grammar_time_s = 0.0;
        let mut stats = GenerationStats::default();
        // The generator before the draw of each queued step whose token is
        // not taken yet, oldest first: when the round ends, the oldest is
        // restored, so that the request's next choice draws what it would
        // after a step-by-step round.
        let mut untaken: VecDeque<Minstd> = VecDeque::new();
        // Penalties count only the tokens this round generates (not the
        // prompt, nor a preloaded thinking block): the prompt's step starts
        // them empty, and the backend adds each draw, so every later step
        // penalises all tokens before it, read by the host or not.
        // (A resumed round's output so far counts, as it did before the cut.)
        let resumed_counts = token_counts(output.generated_ids());
        let round_counts = TokenCounts::Start(&resumed_counts);
        // What the output hook has been told: the ids up to here, and the
        // prompt's length (the ids fed less the resumed output).
        let mut hooked = output.generated_ids().len();
        let prompt_len = prompt.len() - hooked;
        if pipelined {
            untaken.push_back(self.rng);
            self.queue_step(StepInput::Tokens(prompt), round_counts, sampler, None)?;
        }
        let mut last: Option<u32> = None;
        let mut taken_at = round_start;
        loop {
            let step_started = if pipelined { taken_at } else { Instant::now() };
            let Drawn { token, probabilities } = if pipelined {
                self.queue_ahead(&output, sampler, &mut untaken)?;
                let drawn = self.model.next_queued().await?;
                untaken.pop_front();
                drawn
            } else {
                let fed;
                let (input, counts) = match last {
                    Some(token) => {
                        fed = [token];
                        (StepInput::Tokens(&fed), TokenCounts::Kept)
                    }
                    None => (StepInput::Tokens(prompt), round_counts),
                };
                let mask = next_mask(matcher.as_deref_mut(), &mut grammar_time_s)?;
                self.queue_step(input, counts, sampler, mask.as_deref())?;
                self.model.next_queued().await?
            };
            if let Some(probabilities) = &probabilities {
                logprobs.push(self.token_logprob(token, probabilities)?);
            }
            taken_at = Instant::now();
            match last {
                None => stats.prefill_time_s = (taken_at - round_start).as_secs_f64(),
                Some(_) => {
                    stats.decode_time_s += (taken_at - step_started).as_secs_f64();
                    stats.decode_tokens += 1;
                }
            }
            stats.completion_tokens += 1;
            last = Some(token);
            if let Some(matcher) = matcher.as_deref_mut() {
                let started = Instant::now();
                matcher.accept(token).map_err(grammar_failure)?;
                grammar_time_s += started.elapsed().as_secs_f64();
            }
            output.push(token)?;
            // The last sampled token is never fed, so a full cache ends the
            // round (counted without the steps queued ahead to feed it).
            if self.model.position() - untaken.len() >= self.capacity {
                output.finish(FinishReason::Length);
            }
            if let Some(delta) = output.next_delta() {
                if let Some(hook) = &mut self.output_hook {
                    let ids = output.generated_ids();
                    hook(&ids[hooked..], &delta, prompt_len + ids.len());
                    hooked = ids.len();
                }
                emit(delta, sampler.chunk_logprobs(logprobs.last()));
            }
            if output.finish_reason().is_some() {
                break;
            }
            if let Some(pause) = &self.pause {
                pause().await;
            }
            if self.interrupt.load(Ordering::SeqCst) {
                output.finish(FinishReason::Abort);
                break;
            }
        }
        if let Some(&rng) = untaken.front() {
            self.rng = rng;
        }
        Ok(Generated { output, stats, logprobs, grammar_time_s })
    }

    /// Tops the queue up to [`STEPS_AHEAD`] steps past the one whose token is
    /// taken next, each fed by the token of the newest queued step, unless
    /// the round surely ends before it (`max_tokens` is reached by the steps
    /// already queued, or the context has no room to feed one more); records
    /// in `untaken` the generator before each one's draw.
    fn queue_ahead(
        &mut self,
        output: &OutputStream,
        sampler: &Sampler,
        untaken: &mut VecDeque<Minstd>,
    ) -> Result<(), EngineError> {
        while untaken.len() <= STEPS_AHEAD
            && !output.ends_within(untaken.len())
            && self.model.position() < self.capacity
        {
            untaken.push_back(self.rng);
            self.queue_step(StepInput::Queued, TokenCounts::Kept, sampler, None)?;
        }
        Ok(())
    }

    /// Queues a step fed `input` whose token is chosen where the logits are
    /// (on a GPU only the token id, and the log probabilities asked for, come
    /// back), among those `mask` allows (all without one): a plain argmax
    /// when that is what WebLLM's sampling gives, else bias, penalties,
    /// temperature, top-p and the draw, with the penalties' `counts`.
    fn queue_step(
        &mut self,
        input: StepInput<'_>,
        counts: TokenCounts<'_>,
        sampler: &Sampler,
        mask: Option<&[u32]>,
    ) -> Result<(), EngineError> {
        // WebLLM draws one uniform per token, greedy or not, so a seed gives
        // the same stream whatever the temperature.
        let uniform = self.rng.next_f32();
        if mask.is_none()
            && sampler.greedy_argmax(self.config.active_vocab_size, self.config.vocab_size)
        {
            return self.model.queue_greedy(input);
        }
        let step = SamplingStep {
            params: &sampler.params,
            logit_bias: &sampler.bias,
            counts,
            active_vocab: self.config.active_vocab_size,
            uniform,
            token_mask: mask,
            top_logprobs: sampler.logprobs.unwrap_or(0),
        };
        self.model.queue_sample(input, &step)
    }

    /// A drawn token's log probability and the most likely tokens', from the
    /// probabilities after mask, bias, penalties and temperature (docs/sampling.md, "The chain", step 7),
    /// which the backend reports with the token.
    fn token_logprob(
        &self,
        token: u32,
        probabilities: &TokenProbabilities,
    ) -> Result<TokenLogprob, RequestError> {
        let entry = |id: u32, probability: f32| -> Result<TopLogprob, RequestError> {
            let text = self.tokenizer.decode(&[id])?;
            Ok(TopLogprob {
                bytes: Some(text.as_bytes().to_vec()),
                token: text,
                logprob: f64::from(probability).ln(),
            })
        };
        let sampled = entry(token, probabilities.token)?;
        let top_logprobs = probabilities
            .top
            .iter()
            .map(|&(id, probability)| entry(id, probability))
            .collect::<Result<_, _>>()?;
        Ok(TokenLogprob {
            token: sampled.token,
            bytes: sampled.bytes,
            logprob: sampled.logprob,
            top_logprobs,
        })
    }
}

/// `(token, count)` pairs of `ids`, the penalties' counts of an output.
fn token_counts(ids: &[u32]) -> Vec<(u32, u32)> {
    let mut counts: Vec<(u32, u32)> = Vec::new();
    for &id in ids {
        match counts.iter_mut().find(|(token, _)| *token == id) {
            Some((_, count)) => *count += 1,
            None => counts.push((id, 1)),
        }
    }
    counts
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

/// A request's sampling parameters resolved against the model's defaults.
#[derive(Debug, Clone)]
struct Sampler {
    params: SamplingParams,
    /// `(token id, bias)`, in WebLLM's application order.
    bias: Vec<(u32, f32)>,
    /// `Some(top_logprobs)` when `logprobs` was requested.
    logprobs: Option<usize>,
}

impl Sampler {
    /// Config values, replaced by every field the request sets
    /// (docs/sampling.md, "Parameters"): setting one of the frequency and presence
    /// penalties zeroes the other.
    fn new(config: &ChatConfig, request: &GenerationConfig) -> Sampler {
        let or_config =
            |value: Option<f64>, default: f32| value.map_or(default, |value| value as f32);
        let (frequency_penalty, presence_penalty) =
            match (request.frequency_penalty, request.presence_penalty) {
                (None, None) => (config.frequency_penalty, config.presence_penalty),
                (frequency, presence) => (or_config(frequency, 0.0), or_config(presence, 0.0)),
            };
        let params = SamplingParams {
            temperature: or_config(request.temperature, config.temperature),
            top_p: or_config(request.top_p, config.top_p),
            repetition_penalty: or_config(request.repetition_penalty, config.repetition_penalty),
            presence_penalty,
            frequency_penalty,
        };
        // Ids JS would not find in the logits array (negative, huge) change nothing there either.
        let bias = request
            .logit_bias
            .iter()
            .flat_map(|bias| bias.token_biases())
            .filter_map(|(id, bias)| u32::try_from(id).ok().map(|id| (id, bias as f32)))
            .collect();
        let logprobs = match request.logprobs {
            Some(true) => Some(request.top_logprobs.map_or(0, |top| top.max(0) as usize)),
            _ => None,
        };
        Sampler { params, bias, logprobs }
    }

    /// Whether the device's argmax gives the token WebLLM would sample: greedy,
    /// no bias or penalty to apply, no probabilities wanted, and no padded
    /// vocabulary to mask. (Exactly tied maxima, which WebLLM breaks with the
    /// uniform, go to the lowest id.)
    fn greedy_argmax(&self, active_vocab: Option<usize>, vocab: usize) -> bool {
        self.params.is_greedy()
            && self.bias.is_empty()
            && !self.params.penalties_active()
            && self.logprobs.is_none()
            && active_vocab.is_none_or(|active| active >= vocab)
    }

    /// A delta chunk's `logprobs`: the latest token's entry when requested
    /// (empty with `top_logprobs: 0`, WebLLM's quirk), else `null`.
    fn chunk_logprobs(&self, latest: Option<&TokenLogprob>) -> Option<ChoiceLogprobs> {
        self.logprobs.map(|_| ChoiceLogprobs { content: latest.cloned().into_iter().collect() })
    }
}

/// The grammar mask of the next step (timed into `grammar_time_s`), if any.
fn next_mask(
    matcher: Option<&mut TokenMatcher>,
    grammar_time_s: &mut f64,
) -> Result<Option<Vec<u32>>, RequestError> {
    let Some(matcher) = matcher else { return Ok(None) };
    let started = Instant::now();
    let mask = matcher.mask().map_err(grammar_failure)?;
    *grammar_time_s += started.elapsed().as_secs_f64();
    Ok(Some(mask))
}

/// A grammar matcher failing mid-reply (a sampled token it did not allow, or
/// a dead end): a bug, reported rather than hidden.
fn grammar_failure(cause: String) -> RequestError {
    ChatError::Error(format!("Grammar matcher failed during generation: {cause}")).into()
}

/// Stream deltas of a reply's tool calls (`index` for `id`, as WebLLM streams them).
fn call_deltas(calls: &[ToolCall]) -> Vec<ToolCallDelta> {
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

/// What `tools` and `response_format` made of a chat request.
struct Structure<'r> {
    /// The messages the prompt is built from (rewritten for tool calling).
    messages: Cow<'r, [ChatMessage]>,
    constraint: Option<Constraint>,
    /// How to read tool calls from the reply.
    parse: Option<ToolFormat>,
}

/// A request's compiled grammar: each choice starts from a copy of `matcher`.
struct Constraint {
    matcher: TokenMatcher,
    /// Seconds the compilation took (`usage.extra.grammar_init_s`).
    init_s: f64,
}

/// A request's fields, resolved once for all its choices.
struct Plan {
    sampler: Sampler,
    stop: StopConditions,
    choices: u32,
    /// The response id, shared by all chunks.
    id: StreamId,
    streaming: bool,
    include_usage: bool,
    started: Instant,
    /// The reply's grammar (structured output), if any.
    constraint: Option<Constraint>,
    /// How tool calls are read from the reply, if they are.
    tool_calls: Option<ToolFormat>,
}

/// What the previous request left on the KV cache.
struct Kept {
    conversation: Conversation,
    finish: Option<FinishReason>,
}

/// A round ready to prefill.
struct Prepared {
    /// The ids to prefill.
    ids: Vec<u32>,
    /// `usage.prompt_tokens` of the round.
    prompt_tokens: usize,
    output: OutputStream,
    /// The conversation to close with the reply and keep (chat only).
    conversation: Option<Conversation>,
}

/// The result of the generation loop.
struct Generated {
    output: OutputStream,
    stats: GenerationStats,
    logprobs: Vec<TokenLogprob>,
    /// Seconds spent on grammar masks and matcher updates.
    grammar_time_s: f64,
}

/// One finished choice.
struct ChoiceOutcome {
    text: String,
    finish_reason: FinishReason,
    logprobs: Option<ChoiceLogprobs>,
    stats: GenerationStats,
    /// The calls a tool-calling reply made.
    tool_calls: Option<Vec<ToolCall>>,
}

impl ChoiceOutcome {
    /// A choice skipped because the request was interrupted before it began.
    fn aborted(sampler: &Sampler) -> ChoiceOutcome {
        ChoiceOutcome {
            text: String::new(),
            finish_reason: FinishReason::Abort,
            logprobs: sampler.chunk_logprobs(None),
            stats: GenerationStats::default(),
            tool_calls: None,
        }
    }
}

/// All choices of a request and their summed usage.
struct Outcome {
    choices: Vec<ChoiceOutcome>,
    usage: Usage,
}

/// The chunk type of an API (chat or text completion).
trait ChunkKind {
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
struct ChatChunks;

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
struct TextChunks;

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
fn js_fixed4(value: f64) -> String {
    match value {
        v if v.is_nan() => "NaN".to_string(),
        v if v.is_infinite() => if v > 0.0 { "Infinity" } else { "-Infinity" }.to_string(),
        v => format!("{v:.4}"),
    }
}

/// Seconds since the Unix epoch.
fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

/// WebLLM's unseeded generator: seeded with `Date.now()`.
fn clock_seeded_rng() -> Minstd {
    let millis =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis());
    Minstd::new((millis % u128::from(u64::MAX)) as u64)
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

    #[test]
    fn setting_one_penalty_zeroes_the_other_and_bias_keys_parse_as_in_js() {
        let config = ChatConfig::from_json(
            r#"{"model_type": "llama", "quantization": "q4f16_1", "vocab_size": 32,
                "temperature": 0.7, "top_p": 0.8, "frequency_penalty": 0.5, "presence_penalty": 0.25}"#,
        )
        .unwrap();
        let defaults = Sampler::new(&config, &GenerationConfig::default());
        assert_eq!(
            (defaults.params.frequency_penalty, defaults.params.presence_penalty),
            (0.5, 0.25)
        );
        assert_eq!((defaults.params.temperature, defaults.params.top_p), (0.7, 0.8));
        let request: GenerationConfig =
            serde_json::from_str(r#"{"presence_penalty": 1.0, "temperature": 0, "logit_bias": {"7": 2, "-1": 5, "3x": -1}}"#).unwrap();
        let sampler = Sampler::new(&config, &request);
        assert_eq!((sampler.params.frequency_penalty, sampler.params.presence_penalty), (0.0, 1.0));
        assert_eq!(sampler.params.temperature, 0.0);
        assert_eq!(sampler.bias, vec![(7, 2.0), (3, -1.0)]);
        assert!(
            !sampler.greedy_argmax(None, 32),
            "a bias needs the sampling chain, not a plain argmax"
        );
    }
}
