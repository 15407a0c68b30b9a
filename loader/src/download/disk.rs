//! Free space on the cache's disk: checked before downloading, and named
//! when a write runs out of it (native builds only).

use std::io;
use std::path::{Path, PathBuf};

use crate::LoadError;

/// Bytes an unprivileged process can still write on the filesystem holding
/// `path` (its nearest existing ancestor when it does not exist yet); `None`
/// where the platform does not say.
pub(crate) fn free_space(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|ancestor| ancestor.exists())?;
    available_bytes(existing)
}

#[cfg(unix)]
fn available_bytes(path: &Path) -> Option<u64> {
    let stats = rustix::fs::statvfs(path).ok()?;
    // `f_bavail` (not `f_bfree`) excludes the blocks reserved for root.
    Some(stats.f_bavail.saturating_mul(stats.f_frsize))
}

#[cfg(not(unix))]
fn available_bytes(_path: &Path) -> Option<u64> {
    None
}

/// Fails with [`LoadError::DiskFull`] unless `needed` bytes fit in the
/// `available` free bytes of `folder`'s disk.
pub(crate) fn check_space(folder: &Path, needed: u64, available: u64) -> Result<(), LoadError> {
    match needed <= available {
        true => Ok(()),
        false => {
            Err(LoadError::DiskFull { folder: folder.to_path_buf(), file: None, needed, available })
        }
    }
}

/// The error for a failed write to `file`: [`LoadError::DiskFull`] when the
/// disk is full (`ENOSPC`, or a quota), naming the `needed` bytes the file
/// still lacks and what is free now; a plain I/O error otherwise.
pub(crate) fn write_error(file: &Path, error: io::Error, needed: u64) -> LoadError {
    if !matches!(error.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded) {
        return LoadError::io(file, error);
    }
    let folder = file.parent().map_or_else(PathBuf::new, Path::to_path_buf);
    let available = free_space(&folder).unwrap_or(0);
    LoadError::DiskFull { folder, file: Some(file.to_path_buf()), needed, available }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_compares_what_is_still_to_download_with_what_is_free() {
        let folder = Path::new("/cache/host/org/model/resolve/main");
        assert!(check_space(folder, 1000, 1000).is_ok());
        assert!(check_space(folder, 0, 0).is_ok());
        let error = check_space(folder, 3 << 30, 512 << 20).unwrap_err();
        assert!(
            matches!(&error, LoadError::DiskFull { needed, available, file: None, .. } if *needed == 3 << 30 && *available == 512 << 20)
        );
        assert_eq!(
            error.to_string(),
            "not enough disk space for the model cache in /cache/host/org/model/resolve/main: \
             3.0 GiB (3221225472 bytes) still to download, 512.0 MiB (536870912 bytes) free"
        );
    }

    #[test]
    fn a_full_disk_during_a_write_names_the_file_and_the_sizes() {
        let file = Path::new("/nonexistent-mlc-wgpu/folder/params_shard_0.bin.part");
        let error = write_error(file, io::Error::from(io::ErrorKind::StorageFull), 4096);
        let LoadError::DiskFull { folder, file: Some(named), needed: 4096, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(
            (folder.as_path(), named.as_path()),
            (Path::new("/nonexistent-mlc-wgpu/folder"), file)
        );
        assert!(error.to_string().starts_with("disk full while writing /nonexistent-mlc-wgpu/folder/params_shard_0.bin.part: 4.0 KiB (4096 bytes) of it still to download, "), "{error}");
        let other = write_error(file, io::Error::from(io::ErrorKind::PermissionDenied), 4096);
        assert!(matches!(other, LoadError::Io { .. }), "{other:?}");
    }

    #[test]
    fn free_space_is_known_here_and_bytes_read_well() {
        #[cfg(unix)]
        assert!(
            free_space(Path::new("/nonexistent-mlc-wgpu/a/b")).is_some(),
            "the root's filesystem answers for a missing folder"
        );
        assert_eq!(crate::error::bytes_text(999), "999 bytes");
        assert_eq!(crate::error::bytes_text(1536), "1.5 KiB (1536 bytes)");
    }
}
