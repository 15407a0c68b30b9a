//! Why a conversion failed.

use std::path::PathBuf;

/// Why a checkpoint could not be converted. Every variant names the file or
/// tensor concerned; a failed conversion leaves no artifact behind.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// Reading a source file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A source file is not what its format says it should be.
    #[error("{}: {message}", path.display())]
    Malformed {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong, and where in the file.
        message: String,
    },
    /// The source holds something this converter does not handle
    /// (an architecture, a tensor type, a quantization).
    #[error("{what} is not supported: {message}")]
    Unsupported {
        /// The unsupported thing, e.g. `model_type "mamba"`.
        what: String,
        /// What is supported instead.
        message: String,
    },
    /// A tensor is missing or its shape disagrees with the config.
    #[error("tensor `{name}`: {message}")]
    Tensor {
        /// The tensor's (source) name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// Writing the artifact failed.
    #[error(transparent)]
    Write(#[from] mlc_loader::writer::WriteError),
}
