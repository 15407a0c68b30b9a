//! Output text, stop conditions and stream deltas as WebLLM produces them
//! (docs/sampling.md, "Stop rules" and "Streaming deltas").

use std::sync::OnceLock;

use mlc_chat::{
    EMPTY_THINKING_BLOCK, FinishReason, GenerationConfig, OutputStream, Stop, StopConditions,
    Tokenizer,
};
use mlc_loader::ChatConfig;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../conformance/fixtures/tokenizers");

fn qwen() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        Tokenizer::from_file(format!("{FIXTURES}/qwen2.5-0.5b-instruct.tokenizer.json")).unwrap()
    })
}

fn stops(stop_strs: &[&str]) -> StopConditions {
    StopConditions {
        stop_strs: stop_strs.iter().map(|stop| stop.to_string()).collect(),
        ..StopConditions::default()
    }
}

/// Pushes `ids` until the round finishes, returning the delta (or hold-back) of each step.
fn run(stream: &mut OutputStream, ids: &[u32]) -> Vec<Option<String>> {
    let mut deltas = Vec::new();
    for &id in ids {
        if stream.finish_reason().is_some() {
            break;
        }
        stream.push(id).unwrap();
        deltas.push(stream.next_delta());
    }
    deltas
}

#[test]
fn multi_byte_characters_split_over_tokens_are_never_emitted_broken() {
    for text in ["emoji 🦙🚀 ok", "rare CJK 𠜎𠜱 and 你好", "family 👨‍👩‍👧 done", " 🦙"]
    {
        let ids = qwen().encode(text).unwrap();
        let mut stream = OutputStream::new(qwen().clone(), StopConditions::default());
        let deltas = run(&mut stream, &ids);
        for delta in deltas.iter().flatten() {
            assert!(!delta.contains('\u{FFFD}'), "{text:?}: delta {delta:?}");
        }
        assert_eq!(
            deltas.iter().flatten().cloned().collect::<String>(),
            text,
            "deltas add up to the text"
        );
        assert_eq!(stream.text(), text);
        assert_eq!(stream.finish_reason(), None);
    }
    // " 🦙" takes three tokens: the first two steps are held back, the third emits it whole.
    let mut stream = OutputStream::new(qwen().clone(), StopConditions::default());
    assert_eq!(
        run(&mut stream, &qwen().encode(" 🦙").unwrap()),
        [None, None, Some(" 🦙".to_string())]
    );
}

#[test]
fn a_stop_string_spanning_tokens_cuts_the_text_but_not_what_was_streamed() {
    let stop = "\n\nUser:";
    assert!(qwen().encode(stop).unwrap().len() > 1, "the stop string must span several tokens");
    let ids = qwen().encode("Hello!\n\nUser: more text").unwrap();
    let mut stream = OutputStream::new(qwen().clone(), stops(&[stop]));
    let deltas = run(&mut stream, &ids);
    assert_eq!(stream.text(), "Hello!");
    assert_eq!(stream.finish_reason(), Some(FinishReason::Stop));
    let streamed: String = deltas.iter().flatten().cloned().collect();
    // A part of the stop string was streamed before it was complete, and stays streamed.
    assert!(
        streamed.starts_with("Hello!\n") && stop.starts_with(&streamed["Hello!".len()..]),
        "{streamed:?}"
    );
    assert_eq!(deltas.last().unwrap().as_deref(), Some(""), "the stopping step has an empty delta");
}

#[test]
fn stop_tokens_are_not_appended() {
    // SmolLM2's chatml template stops on id 2 (`<|im_end|>`): its reference greedy output ends with it.
    let config = ChatConfig::from_json(
        &std::fs::read_to_string(format!("{FIXTURES}/smollm2-135m-instruct.mlc-chat-config.json"))
            .unwrap(),
    )
    .unwrap();
    let template = config.conv_template.unwrap();
    let tokenizer =
        Tokenizer::from_file(format!("{FIXTURES}/smollm2-135m-instruct.tokenizer.json")).unwrap();
    let greedy = [504, 3575, 282, 4649, 314, 7042, 30, 2];
    let mut stream =
        OutputStream::new(tokenizer, StopConditions::new(&template, &GenerationConfig::default()));
    let deltas = run(&mut stream, &greedy);
    assert_eq!(stream.text(), "The capital of France is Paris.");
    assert_eq!(stream.ids(), &greedy[..7]);
    assert_eq!(stream.finish_reason(), Some(FinishReason::Stop));
    assert_eq!(deltas.len(), 8);
    assert_eq!(deltas[7].as_deref(), Some(""));
    assert_eq!(deltas.into_iter().flatten().collect::<String>(), "The capital of France is Paris.");
}

#[test]
fn special_tokens_stop_through_their_text() {
    // The generic chatml template on a Qwen model: <|im_end|> is not a stop id, but its text is a stop string.
    let mut stream = OutputStream::new(
        qwen().clone(),
        StopConditions { stop_token_ids: vec![2], ..stops(&["<|im_end|>"]) },
    );
    run(&mut stream, &[9707, 0, 151645, 9707]);
    assert_eq!((stream.text(), stream.finish_reason()), ("Hello!", Some(FinishReason::Stop)));
    assert_eq!(stream.ids(), [9707, 0, 151645]);
}

#[test]
fn the_first_listed_stop_string_cuts_at_its_last_occurrence() {
    let ids = qwen().encode("a b a b").unwrap();
    let (last, preloaded) = ids.split_last().unwrap();
    let mut stream =
        OutputStream::with_preloaded(qwen().clone(), stops(&["b", "a"]), preloaded.to_vec());
    stream.push(*last).unwrap();
    assert_eq!(stream.text(), "a b a ");
}

#[test]
fn max_tokens_counts_preloaded_thinking_tokens() {
    let think = qwen().encode(EMPTY_THINKING_BLOCK).unwrap();
    let max_tokens = think.len() + 2;
    let stop = StopConditions { max_tokens: Some(max_tokens), ..StopConditions::default() };
    let mut stream = OutputStream::with_preloaded(qwen().clone(), stop, think.clone());
    let deltas = run(&mut stream, &[9707, 0, 9707]);
    assert_eq!(stream.finish_reason(), Some(FinishReason::Length));
    assert_eq!(stream.text(), format!("{EMPTY_THINKING_BLOCK}Hello!"));
    assert_eq!(stream.generated_ids(), [9707, 0]);
    assert_eq!(stream.ids().len(), max_tokens);
    // The think block appears with the first sampled token's delta.
    assert_eq!(deltas[0].as_deref(), Some(format!("{EMPTY_THINKING_BLOCK}Hello").as_str()));
}

#[test]
fn stop_lists_combine_template_and_request() {
    let config = ChatConfig::from_json(
        &std::fs::read_to_string(format!("{FIXTURES}/qwen2.5-0.5b-instruct.mlc-chat-config.json"))
            .unwrap(),
    )
    .unwrap();
    let template = config.conv_template.unwrap();
    let request = |stop: Stop, ignore_eos: bool| GenerationConfig {
        stop: Some(stop),
        ignore_eos: Some(ignore_eos),
        max_tokens: Some(5),
        ..GenerationConfig::default()
    };
    let many = Stop::Many(vec!["x".into(), "y".into()]);
    let conditions = StopConditions::new(&template, &request(many.clone(), false));
    assert_eq!(conditions.stop_token_ids, [151643, 151645]);
    assert_eq!(conditions.stop_strs, ["<|endoftext|>", "<|im_end|>", "x", "y"]);
    assert_eq!(conditions.max_tokens, Some(5));
    // A single "" is falsy in JS and adds nothing; ignore_eos drops every stop token and string.
    assert_eq!(
        StopConditions::new(&template, &request(Stop::One(String::new()), false)).stop_strs.len(),
        2
    );
    let ignoring = StopConditions::new(&template, &request(many, true));
    assert_eq!(ignoring, StopConditions { max_tokens: Some(5), ..StopConditions::default() });

    // But an empty string inside a list matches at once.
    let mut stream = OutputStream::new(
        qwen().clone(),
        StopConditions::new(&template, &request(Stop::Many(vec![String::new()]), false)),
    );
    stream.push(9707).unwrap();
    assert_eq!((stream.text(), stream.finish_reason()), ("Hello", Some(FinishReason::Stop)));
}

#[test]
fn an_outside_finish_overrides_the_reason() {
    let mut stream = OutputStream::new(
        qwen().clone(),
        StopConditions { stop_token_ids: vec![151645], ..StopConditions::default() },
    );
    stream.push(151645).unwrap();
    assert_eq!(stream.finish_reason(), Some(FinishReason::Stop));
    stream.finish(FinishReason::Length);
    assert_eq!(stream.finish_reason(), Some(FinishReason::Length));
}
