//! Stands in for the `download` module in a build without it (the feature
//! off, or a browser): opening a URL fails, and no remote source can exist, so
//! [`Source`](crate::source::Source) keeps one shape in every build.

use std::path::{Path, PathBuf};

use crate::metadata::Check;
use crate::progress::FileProgress;
use crate::{LoadError, ShardEntry, TensorIndex};

/// A remote artifact; none can be made in this build.
pub(crate) enum Remote {}

impl Remote {
    /// Fails: this build cannot download.
    pub(crate) fn new(
        location: &str,
        _cache_dir: Option<&Path>,
        _allow_network: bool,
    ) -> Result<Remote, LoadError> {
        Err(LoadError::InvalidUrl {
            url: location.to_string(),
            message: "this build cannot download; open a folder instead".to_string(),
        })
    }

    pub(crate) fn base_url(&self) -> &str {
        match *self {}
    }

    pub(crate) fn dir(&self) -> &Path {
        match *self {}
    }

    pub(crate) fn file(
        &mut self,
        _name: &str,
        _check: Check<'_>,
        _progress: &mut FileProgress<'_>,
    ) -> Result<PathBuf, LoadError> {
        match *self {}
    }

    pub(crate) fn first_file(
        &mut self,
        _names: &[&str],
        _check: Check<'_>,
    ) -> Result<PathBuf, LoadError> {
        match *self {}
    }

    pub(crate) fn check_free_space(&self, _index: &TensorIndex) -> Result<(), LoadError> {
        match *self {}
    }

    pub(crate) fn refresh_if_updated(&mut self, _error: &LoadError) -> Result<bool, LoadError> {
        match *self {}
    }

    pub(crate) fn shard(
        &mut self,
        _entry: &ShardEntry,
        _verify_md5: bool,
        _progress: &mut FileProgress<'_>,
    ) -> Result<Vec<u8>, LoadError> {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use crate::{Artifact, LoadError, OpenOptions};

    #[test]
    fn a_url_is_a_clear_error() {
        let url = "http://127.0.0.1:9/org/model/resolve/main/";
        let error = Artifact::open(url, OpenOptions::default()).err().unwrap();
        assert!(
            matches!(&error, LoadError::InvalidUrl { url: named, message }
                if named == url && message.contains("cannot download")),
            "{error:?}"
        );
    }
}
