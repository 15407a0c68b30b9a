//! The disk cache of downloaded artifacts.
//!
//! Layout: an artifact whose base URL is `https://host[:port]/a/b/resolve/main/`
//! is kept in `<cache_dir>/<host[:port]>/a/b/resolve/main/`, each file under its
//! own name (`params_shard_0.bin`, ...). Every byte outside `[A-Za-z0-9._~-]`
//! of the host and of each path segment is written `%XX`, so distinct URLs get
//! distinct folders and no name can escape the cache. http and https share a
//! folder. A file is downloaded to `<name>.part` and only renamed to `<name>`
//! once complete and verified, so a file under its final name is always whole;
//! a `.part` left behind is resumed by the next download. One process at a
//! time should fill a given cache folder.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use reqwest::Url;

use crate::LoadError;

/// The cache folder of the artifact at `base` (see the module docs).
pub(crate) fn artifact_folder(cache_dir: &Path, base: &Url) -> PathBuf {
    let host = match (base.host_str(), base.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        (None, _) => String::new(),
    };
    let mut folder = cache_dir.join(escape(&host));
    for segment in base.path_segments().into_iter().flatten().filter(|segment| !segment.is_empty())
    {
        folder.push(escape(segment));
    }
    folder
}

/// Percent-escapes every byte outside `[A-Za-z0-9._~-]`, and the dots of a
/// component made only of dots, which a path would read as navigation.
fn escape(component: &str) -> String {
    let only_dots = component.bytes().all(|byte| byte == b'.');
    let mut escaped = String::with_capacity(component.len());
    for byte in component.bytes() {
        if !only_dots && (byte.is_ascii_alphanumeric() || b"._~-".contains(&byte)) {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}

/// A download in progress: `<dest>.part`, its length, the size it will
/// have when known, and the md5 of its bytes when one will be checked.
pub(crate) struct PartFile {
    path: PathBuf,
    file: File,
    len: u64,
    size: Option<u64>,
    md5: Option<Md5>,
}

/// The part file a download of `dest` writes to.
pub(crate) fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

impl PartFile {
    /// Opens the part file of `dest`, keeping what an earlier attempt left
    /// there (and hashing it when `hash`); `size` is the whole file's size
    /// when known (a full disk then says how much was still missing).
    pub(crate) fn open(dest: &Path, size: Option<u64>, hash: bool) -> Result<PartFile, LoadError> {
        let path = part_path(dest);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| LoadError::io(&path, e))?;
        let mut md5 = hash.then(Md5::new);
        let len = match md5.as_mut() {
            Some(md5) => std::io::copy(&mut file, &mut HashWriter(md5))
                .map_err(|e| LoadError::io(&path, e))?,
            None => file.metadata().map_err(|e| LoadError::io(&path, e))?.len(),
        };
        Ok(PartFile { path, file, len, size, md5 })
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Appends downloaded bytes; a full disk is [`LoadError::DiskFull`].
    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<(), LoadError> {
        self.file.write_all(bytes).map_err(|e| self.write_error(e, bytes.len() as u64))?;
        if let Some(md5) = self.md5.as_mut() {
            md5.update(bytes);
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Drops everything written, to start over from byte 0.
    pub(crate) fn restart(&mut self) -> Result<(), LoadError> {
        self.file.set_len(0).map_err(|e| LoadError::io(&self.path, e))?;
        if let Some(md5) = self.md5.as_mut() {
            md5.reset();
        }
        self.len = 0;
        Ok(())
    }

    /// Hex md5 of the bytes written, when hashing.
    pub(crate) fn md5_hex(&self) -> Option<String> {
        self.md5.as_ref().map(|md5| format!("{:x}", md5.clone().finalize()))
    }

    /// The bytes written so far (for a content check of a small file).
    pub(crate) fn bytes(&self) -> Result<Vec<u8>, LoadError> {
        fs::read(&self.path).map_err(|e| LoadError::io(&self.path, e))
    }

    /// Deletes the part file.
    pub(crate) fn discard(self) -> Result<(), LoadError> {
        drop(self.file);
        fs::remove_file(&self.path).map_err(|e| LoadError::io(&self.path, e))
    }

    /// Flushes the bytes to disk and renames the part file to `dest`.
    pub(crate) fn commit(self, dest: &Path) -> Result<(), LoadError> {
        // Without the sync a crash could leave a renamed but empty file.
        // Delayed allocation can report a full disk only here: then none
        // of the file's bytes are known to be on disk.
        self.file.sync_all().map_err(|e| super::disk::write_error(&self.path, e, self.len))?;
        drop(self.file);
        fs::rename(&self.path, dest).map_err(|e| LoadError::io(dest, e))
    }
}

impl PartFile {
    /// The error for a failed write of `attempted` bytes: a full disk
    /// names what the file still lacks (all of `attempted` when its size
    /// is unknown).
    fn write_error(&self, error: std::io::Error, attempted: u64) -> LoadError {
        let missing = self.size.map_or(attempted, |size| size.saturating_sub(self.len));
        super::disk::write_error(&self.path, error, missing)
    }
}

/// Feeds `io::copy` output into a hasher.
struct HashWriter<'a>(&'a mut Md5);

impl Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(url: &str) -> PathBuf {
        artifact_folder(Path::new("/cache"), &Url::parse(url).unwrap())
    }

    #[test]
    fn folder_follows_host_and_path() {
        assert_eq!(
            folder("https://huggingface.co/mlc-ai/Qwen2.5-0.5B-Instruct-q4f16_1-MLC/resolve/main/"),
            Path::new(
                "/cache/huggingface.co/mlc-ai/Qwen2.5-0.5B-Instruct-q4f16_1-MLC/resolve/main"
            )
        );
        assert_eq!(
            folder("http://127.0.0.1:8080/m/resolve/main/"),
            Path::new("/cache/127.0.0.1%3A8080/m/resolve/main")
        );
    }

    #[test]
    fn folder_names_are_escaped_and_distinct() {
        assert_eq!(
            folder("http://h/a%20b/resolve/main/"),
            Path::new("/cache/h/a%2520b/resolve/main")
        );
        assert_ne!(folder("http://h/a_b/resolve/main/"), folder("http://h/a%20b/resolve/main/"));
        assert_eq!(folder("http://[::1]:9/m/"), Path::new("/cache/%5B%3A%3A1%5D%3A9/m"));
        // `Url` resolves dot segments, so nothing climbs out of the cache.
        assert_eq!(
            folder("http://h/a/../../../etc/resolve/main/"),
            Path::new("/cache/h/etc/resolve/main")
        );
        assert_eq!((escape(".."), escape("a..b")), ("%2E%2E".to_string(), "a..b".to_string()));
    }

    #[test]
    fn part_file_resumes_hashes_and_commits() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("shard.bin");
        let mut part = PartFile::open(&dest, None, true).unwrap();
        part.append(b"hello ").unwrap();
        drop(part);

        let mut part = PartFile::open(&dest, None, true).unwrap();
        assert_eq!(part.len(), 6);
        part.append(b"world").unwrap();
        assert_eq!(part.md5_hex().unwrap(), "5eb63bbbe01eeed093cb22bb8f5acdc3");
        part.commit(&dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"hello world");
        assert!(!dir.path().join("shard.bin.part").exists());
    }

    #[test]
    fn part_file_restart_and_discard() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x");
        let mut part = PartFile::open(&dest, None, false).unwrap();
        part.append(b"junk").unwrap();
        part.restart().unwrap();
        part.append(b"ok").unwrap();
        assert_eq!((part.len(), part.md5_hex()), (2, None));
        assert_eq!(fs::read(dir.path().join("x.part")).unwrap(), b"ok");
        part.discard().unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
