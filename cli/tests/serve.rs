//! `mlc-wgpu serve` as a client sees it: the binary on 127.0.0.1 with an
//! ephemeral port and the SmolLM2 artifact on the CPU engine, called with raw
//! HTTP and, when Python's `openai` package is installed, the official client.

use std::process::Command;

use serde_json::{Value, json};

#[path = "common/serve_client.rs"]
mod serve_client;

use mlc_conformance::{SMOLLM2 as MODEL, shared_path};
use serve_client::{Server, http};

const ANSWER: &str = "The capital of France is Paris.";

fn capital_request(stream: bool) -> Value {
    json!({
        "model": "smollm2",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "temperature": 0,
        "max_tokens": 12,
        "stream": stream,
    })
}

#[test]
fn serves_the_openai_api_over_http() {
    let Some(model) = shared_path(MODEL) else { return };
    let server = Server::start(&model);
    let address = server.address.as_str();

    let models = http(address, "GET", "/v1/models", None);
    assert_eq!(models.status, 200);
    assert_eq!(models.json()["data"][0]["id"], "smollm2-135m-instruct-q4f16_1-mlc");

    let reply = http(address, "POST", "/v1/chat/completions", Some(&capital_request(false)));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let response = reply.json();
    assert_eq!(response["object"], "chat.completion");
    assert_eq!(response["choices"][0]["message"]["content"], ANSWER);
    assert_eq!(response["choices"][0]["finish_reason"], "stop");
    assert!(response["usage"]["extra"]["time_to_first_token_s"].is_number());

    let reply = http(address, "POST", "/v1/chat/completions", Some(&capital_request(true)));
    assert_eq!(reply.status, 200);
    assert!(reply.headers.contains("content-type: text/event-stream"), "{}", reply.headers);
    let events = reply.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|event| serde_json::from_str(event).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, ANSWER);
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");

    let completion = json!({"prompt": "Once upon a time, there was a little", "temperature": 0, "max_tokens": 4});
    let reply = http(address, "POST", "/v1/completions", Some(&completion));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["choices"][0]["text"], " girl named Emma.");
}

#[test]
fn bad_requests_get_openai_style_errors_and_the_server_keeps_serving() {
    let Some(model) = shared_path(MODEL) else { return };
    let server = Server::start(&model);
    let address = server.address.as_str();

    let mut invalid = capital_request(false);
    invalid["temperature"] = json!(-1);
    let reply = http(address, "POST", "/v1/chat/completions", Some(&invalid));
    assert_eq!(reply.status, 400);
    let error = &reply.json()["error"];
    assert_eq!(error["type"], "NonNegativeError");
    assert_eq!(error["message"], "Make sure temperature >= 0.");
    assert!(error.get("param").is_some() && error.get("code").is_some());

    let mut streaming_invalid = capital_request(true);
    streaming_invalid["messages"] = json!([{"role": "assistant", "content": "hi"}]);
    let reply = http(address, "POST", "/v1/chat/completions", Some(&streaming_invalid));
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["type"], "MessageOrderError");

    let reply = http(address, "POST", "/v1/chat/completions", None);
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");

    let reply = http(address, "GET", "/v1/nothing", None);
    assert_eq!(reply.status, 404);
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains("/v1/nothing"));

    // Two requests at once: the second waits for the first, both answered.
    let short =
        json!({"messages": [{"role": "user", "content": "Hi"}], "temperature": 0, "max_tokens": 2});
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (address, short) = (address.to_string(), short.clone());
            std::thread::spawn(move || http(&address, "POST", "/v1/chat/completions", Some(&short)))
        })
        .collect();
    let texts: Vec<Value> = clients
        .into_iter()
        .map(|client| client.join().unwrap().json()["choices"][0]["message"]["content"].clone())
        .collect();
    assert_eq!(texts[0], texts[1]);
}

#[test]
fn the_official_openai_python_client_streams_a_chat() {
    let Some(model) = shared_path(MODEL) else { return };
    let importable = Command::new("python3")
        .args(["-c", "import openai"])
        .status()
        .is_ok_and(|status| status.success());
    if !importable {
        let banner = "!".repeat(78);
        eprintln!(
            "{banner}\n!! SKIPPED: Python's `openai` package is not installed (pip install openai);\n!! the official-client check of `mlc-wgpu serve` did not run.\n{banner}"
        );
        // scripts/test-all.sh installs it, so in CI its absence is a failure.
        assert!(std::env::var_os("CI").is_none(), "the openai package is required in CI");
        return;
    }
    let server = Server::start(&model);
    let script = r#"
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key="unused")
stream = client.chat.completions.create(
    model="smollm2", messages=[{"role": "user", "content": "What is the capital of France?"}],
    temperature=0, max_tokens=12, stream=True, stream_options={"include_usage": True})
text, usage = "", None
for chunk in stream:
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
    if chunk.usage:
        usage = chunk.usage
print(text)
print(usage.prompt_tokens)
"#;
    let output = Command::new("python3")
        .args(["-c", script, &format!("http://{}/v1", server.address)])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout.lines().collect::<Vec<_>>(), [ANSWER, "37"]);
}
