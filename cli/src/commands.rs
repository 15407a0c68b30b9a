//! The subcommands.

use anyhow::{Context, Result, bail};
use mlc_engine::gpu::GpuOptions;
use mlc_engine::memory::MemoryPlan;
use mlc_engine::prebuilt::apply_overrides;
use mlc_engine::{
    GreedyOptions, LanguageModel, generate_greedy, load_cpu, load_cpu_fast, load_gpu,
};
use mlc_kernels::{ContextOptions, GpuContext};
use mlc_loader::{Artifact, OpenOptions};
use pollster::FutureExt as _;

use super::{Command, Device, SourceArgs, models, progress};

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Inspect { source } => inspect(&open(&source)?),
        Command::Logits { source, run, out } => {
            let artifact = open(&source)?;
            let mut model = load(&artifact, run.device)?;
            let logits = model.prefill(&run.tokens).block_on()?;
            let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(&out, bytes).with_context(|| format!("writing {}", out.display()))?;
            Ok(())
        }
        Command::Generate { source, run, max_tokens, greedy, ignore_eos, json } => {
            if !greedy {
                bail!("sampling over raw token ids is not available; pass --greedy");
            }
            let artifact = open(&source)?;
            let mut model = load(&artifact, run.device)?;
            let stop_token_ids = match (&artifact.config.conv_template, ignore_eos) {
                (Some(template), false) => template.stop_token_ids.clone(),
                _ => Vec::new(),
            };
            let tokens = generate_greedy(
                model.as_mut(),
                &run.tokens,
                &GreedyOptions { max_tokens, stop_token_ids },
            )
            .block_on()?;
            let list: Vec<String> = tokens.iter().map(u32::to_string).collect();
            match json {
                true => println!("{}", serde_json::json!({ "tokens": tokens })),
                false => println!("{}", list.join(" ")),
            }
            Ok(())
        }
        Command::Synth(args) => super::synth::run(&args),
        Command::Bench(args) => super::bench::run(&args),
        Command::Chat(args) => super::chat::chat(&args),
        Command::Complete(args) => super::chat::complete(&args),
        Command::RenderPrompt(args) => super::chat::render_prompt(&args),
        Command::Serve(args) => super::serve::serve(args),
        Command::Convert(args) => super::convert::run(&args),
        Command::Devices(args) => super::devices::run(&args),
        Command::List(args) => super::models::list(&args),
        Command::Pull(args) => super::models::pull(&args),
        Command::Rm(args) => super::models::rm(&args),
    }
}

/// Opens `--model` with a download progress bar: a folder, an http(s) URL,
/// one of WebLLM's prebuilt model ids (resolved to its official URL, with the
/// record's overrides) or a cached model's id ([`models::resolve`]).
pub(super) fn open(source: &SourceArgs) -> Result<Artifact> {
    let options = OpenOptions {
        cache_dir: source.cache_dir.clone(),
        verify_md5: !source.no_verify,
        allow_network: !source.offline,
        progress: Some(progress::bar()),
    };
    let model = match &source.model {
        Some(model) => model.clone(),
        None => default_model(source)?,
    };
    let cache = source.cache_dir.clone().unwrap_or_else(mlc_loader::default_cache_dir);
    let (location, prebuilt) = match models::resolve(&model, &cache)? {
        models::Target::Location(location) => (location, None),
        models::Target::Prebuilt(record) => (record.model.clone(), Some(record)),
    };
    let mut artifact =
        Artifact::open(&location, options).with_context(|| format!("opening model {model}"))?;
    if let Some(record) = &prebuilt {
        apply_overrides(&mut artifact.config, &record.overrides);
    }
    Ok(artifact)
}

/// The folder scripts/default-model.sh imports SmolLM2-135M-Instruct into,
/// under the cache (`--cache-dir`, else the default cache).
const DEFAULT_MODEL_DIR: &str = "models/SmolLM2-135M-Instruct-q4f16_1-MLC";

/// The artifact used when `--model` is not given: the imported default model,
/// or an error saying how to import it.
fn default_model(source: &SourceArgs) -> Result<String> {
    let cache = source.cache_dir.clone().unwrap_or_else(mlc_loader::default_cache_dir);
    let dir = cache.join(DEFAULT_MODEL_DIR);
    if dir.join(mlc_loader::CONFIG_FILE).is_file() {
        return Ok(dir.to_string_lossy().into_owned());
    }
    anyhow::bail!(
        "no --model given and the default model is not imported ({} is missing); run scripts/default-model.sh to import SmolLM2-135M-Instruct (offline after its one download), or pass --model DIR|URL|MODEL_ID",
        dir.display()
    )
}

/// Loads `artifact` on `device` (`Auto`: a hardware GPU when there is one, else the CPU).
pub(super) fn load(artifact: &Artifact, device: Device) -> Result<Box<dyn LanguageModel>> {
    match pick_gpu(device)? {
        Some(ctx) => {
            let info = &ctx.adapter_info;
            eprintln!(
                "notice: running on {} ({:?}, {}; shader-f16 {}, subgroups {})",
                info.name, info.backend, info.driver_info, ctx.caps.shader_f16, ctx.caps.subgroups
            );
            Ok(Box::new(load_gpu(artifact, ctx, GpuOptions::default())?))
        }
        None => load_cpu_engine(artifact, device),
    }
}

/// Loads `artifact` on the CPU engine `device` names: the float32 oracle for
/// `CpuReference`, else the fast engine.
pub(super) fn load_cpu_engine(
    artifact: &Artifact,
    device: Device,
) -> Result<Box<dyn LanguageModel>> {
    Ok(match device {
        Device::CpuReference => Box::new(load_cpu(artifact)?),
        _ => Box::new(load_cpu_fast(artifact)?),
    })
}

/// The GPU `device` asks for: `None` for the CPU engine. `Auto` takes a
/// hardware adapter and otherwise says why it falls back to the CPU — a
/// software adapter (lavapipe, SwiftShader) is slower than the CPU engine.
pub(super) fn pick_gpu(device: Device) -> Result<Option<GpuContext>> {
    let ctx = || GpuContext::new_blocking(&ContextOptions::from_env());
    Ok(match device {
        Device::Cpu | Device::CpuReference => None,
        Device::Gpu => Some(ctx()?),
        Device::Auto => match ctx() {
            Ok(ctx) if ctx.adapter_info.device_type != wgpu::DeviceType::Cpu => Some(ctx),
            Ok(ctx) => {
                eprintln!(
                    "notice: only a software GPU adapter ({}) is available; using the CPU engine",
                    ctx.adapter_info.name
                );
                None
            }
            Err(error) => {
                eprintln!("notice: no usable GPU ({error}); using the CPU engine");
                None
            }
        },
    })
}

fn inspect(artifact: &Artifact) -> Result<()> {
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
            let options = GpuOptions::default();
            let max_binding = mlc_kernels::buffers::DEFAULT_MAX_BINDING;
            let plan = MemoryPlan::new(
                &spec,
                &artifact.index,
                artifact.quantization(),
                options.kv_positions(&spec),
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
