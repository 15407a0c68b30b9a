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

mod checkpoint;
mod error;

pub use checkpoint::Checkpoint;
pub use error::ConvertError;
