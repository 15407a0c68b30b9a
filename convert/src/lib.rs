//! Turns a checkpoint that MLC-LLM's own converter would take (a Hugging Face
//! folder of safetensors) or one that llama.cpp ships (GGUF) into an artifact
//! in the official MLC format, written by [`mlc_loader::writer`].
//!
//! The pipeline has three stages, each in its own module:
//! a [`Checkpoint`] reads a source format and hands out tensors under their
//! Hugging Face names as float32, one at a time; the converter maps them onto
//! the MLC parameter names of the model family (fusing q/k/v and gate/up),
//! quantizes them exactly as the official converter does, and streams them
//! into the writer; the chat config is generated from the source's config.

/// `mlc-chat-config.json` generation, as MLC's `gen_config` does it.
pub mod chat_config;
mod checkpoint;
mod error;
/// Model families: config parsing and the parameter map.
pub mod families;
/// GGUF (llama.cpp) reading: header parsing, dequantization, the GGUF checkpoint.
pub mod gguf;
mod pipeline;
/// The official quantizers, bit-exact.
pub mod quantize;
mod safetensors;

pub use checkpoint::Checkpoint;
pub use error::ConvertError;
pub use gguf::GgufCheckpoint;
pub use pipeline::{
    ConvertOptions, ConvertProgress, ConvertSummary, convert, convert_with_progress,
};
pub use safetensors::{HfFolder, TOKENIZER_FILES};
