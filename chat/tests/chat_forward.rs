//! WebLLM's `forwardTokensAndSample` on the chat engine (tiny-qwen2, CPU
//! engine): token ids in, the next token out, the context growing as a
//! generation's does.

use mlc_conformance::artifacts;

use mlc_chat::{ChatEngine, Tokenizer};
use mlc_engine::{LanguageModel as _, load_cpu};
use mlc_loader::{Artifact, OpenOptions};
use pollster::FutureExt as _;

/// tiny-qwen2 as a chat engine whose config samples greedily (temperature 0), and the artifact.
fn greedy_engine() -> (ChatEngine, Artifact, artifacts::TempDir) {
    let dir = artifacts::tiny_qwen2_with_tokenizer();
    let artifact = Artifact::open(dir.path().to_str().unwrap(), OpenOptions::default()).unwrap();
    let mut config = artifact.config.clone();
    config.temperature = 0.0;
    let tokenizer = Tokenizer::from_bytes(&artifact.file("tokenizer.json").unwrap()).unwrap();
    let model = Box::new(load_cpu(&artifact).unwrap());
    let engine = ChatEngine::from_parts(model, tokenizer, config, "tiny-qwen2".into()).unwrap();
    (engine, artifact, dir)
}

#[test]
fn forwarded_tokens_continue_the_context_as_greedy_decoding_does() {
    let (mut engine, artifact, _dir) = greedy_engine();
    let prompt = [9707u32, 11, 1879, 0, 3555];
    // The reference: a fresh model fed the prompt, then each token it picks.
    let mut reference = load_cpu(&artifact).unwrap();
    let mut expected = vec![reference.greedy_next(&prompt).block_on().unwrap()];
    for _ in 0..3 {
        let last = *expected.last().unwrap();
        expected.push(reference.greedy_next(&[last]).block_on().unwrap());
    }
    let mut got = vec![engine.forward_tokens_and_sample(&prompt, true).block_on().unwrap()];
    for _ in 0..3 {
        let last = *got.last().unwrap();
        got.push(engine.forward_tokens_and_sample(&[last], false).block_on().unwrap());
    }
    assert_eq!(got, expected);
    // resetChat empties the context: the same prefill gives the same first token.
    engine.reset();
    assert_eq!(engine.forward_tokens_and_sample(&prompt, true).block_on().unwrap(), expected[0]);
}

#[test]
fn bad_token_input_is_an_error() {
    let (mut engine, _artifact, _dir) = greedy_engine();
    let mut error = |ids: &[u32], prefill: bool| {
        engine.forward_tokens_and_sample(ids, prefill).block_on().unwrap_err().to_string()
    };
    assert!(error(&[], true).contains("inputIds must not be empty"));
    assert!(error(&[1, 2], false).contains("exactly one token id"));
    assert!(error(&[u32::MAX], true).contains("outside the vocabulary"));
}
