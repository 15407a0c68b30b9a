//! Text ↔ token ids through a Hugging Face `tokenizer.json`, called the way
//! WebLLM calls it (docs/chat.md, "What matches WebLLM exactly";
//! docs/mlc-format.md, "Tokenizer files").
//!
//! WebLLM (through tokenizers-cpp) wraps the same Rust `tokenizers` crate, so
//! with the same `tokenizer.json` and the same call conventions the ids and
//! texts are identical: `encode` adds no special tokens (BOS comes from the
//! template's `system_prefix_token_ids`) but still matches added tokens written
//! in the text, and `decode` keeps special tokens as text, which is what lets
//! stop strings such as `<|im_end|>` match.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a tokenizer could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The tokenizer file could not be read.
    #[error("cannot read tokenizer file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a tokenizer.json the `tokenizers` crate accepts.
    #[error("invalid tokenizer.json: {0}")]
    Parse(String),
    /// Encoding failed.
    #[error("cannot encode text: {0}")]
    Encode(String),
    /// Decoding failed.
    #[error("cannot decode token ids: {0}")]
    Decode(String),
}

/// A loaded `tokenizer.json`. Cloning is cheap (the tokenizer is shared).
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<tokenizers::Tokenizer>,
}

impl Tokenizer {
    /// Loads a `tokenizer.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Tokenizer, TokenizerError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|source| TokenizerError::Read { path: path.to_path_buf(), source })?;
        Tokenizer::from_bytes(&bytes)
    }

    /// Loads a `tokenizer.json` from its bytes (e.g. fetched or cached).
    pub fn from_bytes(bytes: &[u8]) -> Result<Tokenizer, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|error| TokenizerError::Parse(error.to_string()))?;
        Ok(Tokenizer { inner: Arc::new(inner) })
    }

    /// Token ids of `text`, without special tokens added around it; added and
    /// special tokens written literally in `text` are still single tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        // `encode_fast` skips offset tracking, which nothing here needs; the ids are the same.
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|error| TokenizerError::Encode(error.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of `text` with the special tokens the tokenizer's
    /// post-processor adds (BERT's `[CLS] … [SEP]`): how MLC's own server
    /// tokenizes an embedding input.
    pub fn encode_with_special_tokens(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode_fast(text, true)
            .map_err(|error| TokenizerError::Encode(error.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens included as their text; bytes that do
    /// not form valid UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner.decode(ids, false).map_err(|error| TokenizerError::Decode(error.to_string()))
    }

    /// The tokenizer as `tokenizer.json` text (what the grammar engine reads).
    pub fn to_json(&self) -> Result<String, TokenizerError> {
        self.inner.to_string(false).map_err(|error| TokenizerError::Parse(error.to_string()))
    }

    /// Number of tokens including added tokens (`len(hf_tokenizer)`, e.g.
    /// 151665 for Qwen2.5, whose model's vocab_size is padded to 151936).
    pub fn token_count(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token given by its vocabulary string (e.g. `<|im_end|>`).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer").field("token_count", &self.token_count()).finish()
    }
}
