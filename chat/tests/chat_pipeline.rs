//! The chat engine queues decode steps ahead (step N + 1 fed on the device by
//! token N before the host reads token N) and must still produce what one
//! step at a time produces: the same tokens for a seed, the same finish, the
//! same KV cache position (multi-round reuse depends on it) and the same
//! draws for the request's next choice. The step-by-step reference is
//! `greedy_next`/`sample_next` in a loop on a fresh model, one uniform per
//! token from WebLLM's generator; for rounds with penalties, logit bias and
//! log probabilities, WebLLM's chain on the host over each step's logits
//! read back (what the engine did before such rounds were pipelined). On
//! tiny-qwen2 (random weights, Qwen2.5's tokenizer), on the CPU engine and on
//! the GPU (lavapipe in CI).

use mlc_conformance::artifacts;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use artifacts::fixture;
use mlc_chat::{
    ChatCompletionRequest, ChatEngine, ChatMessage, Completion, CompletionRequest, Conversation,
    FinishReason, GenerationConfig, TokenLogprob, Tokenizer,
};
use mlc_engine::backend::{Backend, StepInput};
use mlc_engine::gpu::GpuOptions;
use mlc_engine::models::ModelSpec;
use mlc_engine::models::decoder::Trace;
use mlc_engine::sampling::{Drawn, SamplingStep, TokenCounts};
use mlc_engine::{EngineError, LanguageModel, Model, ModelFuture, load_cpu, load_gpu};
use mlc_kernels::cpu::{self, Minstd, SamplingParams, TokenProbabilities};
use mlc_kernels::{ContextOptions, GpuContext};
use mlc_loader::{Artifact, ChatConfig, OpenOptions};
use pollster::FutureExt as _;

const PROMPT: &str = "Once upon a time";
const SEED: u64 = 7;

fn artifact() -> Artifact {
    Artifact::open(&fixture("tiny-qwen2").join("mlc").to_string_lossy(), OpenOptions::default())
        .unwrap()
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_bytes(
        &std::fs::read(fixture("tokenizers").join("qwen2.5-0.5b-instruct.tokenizer.json")).unwrap(),
    )
    .unwrap()
}

/// What a [`Spy`] saw of the engine's calls.
#[derive(Debug, Default)]
struct Seen {
    /// Tokens in the KV cache after the last call.
    position: usize,
    /// Steps queued fed by the token the previous step left on the device.
    queued_ahead: usize,
}

/// A model that reports its KV cache position and the steps queued ahead.
struct Spy<B: Backend> {
    model: Model<B>,
    seen: Rc<RefCell<Seen>>,
}

impl<B: Backend> Spy<B> {
    /// Records the position after a call and passes its result on.
    fn noted<T>(&self, result: T) -> T {
        self.seen.borrow_mut().position = self.model.position();
        result
    }

    fn count(&self, input: StepInput<'_>) {
        if matches!(input, StepInput::Queued) {
            self.seen.borrow_mut().queued_ahead += 1;
        }
    }
}

impl<B: Backend> LanguageModel for Spy<B> {
    fn spec(&self) -> &ModelSpec {
        self.model.spec()
    }

    fn position(&self) -> usize {
        self.model.position()
    }

    fn context_capacity(&self) -> usize {
        self.model.context_capacity()
    }

    fn prefill<'a>(&'a mut self, tokens: &'a [u32]) -> ModelFuture<'a, Vec<f32>> {
        Box::pin(async move {
            let logits = self.model.prefill(tokens).await;
            self.noted(logits)
        })
    }

    fn greedy_next<'a>(&'a mut self, tokens: &'a [u32]) -> ModelFuture<'a, u32> {
        Box::pin(async move {
            let token = self.model.greedy_next(tokens).await;
            self.noted(token)
        })
    }

    fn queue_greedy(&mut self, input: StepInput<'_>) -> Result<(), EngineError> {
        self.count(input);
        let queued = self.model.queue_greedy(input);
        self.noted(queued)
    }

    fn queue_sample(
        &mut self,
        input: StepInput<'_>,
        step: &SamplingStep<'_>,
    ) -> Result<(), EngineError> {
        self.count(input);
        let queued = self.model.queue_sample(input, step);
        self.noted(queued)
    }

    fn next_queued(&mut self) -> ModelFuture<'_, Drawn> {
        Box::pin(async move {
            let token = self.model.next_queued().await;
            self.noted(token)
        })
    }

    fn drop_queued(&mut self) {
        self.model.drop_queued();
        self.noted(())
    }

    fn sample_next<'a>(
        &'a mut self,
        tokens: &'a [u32],
        step: &'a SamplingStep<'a>,
    ) -> ModelFuture<'a, Drawn> {
        Box::pin(async move {
            let token = self.model.sample_next(tokens, step).await;
            self.noted(token)
        })
    }

    fn score<'a>(&'a mut self, tokens: &'a [u32]) -> ModelFuture<'a, Vec<f32>> {
        Box::pin(async move {
            let logits = self.model.score(tokens).await;
            self.noted(logits)
        })
    }

    fn trace(&mut self, tokens: &[u32]) -> Result<(Vec<f32>, Trace), EngineError> {
        let traced = self.model.trace(tokens);
        self.noted(traced)
    }

    fn reset(&mut self) {
        self.model.reset();
        self.noted(())
    }
}

/// A chat engine on `model` with tiny-qwen2's config as `edit` leaves it, and what its model sees.
fn engine<B: Backend + 'static>(
    model: Model<B>,
    edit: impl FnOnce(&mut ChatConfig),
) -> (ChatEngine, Rc<RefCell<Seen>>) {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let mut config = artifact().config;
    edit(&mut config);
    let spy = Spy { model, seen: Rc::clone(&seen) };
    (
        ChatEngine::from_parts(Box::new(spy), tokenizer(), config, "tiny-qwen2".to_string())
            .unwrap(),
        seen,
    )
}

/// Engines on the GPU (the portable path, lavapipe in CI; with its spy) and
/// on the CPU, over the same artifact.
fn gpu_and_cpu_engines() -> ((ChatEngine, Rc<RefCell<Seen>>), ChatEngine) {
    let artifact = artifact();
    let ctx =
        GpuContext::new_blocking(&ContextOptions { portable_only: true, ..Default::default() })
            .expect("a GPU adapter (lavapipe in CI)");
    let gpu = load_gpu(
        &artifact,
        ctx,
        GpuOptions { max_rows: 64, context_length: Some(512), ..GpuOptions::default() },
    )
    .unwrap();
    (engine(gpu, |_| {}), engine(load_cpu(&artifact).unwrap(), |_| {}).0)
}

/// Ends replies at `token` instead of the template's stop tokens.
fn stopping_at(token: u32) -> impl FnOnce(&mut ChatConfig) {
    move |config| config.conv_template.as_mut().unwrap().stop_token_ids = vec![token]
}

fn greedy() -> GenerationConfig {
    GenerationConfig { temperature: Some(0.0), ..GenerationConfig::default() }
}

fn sampled() -> GenerationConfig {
    GenerationConfig { temperature: Some(0.8), top_p: Some(0.9), ..GenerationConfig::default() }
}

/// The sampling parameters a request of [`greedy`] or [`sampled`] resolves to on tiny-qwen2.
fn params(generation: &GenerationConfig) -> SamplingParams {
    SamplingParams {
        temperature: generation.temperature.unwrap() as f32,
        top_p: generation.top_p.unwrap_or(1.0) as f32,
        ..SamplingParams::default()
    }
}

fn completion(generation: &GenerationConfig, max_tokens: Option<i64>, n: u32) -> CompletionRequest {
    CompletionRequest {
        prompt: PROMPT.to_string(),
        seed: Some(SEED as f64),
        n: Some(n),
        generation: GenerationConfig { max_tokens, ..generation.clone() },
        ..CompletionRequest::default()
    }
}

fn complete(engine: &mut ChatEngine, request: &CompletionRequest) -> Completion {
    engine.completion(request, |_| panic!("not streaming")).block_on().unwrap()
}

/// When a step-by-step round stops.
struct Stops<'a> {
    max_tokens: usize,
    stop_tokens: &'a [u32],
    capacity: usize,
}

impl Stops<'_> {
    /// tiny-qwen2's template stop tokens and context window, after at most `max_tokens`.
    fn template(max_tokens: usize) -> Stops<'static> {
        Stops { max_tokens, stop_tokens: &[151643, 151645], capacity: 4096 }
    }
}

/// One round's tokens as the engine took them before steps were queued ahead:
/// each step fed the previous token and waited for, one uniform per token
/// drawn from `rng`, until a stop token, `max_tokens` or a full context.
fn step_by_step(
    model: &mut dyn LanguageModel,
    prompt: &[u32],
    params: &SamplingParams,
    rng: &mut Minstd,
    stops: &Stops<'_>,
) -> Vec<u32> {
    let mut tokens = Vec::new();
    let mut fed = prompt.to_vec();
    loop {
        let step = SamplingStep {
            params,
            logit_bias: &[],
            counts: TokenCounts::Start(&[]),
            active_vocab: Some(151936),
            uniform: rng.next_f32(),
            token_mask: None,
            top_logprobs: 0,
        };
        let token = match params.is_greedy() {
            true => model.greedy_next(&fed).block_on().unwrap(),
            false => model.sample_next(&fed, &step).block_on().unwrap().token,
        };
        tokens.push(token);
        if stops.stop_tokens.contains(&token)
            || tokens.len() >= stops.max_tokens
            || model.position() >= stops.capacity
        {
            return tokens;
        }
        fed = vec![token];
    }
}

/// The reply text of `tokens`: a final stop token is not part of it.
fn text(tokens: &[u32], stop_tokens: &[u32]) -> String {
    let shown = match tokens.split_last() {
        Some((last, rest)) if stop_tokens.contains(last) => rest,
        _ => tokens,
    };
    tokenizer().decode(shown).unwrap()
}

/// The first token of `tokens` from the fourth on that did not come before:
/// its index and id (a stop token that ends a round there).
fn fresh_token(tokens: &[u32]) -> (usize, u32) {
    (3..tokens.len())
        .find(|&i| !tokens[..i].contains(&tokens[i]))
        .map(|i| (i, tokens[i]))
        .expect("a token not seen before")
}

#[test]
fn queued_ahead_completions_draw_the_step_by_step_tokens_and_leave_its_context() {
    let artifact = artifact();
    let prompt = tokenizer().encode(PROMPT).unwrap();
    for generation in [greedy(), sampled()] {
        let what = format!("T = {:?}", generation.temperature);
        let stops = Stops::template(12);
        let want = step_by_step(
            &mut load_cpu(&artifact).unwrap(),
            &prompt,
            &params(&generation),
            &mut Minstd::new(SEED),
            &stops,
        );
        assert_eq!(want.len(), 12, "{what}: the reference runs to max_tokens");

        let (mut engine, seen) = engine(load_cpu(&artifact).unwrap(), |_| {});
        let response = complete(&mut engine, &completion(&generation, Some(12), 1));
        assert_eq!(response.choices[0].text, text(&want, stops.stop_tokens), "{what}");
        assert_eq!(response.choices[0].finish_reason, Some(FinishReason::Length), "{what}");
        assert_eq!(response.usage.as_ref().unwrap().completion_tokens, 12, "{what}");
        let seen = seen.borrow();
        assert_eq!(
            seen.position,
            prompt.len() + 11,
            "{what}: the prompt and every token but the last are in the cache"
        );
        assert_eq!(
            seen.queued_ahead, 11,
            "{what}: every decode step is queued ahead, none past max_tokens"
        );
    }
}

#[test]
fn a_stop_token_drops_the_step_queued_past_it_and_its_draw() {
    let artifact = artifact();
    let prompt = tokenizer().encode(PROMPT).unwrap();
    let generation = sampled();
    let params = params(&generation);
    let free = step_by_step(
        &mut load_cpu(&artifact).unwrap(),
        &prompt,
        &params,
        &mut Minstd::new(SEED),
        &Stops::template(12),
    );
    let (end, stop) = fresh_token(&free);

    // Two choices draw from one generator: the second shows whether the
    // first one's dropped step gave its uniform back.
    let stops = Stops { max_tokens: 12, stop_tokens: &[stop], capacity: 4096 };
    let mut reference = load_cpu(&artifact).unwrap();
    let mut rng = Minstd::new(SEED);
    let first = step_by_step(&mut reference, &prompt, &params, &mut rng, &stops);
    reference.reset();
    let second = step_by_step(&mut reference, &prompt, &params, &mut rng, &stops);
    assert_eq!(first.len(), end + 1, "the first choice stops at the chosen token");

    let (mut engine, seen) = engine(load_cpu(&artifact).unwrap(), stopping_at(stop));
    let response = complete(&mut engine, &completion(&generation, Some(12), 2));
    assert_eq!(response.choices[0].text, text(&first, &[stop]));
    assert_eq!(response.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(
        response.choices[1].text,
        text(&second, &[stop]),
        "the second choice draws on as step by step"
    );
    assert_eq!(response.usage.as_ref().unwrap().completion_tokens, first.len() + second.len());
    assert_eq!(
        seen.borrow().position,
        prompt.len() + second.len() - 1,
        "the cache after the second choice"
    );
}

#[test]
fn a_full_context_window_ends_the_round_where_step_by_step_does() {
    let artifact = artifact();
    let prompt = tokenizer().encode(PROMPT).unwrap();
    let capacity = prompt.len() + 6;
    for generation in [greedy(), sampled()] {
        let what = format!("T = {:?}", generation.temperature);
        let stops = Stops { capacity, ..Stops::template(usize::MAX) };
        let want = step_by_step(
            &mut load_cpu(&artifact).unwrap(),
            &prompt,
            &params(&generation),
            &mut Minstd::new(SEED),
            &stops,
        );
        assert_eq!(want.len(), 7, "{what}: six tokens fed after the prompt, the seventh never is");

        let (mut engine, seen) = engine(load_cpu(&artifact).unwrap(), |config| {
            config.context_window_size = capacity as i64
        });
        let response = complete(&mut engine, &completion(&generation, None, 1));
        assert_eq!(response.choices[0].text, text(&want, stops.stop_tokens), "{what}");
        assert_eq!(response.choices[0].finish_reason, Some(FinishReason::Length), "{what}");
        assert_eq!(response.usage.as_ref().unwrap().completion_tokens, 7, "{what}");
        assert_eq!(seen.borrow().position, capacity, "{what}: the cache is full, never past it");
    }
}

#[test]
fn a_round_after_a_queued_ahead_round_reuses_the_kv_cache_as_a_fresh_model_sees_it() {
    let artifact = artifact();
    let tokenizer = tokenizer();
    let template = artifact.config.conv_template.clone().unwrap();
    let generation = GenerationConfig { max_tokens: Some(12), ..sampled() };
    let params = params(&generation);
    let chat = |messages: &[ChatMessage]| ChatCompletionRequest {
        messages: messages.to_vec(),
        seed: Some(SEED as f64),
        generation: generation.clone(),
        ..ChatCompletionRequest::default()
    };
    // The round's prompt ids, as the engine renders them.
    let prompt_ids = |messages: &[ChatMessage], first_round: bool| {
        let mut conversation = Conversation::from_request(&template, messages).unwrap();
        conversation.start_round(&template, messages.last().unwrap(), None).unwrap();
        conversation.prompt_tokens(&template, &tokenizer, first_round).unwrap().ids
    };

    let mut messages = vec![ChatMessage::new("user", "Tell me a story.")];
    let first_prompt = prompt_ids(&messages, true);
    let free = step_by_step(
        &mut load_cpu(&artifact).unwrap(),
        &first_prompt,
        &params,
        &mut Minstd::new(SEED),
        &Stops::template(12),
    );
    // The first reply must end by itself for the second round to reuse the cache.
    let (end, stop) = fresh_token(&free);
    let (mut engine, seen) = engine(load_cpu(&artifact).unwrap(), stopping_at(stop));
    let first =
        engine.chat_completion(&chat(&messages), |_| panic!("not streaming")).block_on().unwrap();
    assert_eq!(first.choices[0].finish_reason, FinishReason::Stop);
    let reply = first.choices[0].message.content.clone().unwrap();
    assert_eq!(reply, tokenizer.decode(&free[..end]).unwrap());
    assert_eq!(seen.borrow().position, first_prompt.len() + end);

    messages.push(ChatMessage::new("assistant", &reply));
    messages.push(ChatMessage::new("user", "Go on."));
    let second_prompt = prompt_ids(&messages, false);
    let second =
        engine.chat_completion(&chat(&messages), |_| panic!("not streaming")).block_on().unwrap();
    assert_eq!(second.usage.prompt_tokens, second_prompt.len(), "only the new round is prefilled");

    // A fresh model fed what the reused cache holds: the first prompt, the
    // reply's fed tokens (all but the stop token), then the new round.
    let context = [&first_prompt[..], &free[..end], &second_prompt].concat();
    let stops = Stops { max_tokens: 12, stop_tokens: &[stop], capacity: 4096 };
    let want = step_by_step(
        &mut load_cpu(&artifact).unwrap(),
        &context,
        &params,
        &mut Minstd::new(SEED),
        &stops,
    );
    assert_eq!(second.choices[0].message.content.as_deref(), Some(text(&want, &[stop]).as_str()));
    assert_eq!(seen.borrow().position, context.len() + want.len() - 1);
}

#[test]
fn gpu_rounds_queued_ahead_draw_the_cpu_engines_tokens() {
    let ((mut on_gpu, seen), mut on_cpu) = gpu_and_cpu_engines();
    for generation in [sampled(), greedy()] {
        let request = completion(&generation, Some(10), 1);
        let (want, got) = (complete(&mut on_cpu, &request), complete(&mut on_gpu, &request));
        assert_eq!(got.choices[0].text, want.choices[0].text, "T = {:?}", generation.temperature);
        assert_eq!(got.usage.as_ref().unwrap().completion_tokens, 10);
    }
    assert_eq!(seen.borrow().queued_ahead, 18, "both rounds queued every decode step ahead");
}

/// A request with penalties, a logit bias and log probabilities, and what it
/// resolves to on tiny-qwen2: its sampling parameters and bias pairs.
struct Processed {
    name: &'static str,
    generation: GenerationConfig,
    params: SamplingParams,
    bias: Vec<(u32, f32)>,
    top: usize,
}

/// The rounds that used to go step by step: the model's default sampling
/// (greedy with `repetition_penalty` 1.1), strong penalties with a bias and
/// log probabilities, greedy and sampled.
fn processed_requests() -> Vec<Processed> {
    let request = |json: serde_json::Value| -> GenerationConfig {
        serde_json::from_value(json).expect("a generation config")
    };
    let params = |temperature: f32, top_p: f32, repetition: f32, presence: f32, frequency: f32| {
        SamplingParams {
            temperature,
            top_p,
            repetition_penalty: repetition,
            presence_penalty: presence,
            frequency_penalty: frequency,
        }
    };
    vec![
        Processed {
            name: "default chat sampling",
            generation: request(serde_json::json!({"temperature": 0, "repetition_penalty": 1.1})),
            params: params(0.0, 1.0, 1.1, 0.0, 0.0),
            bias: vec![],
            top: 0,
        },
        Processed {
            name: "greedy, penalties, bias, top_logprobs 5",
            generation: request(serde_json::json!({
                "temperature": 0, "repetition_penalty": 1.5, "frequency_penalty": 1.0,
                "logit_bias": {"9707": 1.5, "13": -2}, "logprobs": true, "top_logprobs": 5
            })),
            params: params(0.0, 1.0, 1.5, 0.0, 1.0),
            bias: vec![(9707, 1.5), (13, -2.0)],
            top: 5,
        },
        Processed {
            name: "sampled, penalties, bias, top_logprobs 3",
            generation: request(serde_json::json!({
                "temperature": 0.8, "top_p": 0.9, "repetition_penalty": 1.3,
                "presence_penalty": 0.6, "logit_bias": {"9707": 2}, "logprobs": true,
                "top_logprobs": 3
            })),
            params: params(0.8, 0.9, 1.3, 0.6, 0.0),
            bias: vec![(9707, 2.0)],
            top: 3,
        },
    ]
}

/// One round as the engine took such rounds before they were pipelined: each
/// step fed the previous token and its logits read back, then on the host the
/// bias, the penalties of the tokens generated so far, the softmax with
/// temperature, top-p and the draw, and the probabilities reported from the
/// softmax; one uniform per token from `rng`.
fn on_host(
    model: &mut dyn LanguageModel,
    prompt: &[u32],
    request: &Processed,
    rng: &mut Minstd,
    stops: &Stops<'_>,
) -> Vec<(u32, TokenProbabilities)> {
    let mut drawn = Vec::new();
    let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
    let mut fed = prompt.to_vec();
    loop {
        let uniform = rng.next_f32();
        let mut logits = model.prefill(&fed).block_on().unwrap();
        cpu::apply_logit_bias(&mut logits, &request.bias);
        let appeared: Vec<(u32, u32)> = counts.iter().map(|(&id, &n)| (id, n)).collect();
        cpu::apply_penalties(&mut logits, &appeared, &request.params);
        let probs =
            cpu::softmax_with_temperature(&logits, request.params.temperature, Some(151936));
        let token = cpu::sample_from(&cpu::top_p_filter(&probs, request.params.top_p), uniform);
        drawn.push((token, cpu::token_probabilities(&probs, token, request.top)));
        *counts.entry(token).or_default() += 1;
        if stops.stop_tokens.contains(&token) || drawn.len() >= stops.max_tokens {
            return drawn;
        }
        fed = vec![token];
    }
}

/// The reply's log probabilities (empty when the request asked for none).
fn logprobs_of(response: &Completion) -> Vec<TokenLogprob> {
    response.choices[0].logprobs.clone().flatten().map_or_else(Vec::new, |l| l.content)
}

#[test]
fn pipelined_rounds_with_penalties_bias_and_logprobs_match_the_host_chain() {
    let artifact = artifact();
    let tokenizer = tokenizer();
    let prompt = tokenizer.encode(PROMPT).unwrap();
    let stops = Stops::template(12);
    for request in processed_requests() {
        let what = request.name;
        let want = on_host(
            &mut load_cpu(&artifact).unwrap(),
            &prompt,
            &request,
            &mut Minstd::new(SEED),
            &stops,
        );
        let tokens: Vec<u32> = want.iter().map(|&(token, _)| token).collect();
        assert_eq!(tokens.len(), 12, "{what}: the reference runs to max_tokens");
        let unpenalised = Processed {
            name: request.name,
            top: request.top,
            params: SamplingParams {
                temperature: request.params.temperature,
                top_p: request.params.top_p,
                ..SamplingParams::default()
            },
            bias: vec![],
            generation: GenerationConfig::default(),
        };
        let free = on_host(
            &mut load_cpu(&artifact).unwrap(),
            &prompt,
            &unpenalised,
            &mut Minstd::new(SEED),
            &stops,
        );
        assert_ne!(
            free.iter().map(|&(token, _)| token).collect::<Vec<_>>(),
            tokens,
            "{what}: the penalties and bias must change the reply for this test to see them"
        );

        let (mut engine, seen) = engine(load_cpu(&artifact).unwrap(), |_| {});
        let response = complete(&mut engine, &completion(&request.generation, Some(12), 1));
        assert_eq!(response.choices[0].text, text(&tokens, stops.stop_tokens), "{what}");
        assert_eq!(seen.borrow().queued_ahead, 11, "{what}: every decode step is queued ahead");
        assert_eq!(seen.borrow().position, prompt.len() + 11, "{what}: the cache");
        let logprobs = logprobs_of(&response);
        assert_eq!(logprobs.len(), if request.top > 0 { 12 } else { 0 }, "{what}");
        // The CPU engine computes them with the same f32 code: bit for bit.
        for (i, (entry, (token, probs))) in logprobs.iter().zip(&want).enumerate() {
            assert_eq!(entry.token, tokenizer.decode(&[*token]).unwrap(), "{what}: token {i}");
            assert_eq!(entry.logprob, f64::from(probs.token).ln(), "{what}: token {i}");
            let top: Vec<(String, f64)> =
                entry.top_logprobs.iter().map(|top| (top.token.clone(), top.logprob)).collect();
            let want_top: Vec<(String, f64)> = probs
                .top
                .iter()
                .map(|&(id, p)| (tokenizer.decode(&[id]).unwrap(), f64::from(p).ln()))
                .collect();
            assert_eq!(top, want_top, "{what}: top_logprobs of token {i}");
        }
    }
}

#[test]
fn gpu_rounds_with_penalties_bias_and_logprobs_are_pipelined_and_match_the_cpu_engine() {
    let ((mut on_gpu, seen), mut on_cpu) = gpu_and_cpu_engines();
    let requests = processed_requests();
    for request in &requests {
        let what = request.name;
        let completion = completion(&request.generation, Some(10), 1);
        let (want, got) = (complete(&mut on_cpu, &completion), complete(&mut on_gpu, &completion));
        assert_eq!(got.choices[0].text, want.choices[0].text, "{what}");
        assert_eq!(got.usage.as_ref().unwrap().completion_tokens, 10, "{what}");
        let (want, got) = (logprobs_of(&want), logprobs_of(&got));
        assert_eq!(got.len(), want.len(), "{what}");
        // The GPU sums the softmax in a tree, the CPU in id order over 151936
        // ids (their probabilities differ by ~1e-4 relative), and keeps keys and
        // values in f16 (a q4f16 model's cache, as MLC's), the CPU in f32: the
        // log-probabilities differ by up to 2.6e-3 here.
        let close = |a: f64, b: f64| a == b || (a - b).abs() <= 5e-3;
        for (i, (got, want)) in got.iter().zip(&want).enumerate() {
            assert_eq!(got.token, want.token, "{what}: token {i}");
            assert!(
                close(got.logprob, want.logprob),
                "{what}: token {i}: {} vs {}",
                got.logprob,
                want.logprob
            );
            assert_eq!(got.top_logprobs.len(), want.top_logprobs.len(), "{what}: token {i}");
            for (got, want) in got.top_logprobs.iter().zip(&want.top_logprobs) {
                assert_eq!(got.token, want.token, "{what}: top_logprobs of token {i}");
                assert!(
                    close(got.logprob, want.logprob),
                    "{what}: token {i}: {} vs {}",
                    got.logprob,
                    want.logprob
                );
            }
        }
    }
    assert_eq!(
        seen.borrow().queued_ahead,
        9 * requests.len(),
        "every decode step was queued ahead"
    );

    // A grammar round goes step by step, with the same counts kept by the backend.
    let chat: ChatCompletionRequest = serde_json::from_value(serde_json::json!({
        "messages": [{"role": "user", "content": "Give me a JSON object."}],
        "response_format": {"type": "json_object"},
        "seed": SEED, "max_tokens": 8, "temperature": 0, "repetition_penalty": 1.5,
        "frequency_penalty": 1.0, "logprobs": true, "top_logprobs": 4
    }))
    .unwrap();
    let reply = |engine: &mut ChatEngine| {
        engine.chat_completion(&chat, |_| panic!("not streaming")).block_on().unwrap()
    };
    let (want, got) = (reply(&mut on_cpu), reply(&mut on_gpu));
    assert_eq!(got.choices[0].message.content, want.choices[0].message.content, "grammar round");
    let (want, got) = (want.choices[0].logprobs.clone(), got.choices[0].logprobs.clone());
    let (want, got) = (want.unwrap().content, got.unwrap().content);
    assert_eq!(got.len(), 8, "grammar round: a log probability per token");
    for (i, (got, want)) in got.iter().zip(&want).enumerate() {
        assert_eq!(got.token, want.token, "grammar round: token {i}");
        assert!((got.logprob - want.logprob).abs() <= 1e-3, "grammar round: token {i}");
        let ids = |entry: &TokenLogprob| {
            entry.top_logprobs.iter().map(|top| top.token.clone()).collect::<Vec<_>>()
        };
        assert_eq!(ids(got), ids(want), "grammar round: top_logprobs of token {i}");
    }
    assert_eq!(
        seen.borrow().queued_ahead,
        9 * requests.len(),
        "no step of a grammar round is queued ahead"
    );
}
