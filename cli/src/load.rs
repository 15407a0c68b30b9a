//! Opening `--model` (a folder, a URL, a WebLLM id or a cached model, with a
//! progress bar) and loading it onto the engine `--device` names: what every
//! command that runs a model starts with.

use anyhow::{Context, Result};
use mlc_engine::gpu::GpuOptions;
use mlc_engine::prebuilt::apply_overrides;
use mlc_engine::{
    BatchedModel, CpuEncoder, EmbeddingModel, GpuEncoder, load_cpu, load_cpu_fast, load_gpu,
};
use mlc_kernels::{ContextOptions, GpuContext};
use mlc_loader::{Artifact, OpenOptions};

use crate::args::{Device, SourceArgs};
use crate::{models, progress};

/// Opens `--model` with a download progress bar: a folder, an http(s) URL,
/// one of WebLLM's prebuilt model ids (resolved to its official URL, with the
/// record's overrides) or a cached model's id ([`models::resolve`]).
pub fn open(source: &SourceArgs) -> Result<Artifact> {
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
pub fn load(artifact: &Artifact, device: Device) -> Result<Box<dyn BatchedModel>> {
    load_for(artifact, device, 1)
}

/// [`load`] with room for `sequences` sequences on the GPU engine (the CPU
/// engines hold many anyway).
pub fn load_for(
    artifact: &Artifact,
    device: Device,
    sequences: usize,
) -> Result<Box<dyn BatchedModel>> {
    match pick_gpu(device)? {
        Some(ctx) => {
            let info = &ctx.adapter_info;
            eprintln!(
                "notice: running on {} ({:?}, {}; shader-f16 {}, subgroups {})",
                info.name, info.backend, info.driver_info, ctx.caps.shader_f16, ctx.caps.subgroups
            );
            let options = GpuOptions { sequences, ..GpuOptions::default() };
            Ok(Box::new(load_gpu(artifact, ctx, options)?))
        }
        None => load_cpu_engine(artifact, device),
    }
}

/// Loads `artifact` on the CPU engine `device` names: the float32 oracle for
/// `CpuReference`, else the fast engine.
pub fn load_cpu_engine(artifact: &Artifact, device: Device) -> Result<Box<dyn BatchedModel>> {
    Ok(match device {
        Device::CpuReference => Box::new(load_cpu(artifact)?),
        _ => Box::new(load_cpu_fast(artifact)?),
    })
}

/// Loads the encoder of an embedding model on `device`, as [`load`] picks:
/// the GPU encoder on a GPU (`Auto`: a hardware adapter), else the CPU one.
pub fn load_encoder(artifact: &Artifact, device: Device) -> Result<Box<dyn EmbeddingModel>> {
    match pick_gpu(device)? {
        Some(ctx) => {
            let info = &ctx.adapter_info;
            eprintln!(
                "notice: running the encoder on {} ({:?}, {})",
                info.name, info.backend, info.driver_info
            );
            Ok(Box::new(GpuEncoder::load(artifact, ctx)?))
        }
        None => Ok(Box::new(CpuEncoder::load(artifact)?)),
    }
}

/// The GPU `device` asks for: `None` for the CPU engine. `Auto` takes a
/// hardware adapter and otherwise says why it falls back to the CPU — a
/// software adapter (lavapipe, SwiftShader) is slower than the CPU engine.
pub fn pick_gpu(device: Device) -> Result<Option<GpuContext>> {
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
