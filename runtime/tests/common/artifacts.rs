//! The tiny official artifacts of `conformance/fixtures/`, doctored copies of
//! them in temporary folders, and running the `mlc-wgpu` binary on them.
//! Shared by the CLI test files (included with `#[path]`).

#![allow(dead_code)] // Each including test file uses its own subset.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn fixture(model: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/fixtures").join(model)
}

pub fn mlc_wgpu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlc-wgpu")).args(args).output().expect("run mlc-wgpu")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs a failing command and checks it fails cleanly with a message containing `expected`.
pub fn assert_clean_failure(args: &[&str], expected: &str) {
    let output = mlc_wgpu(args);
    let err = stderr(&output);
    assert!(!output.status.success(), "expected failure for {args:?}");
    assert!(
        err.contains("error:") && err.contains(expected),
        "stderr for {args:?} lacks {expected:?}:\n{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "panic for {args:?}:\n{err}"
    );
}

/// A fresh copy of a tiny artifact's `mlc` folder.
pub fn artifact_copy(model: &str) -> tempdir::Dir {
    let dir = tempdir::Dir::new();
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
pub fn tiny_qwen2_with_tokenizer() -> tempdir::Dir {
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
pub fn edited_copy(model: &str, edit: impl FnOnce(&mut serde_json::Value)) -> tempdir::Dir {
    let dir = artifact_copy(model);
    edit_json(&dir.path().join("mlc-chat-config.json"), edit);
    dir
}

/// A temporary folder removed on drop (kept minimal to avoid a dependency).
pub mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Dir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "mlc-wgpu-cli-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
