//! Structured output end to end: `response_format` (JSON schema in WebLLM's
//! and OpenAI's forms, any JSON, EBNF grammars) on the real SmolLM2 artifact,
//! sampled at temperature 1 over many seeds, on the CPU engine and on the GPU
//! engine (lavapipe in CI), each reply checked by an independent JSON-schema
//! validator; tool calling in Qwen2.5's format on tiny-qwen2 (random weights:
//! only the constraint makes its calls well formed); and the errors of bad
//! requests.

use mlc_chat::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatEngine, FinishReason,
    RequestError,
};
use mlc_engine::{load_cpu, load_cpu_fast};
use mlc_loader::{Artifact, OpenOptions};
use pollster::FutureExt as _;
use serde_json::{Value, json};

use mlc_conformance::artifacts;

use mlc_conformance::{SMOLLM2, shared_path};

/// Seeds per sampled check (each a full reply at temperature 1).
const SEEDS: u64 = 10;
/// Seeds of the GPU engine's schema test (see there).
const GPU_SEEDS: u64 = 3;

/// A schema whose every value is bounded, so a reply always fits `max_tokens`.
fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 12},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "languages": {"type": "array", "items": {"enum": ["en", "fr", "de"]}, "maxItems": 3},
            "student": {"type": "boolean"}
        },
        "required": ["name", "age", "student"],
        "additionalProperties": false
    })
}

fn smollm2_artifact() -> Option<Artifact> {
    let dir = shared_path(SMOLLM2)?;
    Some(Artifact::open(dir.to_str().unwrap(), OpenOptions::default()).unwrap())
}

/// The CPU engine users run (the fast one): the grammar and the sampler are the same over every
/// engine, and the float32 oracle would make these seeds take minutes in CI.
fn cpu_engine() -> Option<ChatEngine> {
    let artifact = smollm2_artifact()?;
    Some(ChatEngine::new(Box::new(load_cpu_fast(&artifact).unwrap()), &artifact).unwrap())
}

fn request(fields: Value) -> ChatCompletionRequest {
    let mut request = json!({
        "messages": [{"role": "user", "content": "Describe a person as JSON."}],
        "temperature": 1.0,
        "top_p": 1.0,
        "max_tokens": 160,
    });
    request.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
    serde_json::from_value(request).unwrap()
}

fn run(
    engine: &mut ChatEngine,
    request: &ChatCompletionRequest,
) -> Result<ChatCompletion, RequestError> {
    engine.chat_completion(request, |_: ChatCompletionChunk| {}).block_on()
}

fn reply(response: &ChatCompletion) -> &str {
    response.choices[0].message.content.as_deref().unwrap()
}

/// Every one of `seeds` seeds' replies ends by itself and validates against `schema`.
fn assert_schema_always_holds(engine: &mut ChatEngine, format: Value, schema: &Value, seeds: u64) {
    let validator = jsonschema::validator_for(schema).unwrap();
    let mut distinct = std::collections::BTreeSet::new();
    for seed in 0..seeds {
        let response =
            run(engine, &request(json!({"response_format": format, "seed": seed}))).unwrap();
        let text = reply(&response);
        assert_eq!(response.choices[0].finish_reason, FinishReason::Stop, "seed {seed}: {text}");
        let value: Value = serde_json::from_str(text)
            .unwrap_or_else(|error| panic!("seed {seed}: {error}: {text}"));
        let errors: Vec<String> =
            validator.iter_errors(&value).map(|error| error.to_string()).collect();
        assert!(errors.is_empty(), "seed {seed}: {text}: {errors:?}");
        let extra = response.usage.extra.grammar_init_s;
        assert!(extra.is_some_and(|init| init >= 0.0), "grammar_init_s is reported");
        distinct.insert(text.to_string());
    }
    assert!(distinct.len() > 1, "temperature 1 should give different replies: {distinct:?}");
}

#[test]
fn webllm_and_openai_schema_forms_always_give_valid_json_on_the_cpu() {
    let Some(mut engine) = cpu_engine() else { return };
    let schema = person_schema();
    // WebLLM's form: the schema as a JSON string.
    assert_schema_always_holds(
        &mut engine,
        json!({"type": "json_object", "schema": schema.to_string()}),
        &schema,
        SEEDS,
    );
    // OpenAI's form.
    let openai = json!({"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": true}});
    assert_schema_always_holds(&mut engine, openai, &schema, SEEDS);
}

#[test]
fn schema_constrained_sampling_on_the_gpu_engine_gives_valid_json() {
    use mlc_kernels::{ContextOptions, GpuContext};
    let Some(artifact) = smollm2_artifact() else { return };
    let ctx = GpuContext::new_blocking(&ContextOptions::from_env())
        .expect("a GPU adapter (lavapipe in CI)");
    let model =
        mlc_engine::load_gpu(&artifact, ctx, mlc_engine::gpu::GpuOptions::default()).unwrap();
    let mut engine = ChatEngine::new(Box::new(model), &artifact).unwrap();
    let schema = person_schema();
    // Three seeds: the GPU engine differs from the CPU one only in where the mask is applied, and
    // each SmolLM2 reply takes ~40 s on the software Vulkan driver (lavapipe) that CI runs.
    assert_schema_always_holds(
        &mut engine,
        json!({"type": "json_object", "schema": schema.to_string()}),
        &schema,
        GPU_SEEDS,
    );
}

#[test]
fn json_object_without_a_schema_gives_json_documents() {
    let Some(mut engine) = cpu_engine() else { return };
    for seed in 0..SEEDS {
        // Unbounded: a reply may run out of tokens, but what ended by itself is JSON.
        let response = run(
            &mut engine,
            &request(
                json!({"response_format": {"type": "json_object"}, "seed": seed, "max_tokens": 96}),
            ),
        )
        .unwrap();
        let text = reply(&response);
        if response.choices[0].finish_reason == FinishReason::Stop {
            let value: Value = serde_json::from_str(text)
                .unwrap_or_else(|error| panic!("seed {seed}: {error}: {text}"));
            assert!(value.is_object() || value.is_array(), "seed {seed}: {text}");
        } else {
            assert!(text.starts_with('{') || text.starts_with('['), "seed {seed}: {text}");
        }
    }
    // Greedy, the model closes its object.
    let greedy = run(&mut engine, &request(json!({"response_format": {"type": "json_object"}, "temperature": 0, "max_tokens": 200}))).unwrap();
    serde_json::from_str::<Value>(reply(&greedy))
        .unwrap_or_else(|error| panic!("{error}: {}", reply(&greedy)));
}

#[test]
fn an_ebnf_grammar_gives_text_in_its_language() {
    let Some(mut engine) = cpu_engine() else { return };
    let grammar = "# an answer and a count\nroot ::= answer \", \" count\nanswer ::= \"yes\" | \"no\" | \"maybe\"\ncount ::= [1-9] [0-9]{0,2}\n";
    for seed in 0..SEEDS {
        let response = run(
            &mut engine,
            &request(
                json!({"response_format": {"type": "grammar", "grammar": grammar}, "seed": seed}),
            ),
        )
        .unwrap();
        let text = reply(&response);
        let (answer, count) =
            text.split_once(", ").unwrap_or_else(|| panic!("seed {seed}: {text:?}"));
        assert!(["yes", "no", "maybe"].contains(&answer), "seed {seed}: {text:?}");
        assert!(
            (1..=3).contains(&count.len())
                && !count.starts_with('0')
                && count.bytes().all(|b| b.is_ascii_digit()),
            "seed {seed}: {text:?}"
        );
        assert_eq!(response.choices[0].finish_reason, FinishReason::Stop);
    }
}

#[test]
fn bad_formats_and_tools_are_webllms_errors() {
    let Some(mut engine) = cpu_engine() else { return };
    let mut error = |fields: Value| match run(&mut engine, &request(fields)) {
        Err(RequestError::Chat(error)) => (error.name().to_string(), error.message()),
        other => panic!("expected a request error, got {other:?}"),
    };
    let (name, message) =
        error(json!({"response_format": {"type": "json_object", "schema": "{not json"}}));
    assert_eq!(name, "GrammarMatcherInitError");
    assert!(message.starts_with("Failed to initialize the grammar matcher for response format `json_object`: invalid JSON schema"), "{message}");
    let (name, message) = error(
        json!({"response_format": {"type": "json_object", "schema": "{\"type\": \"no-such-type\"}"}}),
    );
    assert_eq!(name, "GrammarMatcherInitError", "{message}");
    let (name, message) =
        error(json!({"response_format": {"type": "grammar", "grammar": "root ::= (\"a\""}}));
    assert_eq!(name, "GrammarMatcherInitError", "{message}");
    assert!(
        message.starts_with(
            "Failed to initialize the grammar matcher for response format `grammar`: "
        ),
        "{message}"
    );
    let (name, _) =
        error(json!({"response_format": {"type": "grammar", "grammar": "root ::= missing"}}));
    assert_eq!(name, "GrammarMatcherInitError");
    let (name, _) =
        error(json!({"response_format": {"type": "structural_tag", "structural_tag": {}}}));
    assert_eq!(name, "GrammarMatcherInitError");
    let (name, message) =
        error(json!({"tools": [{"type": "function", "function": {"name": "f"}}]}));
    assert_eq!(name, "UnsupportedModelIdError");
    assert!(message.contains("is not supported for ChatCompletionRequest.tools"), "{message}");
    // The engine still answers afterwards.
    run(&mut engine, &request(json!({"max_tokens": 2}))).unwrap();
}

/// tiny-qwen2 (random weights, Qwen2.5's vocabulary and chat template) as a chat engine.
fn tiny_qwen_engine() -> (ChatEngine, artifacts::TempDir) {
    let dir = artifacts::tiny_qwen2_with_tokenizer();
    let artifact = Artifact::open(dir.path().to_str().unwrap(), OpenOptions::default()).unwrap();
    let engine = ChatEngine::new(Box::new(load_cpu(&artifact).unwrap()), &artifact).unwrap();
    (engine, dir)
}

fn weather_tools() -> Value {
    json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "enum": ["Paris", "Oslo", "Lima"]},
                    "days": {"type": "integer", "minimum": 1, "maximum": 7}
                },
                "required": ["city", "days"],
                "additionalProperties": false
            }
        }
    }, {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}}, "required": ["zone"], "additionalProperties": false}}
    }])
}

#[test]
fn qwen_tool_calls_are_well_formed_even_from_random_weights() {
    let (mut engine, _dir) = tiny_qwen_engine();
    let tools = weather_tools();
    let schemas: Vec<(String, jsonschema::Validator)> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| {
            (
                tool["function"]["name"].as_str().unwrap().to_string(),
                jsonschema::validator_for(&tool["function"]["parameters"]).unwrap(),
            )
        })
        .collect();
    let mut calls_seen = 0;
    for seed in 0..SEEDS {
        let request = request(json!({
            "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
            "tools": tools, "tool_choice": "required", "seed": seed, "max_tokens": 300,
        }));
        let response = run(&mut engine, &request).unwrap();
        let choice = &response.choices[0];
        assert_eq!(
            choice.finish_reason,
            FinishReason::ToolCalls,
            "seed {seed}: {:?}",
            engine.last_message()
        );
        assert_eq!(choice.message.content, None);
        let calls = choice.message.tool_calls.as_ref().unwrap();
        assert!(!calls.is_empty());
        for (index, call) in calls.iter().enumerate() {
            assert_eq!(call.id, index.to_string());
            assert_eq!(call.kind, "function");
            let (_, validator) = schemas
                .iter()
                .find(|(name, _)| *name == call.function.name)
                .unwrap_or_else(|| panic!("unknown tool {}", call.function.name));
            let arguments: Value = serde_json::from_str(&call.function.arguments).unwrap();
            assert!(validator.is_valid(&arguments), "seed {seed}: {}", call.function.arguments);
            calls_seen += 1;
        }
    }
    assert!(calls_seen >= SEEDS as usize);
}

#[test]
fn qwen_tool_results_go_back_into_the_prompt_and_auto_may_answer_in_text() {
    let (mut engine, _dir) = tiny_qwen_engine();
    let first = run(&mut engine, &request(json!({
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
        "tools": weather_tools(), "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "seed": 7,
    })))
    .unwrap();
    let calls = first.choices[0].message.tool_calls.clone().unwrap();
    assert!(
        calls.iter().all(|call| call.function.name == "get_weather"),
        "a named tool_choice allows only that tool"
    );
    // The reply with its calls, then the tool's result: the round-trip an OpenAI client makes.
    let messages = json!([
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": null, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "0", "content": "{\"temperature\": 3}"}
    ]);
    let follow_up = |seed: u64| {
        request(
            json!({"messages": messages, "tools": weather_tools(), "seed": seed, "max_tokens": 40}),
        )
    };
    // The calls render back exactly as they were generated, so the KV cache is reused and only
    // the tool-result turn is new.
    let reused = run(&mut engine, &follow_up(0)).unwrap();
    let mut fresh_prompt = 0;
    for seed in 0..4 {
        engine.reset();
        let response = run(&mut engine, &follow_up(seed)).unwrap();
        let choice = &response.choices[0];
        match choice.finish_reason {
            FinishReason::ToolCalls => assert!(choice.message.tool_calls.is_some()),
            // `auto`: text that does not start a call.
            _ => assert!(!choice.message.content.as_deref().unwrap().starts_with('<')),
        }
        fresh_prompt = response.usage.prompt_tokens;
        // The first prompt, the call (re-encoded) and the tool-result turn.
        assert!(
            fresh_prompt > first.usage.prompt_tokens + 10,
            "{fresh_prompt} vs {}",
            first.usage.prompt_tokens
        );
    }
    let reused = reused.usage.prompt_tokens;
    assert!(
        reused < first.usage.prompt_tokens,
        "the call did not render back as generated (no KV reuse): {reused}"
    );
    assert!(
        reused + first.usage.prompt_tokens < fresh_prompt,
        "{reused} + {} >= {fresh_prompt}",
        first.usage.prompt_tokens
    );
}

#[test]
fn hermes_ids_get_webllms_rewriting_and_calls_held_to_the_tool_schemas() {
    // tiny-qwen2 answering under a Hermes id: the format follows WebLLM's function-calling list.
    let (mut engine, _dir) = tiny_qwen_engine();
    engine.set_model_id("Hermes-3-Llama-3.1-8B-q4f16_1-MLC".to_string());
    let plain = run(
        &mut engine,
        &request(json!({"messages": [{"role": "user", "content": "Weather?"}], "max_tokens": 1})),
    )
    .unwrap();
    let tools = weather_tools();
    let response = run(&mut engine, &request(json!({
        "messages": [{"role": "user", "content": "Weather?"}], "tools": tools, "temperature": 0, "max_tokens": 400,
    })))
    .unwrap();
    let choice = &response.choices[0];
    assert_eq!(choice.finish_reason, FinishReason::ToolCalls, "{:?}", engine.last_message());
    // The reply is WebLLM's JSON array of {arguments, name}.
    let array: Value = serde_json::from_str(engine.last_message()).unwrap();
    assert!(array.is_array());
    for call in choice.message.tool_calls.as_ref().unwrap() {
        let tool = tools
            .as_array()
            .unwrap()
            .iter()
            .find(|tool| tool["function"]["name"] == call.function.name.as_str())
            .unwrap();
        let arguments: Value = serde_json::from_str(&call.function.arguments).unwrap();
        assert!(
            jsonschema::validator_for(&tool["function"]["parameters"])
                .unwrap()
                .is_valid(&arguments),
            "{}",
            call.function.arguments
        );
    }
    // WebLLM's system prompt with the tools was prepended.
    assert!(response.usage.prompt_tokens > plain.usage.prompt_tokens + 100);
}

#[test]
fn manual_tool_results_on_qwen_render_as_qwen25s_template_does() {
    // WebLLM's manual function calling (no `tools`: the app writes the calls and results as
    // text). The qwen2 template has no `tool` role; the result goes back as Qwen2.5's own chat
    // template sends it, a user turn of <tool_response> blocks.
    let (mut engine, _dir) = tiny_qwen_engine();
    let history = json!([
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>"}
    ]);
    let with = |last: Value| {
        let mut messages = history.as_array().unwrap().clone();
        messages.push(last);
        request(json!({"messages": messages, "temperature": 0, "max_tokens": 6}))
    };
    let manual = run(
        &mut engine,
        &with(json!({"role": "tool", "tool_call_id": "0", "content": "{\"temperature\": 3}"})),
    )
    .unwrap();
    engine.reset();
    let as_user = run(
        &mut engine,
        &with(json!({"role": "user", "content": "<tool_response>\n{\"temperature\": 3}\n</tool_response>"})),
    )
    .unwrap();
    assert_eq!(manual.usage.prompt_tokens, as_user.usage.prompt_tokens);
    assert_eq!(reply(&manual), reply(&as_user));
}

#[test]
fn a_function_calling_reply_cut_by_max_tokens_ends_as_webllms_does() {
    // WebLLM reads calls only from a reply that ended by itself: one cut at max_tokens while the
    // model was still writing calls has finish_reason "length", no tool_calls, and (Hermes) no
    // content; the final chunk's delta is still {role: "assistant"}.
    let (mut engine, _dir) = tiny_qwen_engine();
    engine.set_model_id("Hermes-2-Pro-Llama-3-8B-q4f16_1-MLC".to_string());
    let cut = |stream: bool| {
        request(json!({
            "messages": [{"role": "user", "content": "Weather?"}], "tools": weather_tools(),
            "temperature": 0, "max_tokens": 1, "stream": stream,
        }))
    };
    let response = run(&mut engine, &cut(false)).unwrap();
    let choice = &response.choices[0];
    assert_eq!(choice.finish_reason, FinishReason::Length);
    assert_eq!(choice.message.content, None);
    assert_eq!(choice.message.tool_calls, None);
    let mut chunks = Vec::new();
    engine
        .chat_completion(&cut(true), |chunk: ChatCompletionChunk| chunks.push(chunk))
        .block_on()
        .unwrap();
    let last = serde_json::to_value(chunks.last().unwrap()).unwrap();
    assert_eq!(last["choices"][0]["delta"], json!({"role": "assistant"}), "{last}");
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    // The text streamed before the cut is the partial call array, as in WebLLM.
    let streamed: String =
        chunks.iter().filter_map(|chunk| chunk.choices[0].delta.content.clone()).collect();
    assert!(streamed.starts_with('['), "{streamed}");
    // A reply that ends by itself carries its calls in the same final delta.
    let full = request(json!({
        "messages": [{"role": "user", "content": "Weather?"}], "tools": weather_tools(),
        "temperature": 0, "max_tokens": 400, "stream": true,
    }));
    let mut chunks = Vec::new();
    engine
        .chat_completion(&full, |chunk: ChatCompletionChunk| chunks.push(chunk))
        .block_on()
        .unwrap();
    let last = &chunks.last().unwrap().choices[0];
    assert_eq!(last.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(last.delta.role.as_deref(), Some("assistant"));
    assert!(last.delta.tool_calls.is_some());
}

#[test]
fn a_structural_tag_holds_each_tagged_call_to_its_schema() {
    // WebLLM's structural-tag tool use: calls inside <function=NAME>…</function> tags whose
    // bodies follow the tool's schema. tiny-qwen2's random weights write only what the tag allows.
    let (mut engine, _dir) = tiny_qwen_engine();
    let schema = json!({"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}}, "required": ["city"], "additionalProperties": false});
    let tag = json!({"type": "structural_tag", "format": {
        "type": "tags_with_separator", "separator": "\n", "at_least_one": true, "stop_after_first": true,
        "tags": [{"type": "tag", "begin": "<function=get_weather>", "end": "</function>",
                  "content": {"type": "json_schema", "json_schema": schema}}]
    }});
    let validator = jsonschema::validator_for(&schema).unwrap();
    for seed in 0..SEEDS {
        let response = run(&mut engine, &request(json!({
            "messages": [{"role": "user", "content": "Weather?"}], "seed": seed, "max_tokens": 60,
            "response_format": {"type": "structural_tag", "structural_tag": tag},
        })))
        .unwrap();
        assert_eq!(response.choices[0].finish_reason, FinishReason::Stop, "seed {seed}");
        let text = reply(&response);
        let body = text
            .strip_prefix("<function=get_weather>")
            .and_then(|rest| rest.strip_suffix("</function>"))
            .unwrap_or_else(|| panic!("seed {seed}: {text}"));
        assert!(validator.is_valid(&serde_json::from_str(body).unwrap()), "seed {seed}: {text}");
    }
}
