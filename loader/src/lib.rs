//! Reads official MLC-LLM model artifacts, as WebLLM and MLC-LLM ship them.
//!
//! An artifact is a folder (or the base URL of one) holding
//! `mlc-chat-config.json` ([`ChatConfig`]), a weight index
//! (`tensor-cache.json`, or `ndarray-cache.json` in older artifacts;
//! [`TensorIndex`]), the weight shards it lists, and the tokenizer files the
//! config names. [`Artifact::open`] reads all of it, from a folder in place or
//! from an http(s) URL through a resumable, verified disk cache;
//! [`Artifact::from_files`] takes the same files from memory (a browser's
//! fetches); and
//! [`Artifact::tensor`] hands out tensors by name, decoded ([`Tensor`]).
//!
//! ```no_run
//! use mlc_loader::{Artifact, OpenOptions};
//!
//! let artifact = Artifact::open("https://huggingface.co/mlc-ai/Qwen2.5-0.5B-Instruct-q4f16_1-MLC", OpenOptions::default())?;
//! let scales = artifact.tensor("model.embed_tokens.q_scale")?.to_f32_vec()?;
//! # Ok::<(), mlc_loader::LoadError>(())
//! ```
//!
//! # Features
//!
//! - `download` (default): opening http(s) URLs, through the disk cache
//!   (`cache_folder` says where an artifact goes). Native builds only; it
//!   brings an HTTP client (reqwest and its TLS stack). Without it, or in a
//!   browser build, the crate parses and reads folders and in-memory files, and
//!   [`Artifact::open`] on a URL fails with [`LoadError::InvalidUrl`]. The
//!   fuzz targets and the converter build without it.

mod artifact;
mod cache;
mod config;
mod conv_template;
// Downloads, or where they are not built, a stand-in that refuses URLs.
#[cfg(all(feature = "download", not(target_arch = "wasm32")))]
mod download;
#[cfg(not(all(feature = "download", not(target_arch = "wasm32"))))]
#[path = "no_download.rs"]
mod download;
mod dtype;
mod error;
mod index;
mod json;
mod local_shards;
mod location;
mod metadata;
mod paths;
mod progress;
mod quant;
mod shard;
mod source;
mod tensor;
pub mod writer;

pub use artifact::{Artifact, MEMORY_SOURCE, OpenOptions};
pub use cache::default_cache_dir;
pub use config::{CONFIG_FILE, ChatConfig, TokenizerInfo};
pub use conv_template::ConvTemplate;
#[cfg(all(feature = "download", not(target_arch = "wasm32")))]
pub use download::cache_folder;
pub use dtype::DType;
pub use error::LoadError;
pub use index::{NDARRAY_CACHE_FILE, ShardEntry, TENSOR_CACHE_FILE, TensorIndex, TensorRecord};
pub use location::resolve_model_url;
pub use progress::{Progress, ProgressCallback, ProgressPhase};
pub use quant::Quantization;
pub use tensor::Tensor;
