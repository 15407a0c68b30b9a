//! OpenAI-style types in WebLLM's shape, and request validation with WebLLM's
//! error names and exact messages (docs/chat.md, "WebLLM's request contract").

use mlc_chat::{
    ChatCompletionChunk, ChatCompletionRequest, ChatError, Completion, CompletionRequest,
    ErrorResponse, FinalCalls, FinishReason, GenerationStats, Stop, StreamId, ToolFormat, Usage,
    check_context_window, validate_chat_request, validate_completion_request,
};
use mlc_loader::ChatConfig;
use serde_json::{Value, json};

const QWEN: &str = "Qwen2.5-0.5B-Instruct-q4f16_1-MLC";

fn chat(request: Value) -> ChatCompletionRequest {
    serde_json::from_value(request).unwrap()
}

/// The (name, message) of validating `request` for the Qwen model, or `None` if valid.
fn chat_error(request: Value) -> Option<(String, String)> {
    validate_chat_request(&chat(request), QWEN, None)
        .err()
        .map(|error| (error.name().to_string(), error.message()))
}

/// A valid one-message request with `fields` added.
fn with(fields: Value) -> Value {
    let mut request = json!({"messages": [{"role": "user", "content": "Hi"}]});
    request.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
    request
}

fn expect(request: Value, name: &str, message: &str) {
    assert_eq!(
        chat_error(request.clone()),
        Some((name.to_string(), message.to_string())),
        "{request}"
    );
}

#[test]
fn a_full_webllm_request_parses_and_validates() {
    let request = with(json!({
        "stream": true, "stream_options": {"include_usage": true}, "n": 1, "temperature": 0.7, "top_p": 0.9,
        "max_tokens": 128, "stop": ["\n\n", "END"], "seed": 42, "frequency_penalty": 0.5, "presence_penalty": -2,
        "repetition_penalty": 1.1, "logit_bias": {"b": 0, "151645": -100, "7": 2.5}, "logprobs": true, "top_logprobs": 5,
        "ignore_eos": false, "response_format": {"type": "json_object", "schema": "{\"type\": \"object\"}"},
        "tool_choice": "auto", "model": QWEN, "extra_body": {"enable_thinking": false}, "user": "ignored",
        "max_completion_tokens": 3
    }));
    let parsed = chat(request.clone());
    assert_eq!(parsed.generation.stop, Some(Stop::Many(vec!["\n\n".into(), "END".into()])));
    assert_eq!(parsed.stream_options.as_ref().unwrap().include_usage, Some(true));
    assert_eq!(parsed.extra_body.as_ref().unwrap().enable_thinking, Some(false));
    assert_eq!(parsed.generation.max_tokens, Some(128));
    assert_eq!(parsed.seed, Some(42.0));
    // Keys keep the client's order; JS iterates integer keys first.
    let bias = parsed.generation.logit_bias.as_ref().unwrap();
    assert_eq!(
        bias.0.iter().map(|(key, _)| key.as_str()).collect::<Vec<_>>(),
        ["b", "151645", "7"]
    );
    assert_eq!(bias.js_order(), [("7", 2.5), ("151645", -100.0), ("b", 0.0)]);
    assert_eq!(
        validate_chat_request(&parsed, QWEN, None).unwrap_err().message(),
        "Make sure logit_bias's keys to be number represented in string. Got b"
    );
    assert_eq!(bias.token_biases(), [(7, 2.5), (151645, -100.0)]);

    let mut valid = parsed.clone();
    valid.generation.logit_bias.as_mut().unwrap().0.remove(0);
    validate_chat_request(&valid, QWEN, None).unwrap();
    // Serializing gives back the fields it understood (unknown ones are dropped).
    let round_trip: ChatCompletionRequest =
        serde_json::from_value(serde_json::to_value(&parsed).unwrap()).unwrap();
    assert_eq!(round_trip, parsed);
    assert!(serde_json::to_value(&parsed).unwrap().get("user").is_none());
}

#[test]
fn message_rules() {
    expect(
        json!({"messages": [{"role": "user", "content": "Hi"}, {"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]}),
        "SystemMessageOrderError",
        "System prompt should always be the first message in `messages`.",
    );
    expect(
        json!({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}),
        "MessageOrderError",
        "Last message should be from either `user` or `tool`.",
    );
    expect(
        json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "http://x"}}]}]}),
        "UserMessageContentErrorForNonVLM",
        &format!(
            "The model loaded is not of type ModelType.VLM (vision-language model). Therefore, user message only supports string \
             content, but received: [object Object],[object Object]\nLoaded modelId: {QWEN}, modelType: LLM"
        ),
    );
    expect(
        json!({"messages": []}),
        "TypeError",
        "Cannot read properties of undefined (reading 'role')",
    );
    // Roles are checked when the conversation is built, not here.
    assert_eq!(
        chat_error(
            json!({"messages": [{"role": "developer", "content": "x"}, {"role": "user", "content": "Hi"}]})
        ),
        None
    );
    assert_eq!(
        chat_error(json!({"messages": [{"role": "tool", "content": "42", "tool_call_id": "0"}]})),
        None
    );
}

#[test]
fn request_field_rules() {
    expect(
        with(json!({"stream": true, "n": 2})),
        "StreamingCountError",
        "When streaming, `n` cannot be > 1.",
    );
    assert_eq!(chat_error(with(json!({"n": 3}))), None);
    expect(with(json!({"seed": 1.5})), "SeedTypeError", "`seed` should be an integer, but got 1.5");
    expect(
        with(json!({"seed": -2.5e-7})),
        "SeedTypeError",
        "`seed` should be an integer, but got -2.5e-7",
    );
    assert_eq!(chat_error(with(json!({"seed": 1e21}))), None, "a large float can be an integer");
    expect(
        with(json!({"response_format": {"type": "text", "schema": "{}"}})),
        "InvalidResponseFormatError",
        "JSON schema is only supported with `json_object` response format.",
    );
    let grammar = "When ResponseFormat.type is `grammar`, ResponseFormat.grammar needs to be specified.\nWhen ResponseFormat.grammar is \
                   specified, ResponseFormat.type needs to be grammar.";
    expect(
        with(json!({"response_format": {"type": "grammar"}})),
        "InvalidResponseFormatGrammarError",
        grammar,
    );
    expect(
        with(json!({"response_format": {"grammar": "root ::= \"a\""}})),
        "InvalidResponseFormatGrammarError",
        grammar,
    );
    expect(
        with(json!({"response_format": {"type": "json_object", "structural_tag": {}}})),
        "InvalidResponseFormatStructuralTagError",
        "When ResponseFormat.type is `structural_tag`, ResponseFormat.structural_tag needs to be specified.\nWhen \
         ResponseFormat.structural_tag is specified, ResponseFormat.type needs to be structural_tag.",
    );
    // OpenAI's json_schema type passes validation (it is enforced at generation).
    assert_eq!(
        chat_error(with(
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}})
        )),
        None
    );
    expect(
        with(json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]})),
        "UnsupportedModelIdError",
        &format!(
            "{QWEN} is not supported for ChatCompletionRequest.tools. Currently, models that support function calling are: \
             Hermes-2-Pro-Llama-3-8B-q4f16_1-MLC, Hermes-2-Pro-Llama-3-8B-q4f32_1-MLC, Hermes-2-Pro-Mistral-7B-q4f16_1-MLC, \
             Hermes-3-Llama-3.1-8B-q4f32_1-MLC, Hermes-3-Llama-3.1-8B-q4f16_1-MLC, and models with the `qwen2` \
             conversation template (Qwen2.5)"
        ),
    );
    let tools = chat(with(json!({"tools": [{"type": "function", "function": {"name": "f"}}]})));
    validate_chat_request(&tools, "Hermes-3-Llama-3.1-8B-q4f16_1-MLC", Some(ToolFormat::Hermes))
        .unwrap();
    validate_chat_request(&tools, QWEN, Some(ToolFormat::Qwen)).unwrap();
    // Hermes tool calling sets the system prompt and the response format itself (WebLLM's rule).
    let hermes = |request| {
        validate_chat_request(
            &chat(request),
            "Hermes-3-Llama-3.1-8B-q4f16_1-MLC",
            Some(ToolFormat::Hermes),
        )
        .unwrap_err()
    };
    let with_format = hermes(
        json!({"messages": [{"role": "user", "content": "hi"}], "tools": [], "response_format": {"type": "json_object"}}),
    );
    assert_eq!(with_format.name(), "CustomResponseFormatError");
    assert!(
        with_format.message().ends_with(r#"Currently set to: {"type":"json_object"}"#),
        "{}",
        with_format.message()
    );
    let with_system = hermes(
        json!({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}], "tools": []}),
    );
    assert_eq!(with_system.name(), "CustomSystemPromptError");
    // Qwen's format takes both.
    let qwen = chat(
        json!({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}], "tools": [], "response_format": {"type": "json_object"}}),
    );
    validate_chat_request(&qwen, QWEN, Some(ToolFormat::Qwen)).unwrap();
    expect(
        with(json!({"stream_options": {"include_usage": true}})),
        "InvalidStreamOptionsError",
        "Only specify stream_options when stream=True.",
    );
    expect(
        with(json!({"stream": false, "stream_options": {}})),
        "InvalidStreamOptionsError",
        "Only specify stream_options when stream=True.",
    );
}

#[test]
fn generation_config_rules() {
    let cases = [
        (json!({"frequency_penalty": 2.5}), "RangeError", "Make sure -2 < frequency_penalty <= 2."),
        (json!({"presence_penalty": -2.01}), "RangeError", "Make sure -2 < presence_penalty <= 2."),
        (json!({"repetition_penalty": 0}), "MinValueError", "Make sure `repetition_penalty` > 0."),
        (json!({"max_tokens": 0}), "MinValueError", "Make sure `max_tokens` > 0."),
        (json!({"max_tokens": -5}), "MinValueError", "Make sure `max_tokens` > 0."),
        (json!({"top_p": 0}), "RangeError", "Make sure 0 < top_p <= 1."),
        (json!({"top_p": 1.5}), "RangeError", "Make sure 0 < top_p <= 1."),
        (json!({"temperature": -0.1}), "NonNegativeError", "Make sure temperature >= 0."),
        (
            json!({"logit_bias": {"x": 1, "5": 150}}),
            "RangeError",
            "Make sure -100 < logit_bias <= 100. Got 150 for tokenID 5",
        ),
        (
            json!({"logit_bias": {"12": -100.5}}),
            "RangeError",
            "Make sure -100 < logit_bias <= 100. Got -100.5 for tokenID 12",
        ),
        (
            json!({"logit_bias": {"abc": 1}}),
            "InvalidNumberStringError",
            "Make sure logit_bias's keys to be number represented in string. Got abc",
        ),
        (
            json!({"top_logprobs": 2}),
            "DependencyError",
            "top_logprobs requires logprobs to be true.",
        ),
        (
            json!({"top_logprobs": 2, "logprobs": false}),
            "DependencyError",
            "top_logprobs requires logprobs to be true.",
        ),
        (
            json!({"top_logprobs": 6, "logprobs": true}),
            "RangeError",
            "Make sure 0 < top_logprobs <= 5. Got 6",
        ),
        (
            json!({"top_logprobs": -1, "logprobs": true}),
            "RangeError",
            "Make sure 0 < top_logprobs <= 5. Got -1",
        ),
    ];
    for (fields, name, message) in cases {
        expect(with(fields), name, message);
    }
    let boundaries = json!({"frequency_penalty": -2, "presence_penalty": 2, "top_p": 1, "temperature": 0, "logit_bias": {"3abc": 100},
                            "top_logprobs": 0, "logprobs": true, "max_tokens": 1});
    assert_eq!(chat_error(with(boundaries)), None);
}

#[test]
fn the_first_failing_check_wins() {
    // Message rules before request fields, request fields before generation parameters.
    let request = json!({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}, {"role": "assistant", "content": "b"}],
                         "stream": true, "n": 2, "temperature": -1});
    assert_eq!(chat_error(request).unwrap().0, "SystemMessageOrderError");
    assert_eq!(
        chat_error(with(json!({"stream_options": {}, "seed": 0.5, "temperature": -1}))).unwrap().0,
        "SeedTypeError"
    );
    assert_eq!(chat_error(with(json!({"temperature": -1, "top_p": 2}))).unwrap().0, "RangeError");
}

#[test]
fn completion_requests() {
    let completion = |request: Value| {
        let request: CompletionRequest = serde_json::from_value(request).unwrap();
        validate_completion_request(&request)
            .err()
            .map(|error| (error.name().to_string(), error.message()))
    };
    assert_eq!(
        completion(json!({"prompt": "Once", "echo": true, "max_tokens": 3, "stop": "\n"})),
        None
    );
    assert_eq!(
        completion(json!({"prompt": "Once", "best_of": 2, "suffix": null, "user": "me"})),
        Some(("UnsupportedFieldsError".into(), "The following fields in CompletionCreateParams are not yet supported: \nsuffix, user, best_of".into()))
    );
    assert_eq!(
        completion(json!({"prompt": "x", "stream": true, "n": 2})).unwrap().0,
        "StreamingCountError"
    );
    assert_eq!(
        completion(json!({"prompt": "x", "stream_options": {}})).unwrap().0,
        "InvalidStreamOptionsError"
    );
    assert_eq!(
        completion(json!({"prompt": "x", "top_p": 0})).unwrap().1,
        "Make sure 0 < top_p <= 1."
    );
}

#[test]
fn context_window_check() {
    let config = |extra: &str| {
        ChatConfig::from_json(&format!(
            r#"{{"model_type": "qwen2", "quantization": "q4f16_1", "vocab_size": 8{extra}}}"#
        ))
        .unwrap()
    };
    let fixed = config(r#", "context_window_size": 4096"#);
    check_context_window(4000, 96, &fixed).unwrap();
    let error = check_context_window(4000, 97, &fixed).unwrap_err();
    assert_eq!(error.name(), "ContextWindowSizeExceededError");
    assert_eq!(
        error.to_string(),
        "ContextWindowSizeExceededError: Prompt tokens exceed context window size: number of prompt tokens: 4000; context window size: \
         4096\nConsider shortening the prompt, or increase `context_window_size`, or using sliding window via `sliding_window_size`."
    );
    check_context_window(100_000, 0, &config(r#", "sliding_window_size": 4096"#)).unwrap();
}

#[test]
fn stream_chunks_have_webllm_shapes() {
    let stream = StreamId {
        id: "6b2f1b8e-2d0c-4d7e-9a1f-0c1d2e3f4a5b".into(),
        created: 1_700_000_000,
        model: QWEN.into(),
    };
    let head = json!({"id": stream.id, "object": "chat.completion.chunk", "created": 1_700_000_000, "model": QWEN});
    let with_head = |rest: Value| {
        let mut object = head.clone();
        object.as_object_mut().unwrap().extend(rest.as_object().unwrap().clone());
        object
    };
    assert_eq!(
        serde_json::to_value(ChatCompletionChunk::delta(&stream, "Hi".into(), None)).unwrap(),
        with_head(
            json!({"choices": [{"index": 0, "delta": {"content": "Hi", "role": "assistant"}, "finish_reason": null, "logprobs": null}]})
        )
    );
    assert_eq!(
        serde_json::to_value(ChatCompletionChunk::finish(
            &stream,
            FinishReason::Stop,
            FinalCalls::NotCalling
        ))
        .unwrap(),
        with_head(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    );
    let stats = GenerationStats {
        prompt_tokens: 21,
        completion_tokens: 9,
        decode_tokens: 8,
        prefill_time_s: 0.5,
        decode_time_s: 2.0,
        grammar_s: None,
    };
    let usage = Usage::from_stats(&stats, 3.0, None);
    assert_eq!(
        serde_json::to_value(ChatCompletionChunk::usage(&stream, usage.clone())).unwrap(),
        with_head(
            json!({"choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30, "extra": {
            "e2e_latency_s": 3.0, "prefill_tokens_per_s": 42.0, "decode_tokens_per_s": 4.0,
            "time_to_first_token_s": 0.5, "time_per_output_token_s": 0.25}}})
        )
    );
    let parsed: ChatCompletionChunk = serde_json::from_value(
        serde_json::to_value(ChatCompletionChunk::usage(&stream, usage)).unwrap(),
    )
    .unwrap();
    assert_eq!(parsed.usage.unwrap().extra.decode_tokens_per_s, 4.0);

    // Text completions use one type for chunks; the final chunk has empty text.
    let mut last = serde_json::to_value(Completion::finish(&stream, FinishReason::Length)).unwrap();
    assert_eq!(last["object"], "text_completion");
    assert_eq!(
        last["choices"].take(),
        json!([{"index": 0, "text": "", "finish_reason": "length"}])
    );
}

#[test]
fn usage_ratios_over_zero_serialize_as_null() {
    let stats = GenerationStats {
        prompt_tokens: 3,
        completion_tokens: 1,
        prefill_time_s: 0.1,
        grammar_s: Some((0.2, 0.4)),
        ..GenerationStats::default()
    };
    let extra =
        serde_json::to_value(Usage::from_stats(&stats, 0.2, None)).unwrap()["extra"].clone();
    assert_eq!(extra["decode_tokens_per_s"], 0.0, "0.2.86 reports 0 without decode time");
    assert_eq!(extra["time_per_output_token_s"], Value::Null, "0/0 is NaN in JS, null in JSON");
    assert_eq!(
        (extra["grammar_init_s"].as_f64(), extra["grammar_per_token_s"].as_f64()),
        (Some(0.2), Some(0.4))
    );
    let mut summed = stats;
    summed += stats;
    assert_eq!((summed.prompt_tokens, summed.grammar_s), (6, Some((0.4, 0.8))));
}

#[test]
fn errors_print_and_serialize_like_webllm() {
    let error = ChatError::Range { param: "top_p", min: 0.0, max: 1.0, detail: None };
    assert_eq!(error.to_string(), "RangeError: Make sure 0 < top_p <= 1.");
    assert_eq!(
        serde_json::to_value(ErrorResponse::from(&error)).unwrap(),
        json!({"error": {"message": "Make sure 0 < top_p <= 1.", "type": "RangeError", "param": null, "code": null}})
    );
}
