//! GGUF (llama.cpp's format) as a [`Checkpoint`].
//!
//! - [`read_header`](crate::gguf::read_header) / [`parse_header_bytes`](crate::gguf::parse_header_bytes) parse and validate the header
//!   (versions 2 and 3, every metadata value type, tensor infos, alignment);
//!   `parse_header_bytes` is the fuzzing entry point.
//! - [`GgufFile`](crate::gguf::GgufFile) keeps the file open and reads one tensor at a time by
//!   seeking to it, dequantized by [`dequantize`](crate::gguf::dequantize) (F32, F16, BF16, Q4_0, Q4_1,
//!   Q5_0, Q5_1, Q8_0, Q2_K…Q6_K, Q8_K), in GGUF's own naming and layout.
//! - [`GgufCheckpoint`] presents a llama / qwen2 / qwen3 GGUF as a Hugging
//!   Face checkpoint: config from the metadata, HF tensor names, `[out, in]`
//!   shapes, llama's Q/K rows un-permuted, and a `tokenizer.json` rebuilt from
//!   the GGUF vocabulary. docs/gguf.md describes all of it.

mod dequant;
mod header;
mod hf;
mod tokenizer;
mod types;

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use dequant::dequantize;
pub use header::{
    DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufArray, GgufHeader, GgufValue, TensorInfo,
    parse_header_bytes, read_header,
};
pub use hf::{ARCHITECTURES, hf_tensor_name, unpermute_rows};
pub use tokenizer::{SUPPORTED_PRE, build_tokenizer_json};
pub use types::GgmlType;

use crate::{Checkpoint, ConvertError};

/// An open GGUF file: its parsed header, and its tensors read on demand.
/// Only the header is held in memory; the file handle stays open.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    file: File,
    header: GgufHeader,
}

impl GgufFile {
    /// Opens `path` and parses and validates its header (every tensor's data
    /// must lie inside the file).
    pub fn open(path: &Path) -> Result<GgufFile, ConvertError> {
        let io = |source| ConvertError::Io { path: path.to_path_buf(), source };
        let mut file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let header = read_header(&mut BufReader::new(&mut file), Some(len), path)?;
        Ok(GgufFile { path: path.to_path_buf(), file, header })
    }

    /// The parsed header.
    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored bytes of the tensor described by `info`.
    pub fn read_raw(&mut self, info: &TensorInfo) -> Result<Vec<u8>, ConvertError> {
        let io = |source| ConvertError::Io { path: self.path.clone(), source };
        // The header check guarantees that this sum does not overflow and lies in the file.
        let start = self.header.data_offset + info.offset;
        self.file.seek(SeekFrom::Start(start)).map_err(io)?;
        let len = usize::try_from(info.n_bytes).map_err(|_| ConvertError::Tensor {
            name: info.name.clone(),
            message: format!("{} bytes do not fit in memory on this platform", info.n_bytes),
        })?;
        let mut bytes = Vec::new();
        // `take` so that a file that shrank since it was opened gives a
        // truncation error rather than a huge zeroed buffer.
        let got = (&mut self.file).take(len as u64).read_to_end(&mut bytes).map_err(io)?;
        if got != len {
            return Err(ConvertError::Malformed {
                path: self.path.clone(),
                message: format!(
                    "GGUF: tensor `{}` truncated: {got} of {len} bytes at byte {start}",
                    info.name
                ),
            });
        }
        Ok(bytes)
    }

    /// Tensor `name` (a GGUF name) dequantized to float32, in GGUF order
    /// (innermost dimension contiguous, i.e. row-major over the reversed dims).
    pub fn read_f32(&mut self, name: &str) -> Result<Vec<f32>, ConvertError> {
        let info = self.header.tensor(name).cloned().ok_or_else(|| ConvertError::Tensor {
            name: name.to_string(),
            message: format!("not in {}", self.path.display()),
        })?;
        if !info.ggml_type.can_dequantize() {
            // Say so before reading (possibly) hundreds of megabytes.
            return dequantize(info.ggml_type, &[], name, &mut Vec::new()).map(|_| Vec::new());
        }
        let bytes = self.read_raw(&info)?;
        let mut out = Vec::new();
        dequantize(info.ggml_type, &bytes, name, &mut out)?;
        Ok(out)
    }
}

/// A llama / qwen2 / qwen3 GGUF file seen as a Hugging Face checkpoint.
#[derive(Debug)]
pub struct GgufCheckpoint {
    file: GgufFile,
    arch: String,
    config: Value,
    generation: Option<Value>,
    /// `(HF name, GGUF name)` in file order.
    names: Vec<(String, String)>,
}

impl GgufCheckpoint {
    /// Opens a GGUF file and maps it: fails with [`ConvertError::Unsupported`]
    /// for an architecture other than llama/qwen2/qwen3, a tensor with no
    /// Hugging Face counterpart, or a tensor type that cannot be dequantized,
    /// and with [`ConvertError::Malformed`] for a damaged file.
    pub fn open(path: &Path) -> Result<GgufCheckpoint, ConvertError> {
        let mut file = GgufFile::open(path)?;
        let header = file.header();
        let arch = header
            .get("general.architecture")
            .and_then(GgufValue::as_str)
            .ok_or_else(|| ConvertError::Unsupported {
                what: format!("{} without `general.architecture`", path.display()),
                message: "a GGUF model names its architecture".into(),
            })?
            .to_string();
        if !ARCHITECTURES.iter().any(|(a, _)| *a == arch) {
            return Err(ConvertError::Unsupported {
                what: format!("GGUF architecture \"{arch}\" ({})", path.display()),
                message: "supported: llama, qwen2, qwen3".into(),
            });
        }

        let mut names = Vec::new();
        for t in &header.tensors {
            if t.name == "rope_freqs.weight" {
                continue;
            }
            let hf = hf_tensor_name(&t.name).ok_or_else(|| ConvertError::Unsupported {
                what: format!("GGUF tensor `{}`", t.name),
                message: format!("it has no counterpart in a Hugging Face {arch} checkpoint"),
            })?;
            if !t.ggml_type.can_dequantize() {
                return Err(ConvertError::Unsupported {
                    what: format!("GGUF tensor type {} (tensor `{}`)", t.ggml_type, t.name),
                    message: "supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K".into(),
                });
            }
            names.push((hf, t.name.clone()));
        }

        let rope_scaling = rope_scaling(&mut file, &arch)?;
        let config = hf::hf_config(file.header(), &arch, rope_scaling)?;
        let generation = hf::generation_config(file.header());
        Ok(GgufCheckpoint { file, arch, config, generation, names })
    }

    /// The underlying file (header, raw tensors).
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    fn gguf_name(&self, name: &str) -> Result<&str, ConvertError> {
        self.names.iter().find(|(hf, _)| hf == name).map(|(_, g)| g.as_str()).ok_or_else(|| {
            ConvertError::Tensor {
                name: name.to_string(),
                message: format!("not in {}", self.file.path.display()),
            }
        })
    }
}

/// The `rope_scaling` entry: from `<arch>.rope.scaling.*` (linear, YaRN), or
/// recovered from llama.cpp's precomputed `rope_freqs.weight` (Llama 3).
fn rope_scaling(file: &mut GgufFile, arch: &str) -> Result<Option<Value>, ConvertError> {
    let header = file.header();
    let ty = header
        .get(&format!("{arch}.rope.scaling.type"))
        .and_then(GgufValue::as_str)
        .unwrap_or("none");
    let factor = header.get(&format!("{arch}.rope.scaling.factor")).and_then(GgufValue::as_f64);
    let original = header
        .get(&format!("{arch}.rope.scaling.original_context_length"))
        .and_then(GgufValue::as_u64);
    let scaling = match (ty, factor) {
        ("none", _) => None,
        ("linear", Some(f)) => {
            Some(serde_json::json!({"rope_type": "linear", "factor": hf::f32_decimal(f)}))
        }
        ("yarn", Some(f)) => {
            let mut v = serde_json::json!({"rope_type": "yarn", "factor": hf::f32_decimal(f)});
            if let Some(o) = original {
                v["original_max_position_embeddings"] = o.into();
            }
            Some(v)
        }
        (other, _) => {
            return Err(ConvertError::Unsupported {
                what: format!("RoPE scaling \"{other}\" (factor {factor:?})"),
                message: "supported: none, linear, yarn, and Llama 3's (rope_freqs.weight)".into(),
            });
        }
    };
    if header.tensor("rope_freqs.weight").is_none() {
        return Ok(scaling);
    }
    if scaling.is_some() {
        return Err(ConvertError::Unsupported {
            what: "rope_freqs.weight together with a rope.scaling type".into(),
            message: "one RoPE scaling rule at a time".into(),
        });
    }
    let heads = header
        .get(&format!("{arch}.attention.head_count"))
        .and_then(GgufValue::as_u64)
        .unwrap_or(0);
    let hidden =
        header.get(&format!("{arch}.embedding_length")).and_then(GgufValue::as_u64).unwrap_or(0);
    let head_dim = header
        .get(&format!("{arch}.attention.key_length"))
        .and_then(GgufValue::as_u64)
        .or_else(|| hidden.checked_div(heads))
        .unwrap_or(0) as usize;
    let theta = header
        .get(&format!("{arch}.rope.freq_base"))
        .and_then(GgufValue::as_f64)
        .unwrap_or(10000.0);
    let context = header.get(&format!("{arch}.context_length")).and_then(GgufValue::as_u64);
    let freqs = file.read_f32("rope_freqs.weight")?;
    hf::llama3_rope_scaling(&freqs, head_dim, theta, context).map(Some).ok_or_else(|| {
        ConvertError::Unsupported {
            what: "rope_freqs.weight".into(),
            message: "its frequency factors match no Llama 3 RoPE scaling parameters".into(),
        }
    })
}

impl Checkpoint for GgufCheckpoint {
    fn hf_config(&self) -> &Value {
        &self.config
    }

    fn generation_config(&self) -> Option<&Value> {
        self.generation.as_ref()
    }

    fn tensor_names(&self) -> Vec<String> {
        self.names.iter().map(|(hf, _)| hf.clone()).collect()
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>, ConvertError> {
        let gguf = self.gguf_name(name)?;
        let info = self.file.header.tensor(gguf).ok_or_else(|| ConvertError::Tensor {
            name: name.into(),
            message: "vanished".into(),
        })?;
        // GGUF lists dimensions innermost first; Hugging Face outermost first.
        info.dims.iter().rev().map(|&d| usize::try_from(d)).collect::<Result<_, _>>().map_err(
            |_| ConvertError::Tensor {
                name: name.into(),
                message: format!("dimensions {:?} do not fit this platform", info.dims),
            },
        )
    }

    fn read_f32(&mut self, name: &str) -> Result<Vec<f32>, ConvertError> {
        let gguf = self.gguf_name(name)?.to_string();
        let data = self.file.read_f32(&gguf)?;
        let Some(n_head) = hf::permutation_heads(&self.arch, &gguf, &self.config) else {
            return Ok(data);
        };
        let shape = self.shape(name)?;
        let rows = shape.first().copied().unwrap_or(0);
        let row_len = shape.get(1..).map(|s| s.iter().product()).unwrap_or(1);
        unpermute_rows(&data, rows, row_len, n_head, name)
    }

    fn tokenizer_files(&mut self) -> Result<Vec<(String, Vec<u8>)>, ConvertError> {
        Ok(vec![(
            "tokenizer.json".to_string(),
            build_tokenizer_json(&self.file.header, &self.file.path)?,
        )])
    }
}
