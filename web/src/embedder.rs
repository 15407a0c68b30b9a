//! `WasmEmbedder`: an embedding model (BERT, WebLLM's snowflake-arctic-embed
//! records) behind `engine.embeddings.create`. Its encoder runs on WebGPU
//! (`GpuEncoder`) where the device option gives a device, as the chat engine
//! does, and on the CPU (`CpuEncoder`) otherwise.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Promise;
use mlc_chat::{Embedder, EmbeddingConvention, EmbeddingRequest};
use mlc_engine::{CpuEncoder, EmbeddingModel, GpuEncoder};
use mlc_kernels::GpuContext;
use mlc_loader::{Artifact, OpenOptions};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::{
    CreateOptions, busy, device_context, engine_error, error, failure_check, files_of, kernels_of,
    override_config, parse_request, request_error,
};

/// A loaded embedding model answering `embeddings.create` requests.
#[wasm_bindgen]
pub struct WasmEmbedder {
    /// Borrowed for the whole of a request: the JavaScript layer queues them.
    embedder: Rc<RefCell<Embedder>>,
    /// The WebGPU device the encoder runs on; `None` on the CPU.
    gpu: Option<GpuContext>,
}

#[wasm_bindgen]
impl WasmEmbedder {
    /// Loads the embedding artifact in `files` with `WasmEngine.create`'s
    /// options: on WebGPU for `device: "webgpu"` (WebLLM's error without it)
    /// and for `"auto"` where a device can be made, else on the CPU.
    pub async fn create(files: js_sys::Map, options: JsValue) -> Result<WasmEmbedder, JsValue> {
        let options = CreateOptions::read(&options)?;
        let mut files = files_of(&files)?;
        override_config(&mut files, &options)?;
        let artifact = Artifact::from_files(
            files,
            OpenOptions { verify_md5: options.verify_md5, ..OpenOptions::default() },
        )
        .map_err(|e| error("Error", &e.to_string()))?;
        let gpu = device_context(&options.device).await?;
        let model: Box<dyn EmbeddingModel> = match gpu.clone() {
            Some(ctx) => {
                let mut model = GpuEncoder::load(&artifact, ctx).map_err(|e| engine_error(&e))?;
                // The load's error scopes and shader compilations resolve only
                // now, through the event loop.
                model.settle().await.map_err(|e| engine_error(&e))?;
                Box::new(model)
            }
            None => Box::new(CpuEncoder::load(&artifact).map_err(|e| engine_error(&e))?),
        };
        let mut embedder =
            Embedder::new(model, &artifact).map_err(|e| error("Error", &e.to_string()))?;
        embedder.set_model_id(options.model_id);
        if let Some(callback) = &options.on_load_progress {
            let _ =
                callback.call2(&JsValue::NULL, &JsValue::from_f64(1.0), &JsValue::from_f64(1.0));
        }
        failure_check(gpu.as_ref())?;
        Ok(WasmEmbedder { embedder: Rc::new(RefCell::new(embedder)), gpu })
    }

    /// `embeddings.create` with `request_json` (an EmbeddingCreateParams), as
    /// WebLLM answers it: texts tokenized without special tokens, the first
    /// row of each input unnormalised. Resolves with the response JSON.
    pub fn embed(&self, request_json: String) -> Promise {
        future_to_promise(embed(Rc::clone(&self.embedder), request_json))
    }

    /// The engine that computes: `"webgpu"` or `"cpu"`.
    pub fn backend(&self) -> String {
        if self.gpu.is_some() { "webgpu" } else { "cpu" }.to_string()
    }

    /// Which kernels the encoder runs (`WasmEngine.gpuKernels`); `""` on the CPU.
    #[wasm_bindgen(js_name = gpuKernels)]
    pub fn gpu_kernels(&self) -> String {
        kernels_of(self.gpu.as_ref()).to_string()
    }

    /// The WebGPU adapter's description; `""` on the CPU.
    #[wasm_bindgen(js_name = gpuVendor)]
    pub fn gpu_vendor(&self) -> String {
        self.gpu.as_ref().map(|ctx| ctx.adapter_info.name.clone()).unwrap_or_default()
    }

    /// The longest input, in tokens.
    #[wasm_bindgen(js_name = contextWindowSize)]
    pub fn context_window_size(&self) -> usize {
        self.embedder.borrow().model().spec().context_window_size
    }
}

/// Answers one request on `embedder`.
// The `RefCell` borrow is held across the await on purpose: it is the model's lock, and a second
// request finds it taken (`busy`).
#[allow(clippy::await_holding_refcell_ref)]
async fn embed(embedder: Rc<RefCell<Embedder>>, request_json: String) -> Result<JsValue, JsValue> {
    let request: EmbeddingRequest = parse_request(&request_json)?;
    let mut embedder = embedder.try_borrow_mut().map_err(|_| busy())?;
    let response = embedder
        .create(&request, EmbeddingConvention::WebLlm)
        .await
        .map_err(|e| request_error(&e))?;
    let json = serde_json::to_string(&response).map_err(|e| error("Error", &e.to_string()))?;
    Ok(JsValue::from_str(&json))
}
