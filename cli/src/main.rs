//! The `mlc-wgpu` command line: argument parsing and the subcommands, over the
//! engine (`mlc-engine`) and the chat layer (`mlc-chat`). Errors go to stderr
//! with exit code 1; a panic is reported as an internal error without a backtrace.

mod bench;
mod chat;
mod client_watch;
mod commands;
mod convert;
mod ctrl_c;
mod devices;
mod models;
mod progress;
mod serve;
mod synth;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Runs official MLC-LLM model artifacts on the CPU or the GPU (WebGPU via wgpu).
#[derive(Parser)]
#[command(name = "mlc-wgpu", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the config summary and the tensor table of an artifact.
    Inspect {
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Write the final-position logits for a token sequence as raw little-endian f32.
    Logits {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        run: RunArgs,
        /// Output file (vocab_size f32 values).
        #[arg(long)]
        out: PathBuf,
    },
    /// Generate tokens after a token sequence.
    Generate {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        run: RunArgs,
        /// Most tokens to generate.
        #[arg(long, default_value_t = 32)]
        max_tokens: usize,
        /// Always take the most likely token (the only mode for raw token ids).
        #[arg(long)]
        greedy: bool,
        /// Keep going past the conversation template's stop tokens.
        #[arg(long)]
        ignore_eos: bool,
        /// Print `{"tokens":[...]}` as the last line.
        #[arg(long)]
        json: bool,
    },
    /// Write an artifact with random weights and exactly the layout of a real one.
    Synth(synth::SynthArgs),
    /// Measure load time, time to first token, prefill and decode speed.
    Bench(bench::BenchArgs),
    /// Chat interactively: one message per line on stdin, replies streamed to stdout.
    Chat(chat::ChatArgs),
    /// Continue a text prompt (no chat template).
    Complete(chat::CompleteArgs),
    /// Print the prompt and token ids a chat request renders to.
    RenderPrompt(chat::RenderPromptArgs),
    /// Convert a Hugging Face folder or a GGUF file into an MLC artifact (q4f16_1, q4f32_1, q0f16, q0f32).
    Convert(convert::ConvertArgs),
    /// List the GPU adapters wgpu finds: features, limits, cooperative-matrix shapes.
    Devices(devices::DevicesArgs),
    /// Serve the OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models).
    Serve(serve::ServeArgs),
    /// List the models in the download cache, with their sizes.
    List(models::CacheArgs),
    /// Download a model (WebLLM id or URL) into the cache, resuming an earlier download.
    Pull(models::PullArgs),
    /// Delete a cached model.
    Rm(models::RmArgs),
}

/// Where the artifact comes from.
#[derive(Args)]
struct SourceArgs {
    /// Artifact folder, http(s) URL (Hugging Face `.../resolve/main/` convention),
    /// WebLLM model id, or the id of a cached model (`mlc-wgpu list`).
    /// Default: the offline SmolLM2-135M-Instruct artifact that scripts/default-model.sh
    /// imports into the cache (`<cache>/models/SmolLM2-135M-Instruct-q4f16_1-MLC`).
    #[arg(long)]
    model: Option<String>,
    /// Download cache (default: $MLC_WGPU_CACHE, $XDG_CACHE_HOME/mlc-wgpu or ~/.cache/mlc-wgpu).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Use only cached files; never touch the network.
    #[arg(long)]
    offline: bool,
    /// Skip the md5 check of weight shards.
    #[arg(long)]
    no_verify: bool,
}

/// How to run the model.
#[derive(Args)]
struct RunArgs {
    /// Input token ids, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    tokens: Vec<u32>,
    /// Which engine computes.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    device: Device,
}

/// The engine that computes.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Device {
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

/// Parses the arguments, runs the command, and maps errors to exit codes.
fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("internal error: {info}; please report this");
    }));
    let cli = Cli::parse();
    match commands::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
