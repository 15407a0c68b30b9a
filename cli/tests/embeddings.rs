//! `mlc-wgpu embed` and `/v1/embeddings` of `mlc-wgpu serve`, on the BERT
//! fixture (`families/bert-tiny` converted to q0f32) and on a chat model.

use base64::Engine as _;
use serde_json::{Value, json};

#[path = "common/artifacts.rs"]
mod artifacts;
// Streams are not used here.
#[allow(dead_code)]
#[path = "common/serve_client.rs"]
mod serve_client;

use artifacts::tiny_qwen2_with_tokenizer;
use mlc_conformance::{converted_family_as, fixtures_dir};
use serve_client::{Server, http};

const MODEL: &str = "families/bert-tiny";

fn golden() -> Value {
    let path = fixtures_dir().join(MODEL).join("golden/index.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The reference first row of the golden input with these ids, L2-normalised.
fn normalised_reference(ids: &Value) -> Vec<f32> {
    let golden = golden();
    let input = golden["inputs"].as_array().unwrap().iter().find(|i| &i["ids"] == ids).unwrap();
    let file = fixtures_dir().join(MODEL).join("golden").join(input["first_row"].as_str().unwrap());
    let row = mlc_conformance::read_f32(&file);
    let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
    row.iter().map(|v| v / norm).collect()
}

fn floats(value: &Value) -> Vec<f32> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

fn assert_near(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    let gap = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(gap < 1e-5, "max |Δ| {gap}");
}

#[test]
fn the_embed_command_prints_the_normalised_cls_rows_of_each_text() {
    let (_temp, artifact) = converted_family_as(MODEL, mlc_loader::Quantization::Q0F32);
    let dir = artifact.dir().unwrap().to_str().unwrap().to_string();
    let golden = golden();
    let texts: Vec<&str> =
        golden["texts"].as_array().unwrap().iter().map(|t| t["text"].as_str().unwrap()).collect();
    let mut args = vec!["embed", "--device", "cpu", "--model", &dir];
    args.extend(&texts[..2]);
    let output = artifacts::mlc_wgpu(&args);
    assert!(output.status.success(), "{}", artifacts::stderr(&output));
    let response: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(response["object"], "list");
    assert_eq!(response["model"], "mlc");
    for (i, text) in golden["texts"].as_array().unwrap()[..2].iter().enumerate() {
        assert_eq!(response["data"][i]["index"], i);
        let got = floats(&response["data"][i]["embedding"]);
        assert_near(&got, &normalised_reference(&text["serve_ids"]));
    }
    let tokens: usize = golden["texts"].as_array().unwrap()[..2]
        .iter()
        .map(|t| t["serve_ids"].as_array().unwrap().len())
        .sum();
    assert_eq!(response["usage"]["prompt_tokens"], tokens);

    // On the GPU encoder (lavapipe in CI): the same rows within the GPU bound
    // (5e-2 × std of the reference row, docs/families.md "bert").
    let mut args = vec!["embed", "--device", "gpu", "--model", &dir];
    args.extend(&texts[..2]);
    let output = artifacts::mlc_wgpu(&args);
    assert!(output.status.success(), "{}", artifacts::stderr(&output));
    assert!(artifacts::stderr(&output).contains("running the encoder on"));
    let response: Value = serde_json::from_slice(&output.stdout).unwrap();
    for (i, text) in golden["texts"].as_array().unwrap()[..2].iter().enumerate() {
        let want = normalised_reference(&text["serve_ids"]);
        let got = floats(&response["data"][i]["embedding"]);
        let gap = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        let bound = mlc_conformance::GPU_TOLERANCE * mlc_conformance::std_dev(&want);
        assert!(got.len() == want.len() && gap <= bound, "GPU row {i}: max |Δ| {gap} > {bound}");
    }
}

fn serve_bert() -> (tempfile::TempDir, Server) {
    let (temp, artifact) = converted_family_as(MODEL, mlc_loader::Quantization::Q0F32);
    let server = Server::start(artifact.dir().unwrap());
    (temp, server)
}

#[test]
fn serve_answers_v1_embeddings_in_all_input_forms() {
    let (_temp, server) = serve_bert();
    let address = server.address.as_str();
    let golden = golden();
    let text = &golden["texts"][2];
    let ids = &golden["inputs"][1]["ids"];

    for input in [json!(text["text"]), json!([text["text"]]), json!(text["serve_ids"])] {
        let reply = http(address, "POST", "/v1/embeddings", Some(&json!({ "input": input })));
        assert_eq!(reply.status, 200, "{}", reply.body);
        let response = reply.json();
        assert_eq!(response["data"].as_array().unwrap().len(), 1);
        assert_eq!(response["data"][0]["object"], "embedding");
        assert_near(
            &floats(&response["data"][0]["embedding"]),
            &normalised_reference(&text["serve_ids"]),
        );
    }
    // Token arrays of different lengths in one request, base64-encoded.
    let request = json!({"input": [text["serve_ids"], ids], "encoding_format": "base64"});
    let reply = http(address, "POST", "/v1/embeddings", Some(&request));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let response = reply.json();
    for (i, want) in [&text["serve_ids"], ids].into_iter().enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(response["data"][i]["embedding"].as_str().unwrap())
            .unwrap();
        let got: Vec<f32> =
            bytes.chunks(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        assert_near(&got, &normalised_reference(want));
    }
}

#[test]
fn serve_gives_openai_style_errors_for_bad_embedding_requests() {
    let (_temp, server) = serve_bert();
    let address = server.address.as_str();
    let error = |body: Value| {
        let reply = http(address, "POST", "/v1/embeddings", Some(&body));
        assert_eq!(reply.status, 400, "{}", reply.body);
        reply.json()["error"].clone()
    };
    assert_eq!(error(json!({"input": ""}))["type"], "EmbeddingInputEmptyError");
    assert_eq!(error(json!({"input": [[1, 2], []]}))["type"], "EmbeddingInputEmptyError");
    assert_eq!(error(json!({"input": "a", "dimensions": 8}))["type"], "UnsupportedFieldsError");
    let long = error(json!({"input": vec![5; 65]}));
    assert_eq!(long["type"], "EmbeddingExceedContextWindowSizeError");
    assert!(long["message"].as_str().unwrap().contains("up to 64 context size"));
    assert_eq!(error(json!({"input": {"text": "a"}}))["type"], "invalid_request_error");
    let chat = json!({"messages": [{"role": "user", "content": "hi"}]});
    let reply = http(address, "POST", "/v1/chat/completions", Some(&chat));
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["type"], "IncorrectPipelineLoadedError");
    assert_eq!(
        reply.json()["error"]["message"],
        "ChatCompletionRequest expects model to be loaded with LLMChatPipeline. However, mlc is not loaded with this pipeline."
    );
    // Still serving.
    let reply = http(address, "POST", "/v1/embeddings", Some(&json!({"input": "snow"})));
    assert_eq!(reply.status, 200);
}

#[test]
fn serve_refuses_embeddings_on_a_chat_model() {
    let model = tiny_qwen2_with_tokenizer();
    let server = Server::start(model.path());
    let reply = http(&server.address, "POST", "/v1/embeddings", Some(&json!({"input": "hi"})));
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.json()["error"]["type"], "IncorrectPipelineLoadedError");
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains("EmbeddingPipeline"));
}
