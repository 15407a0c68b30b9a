//! mlc-wgpu in the browser: the wasm-bindgen interface the WebLLM-compatible
//! JavaScript layer calls (the contract is in `docs/wasm-interface.md`).
//!
//! JavaScript fetches and caches the artifact's files and hands their bytes to
//! `WasmEngine::create`, which checks them (`Artifact::from_files`), loads
//! the model on WebGPU or on the CPU engine, and builds a `ChatEngine`.
//! Requests and responses cross the boundary as OpenAI/WebLLM JSON. Every
//! failure becomes a rejected promise holding a JS `Error` whose `.name` is
//! WebLLM's error name; nothing panics across the boundary (the GPU's
//! uncaptured errors and its loss are recorded by `GpuContext` instead of
//! wgpu's default panic). A lost device fails the request with a
//! `DeviceLostError`; loading again (a new `WasmEngine`) takes a new device.
//!
//! The crate is empty natively: it is made of browser calls.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

mod embedder;

pub use embedder::WasmEmbedder;

use js_sys::{Function, Promise, Reflect, Uint8Array, Uint32Array};
use mlc_chat::{ChatCompletionRequest, ChatEngine, CompletionRequest, RequestError, ToolFormat};
use mlc_engine::gpu::GpuOptions;
use mlc_engine::{LanguageModel, load_cpu_fast, load_gpu};
use mlc_kernels::{ContextOptions, GpuContext};
use mlc_loader::{Artifact, CONFIG_FILE, OpenOptions, Progress, ProgressPhase};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};

/// WebLLM's `WebGPUNotAvailableError` message (web-llm `src/error.ts`).
const WEBGPU_NOT_AVAILABLE: &str = "WebGPU is not supported in your current environment, but it is necessary to run the WebLLM engine. Please make sure that your browser supports WebGPU and that it is enabled in your browser settings. You can also consult your browser's compatibility chart to see if it supports WebGPU. For more information about WebGPU support in your browser, visit https://webgpureport.org/";

/// WebLLM's error when `requestAdapter()` finds no adapter (TVM's web runtime, bundled in
/// WebLLM's `lib/index.js`).
const NO_COMPATIBLE_GPU: &str = "Unable to find a compatible GPU. This issue might be because your computer doesn't have a GPU, or your system settings are not configured properly. Please check if your device has a GPU properly set up and if your your browser supports WebGPU. You can also consult your browser's compatibility chart to see if it supports WebGPU. For more information about WebGPU support in your browser, visit https://webgpureport.org/";

/// Installs a panic hook that logs the panic with `console.error` (a panic
/// aborts the module; the log says why). Call once after loading the module.
#[wasm_bindgen]
pub fn init() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&format!("mlc-wgpu panicked: {info}").into())
    }));
}

/// Whether WebGPU gives this page an adapter.
#[wasm_bindgen(js_name = webgpuAvailable)]
pub async fn webgpu_available() -> bool {
    navigator_has_gpu()
        && webgpu_instance().request_adapter(&wgpu::RequestAdapterOptions::default()).await.is_ok()
}

/// Checks that the engine can run the model `config_json` (a merged
/// `mlc-chat-config.json`) describes: its family (`model_type`), and the
/// family's settings. JavaScript calls it before downloading the weights, so
/// an id of a family this runtime lacks fails at once, naming the family.
#[wasm_bindgen(js_name = checkModelConfig)]
pub fn check_model_config(config_json: &str) -> Result<(), JsValue> {
    let config = mlc_loader::ChatConfig::from_json(config_json)
        .map_err(|e| error("Error", &e.to_string()))?;
    match mlc_engine::ModelKind::of(&config) {
        mlc_engine::ModelKind::Chat => mlc_engine::models::spec_for(&config).map(|_| ()),
        mlc_engine::ModelKind::Embedding => mlc_engine::encoder::spec_for(&config).map(|_| ()),
    }
    .map_err(|e| engine_error(&e))
}

/// Stops the generation running on its engine at the next token
/// (`finish_reason: "abort"`). A separate object, so it can be called while a
/// request holds the engine.
#[wasm_bindgen]
pub struct InterruptHandle {
    flag: Arc<AtomicBool>,
}

#[wasm_bindgen]
impl InterruptHandle {
    /// WebLLM's `interruptGenerate`.
    pub fn interrupt(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }
}

/// A loaded model answering chat and text completion requests.
#[wasm_bindgen]
pub struct WasmEngine {
    /// Borrowed mutably for the whole of a request: a second request while
    /// one runs is refused (the JavaScript layer queues them, as WebLLM does).
    engine: Rc<RefCell<ChatEngine>>,
    interrupt: Arc<AtomicBool>,
    /// The text streamed so far by the running request (`getMessage` while
    /// the engine is busy).
    live: Rc<RefCell<String>>,
    /// `runtimeStatsText` as of the last finished request or reset.
    stats_text: Rc<RefCell<String>>,
    /// The WebGPU device (its recorded errors and loss); `None` on the CPU engine.
    gpu: Option<GpuContext>,
    backend: &'static str,
    gpu_vendor: String,
    max_storage_buffer_binding_size: f64,
    /// How the model calls tools: `"hermes"`, `"qwen"`, or none.
    tool_format: Option<&'static str>,
}

#[wasm_bindgen]
impl WasmEngine {
    /// Loads the artifact in `files` (file name → bytes) as `options` say
    /// (see `docs/wasm-interface.md`).
    pub async fn create(files: js_sys::Map, options: JsValue) -> Result<WasmEngine, JsValue> {
        let options = CreateOptions::read(&options)?;
        let mut files = files_of(&files)?;
        override_config(&mut files, &options)?;
        let total: u64 = files
            .iter()
            .filter(|(name, _)| name.ends_with(".bin"))
            .map(|(_, bytes)| bytes.len() as u64)
            .sum();
        let report = options.on_load_progress.clone();
        let progress = move |loaded: u64| {
            if let Some(callback) = &report {
                // Loaded bytes count twice: once checked, once on the device.
                let _ = callback.call2(
                    &JsValue::NULL,
                    &JsValue::from_f64(loaded as f64),
                    &JsValue::from_f64((2 * total) as f64),
                );
            }
        };
        let mut checked = 0u64;
        let shard_progress = progress.clone();
        let on_shard = Box::new(move |event: &Progress| {
            if event.phase == ProgressPhase::Load {
                checked += event.bytes_total;
                shard_progress(checked);
            }
        });
        let artifact = Artifact::from_files(
            files,
            OpenOptions {
                progress: Some(on_shard),
                verify_md5: options.verify_md5,
                ..OpenOptions::default()
            },
        )
        .map_err(|e| error("Error", &e.to_string()))?;
        next_task().await;

        let ctx = device_context(&options.device).await?;
        let gpu = ctx.clone();
        let (model, backend, gpu_vendor, max_binding): (Box<dyn LanguageModel>, _, _, _) = match ctx
        {
            Some(ctx) => {
                let vendor = ctx.adapter_info.name.clone();
                let max_binding = ctx.limits.max_storage_buffer_binding_size as f64;
                let mut model = load_gpu(&artifact, ctx, GpuOptions::default())
                    .map_err(|e| engine_error(&e))?;
                // The load's error scopes and shader compilations resolve
                // only now, through the event loop: out of memory (with the
                // memory plan) or a shader error fails the load here.
                model.backend_mut().settle().await.map_err(|e| engine_error(&e))?;
                (Box::new(model), "webgpu", vendor, max_binding)
            }
            None => (
                Box::new(load_cpu_fast(&artifact).map_err(|e| error("Error", &e.to_string()))?),
                "cpu",
                String::new(),
                0.0,
            ),
        };
        let mut engine =
            ChatEngine::new(model, &artifact).map_err(|e| error("Error", &e.to_string()))?;
        drop(artifact);
        failure_check(gpu.as_ref())?;
        progress(2 * total);
        engine.set_model_id(options.model_id);
        engine.set_pause(Box::new(next_task));
        let stats_text = engine.runtime_stats_text();
        let tool_format = engine.tool_format().map(|format| match format {
            ToolFormat::Hermes => "hermes",
            ToolFormat::Qwen => "qwen",
        });
        Ok(WasmEngine {
            tool_format,
            interrupt: engine.interrupt_handle(),
            engine: Rc::new(RefCell::new(engine)),
            live: Rc::default(),
            stats_text: Rc::new(RefCell::new(stats_text)),
            gpu,
            backend,
            gpu_vendor,
            max_storage_buffer_binding_size: max_binding,
        })
    }

    /// `chat.completions.create` with `request_json` (a ChatCompletionRequest):
    /// streamed chunks go to `on_chunk` as JSON strings and the promise
    /// resolves with `""`; otherwise it resolves with the ChatCompletion JSON.
    /// `on_output`, if given, is told about the output as it grows, streamed
    /// or not: `(ids: Uint32Array, text, processed)`, the output ids appended
    /// since its previous call, the text they add, and the prompt and output
    /// tokens so far (the journal of a resumable request).
    #[wasm_bindgen(js_name = chatCompletion)]
    pub fn chat_completion(
        &self,
        request_json: String,
        on_chunk: Function,
        on_output: Option<Function>,
    ) -> Promise {
        self.chat(request_json, Vec::new(), on_chunk, on_output)
    }

    /// Continues the chat request `request_json` (one choice) after the
    /// output ids `generated` of a run that was cut short, as
    /// [`chat_completion`](Self::chat_completion) runs one: the prompt and
    /// those ids are prefilled, the seeded generator is advanced past their
    /// draws, and the stream carries the text that follows theirs.
    #[wasm_bindgen(js_name = resumeChatCompletion)]
    pub fn resume_chat_completion(
        &self,
        request_json: String,
        generated: Vec<u32>,
        on_chunk: Function,
        on_output: Option<Function>,
    ) -> Promise {
        self.chat(request_json, generated, on_chunk, on_output)
    }

    /// A chat request, continued after `generated` when there are any.
    fn chat(
        &self,
        request_json: String,
        generated: Vec<u32>,
        on_chunk: Function,
        on_output: Option<Function>,
    ) -> Promise {
        let run = self.runner(on_chunk, on_output);
        future_to_promise(async move {
            let request: ChatCompletionRequest = parse_request(&request_json)?;
            let streaming = request.stream == Some(true);
            run.go(streaming, async |engine, emit| {
                let chunks = |chunk: mlc_chat::ChatCompletionChunk| {
                    let text: String = chunk
                        .choices
                        .iter()
                        .filter_map(|choice| choice.delta.content.as_deref())
                        .collect();
                    emit(&text, serde_json::to_string(&chunk));
                };
                let done = match generated.is_empty() {
                    true => engine.chat_completion(&request, chunks).await,
                    false => engine.resume_chat_completion(&request, &generated, chunks).await,
                };
                done.map(|done| serde_json::to_string(&done))
            })
            .await
        })
    }

    /// `completions.create` with `request_json` (a CompletionRequest), streamed
    /// as [`chat_completion`](Self::chat_completion) is.
    pub fn completion(&self, request_json: String, on_chunk: Function) -> Promise {
        let run = self.runner(on_chunk, None);
        future_to_promise(async move {
            let request: CompletionRequest = parse_request(&request_json)?;
            let streaming = request.stream == Some(true);
            run.go(streaming, async |engine, emit| {
                let chunks = |chunk: mlc_chat::CompletionChunk| {
                    let text: String =
                        chunk.choices.iter().map(|choice| choice.text.as_str()).collect();
                    emit(&text, serde_json::to_string(&chunk));
                };
                engine.completion(&request, chunks).await.map(|done| serde_json::to_string(&done))
            })
            .await
        })
    }

    /// WebLLM's `forwardTokensAndSample`: feeds `input_ids` after the context
    /// (a prefill, or one decode step when `is_prefill` is false) and resolves
    /// with the token drawn with the model's sampling defaults.
    #[wasm_bindgen(js_name = forwardTokensAndSample)]
    pub fn forward_tokens_and_sample(&self, input_ids: Vec<u32>, is_prefill: bool) -> Promise {
        let run = self.runner(Function::new_no_args(""), None);
        future_to_promise(async move {
            run.go(false, async |engine, _| {
                let token = engine.forward_tokens_and_sample(&input_ids, is_prefill).await?;
                Ok(serde_json::to_string(&token))
            })
            .await
        })
    }

    /// A handle whose `interrupt()` stops the running generation.
    #[wasm_bindgen(js_name = interruptHandle)]
    pub fn interrupt_handle(&self) -> InterruptHandle {
        InterruptHandle { flag: Arc::clone(&self.interrupt) }
    }

    /// Forgets the conversation and the KV cache, and the statistics unless
    /// `keep_stats` (WebLLM's `resetChat`). Throws while a request runs.
    #[wasm_bindgen(js_name = resetChat)]
    pub fn reset_chat(&self, keep_stats: bool) -> Result<(), JsValue> {
        let mut engine = self.engine.try_borrow_mut().map_err(|_| busy())?;
        engine.reset();
        if !keep_stats {
            engine.clear_stats();
        }
        *self.stats_text.borrow_mut() = engine.runtime_stats_text();
        Ok(())
    }

    /// The last assistant message; while a streamed request runs, its text so far.
    #[wasm_bindgen(js_name = getMessage)]
    pub fn get_message(&self) -> String {
        match self.engine.try_borrow() {
            Ok(engine) => engine.last_message().to_string(),
            Err(_) => self.live.borrow().clone(),
        }
    }

    /// WebLLM's `runtimeStatsText`: `prefill: X tokens/sec, decoding: Y tokens/sec`.
    #[wasm_bindgen(js_name = runtimeStatsText)]
    pub fn runtime_stats_text(&self) -> String {
        self.stats_text.borrow().clone()
    }

    /// How the model calls tools with `tools`: `"hermes"` (WebLLM's
    /// function-calling models), `"qwen"` (Qwen2.5's format), or `undefined`
    /// (requests with `tools` are refused).
    #[wasm_bindgen(js_name = toolFormat)]
    pub fn tool_format(&self) -> Option<String> {
        self.tool_format.map(str::to_string)
    }

    /// `"webgpu"` or `"cpu"`.
    pub fn backend(&self) -> String {
        self.backend.to_string()
    }

    /// Which kernels the WebGPU engine runs: `"subgroups"` where the device
    /// has subgroup operations (web/js/subgroups.js asks for them), else
    /// `"portable"`; `""` on the CPU engine.
    #[wasm_bindgen(js_name = gpuKernels)]
    pub fn gpu_kernels(&self) -> String {
        kernels_of(self.gpu.as_ref()).to_string()
    }

    /// The WebGPU adapter's description; `""` on the CPU engine.
    #[wasm_bindgen(js_name = gpuVendor)]
    pub fn gpu_vendor(&self) -> String {
        self.gpu_vendor.clone()
    }

    /// The device's `maxStorageBufferBindingSize` (the adapter's, which the
    /// device requests); 0 on the CPU engine.
    #[wasm_bindgen(js_name = maxStorageBufferBindingSize)]
    pub fn max_storage_buffer_binding_size(&self) -> f64 {
        self.max_storage_buffer_binding_size
    }
}

impl WasmEngine {
    /// What a request future needs of the engine, owned (the promise outlives `&self`).
    fn runner(&self, on_chunk: Function, on_output: Option<Function>) -> Runner {
        Runner {
            engine: Rc::clone(&self.engine),
            live: Rc::clone(&self.live),
            stats_text: Rc::clone(&self.stats_text),
            interrupt: Arc::clone(&self.interrupt),
            gpu: self.gpu.clone(),
            on_chunk,
            on_output,
        }
    }
}

/// One request's share of the engine.
struct Runner {
    engine: Rc<RefCell<ChatEngine>>,
    live: Rc<RefCell<String>>,
    stats_text: Rc<RefCell<String>>,
    interrupt: Arc<AtomicBool>,
    gpu: Option<GpuContext>,
    on_chunk: Function,
    /// The engine's output hook, for this request (see `chatCompletion`).
    on_output: Option<Function>,
}

impl Runner {
    /// Runs `request` on the engine; `emit(delta text, chunk JSON)` passes a
    /// chunk to JavaScript. Resolves with the response JSON, or `""` when
    /// `streaming`.
    // The engine's `RefCell` borrow is held across the awaits on purpose: it is the engine's
    // lock, and a second request finds it taken (`busy`).
    #[allow(clippy::await_holding_refcell_ref)]
    async fn go<R>(self, streaming: bool, request: R) -> Result<JsValue, JsValue>
    where
        R: AsyncFnOnce(
            &mut ChatEngine,
            &dyn Fn(&str, serde_json::Result<String>),
        ) -> Result<serde_json::Result<String>, RequestError>,
    {
        failure_check(self.gpu.as_ref())?;
        let mut engine = self.engine.try_borrow_mut().map_err(|_| busy())?;
        self.live.borrow_mut().clear();
        // The first failure of `onChunk` or `onOutput` (it threw) stops the
        // generation and rejects the request with what was thrown.
        let thrown: Rc<RefCell<Option<JsValue>>> = Rc::default();
        if let Some(on_output) = self.on_output.clone() {
            let thrown = Rc::clone(&thrown);
            let interrupt = Arc::clone(&self.interrupt);
            engine.set_output_hook(Some(Box::new(move |ids, text, processed| {
                if thrown.borrow().is_some() {
                    return;
                }
                let (ids, text) = (Uint32Array::from(ids), JsValue::from_str(text));
                let processed = JsValue::from_f64(processed as f64);
                if let Err(e) = on_output.call3(&JsValue::NULL, &ids, &text, &processed) {
                    interrupt.store(true, Ordering::SeqCst);
                    *thrown.borrow_mut() = Some(e);
                }
            })));
        }
        let emit: &dyn Fn(&str, serde_json::Result<String>) = &|delta, json| {
            self.live.borrow_mut().push_str(delta);
            if thrown.borrow().is_some() {
                return;
            }
            let outcome = match json {
                Ok(json) => self.on_chunk.call1(&JsValue::NULL, &json.into()).map(drop),
                Err(e) => Err(error("Error", &format!("cannot serialize a chunk: {e}"))),
            };
            if let Err(e) = outcome {
                self.interrupt.store(true, Ordering::SeqCst);
                *thrown.borrow_mut() = Some(e);
            }
        };
        let result = request(&mut *engine, emit).await;
        engine.set_output_hook(None);
        *self.stats_text.borrow_mut() = engine.runtime_stats_text();
        drop(engine);
        failure_check(self.gpu.as_ref())?;
        if let Some(e) = thrown.take() {
            return Err(e);
        }
        let json = result
            .map_err(|e| request_error(&e))?
            .map_err(|e| error("Error", &format!("cannot serialize the response: {e}")))?;
        Ok(JsValue::from_str(if streaming { "" } else { &json }))
    }
}

/// The fields of `WasmEngine.create`'s options object.
struct CreateOptions {
    device: String,
    model_id: String,
    /// `chatOpts` as JSON (merged over `mlc-chat-config.json`).
    chat_opts: Option<serde_json::Map<String, serde_json::Value>>,
    context_window_size: Option<i64>,
    on_load_progress: Option<Function>,
    /// Whether the shards' md5 is computed here (`false` when the caller
    /// checked every shard against the index's `md5sum` already).
    verify_md5: bool,
}

impl CreateOptions {
    /// Reads the options object; a wrong type is a `TypeError`.
    fn read(options: &JsValue) -> Result<CreateOptions, JsValue> {
        let field = |name: &str| -> Result<Option<JsValue>, JsValue> {
            let value = match options.is_object() {
                true => Reflect::get(options, &name.into())?,
                false => JsValue::UNDEFINED,
            };
            Ok((!value.is_undefined() && !value.is_null()).then_some(value))
        };
        let type_error = |name: &str, expected: &str| {
            error("TypeError", &format!("options.{name} must be {expected}"))
        };
        let device = match field("device")? {
            None => "auto".to_string(),
            Some(value) => match value.as_string().as_deref() {
                Some(device @ ("webgpu" | "cpu" | "auto")) => device.to_string(),
                _ => return Err(type_error("device", r#""webgpu", "cpu" or "auto""#)),
            },
        };
        let model_id = field("modelId")?
            .and_then(|value| value.as_string())
            .ok_or_else(|| type_error("modelId", "a string"))?;
        let chat_opts = match field("chatOpts")? {
            None => None,
            Some(value) => {
                let json = js_sys::JSON::stringify(&value)?.as_string().unwrap_or_default();
                match serde_json::from_str(&json) {
                    Ok(serde_json::Value::Object(map)) => Some(map),
                    _ => return Err(type_error("chatOpts", "an object")),
                }
            }
        };
        let context_window_size = match field("contextWindowSize")? {
            None => None,
            Some(value) => match value.as_f64() {
                Some(size) if size.fract() == 0.0 => Some(size as i64),
                _ => return Err(type_error("contextWindowSize", "an integer")),
            },
        };
        let on_load_progress = match field("onLoadProgress")? {
            None => None,
            Some(value) => Some(
                value
                    .dyn_into::<Function>()
                    .map_err(|_| type_error("onLoadProgress", "a function"))?,
            ),
        };
        let verify_md5 = match field("verifyMd5")? {
            None => true,
            Some(value) => value.as_bool().ok_or_else(|| type_error("verifyMd5", "a boolean"))?,
        };
        Ok(CreateOptions {
            device,
            model_id,
            chat_opts,
            context_window_size,
            on_load_progress,
            verify_md5,
        })
    }
}

/// Copies the JS `Map<string, Uint8Array>` into Rust.
fn files_of(files: &js_sys::Map) -> Result<HashMap<String, Vec<u8>>, JsValue> {
    let mut out = HashMap::new();
    let mut failure = None;
    files.for_each(&mut |value, key| {
        let entry = match (key.as_string(), value.dyn_into::<Uint8Array>()) {
            (Some(name), Ok(bytes)) => Ok((name, bytes.to_vec())),
            _ => Err(error("TypeError", "files must map file names (strings) to Uint8Arrays")),
        };
        match entry {
            Ok((name, bytes)) => {
                out.insert(name, bytes);
            }
            Err(e) => failure = failure.take().or(Some(e)),
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// WebLLM's config merge: `{...mlcChatConfig, ...chatOpts}` (shallow), then
/// `contextWindowSize`, written back into `mlc-chat-config.json`.
fn override_config(
    files: &mut HashMap<String, Vec<u8>>,
    options: &CreateOptions,
) -> Result<(), JsValue> {
    if options.chat_opts.is_none() && options.context_window_size.is_none() {
        return Ok(());
    }
    let file = files
        .get_mut(CONFIG_FILE)
        .ok_or_else(|| error("Error", &format!("{CONFIG_FILE}: no such file")))?;
    let mut config: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(file).map_err(|e| error("Error", &format!("{CONFIG_FILE}: {e}")))?;
    config.extend(options.chat_opts.clone().unwrap_or_default());
    if let Some(size) = options.context_window_size {
        config.insert("context_window_size".to_string(), size.into());
    }
    *file = serde_json::to_vec(&config).map_err(|e| error("Error", &e.to_string()))?;
    Ok(())
}

/// The device the engine option `device` asks for: `None` for `"cpu"`, a
/// WebGPU device or WebLLM's error for `"webgpu"`, and for `"auto"` a WebGPU
/// device when one can be made (web/js/device.js already chose against a
/// software adapter), else `None`.
async fn device_context(device: &str) -> Result<Option<GpuContext>, JsValue> {
    Ok(match device {
        "cpu" => None,
        "webgpu" => Some(gpu_context().await?),
        _ => gpu_context().await.ok(),
    })
}

/// Which kernels a WebGPU engine runs: `"subgroups"` where the device has
/// subgroup operations, else `"portable"`; `""` on the CPU engine.
fn kernels_of(gpu: Option<&GpuContext>) -> &'static str {
    match gpu {
        Some(ctx) if ctx.caps.subgroups => "subgroups",
        Some(_) => "portable",
        None => "",
    }
}

/// A WebGPU device, or WebLLM's error for its absence.
async fn gpu_context() -> Result<GpuContext, JsValue> {
    if !navigator_has_gpu() {
        return Err(error("WebGPUNotAvailableError", WEBGPU_NOT_AVAILABLE));
    }
    GpuContext::new(&ContextOptions::default()).await.map_err(|e| match e {
        mlc_kernels::KernelError::NoAdapter(_) => error("Error", NO_COMPATIBLE_GPU),
        other => error("Error", &other.to_string()),
    })
}

/// An instance that only uses the browser's WebGPU.
fn webgpu_instance() -> wgpu::Instance {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
    descriptor.backends = wgpu::Backends::BROWSER_WEBGPU;
    wgpu::Instance::new(descriptor)
}

/// Whether `navigator.gpu` exists (in a window or a worker).
fn navigator_has_gpu() -> bool {
    let navigator =
        Reflect::get(&js_sys::global(), &"navigator".into()).unwrap_or(JsValue::UNDEFINED);
    navigator.is_object()
        && Reflect::get(&navigator, &"gpu".into())
            .is_ok_and(|gpu| !gpu.is_undefined() && !gpu.is_null())
}

/// Rejects once the GPU reported an error or was lost: its results are not
/// to be trusted any more (a loss is a `DeviceLostError`).
fn failure_check(gpu: Option<&GpuContext>) -> Result<(), JsValue> {
    match gpu.map(|ctx| ctx.health().check()) {
        Some(Err(e)) => Err(engine_error(&mlc_engine::EngineError::Gpu(e))),
        _ => Ok(()),
    }
}

/// A resolved macrotask: gives the event loop a turn (painting, input, an
/// interrupt) without `setTimeout`'s 4 ms clamp on nested timers.
fn next_task() -> Pin<Box<dyn Future<Output = ()>>> {
    let Ok(channel) = web_sys::MessageChannel::new() else {
        return Box::pin(async {});
    };
    let promise = Promise::new(&mut |resolve, _reject| {
        channel.port1().set_onmessage(Some(&resolve));
        let _ = channel.port2().post_message(&JsValue::NULL);
    });
    Box::pin(async move {
        let _ = JsFuture::from(promise).await;
        // The ports live until the message arrived.
        drop(channel);
    })
}

/// Parses a request; malformed JSON or a field of the wrong type is a `TypeError`.
fn parse_request<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, JsValue> {
    serde_json::from_str(json).map_err(|e| error("TypeError", &format!("invalid request: {e}")))
}

/// A request's failure as WebLLM names it.
fn request_error(e: &RequestError) -> JsValue {
    match e {
        RequestError::Chat(chat) => error(chat.name(), &chat.message()),
        RequestError::Engine(engine) => engine_error(engine),
    }
}

/// An engine failure: `DeviceLostError` when the GPU device is gone (the
/// JavaScript layer then unloads the model, as WebLLM does), else `Error`.
fn engine_error(e: &mlc_engine::EngineError) -> JsValue {
    let name = if e.is_device_lost() { "DeviceLostError" } else { "Error" };
    error(name, &e.to_string())
}

/// The error for a call that needs the engine while a request holds it.
fn busy() -> JsValue {
    error("Error", "a request is running on this engine; await it (or interrupt it) first")
}

/// A JS `Error` with `.name` set.
fn error(name: &str, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    e.set_name(name);
    e.into()
}

/// Starts the CPU engine's thread pool: `initThreadPool(n)` spawns `n` Web Workers on this
/// module's shared memory and makes them rayon's global pool (wasm-bindgen-rayon). The threaded
/// module only (`scripts/build-web.sh --threads`); call it once, in a worker (the calling thread
/// blocks on the pool, which a page's main thread may not), before loading a model.
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// The threads the CPU engine's products run on: the size of the pool `initThreadPool` started.
/// The threaded module only: the single-thread one stays as it was built before threads (its
/// CPU engine runs on one thread, which the JS layer knows).
#[cfg(feature = "threads")]
#[wasm_bindgen(js_name = cpuThreads)]
pub fn cpu_threads() -> usize {
    mlc_kernels::cpu_fast::threads()
}
