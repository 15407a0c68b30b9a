//! Where an artifact's files come from: a local folder, used in place, or an
//! http(s) URL, downloaded through the disk cache.

use std::path::{Path, PathBuf};

use crate::download::Remote;
use crate::local_shards::LocalShards;
use crate::location::is_url;
use crate::metadata::Check;
use crate::progress::FileProgress;
use crate::{LoadError, ShardEntry, TensorIndex, shard};

/// The origin of an artifact's files.
pub(crate) enum Source {
    /// A folder holding the artifact.
    Local(PathBuf),
    /// A base URL and its cache folder (none in a build without downloads).
    Remote(Remote),
}

impl Source {
    /// The source for `location`: a URL when it starts with `http(s)://`, else a folder.
    pub(crate) fn open(
        location: &str,
        cache_dir: Option<&Path>,
        allow_network: bool,
    ) -> Result<Source, LoadError> {
        if !is_url(location) {
            return Ok(Source::Local(PathBuf::from(location)));
        }
        Remote::new(location, cache_dir, allow_network).map(Source::Remote)
    }

    /// What was opened: the folder path or the resolved base URL.
    pub(crate) fn name(&self) -> String {
        match self {
            Source::Local(dir) => dir.display().to_string(),
            Source::Remote(remote) => remote.base_url().to_string(),
        }
    }

    /// The folder that holds the files.
    pub(crate) fn dir(&self) -> &Path {
        match self {
            Source::Local(dir) => dir,
            Source::Remote(remote) => remote.dir(),
        }
    }

    /// Makes file `name` available on disk, checked by `check` (a download
    /// before it enters the cache), and returns its path.
    pub(crate) fn file(
        &mut self,
        name: &str,
        check: Check<'_>,
        progress: &mut FileProgress<'_>,
    ) -> Result<PathBuf, LoadError> {
        match self {
            Source::Local(dir) => {
                let path = dir.join(name);
                match path.is_file() {
                    true => check_local(&path, check).map(|()| path),
                    false => Err(LoadError::MissingFile { file: path.display().to_string() }),
                }
            }
            Source::Remote(remote) => remote.file(name, check, progress),
        }
    }

    /// The path of the first of `names` that exists, checked by `check`.
    pub(crate) fn first_file(
        &mut self,
        names: &[&str],
        check: Check<'_>,
    ) -> Result<PathBuf, LoadError> {
        match self {
            Source::Local(dir) => {
                let path = names
                    .iter()
                    .map(|name| dir.join(name))
                    .find(|path| path.is_file())
                    .ok_or_else(|| {
                        LoadError::missing_all(&dir.join(names[0]).display().to_string(), names)
                    })?;
                check_local(&path, check).map(|()| path)
            }
            Source::Remote(remote) => remote.first_file(names, check),
        }
    }

    /// Fails with [`LoadError::DiskFull`] when the shards of `index` that are
    /// still to download need more space than the cache's disk has free
    /// (a folder is used in place: nothing to download).
    pub(crate) fn check_free_space(&self, index: &TensorIndex) -> Result<(), LoadError> {
        match self {
            Source::Local(_) => Ok(()),
            Source::Remote(remote) => remote.check_free_space(index),
        }
    }

    /// After `error` failed an open: whether the artifact's metadata changed
    /// upstream and was replaced in the cache, so that the open should start
    /// over (see [`Remote::refresh_if_updated`]). Always false for a folder.
    pub(crate) fn refresh_if_updated(&mut self, error: &LoadError) -> Result<bool, LoadError> {
        match self {
            Source::Local(_) => Ok(false),
            Source::Remote(remote) => remote.refresh_if_updated(error),
        }
    }

    /// The shards of a local folder, read and hashed ahead in parallel
    /// ([`local_shards::read_all`]); `None` for a remote source (its shards come
    /// through the cache, one by one) or in a browser.
    #[cfg_attr(target_arch = "wasm32", allow(unused_variables))]
    pub(crate) fn read_local_shards(
        &self,
        entries: &[ShardEntry],
        verify_md5: bool,
    ) -> Option<LocalShards> {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Source::Local(dir) => Some(crate::local_shards::read_all(dir, entries, verify_md5)),
            _ => None,
        }
    }

    /// The verified bytes of a shard.
    pub(crate) fn shard(
        &mut self,
        entry: &ShardEntry,
        verify_md5: bool,
        progress: &mut FileProgress<'_>,
    ) -> Result<Vec<u8>, LoadError> {
        match self {
            Source::Local(dir) => {
                shard::read(&dir.join(&entry.data_path), entry, verify_md5, progress)
            }
            Source::Remote(remote) => remote.shard(entry, verify_md5, progress),
        }
    }
}

/// Runs `check` on the file at `path`.
fn check_local(path: &Path, check: Check<'_>) -> Result<(), LoadError> {
    let bytes = std::fs::read(path).map_err(|error| LoadError::io(path, error))?;
    check(&bytes, &path.display().to_string())
}
