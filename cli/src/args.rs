//! The arguments several commands share: where the model comes from and
//! which engine runs it.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Where the artifact comes from.
#[derive(Args)]
pub struct SourceArgs {
    /// Artifact folder, http(s) URL (Hugging Face `.../resolve/main/` convention),
    /// WebLLM model id, or the id of a cached model (`mlc-wgpu list`).
    /// Default: the offline SmolLM2-135M-Instruct artifact that scripts/default-model.sh
    /// imports into the cache (`<cache>/models/SmolLM2-135M-Instruct-q4f16_1-MLC`).
    #[arg(long)]
    pub model: Option<String>,
    /// Download cache (default: $MLC_WGPU_CACHE, $XDG_CACHE_HOME/mlc-wgpu or ~/.cache/mlc-wgpu).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Use only cached files; never touch the network.
    #[arg(long)]
    pub offline: bool,
    /// Skip the md5 check of weight shards.
    #[arg(long)]
    pub no_verify: bool,
}

/// How to run the model.
#[derive(Args)]
pub struct RunArgs {
    /// Input token ids, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub tokens: Vec<u32>,
    /// Which engine computes.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    pub device: Device,
}

/// The engine that computes.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Device {
    /// The GPU when one is usable, else the CPU (with a notice).
    Auto,
    /// The fast CPU engine (int16 activations, SIMD, all cores; rayon's
    /// `RAYON_NUM_THREADS` sets the thread count).
    Cpu,
    /// The float32 CPU engine: the slow oracle conformance checks against.
    CpuReference,
    /// The WebGPU engine.
    Gpu,
}
