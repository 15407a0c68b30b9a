//! The tiny official artifacts of `conformance/fixtures/` and doctored copies
//! of them in temporary folders: what the engine's, the chat layer's and the
//! command line's integration tests start from.

use std::path::{Path, PathBuf};

pub use tempfile::TempDir;

/// The folder of a fixture under `conformance/fixtures/` (e.g. `tiny-qwen2`, `tokenizers`).
pub fn fixture(model: &str) -> PathBuf {
    crate::fixtures_dir().join(model)
}

/// A fresh copy of a tiny artifact's `mlc` folder.
pub fn artifact_copy(model: &str) -> TempDir {
    let dir = temp_dir();
    let source = fixture(model).join("mlc");
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

/// tiny-qwen2 with a tokenizer, for the commands that take text. The artifact
/// ships none (`tokenizer_files` is empty: it was converted for logits tests),
/// but its 151936-row vocabulary is Qwen2.5's, so Qwen2.5-0.5B-Instruct's
/// tokenizer from the tokenizer fixtures fits it.
pub fn tiny_qwen2_with_tokenizer() -> TempDir {
    let dir = artifact_copy("tiny-qwen2");
    let tokenizer = fixture("tokenizers").join("qwen2.5-0.5b-instruct.tokenizer.json");
    std::fs::copy(tokenizer, dir.path().join("tokenizer.json")).unwrap();
    dir
}

/// Rewrites the JSON file at `path` through `edit`.
pub fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
}

/// A fresh copy of a tiny artifact whose config is edited by `edit`.
pub fn edited_copy(model: &str, edit: impl FnOnce(&mut serde_json::Value)) -> TempDir {
    let dir = artifact_copy(model);
    edit_json(&dir.path().join("mlc-chat-config.json"), edit);
    dir
}

/// A fresh temporary folder, removed with its contents when dropped.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new().prefix("mlc-wgpu-test-").tempdir().expect("create a temporary folder")
}
