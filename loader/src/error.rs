//! The loader's error type.

use std::io;
use std::path::PathBuf;

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

    /// A file is not in the cache and network access was turned off.
    #[error("{url}: not in the cache, and network access is turned off")]
    Offline {
        /// The file's URL.
        url: String,
    },
}

impl LoadError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> LoadError {
        LoadError::Io { path: path.into(), source }
    }

    /// True for an HTTP 404, which for optional files means "absent".
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, LoadError::Http { status: Some(404), .. })
    }
}
