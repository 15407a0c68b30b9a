//! Opening an artifact: config, index, tokenizer files and shards, from a
//! folder, a URL, or files a browser already holds in memory.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::config::CONFIG_FILE;
use crate::index::INDEX_FILES;
use crate::metadata::{check_alone, check_tokenizer_file};
use crate::paths::check_relative_file;
use crate::progress::{FileProgress, ProgressCallback, Reporter};
use crate::source::Source;
use crate::{ChatConfig, LoadError, Quantization, Tensor, TensorIndex, shard};

/// What [`Artifact::source`] says for an artifact built by [`Artifact::from_files`].
pub const MEMORY_SOURCE: &str = "memory";

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
    files: Files,
    source: String,
}

/// Where the artifact's other files (the tokenizer's) are read from.
enum Files {
    /// The artifact's folder (the cache folder for a URL).
    Dir(PathBuf),
    /// The files handed to [`Artifact::from_files`], shards taken out.
    Memory(HashMap<String, Vec<u8>>),
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
    /// fails the open before the large downloads, and the shards still to
    /// download are compared with the cache disk's free space first
    /// ([`LoadError::DiskFull`]).
    ///
    /// The config, the index and the tokenizer files are checked before they
    /// enter the cache under their final names (each parses as what it is,
    /// the tokenizer's ids fit the config's `vocab_size`), and again each
    /// time they are read from it. They are cached for good, but when a
    /// cached one fails its check, names a file the server does not have, or
    /// a freshly downloaded shard fails its size or md5 check (online), the
    /// config and the index (and the failing file) are fetched again once:
    /// if any changed upstream, the cache folder is emptied of
    /// everything the new index does not name as a shard (tokenizer files,
    /// partial downloads, old shards), the new metadata replaces the old, and
    /// the open starts over, checking every cached shard against the new
    /// index. Old and new files are never mixed into one artifact.
    pub fn open(location: &str, mut options: OpenOptions) -> Result<Artifact, LoadError> {
        let mut source =
            Source::open(location, options.cache_dir.as_deref(), options.allow_network)?;
        let mut callback = options.progress.take();
        match Artifact::open_from(&mut source, &options, callback.as_mut()) {
            // A fresh download that contradicts the cached index may mean the
            // artifact changed upstream since the index was cached: when a
            // fresh copy of the metadata differs, start over with it (once).
            Err(error) if source.refresh_if_updated(&error)? => {
                Artifact::open_from(&mut source, &options, callback.as_mut())
            }
            result => result,
        }
    }

    /// One pass of [`Artifact::open`] over the metadata `source` holds now.
    fn open_from(
        source: &mut Source,
        options: &OpenOptions,
        callback: Option<&mut ProgressCallback>,
    ) -> Result<Artifact, LoadError> {
        let check_config = |bytes: &[u8], file: &str| check_alone(CONFIG_FILE, bytes, file);
        let config_path = source.file(CONFIG_FILE, &check_config, &mut FileProgress::silent())?;
        let config_file = config_path.display().to_string();
        let config = ChatConfig::parse(&read_text(&config_path)?, &config_file)?;
        let quantization = config.quantization()?;
        for name in &config.tokenizer_files {
            check_relative_file(name).map_err(|message| LoadError::Config {
                file: config_file.clone(),
                message: format!("`tokenizer_files`: {message}"),
            })?;
        }
        // Both index names parse alike.
        let check_index = |bytes: &[u8], file: &str| check_alone(INDEX_FILES[0], bytes, file);
        let index_path = source.first_file(&INDEX_FILES, &check_index)?;
        let index =
            TensorIndex::parse(&read_text(&index_path)?, &index_path.display().to_string())?;
        // Before any shard download: a disk that cannot hold them fails now, not midway.
        source.check_free_space(&index)?;

        let tokenizer_count = config.tokenizer_files.len();
        let mut reporter = Reporter::new(callback, tokenizer_count + index.shards.len());
        for (position, name) in config.tokenizer_files.iter().enumerate() {
            let check = |bytes: &[u8], file: &str| check_tokenizer_file(&config, name, bytes, file);
            source.file(name, &check, &mut reporter.file(position, name))?;
        }
        let mut shards = Vec::with_capacity(index.shards.len());
        let mut local = source.read_local_shards(&index.shards, options.verify_md5);
        for (position, entry) in index.shards.iter().enumerate() {
            let mut progress = reporter.file(tokenizer_count + position, &entry.data_path);
            shards.push(match local.as_mut().and_then(Iterator::next) {
                Some(read) => {
                    let (bytes, digest) = read?;
                    let file = source.dir().join(&entry.data_path).display().to_string();
                    shard::check(&file, entry, &bytes, digest.as_deref(), &mut progress)?;
                    bytes
                }
                None => source.shard(entry, options.verify_md5, &mut progress)?,
            });
        }
        Ok(Artifact {
            config,
            index,
            quantization,
            shards,
            files: Files::Dir(source.dir().to_path_buf()),
            source: source.name(),
        })
    }

    /// Builds an artifact from files already in memory, keyed by their names in
    /// the artifact — what a browser fetched and cached: `mlc-chat-config.json`,
    /// `tensor-cache.json` (else `ndarray-cache.json`), every shard the index
    /// lists, and the tokenizer files, which stay readable through
    /// [`Artifact::file`]. Shards are checked as [`Artifact::open`] checks them
    /// (size, and md5 when `options.verify_md5`) and moved, not copied.
    ///
    /// Unlike `open`, the files of `tokenizer_files` are not required (WebLLM
    /// fetches only `tokenizer.json`); `cache_dir` and `allow_network` do not
    /// apply; progress events number the shards only.
    pub fn from_files(
        mut files: HashMap<String, Vec<u8>>,
        mut options: OpenOptions,
    ) -> Result<Artifact, LoadError> {
        let config = ChatConfig::parse(&memory_text(&files, CONFIG_FILE)?, CONFIG_FILE)?;
        let quantization = config.quantization()?;
        let index_file = INDEX_FILES
            .into_iter()
            .find(|name| files.contains_key(*name))
            .ok_or_else(|| LoadError::missing_all(INDEX_FILES[0], &INDEX_FILES))?;
        let index = TensorIndex::parse(&memory_text(&files, index_file)?, index_file)?;
        let mut callback = options.progress.take();
        let mut reporter = Reporter::new(callback.as_mut(), index.shards.len());
        let mut shards = Vec::with_capacity(index.shards.len());
        for (position, entry) in index.shards.iter().enumerate() {
            let name = &entry.data_path;
            let bytes =
                files.remove(name).ok_or_else(|| LoadError::MissingFile { file: name.clone() })?;
            shard::verify(
                name,
                entry,
                &bytes,
                options.verify_md5,
                &mut reporter.file(position, name),
            )?;
            shards.push(bytes);
        }
        Ok(Artifact {
            config,
            index,
            quantization,
            shards,
            files: Files::Memory(files),
            source: MEMORY_SOURCE.to_string(),
        })
    }

    /// The tensor `name`, decoded (see [`Tensor`]).
    pub fn tensor(&self, name: &str) -> Result<Tensor<'_>, LoadError> {
        let (shard, record) = self
            .index
            .find(name)
            .ok_or_else(|| LoadError::MissingTensor { name: name.to_string() })?;
        // The index was checked against the shard sizes at open, but its
        // fields are public: stay total rather than trust them.
        let stored = self.shards.get(shard).and_then(|bytes| {
            let start = usize::try_from(record.byte_offset).ok()?;
            let end = start.checked_add(usize::try_from(record.nbytes).ok()?)?;
            bytes.get(start..end)
        });
        match stored {
            Some(stored) => Ok(Tensor::decode(record, stored)),
            None => Err(LoadError::InvalidTensor {
                name: name.to_string(),
                message: "its bytes lie outside its shard".to_string(),
            }),
        }
    }

    /// Whether the index has a tensor named `name`.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.index.find(name).is_some()
    }

    /// The folder holding the artifact's files (the cache folder for a URL);
    /// `None` for an artifact built [`from_files`](Artifact::from_files).
    pub fn dir(&self) -> Option<&Path> {
        match &self.files {
            Files::Dir(dir) => Some(dir),
            Files::Memory(_) => None,
        }
    }

    /// The bytes of the artifact's file `name` other than a shard (e.g.
    /// `tokenizer.json`): read from [`Artifact::dir`], or taken from the files
    /// handed to [`Artifact::from_files`].
    pub fn file(&self, name: &str) -> Result<Cow<'_, [u8]>, LoadError> {
        let missing = |file: String| LoadError::MissingFile { file };
        match &self.files {
            Files::Dir(dir) => {
                let path = dir.join(name);
                // A name leaving the folder is not one of its files.
                check_relative_file(name).map_err(|_| missing(path.display().to_string()))?;
                fs::read(&path).map(Cow::Owned).map_err(|error| match error.kind() {
                    ErrorKind::NotFound => missing(path.display().to_string()),
                    _ => LoadError::io(&path, error),
                })
            }
            Files::Memory(files) => files
                .get(name)
                .map(|bytes| Cow::Borrowed(bytes.as_slice()))
                .ok_or_else(|| missing(name.to_string())),
        }
    }

    /// What was opened: the folder path, the resolved base URL, or
    /// [`MEMORY_SOURCE`].
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
            .field("dir", &self.dir())
            .field("model_type", &self.config.model_type)
            .field("quantization", &self.quantization)
            .field("tensors", &self.index.names().count())
            .field("bytes", &self.index.total_bytes())
            .finish_non_exhaustive()
    }
}

/// The UTF-8 text of in-memory file `name`.
fn memory_text(files: &HashMap<String, Vec<u8>>, name: &str) -> Result<String, LoadError> {
    let bytes = files.get(name).ok_or_else(|| LoadError::MissingFile { file: name.to_string() })?;
    String::from_utf8(bytes.clone())
        .map_err(|error| LoadError::io(name, std::io::Error::new(ErrorKind::InvalidData, error)))
}

fn read_text(path: &Path) -> Result<String, LoadError> {
    fs::read_to_string(path).map_err(|error| LoadError::io(path, error))
}
