//! Structured output through `mlc-wgpu serve` on tiny-qwen2 (Qwen2.5's
//! template and vocabulary, random weights): a Qwen2.5 tool call round-trips
//! through the official `openai` Python client (tool_calls out, the assistant
//! message and the tool's result back in), OpenAI's `json_schema` form gives
//! schema-valid JSON, and bad requests get OpenAI-style error objects with
//! WebLLM's names.

use std::process::Command;

use serde_json::{Value, json};

#[path = "common/artifacts.rs"]
mod artifacts;
// The shared client; this file needs only part of it.
#[allow(dead_code)]
#[path = "common/serve_client.rs"]
mod serve_client;

use serve_client::{Server, http};

fn tools() -> Value {
    json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"enum": ["Paris", "Oslo"]}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
                "required": ["city", "days"],
                "additionalProperties": false
            }
        }
    }])
}

#[test]
fn a_qwen_tool_call_round_trips_through_the_official_openai_client() {
    let importable = Command::new("python3")
        .args(["-c", "import openai"])
        .status()
        .is_ok_and(|status| status.success());
    if !importable {
        let banner = "!".repeat(78);
        eprintln!(
            "{banner}\n!! SKIPPED: Python's `openai` package is not installed (pip install openai);\n!! the official-client tool-call check of `mlc-wgpu serve` did not run.\n{banner}"
        );
        assert!(std::env::var_os("CI").is_none(), "the openai package is required in CI");
        return;
    }
    let model = artifacts::tiny_qwen2_with_tokenizer();
    let server = Server::start(model.path());
    let script = r#"
import json, sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key="unused")
tools = json.loads(sys.argv[2])
messages = [{"role": "user", "content": "What is the weather in Paris?"}]
first = client.chat.completions.create(model="tiny", messages=messages, tools=tools, tool_choice="required",
                                       temperature=1, seed=3, max_tokens=120)
choice = first.choices[0]
assert choice.finish_reason == "tool_calls", choice
assert choice.message.content is None, choice.message
for call in choice.message.tool_calls:
    assert call.type == "function" and call.function.name == "get_weather", call
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "days"} and args["city"] in ("Paris", "Oslo") and 1 <= args["days"] <= 7, args
messages.append(choice.message.model_dump(exclude_none=True))
for call in choice.message.tool_calls:
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"celsius": 21})})
second = client.chat.completions.create(model="tiny", messages=messages, tools=tools, temperature=0, max_tokens=4)
assert second.choices[0].finish_reason in ("stop", "length", "tool_calls"), second
stream = client.chat.completions.create(model="tiny", messages=messages[:1], tools=tools, tool_choice="required",
                                        temperature=1, seed=3, max_tokens=120, stream=True)
streamed = [c for c in stream if c.choices and c.choices[0].finish_reason]
final = streamed[-1].choices[0]
assert final.finish_reason == "tool_calls", final
assert [(c.function.name, c.function.arguments) for c in final.delta.tool_calls] == \
       [(c.function.name, c.function.arguments) for c in choice.message.tool_calls]
schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer", "minimum": 0, "maximum": 9}},
          "required": ["ok", "n"], "additionalProperties": False}
structured = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "JSON please"}],
    response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}},
    temperature=1, seed=5, max_tokens=40)
value = json.loads(structured.choices[0].message.content)
assert set(value) == {"ok", "n"} and isinstance(value["ok"], bool) and 0 <= value["n"] <= 9, value
try:
    client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}],
        response_format={"type": "json_object", "schema": "{not json"})
    raise SystemExit("a bad schema was accepted")
except openai.BadRequestError as error:
    print(error.body["type"])
# The calls sent back render exactly as generated, so the server reuses its KV cache and
# prefills only the tool results.
print(len(choice.message.tool_calls), second.usage.prompt_tokens < first.usage.prompt_tokens)
"#;
    let output = Command::new("python3")
        .args(["-c", script, &format!("http://{}/v1", server.address), &tools().to_string()])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "GrammarMatcherInitError");
    assert!(lines[1].ends_with(" True"), "{stdout}");
}

#[test]
fn tools_on_a_model_without_a_tool_format_are_refused_with_webllms_error() {
    // tiny-qwen2 under another template name: not a Qwen2.5 chat model any more.
    let model = artifacts::tiny_qwen2_with_tokenizer();
    artifacts::edit_json(&model.path().join("mlc-chat-config.json"), |config| {
        config["conv_template"]["name"] = json!("chatml")
    });
    let server = Server::start(model.path());
    let request = json!({"messages": [{"role": "user", "content": "hi"}], "tools": tools()});
    let reply = http(&server.address, "POST", "/v1/chat/completions", Some(&request));
    assert_eq!(reply.status, 400);
    let error = &reply.json()["error"];
    assert_eq!(error["type"], "UnsupportedModelIdError", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("is not supported for ChatCompletionRequest.tools"),
        "{error}"
    );
    let grammar = json!({"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "grammar", "grammar": "root ::= nothing"}});
    let reply = http(&server.address, "POST", "/v1/chat/completions", Some(&grammar));
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["type"], "GrammarMatcherInitError");
}
