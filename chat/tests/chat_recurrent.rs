//! A chat on a model with recurrent state (Qwen3.5's Gated DeltaNet layers,
//! which cannot be rewound): a second round reuses the state the first one
//! left and answers what a fresh model fed the whole conversation answers, on
//! the CPU engines and the GPU engine (lavapipe in CI).
//! On the converted `families/qwen3_5-tiny` checkpoint (random weights,
//! vocabulary 600) with `bert-tiny`'s 136-token WordPiece tokenizer, whose ids
//! all lie in the model's vocabulary.

use mlc_chat::{
    ChatCompletionRequest, ChatEngine, ChatMessage, Conversation, FinishReason, GenerationConfig,
    Tokenizer,
};
use mlc_conformance::{converted_family, fixtures_dir};
use mlc_engine::gpu::GpuOptions;
use mlc_engine::{LanguageModel, load_cpu, load_cpu_fast, load_gpu};
use mlc_kernels::{ContextOptions, GpuContext};
use pollster::FutureExt as _;

fn tokenizer() -> Tokenizer {
    let path = fixtures_dir().join("families/bert-tiny/hf_source/tokenizer.json");
    Tokenizer::from_bytes(&std::fs::read(path).unwrap()).unwrap()
}

/// `max_tokens` greedy tokens after `prompt` on `model`, fed one at a time.
fn greedy(model: &mut dyn LanguageModel, prompt: &[u32], max_tokens: usize) -> Vec<u32> {
    let mut tokens = vec![model.greedy_next(prompt).block_on().unwrap()];
    while tokens.len() < max_tokens {
        let last = *tokens.last().unwrap();
        tokens.push(model.greedy_next(&[last]).block_on().unwrap());
    }
    tokens
}

#[test]
fn a_second_round_reuses_the_recurrent_state_as_a_fresh_model_sees_it() {
    let (_temp, artifact) = converted_family("families/qwen3_5-tiny");
    let tokenizer = tokenizer();
    let template = artifact.config.conv_template.clone().unwrap();
    let prompt_ids = |messages: &[ChatMessage], first_round: bool| {
        let mut conversation = Conversation::from_request(&template, messages).unwrap();
        conversation.start_round(&template, messages.last().unwrap(), None).unwrap();
        conversation.prompt_tokens(&template, &tokenizer, first_round).unwrap().ids
    };
    let generation =
        GenerationConfig { temperature: Some(0.0), max_tokens: Some(10), ..Default::default() };
    let chat = |messages: &[ChatMessage]| ChatCompletionRequest {
        messages: messages.to_vec(),
        generation: generation.clone(),
        ..ChatCompletionRequest::default()
    };

    let messages = vec![ChatMessage::new("user", "tell me a story")];
    let first_prompt = prompt_ids(&messages, true);
    let free = greedy(&mut load_cpu(&artifact).unwrap(), &first_prompt, 10);
    // A stop token the reply meets (the template's are outside the vocabulary):
    // the first token from the fourth on not seen before.
    let end = (3..free.len()).find(|&i| !free[..i].contains(&free[i])).expect("a fresh token");
    let mut config = artifact.config.clone();
    config.conv_template.as_mut().unwrap().stop_token_ids = vec![free[end]];

    for engine_name in ["cpu", "cpu fast", "gpu"] {
        let model: Box<dyn LanguageModel> = match engine_name {
            "cpu" => Box::new(load_cpu(&artifact).unwrap()),
            "cpu fast" => Box::new(load_cpu_fast(&artifact).unwrap()),
            _ => {
                let ctx = GpuContext::new_blocking(&ContextOptions::default())
                    .expect("a GPU adapter (lavapipe in CI)");
                let options =
                    GpuOptions { max_rows: 16, context_length: Some(256), ..GpuOptions::default() };
                Box::new(load_gpu(&artifact, ctx, options).unwrap())
            }
        };
        let mut engine =
            ChatEngine::from_parts(model, tokenizer.clone(), config.clone(), "qwen3_5-tiny".into())
                .unwrap();
        let first = engine.chat_completion(&chat(&messages), |_| panic!()).block_on().unwrap();
        assert_eq!(first.choices[0].finish_reason, FinishReason::Stop);
        let reply = first.choices[0].message.content.clone().unwrap();
        assert_eq!(reply, tokenizer.decode(&free[..end]).unwrap(), "{engine_name}");

        let mut round = messages.clone();
        round.push(ChatMessage::new("assistant", &reply));
        round.push(ChatMessage::new("user", "go on"));
        let second_prompt = prompt_ids(&round, false);
        let second = engine.chat_completion(&chat(&round), |_| panic!()).block_on().unwrap();
        assert_eq!(second.usage.prompt_tokens, second_prompt.len(), "only the new round is fed");

        // A fresh model fed the whole conversation: the first prompt, the
        // reply's fed tokens (all but the stop token), the new round.
        let context = [&first_prompt[..], &free[..end], &second_prompt].concat();
        let want = greedy(&mut load_cpu(&artifact).unwrap(), &context, 10);
        let shown = want.iter().position(|&t| t == free[end]).unwrap_or(want.len());
        assert_eq!(
            second.choices[0].message.content.as_deref(),
            Some(tokenizer.decode(&want[..shown]).unwrap().as_str()),
            "{engine_name}: the second round's reply"
        );
    }
}
