//! Continuing a chat round that was cut short (the browser module's
//! resumable generation) on tiny-qwen2, CPU engine: the output hook reports
//! the round's ids and text as it grows, and a round resumed after any prefix
//! of those ids goes on exactly as the uninterrupted round did, greedy or
//! seeded with a penalty, streaming only what follows the prefix's text; on
//! the GPU engine too (lavapipe), where the penalties' counts start on the device.

use std::cell::RefCell;
use std::rc::Rc;

use mlc_chat::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatEngine, ChatExtraBody,
    ChatMessage, GenerationConfig,
};
use mlc_conformance::artifacts;
use mlc_engine::gpu::GpuOptions;
use mlc_engine::{load_cpu, load_gpu};
use mlc_kernels::{ContextOptions, GpuContext};
use mlc_loader::{Artifact, OpenOptions};
use pollster::FutureExt as _;

/// tiny-qwen2 on the CPU engine, or on the GPU engine with `gpu`.
fn engine(gpu: bool) -> (ChatEngine, artifacts::TempDir) {
    let dir = artifacts::tiny_qwen2_with_tokenizer();
    let artifact = Artifact::open(dir.path().to_str().unwrap(), OpenOptions::default()).unwrap();
    let engine = match gpu {
        false => ChatEngine::new(Box::new(load_cpu(&artifact).unwrap()), &artifact),
        true => {
            let ctx = GpuContext::new_blocking(&ContextOptions {
                portable_only: true,
                ..Default::default()
            })
            .expect("a GPU adapter (lavapipe in CI)");
            let options =
                GpuOptions { max_rows: 64, context_length: Some(512), ..GpuOptions::default() };
            ChatEngine::new(Box::new(load_gpu(&artifact, ctx, options).unwrap()), &artifact)
        }
    };
    (engine.unwrap(), dir)
}

fn request(generation: GenerationConfig, seed: Option<f64>) -> ChatCompletionRequest {
    ChatCompletionRequest {
        messages: vec![ChatMessage::new("user", "Tell me a story.")],
        stream: Some(true),
        seed,
        generation: GenerationConfig { max_tokens: Some(20), ignore_eos: Some(true), ..generation },
        ..ChatCompletionRequest::default()
    }
}

/// What the output hook reported: `(ids, text, processed)` per call.
type Reports = Rc<RefCell<Vec<(Vec<u32>, String, usize)>>>;

fn watch(engine: &mut ChatEngine) -> Reports {
    let reports: Reports = Rc::default();
    let sink = Rc::clone(&reports);
    engine.set_output_hook(Some(Box::new(move |ids, text, processed| {
        sink.borrow_mut().push((ids.to_vec(), text.to_string(), processed));
    })));
    reports
}

/// Runs `request` (continued after `resumed` ids when there are any) and
/// returns the response and the text its stream carried.
fn run(
    engine: &mut ChatEngine,
    request: &ChatCompletionRequest,
    resumed: &[u32],
) -> (ChatCompletion, String) {
    let mut streamed = String::new();
    let chunks = |chunk: ChatCompletionChunk| {
        streamed.extend(chunk.choices.iter().filter_map(|choice| choice.delta.content.clone()));
    };
    let response = match resumed.is_empty() {
        true => engine.chat_completion(request, chunks).block_on(),
        false => engine.resume_chat_completion(request, resumed, chunks).block_on(),
    };
    (response.unwrap(), streamed)
}

fn content(response: &ChatCompletion) -> &str {
    response.choices[0].message.content.as_deref().unwrap()
}

/// Cuts `request`'s round after 1, 3 and 8 reports of the output hook and
/// checks that each continuation equals the uninterrupted round.
fn resumes_as_if_never_cut(gpu: bool, request: ChatCompletionRequest) {
    let (mut engine, _dir) = engine(gpu);
    let reports = watch(&mut engine);
    let (whole, streamed) = run(&mut engine, &request, &[]);
    let reports = reports.take();
    assert_eq!(streamed, content(&whole));
    // The hook saw every output token, their text, and the tokens processed.
    let ids: Vec<u32> = reports.iter().flat_map(|(ids, _, _)| ids.clone()).collect();
    let generated = whole.usage.completion_tokens;
    assert_eq!(ids.len(), generated, "{reports:?}");
    let prompt_tokens = whole.usage.prompt_tokens;
    assert_eq!(reports.last().unwrap().2, prompt_tokens + generated);
    assert_eq!(
        reports.iter().map(|(_, text, _)| text.as_str()).collect::<String>(),
        content(&whole)
    );
    for cut in [1, 3, 8] {
        let before: Vec<u32> = reports[..cut].iter().flat_map(|(ids, _, _)| ids.clone()).collect();
        let delivered: String = reports[..cut].iter().map(|(_, text, _)| text.as_str()).collect();
        let after = watch(&mut engine);
        let (resumed, rest) = run(&mut engine, &request, &before);
        assert_eq!(format!("{delivered}{rest}"), content(&whole), "cut after {cut} reports");
        assert_eq!(content(&resumed), content(&whole), "cut after {cut} reports");
        assert_eq!(resumed.choices[0].finish_reason, whole.choices[0].finish_reason);
        // The continuation reports only the ids after the cut.
        let later: Vec<u32> = after.borrow().iter().flat_map(|(ids, _, _)| ids.clone()).collect();
        assert_eq!([before, later].concat(), ids, "cut after {cut} reports");
        assert_eq!(resumed.usage.completion_tokens, generated - ids_before(&reports, cut));
    }
}

fn ids_before(reports: &[(Vec<u32>, String, usize)], cut: usize) -> usize {
    reports[..cut].iter().map(|(ids, _, _)| ids.len()).sum()
}

fn greedy() -> ChatCompletionRequest {
    request(GenerationConfig { temperature: Some(0.0), ..GenerationConfig::default() }, None)
}

fn seeded_with_penalties() -> ChatCompletionRequest {
    let generation = GenerationConfig {
        temperature: Some(1.0),
        top_p: Some(0.9),
        repetition_penalty: Some(1.3),
        presence_penalty: Some(0.5),
        ..GenerationConfig::default()
    };
    request(generation, Some(11.0))
}

#[test]
fn a_greedy_round_resumes_as_if_never_cut() {
    resumes_as_if_never_cut(false, greedy());
}

#[test]
fn a_seeded_sampled_round_with_penalties_resumes_as_if_never_cut() {
    resumes_as_if_never_cut(false, seeded_with_penalties());
}

#[test]
fn on_the_gpu_a_seeded_sampled_round_with_penalties_resumes_as_if_never_cut() {
    resumes_as_if_never_cut(true, seeded_with_penalties());
}

#[test]
fn a_round_with_an_empty_thinking_block_resumes_after_it() {
    let mut request = greedy();
    request.extra_body = Some(ChatExtraBody { enable_thinking: Some(false), ..Default::default() });
    resumes_as_if_never_cut(false, request);
}

#[test]
fn a_resumed_request_has_one_choice() {
    let (mut engine, _dir) = engine(false);
    let mut request = greedy();
    request.stream = None;
    request.n = Some(2);
    let error = engine.resume_chat_completion(&request, &[42], |_| {}).block_on().unwrap_err();
    assert_eq!(error.to_string(), "Error: Resumable generation currently requires n <= 1.");
}
