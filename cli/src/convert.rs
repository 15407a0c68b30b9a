//! `mlc-wgpu convert`: a Hugging Face folder or a GGUF file → an artifact in
//! the official MLC format (docs/convert.md).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use mlc_convert::{Checkpoint, ConvertOptions, GgufCheckpoint, HfFolder, convert_with_progress};
use mlc_loader::Quantization;

use crate::progress;

/// The arguments of `mlc-wgpu convert`.
#[derive(Args)]
pub struct ConvertArgs {
    /// A Hugging Face model folder (config.json + safetensors) or a `.gguf` file.
    #[arg(long)]
    from: PathBuf,
    /// The quantization to write: q4f16_1, q4f32_1, q0f16 or q0f32.
    #[arg(long, default_value = "q4f16_1", value_parser = parse_quantization)]
    quantization: Quantization,
    /// The artifact folder to write (must not exist, or be empty).
    #[arg(long)]
    out: PathBuf,
    /// Conversation template (qwen2, qwen3, chatml, llama-3, llama-3_1, llama-2, ...);
    /// default: the model family's usual one.
    #[arg(long)]
    conv_template: Option<String>,
    /// Context window (default: the config's max_position_embeddings).
    #[arg(long)]
    context_window_size: Option<i64>,
    /// Most tokens per prefill call (default: min(context window, 8192); 2048 for qwen3).
    #[arg(long)]
    prefill_chunk_size: Option<i64>,
    /// A generation_config.json (sampling defaults: temperature, top_p, …) to use
    /// instead of the source's; a GGUF file has none.
    #[arg(long)]
    generation_config: Option<PathBuf>,
}

fn parse_quantization(name: &str) -> Result<Quantization, String> {
    Quantization::parse(name).map_err(|e| e.to_string())
}

/// Converts `--from` into `--out` and prints what was written.
pub fn run(args: &ConvertArgs) -> Result<()> {
    let from = &args.from;
    let is_gguf = from.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    let mut checkpoint: Box<dyn Checkpoint> = if is_gguf {
        Box::new(GgufCheckpoint::open(from).with_context(|| format!("reading {}", from.display()))?)
    } else {
        Box::new(HfFolder::open(from).with_context(|| format!("reading {}", from.display()))?)
    };
    let generation_config = match &args.generation_config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("{}: invalid JSON", path.display()))?,
            )
        }
        None => None,
    };
    let options = ConvertOptions {
        conv_template: args.conv_template.clone(),
        generation_config,
        context_window_size: args.context_window_size,
        prefill_chunk_size: args.prefill_chunk_size,
        ..ConvertOptions::new(args.quantization)
    };
    let bar = progress::count_bar("converting");
    let summary = convert_with_progress(checkpoint.as_mut(), &options, &args.out, &mut |step| {
        progress::count(&bar, step.done, step.total, step.name)
    });
    bar.finish_and_clear();
    let summary = summary
        .with_context(|| format!("converting {} into {}", from.display(), args.out.display()))?;
    println!("wrote {}", args.out.display());
    println!("model_type:      {}", summary.model_type);
    println!("quantization:    {}", summary.quantization);
    println!("conv_template:   {}", summary.conv_template);
    println!(
        "tensors:         {} in {} shard(s), {} bytes, {:.4} bits/param ({} source parameters)",
        summary.tensors,
        summary.shards,
        summary.param_bytes,
        summary.bits_per_param,
        summary.source_parameters
    );
    let tokenizer = if summary.tokenizer_files.is_empty() {
        "none".to_string()
    } else {
        summary.tokenizer_files.join(", ")
    };
    println!("tokenizer files: {tokenizer}");
    if !summary.ignored_tensors.is_empty() {
        eprintln!(
            "notice: {} source tensor(s) not used by the model: {}",
            summary.ignored_tensors.len(),
            summary.ignored_tensors.join(", ")
        );
    }
    Ok(())
}
