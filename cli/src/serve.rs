//! `serve`: an OpenAI-compatible HTTP server over the chat engine.
//!
//! Routes: `GET /v1/models`, `POST /v1/chat/completions`,
//! `POST /v1/completions` (JSON, or server-sent events with `stream: true`),
//! `POST /v1/embeddings` (for an embedding model; MLC's server's convention:
//! `[CLS] … [SEP]` added, unit-length vectors, `encoding_format` float or base64).
//! A request for the other kind of model than the one served gets WebLLM's
//! `IncorrectPipelineLoadedError` (400).
//! One engine answers one request at a time: it lives on a worker thread (the
//! GPU engine cannot move between threads) that takes jobs from a channel in
//! arrival order, while each connection is read and answered on a thread of
//! its own. A request the engine rejects gets HTTP 400 with an OpenAI-style
//! error body whose `type` is WebLLM's error name.
//!
//! The port is bound before the model loads, so a busy port fails at once.
//! A client that leaves (closes its connection) while its request is queued
//! or generating cancels it: the generation stops at its next step (the
//! connection is watched every [`WATCH_INTERVAL`], see [`ClientWatch`]), so
//! the requests behind it are not kept waiting. `--max-time` bounds each
//! request's generation the same way (`finish_reason: "abort"`).
//!
//! When the GPU device is lost (driver reset, another process taking the
//! GPU), the request that found out gets 503 `DeviceLostError`, the engine (or
//! an embedding model's encoder) is dropped, and the next request loads the
//! model again on a new device
//! before it is answered; the server never needs a restart.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, Read, Write};
use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::task::{Context as PollContext, Poll, Waker};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use clap::Args;
use mlc_chat::{
    ChatCompletionRequest, ChatEngine, ChatError, CompletionRequest, Embedder, EmbeddingConvention,
    EmbeddingRequest, ErrorObject, ErrorResponse, RequestError, Tokenizer, ToolFormat,
    check_embedding_request, validate_chat_request, validate_completion_request,
};
use mlc_engine::batch::Batcher;
use mlc_engine::{EngineError, LanguageModel, ModelKind};
use mlc_loader::{Artifact, ChatConfig};
use pollster::FutureExt as _;
use serde::Serialize;
use tiny_http::{Header, Method, Request, Response};

use crate::args::Device;
use crate::chat::EngineArgs;
use crate::client_watch::ClientWatch;

/// Largest request body accepted.
const MAX_BODY_BYTES: u64 = 16 << 20;
/// How often a waiting request checks that its client is still connected,
/// and the engine thread that its job is still wanted.
const WATCH_INTERVAL: Duration = Duration::from_millis(10);
/// The status logged for a request whose client left (nginx's convention; never sent).
const CLIENT_CLOSED: u16 = 499;

/// `mlc-wgpu serve`.
#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Model id reported by /v1/models and in responses (default: the artifact's name).
    #[arg(long)]
    model_id: Option<String>,
    /// Longest time in seconds one request may generate; it then ends with
    /// `finish_reason: "abort"` and what it generated so far.
    #[arg(long, value_parser = parse_seconds)]
    max_time: Option<Duration>,
    /// Requests answered at once, their decode steps run together (llama-server's
    /// `--parallel`); more wait in line, first come first served. Default: 4 on
    /// the CPU engines, 1 on the GPU engine (each sequence holds a KV cache of
    /// the whole context window on the device). A request running alone has
    /// its steps queued ahead on the device either way.
    #[arg(long, short = 'n')]
    parallel: Option<NonZeroUsize>,
}

/// Requests answered at once without `--parallel`, where the engine can.
const DEFAULT_PARALLEL: usize = 4;

/// A positive number of seconds.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds.is_finite() => Ok(Duration::from_secs_f64(seconds)),
        _ => Err(format!("`{text}` is not a positive number of seconds")),
    }
}

/// What a client asked the engine for (boxed: the two differ much in size).
enum ApiRequest {
    Chat(Box<ChatCompletionRequest>),
    Completion(Box<CompletionRequest>),
    Embedding(Box<EmbeddingRequest>),
}

impl ApiRequest {
    /// WebLLM's request class name and the pipeline it needs.
    fn needs(&self) -> (&'static str, &'static str) {
        match self {
            ApiRequest::Chat(_) => ("ChatCompletionRequest", "LLMChatPipeline"),
            ApiRequest::Completion(_) => ("CompletionCreateParams", "LLMChatPipeline"),
            ApiRequest::Embedding(_) => ("EmbeddingCreateParams", "EmbeddingPipeline"),
        }
    }

    /// The error for sending this request to `model_id`, of the other kind.
    fn wrong_model(&self, model_id: &str) -> ChatError {
        let (request_name, pipeline) = self.needs();
        ChatError::IncorrectPipelineLoaded {
            model_id: model_id.to_string(),
            pipeline,
            request_name,
        }
    }
}

/// A request waiting for the engine, with where its results go.
struct Job {
    request: ApiRequest,
    events: Sender<Event>,
    /// Set when the client left: the job is skipped, or its generation stopped.
    cancelled: Arc<AtomicBool>,
}

/// What the worker reports about a job: stream chunks, then the outcome.
enum Event {
    /// A serialized stream chunk.
    Chunk(String),
    /// The serialized response, or the error.
    Done(Result<String, ApiError>),
}

/// An HTTP error status with its JSON body.
struct ApiError {
    status: u16,
    body: ErrorResponse,
}

impl ApiError {
    fn new(status: u16, kind: &str, message: String) -> ApiError {
        ApiError {
            status,
            body: ErrorResponse {
                error: ErrorObject { message, kind: kind.to_string(), param: None, code: None },
            },
        }
    }

    /// A request WebLLM would reject: its error name and message.
    fn invalid(error: &ChatError) -> ApiError {
        ApiError { status: 400, body: ErrorResponse::from(error) }
    }

    /// A request the engine refused or failed: WebLLM's error name and message.
    fn from_request_error(error: &RequestError) -> ApiError {
        let status = if error.is_client_error() { 400 } else { 500 };
        match error {
            RequestError::Chat(error) => ApiError { status, body: ErrorResponse::from(error) },
            RequestError::Engine(error) => ApiError::new(status, "EngineError", error.to_string()),
        }
    }
}

/// Binds the port, loads the model, then answers HTTP requests until the
/// process is stopped. Requests that arrive during the load wait for it.
pub fn serve(args: ServeArgs) -> Result<()> {
    let server = tiny_http::Server::http((args.host.as_str(), args.port))
        .map_err(|error| anyhow!("cannot listen on {}:{}: {error}", args.host, args.port))?;
    let address = server.server_addr().to_ip().context("the server has no IP address")?;
    let (jobs, model) = start_worker(args.engine, args.model_id, args.max_time, args.parallel)?;
    // Scripts and tests read this line to find the port.
    println!("listening on http://{address} (model {})", model.id);
    io::stdout().flush()?;
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    for request in server.incoming_requests() {
        let jobs = jobs.clone();
        let model = model.clone();
        let port = address.port();
        std::thread::spawn(move || route(request, &jobs, &model, created, port));
    }
    Ok(())
}

/// What the HTTP threads know of the loaded model, to answer and check requests.
#[derive(Debug, Clone)]
struct ServedModel {
    id: String,
    /// Its tool-call format (`None`: `tools` are refused).
    tools: Option<ToolFormat>,
}

/// Starts the engine thread and waits until the model is loaded; returns the
/// job queue and the model.
fn start_worker(
    engine_args: EngineArgs,
    model_id: Option<String>,
    max_time: Option<Duration>,
    parallel: Option<NonZeroUsize>,
) -> Result<(Sender<Job>, ServedModel)> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<ServedModel>>();
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
    std::thread::Builder::new().name("engine".to_string()).spawn(move || {
        crate::run_the_cpu_engine_on_this_thread();
        let artifact = match crate::load::open(&engine_args.source) {
            Ok(artifact) => artifact,
            Err(error) => {
                let _ = ready_tx.send(Err(error));
                return;
            }
        };
        if ModelKind::of(&artifact.config) == ModelKind::Embedding {
            let mut embedder = match crate::embed::load_embedder(&artifact, engine_args.device) {
                Ok(embedder) => embedder,
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                    return;
                }
            };
            if let Some(model_id) = &model_id {
                embedder.set_model_id(model_id.clone());
            }
            let served = ServedModel { id: embedder.model_id().to_string(), tools: None };
            drop(artifact);
            if ready_tx.send(Ok(served)).is_ok() {
                let reload = move || {
                    let artifact = crate::load::open(&engine_args.source)?;
                    let mut embedder = crate::embed::load_embedder(&artifact, engine_args.device)?;
                    if let Some(model_id) = &model_id {
                        embedder.set_model_id(model_id.clone());
                    }
                    Ok(embedder)
                };
                serve_embeddings(embedder, reload, jobs_rx);
            }
            return;
        }
        let set = match load_engines(&artifact, engine_args.device, parallel, model_id.clone()) {
            Ok(set) => set,
            Err(error) => {
                let _ = ready_tx.send(Err(error));
                return;
            }
        };
        let engine = &set.engines[0];
        let served = ServedModel { id: engine.model_id().to_string(), tools: engine.tool_format() };
        eprintln!("answering up to {} request(s) at once", set.engines.len());
        drop(artifact);
        if ready_tx.send(Ok(served)).is_err() {
            return;
        }
        let reload = move || {
            let artifact = crate::load::open(&engine_args.source)?;
            load_engines(&artifact, engine_args.device, parallel, model_id.clone())
        };
        Workers::new(set, reload, max_time).serve(jobs_rx);
    })?;
    let model = ready_rx.recv().context("the engine thread stopped while loading")??;
    Ok((jobs_tx, model))
}

/// The chat engines of the engine thread, one per request answered at once.
struct EngineSet {
    engines: Vec<ChatEngine>,
    /// The model the engines share, one sequence each (`None`: one engine
    /// with a model of its own).
    batcher: Option<Batcher>,
}

/// Loads `artifact` for `parallel` requests at once (`None`: the default):
/// one engine, or one engine per sequence of a model that holds several (the
/// CPU engines; the GPU engine holds one and answers one request at a time).
fn load_engines(
    artifact: &Artifact,
    device: Device,
    parallel: Option<NonZeroUsize>,
    model_id: Option<String>,
) -> Result<EngineSet> {
    eprintln!("loading {} ...", artifact.source());
    let started = Instant::now();
    // The GPU engine holds the sequences it is asked for; without
    // `--parallel` it keeps one, whose rounds stay pipelined on the device.
    let model = crate::load::load_for(artifact, device, parallel.map_or(1, NonZeroUsize::get))?;
    let most = model.max_sequences();
    let parallel = match parallel {
        None => DEFAULT_PARALLEL.min(most),
        Some(asked) if asked.get() > most => {
            eprintln!(
                "notice: --parallel {asked}: this engine holds {most} sequence(s) at once; requests beyond wait in line"
            );
            most
        }
        Some(asked) => asked.get(),
    };
    let named = |mut engine: ChatEngine| {
        if let Some(id) = &model_id {
            engine.set_model_id(id.clone());
        }
        engine
    };
    let set = match parallel {
        1 => {
            let model: Box<dyn LanguageModel> = model;
            let engine = ChatEngine::new(model, artifact).context("setting up the chat engine")?;
            EngineSet { engines: vec![named(engine)], batcher: None }
        }
        _ => {
            let batcher = Batcher::new(model, parallel)?;
            let engines = (0..parallel)
                .map(|sequence| {
                    let handle = Box::new(batcher.handle(sequence)?);
                    Ok(named(
                        ChatEngine::new(handle, artifact).context("setting up the chat engine")?,
                    ))
                })
                .collect::<Result<_>>()?;
            EngineSet { engines, batcher: Some(batcher) }
        }
    };
    eprintln!("loaded {} in {:.1} s", set.engines[0].model_id(), started.elapsed().as_secs_f64());
    Ok(set)
}

/// Answers the jobs of the engine thread: each waits in arrival order for a
/// free engine, and the running ones are polled in turn; when they all wait
/// for a token, one batched step runs for all of them. After a GPU device
/// loss the engines are loaded again for the next job.
struct Workers<L> {
    /// The engines by sequence, `None` while a job holds one; the whole
    /// vector is empty after a device loss, until the next job reloads it.
    engines: Vec<Option<ChatEngine>>,
    batcher: Option<Batcher>,
    /// What an engine on the shared model is made of besides its sequence
    /// (tokenizer, config, model id), to make one again after a panic.
    parts: Option<(Tokenizer, ChatConfig, String)>,
    /// Loads the engines again (as at startup, with the same model id).
    reload: L,
    /// `--max-time`.
    max_time: Option<Duration>,
}

/// A job that holds an engine.
struct Running {
    /// Which engine (its sequence of the shared model).
    index: usize,
    /// The job's generation; it hands the engine back when it ends.
    future: Pin<Box<dyn Future<Output = (ChatEngine, Outcome)>>>,
    /// Where the job's outcome goes, to report a panic.
    events: Sender<Event>,
    /// Stops the job's watcher.
    finished: Arc<AtomicBool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.finished.store(true, Ordering::SeqCst);
    }
}

impl<L: FnMut() -> Result<EngineSet>> Workers<L> {
    fn new(set: EngineSet, reload: L, max_time: Option<Duration>) -> Workers<L> {
        let mut workers =
            Workers { engines: Vec::new(), batcher: None, parts: None, reload, max_time };
        workers.install(set);
        workers
    }

    /// Takes freshly loaded engines.
    fn install(&mut self, set: EngineSet) {
        self.parts = set.batcher.is_some().then(|| {
            let engine = &set.engines[0];
            let id = engine.model_id().to_string();
            (engine.tokenizer().clone(), engine.config().clone(), id)
        });
        self.engines = set.engines.into_iter().map(Some).collect();
        self.batcher = set.batcher;
    }

    /// Answers jobs until the channel closes and every job is done.
    fn serve(&mut self, jobs: Receiver<Job>) {
        let (mut waiting, mut running) = (VecDeque::<Job>::new(), Vec::<Running>::new());
        let mut context = PollContext::from_waker(Waker::noop());
        loop {
            if running.is_empty() && waiting.is_empty() {
                match jobs.recv() {
                    Ok(job) => waiting.push_back(job),
                    Err(_) => return,
                }
            }
            waiting.extend(jobs.try_iter());
            self.start_waiting(&mut waiting, &mut running);
            let before = running.len();
            running.retain_mut(|job| !self.poll(job, &mut context));
            let Some(batcher) = self.batcher.as_ref().filter(|_| !running.is_empty()) else {
                continue;
            };
            match batcher.step().block_on() {
                // Every running job waits, for nothing: never expected, but
                // no reason to spin either.
                Ok(0) if running.len() == before => std::thread::sleep(WATCH_INTERVAL),
                Ok(_) => {}
                Err(error) => eprintln!("a batched step failed: {error}"),
            }
        }
    }

    /// Starts waiting jobs, oldest first, while an engine is free; a job
    /// whose client has left is dropped unrun.
    fn start_waiting(&mut self, waiting: &mut VecDeque<Job>, running: &mut Vec<Running>) {
        while let Some(job) = waiting.front() {
            if job.cancelled.load(Ordering::SeqCst) {
                waiting.pop_front();
                continue;
            }
            if self.engines.is_empty() {
                match (self.reload)() {
                    Ok(set) => self.install(set),
                    Err(error) => {
                        let job = waiting.pop_front().expect("looked at above");
                        let _ = job.events.send(Event::Done(Err(reload_failed(&error))));
                        continue;
                    }
                }
            }
            let Some(index) = self.engines.iter().position(Option::is_some) else { return };
            let engine = self.engines[index].take().expect("found above");
            let job = waiting.pop_front().expect("looked at above");
            running.push(self.start(index, engine, job));
        }
    }

    /// Starts `job` on `engine`, with a watcher thread that interrupts its
    /// generation once its client has left or `--max-time` has passed (at
    /// each look, as the engine clears the flag when a request starts).
    fn start(&self, index: usize, mut engine: ChatEngine, job: Job) -> Running {
        let finished = Arc::new(AtomicBool::new(false));
        let (interrupt, cancelled) = (engine.interrupt_handle(), Arc::clone(&job.cancelled));
        let (watching, max_time, started) = (Arc::clone(&finished), self.max_time, Instant::now());
        std::thread::spawn(move || {
            while !watching.load(Ordering::SeqCst) {
                let late = max_time.is_some_and(|limit| started.elapsed() >= limit);
                if late || cancelled.load(Ordering::SeqCst) {
                    interrupt.store(true, Ordering::SeqCst);
                }
                std::thread::sleep(WATCH_INTERVAL);
            }
        });
        let events = job.events.clone();
        let future = Box::pin(async move {
            let outcome = run_job(&mut engine, job).await;
            (engine, outcome)
        });
        Running { index, future, events, finished }
    }

    /// Polls a running job once; returns whether it has ended. A panic fails
    /// only its own job: its engine is made again (or, without a shared
    /// model, loaded again for the next job).
    fn poll(&mut self, job: &mut Running, context: &mut PollContext<'_>) -> bool {
        match catch_unwind(AssertUnwindSafe(|| job.future.as_mut().poll(context))) {
            Ok(Poll::Pending) => false,
            Ok(Poll::Ready((engine, Outcome::Usable))) => {
                self.give_back(job.index, engine);
                true
            }
            Ok(Poll::Ready((_, Outcome::DeviceLost))) => {
                eprintln!(
                    "the GPU device was lost; the model is loaded again for the next request"
                );
                self.engines.clear();
                self.batcher = None;
                true
            }
            Err(_) => {
                let _ = job.events.send(Event::Done(Err(ApiError::new(
                    500,
                    "InternalError",
                    "the engine failed on this request (see the server log)".to_string(),
                ))));
                self.replace_lost(job.index);
                true
            }
        }
    }

    /// Puts an engine back where it belongs (unless the engines were dropped since).
    fn give_back(&mut self, index: usize, engine: ChatEngine) {
        if let Some(place) = self.engines.get_mut(index) {
            *place = Some(engine);
        }
    }

    /// Makes engine `index` again after its job panicked with it: a new
    /// engine on the same sequence of the shared model, starting afresh;
    /// without a shared model, everything is loaded again for the next job.
    fn replace_lost(&mut self, index: usize) {
        let rebuilt = match (&self.batcher, &self.parts) {
            (Some(batcher), Some((tokenizer, config, id))) => {
                batcher.handle(index).ok().and_then(|mut handle| {
                    handle.reset();
                    let (tokenizer, config) = (tokenizer.clone(), config.clone());
                    ChatEngine::from_parts(Box::new(handle), tokenizer, config, id.clone()).ok()
                })
            }
            _ => None,
        };
        match rebuilt {
            Some(engine) => self.give_back(index, engine),
            None => {
                self.engines.clear();
                self.batcher = None;
            }
        }
    }
}

/// WebLLM's name for a lost device, the `type` of the 503 error.
const DEVICE_LOST: &str = "DeviceLostError";

/// The 503 answer (also logged) to a request that found the model on a lost
/// device and could not load it again.
fn reload_failed(error: &anyhow::Error) -> ApiError {
    let message = format!(
        "the GPU device was lost, and loading the model again failed: {error:#}; the next request tries again"
    );
    eprintln!("{message}");
    ApiError::new(503, DEVICE_LOST, message)
}

/// The 503 answer to the request that found the device lost.
fn device_lost(error: &EngineError) -> ApiError {
    let message = format!("{error}; the model is loaded again for the next request");
    ApiError::new(503, DEVICE_LOST, message)
}

/// How a job ended, as far as the engine's future is concerned.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The engine can take the next job.
    Usable,
    /// The GPU device is gone: the engine must be loaded again.
    DeviceLost,
}

/// Runs one job on the engine. A client that stops reading a stream
/// interrupts its generation.
async fn run_job(engine: &mut ChatEngine, job: Job) -> Outcome {
    let interrupt = engine.interrupt_handle();
    let events = job.events;
    let send_chunk = |chunk: String| {
        if events.send(Event::Chunk(chunk)).is_err() {
            interrupt.store(true, Ordering::SeqCst);
        }
    };
    let result = match &job.request {
        ApiRequest::Chat(request) => engine
            .chat_completion(request, |chunk| send_chunk(to_json(&chunk)))
            .await
            .map(|done| to_json(&done)),
        ApiRequest::Completion(request) => engine
            .completion(request, |chunk| send_chunk(to_json(&chunk)))
            .await
            .map(|done| to_json(&done)),
        ApiRequest::Embedding(_) => Err(job.request.wrong_model(engine.model_id()).into()),
    };
    let mut after = Outcome::Usable;
    let result = match result {
        Err(RequestError::Engine(error)) if error.is_device_lost() => {
            after = Outcome::DeviceLost;
            Err(device_lost(&error))
        }
        result => result.map_err(|error| ApiError::from_request_error(&error)),
    };
    let _ = events.send(Event::Done(result));
    after
}

/// Answers embedding jobs in order. A job that finds the GPU device lost gets
/// 503 and the encoder is dropped; the next job loads it again with `reload`
/// before it runs, as [`Workers`] does for chat engines.
fn serve_embeddings(
    first: Embedder,
    mut reload: impl FnMut() -> Result<Embedder>,
    jobs: impl IntoIterator<Item = Job>,
) {
    let mut embedder = Some(first);
    for job in jobs {
        if job.cancelled.load(Ordering::SeqCst) {
            continue;
        }
        let model = match &mut embedder {
            Some(model) => model,
            None => match reload() {
                Ok(loaded) => embedder.insert(loaded),
                Err(error) => {
                    let _ = job.events.send(Event::Done(Err(reload_failed(&error))));
                    continue;
                }
            },
        };
        if run_embedding_job(model, job) == Outcome::DeviceLost {
            embedder = None;
        }
    }
}

/// Runs one job on the embedding model: embeddings, or WebLLM's error for a
/// chat or completion request. A panic fails only its own job.
fn run_embedding_job(embedder: &mut Embedder, job: Job) -> Outcome {
    let mut after = Outcome::Usable;
    let result = match &job.request {
        ApiRequest::Embedding(request) => {
            match catch_unwind(AssertUnwindSafe(|| {
                embedder.create(request, EmbeddingConvention::Server).block_on()
            })) {
                Ok(Err(RequestError::Engine(error))) if error.is_device_lost() => {
                    after = Outcome::DeviceLost;
                    Err(device_lost(&error))
                }
                Ok(result) => result
                    .map(|response| to_json(&response))
                    .map_err(|error| ApiError::from_request_error(&error)),
                Err(_) => Err(ApiError::new(
                    500,
                    "InternalError",
                    "the engine failed on this request (see the server log)".to_string(),
                )),
            }
        }
        other => Err(ApiError::invalid(&other.wrong_model(embedder.model_id()))),
    };
    let _ = job.events.send(Event::Done(result));
    after
}

/// Answers one HTTP request. Write errors mean the client left; nothing to do.
fn route(mut request: Request, jobs: &Sender<Job>, model: &ServedModel, created: u64, port: u16) {
    let path = request.url().split('?').next().unwrap_or_default().to_string();
    let method = request.method().clone();
    let status = match (&method, path.as_str()) {
        (Method::Options, _) => {
            let preflight = Response::empty(204)
                .with_header(header("Access-Control-Allow-Methods", "GET, POST, OPTIONS"))
                .with_header(header("Access-Control-Allow-Headers", "Content-Type, Authorization"));
            respond(request, preflight)
        }
        (Method::Get, "/v1/models") => {
            let models = serde_json::json!({
                "object": "list",
                "data": [{ "id": model.id, "object": "model", "created": created, "owned_by": "mlc-wgpu" }],
            });
            respond_json(request, 200, &models.to_string())
        }
        (Method::Post, "/v1/chat/completions") => match parse_chat(&mut request, model) {
            Ok(chat) => {
                let stream = chat.stream == Some(true);
                submit(request, jobs, ApiRequest::Chat(Box::new(chat)), stream, port)
            }
            Err(error) => respond_error(request, &error),
        },
        (Method::Post, "/v1/completions") => match parse_completion(&mut request) {
            Ok(completion) => {
                let stream = completion.stream == Some(true);
                submit(request, jobs, ApiRequest::Completion(Box::new(completion)), stream, port)
            }
            Err(error) => respond_error(request, &error),
        },
        (Method::Post, "/v1/embeddings") => match parse_embedding(&mut request) {
            Ok(embedding) => {
                submit(request, jobs, ApiRequest::Embedding(Box::new(embedding)), false, port)
            }
            Err(error) => respond_error(request, &error),
        },
        (_, "/v1/models" | "/v1/chat/completions" | "/v1/completions" | "/v1/embeddings") => {
            let error = ApiError::new(
                405,
                "invalid_request_error",
                format!("{method} is not allowed on {path}"),
            );
            respond_error(request, &error)
        }
        _ => respond_error(
            request,
            &ApiError::new(404, "invalid_request_error", format!("Unknown route: {method} {path}")),
        ),
    };
    eprintln!("{method} {path} {status}");
}

/// A chat request, parsed and validated (both of WebLLM's stages) before it
/// is queued, so that a bad request is answered at once.
fn parse_chat(
    request: &mut Request,
    model: &ServedModel,
) -> Result<ChatCompletionRequest, ApiError> {
    let chat: ChatCompletionRequest = parse_body(request)?;
    // WebLLM fails here with "Cannot read properties of undefined (reading 'role')".
    if chat.messages.is_empty() {
        let mut error = ApiError::new(
            400,
            "invalid_request_error",
            "`messages` is empty: a chat request needs at least one message".to_string(),
        );
        error.body.error.param = Some("messages".to_string());
        return Err(error);
    }
    validate_chat_request(&chat, &model.id, model.tools)
        .map_err(|error| ApiError::invalid(&error))?;
    Ok(chat)
}

/// A text-completion request, parsed and checked.
fn parse_completion(request: &mut Request) -> Result<CompletionRequest, ApiError> {
    let completion: CompletionRequest = parse_body(request)?;
    validate_completion_request(&completion).map_err(|error| ApiError::invalid(&error))?;
    Ok(completion)
}

/// An embeddings request, parsed and checked (WebLLM's checks; base64 is served).
fn parse_embedding(request: &mut Request) -> Result<EmbeddingRequest, ApiError> {
    let embedding: EmbeddingRequest = parse_body(request)?;
    check_embedding_request(&embedding, EmbeddingConvention::Server)
        .map_err(|error| ApiError::invalid(&error))?;
    Ok(embedding)
}

/// The JSON body as `T`.
fn parse_body<T: serde::de::DeserializeOwned>(request: &mut Request) -> Result<T, ApiError> {
    let mut body = Vec::new();
    request.as_reader().take(MAX_BODY_BYTES + 1).read_to_end(&mut body).map_err(|error| {
        ApiError::new(
            400,
            "invalid_request_error",
            format!("cannot read the request body: {error}"),
        )
    })?;
    if body.len() as u64 > MAX_BODY_BYTES {
        return Err(ApiError::new(
            413,
            "invalid_request_error",
            format!("the request body exceeds {MAX_BODY_BYTES} bytes"),
        ));
    }
    serde_json::from_slice(&body).map_err(|error| {
        ApiError::new(400, "invalid_request_error", format!("invalid request body: {error}"))
    })
}

/// Queues a job and answers with its outcome: JSON, or a stream of events
/// once the first chunk arrives (an error before it is still a plain 400/500).
/// While it waits, the client's connection is watched: when the client
/// leaves, the job is cancelled and nothing is sent.
fn submit(
    request: Request,
    jobs: &Sender<Job>,
    api_request: ApiRequest,
    stream: bool,
    port: u16,
) -> u16 {
    let client = Client {
        watch: ClientWatch::new(request.remote_addr(), port),
        cancelled: Arc::new(AtomicBool::new(false)),
    };
    let (events_tx, events) = mpsc::channel();
    let stopped =
        || ApiError::new(500, "InternalError", "the engine thread has stopped".to_string());
    let job =
        Job { request: api_request, events: events_tx, cancelled: Arc::clone(&client.cancelled) };
    if jobs.send(job).is_err() {
        return respond_error(request, &stopped());
    }
    match client.next(&events) {
        Next::Event(Event::Chunk(first)) if stream => {
            match stream_events(request, &first, &events, &client) {
                Ok(true) => 200,
                // The client leaving mid-stream is not an error of ours.
                Ok(false) | Err(_) => {
                    client.cancel();
                    CLIENT_CLOSED
                }
            }
        }
        Next::Event(Event::Done(Ok(response))) => respond_json(request, 200, &response),
        Next::Event(Event::Done(Err(error))) => respond_error(request, &error),
        Next::Event(Event::Chunk(_)) | Next::Stopped => respond_error(request, &stopped()),
        Next::Left => CLIENT_CLOSED,
    }
}

/// The waiting side of a request: its client's connection and its job's cancel flag.
struct Client {
    watch: ClientWatch,
    cancelled: Arc<AtomicBool>,
}

/// What waiting for a job's next event brought.
enum Next {
    Event(Event),
    /// The engine thread is gone.
    Stopped,
    /// The client left; its job is cancelled.
    Left,
}

impl Client {
    /// The job's next event, unless the client leaves first.
    fn next(&self, events: &Receiver<Event>) -> Next {
        loop {
            match events.recv_timeout(WATCH_INTERVAL) {
                Ok(event) => return Next::Event(event),
                Err(RecvTimeoutError::Disconnected) => return Next::Stopped,
                Err(RecvTimeoutError::Timeout) if self.watch.gone() => {
                    self.cancel();
                    return Next::Left;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }
}

/// Writes server-sent events: `data: {chunk}` per chunk, an error event if
/// the engine fails midway, then `data: [DONE]`. HTTP/1.1 clients get chunked
/// transfer encoding (the connection stays usable), HTTP/1.0 clients a body
/// that ends when the connection closes. Each event is flushed at once.
/// False when the client left before the end.
fn stream_events(
    request: Request,
    first: &str,
    events: &Receiver<Event>,
    client: &Client,
) -> io::Result<bool> {
    let chunked = *request.http_version() >= (1, 1);
    let framing = if chunked { "Transfer-Encoding: chunked" } else { "Connection: close" };
    let mut writer = request.into_writer();
    write!(
        writer,
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nAccess-Control-Allow-Origin: *\r\n{framing}\r\n\r\n"
    )?;
    let mut send = |data: &str| -> io::Result<()> {
        let event = format!("data: {data}\n\n");
        if chunked {
            write!(writer, "{:x}\r\n{event}\r\n", event.len())?;
        } else {
            writer.write_all(event.as_bytes())?;
        }
        writer.flush()
    };
    send(first)?;
    loop {
        match client.next(events) {
            Next::Event(Event::Chunk(chunk)) => send(&chunk)?,
            Next::Event(Event::Done(Ok(_))) | Next::Stopped => break,
            Next::Event(Event::Done(Err(error))) => {
                send(&to_json(&error.body))?;
                break;
            }
            Next::Left => return Ok(false),
        }
    }
    send("[DONE]")?;
    if chunked {
        writer.write_all(b"0\r\n\r\n")?;
    }
    writer.flush()?;
    Ok(true)
}

/// Sends a JSON body with `status`; returns the status.
fn respond_json(request: Request, status: u16, body: &str) -> u16 {
    respond(
        request,
        Response::from_string(body)
            .with_status_code(status)
            .with_header(header("Content-Type", "application/json")),
    )
}

/// Sends an error's JSON body; returns its status.
fn respond_error(request: Request, error: &ApiError) -> u16 {
    respond_json(request, error.status, &to_json(&error.body))
}

/// Sends `response` (with CORS allowed, as browser apps call local servers); returns its status.
fn respond<R: Read>(request: Request, response: Response<R>) -> u16 {
    let status = response.status_code().0;
    let _ = request.respond(response.with_header(header("Access-Control-Allow-Origin", "*")));
    status
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("static header names and values are valid")
}

/// JSON text of a value whose serialization cannot fail (plain data, string keys).
fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|error| {
        format!("{{\"error\":{{\"message\":\"serialization failed: {error}\"}}}}")
    })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::path::Path;
    use std::rc::Rc;

    use mlc_chat::{ChatMessage, Tokenizer};
    use mlc_engine::gpu::GpuOptions;
    use mlc_kernels::{ContextOptions, GpuContext};
    use mlc_loader::{Artifact, OpenOptions};

    use super::*;

    /// tiny-qwen2 on the GPU engine with Qwen2.5's tokenizer (the vocabularies match).
    fn load_tiny_on_gpu(devices: &RefCell<Vec<GpuContext>>) -> Result<ChatEngine> {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/fixtures");
        let artifact = Artifact::open(
            &fixtures.join("tiny-qwen2/mlc").to_string_lossy(),
            OpenOptions::default(),
        )?;
        let tokenizer =
            Tokenizer::from_file(fixtures.join("tokenizers/qwen2.5-0.5b-instruct.tokenizer.json"))?;
        let ctx = GpuContext::new_blocking(&ContextOptions::from_env())?;
        devices.borrow_mut().push(ctx.clone());
        let model = mlc_engine::load_gpu(
            &artifact,
            ctx,
            GpuOptions { max_rows: 64, context_length: Some(512), ..GpuOptions::default() },
        )?;
        Ok(ChatEngine::from_parts(
            Box::new(model),
            tokenizer,
            artifact.config.clone(),
            "tiny-qwen2".to_string(),
        )?)
    }

    /// One engine on tiny-qwen2 on the GPU.
    fn tiny_set(devices: &RefCell<Vec<GpuContext>>) -> Result<EngineSet> {
        Ok(EngineSet { engines: vec![load_tiny_on_gpu(devices)?], batcher: None })
    }

    /// Sends a greedy chat request through `workers`; the reply's text, or the error.
    fn ask<L: FnMut() -> Result<EngineSet>>(workers: &mut Workers<L>) -> Result<String, ApiError> {
        let request = ChatCompletionRequest {
            messages: vec![ChatMessage::new("user", "Hello! Tell me about the sea.")],
            generation: mlc_chat::GenerationConfig {
                temperature: Some(0.0),
                max_tokens: Some(6),
                ..Default::default()
            },
            ..ChatCompletionRequest::default()
        };
        let (events, results) = mpsc::channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        let (jobs, queue) = mpsc::channel();
        jobs.send(Job { request: ApiRequest::Chat(Box::new(request)), events, cancelled }).unwrap();
        drop(jobs);
        workers.serve(queue);
        match results.recv().expect("the job reports") {
            Event::Done(Ok(json)) => {
                let response: serde_json::Value = serde_json::from_str(&json).unwrap();
                Ok(response["choices"][0]["message"]["content"].as_str().unwrap().to_string())
            }
            Event::Done(Err(error)) => Err(error),
            Event::Chunk(_) => panic!("a non-streaming request got a chunk"),
        }
    }

    #[test]
    fn after_the_gpu_device_is_lost_the_next_request_loads_the_model_again() {
        let devices = Rc::new(RefCell::new(Vec::new()));
        let first = tiny_set(&devices).expect("a GPU adapter (lavapipe in CI)");
        let reload_devices = Rc::clone(&devices);
        let mut slot = Workers::new(first, move || tiny_set(&reload_devices), None);

        let answer = |slot: &mut Workers<_>| {
            ask(slot).unwrap_or_else(|error| panic!("{}", error.body.error.message))
        };
        let fresh = answer(&mut slot);
        assert!(!fresh.is_empty());
        devices.borrow()[0].device.destroy();

        let Err(lost) = ask(&mut slot) else {
            panic!("a request on the destroyed device succeeded")
        };
        assert_eq!((lost.status, lost.body.error.kind.as_str()), (503, DEVICE_LOST));
        assert!(
            lost.body.error.message.starts_with("GPU device lost: "),
            "{}",
            lost.body.error.message
        );
        assert!(slot.engines.is_empty(), "the engine on the lost device is dropped");
        assert_eq!(devices.borrow().len(), 1, "nothing is loaded until the next request");

        assert_eq!(answer(&mut slot), fresh, "the reloaded engine answers as a fresh one");
        assert_eq!(devices.borrow().len(), 2, "on a new device");
    }

    /// An embeddings request through `serve_embeddings` on `embedder` (then
    /// `reload`); the response JSON, or the error.
    fn embed_once(
        embedder: Option<Embedder>,
        reload: impl FnMut() -> Result<Embedder>,
    ) -> Vec<Result<String, ApiError>> {
        let request: mlc_chat::EmbeddingRequest =
            serde_json::from_value(serde_json::json!({ "input": [2, 57, 63, 3] })).unwrap();
        let mut results = Vec::new();
        let mut jobs = Vec::new();
        for _ in 0..2 {
            let (events, done) = mpsc::channel();
            let cancelled = Arc::new(AtomicBool::new(false));
            jobs.push(Job {
                request: ApiRequest::Embedding(Box::new(request.clone())),
                events,
                cancelled,
            });
            results.push(done);
        }
        let first = embedder.expect("a first embedder");
        serve_embeddings(first, reload, jobs);
        results
            .into_iter()
            .map(|done| match done.recv().expect("the job reports") {
                Event::Done(result) => result,
                Event::Chunk(_) => panic!("an embeddings request got a chunk"),
            })
            .collect()
    }

    #[test]
    fn after_the_gpu_device_is_lost_the_next_embeddings_request_loads_the_encoder_again() {
        let (_temp, artifact) = mlc_conformance::converted_family_as(
            "families/bert-tiny",
            mlc_loader::Quantization::Q0F32,
        );
        let devices = RefCell::new(Vec::new());
        let load = || -> Result<Embedder> {
            let ctx = GpuContext::new_blocking(&ContextOptions::from_env())?;
            devices.borrow_mut().push(ctx.clone());
            let encoder = mlc_engine::GpuEncoder::load(&artifact, ctx)?;
            Ok(Embedder::new(Box::new(encoder), &artifact)?)
        };
        let fresh = embed_once(Some(load().expect("a GPU adapter (lavapipe in CI)")), || {
            panic!("nothing is lost")
        });
        let Ok(fresh) = &fresh[0] else { panic!("embeddings on the first device") };

        let lost = load().unwrap();
        devices.borrow()[1].device.destroy();
        let results = embed_once(Some(lost), load);
        let Err(error) = &results[0] else { panic!("a request on the destroyed device succeeded") };
        assert_eq!((error.status, error.body.error.kind.as_str()), (503, DEVICE_LOST));
        assert!(
            error.body.error.message.starts_with("GPU device lost: "),
            "{}",
            error.body.error.message
        );
        let Ok(again) = &results[1] else { panic!("the reloaded encoder did not answer") };
        assert_eq!(devices.borrow().len(), 3, "loaded again on a new device");
        let vector = |json: &str| -> serde_json::Value {
            serde_json::from_str::<serde_json::Value>(json).unwrap()["data"][0]["embedding"].clone()
        };
        assert_eq!(vector(again), vector(fresh), "the reloaded encoder answers as a fresh one");
    }
}
