//! What the runtime's integration tests share.

use std::path::{Path, PathBuf};

/// The SmolLM2-135M-Instruct q4f16_1 artifact under `../shared`.
pub const SMOLLM2: &str = "data/smollm2-135m-instruct-q4f16_1-mlc";

/// A path under the project's `../shared` folder. When it is absent, says so
/// loudly; in CI (where it is always provided) that is a failure.
pub fn shared_path(relative: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared").join(relative);
    if path.exists() {
        return Some(path);
    }
    let banner = "!".repeat(78);
    eprintln!(
        "{banner}\n!! NOT RUN: ../shared/{relative} is missing.\n!! This test needs the project's shared data folder beside the repository.\n{banner}"
    );
    assert!(std::env::var_os("CI").is_none(), "../shared/{relative} is required in CI");
    None
}
