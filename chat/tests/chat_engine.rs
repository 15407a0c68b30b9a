//! The chat engine end to end on the real SmolLM2-135M-Instruct artifact (CPU
//! engine): greedy replies equal the numpy reference, multi-round KV reuse
//! feeds exactly WebLLM's token sequence, streaming adds up to the response,
//! and the stop, interrupt and context-window rules hold.

use std::sync::atomic::Ordering;

use mlc_chat::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatEngine, ChatError, ChatMessage,
    CompletionRequest, FinishReason, GenerationConfig, RequestError, StreamOptions,
};
use mlc_engine::{GreedyOptions, generate_greedy, load_cpu};
use mlc_loader::{Artifact, OpenOptions};

use mlc_conformance::{
    CAPITAL_ANSWER as ANSWER, CAPITAL_QUESTION as QUESTION, ChatReference as Reference,
    SMOLLM2 as MODEL, shared_path, smollm2_chat_reference,
};
use pollster::FutureExt as _;

fn open_artifact() -> Option<Artifact> {
    let dir = shared_path(MODEL)?;
    Some(Artifact::open(dir.to_str().unwrap(), OpenOptions::default()).unwrap())
}

fn engine() -> Option<(ChatEngine, Artifact)> {
    let artifact = open_artifact()?;
    let engine = ChatEngine::new(Box::new(load_cpu(&artifact).unwrap()), &artifact).unwrap();
    Some((engine, artifact))
}

fn reference() -> Reference {
    smollm2_chat_reference().expect("the caller checked ../shared")
}

fn greedy_request(messages: Vec<ChatMessage>, max_tokens: Option<i64>) -> ChatCompletionRequest {
    ChatCompletionRequest {
        messages,
        generation: GenerationConfig {
            temperature: Some(0.0),
            max_tokens,
            ..GenerationConfig::default()
        },
        ..ChatCompletionRequest::default()
    }
}

fn capital_question(system: &str) -> Vec<ChatMessage> {
    vec![ChatMessage::new("system", system), ChatMessage::new("user", QUESTION)]
}

fn content(response: &ChatCompletion) -> &str {
    response.choices[0].message.content.as_deref().unwrap()
}

fn no_chunks(_: ChatCompletionChunk) {
    panic!("a non-streaming request produced a chunk");
}

#[test]
fn a_second_round_reuses_the_kv_cache_exactly_as_webllm() {
    let Some((mut engine, artifact)) = engine() else { return };
    let reference = reference();
    let first = engine
        .chat_completion(&greedy_request(capital_question(&reference.system), None), no_chunks)
        .block_on()
        .unwrap();
    assert_eq!(content(&first), ANSWER);
    assert_eq!(first.choices[0].finish_reason, FinishReason::Stop);
    assert_eq!(first.usage.prompt_tokens, reference.prompt_ids.len());
    assert_eq!(
        first.usage.completion_tokens,
        reference.greedy_ids.len(),
        "every sampled token, the stop token included"
    );

    let follow_up = "And of Germany?";
    let mut messages = capital_question(&reference.system);
    messages.push(ChatMessage::new("assistant", ANSWER));
    messages.push(ChatMessage::new("user", follow_up));
    let second =
        engine.chat_completion(&greedy_request(messages, Some(8)), no_chunks).block_on().unwrap();

    // Only the last round is prefilled, and the separator after the previous
    // reply never is (docs/chat.md, "How WebLLM builds a prompt").
    let tokenizer = engine.tokenizer();
    let mut last_round =
        tokenizer.encode(&format!("<|im_start|>user\n{follow_up}<|im_end|>\n")).unwrap();
    last_round.extend(tokenizer.encode("<|im_start|>assistant\n").unwrap());
    assert_eq!(second.usage.prompt_tokens, last_round.len());

    // A fresh model fed the reused cache's tokens: prompt, the reply's fed
    // tokens (all but the stop token), then the new round.
    let (stop, reply) = reference.greedy_ids.split_last().unwrap();
    let context: Vec<u32> = [&reference.prompt_ids[..], reply, &last_round].concat();
    let mut fresh = load_cpu(&artifact).unwrap();
    let mut expected = generate_greedy(
        &mut fresh,
        &context,
        &GreedyOptions { max_tokens: 8, stop_token_ids: vec![*stop] },
    )
    .block_on()
    .unwrap();
    let stopped = expected.last() == Some(stop);
    if stopped {
        expected.pop();
    }
    assert_eq!(content(&second), tokenizer.decode(&expected).unwrap());
    let reason = if stopped { FinishReason::Stop } else { FinishReason::Length };
    assert_eq!(second.choices[0].finish_reason, reason);
}

#[test]
fn streamed_chunks_add_up_to_the_response() {
    let Some((mut engine, _artifact)) = engine() else { return };
    let reference = reference();
    let mut request = greedy_request(capital_question(&reference.system), None);
    request.stream = Some(true);
    request.stream_options = Some(StreamOptions { include_usage: Some(true) });
    let mut chunks = Vec::new();
    let response = engine.chat_completion(&request, |chunk| chunks.push(chunk)).block_on().unwrap();
    assert_eq!(content(&response), ANSWER);

    let (usage, rest) = chunks.split_last().unwrap();
    let (finish, deltas) = rest.split_last().unwrap();
    assert!(usage.choices.is_empty());
    assert_eq!(usage.usage.as_ref(), Some(&response.usage));
    assert_eq!(finish.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(finish.choices[0].delta.content, None);
    // One delta per sampled token (the stop token's is empty); none held back here.
    assert_eq!(deltas.len(), response.usage.completion_tokens);
    let text: String =
        deltas.iter().map(|chunk| chunk.choices[0].delta.content.clone().unwrap()).collect();
    assert_eq!(text, ANSWER);
    assert!(
        chunks
            .iter()
            .all(|chunk| chunk.id == response.id && chunk.object == "chat.completion.chunk")
    );
}

#[test]
fn max_tokens_ends_with_length_and_the_next_request_starts_afresh() {
    let Some((mut engine, _artifact)) = engine() else { return };
    let reference = reference();
    let cut = engine
        .chat_completion(&greedy_request(capital_question(&reference.system), Some(3)), no_chunks)
        .block_on()
        .unwrap();
    assert_eq!(content(&cut), "The capital of");
    assert_eq!(cut.choices[0].finish_reason, FinishReason::Length);
    assert_eq!(cut.usage.completion_tokens, 3);

    // The cut reply's last token never reached the cache: WebLLM 0.2.86 refuses reuse.
    let mut messages = capital_question(&reference.system);
    messages.push(ChatMessage::new("assistant", content(&cut)));
    messages.push(ChatMessage::new("user", "Go on."));
    let next =
        engine.chat_completion(&greedy_request(messages, Some(1)), no_chunks).block_on().unwrap();
    assert!(
        next.usage.prompt_tokens > reference.prompt_ids.len(),
        "the whole conversation is prefilled again"
    );
}

#[test]
fn an_interrupted_generation_leaves_the_engine_usable() {
    let Some((mut engine, _artifact)) = engine() else { return };
    let reference = reference();
    let interrupt = engine.interrupt_handle();
    let mut request = greedy_request(capital_question(&reference.system), None);
    request.stream = Some(true);
    let mut deltas = 0;
    let aborted = engine
        .chat_completion(&request, |_chunk| {
            deltas += 1;
            if deltas == 2 {
                interrupt.store(true, Ordering::SeqCst);
            }
        })
        .block_on()
        .unwrap();
    assert_eq!(aborted.choices[0].finish_reason, FinishReason::Abort);
    assert_eq!(content(&aborted), "The capital");

    // The same request again: a full prefill and the same reply as a fresh engine.
    let again = engine
        .chat_completion(&greedy_request(capital_question(&reference.system), None), no_chunks)
        .block_on()
        .unwrap();
    assert_eq!(content(&again), ANSWER);
    assert_eq!(again.choices[0].finish_reason, FinishReason::Stop);
    assert_eq!(again.usage.prompt_tokens, reference.prompt_ids.len());
}

#[test]
fn a_prompt_longer_than_the_context_window_is_refused_before_prefill() {
    let Some((mut engine, _artifact)) = engine() else { return };
    let long = "hello ".repeat(9000);
    let request = greedy_request(vec![ChatMessage::new("user", &long)], None);
    let error = engine.chat_completion(&request, no_chunks).block_on().unwrap_err();
    let RequestError::Chat(error @ ChatError::ContextWindowSizeExceeded { .. }) = &error else {
        panic!("expected ContextWindowSizeExceededError, got {error:?}");
    };
    assert_eq!(error.name(), "ContextWindowSizeExceededError");
    assert!(error.message().contains("context window size: 8192"), "{}", error.message());
}

#[test]
fn text_completion_continues_the_raw_prompt_and_seeds_make_sampling_reproducible() {
    let Some((mut engine, _artifact)) = engine() else { return };
    let prompt = "Once upon a time, there was a little";
    let request = |generation: GenerationConfig, seed: Option<f64>| CompletionRequest {
        prompt: prompt.to_string(),
        echo: Some(true),
        seed,
        generation,
        ..CompletionRequest::default()
    };
    let greedy = GenerationConfig {
        temperature: Some(0.0),
        max_tokens: Some(4),
        ..GenerationConfig::default()
    };
    let response =
        engine.completion(&request(greedy, None), |_| panic!("not streaming")).block_on().unwrap();
    // The reference continuation (numpy, greedy) starts " girl named Emma."
    assert_eq!(response.choices[0].text, format!("{prompt} girl named Emma."));
    assert_eq!(response.choices[0].finish_reason, Some(FinishReason::Length));
    assert_eq!(response.usage.as_ref().unwrap().prompt_tokens, 9);

    let sampled = GenerationConfig {
        temperature: Some(1.0),
        top_p: Some(0.9),
        max_tokens: Some(4),
        ..GenerationConfig::default()
    };
    let mut run = || {
        engine
            .completion(&request(sampled.clone(), Some(42.0)), |_| panic!("not streaming"))
            .block_on()
            .unwrap()
    };
    let (a, b) = (run(), run());
    assert_eq!(a.choices[0].text, b.choices[0].text);
}

#[test]
fn invalid_requests_fail_with_webllm_errors_before_generating() {
    let Some((mut engine, _artifact)) = engine() else { return };
    let mut request = greedy_request(vec![ChatMessage::new("user", QUESTION)], None);
    request.generation.temperature = Some(-1.0);
    let error = engine.chat_completion(&request, no_chunks).block_on().unwrap_err();
    let RequestError::Chat(error) = error else { panic!("expected a ChatError") };
    assert_eq!(
        (error.name(), error.message().as_str()),
        ("NonNegativeError", "Make sure temperature >= 0.")
    );
}
