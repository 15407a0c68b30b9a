//! Artifacts at an http(s) URL, kept in the disk cache (layout in [`crate::cache`]).

use std::fs;
use std::path::{Path, PathBuf};

use reqwest::Url;

use crate::cache::artifact_folder;
use crate::http::{Downloader, Expected};
use crate::progress::FileProgress;
use crate::source::missing_all;
use crate::{LoadError, ShardEntry, default_cache_dir, resolve_model_url, shard};

/// An artifact's base URL and its cache folder.
pub(crate) struct Remote {
    base_url: String,
    dir: PathBuf,
    allow_network: bool,
    /// Made on the first download, so fully cached opens build no client.
    downloader: Option<Downloader>,
}

impl Remote {
    /// The artifact at `location`, cached under `cache_dir` (default: [`default_cache_dir`]).
    pub(crate) fn new(location: &str, cache_dir: Option<&Path>, allow_network: bool) -> Result<Remote, LoadError> {
        let base_url = resolve_model_url(location);
        let invalid = |message: String| LoadError::InvalidUrl { url: location.to_string(), message };
        let url = Url::parse(&base_url).map_err(|error| invalid(error.to_string()))?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a model URL cannot have a query or a fragment".to_string()));
        }
        let root = cache_dir.map_or_else(default_cache_dir, Path::to_path_buf);
        Ok(Remote { dir: artifact_folder(&root, &url), base_url, allow_network, downloader: None })
    }

    /// The resolved base URL.
    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The cache folder of this artifact.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cached file `name`, downloaded first when it is not in the cache.
    pub(crate) fn file(&mut self, name: &str, progress: &mut FileProgress<'_>) -> Result<PathBuf, LoadError> {
        let path = self.dir.join(name);
        if !path.is_file() {
            self.download(name, &path, Expected::default(), progress)?;
        }
        Ok(path)
    }

    /// The first of `names` in the cache, else the first the server has.
    pub(crate) fn first_file(&mut self, names: &[&str]) -> Result<PathBuf, LoadError> {
        if let Some(path) = names.iter().map(|name| self.dir.join(name)).find(|path| path.is_file()) {
            return Ok(path);
        }
        for name in names {
            let path = self.dir.join(name);
            match self.download(name, &path, Expected::default(), &mut FileProgress::silent()) {
                Ok(()) => return Ok(path),
                Err(error) if error.is_not_found() => {}
                Err(error) => return Err(error),
            }
        }
        Err(missing_all(&self.url(names[0]), names))
    }

    /// The verified bytes of a shard, from the cache when it holds a good copy.
    pub(crate) fn shard(&mut self, entry: &ShardEntry, verify_md5: bool, progress: &mut FileProgress<'_>) -> Result<Vec<u8>, LoadError> {
        let path = self.dir.join(&entry.data_path);
        if path.is_file() {
            match shard::read(&path, entry, verify_md5, progress) {
                Ok(bytes) => return Ok(bytes),
                // A damaged copy (disk trouble, or an index that changed) is fetched again.
                Err(LoadError::ShardSize { .. } | LoadError::Md5Mismatch { .. }) if self.allow_network => {
                    fs::remove_file(&path).map_err(|error| LoadError::io(&path, error))?;
                }
                Err(error) => return Err(error),
            }
        }
        let expected = Expected { size: Some(entry.nbytes), md5: entry.md5sum.as_deref().filter(|_| verify_md5) };
        self.download(&entry.data_path, &path, expected, progress)?;
        // Size and md5 were checked on the way in.
        shard::read(&path, entry, false, progress)
    }

    fn url(&self, name: &str) -> String {
        format!("{}{name}", self.base_url)
    }

    fn download(&mut self, name: &str, path: &Path, expected: Expected<'_>, progress: &mut FileProgress<'_>) -> Result<(), LoadError> {
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
