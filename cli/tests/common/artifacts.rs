//! Running the `mlc-wgpu` binary on the tiny artifacts of
//! `mlc_conformance::artifacts` (re-exported here). Shared by the CLI test
//! files (included with `#[path]`).

#![allow(dead_code)] // Each including test file uses its own subset.

use std::process::{Command, Output};

pub use mlc_conformance::artifacts::*;

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
