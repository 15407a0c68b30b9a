//! Reading weight shards from disk and checking them against the index.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use md5::{Digest, Md5};

use crate::progress::FileProgress;
use crate::{LoadError, ShardEntry};

/// Reads the shard `entry` from `path` into memory, checking its size and,
/// when `verify_md5` and the index has one, its md5.
pub(crate) fn read(path: &Path, entry: &ShardEntry, verify_md5: bool, progress: &mut FileProgress<'_>) -> Result<Vec<u8>, LoadError> {
    let file = path.display().to_string();
    let io_error = |error: std::io::Error| match error.kind() {
        ErrorKind::NotFound => LoadError::MissingFile { file: file.clone() },
        _ => LoadError::io(path, error),
    };
    // Checked before reading, so a wrong file is not pulled into memory.
    check_size(&file, entry.nbytes, fs::metadata(path).map_err(io_error)?.len())?;
    let bytes = fs::read(path).map_err(io_error)?;
    verify(&file, entry, &bytes, verify_md5, progress)?;
    Ok(bytes)
}

/// Checks the bytes of shard `entry` (named `file` in errors) against the
/// index: the size, and, when `verify_md5` and the index has one, the md5.
pub(crate) fn verify(file: &str, entry: &ShardEntry, bytes: &[u8], verify_md5: bool, progress: &mut FileProgress<'_>) -> Result<(), LoadError> {
    let len = bytes.len() as u64;
    check_size(file, entry.nbytes, len)?;
    if let Some(expected) = entry.md5sum.as_deref().filter(|_| verify_md5) {
        check_md5(file, expected, &md5_hex(bytes))?;
        progress.verified(len);
    }
    progress.loaded(len);
    Ok(())
}

/// Errors unless `actual` is the index's size.
pub(crate) fn check_size(file: &str, expected: u64, actual: u64) -> Result<(), LoadError> {
    match actual == expected {
        true => Ok(()),
        false => Err(LoadError::ShardSize { file: file.to_string(), expected, actual }),
    }
}

/// Errors unless the hex digest `actual` is the index's `expected` (any case).
pub(crate) fn check_md5(file: &str, expected: &str, actual: &str) -> Result<(), LoadError> {
    match actual.eq_ignore_ascii_case(expected) {
        true => Ok(()),
        false => Err(LoadError::Md5Mismatch { file: file.to_string(), expected: expected.to_string(), actual: actual.to_string() }),
    }
}

fn md5_hex(bytes: &[u8]) -> String {
    format!("{:x}", Md5::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(nbytes: u64, md5sum: Option<&str>) -> ShardEntry {
        ShardEntry { data_path: "s.bin".into(), format: "raw-shard".into(), nbytes, md5sum: md5sum.map(String::from), records: Vec::new() }
    }

    #[test]
    fn reads_and_checks_a_shard() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.bin");
        fs::write(&path, b"hello world").unwrap();
        let md5 = "5EB63BBBE01EEED093CB22BB8F5ACDC3";
        assert_eq!(read(&path, &entry(11, Some(md5)), true, &mut FileProgress::silent()).unwrap(), b"hello world");

        let error = read(&path, &entry(12, None), true, &mut FileProgress::silent()).unwrap_err();
        assert!(matches!(error, LoadError::ShardSize { expected: 12, actual: 11, .. }), "{error:?}");

        let wrong = "00000000000000000000000000000000";
        let error = read(&path, &entry(11, Some(wrong)), true, &mut FileProgress::silent()).unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("s.bin: md5 5eb63bbbe01eeed093cb22bb8f5acdc3 does not match the index (00000000000000000000000000000000)"),
            "{error}"
        );
        assert!(read(&path, &entry(11, Some(wrong)), false, &mut FileProgress::silent()).is_ok());

        let error = read(&dir.path().join("absent.bin"), &entry(1, None), true, &mut FileProgress::silent()).unwrap_err();
        assert!(matches!(&error, LoadError::MissingFile { file } if file.ends_with("absent.bin")), "{error:?}");
    }
}
