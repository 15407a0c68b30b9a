//! The loader's error type.

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while opening an artifact or reading a tensor.
///
/// Every message names the file (path or URL) concerned, and the tensor or
/// field where there is one, so it can be shown to a user as it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Reading or writing a local file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// `mlc-chat-config.json` is not valid JSON, or a field has the wrong type.
    #[error("{file}: {message}")]
    Config {
        /// The config file.
        file: String,
        /// What is wrong, with the JSON path and line where known.
        message: String,
    },

    /// The tensor index (`tensor-cache.json` / `ndarray-cache.json`) is
    /// malformed or inconsistent.
    #[error("{file}: {message}")]
    Index {
        /// The index file.
        file: String,
        /// What is wrong, naming the shard or tensor.
        message: String,
    },

    /// The artifact uses a quantization this loader cannot decode.
    #[error("unsupported quantization `{name}` (supported: {})", supported.join(", "))]
    UnsupportedQuantization {
        /// The name found in the config.
        name: String,
        /// The names that are supported.
        supported: &'static [&'static str],
    },

    /// A file the artifact needs does not exist.
    #[error("{file}: no such file")]
    MissingFile {
        /// Path of the missing file.
        file: String,
    },

    /// A weight shard does not have the size the index gives it.
    #[error("{file}: {actual} bytes, but the index says {expected}")]
    ShardSize {
        /// The shard (path or URL).
        file: String,
        /// Size from the index.
        expected: u64,
        /// Size found.
        actual: u64,
    },

    /// A weight shard's md5 differs from the index's `md5sum`.
    #[error("{file}: md5 {actual} does not match the index ({expected})")]
    Md5Mismatch {
        /// The shard (path or URL).
        file: String,
        /// `md5sum` from the index.
        expected: String,
        /// md5 of the bytes found.
        actual: String,
    },

    /// No tensor of that name is in the index.
    #[error("no tensor named `{name}` in the weight index")]
    MissingTensor {
        /// The name asked for.
        name: String,
    },

    /// A tensor's bytes cannot be read as asked (wrong dtype for the
    /// conversion, or bytes inconsistent with the shape).
    #[error("tensor `{name}`: {message}")]
    InvalidTensor {
        /// The tensor.
        name: String,
        /// What is wrong.
        message: String,
    },

    /// A location that looks like a URL cannot be used.
    #[error("{url}: {message}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        message: String,
    },

    /// An HTTP request failed: an error status, or a transport error that
    /// persisted through the retries.
    #[error("{url}: {message}")]
    Http {
        /// The file's URL.
        url: String,
        /// The HTTP status, when the server answered.
        status: Option<u16>,
        /// What happened.
        message: String,
    },

    /// The cache's disk is too full: the shards still to download need more
    /// than is free (checked before downloading, `file` is `None`), or a
    /// write ran out of space (`ENOSPC`, a quota; `file` names it, `needed`
    /// is what that file still lacked). Nothing is left under a final name.
    #[error("{}", disk_full_message(folder, file.as_deref(), *needed, *available))]
    DiskFull {
        /// The cache folder (the artifact's).
        folder: PathBuf,
        /// The file being written when the disk filled up.
        file: Option<PathBuf>,
        /// Bytes still to download.
        needed: u64,
        /// Bytes free on the disk.
        available: u64,
    },

    /// A file is not in the cache and network access was turned off.
    #[error("{url}: not in the cache, and network access is turned off")]
    Offline {
        /// The file's URL.
        url: String,
    },
}

/// The text of [`LoadError::DiskFull`].
fn disk_full_message(folder: &Path, file: Option<&Path>, needed: u64, available: u64) -> String {
    let (needed, available) = (bytes_text(needed), bytes_text(available));
    match file {
        None => format!(
            "not enough disk space for the model cache in {}: {needed} still to download, {available} free",
            folder.display()
        ),
        Some(file) => format!(
            "disk full while writing {}: {needed} of it still to download, {available} free in {}",
            file.display(),
            folder.display()
        ),
    }
}

/// `n` bytes for a person: `1.5 GiB (1610612736 bytes)`.
pub(crate) fn bytes_text(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = None;
    for name in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = Some(name);
    }
    match unit {
        Some(unit) => format!("{value:.1} {unit} ({n} bytes)"),
        None => format!("{n} bytes"),
    }
}

impl LoadError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> LoadError {
        LoadError::Io { path: path.into(), source }
    }

    /// The error for alternatives `names` that are all absent; `first` locates the first.
    pub(crate) fn missing_all(first: &str, names: &[&str]) -> LoadError {
        let others = names.get(1..).unwrap_or_default().join(", ");
        let file = match others.is_empty() {
            true => first.to_string(),
            false => format!("{first} (nor {others})"),
        };
        LoadError::MissingFile { file }
    }
}
