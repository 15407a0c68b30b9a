//! Bad artifacts on disk (issue 7, "Bad artifacts"): each fault is an error
//! that says what is wrong and in which file, never a panic and never a
//! half-opened artifact. The faults `local.rs` already covers (a shard of the
//! wrong size, an md5 mismatch, missing files, an unsupported quantization, a
//! config field of the wrong type, an nbytes that disagrees with the shape)
//! are not repeated here.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use mlc_loader::{Artifact, LoadError, OpenOptions};
use serde_json::{Value, json};

/// The synthetic artifact with `edit` applied to one of its files, opened
/// from a folder; the open must fail, and the error is returned with the
/// path of the edited file.
fn open_with(file: &str, edit: impl FnOnce(Vec<u8>) -> Vec<u8>) -> (LoadError, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut files = synthetic_artifact();
    let edited = edit(files.remove(file).unwrap());
    files.insert(file.to_string(), edited);
    write_files(dir.path(), &files);
    let error = Artifact::open(dir.path().to_str().unwrap(), OpenOptions::default())
        .expect_err("the bad artifact opened");
    (error, dir.path().join(file))
}

/// [`open_with`] for a JSON file edited as a value.
fn open_with_json(file: &str, edit: impl FnOnce(&mut Value)) -> (LoadError, PathBuf) {
    open_with(file, |bytes| {
        let mut value: Value = serde_json::from_slice(&bytes).unwrap();
        edit(&mut value);
        serde_json::to_vec_pretty(&value).unwrap()
    })
}

const CONFIG: &str = "mlc-chat-config.json";
const INDEX: &str = "tensor-cache.json";

/// The error is about `file` (by its full path) and its text contains `expected`.
fn assert_names(error: &LoadError, file: &Path, expected: &str) {
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("{}: ", file.display())),
        "the error does not name {}: {text}",
        file.display()
    );
    assert!(text.contains(expected), "{text:?} lacks {expected:?}");
}

#[test]
fn truncated_json_names_the_file_and_the_end_of_input() {
    for file in [CONFIG, INDEX] {
        let (error, path) = open_with(file, |bytes| bytes[..bytes.len() / 2].to_vec());
        assert!(matches!(error, LoadError::Config { .. } | LoadError::Index { .. }), "{error:?}");
        assert_names(&error, &path, "EOF while parsing");
        let (error, path) = open_with(file, |_| Vec::new());
        assert_names(&error, &path, "EOF while parsing a value at line 1 column 0");
    }
}

#[test]
fn json_that_is_not_text_names_the_file() {
    for file in [CONFIG, INDEX] {
        let (error, path) = open_with(file, |mut bytes| {
            bytes.insert(1, 0xFF);
            bytes
        });
        assert_names(&error, &path, "valid UTF-8");
    }
}

#[test]
fn missing_required_fields_are_named() {
    for field in ["model_type", "quantization", "vocab_size"] {
        let (error, path) = open_with_json(CONFIG, |config| {
            config.as_object_mut().unwrap().remove(field);
        });
        assert!(matches!(error, LoadError::Config { .. }), "{error:?}");
        assert_names(&error, &path, &format!("missing field `{field}`"));
    }
    for (field, at) in [("dataPath", "records[1]"), ("nbytes", "records[0]")] {
        let (error, path) = open_with_json(INDEX, |index| {
            index["records"][if at == "records[1]" { 1 } else { 0 }]
                .as_object_mut()
                .unwrap()
                .remove(field);
        });
        assert!(matches!(error, LoadError::Index { .. }), "{error:?}");
        assert_names(&error, &path, &format!("`{at}`: missing field `{field}`"));
    }
    let (error, path) = open_with_json(INDEX, |index| {
        index["records"][0]["records"][2].as_object_mut().unwrap().remove("byteOffset");
    });
    assert_names(&error, &path, "`records[0].records[2]`: missing field `byteOffset`");
}

#[test]
fn offsets_beyond_the_shard_name_the_tensor_and_the_shard() {
    // `filler` is the last record of shard 1; one byte further and it overhangs.
    let (error, path) = open_with_json(INDEX, |index| {
        let filler = &mut index["records"][1]["records"][2];
        filler["byteOffset"] = json!(filler["byteOffset"].as_u64().unwrap() + 1);
    });
    assert!(matches!(error, LoadError::Index { .. }), "{error:?}");
    assert_names(&error, &path, &format!("tensor `filler`: {} bytes at offset", FILLER_LEN * 4));
    assert!(error.to_string().contains(&format!("do not fit in shard `{SHARD_1}`")), "{error}");

    // An offset so large that offset + nbytes overflows 64 bits.
    let (error, path) = open_with_json(INDEX, |index| {
        index["records"][0]["records"][0]["byteOffset"] = json!(u64::MAX - 1)
    });
    assert_names(
        &error,
        &path,
        &format!("tensor `embed.q_weight`: 16 bytes at offset {} do not fit", u64::MAX - 1),
    );

    // A shard whose declared size is smaller than its records: the index is refused
    // before the shard is read, so the message is about the index, not the file size.
    let (error, path) = open_with_json(INDEX, |index| index["records"][0]["nbytes"] = json!(8));
    assert_names(&error, &path, &format!("do not fit in shard `{SHARD_0}` of 8 bytes"));
}

#[test]
fn nonsense_dtype_and_format_combinations_are_refused() {
    let cases: [(&str, Value, &str); 5] = [
        ("dtype", json!("int4"), "`records[0].records[1].dtype`: unknown variant `int4`"),
        // serde_json's enum parser says only "expected value"; the path still points at it.
        ("dtype", json!(16), "`records[0].records[1].dtype`: expected value at line"),
        ("format", json!("f16-to-q8"), "tensor `norm.weight`: format `f16-to-q8` is not supported"),
        ("shape", json!([3, -1]), "`records[0].records[1].shape[1]`: invalid value: integer `-1`"),
        // float16 stored "as bf16" is not a thing: the format applies to float32
        // only, so 3 float16 values still take 6 bytes, and 3 bytes disagree.
        (
            "nbytes",
            json!(3),
            "tensor `norm.weight`: nbytes 3 disagrees with shape [3] of float16, which takes 6 bytes",
        ),
    ];
    for (field, value, expected) in cases {
        let (error, path) =
            open_with_json(INDEX, |index| index["records"][0]["records"][1][field] = value.clone());
        assert!(matches!(error, LoadError::Index { .. }), "{field}: {error:?}");
        assert_names(&error, &path, expected);
    }
    let (error, path) =
        open_with_json(INDEX, |index| index["records"][1]["format"] = json!("gguf"));
    assert_names(
        &error,
        &path,
        &format!("shard `{SHARD_1}`: format `gguf` is not supported (only `raw-shard`)"),
    );
}

#[test]
fn a_truncated_shard_is_reported_with_both_sizes() {
    let (error, path) = open_with(SHARD_1, |bytes| bytes[..bytes.len() / 2].to_vec());
    let LoadError::ShardSize { expected, actual, .. } = error else { panic!("{error:?}") };
    assert_eq!(actual * 2, expected);
    assert_names(&error, &path, &format!("{actual} bytes, but the index says {expected}"));
}

#[test]
fn a_shard_swapped_for_another_of_the_same_size_fails_the_md5() {
    // Same length, different bytes: only the md5 can tell.
    let (error, path) = open_with(SHARD_1, |bytes| bytes.iter().rev().copied().collect());
    assert!(matches!(error, LoadError::Md5Mismatch { .. }), "{error:?}");
    assert_names(&error, &path, "does not match the index");
}
