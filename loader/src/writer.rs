//! Writes an artifact in exactly the format of MLC-LLM's converter
//! (docs/mlc-format.md, "Tensor index", "Shards"): weight shards cut by the
//! official sharding rule, the index as `tensor-cache.json` and an identical
//! `ndarray-cache.json`, and the other files (`mlc-chat-config.json`,
//! tokenizer files) as given.
//!
//! ```no_run
//! use mlc_loader::writer::{ArtifactWriter, DEFAULT_SHARD_CAP};
//! use mlc_loader::{CONFIG_FILE, DType};
//!
//! let mut writer = ArtifactWriter::create("out/model".as_ref(), DEFAULT_SHARD_CAP)?;
//! writer.add_tensor("model.norm.weight", &[2], DType::F16, &[0x00, 0x3c, 0x00, 0x3c])?;
//! writer.add_file(CONFIG_FILE, br#"{"model_type": "qwen2"}"#)?;
//! let index = writer.finish(2)?;
//! assert_eq!(index.shards.len(), 1);
//! # Ok::<(), mlc_loader::writer::WriteError>(())
//! ```

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use md5::{Digest, Md5};
use serde_json::{Value, json};

use crate::config::CONFIG_FILE;
use crate::index::element_count;
use crate::paths::check_relative_file;
use crate::{DType, NDARRAY_CACHE_FILE, ShardEntry, TENSOR_CACHE_FILE, TensorIndex, TensorRecord};

/// The converter's shard cap: 32 MiB (`shard_cap_mb=32` in TVM's `dump_tensor_cache`).
pub const DEFAULT_SHARD_CAP: u64 = 32 << 20;

/// The index copy the converter adds when float32 tensors were stored as bf16,
/// listing them as `bfloat16` / `raw` (docs/mlc-format.md, "Files").
pub const BF16_INDEX_FILE: &str = "tensor-cache-b16.json";

/// The record format MLC's converter writes on every record (docs/mlc-format.md,
/// "Record format and bf16").
const F32_TO_BF16: &str = "f32-to-bf16";
/// The shard format, the only one there is.
const RAW_SHARD: &str = "raw-shard";
/// Shard files are `params_shard_<N>.bin`.
const SHARD_PREFIX: &str = "params_shard_";

/// Why an artifact could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Creating, writing or renaming a file or folder failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The output folder exists and holds files: nothing is overwritten.
    #[error("{}: already exists and is not an empty folder", path.display())]
    Exists {
        /// The output folder.
        path: PathBuf,
    },
    /// A tensor cannot be stored as given.
    #[error("tensor `{name}`: {message}")]
    InvalidTensor {
        /// The tensor's name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// An extra file has a name the artifact cannot hold.
    #[error("file {name:?}: {message}")]
    InvalidFile {
        /// The file name asked for.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// [`ArtifactWriter::finish`] was called without the config.
    #[error("no `{CONFIG_FILE}` was added: an artifact needs one")]
    MissingConfig,
    /// [`ArtifactWriter::finish`] was given no source parameters to compute
    /// `BitsPerParam` from.
    #[error("the source model's parameter count must be positive to compute `BitsPerParam`")]
    NoSourceParameters,
}

impl WriteError {
    fn io(path: impl Into<PathBuf>, source: io::Error) -> WriteError {
        WriteError::Io { path: path.into(), source }
    }
}

/// Where the sharding rule puts one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Written at once as the only tensor of shard file number `file`; the
    /// open shard stays open (and so gets a later number).
    Alone {
        /// The shard's file number.
        file: usize,
    },
    /// Appended to the open shard at `offset`.
    Open {
        /// `Some(file)` when the open shard had to be closed first, as file
        /// number `file`; the tensor then starts a new one at offset 0.
        closed: Option<usize>,
        /// Where the tensor starts in the open shard.
        offset: u64,
    },
}

/// The converter's sharding rule (TVM `TensorCacheShardingManager`; docs/mlc-format.md,
/// "Shards")
/// over tensor sizes in emission order.
///
/// A tensor that would take the open shard to `cap` bytes or more closes it,
/// unless the tensor is at least `cap / 2` bytes: then it is written alone at
/// once and the open shard stays open. File numbers come from one counter in
/// the order files are written, so a big tensor's shard can take a smaller
/// number than tensors emitted before it.
#[derive(Clone, Debug)]
pub struct Sharder {
    cap: u64,
    open_bytes: u64,
    next_file: usize,
}

impl Sharder {
    /// A rule with shard cap `cap` bytes ([`DEFAULT_SHARD_CAP`] for the converter's).
    pub fn new(cap: u64) -> Sharder {
        Sharder { cap, open_bytes: 0, next_file: 0 }
    }

    /// Places the next tensor, of `nbytes` stored bytes.
    pub fn place(&mut self, nbytes: u64) -> Placement {
        if self.open_bytes.saturating_add(nbytes) >= self.cap {
            if nbytes.saturating_mul(2) >= self.cap {
                return Placement::Alone { file: self.take_file() };
            }
            let closed = self.close();
            self.open_bytes = nbytes;
            return Placement::Open { closed, offset: 0 };
        }
        let offset = self.open_bytes;
        self.open_bytes += nbytes;
        Placement::Open { closed: None, offset }
    }

    /// Closes the open shard after the last tensor: its file number, or `None`
    /// when it is empty (an empty shard is never written).
    pub fn finish(&mut self) -> Option<usize> {
        self.close()
    }

    fn close(&mut self) -> Option<usize> {
        (self.open_bytes != 0).then(|| {
            self.open_bytes = 0;
            self.take_file()
        })
    }

    fn take_file(&mut self) -> usize {
        self.next_file += 1;
        self.next_file - 1
    }
}

/// The shards [`Sharder`] makes of tensors of `sizes` bytes emitted in that
/// order: in file-number order, each shard's tensors as (position in `sizes`,
/// byte offset). Lets a caller check a layout before writing a byte.
pub fn plan_shards(sizes: &[u64], cap: u64) -> Vec<Vec<(usize, u64)>> {
    let mut sharder = Sharder::new(cap);
    let mut files = Vec::new();
    let mut open = Vec::new();
    for (position, &nbytes) in sizes.iter().enumerate() {
        match sharder.place(nbytes) {
            Placement::Alone { file } => put(&mut files, file, vec![(position, 0)]),
            Placement::Open { closed, offset } => {
                if let Some(file) = closed {
                    put(&mut files, file, std::mem::take(&mut open));
                }
                open.push((position, offset));
            }
        }
    }
    if let Some(file) = sharder.finish() {
        put(&mut files, file, open);
    }
    files
}

/// Stores `shard` as file number `file` (numbers are handed out in order, so
/// it is always the next one).
fn put<T>(files: &mut Vec<T>, file: usize, shard: T) {
    debug_assert_eq!(file, files.len(), "the sharder numbers files in the order they are written");
    files.push(shard);
}

/// The shard being filled: its bytes stay in memory until it is closed (at
/// most the cap, as in the converter).
#[derive(Default)]
struct OpenShard {
    bytes: Vec<u8>,
    records: Vec<TensorRecord>,
}

/// Writes an artifact folder, tensor by tensor.
///
/// Everything goes into a hidden sibling folder that is renamed to the
/// destination by [`ArtifactWriter::finish`]; dropping the writer before
/// that (an error, a panic) removes it, so a failure never leaves a
/// half-written artifact behind. Tensors are taken one at a time and only the
/// open shard is buffered, so a model is never held in memory at once.
pub struct ArtifactWriter {
    dir: PathBuf,
    staging: PathBuf,
    sharder: Sharder,
    open: OpenShard,
    shards: Vec<ShardEntry>,
    names: HashSet<String>,
    files: HashSet<String>,
    param_bytes: u64,
    bf16_encoded: bool,
    finished: bool,
}

impl ArtifactWriter {
    /// Starts writing the artifact folder `dir`, with shards cut at `shard_cap`
    /// bytes ([`DEFAULT_SHARD_CAP`] is the converter's).
    ///
    /// `dir` must not exist, or be an empty folder.
    pub fn create(dir: &Path, shard_cap: u64) -> Result<ArtifactWriter, WriteError> {
        check_destination(dir)?;
        let name = dir.file_name().ok_or_else(|| {
            WriteError::io(dir, io::Error::other("the destination has no folder name"))
        })?;
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        // Unique per process and per writer, so concurrent writers never share
        // a staging folder; one left by a dead process of the same id is stale.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let staging = parent.join(format!(".{}.partial-{unique}", name.to_string_lossy()));
        fs::remove_dir_all(&staging)
            .or_else(
                |error| if error.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(error) },
            )
            .map_err(|error| WriteError::io(&staging, error))?;
        fs::create_dir_all(&staging).map_err(|error| WriteError::io(&staging, error))?;
        Ok(ArtifactWriter {
            dir: dir.to_path_buf(),
            staging,
            sharder: Sharder::new(shard_cap),
            open: OpenShard::default(),
            shards: Vec::new(),
            names: HashSet::new(),
            files: HashSet::new(),
            param_bytes: 0,
            bf16_encoded: false,
            finished: false,
        })
    }

    /// Adds the next tensor in emission order: `bytes` are its little-endian
    /// row-major elements of `dtype`. Float32 is stored bf16-encoded with the
    /// converter's rounding (docs/mlc-format.md, "Record format and bf16"),
    /// every other dtype as it is.
    pub fn add_tensor(
        &mut self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        bytes: &[u8],
    ) -> Result<(), WriteError> {
        let invalid =
            |message: String| WriteError::InvalidTensor { name: name.to_string(), message };
        let count =
            element_count(shape).ok_or_else(|| invalid(format!("shape {shape:?} overflows")))?;
        // The converter silently drops a shard holding only empty tensors.
        if count == 0 {
            return Err(invalid(format!(
                "shape {shape:?} has no elements; the format cannot store it"
            )));
        }
        let expected = count.checked_mul(dtype.size_in_bytes());
        if expected != Some(bytes.len()) {
            return Err(invalid(format!(
                "{} bytes do not hold shape {shape:?} of {dtype}",
                bytes.len()
            )));
        }
        if self.names.contains(name) {
            return Err(invalid("is added twice".to_string()));
        }
        let stored: Cow<'_, [u8]> = match dtype {
            DType::F32 => {
                self.bf16_encoded = true;
                Cow::Owned(
                    bytes
                        .chunks_exact(4)
                        .flat_map(|b| {
                            f32_to_bf16(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).to_le_bytes()
                        })
                        .collect(),
                )
            }
            _ => Cow::Borrowed(bytes),
        };
        let nbytes = stored.len() as u64;
        let mut record = TensorRecord {
            name: name.to_string(),
            shape: shape.to_vec(),
            dtype,
            format: F32_TO_BF16.to_string(),
            nbytes,
            byte_offset: 0,
        };
        match self.sharder.place(nbytes) {
            Placement::Alone { file } => self.write_shard(file, &stored, vec![record])?,
            Placement::Open { closed, offset } => {
                if let Some(file) = closed {
                    let shard = std::mem::take(&mut self.open);
                    self.write_shard(file, &shard.bytes, shard.records)?;
                }
                record.byte_offset = offset;
                self.open.bytes.extend_from_slice(&stored);
                self.open.records.push(record);
            }
        }
        self.names.insert(name.to_string());
        // `ParamBytes` counts the decoded size, as the converter does.
        self.param_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Adds a file other than shards and index, e.g. `mlc-chat-config.json`
    /// (required) or a tokenizer file, written as given.
    pub fn add_file(&mut self, name: &str, contents: &[u8]) -> Result<(), WriteError> {
        let invalid = |message: &str| WriteError::InvalidFile {
            name: name.to_string(),
            message: message.to_string(),
        };
        check_relative_file(name).map_err(|message| invalid(&message))?;
        if [TENSOR_CACHE_FILE, NDARRAY_CACHE_FILE, BF16_INDEX_FILE].contains(&name)
            || name.starts_with(SHARD_PREFIX)
        {
            return Err(invalid("the writer makes this file itself"));
        }
        if !self.files.insert(name.to_string()) {
            return Err(invalid("is added twice"));
        }
        let path = self.staging.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|error| WriteError::io(parent, error))?;
        }
        fs::write(&path, contents).map_err(|error| WriteError::io(&path, error))
    }

    /// Writes the last shard and the index, then moves the artifact into place
    /// and returns its index.
    ///
    /// `source_parameters` is the parameter count of the unquantized source
    /// model: the index's `BitsPerParam` is `ParamBytes · 8 / source_parameters`.
    pub fn finish(mut self, source_parameters: u64) -> Result<TensorIndex, WriteError> {
        if !self.files.contains(CONFIG_FILE) {
            return Err(WriteError::MissingConfig);
        }
        if source_parameters == 0 {
            return Err(WriteError::NoSourceParameters);
        }
        if let Some(file) = self.sharder.finish() {
            let shard = std::mem::take(&mut self.open);
            self.write_shard(file, &shard.bytes, shard.records)?;
        }
        let param_bytes = self.param_bytes as f64;
        let metadata = json!({
            "ParamSize": self.names.len(),
            "ParamBytes": param_bytes,
            "BitsPerParam": param_bytes * 8.0 / source_parameters as f64,
        });
        let index = TensorIndex { shards: std::mem::take(&mut self.shards), metadata };
        let text = index_json(&index, false);
        for name in [TENSOR_CACHE_FILE, NDARRAY_CACHE_FILE] {
            self.write_staged(name, text.as_bytes())?;
        }
        if self.bf16_encoded {
            self.write_staged(BF16_INDEX_FILE, index_json(&index, true).as_bytes())?;
        }
        if let Ok(entries) = fs::read_dir(&self.dir) {
            // Checked empty at `create`; anything there now was put by someone else.
            if entries.count() != 0 {
                return Err(WriteError::Exists { path: self.dir.clone() });
            }
            fs::remove_dir(&self.dir).map_err(|error| WriteError::io(&self.dir, error))?;
        }
        fs::rename(&self.staging, &self.dir).map_err(|error| WriteError::io(&self.dir, error))?;
        self.finished = true;
        Ok(index)
    }

    /// Writes shard file number `file` and records it in the index.
    fn write_shard(
        &mut self,
        file: usize,
        bytes: &[u8],
        records: Vec<TensorRecord>,
    ) -> Result<(), WriteError> {
        let data_path = format!("{SHARD_PREFIX}{file}.bin");
        self.write_staged(&data_path, bytes)?;
        let md5sum = format!("{:x}", Md5::digest(bytes));
        let entry = ShardEntry {
            data_path,
            format: RAW_SHARD.to_string(),
            nbytes: bytes.len() as u64,
            md5sum: Some(md5sum),
            records,
        };
        put(&mut self.shards, file, entry);
        Ok(())
    }

    fn write_staged(&self, name: &str, bytes: &[u8]) -> Result<(), WriteError> {
        let path = self.staging.join(name);
        fs::write(&path, bytes).map_err(|error| WriteError::io(&path, error))
    }
}

impl Drop for ArtifactWriter {
    fn drop(&mut self) {
        if !self.finished {
            // Best effort: the error that got us here matters more than this one.
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}

/// Fails unless `dir` is absent or an empty folder.
fn check_destination(dir: &Path) -> Result<(), WriteError> {
    match fs::read_dir(dir).map(|mut entries| entries.next().is_none()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(WriteError::Exists { path: dir.to_path_buf() }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotADirectory => {
            Err(WriteError::Exists { path: dir.to_path_buf() })
        }
        Err(error) => Err(WriteError::io(dir, error)),
    }
}

/// The float32 → bf16 rounding of TVM's `_convert_f32_to_bf16`: to nearest
/// even below bf16's largest finite value in magnitude, truncation beyond it
/// (so huge values and attention-mask infinities clip instead of overflowing).
fn f32_to_bf16(bits: u32) -> u16 {
    let limit = f32::from_bits(0x7F7F_0000);
    let value = f32::from_bits(bits);
    let bias = if value < limit && value > -limit { 0x7FFF + ((bits >> 16) & 1) } else { 0 };
    ((bits + bias) >> 16) as u16
}

/// The index text exactly as the converter writes it: Python's
/// `json.dump(..., indent=4)` (ASCII only, no final newline). With `bf16`,
/// float32 records are listed as the `bfloat16` / `raw` data they are stored as.
fn index_json(index: &TensorIndex, bf16: bool) -> String {
    let shards: Vec<Value> = index
        .shards
        .iter()
        .map(|shard| {
            let records: Vec<Value> = shard
                .records
                .iter()
                .map(|record| {
                    let (dtype, format) = match (bf16, record.dtype) {
                        (true, DType::F32) => (DType::BF16.name(), "raw"),
                        _ => (record.dtype.name(), record.format.as_str()),
                    };
                    json!({
                        "name": record.name,
                        "shape": record.shape,
                        "dtype": dtype,
                        "format": format,
                        "nbytes": record.nbytes,
                        "byteOffset": record.byte_offset,
                    })
                })
                .collect();
            json!({
                "dataPath": shard.data_path,
                "format": shard.format,
                "nbytes": shard.nbytes,
                "records": records,
                "md5sum": shard.md5sum,
            })
        })
        .collect();
    let document = json!({ "metadata": index.metadata, "records": shards });
    let mut text = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut text, formatter);
    serde::Serialize::serialize(&document, &mut serializer)
        .expect("a JSON value always serializes");
    ascii_only(&String::from_utf8(text).expect("serde_json writes UTF-8"))
}

/// Escapes non-ASCII characters as `\uXXXX` (UTF-16 units), as Python's
/// `ensure_ascii` does. Outside strings JSON is ASCII, so the whole text can be
/// scanned.
fn ascii_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding_matches_the_converter() {
        // 1 + 2^-8 is a tie between 1.0 and the next bf16: even (1.0) wins.
        assert_eq!(f32_to_bf16(0x3F80_8000), 0x3F80);
        // Above the tie it rounds up; an odd mantissa's tie rounds up to even.
        assert_eq!(f32_to_bf16(0x3F80_8001), 0x3F81);
        assert_eq!(f32_to_bf16(0x3F81_8000), 0x3F82);
        assert_eq!(f32_to_bf16((-2.5f32).to_bits()), 0xC020);
        // f32::MAX and infinity truncate to the top of the range instead of overflowing.
        assert_eq!(f32_to_bf16(f32::MAX.to_bits()), 0x7F7F);
        assert_eq!(f32_to_bf16(f32::NEG_INFINITY.to_bits()), 0xFF80);
    }

    #[test]
    fn json_escapes_like_python() {
        assert_eq!(ascii_only("é\u{1F600}x"), "\\u00e9\\ud83d\\ude00x");
    }

    #[test]
    fn the_sharder_numbers_files_in_the_order_they_are_written() {
        let mut sharder = Sharder::new(100);
        assert_eq!(sharder.place(30), Placement::Open { closed: None, offset: 0 });
        assert_eq!(sharder.place(80), Placement::Alone { file: 0 });
        assert_eq!(sharder.place(69), Placement::Open { closed: None, offset: 30 });
        assert_eq!(sharder.place(1), Placement::Open { closed: Some(1), offset: 0 });
        assert_eq!(sharder.finish(), Some(2));
        assert_eq!(sharder.finish(), None);
    }
}
