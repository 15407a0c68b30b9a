//! A Hugging Face model folder (`config.json` + safetensors) as a
//! [`Checkpoint`].
//!
//! The safetensors format is an 8-byte little-endian header length, a JSON
//! header naming each tensor's dtype, shape and byte range, then the data.
//! Only the header is read when the folder is opened; each tensor is read
//! later by seeking to its range, so converting a model never holds more
//! than one (fused) parameter in memory. The `safetensors` crate only parses
//! a buffer holding the whole file, which would mean mapping or reading
//! gigabytes; the header is simple enough to validate here instead.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use serde_json::Value;

use crate::{Checkpoint, ConvertError};

/// The single-file weights of a Hugging Face folder.
const SINGLE_FILE: &str = "model.safetensors";
/// The index of a sharded (or, as MLC's converter writes it, single-file) checkpoint.
const INDEX_FILE: &str = "model.safetensors.index.json";
/// Headers larger than this are refused: real ones are a few hundred KiB, and
/// the length comes from the file, so it must not drive an allocation unchecked.
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// The tokenizer files MLC's `gen_config` copies, in its order (`TOKENIZER_FILES`).
/// `special_tokens_map.json` is not among them: the official converter only
/// writes it when it converts a tiktoken tokenizer.
pub const TOKENIZER_FILES: [&str; 6] = [
    "tokenizer.model",
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "tokenizer_config.json",
];

/// Element types a source tensor may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SourceDType {
    Bf16,
    F16,
    F32,
}

impl SourceDType {
    fn parse(name: &str) -> Option<SourceDType> {
        match name {
            "BF16" => Some(SourceDType::Bf16),
            "F16" => Some(SourceDType::F16),
            "F32" => Some(SourceDType::F32),
            _ => None,
        }
    }

    fn size(self) -> usize {
        match self {
            SourceDType::Bf16 | SourceDType::F16 => 2,
            SourceDType::F32 => 4,
        }
    }
}

/// Where one tensor lives.
#[derive(Clone, Debug)]
struct Entry {
    /// Index into [`HfFolder::files`].
    file: usize,
    /// `Err(dtype name)` for a dtype this converter cannot widen to f32; the
    /// tensor may still be one the family never reads.
    dtype: Result<SourceDType, String>,
    shape: Vec<usize>,
    /// Absolute byte offset of the data in the file.
    start: u64,
    nbytes: u64,
}

/// A Hugging Face model folder: `config.json`, optional
/// `generation_config.json`, `model.safetensors` or shards listed by
/// `model.safetensors.index.json`, and tokenizer files.
pub struct HfFolder {
    dir: PathBuf,
    config: Value,
    generation_config: Option<Value>,
    files: Vec<PathBuf>,
    /// Tensor names in the official converter's loading order.
    order: Vec<String>,
    entries: HashMap<String, Entry>,
}

impl std::fmt::Debug for HfFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfFolder")
            .field("dir", &self.dir)
            .field("files", &self.files)
            .field("tensors", &self.order.len())
            .finish()
    }
}

impl HfFolder {
    /// Opens the folder `dir`: reads the configs and every safetensors header,
    /// and checks that each tensor's byte range lies inside its file (a
    /// truncated download fails here, before anything is written).
    pub fn open(dir: &Path) -> Result<HfFolder, ConvertError> {
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(ConvertError::Malformed {
                path: config_path,
                message: "not found: a Hugging Face model folder must hold config.json".into(),
            });
        }
        let config = read_json(&config_path)?;
        if !config.is_object() {
            return Err(ConvertError::Malformed {
                path: config_path,
                message: "is not a JSON object".into(),
            });
        }
        let generation_path = dir.join("generation_config.json");
        let generation_config =
            if generation_path.is_file() { Some(read_json(&generation_path)?) } else { None };

        // MLC's converter prefers the index when there is one (and writes one
        // for a lone model.safetensors, with the keys in sorted order).
        let index_path = dir.join(INDEX_FILE);
        let single_path = dir.join(SINGLE_FILE);
        let mut files: Vec<PathBuf> = Vec::new();
        let mut entries = HashMap::new();
        let mut order = Vec::new();
        if index_path.is_file() {
            let index = read_json(&index_path)?;
            let map = index.get("weight_map").and_then(Value::as_object).ok_or_else(|| {
                ConvertError::Malformed {
                    path: index_path.clone(),
                    message: "has no `weight_map` object".into(),
                }
            })?;
            // The loader groups tensors by file, files in order of first
            // appearance, tensors in index order within a file.
            let mut by_file: Vec<(String, Vec<String>)> = Vec::new();
            for (name, file) in map {
                let file = file.as_str().ok_or_else(|| ConvertError::Malformed {
                    path: index_path.clone(),
                    message: format!("weight_map[{name:?}] is not a file name"),
                })?;
                if file.contains('/') || file.contains('\\') || file == ".." {
                    return Err(ConvertError::Malformed {
                        path: index_path.clone(),
                        message: format!(
                            "weight_map[{name:?}] = {file:?} is not a file of this folder"
                        ),
                    });
                }
                match by_file.iter_mut().find(|(f, _)| f == file) {
                    Some((_, names)) => names.push(name.clone()),
                    None => by_file.push((file.to_string(), vec![name.clone()])),
                }
            }
            for (file, names) in by_file {
                let path = dir.join(&file);
                let header = read_header(&path, files.len())?;
                for name in names {
                    let entry =
                        header.get(&name).cloned().ok_or_else(|| ConvertError::Malformed {
                            path: path.clone(),
                            message: format!(
                                "holds no tensor `{name}`, which {INDEX_FILE} places there"
                            ),
                        })?;
                    entries.insert(name.clone(), entry);
                    order.push(name);
                }
                files.push(path);
            }
        } else if single_path.is_file() {
            let header = read_header(&single_path, 0)?;
            // A BTreeMap: sorted by name, as the official converter lists them.
            for (name, entry) in header {
                entries.insert(name.clone(), entry);
                order.push(name);
            }
            files.push(single_path);
        } else {
            return Err(ConvertError::Malformed {
                path: dir.to_path_buf(),
                message: format!("holds neither {SINGLE_FILE} nor {INDEX_FILE}"),
            });
        }
        Ok(HfFolder { dir: dir.to_path_buf(), config, generation_config, files, order, entries })
    }

    /// The folder this checkpoint was opened from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, name: &str) -> Result<&Entry, ConvertError> {
        self.entries.get(name).ok_or_else(|| ConvertError::Tensor {
            name: name.to_string(),
            message: "is not in the checkpoint".into(),
        })
    }
}

impl Checkpoint for HfFolder {
    fn hf_config(&self) -> &Value {
        &self.config
    }

    fn generation_config(&self) -> Option<&Value> {
        self.generation_config.as_ref()
    }

    fn tensor_names(&self) -> Vec<String> {
        self.order.clone()
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>, ConvertError> {
        Ok(self.entry(name)?.shape.clone())
    }

    fn read_f32(&mut self, name: &str) -> Result<Vec<f32>, ConvertError> {
        let entry = self.entry(name)?.clone();
        let path = &self.files[entry.file];
        let dtype = entry.dtype.map_err(|dtype| ConvertError::Unsupported {
            what: format!("dtype {dtype} of tensor `{name}` in {}", path.display()),
            message: "source tensors must be BF16, F16 or F32".into(),
        })?;
        let io = |source| ConvertError::Io { path: path.clone(), source };
        let mut file = File::open(path).map_err(io)?;
        file.seek(SeekFrom::Start(entry.start)).map_err(io)?;
        let mut bytes = vec![0u8; entry.nbytes as usize];
        file.read_exact(&mut bytes).map_err(io)?;
        // Widening from bf16 and f16 is exact.
        Ok(match dtype {
            SourceDType::Bf16 => {
                bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            SourceDType::F16 => {
                bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            SourceDType::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        })
    }

    fn tokenizer_files(&mut self) -> Result<Vec<(String, Vec<u8>)>, ConvertError> {
        let mut out = Vec::new();
        for name in TOKENIZER_FILES {
            let path = self.dir.join(name);
            if path.is_file() {
                let bytes = std::fs::read(&path)
                    .map_err(|source| ConvertError::Io { path: path.clone(), source })?;
                out.push((name.to_string(), bytes));
            }
        }
        Ok(out)
    }
}

fn read_json(path: &Path) -> Result<Value, ConvertError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConvertError::Io { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text).map_err(|e| ConvertError::Malformed {
        path: path.to_path_buf(),
        message: format!("invalid JSON: {e}"),
    })
}

/// Reads and validates the header of the safetensors file `path` (file number
/// `file`): every tensor, sorted by name.
fn read_header(path: &Path, file: usize) -> Result<BTreeMap<String, Entry>, ConvertError> {
    let io = |source| ConvertError::Io { path: path.to_path_buf(), source };
    let malformed = |message: String| ConvertError::Malformed { path: path.to_path_buf(), message };
    let mut handle = File::open(path).map_err(io)?;
    let file_len = handle.metadata().map_err(io)?.len();
    let mut len_bytes = [0u8; 8];
    if file_len < 8 {
        return Err(malformed(format!(
            "is {file_len} bytes long: too short for a safetensors header"
        )));
    }
    handle.read_exact(&mut len_bytes).map_err(io)?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES || 8 + header_len > file_len {
        return Err(malformed(format!(
            "header length {header_len} does not fit in the file ({file_len} bytes): truncated or not safetensors"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    handle.read_exact(&mut header).map_err(io)?;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&header)
        .map_err(|e| malformed(format!("header is not a JSON object: {e}")))?;
    let data_start = 8 + header_len;
    let data_len = file_len - data_start;
    let mut entries = BTreeMap::new();
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let bad = |what: &str| malformed(format!("tensor `{name}`: {what}"));
        let dtype_name =
            info.get("dtype").and_then(Value::as_str).ok_or_else(|| bad("no dtype"))?;
        let shape: Vec<usize> = info
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|dims| {
                dims.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect()
            })
            .ok_or_else(|| bad("shape is not a list of sizes"))?;
        let offsets: Vec<u64> = info
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|o| o.iter().map(Value::as_u64).collect())
            .filter(|o: &Vec<u64>| o.len() == 2)
            .ok_or_else(|| bad("data_offsets is not [begin, end]"))?;
        let (begin, end) = (offsets[0], offsets[1]);
        if begin > end || end > data_len {
            return Err(bad(&format!(
                "bytes {begin}..{end} lie outside the {data_len} data bytes of the file: truncated?"
            )));
        }
        let dtype = SourceDType::parse(dtype_name).ok_or_else(|| dtype_name.to_string());
        if let Ok(dtype) = dtype {
            let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
            let expected = count.and_then(|c| c.checked_mul(dtype.size()));
            if expected != Some((end - begin) as usize) {
                return Err(bad(&format!(
                    "{} bytes do not hold shape {shape:?} of {dtype_name}",
                    end - begin
                )));
            }
        }
        entries.insert(
            name,
            Entry { file, dtype, shape, start: data_start + begin, nbytes: end - begin },
        );
    }
    Ok(entries)
}
