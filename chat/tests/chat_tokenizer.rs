//! Tokenizer conformance: llama.cpp's Qwen2 vocabulary tests, extra Qwen2.5
//! encodings, and SmolLM2 prompts/greedy outputs from an independent reference.

use std::sync::OnceLock;

use mlc_chat::{Tokenizer, TokenizerError};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../conformance/fixtures/tokenizers");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}"))
        .unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn qwen() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        Tokenizer::from_file(format!("{FIXTURES}/qwen2.5-0.5b-instruct.tokenizer.json")).unwrap()
    })
}

fn smollm() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        Tokenizer::from_file(format!("{FIXTURES}/smollm2-135m-instruct.tokenizer.json")).unwrap()
    })
}

fn ids_of(value: &Value) -> Vec<u32> {
    value.as_array().unwrap().iter().map(|id| id.as_u64().unwrap() as u32).collect()
}

#[test]
fn llama_cpp_qwen2_vocab_cases() {
    let inputs = read("ggml-vocab-qwen2.gguf.inp");
    let outputs = read("ggml-vocab-qwen2.gguf.out");
    let inputs: Vec<&str> = inputs.split("\n__ggml_vocab_test__\n").collect();
    let outputs: Vec<&str> = outputs.split('\n').collect();
    // Both files end with a separator, hence one empty element after the 46 cases.
    assert_eq!((inputs.len(), outputs.len()), (47, 47));
    assert_eq!((inputs[46], outputs[46]), ("", ""));
    for (input, output) in inputs.iter().zip(&outputs).take(46) {
        let expected: Vec<u32> = output.split_whitespace().map(|id| id.parse().unwrap()).collect();
        assert_eq!(qwen().encode(input).unwrap(), expected, "input {input:?}");
        // Byte-level BPE is lossless: decoding gives the input back.
        assert_eq!(qwen().decode(&expected).unwrap(), *input);
    }
}

#[test]
fn extra_qwen25_encodings() {
    let cases: Value =
        serde_json::from_str(&read("extra-encodings.tokenizers-0.23.3.json")).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 9);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let ids = ids_of(&case["ids"]);
        assert_eq!(qwen().encode(text).unwrap(), ids, "text {text:?}");
        assert_eq!(qwen().decode(&ids).unwrap(), text);
    }
}

#[test]
fn special_tokens_in_text_match_and_decode_as_text() {
    let im_end = qwen().token_to_id("<|im_end|>").unwrap();
    assert_eq!(im_end, 151645);
    assert_eq!(qwen().encode("a<|im_end|>").unwrap(), [64, im_end]);
    // No BOS/EOS is added, and special tokens are not skipped when decoding.
    assert_eq!(qwen().decode(&[151644, 872, 151645]).unwrap(), "<|im_start|>user<|im_end|>");
    assert_eq!(qwen().token_count(), 151665);
    assert_eq!(smollm().token_count(), 49152);
}

#[test]
fn incomplete_utf8_decodes_to_replacement_characters() {
    // " 🦙" is split over three byte-level tokens in the Qwen vocabulary.
    let ids = qwen().encode(" 🦙").unwrap();
    assert_eq!(ids, [11162, 99, 247]);
    assert_eq!(qwen().decode(&ids[..1]).unwrap(), " \u{FFFD}");
    assert_eq!(qwen().decode(&ids[..2]).unwrap(), " \u{FFFD}");
    assert_eq!(qwen().decode(&ids).unwrap(), " 🦙");
}

#[test]
fn smollm2_reference_prompts_and_outputs() {
    let reference: Value =
        serde_json::from_str(&read("smollm2-135m-instruct.reference.json")).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let prompt = case["prompt"].as_str().unwrap();
        assert_eq!(smollm().encode(prompt).unwrap(), ids_of(&case["prompt_ids"]), "{name}: prompt");
        assert_eq!(
            smollm().decode(&ids_of(&case["greedy_ids"])).unwrap(),
            case["greedy_text"].as_str().unwrap(),
            "{name}: greedy text"
        );
    }
}

#[test]
fn bad_tokenizer_files_are_typed_errors() {
    let missing = Tokenizer::from_file(format!("{FIXTURES}/no-such-tokenizer.json")).unwrap_err();
    assert!(matches!(missing, TokenizerError::Read { .. }), "{missing:?}");
    let invalid = Tokenizer::from_bytes(b"{\"model\": 3}").unwrap_err();
    assert!(matches!(invalid, TokenizerError::Parse(_)), "{invalid:?}");
}
