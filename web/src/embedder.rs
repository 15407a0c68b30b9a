//! `WasmEmbedder`: an embedding model (BERT, WebLLM's snowflake-arctic-embed
//! records) behind `engine.embeddings.create`. Its encoder runs on the CPU
//! engine: the WebGPU kernels it needs (LayerNorm, exact GELU, bidirectional
//! attention) are not written yet.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Promise;
use mlc_chat::{Embedder, EmbeddingConvention, EmbeddingRequest};
use mlc_engine::CpuEncoder;
use mlc_loader::{Artifact, OpenOptions};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::{
    CreateOptions, busy, engine_error, error, files_of, override_config, parse_request,
    request_error,
};

/// A loaded embedding model answering `embeddings.create` requests.
#[wasm_bindgen]
pub struct WasmEmbedder {
    /// Borrowed for the whole of a request: the JavaScript layer queues them.
    embedder: Rc<RefCell<Embedder>>,
}

#[wasm_bindgen]
impl WasmEmbedder {
    /// Loads the embedding artifact in `files` with `WasmEngine.create`'s
    /// options; `device: "webgpu"` is refused with the reason.
    pub async fn create(files: js_sys::Map, options: JsValue) -> Result<WasmEmbedder, JsValue> {
        let options = CreateOptions::read(&options)?;
        if options.device == "webgpu" {
            return Err(error(
                "Error",
                "the embedding model's encoder runs on the CPU engine only (its WebGPU kernels are \
                 not written yet): load it with device \"cpu\" or \"auto\"",
            ));
        }
        let mut files = files_of(&files)?;
        override_config(&mut files, &options)?;
        let artifact = Artifact::from_files(
            files,
            OpenOptions { verify_md5: options.verify_md5, ..OpenOptions::default() },
        )
        .map_err(|e| error("Error", &e.to_string()))?;
        let model = CpuEncoder::load(&artifact).map_err(|e| engine_error(&e))?;
        let mut embedder = Embedder::new(Box::new(model), &artifact)
            .map_err(|e| error("Error", &e.to_string()))?;
        embedder.set_model_id(options.model_id);
        if let Some(callback) = &options.on_load_progress {
            let _ =
                callback.call2(&JsValue::NULL, &JsValue::from_f64(1.0), &JsValue::from_f64(1.0));
        }
        Ok(WasmEmbedder { embedder: Rc::new(RefCell::new(embedder)) })
    }

    /// `embeddings.create` with `request_json` (an EmbeddingCreateParams), as
    /// WebLLM answers it: texts tokenized without special tokens, the first
    /// row of each input unnormalised. Resolves with the response JSON.
    pub fn embed(&self, request_json: String) -> Promise {
        future_to_promise(embed(Rc::clone(&self.embedder), request_json))
    }

    /// The engine that computes: always `"cpu"`.
    pub fn backend(&self) -> String {
        "cpu".to_string()
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
