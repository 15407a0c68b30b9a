//! What the runtime's integration tests share.

use std::path::{Path, PathBuf};

/// The SmolLM2-135M-Instruct q4f16_1 reference artifact under `../shared`
/// (converted from the model's GGUF by MLC's rules, with reference replies
/// beside it; docs/gguf.md, "Against the shared reference artifact").
pub const SMOLLM2: &str = "data/smollm2-135m-instruct-q4f16_1-mlc";

/// A path under `../shared`: a `shared/` folder beside the repository checkout
/// holding the project's reference material (official artifacts and reference
/// outputs too large or not ours to commit). A fresh clone does not have it.
/// When the path is absent, says so loudly on stderr and returns `None`, and
/// the calling test skips its case; with the `CI` environment variable set the
/// absence is a failure instead.
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
