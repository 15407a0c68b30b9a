//! The conversion: checkpoint → parameters in the official order → quantized
//! tensors streamed into the artifact writer, then tokenizer files and the
//! chat config.

use std::path::Path;

use half::f16;
use mlc_loader::writer::{ArtifactWriter, DEFAULT_SHARD_CAP};
use mlc_loader::{CONFIG_FILE, DType, Quantization};
use serde_json::Value;

use crate::chat_config::{self, ChatConfigInput};
use crate::families::{self, Dims, Family, Kind, Overrides, Param};
use crate::quantize;
use crate::safetensors::TOKENIZER_FILES;
use crate::{Checkpoint, ConvertError};

/// How to convert.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// The quantization to write.
    pub quantization: Quantization,
    /// The conversation template (`--conv-template`); `None` picks the
    /// family's usual one (qwen2 → `qwen2`, qwen3 → `qwen3`, llama →
    /// `chatml`, `llama-3` or `llama-2` by the tokenizer's special tokens).
    pub conv_template: Option<String>,
    /// Overrides `context_window_size` (default: `max_position_embeddings`).
    pub context_window_size: Option<i64>,
    /// Overrides `prefill_chunk_size` (default: the family's rule,
    /// `min(context, 8192)`, or 2048 for qwen3).
    pub prefill_chunk_size: Option<i64>,
    /// `model_config.max_batch_size` (the official `gen_config` default is 128).
    pub max_batch_size: i64,
    /// Shard cap in bytes ([`DEFAULT_SHARD_CAP`], the converter's 32 MiB).
    pub shard_cap: u64,
    /// Used instead of the checkpoint's `generation_config.json` (sampling
    /// defaults such as `temperature`, `top_p`): a GGUF carries none.
    pub generation_config: Option<Value>,
}

impl ConvertOptions {
    /// Options for `quantization` with every other setting as the official tools default it.
    pub fn new(quantization: Quantization) -> ConvertOptions {
        ConvertOptions {
            quantization,
            conv_template: None,
            context_window_size: None,
            prefill_chunk_size: None,
            max_batch_size: 128,
            shard_cap: DEFAULT_SHARD_CAP,
            generation_config: None,
        }
    }
}

impl Default for ConvertOptions {
    /// q4f16_1, the quantization WebLLM's models use.
    fn default() -> ConvertOptions {
        ConvertOptions::new(Quantization::Q4F16_1)
    }
}

/// What a conversion wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvertSummary {
    /// The family (`model_type`).
    pub model_type: String,
    /// The quantization written.
    pub quantization: Quantization,
    /// The conversation template put in the config.
    pub conv_template: String,
    /// Tensor records written.
    pub tensors: usize,
    /// Shard files written.
    pub shards: usize,
    /// Bytes of tensor data (`ParamBytes`).
    pub param_bytes: u64,
    /// Parameters of the source model (the `BitsPerParam` denominator).
    pub source_parameters: u64,
    /// `BitsPerParam` of the index.
    pub bits_per_param: f64,
    /// Tokenizer files copied, as listed in the config.
    pub tokenizer_files: Vec<String>,
    /// Source tensors no parameter uses (the official converter warns about
    /// them and skips them too).
    pub ignored_tensors: Vec<String>,
}

/// How far a conversion is: `done` of `total` parameters written, the last
/// one `name` (a parameter is one tensor record, or a q4 pair of them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvertProgress<'a> {
    /// Parameters written so far.
    pub done: usize,
    /// Parameters the artifact will hold.
    pub total: usize,
    /// The parameter just written.
    pub name: &'a str,
}

/// Converts `checkpoint` into an artifact folder at `out` (which must not
/// exist, or be empty). Every check that can fail on the input — family,
/// config, tensor presence and shapes, template — runs before the first byte
/// is written; a later failure removes the partial output.
pub fn convert(
    checkpoint: &mut dyn Checkpoint,
    options: &ConvertOptions,
    out: &Path,
) -> Result<ConvertSummary, ConvertError> {
    convert_with_progress(checkpoint, options, out, &mut |_| {})
}

/// [`convert`], calling `progress` after each parameter is written (what
/// `mlc-wgpu convert` draws its progress bar from).
pub fn convert_with_progress(
    checkpoint: &mut dyn Checkpoint,
    options: &ConvertOptions,
    out: &Path,
    progress: &mut dyn FnMut(ConvertProgress<'_>),
) -> Result<ConvertSummary, ConvertError> {
    let hf_config = checkpoint.hf_config().clone();
    let family = Family::from_hf_config(&hf_config)?;
    if family == Family::Bert && options.quantization.group_size().is_some() {
        return Err(ConvertError::Unsupported {
            what: format!("{} for bert", options.quantization.name()),
            message:
                "the encoder runs unquantized weights: convert with q0f32 (what MLC publishes \
                      embedding models in) or q0f16"
                    .into(),
        });
    }
    // MLC itself writes -1 for a sliding-window Mistral's context; as an
    // override a non-positive window makes no sense.
    for (what, value) in [
        ("context_window_size", options.context_window_size),
        ("prefill_chunk_size", options.prefill_chunk_size),
    ] {
        if let Some(value) = value.filter(|&v| v <= 0) {
            return Err(ConvertError::Unsupported {
                what: format!("{what} {value}"),
                message: "window sizes must be positive".into(),
            });
        }
    }
    let overrides = Overrides {
        context_window_size: options.context_window_size,
        prefill_chunk_size: options.prefill_chunk_size,
        max_batch_size: options.max_batch_size,
    };
    let model_config = family.model_config(&hf_config, &overrides)?;
    let dims = Dims::from_model_config(&model_config)?;
    let mut params = families::params(family, &dims);

    // Shapes and presence, before writing anything.
    let names = checkpoint.tensor_names();
    if let Family::Qwen35 { .. } = family {
        families::qwen35_text_layout(&mut params, &names);
    }
    if family == Family::Ministral3 {
        families::ministral3_vlm_layout(&mut params, &hf_config, &names);
    }
    let (order, ignored_tensors) = families::emission_order(&params, &names)?;
    for param in &params {
        for (source, expected) in &param.sources {
            let actual = checkpoint.shape(source)?;
            if &actual != expected {
                return Err(ConvertError::Tensor {
                    name: source.clone(),
                    message: format!(
                        "has shape {actual:?}, but the config implies {expected:?} (for `{}`)",
                        param.name
                    ),
                });
            }
        }
    }
    // `BitsPerParam` counts every source tensor the loader reads, used or not,
    // except the ones declared unused.
    let mut source_parameters = 0u64;
    for name in names.iter().filter(|n| !families::is_declared_unused(n)) {
        source_parameters += checkpoint.shape(name)?.iter().map(|&d| d as u64).product::<u64>();
    }

    // Tokenizer files and the chat config, also before writing anything.
    let mut tokenizer_files = checkpoint.tokenizer_files()?;
    // The official list order first, then any other file the checkpoint made.
    tokenizer_files.sort_by_key(|(name, _)| {
        TOKENIZER_FILES.iter().position(|f| f == name).unwrap_or(TOKENIZER_FILES.len())
    });
    let parse = |name: &str| -> Result<Option<Value>, ConvertError> {
        match tokenizer_files.iter().find(|(n, _)| n == name) {
            None => Ok(None),
            Some((_, bytes)) => serde_json::from_slice(bytes).map(Some).map_err(|e| {
                ConvertError::Malformed { path: name.into(), message: format!("invalid JSON: {e}") }
            }),
        }
    };
    let tokenizer_json = parse("tokenizer.json")?;
    let tokenizer_config = parse("tokenizer_config.json")?;
    let template_name = match &options.conv_template {
        Some(name) => name.clone(),
        None => {
            let text = tokenizer_files
                .iter()
                .find(|(n, _)| n == "tokenizer.json")
                .map(|(_, b)| String::from_utf8_lossy(b).into_owned());
            family.default_conv_template(text.as_deref()).to_string()
        }
    };
    let config = chat_config::chat_config(&ChatConfigInput {
        family,
        quantization: options.quantization.name(),
        model_config: &model_config,
        hf_config: &hf_config,
        generation_config: options.generation_config.as_ref().or(checkpoint.generation_config()),
        conv_template: chat_config::conv_template(&template_name)?,
        tokenizer_files: tokenizer_files.iter().map(|(n, _)| n.clone()).collect(),
        tokenizer_json: tokenizer_json.as_ref(),
        tokenizer_config: tokenizer_config.as_ref(),
    });
    let config_text = chat_config::python_json(&config);

    let mut writer = ArtifactWriter::create(out, options.shard_cap)?;
    for (done, &i) in order.iter().enumerate() {
        write_param(checkpoint, &mut writer, &params[i], options.quantization)?;
        progress(ConvertProgress { done: done + 1, total: order.len(), name: &params[i].name });
    }
    for (name, bytes) in &tokenizer_files {
        writer.add_file(name, bytes)?;
    }
    writer.add_file(CONFIG_FILE, config_text.as_bytes())?;
    let index = writer.finish(source_parameters)?;
    let param_bytes =
        index.metadata.get("ParamBytes").and_then(Value::as_f64).unwrap_or(0.0) as u64;
    Ok(ConvertSummary {
        model_type: family.name().to_string(),
        quantization: options.quantization,
        conv_template: template_name,
        tensors: index.shards.iter().map(|s| s.records.len()).sum(),
        shards: index.shards.len(),
        param_bytes,
        source_parameters,
        bits_per_param: index.metadata.get("BitsPerParam").and_then(Value::as_f64).unwrap_or(0.0),
        tokenizer_files: tokenizer_files.into_iter().map(|(n, _)| n).collect(),
        ignored_tensors,
    })
}

/// Reads, fuses, converts and writes one parameter (one or two records).
fn write_param(
    checkpoint: &mut dyn Checkpoint,
    writer: &mut ArtifactWriter,
    param: &Param,
    quantization: Quantization,
) -> Result<(), ConvertError> {
    let shape = param.shape();
    let mut values = Vec::with_capacity(shape.iter().product());
    for (source, _) in &param.sources {
        let data = checkpoint.read_f32(source)?;
        let expected: usize = checkpoint.shape(source)?.iter().product();
        if data.len() != expected {
            return Err(ConvertError::Tensor {
                name: source.clone(),
                message: format!("read {} values for {expected} elements", data.len()),
            });
        }
        values.extend_from_slice(&data);
    }
    match param.kind {
        Kind::GemmaNorm => values.iter_mut().for_each(|v| *v += 1.0),
        Kind::InterleavedQkv { heads, .. } => values = families::deinterleave_qkv(&values, heads),
        Kind::Matrix | Kind::Vector | Kind::F32Vector => {}
    }
    let base = param.name.strip_suffix(".weight").unwrap_or(&param.name);
    let matrix = matches!(param.kind, Kind::Matrix | Kind::InterleavedQkv { matrix: true, .. });
    let quantized = matrix && quantization.group_size().is_some();
    if quantized {
        let (rows, k) = (shape[0], shape[1]);
        let (weights, scales, scale_dtype, words, groups) = match quantization.model_dtype() {
            DType::F16 => {
                let q = quantize::q4f16(&values, rows, k);
                (
                    quantize::u32_bytes(&q.q_weight),
                    quantize::f16_bytes(&q.q_scale),
                    DType::F16,
                    q.words_per_row,
                    q.groups_per_row,
                )
            }
            _ => {
                let q = quantize::q4f32(&values, rows, k);
                (
                    quantize::u32_bytes(&q.q_weight),
                    quantize::f32_bytes(&q.q_scale),
                    DType::F32,
                    q.words_per_row,
                    q.groups_per_row,
                )
            }
        };
        writer.add_tensor(&format!("{base}.q_weight"), &[rows, words], DType::U32, &weights)?;
        writer.add_tensor(&format!("{base}.q_scale"), &[rows, groups], scale_dtype, &scales)?;
    } else {
        match quantization.model_dtype() {
            DType::F16 if param.kind != Kind::F32Vector => {
                let half: Vec<f16> = quantize::to_f16(&values);
                writer.add_tensor(&param.name, &shape, DType::F16, &quantize::f16_bytes(&half))?;
            }
            _ => {
                writer.add_tensor(&param.name, &shape, DType::F32, &quantize::f32_bytes(&values))?
            }
        }
    }
    Ok(())
}
