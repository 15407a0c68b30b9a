//! mlc-wgpu: runs official MLC-LLM artifacts on the CPU and on WebGPU.
//!
//! The layers, from the bottom: [`mlc_loader`] reads an artifact;
//! [`models`] turns its config into a [`models::ModelSpec`] and runs the shared
//! decoder over a [`backend::Backend`]; [`cpu`] is the float32 backend;
//! [`model::Model`] ties weights, backend and KV cache position together.

pub mod backend;
pub mod chat;
pub mod cpu;
mod error;
pub mod generate;
pub mod gpu;
mod gpu_load;
pub mod memory;
pub mod model;
pub mod models;
pub mod prebuilt;
pub mod profile;
pub mod sampling;
pub mod weights;

pub use error::EngineError;
pub use generate::{GreedyOptions, argmax, generate_greedy};
pub use gpu_load::{LoadCheck, load_gpu};
pub use model::{LanguageModel, Model, ModelFuture};

use mlc_loader::Artifact;

/// Loads `artifact` onto the CPU engine.
pub fn load_cpu(artifact: &Artifact) -> Result<Model<cpu::CpuBackend>, EngineError> {
    Model::load(artifact, cpu::CpuBackend::new())
}
