//! The mlc-wgpu engine: runs official MLC-LLM artifacts on the CPU and on WebGPU.
//!
//! The engine's layers, from the bottom: [`mlc_loader`] reads an artifact;
//! [`models`] turns its config into a [`models::ModelSpec`] and runs the shared
//! decoder over a [`backend::Backend`]; [`cpu`] is the float32 backend (the oracle), [`cpu_fast`] the fast one;
//! [`model::Model`] ties weights, backend and KV cache position together.
//! [`encoder`] runs the embedding models (BERT), a kind of model of its own.
//! The chat layer (`mlc-chat`: tokenizer, templates, WebLLM's API) and the
//! command line (`mlc-wgpu`) are crates above this one.

pub mod backend;
pub mod batch;
pub mod cpu;
pub mod cpu_fast;
pub mod encoder;
mod error;
pub mod generate;
pub mod gpu;
pub mod kind;
pub mod memory;
pub mod model;
pub mod models;
pub mod prebuilt;
pub mod profile;
pub mod sampling;
pub mod weights;

pub use encoder::{CpuEncoder, EmbeddingModel, GpuEncoder};
pub use error::EngineError;
pub use generate::{GreedyOptions, generate_greedy};
pub use gpu::load::{LoadCheck, load_gpu};
pub use kind::ModelKind;
pub use model::{BatchRow, BatchedModel, LanguageModel, Model, ModelFuture, STEPS_AHEAD};
pub use sampling::argmax;

use mlc_loader::Artifact;

/// Loads `artifact` onto the float32 CPU engine: the oracle conformance
/// checks every engine against (`--device cpu-reference`).
pub fn load_cpu(artifact: &Artifact) -> Result<Model<cpu::CpuBackend>, EngineError> {
    Model::load(artifact, cpu::CpuBackend::new())
}

/// Loads `artifact` onto the fast CPU engine (int16 activations, SIMD, threads):
/// what `--device cpu` runs.
pub fn load_cpu_fast(artifact: &Artifact) -> Result<Model<cpu_fast::FastCpuBackend>, EngineError> {
    Model::load(artifact, cpu_fast::FastCpuBackend::new())
}
