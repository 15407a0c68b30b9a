//! Opening an artifact: config, index, tokenizer files and shards.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::config::CONFIG_FILE;
use crate::index::INDEX_FILES;
use crate::paths::check_relative_file;
use crate::progress::{FileProgress, ProgressCallback, Reporter};
use crate::source::Source;
use crate::{ChatConfig, LoadError, Quantization, Tensor, TensorIndex};

/// How [`Artifact::open`] finds, checks and reports files.
pub struct OpenOptions {
    /// Cache folder for URLs; `None` uses [`default_cache_dir`](crate::default_cache_dir).
    pub cache_dir: Option<PathBuf>,
    /// Check each shard's md5 when the index has one (default true).
    pub verify_md5: bool,
    /// Called with [`Progress`](crate::Progress) events.
    pub progress: Option<ProgressCallback>,
    /// When false, a URL whose files are not all cached fails with
    /// [`LoadError::Offline`] instead of downloading (default true).
    pub allow_network: bool,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions { cache_dir: None, verify_md5: true, progress: None, allow_network: true }
    }
}

impl fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenOptions")
            .field("cache_dir", &self.cache_dir)
            .field("verify_md5", &self.verify_md5)
            .field("progress", &self.progress.as_ref().map(|_| "callback"))
            .field("allow_network", &self.allow_network)
            .finish()
    }
}

/// An opened artifact: its config, its index and all weight bytes in memory.
pub struct Artifact {
    /// The parsed `mlc-chat-config.json`.
    pub config: ChatConfig,
    /// The parsed weight index.
    pub index: TensorIndex,
    quantization: Quantization,
    /// One buffer per entry of `index.shards`, in the same order.
    shards: Vec<Vec<u8>>,
    dir: PathBuf,
    source: String,
}

impl Artifact {
    /// Opens the artifact at `location`: a folder, or an http(s) URL (base URL
    /// per [`resolve_model_url`](crate::resolve_model_url), files downloaded
    /// into the cache, see [`default_cache_dir`](crate::default_cache_dir)).
    ///
    /// Reads `mlc-chat-config.json` and checks that its quantization is
    /// supported; reads `tensor-cache.json`, else `ndarray-cache.json`; makes
    /// every file of `tokenizer_files` available in [`Artifact::dir`]; then
    /// reads every shard into memory, checking its size and (when
    /// `verify_md5`) its md5. A folder is used in place, never copied.
    /// Tokenizer files are fetched before the shards so that a missing one
    /// fails the open before the large downloads.
    pub fn open(location: &str, mut options: OpenOptions) -> Result<Artifact, LoadError> {
        let mut source = Source::open(location, options.cache_dir.as_deref(), options.allow_network)?;
        let config_path = source.file(CONFIG_FILE, &mut FileProgress::silent())?;
        let config_file = config_path.display().to_string();
        let config = ChatConfig::parse(&read_text(&config_path)?, &config_file)?;
        let quantization = config.quantization()?;
        for name in &config.tokenizer_files {
            check_relative_file(name)
                .map_err(|message| LoadError::Config { file: config_file.clone(), message: format!("`tokenizer_files`: {message}") })?;
        }
        let index_path = source.first_file(&INDEX_FILES)?;
        let index = TensorIndex::parse(&read_text(&index_path)?, &index_path.display().to_string())?;

        let tokenizer_count = config.tokenizer_files.len();
        let mut reporter = Reporter::new(options.progress.take(), tokenizer_count + index.shards.len());
        for (position, name) in config.tokenizer_files.iter().enumerate() {
            source.file(name, &mut reporter.file(position, name))?;
        }
        let mut shards = Vec::with_capacity(index.shards.len());
        for (position, entry) in index.shards.iter().enumerate() {
            let mut progress = reporter.file(tokenizer_count + position, &entry.data_path);
            shards.push(source.shard(entry, options.verify_md5, &mut progress)?);
        }
        Ok(Artifact { config, index, quantization, shards, dir: source.dir().to_path_buf(), source: source.name() })
    }

    /// The tensor `name`, decoded (see [`Tensor`]).
    pub fn tensor(&self, name: &str) -> Result<Tensor<'_>, LoadError> {
        let (shard, record) = self.index.find(name).ok_or_else(|| LoadError::MissingTensor { name: name.to_string() })?;
        // The index was checked against the shard sizes at open, but its
        // fields are public: stay total rather than trust them.
        let stored = self.shards.get(shard).and_then(|bytes| {
            let start = usize::try_from(record.byte_offset).ok()?;
            let end = start.checked_add(usize::try_from(record.nbytes).ok()?)?;
            bytes.get(start..end)
        });
        match stored {
            Some(stored) => Ok(Tensor::decode(record, stored)),
            None => Err(LoadError::InvalidTensor { name: name.to_string(), message: "its bytes lie outside its shard".to_string() }),
        }
    }

    /// Whether the index has a tensor named `name`.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.index.find(name).is_some()
    }

    /// The folder holding the artifact's files (the cache folder for a URL);
    /// the tokenizer files are read from here.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What was opened: the folder path, or the resolved base URL.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The artifact's quantization.
    pub fn quantization(&self) -> Quantization {
        self.quantization
    }
}

impl fmt::Debug for Artifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Artifact")
            .field("source", &self.source)
            .field("dir", &self.dir)
            .field("model_type", &self.config.model_type)
            .field("quantization", &self.quantization)
            .field("tensors", &self.index.names().count())
            .field("bytes", &self.index.total_bytes())
            .finish_non_exhaustive()
    }
}

fn read_text(path: &Path) -> Result<String, LoadError> {
    fs::read_to_string(path).map_err(|error| LoadError::io(path, error))
}
