//! Artifacts at an http(s) URL, kept in the disk cache (layout in [`super::cache`]).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use reqwest::Url;

use super::cache::{artifact_folder, part_path};
use super::disk;
use super::http::{Downloader, Expected};
use crate::config::CONFIG_FILE;
use crate::index::INDEX_FILES;
use crate::metadata::{Check, check_alone};
use crate::progress::FileProgress;
use crate::{LoadError, ShardEntry, TensorIndex, default_cache_dir, resolve_model_url, shard};

/// Suffix of the fresh copy of a metadata file while it is compared with the cached one.
const UPSTREAM_SUFFIX: &str = ".upstream";

/// An artifact's base URL and its cache folder.
pub(crate) struct Remote {
    base_url: String,
    dir: PathBuf,
    allow_network: bool,
    /// Made on the first download, so fully cached opens build no client.
    downloader: Option<Downloader>,
    /// Whether the metadata was already checked against the server (once per open).
    refreshed: bool,
    /// Whether this open read the config or the index from the cache: a file
    /// they name that the server does not have may mean they are stale.
    metadata_from_cache: bool,
    /// A cached file that failed its check in this open.
    broken: Option<String>,
}

impl Remote {
    /// The artifact at `location`, cached under `cache_dir` (default: [`default_cache_dir`]).
    pub(crate) fn new(
        location: &str,
        cache_dir: Option<&Path>,
        allow_network: bool,
    ) -> Result<Remote, LoadError> {
        let base_url = resolve_model_url(location);
        let invalid =
            |message: String| LoadError::InvalidUrl { url: location.to_string(), message };
        let url = Url::parse(&base_url).map_err(|error| invalid(error.to_string()))?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a model URL cannot have a query or a fragment".to_string()));
        }
        let root = cache_dir.map_or_else(default_cache_dir, Path::to_path_buf);
        Ok(Remote {
            dir: artifact_folder(&root, &url),
            base_url,
            allow_network,
            downloader: None,
            refreshed: false,
            metadata_from_cache: false,
            broken: None,
        })
    }

    /// The resolved base URL.
    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The cache folder of this artifact.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cached file `name`, downloaded first when it is not in the cache;
    /// `check` passes a download before it gets its final name, and a cached
    /// copy each time (one that fails is remembered for
    /// [`Remote::refresh_if_updated`]).
    pub(crate) fn file(
        &mut self,
        name: &str,
        check: Check<'_>,
        progress: &mut FileProgress<'_>,
    ) -> Result<PathBuf, LoadError> {
        let path = self.dir.join(name);
        if path.is_file() {
            self.check_cached(name, &path, check)?;
        } else {
            let expected = Expected { content: Some(check), ..Expected::default() };
            self.download(name, &path, expected, progress)?;
        }
        Ok(path)
    }

    /// The first of `names` in the cache, else the first the server has;
    /// checked as [`Remote::file`] checks.
    pub(crate) fn first_file(
        &mut self,
        names: &[&str],
        check: Check<'_>,
    ) -> Result<PathBuf, LoadError> {
        if let Some(name) = names.iter().find(|name| self.dir.join(name).is_file()) {
            let path = self.dir.join(name);
            self.check_cached(name, &path, check)?;
            return Ok(path);
        }
        for name in names {
            let path = self.dir.join(name);
            let expected = Expected { content: Some(check), ..Expected::default() };
            match self.download(name, &path, expected, &mut FileProgress::silent()) {
                Ok(()) => return Ok(path),
                Err(error) if error.is_not_found() => {}
                Err(error) => return Err(error),
            }
        }
        Err(LoadError::missing_all(&self.url(names[0]), names))
    }

    /// Runs `check` on cached file `name`.
    fn check_cached(&mut self, name: &str, path: &Path, check: Check<'_>) -> Result<(), LoadError> {
        let bytes = fs::read(path).map_err(|error| LoadError::io(path, error))?;
        if let Err(error) = check(&bytes, &path.display().to_string()) {
            self.broken = Some(name.to_string());
            return Err(error);
        }
        if name == CONFIG_FILE || INDEX_FILES.contains(&name) {
            self.metadata_from_cache = true;
        }
        Ok(())
    }

    /// The verified bytes of a shard, from the cache when it holds a good copy.
    pub(crate) fn shard(
        &mut self,
        entry: &ShardEntry,
        verify_md5: bool,
        progress: &mut FileProgress<'_>,
    ) -> Result<Vec<u8>, LoadError> {
        let path = self.dir.join(&entry.data_path);
        if path.is_file() {
            match shard::read(&path, entry, verify_md5, progress) {
                Ok(bytes) => return Ok(bytes),
                // A damaged copy (disk trouble, or an index that changed) is fetched again.
                Err(LoadError::ShardSize { .. } | LoadError::Md5Mismatch { .. })
                    if self.allow_network =>
                {
                    fs::remove_file(&path).map_err(|error| LoadError::io(&path, error))?;
                }
                Err(error) => return Err(error),
            }
        }
        let expected = Expected {
            size: Some(entry.nbytes),
            md5: entry.md5sum.as_deref().filter(|_| verify_md5),
            content: None,
        };
        self.download(&entry.data_path, &path, expected, progress)?;
        // Size and md5 were checked on the way in.
        shard::read(&path, entry, false, progress)
    }

    /// Fails with [`LoadError::DiskFull`] when the shards of `index` not yet
    /// cached (less what their partial downloads hold) exceed the free space
    /// of the cache's disk. Offline nothing is downloaded: no check.
    pub(crate) fn check_free_space(&self, index: &TensorIndex) -> Result<(), LoadError> {
        let needed: u64 = index.shards.iter().map(|entry| self.bytes_to_fetch(entry)).sum();
        if !self.allow_network || needed == 0 {
            return Ok(());
        }
        match disk::free_space(&self.dir) {
            Some(available) => disk::check_space(&self.dir, needed, available),
            // The platform does not say: a full disk surfaces at the write.
            None => Ok(()),
        }
    }

    /// Bytes of shard `entry` a download would still bring.
    fn bytes_to_fetch(&self, entry: &ShardEntry) -> u64 {
        let path = self.dir.join(&entry.data_path);
        if path.is_file() {
            return 0;
        }
        // A partial download longer than the shard is started over.
        let partial = fs::metadata(part_path(&path)).map_or(0, |meta| meta.len());
        if partial > entry.nbytes { entry.nbytes } else { entry.nbytes - partial }
    }

    /// Called with the error that failed an open. When the cached metadata
    /// is suspect and we are online, fetches it again (once): if any of it
    /// changed, the artifact was updated upstream (or the cached copy was
    /// damaged), so everything cached that the new index does not name as a
    /// shard is removed, the new metadata replaces the old, and the caller
    /// starts over (true). Cached shards stay only to be checked against the
    /// new index. False when nothing changed or the metadata cannot be
    /// fetched: the error stands.
    ///
    /// The metadata is suspect when a freshly downloaded file contradicts the
    /// cached index (size or md5), when a cached file failed its check (it
    /// is fetched again with the config and the index), or when the server
    /// lacks a file that the cached config or index names.
    pub(crate) fn refresh_if_updated(&mut self, error: &LoadError) -> Result<bool, LoadError> {
        let downloaded_mismatch = match error {
            LoadError::Md5Mismatch { file, .. } | LoadError::ShardSize { file, .. } => {
                file.starts_with(&self.base_url)
            }
            _ => false,
        };
        let named_but_missing = error.is_not_found() && self.metadata_from_cache;
        let suspect = downloaded_mismatch || named_but_missing || self.broken.is_some();
        if !suspect || !self.allow_network || self.refreshed {
            return Ok(false);
        }
        self.refreshed = true;
        let broken = self.broken.take();
        let mut cached: Vec<&str> = [CONFIG_FILE]
            .into_iter()
            .chain(INDEX_FILES)
            .filter(|name| self.dir.join(name).is_file())
            .collect();
        if let Some(name) = broken.as_deref().filter(|name| !cached.contains(name)) {
            cached.push(name);
        }
        let mut fresh = Vec::new();
        for name in &cached {
            let upstream = self.dir.join(format!("{name}{UPSTREAM_SUFFIX}"));
            let check = |bytes: &[u8], file: &str| check_alone(name, bytes, file);
            let expected = Expected { content: Some(&check), ..Expected::default() };
            let fetched = self.download(name, &upstream, expected, &mut FileProgress::silent());
            fresh.push(upstream);
            if fetched.is_err() {
                remove_files(&fresh)?;
                return Ok(false);
            }
        }
        let changed = cached
            .iter()
            .zip(&fresh)
            .any(|(name, upstream)| fs::read(self.dir.join(name)).ok() != fs::read(upstream).ok());
        if !changed {
            remove_files(&fresh)?;
            return Ok(false);
        }
        let mut keep: HashSet<PathBuf> = fresh.iter().cloned().collect();
        keep.extend(cached.iter().map(|name| self.dir.join(name)));
        let new_index = cached
            .iter()
            .zip(&fresh)
            .find(|(name, _)| INDEX_FILES.contains(name))
            .map(|(_, upstream)| upstream);
        if let Some(index) = new_index
            .and_then(|path| fs::read_to_string(path).ok())
            .and_then(|text| TensorIndex::parse(&text, "").ok())
        {
            keep.extend(index.shards.iter().map(|entry| self.dir.join(&entry.data_path)));
        }
        self.remove_files_except(&keep)?;
        // The index first: the shards are checked against it.
        for (name, upstream) in cached.iter().zip(&fresh).rev() {
            let path = self.dir.join(name);
            fs::rename(upstream, &path).map_err(|error| LoadError::io(&path, error))?;
        }
        Ok(true)
    }

    /// Removes the files directly in the artifact's folder that are not in `keep`.
    fn remove_files_except(&self, keep: &HashSet<PathBuf>) -> Result<(), LoadError> {
        let entries = fs::read_dir(&self.dir).map_err(|error| LoadError::io(&self.dir, error))?;
        let stale: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|entry| entry.file_type().is_ok_and(|kind| !kind.is_dir()))
            .map(|entry| entry.path())
            .filter(|path| !keep.contains(path))
            .collect();
        remove_files(&stale)
    }

    fn url(&self, name: &str) -> String {
        format!("{}{name}", self.base_url)
    }

    fn download(
        &mut self,
        name: &str,
        path: &Path,
        expected: Expected<'_>,
        progress: &mut FileProgress<'_>,
    ) -> Result<(), LoadError> {
        let url = self.url(name);
        if !self.allow_network {
            return Err(LoadError::Offline { url });
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|error| LoadError::io(parent, error))?;
        }
        let downloader = match &mut self.downloader {
            Some(downloader) => downloader,
            slot @ None => slot.insert(Downloader::new(&url)?),
        };
        downloader.download(&url, path, expected, progress)
    }
}

/// The cache folder that holds (or would hold) the artifact at URL `location`
/// under `cache_dir` (default: [`default_cache_dir`]), without touching it.
pub fn cache_folder(location: &str, cache_dir: Option<&Path>) -> Result<PathBuf, LoadError> {
    Remote::new(location, cache_dir, false).map(|remote| remote.dir)
}

/// Deletes `paths`; one already gone is fine.
fn remove_files(paths: &[PathBuf]) -> Result<(), LoadError> {
    for path in paths {
        match fs::remove_file(path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(LoadError::io(path, error));
            }
            _ => {}
        }
    }
    Ok(())
}
