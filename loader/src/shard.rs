//! Reading weight shards from disk and checking them against the index.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use md5::{Digest, Md5};

use crate::progress::FileProgress;
use crate::{LoadError, ShardEntry};

/// Reads the shard `entry` from `path` into memory, checking its size and,
/// when `verify_md5` and the index has one, its md5.
pub(crate) fn read(
    path: &Path,
    entry: &ShardEntry,
    verify_md5: bool,
    progress: &mut FileProgress<'_>,
) -> Result<Vec<u8>, LoadError> {
    let (bytes, digest) = read_and_hash(path, entry, verify_md5)?;
    check(&path.display().to_string(), entry, &bytes, digest.as_deref(), progress)?;
    Ok(bytes)
}

/// A shard read ahead (`local_shards`), with the md5 to check it against the index.
pub(crate) type Hashed = Result<(Vec<u8>, Option<String>), LoadError>;

/// The bytes of shard `entry` at `path` and, when `verify_md5` and the index
/// has one, their md5 (hex).
pub(crate) fn read_and_hash(
    path: &Path,
    entry: &ShardEntry,
    verify_md5: bool,
) -> Result<(Vec<u8>, Option<String>), LoadError> {
    let io_error = |error: std::io::Error| match error.kind() {
        ErrorKind::NotFound => LoadError::MissingFile { file: path.display().to_string() },
        _ => LoadError::io(path, error),
    };
    // Checked before reading, so a wrong file is not pulled into memory.
    check_size(
        &path.display().to_string(),
        entry.nbytes,
        fs::metadata(path).map_err(io_error)?.len(),
    )?;
    let bytes = fs::read(path).map_err(io_error)?;
    let digest = (verify_md5 && entry.md5sum.is_some()).then(|| md5_hex(&bytes));
    Ok((bytes, digest))
}

/// Checks the bytes of shard `entry` (named `file` in errors) against the
/// index: the size, and, when `verify_md5` and the index has one, the md5.
pub(crate) fn verify(
    file: &str,
    entry: &ShardEntry,
    bytes: &[u8],
    verify_md5: bool,
    progress: &mut FileProgress<'_>,
) -> Result<(), LoadError> {
    let digest = (verify_md5 && entry.md5sum.is_some()).then(|| md5_hex(bytes));
    check(file, entry, bytes, digest.as_deref(), progress)
}

/// Checks shard `entry`'s size and, given its `digest`, its md5 against the
/// index, and reports it loaded (and verified).
pub(crate) fn check(
    file: &str,
    entry: &ShardEntry,
    bytes: &[u8],
    digest: Option<&str>,
    progress: &mut FileProgress<'_>,
) -> Result<(), LoadError> {
    let len = bytes.len() as u64;
    check_size(file, entry.nbytes, len)?;
    if let (Some(expected), Some(actual)) = (entry.md5sum.as_deref(), digest) {
        check_md5(file, expected, actual)?;
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
        false => Err(LoadError::Md5Mismatch {
            file: file.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        }),
    }
}

fn md5_hex(bytes: &[u8]) -> String {
    format!("{:x}", Md5::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(nbytes: u64, md5sum: Option<&str>) -> ShardEntry {
        ShardEntry {
            data_path: "s.bin".into(),
            format: "raw-shard".into(),
            nbytes,
            md5sum: md5sum.map(String::from),
            records: Vec::new(),
        }
    }

    #[test]
    fn reads_and_checks_a_shard() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.bin");
        fs::write(&path, b"hello world").unwrap();
        let md5 = "5EB63BBBE01EEED093CB22BB8F5ACDC3";
        assert_eq!(
            read(&path, &entry(11, Some(md5)), true, &mut FileProgress::silent()).unwrap(),
            b"hello world"
        );

        let error = read(&path, &entry(12, None), true, &mut FileProgress::silent()).unwrap_err();
        assert!(
            matches!(error, LoadError::ShardSize { expected: 12, actual: 11, .. }),
            "{error:?}"
        );

        let wrong = "00000000000000000000000000000000";
        let error =
            read(&path, &entry(11, Some(wrong)), true, &mut FileProgress::silent()).unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("s.bin: md5 5eb63bbbe01eeed093cb22bb8f5acdc3 does not match the index (00000000000000000000000000000000)"),
            "{error}"
        );
        assert!(read(&path, &entry(11, Some(wrong)), false, &mut FileProgress::silent()).is_ok());

        let error = read(
            &dir.path().join("absent.bin"),
            &entry(1, None),
            true,
            &mut FileProgress::silent(),
        )
        .unwrap_err();
        assert!(
            matches!(&error, LoadError::MissingFile { file } if file.ends_with("absent.bin")),
            "{error:?}"
        );
    }
}
