//! The commands over the artifact itself and raw token ids: `inspect`,
//! `logits` and `generate` (no tokenizer, no chat template).

use std::path::Path;

use anyhow::{Context, Result, bail};
use mlc_engine::gpu::GpuOptions;
use mlc_engine::memory::MemoryPlan;
use mlc_engine::{GreedyOptions, generate_greedy};
use mlc_loader::Artifact;
use pollster::FutureExt as _;

use crate::args::{RunArgs, SourceArgs};
use crate::load::{load, open};

/// `inspect`: the config summary, the GPU memory plan and the tensor table.
pub fn inspect(source: &SourceArgs) -> Result<()> {
    print_artifact(&open(source)?)
}

/// `logits`: the final position's logits for `run.tokens`, as raw little-endian f32.
pub fn logits(source: &SourceArgs, run: &RunArgs, out: &Path) -> Result<()> {
    let artifact = open(source)?;
    let mut model = load(&artifact, run.device)?;
    let logits = model.prefill(&run.tokens).block_on()?;
    let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// `generate`: greedy tokens after `run.tokens`, until a stop token or `max_tokens`.
pub fn generate(
    source: &SourceArgs,
    run: &RunArgs,
    max_tokens: usize,
    greedy: bool,
    ignore_eos: bool,
    json: bool,
) -> Result<()> {
    if !greedy {
        bail!("sampling over raw token ids is not available; pass --greedy");
    }
    let artifact = open(source)?;
    let mut model = load(&artifact, run.device)?;
    let stop_token_ids = match (&artifact.config.conv_template, ignore_eos) {
        (Some(template), false) => template.stop_token_ids.clone(),
        _ => Vec::new(),
    };
    let tokens =
        generate_greedy(model.as_mut(), &run.tokens, &GreedyOptions { max_tokens, stop_token_ids })
            .block_on()?;
    let list: Vec<String> = tokens.iter().map(u32::to_string).collect();
    match json {
        true => println!("{}", serde_json::json!({ "tokens": tokens })),
        false => println!("{}", list.join(" ")),
    }
    Ok(())
}

fn print_artifact(artifact: &Artifact) -> Result<()> {
    let config = &artifact.config;
    println!("source:          {}", artifact.source());
    println!("model_type:      {}", config.model_type);
    println!("quantization:    {}", config.quantization);
    println!("vocab_size:      {}", config.vocab_size);
    println!("context_window:  {}", config.context_window_size);
    println!("prefill_chunk:   {}", config.prefill_chunk_size);
    if let Some(template) = &config.conv_template {
        println!("conv_template:   {}", template.name.as_deref().unwrap_or("(unnamed)"));
    }
    match mlc_engine::models::spec_for(config) {
        Ok(spec) => {
            println!(
                "decoder:         {} layers, hidden {}, heads {}/{} kv, head_dim {}, ffn {}, tied {}",
                spec.num_layers,
                spec.hidden_size,
                spec.num_heads,
                spec.num_kv_heads,
                spec.head_dim,
                spec.intermediate_size,
                spec.tie_word_embeddings
            );
            // What `--device gpu` would allocate with the default options
            // (the device's limits are checked when it loads).
            let max_binding = mlc_kernels::buffers::DEFAULT_MAX_BINDING;
            let options = GpuOptions::default().for_model(&spec, max_binding);
            let plan = MemoryPlan::new(
                &spec,
                &artifact.index,
                artifact.quantization(),
                options.kv_positions(&spec),
                options.sequences,
                options.step_rows(),
                max_binding,
            );
            println!("{plan}");
        }
        Err(error) => println!("decoder:         not runnable here: {error}"),
    }
    println!();
    println!(
        "{:<56} {:<16} {:<8} {:>12} {:>12}  shard",
        "tensor", "shape", "dtype", "bytes", "offset"
    );
    for shard in &artifact.index.shards {
        for record in &shard.records {
            println!(
                "{:<56} {:<16} {:<8} {:>12} {:>12}  {}",
                record.name,
                format!("{:?}", record.shape),
                record.dtype.name(),
                record.nbytes,
                record.byte_offset,
                shard.data_path
            );
        }
    }
    println!("\n{} shards, {} bytes", artifact.index.shards.len(), artifact.index.total_bytes());
    Ok(())
}
