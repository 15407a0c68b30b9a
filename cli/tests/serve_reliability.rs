//! `mlc-wgpu serve` under the faults a client can cause (issue 7, "Requests"):
//! a burst of 100 concurrent requests, a client that leaves mid-stream,
//! prompts beyond the context window, and malformed bodies. Everything is
//! observed through HTTP only, on the tiny official Qwen2 artifact (CPU
//! engine), whose weights are random: its text is gibberish, but it is
//! deterministic gibberish, which is all these tests compare.

use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;
use std::path::Path;
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "common/artifacts.rs"]
mod artifacts;
#[path = "common/serve_client.rs"]
mod serve_client;

use artifacts::{mlc_wgpu, stderr, temp_dir, tiny_qwen2_with_tokenizer};
use serve_client::{Reply, Server, http, http_bytes, send_request};

const CHAT: &str = "/v1/chat/completions";
const COMPLETIONS: &str = "/v1/completions";

/// The tests measure arrival order and latency, so they must not share the
/// two CPU cores with each other: each holds this lock while it runs.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a request produced, however it was delivered (JSON or a stream).
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    text: String,
    finish_reason: Value,
    prompt_tokens: Value,
    completion_tokens: Value,
}

/// The outcome of a successful reply to `request` on `path`; panics with the
/// body on anything else, so that a failure says what the server sent.
fn outcome(path: &str, request: &Value, reply: &Reply) -> Outcome {
    assert_eq!(reply.status, 200, "{request}: {}", reply.body);
    let content = |choice: &Value, key: &str| -> String {
        let value = if path == CHAT { &choice[key]["content"] } else { &choice["text"] };
        value.as_str().unwrap_or_default().to_string()
    };
    if request["stream"] == true {
        assert!(reply.headers.contains("content-type: text/event-stream"), "{}", reply.headers);
        let events = reply.events();
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{request}: {}", reply.body);
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|event| serde_json::from_str(event).unwrap())
            .collect();
        assert!(
            chunks.iter().all(|chunk| chunk.get("error").is_none()),
            "{request}: {}",
            reply.body
        );
        let text = chunks
            .iter()
            .filter_map(|chunk| chunk["choices"].get(0))
            .map(|choice| content(choice, "delta"))
            .collect();
        let finish_reason = chunks
            .iter()
            .filter_map(|chunk| chunk["choices"].get(0))
            .map(|choice| &choice["finish_reason"])
            .next_back()
            .unwrap()
            .clone();
        // `stream_options.include_usage` puts the usage in a last chunk with no choices.
        let usage = &chunks.last().unwrap()["usage"];
        Outcome {
            text,
            finish_reason,
            prompt_tokens: usage["prompt_tokens"].clone(),
            completion_tokens: usage["completion_tokens"].clone(),
        }
    } else {
        let response = reply.json();
        let choice = &response["choices"][0];
        Outcome {
            text: content(choice, "message"),
            finish_reason: choice["finish_reason"].clone(),
            prompt_tokens: response["usage"]["prompt_tokens"].clone(),
            completion_tokens: response["usage"]["completion_tokens"].clone(),
        }
    }
}

/// Request `i` of the burst: chat or text completion, streamed or not,
/// greedy or sampled at 0.7 with its own seed, its own prompt and length.
/// Every prompt is a single message, so no request can reuse the KV cache of
/// the one before it: a request's output depends on nothing but itself,
/// whatever order the burst is served in.
fn burst_request(i: usize) -> (&'static str, Value) {
    let path = if i % 3 == 2 { COMPLETIONS } else { CHAT };
    let stream = i % 2 == 1;
    let temperature = if (i / 2).is_multiple_of(2) { 0.0 } else { 0.7 };
    let text = format!("Request {i}: tell me something about the number {}.", i * 37 % 101);
    let mut request = json!({
        "temperature": temperature,
        "seed": 1000 + i * 7919,
        "max_tokens": 6 + i % 5,
        "stream": stream,
    });
    if path == CHAT {
        request["messages"] = json!([{"role": "user", "content": text}]);
    } else {
        request["prompt"] = json!(text);
    }
    if stream {
        request["stream_options"] = json!({"include_usage": true});
    }
    (path, request)
}

#[test]
fn a_burst_of_100_concurrent_requests_is_served_in_arrival_order_each_as_if_alone() {
    let _alone = one_at_a_time();
    let model = tiny_qwen2_with_tokenizer();
    // One request at a time: the queue's order is what a client sees.
    let server = Server::start_with(model.path(), &["--parallel", "1"]);
    let address = server.address.clone();
    const COUNT: usize = 100;

    let requests: Vec<(&str, Value)> = (0..COUNT).map(burst_request).collect();
    let started = Instant::now();
    let solo: Vec<Outcome> = requests
        .iter()
        .map(|(path, request)| outcome(path, request, &http(&address, "POST", path, Some(request))))
        .collect();
    let solo_time = started.elapsed() / COUNT as u32;
    // The requests are not all alike: greedy and sampled ones, chat and text.
    assert!(
        solo.iter().map(|outcome| &outcome.text).collect::<std::collections::HashSet<_>>().len()
            > COUNT / 2,
        "{solo:?}"
    );

    // Client i sends at start + i·gap. The gap orders the arrivals (only a
    // thread scheduled a whole gap late could swap two), and it is a third of
    // what a request takes, so requests arrive three times faster than they
    // are served and a queue builds up behind the first.
    let gap = (solo_time / 3).clamp(Duration::from_millis(15), Duration::from_millis(150));
    let barrier = Arc::new(Barrier::new(COUNT));
    let start = Instant::now() + Duration::from_millis(200);
    let clients: Vec<_> = requests
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, (path, request))| {
            let (address, barrier) = (address.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                std::thread::sleep(
                    (start + gap * i as u32).saturating_duration_since(Instant::now()),
                );
                let sent = Instant::now();
                let reply = http(&address, "POST", path, Some(&request));
                (sent, Instant::now(), outcome(path, &request, &reply))
            })
        })
        .collect();
    let results: Vec<(Instant, Instant, Outcome)> =
        clients.into_iter().map(|client| client.join().unwrap()).collect();

    for (i, ((_, _, burst), solo)) in results.iter().zip(&solo).enumerate() {
        assert_eq!(burst, solo, "request {i} ({}) differs from its solo run", requests[i].1);
    }
    // FIFO, as far as a client can see it. Arrival order is the order in
    // which the server has read the requests; two sent a gap apart can still
    // arrive swapped when a thread on a loaded machine is scheduled late, and
    // an answer can reach its client late. So: few neighbours swapped (a
    // LIFO or random queue swaps about half of them), and no request answered
    // before one sent a whole second earlier.
    let swapped: Vec<usize> = (1..COUNT).filter(|&i| results[i].1 < results[i - 1].1).collect();
    eprintln!(
        "{} of {COUNT} neighbours answered out of order (requests sent every {gap:?})",
        swapped.len()
    );
    let late = |i: usize| (results[i].1 - start).as_millis();
    let timeline: Vec<String> = (0..COUNT)
        .map(|i| {
            format!("{i}: sent {} ms, answered {} ms", (results[i].0 - start).as_millis(), late(i))
        })
        .collect();
    assert!(
        swapped.len() <= COUNT / 10,
        "answered before the request sent just before them: {swapped:?}\n{timeline:#?}"
    );
    for i in 0..COUNT {
        for j in 0..i {
            let overtaken =
                results[i].0 > results[j].0 + Duration::from_secs(1) && results[i].1 < results[j].1;
            assert!(
                !overtaken,
                "request {i} was answered before request {j}, sent a second earlier\n{timeline:#?}"
            );
        }
    }
    // The burst was concurrent: when the last request was sent, many were still waiting.
    let last_sent = results[COUNT - 1].0;
    let waiting =
        results.iter().filter(|(sent, done, _)| *sent <= last_sent && *done > last_sent).count();
    assert!(
        waiting >= 10,
        "only {waiting} requests were in flight at once (a request takes {solo_time:?} alone, sent every {gap:?})"
    );
}

#[test]
fn concurrent_requests_share_decode_steps_each_as_if_alone() {
    let _alone = one_at_a_time();
    let model = tiny_qwen2_with_tokenizer();
    // The CPU engine answers 4 requests at once by default.
    let server = Server::start(model.path());
    let address = server.address.clone();
    const COUNT: usize = 12;
    let requests: Vec<(&str, Value)> = (0..COUNT).map(burst_request).collect();
    let solo: Vec<Outcome> = requests
        .iter()
        .map(|(path, request)| outcome(path, request, &http(&address, "POST", path, Some(request))))
        .collect();
    let barrier = Arc::new(Barrier::new(COUNT));
    let clients: Vec<_> = requests
        .iter()
        .cloned()
        .map(|(path, request)| {
            let (address, barrier) = (address.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                outcome(path, &request, &http(&address, "POST", path, Some(&request)))
            })
        })
        .collect();
    for (i, (client, solo)) in clients.into_iter().zip(&solo).enumerate() {
        let together = client.join().unwrap();
        assert_eq!(&together, solo, "request {i} ({}) differs from its solo run", requests[i].1);
    }

    // A short request sent while a long stream runs is answered before the
    // stream ends: they share the steps instead of waiting in line.
    let long = json!({
        "messages": [{"role": "user", "content": "Count to a hundred."}],
        "temperature": 0.7, "seed": 3, "ignore_eos": true, "max_tokens": 200, "stream": true,
    });
    let (started_tx, started) = std::sync::mpsc::channel();
    let stream_address = address.clone();
    let stream = std::thread::spawn(move || {
        let request = long.to_string();
        let mut reader =
            BufReader::new(send_request(&stream_address, "POST", CHAT, request.as_bytes()));
        read_events(&mut reader, 3);
        started_tx.send(()).unwrap();
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 0 {
            line.clear();
        }
        Instant::now()
    });
    started.recv().unwrap();
    let short = json!({"messages": [{"role": "user", "content": "Hi."}], "temperature": 0.0, "max_tokens": 4});
    let reply = http(&address, "POST", CHAT, Some(&short));
    let short_done = Instant::now();
    let stream_done = stream.join().unwrap();
    assert!(
        stream_done > short_done,
        "the short request was answered {:?} after the long stream ended: it waited in line",
        short_done - stream_done
    );
    let alone = http(&address, "POST", CHAT, Some(&short));
    assert_eq!(outcome(CHAT, &short, &reply), outcome(CHAT, &short, &alone));
}

/// Reads a server-sent event stream until `count` `data:` events have arrived.
fn read_events(reader: &mut BufReader<std::net::TcpStream>, count: usize) {
    let mut seen = 0;
    let mut line = String::new();
    while seen < count {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the stream ended after {seen} events");
        seen += usize::from(line.starts_with("data: "));
    }
}

#[test]
fn a_client_leaving_mid_stream_stops_its_generation_and_the_next_request_is_fresh() {
    let _alone = one_at_a_time();
    let model = tiny_qwen2_with_tokenizer();
    let mut server = Server::start(model.path());
    let address = server.address.clone();
    let probe = json!({"messages": [{"role": "user", "content": "Say something."}], "temperature": 0.7, "seed": 5, "max_tokens": 12});
    let fresh = outcome(CHAT, &probe, &http(&address, "POST", CHAT, Some(&probe)));

    // A stream that would run to the end of the 4096-token context window.
    let endless = json!({
        "messages": [{"role": "user", "content": "Count forever."}],
        "temperature": 0.7, "seed": 9, "ignore_eos": true, "stream": true,
    });
    let mut reader =
        BufReader::new(send_request(&address, "POST", CHAT, endless.to_string().as_bytes()));
    read_events(&mut reader, 3);
    let streaming = Instant::now();
    read_events(&mut reader, 20);
    // What 20 tokens take; the remaining ~4000 would take 200 times as long.
    let twenty_tokens = streaming.elapsed();
    reader.get_ref().shutdown(Shutdown::Both).unwrap();
    drop(reader);

    let asked = Instant::now();
    let after = outcome(CHAT, &probe, &http(&address, "POST", CHAT, Some(&probe)));
    let waited = asked.elapsed();
    assert_eq!(after, fresh, "the request after an abandoned stream differs from a fresh run");
    assert!(
        waited < twenty_tokens * 40 + Duration::from_secs(2),
        "the next request waited {waited:?}: the abandoned generation went on (20 tokens took {twenty_tokens:?})"
    );

    // A non-streaming client that leaves before its answer: the server finishes
    // the job, fails to deliver it, and goes on.
    let leaver = send_request(&address, "POST", CHAT, probe.to_string().as_bytes());
    leaver.shutdown(Shutdown::Both).unwrap();
    drop(leaver);
    assert_eq!(outcome(CHAT, &probe, &http(&address, "POST", CHAT, Some(&probe))), fresh);
    assert!(server.is_running());
}

/// The prompt token ids of a chat request, as `mlc-wgpu render-prompt` counts them.
fn prompt_token_count(model: &Path, messages: &Value) -> usize {
    let file = temp_dir();
    let messages_file = file.path().join("messages.json");
    std::fs::write(&messages_file, messages.to_string()).unwrap();
    let output = mlc_wgpu(&[
        "render-prompt",
        "--model",
        model.to_str().unwrap(),
        "--messages",
        messages_file.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let ids: Vec<u32> = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    ids.len()
}

/// WebLLM's ContextWindowSizeExceededError text (docs/chat.md, "WebLLM's request
/// contract").
fn context_window_message(prompt_tokens: usize, window: usize) -> String {
    format!(
        "Prompt tokens exceed context window size: number of prompt tokens: {prompt_tokens}; context window size: {window}\n\
         Consider shortening the prompt, or increase `context_window_size`, or using sliding window via `sliding_window_size`."
    )
}

#[test]
fn prompts_beyond_the_context_window_get_webllms_error_as_a_400() {
    let _alone = one_at_a_time();
    let model = tiny_qwen2_with_tokenizer();
    let mut server = Server::start(model.path());
    let address = server.address.clone();
    let probe = json!({"prompt": "Once upon a time", "temperature": 0, "max_tokens": 8});
    let fresh = outcome(COMPLETIONS, &probe, &http(&address, "POST", COMPLETIONS, Some(&probe)));

    let long_text = "hello ".repeat(5000);
    let messages = json!([{"role": "user", "content": long_text}]);
    let prompt_tokens = prompt_token_count(model.path(), &messages);
    assert!(prompt_tokens > 4096, "{prompt_tokens} tokens fit the window; the test needs more");
    for stream in [false, true] {
        let request = json!({"messages": messages, "max_tokens": 4, "stream": stream});
        let reply = http(&address, "POST", CHAT, Some(&request));
        // Refused before any token, so even a stream gets a plain 400.
        assert_eq!(reply.status, 400, "stream {stream}: {}", reply.body);
        let error = &reply.json()["error"];
        assert_eq!(error["type"], "ContextWindowSizeExceededError");
        assert_eq!(error["message"], context_window_message(prompt_tokens, 4096));
        assert_eq!((&error["param"], &error["code"]), (&Value::Null, &Value::Null));
    }

    let request = json!({"prompt": long_text, "max_tokens": 4});
    let reply = http(&address, "POST", COMPLETIONS, Some(&request));
    assert_eq!(reply.status, 400, "{}", reply.body);
    let error = &reply.json()["error"];
    assert_eq!(error["type"], "ContextWindowSizeExceededError");
    let message = error["message"].as_str().unwrap();
    let counted: usize = message
        .strip_prefix("Prompt tokens exceed context window size: number of prompt tokens: ")
        .and_then(|rest| rest.split(';').next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("{message}"));
    assert!(counted > 4096, "{message}");
    assert_eq!(message, context_window_message(counted, 4096));

    assert_eq!(
        outcome(COMPLETIONS, &probe, &http(&address, "POST", COMPLETIONS, Some(&probe))),
        fresh
    );
    assert!(server.is_running());
}

#[test]
fn malformed_bodies_and_wrong_field_types_get_400_and_the_server_keeps_serving() {
    let _alone = one_at_a_time();
    let model = tiny_qwen2_with_tokenizer();
    let mut server = Server::start(model.path());
    let address = server.address.clone();
    let probe = json!({"messages": [{"role": "user", "content": "Hi"}], "temperature": 0, "max_tokens": 8, "stream": true});
    let fresh = outcome(CHAT, &probe, &http(&address, "POST", CHAT, Some(&probe)));

    let user = r#"[{"role": "user", "content": "Hi"}]"#;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (CHAT, b"{\"messages\": [".to_vec()),
        (CHAT, b"not json at all".to_vec()),
        (CHAT, b"[]".to_vec()),
        (CHAT, b"{}".to_vec()),
        (CHAT, b"null".to_vec()),
        (CHAT, br#"{"messages": "Hi"}"#.to_vec()),
        (CHAT, br#"{"messages": [{"role": "user", "content": 5}]}"#.to_vec()),
        (CHAT, br#"{"messages": [{"content": "Hi"}]}"#.to_vec()),
        (CHAT, format!(r#"{{"messages": {user}, "max_tokens": "8"}}"#).into_bytes()),
        (CHAT, format!(r#"{{"messages": {user}, "max_tokens": 1.5}}"#).into_bytes()),
        (CHAT, format!(r#"{{"messages": {user}, "n": -1}}"#).into_bytes()),
        (CHAT, format!(r#"{{"messages": {user}, "temperature": "hot"}}"#).into_bytes()),
        (CHAT, format!(r#"{{"messages": {user}, "stream": "yes"}}"#).into_bytes()),
        (CHAT, format!(r#"{{"messages": {user}, "stop": 7}}"#).into_bytes()),
        (CHAT, format!(r#"{{"messages": {user}, "logit_bias": [1, 2]}}"#).into_bytes()),
        (CHAT, format!(r#"{{"messages": {user}}} trailing"#).into_bytes()),
        (CHAT, b"{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}".to_vec()),
        (COMPLETIONS, b"{\"prompt\": ".to_vec()),
        (COMPLETIONS, br#"{"prompt": 5}"#.to_vec()),
        (COMPLETIONS, br#"{"max_tokens": 4}"#.to_vec()),
        (COMPLETIONS, br#"{"prompt": "x", "echo": "no"}"#.to_vec()),
    ];
    for (path, body) in &cases {
        let shown = String::from_utf8_lossy(body);
        let reply = http_bytes(&address, "POST", path, body);
        assert_eq!(reply.status, 400, "{path} {shown}: {}", reply.body);
        let error = &reply.json()["error"];
        assert_eq!(error["type"], "invalid_request_error", "{path} {shown}: {}", reply.body);
        assert!(
            error["message"].as_str().unwrap().starts_with("invalid request body: "),
            "{path} {shown}: {}",
            reply.body
        );
    }

    // A body cut short: the client promises more bytes than it sends, then
    // stops writing. tiny_http reads bodies up to 1 KiB before handing the
    // request over, so a short promise ends in a closed connection with no
    // answer; a longer one reaches the JSON parser, which reports the cut.
    for (promised, answer_starts) in [(1000, ""), (100_000, "HTTP/1.1 400 ")] {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        write!(stream, "POST {CHAT} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {promised}\r\n\r\n{{\"messages\": [{{\"ro").unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
        assert!(
            answer.starts_with(answer_starts) && (answer_starts.is_empty() == answer.is_empty()),
            "{promised}: {answer}"
        );
        assert!(
            answer.is_empty() || answer.contains("invalid request body: EOF while parsing"),
            "{answer}"
        );
    }

    // A body over the 16 MiB limit is refused without being parsed.
    let huge = format!(r#"{{"prompt": "{}"}}"#, "a".repeat(17 << 20));
    let reply = http_bytes(&address, "POST", COMPLETIONS, huge.as_bytes());
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");

    assert!(server.is_running());
    assert_eq!(outcome(CHAT, &probe, &http(&address, "POST", CHAT, Some(&probe))), fresh);
}

#[test]
fn an_empty_messages_list_gets_a_clear_openai_error() {
    let _alone = one_at_a_time();
    let model = tiny_qwen2_with_tokenizer();
    let server = Server::start(model.path());
    for stream in [false, true] {
        let request = json!({"messages": [], "stream": stream});
        let reply = http(&server.address, "POST", CHAT, Some(&request));
        assert_eq!(reply.status, 400, "{}", reply.body);
        let error = &reply.json()["error"];
        assert_eq!(error["type"], "invalid_request_error", "{}", reply.body);
        assert_eq!(error["param"], "messages", "{}", reply.body);
        assert_eq!(
            error["message"],
            "`messages` is empty: a chat request needs at least one message"
        );
    }
}

/// A chat request that would generate until the 4096-token context window is full.
fn endless(stream: bool) -> Value {
    json!({
        "messages": [{"role": "user", "content": "Count forever."}],
        "temperature": 0.7, "seed": 9, "ignore_eos": true, "stream": stream,
    })
}

#[test]
fn clients_that_leave_before_their_answer_cancel_their_generation() {
    let _alone = one_at_a_time();
    let model = tiny_qwen2_with_tokenizer();
    let mut server = Server::start(model.path());
    let address = server.address.clone();
    let probe = json!({"messages": [{"role": "user", "content": "Say something."}], "temperature": 0.7, "seed": 5, "max_tokens": 40});
    let asked = Instant::now();
    let fresh = outcome(CHAT, &probe, &http(&address, "POST", CHAT, Some(&probe)));
    // What 40 tokens take; an endless request generates 100 times as many.
    let forty_tokens = asked.elapsed();

    // One non-streaming client generating, one queued behind it, one stream
    // waiting behind both: all leave before any answer.
    let running = send_request(&address, "POST", CHAT, endless(false).to_string().as_bytes());
    std::thread::sleep(Duration::from_millis(300));
    let queued = send_request(&address, "POST", CHAT, endless(false).to_string().as_bytes());
    let queued_stream = send_request(&address, "POST", CHAT, endless(true).to_string().as_bytes());
    std::thread::sleep(Duration::from_millis(100));
    for client in [running, queued, queued_stream] {
        client.shutdown(Shutdown::Both).unwrap();
    }

    let asked = Instant::now();
    let after = outcome(CHAT, &probe, &http(&address, "POST", CHAT, Some(&probe)));
    let waited = asked.elapsed();
    assert_eq!(after, fresh, "the request after the departed ones differs from a fresh run");
    assert!(
        waited < forty_tokens * 10 + Duration::from_secs(1),
        "the next request waited {waited:?}: a departed client's generation went on (40 tokens take {forty_tokens:?})"
    );
    assert!(server.is_running());
}

#[test]
fn max_time_ends_a_long_generation_with_what_it_has() {
    let _alone = one_at_a_time();
    let model = tiny_qwen2_with_tokenizer();
    let server = Server::start_with(model.path(), &["--max-time", "0.5"]);
    let request = endless(false);
    let asked = Instant::now();
    let reply = http(&server.address, "POST", CHAT, Some(&request));
    let took = asked.elapsed();
    let done = outcome(CHAT, &request, &reply);
    assert_eq!(done.finish_reason, "abort", "{}", reply.body);
    let tokens = done.completion_tokens.as_u64().unwrap();
    assert!(tokens > 0 && tokens < 4000, "{tokens} tokens");
    assert!(took < Duration::from_secs(5), "took {took:?}");

    let model_path = model.path().to_str().unwrap();
    let bad = mlc_wgpu(&["serve", "--max-time", "0", "--model", model_path]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("not a positive number of seconds"), "{}", stderr(&bad));
}

#[test]
fn a_busy_port_fails_at_once_before_the_model_loads() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    // The model does not exist: the port must be what fails, before any load.
    let output =
        mlc_wgpu(&["serve", "--device", "cpu", "--port", &port, "--model", "/no/such/model"]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("/no/such/model"), "the model was loaded first: {text}");
}
