//! The `mlc-wgpu` command line: argument parsing and the subcommands, over the
//! engine (`mlc-engine`) and the chat layer (`mlc-chat`). Errors go to stderr
//! with exit code 1; a panic is reported as an internal error without a backtrace.

mod args;
mod bench;
mod chat;
mod client_watch;
mod convert;
mod ctrl_c;
mod devices;
mod embed;
mod load;
mod models;
mod progress;
mod serve;
mod synth;
mod tokens;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use args::{RunArgs, SourceArgs};

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
    /// Embed texts with an embedding model (BERT, e.g. snowflake-arctic-embed); prints the
    /// OpenAI `/v1/embeddings` response.
    Embed(embed::EmbedArgs),
    /// Convert a Hugging Face folder or a GGUF file into an MLC artifact (q4f16_1, q4f32_1, q0f16, q0f32).
    Convert(convert::ConvertArgs),
    /// List the GPU adapters wgpu finds: features, limits, cooperative-matrix shapes.
    Devices(devices::DevicesArgs),
    /// Serve the OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions,
    /// /v1/embeddings, /v1/models).
    Serve(serve::ServeArgs),
    /// List the models in the download cache, with their sizes.
    List(models::CacheArgs),
    /// Download a model (WebLLM id or URL) into the cache, resuming an earlier download.
    Pull(models::PullArgs),
    /// Delete a cached model.
    Rm(models::RmArgs),
}

/// Runs one parsed command.
fn run(command: Command) -> anyhow::Result<()> {
    // `serve` runs its engine on a thread of its own, which joins there.
    if !matches!(command, Command::Serve(_)) {
        run_the_cpu_engine_on_this_thread();
    }
    match command {
        Command::Inspect { source } => tokens::inspect(&source),
        Command::Logits { source, run, out } => tokens::logits(&source, &run, &out),
        Command::Generate { source, run, max_tokens, greedy, ignore_eos, json } => {
            tokens::generate(&source, &run, max_tokens, greedy, ignore_eos, json)
        }
        Command::Synth(args) => synth::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Chat(args) => chat::chat(&args),
        Command::Complete(args) => chat::complete(&args),
        Command::RenderPrompt(args) => chat::render_prompt(&args),
        Command::Serve(args) => serve::serve(args),
        Command::Embed(args) => embed::run(&args),
        Command::Convert(args) => convert::run(&args),
        Command::Devices(args) => devices::run(&args),
        Command::List(args) => models::list(&args),
        Command::Pull(args) => models::pull(&args),
        Command::Rm(args) => models::rm(&args),
    }
}

/// Makes the calling thread, the one that will run the engine, a thread of
/// the CPU engine's pool (`mlc_kernels::cpu_fast::share_this_thread_with_the_pool`).
fn run_the_cpu_engine_on_this_thread() {
    #[cfg(feature = "parallel")]
    mlc_kernels::cpu_fast::share_this_thread_with_the_pool();
}

/// Parses the arguments, runs the command, and maps errors to exit codes.
fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("internal error: {info}; please report this");
    }));
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
