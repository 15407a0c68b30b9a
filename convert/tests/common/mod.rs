//! Fixture access shared by the GGUF test files.

use std::path::{Path, PathBuf};

/// `conformance/fixtures/gguf`, made by conformance/tools/make_gguf_fixtures.py.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/fixtures/gguf")
}

/// A raw little-endian float32 file.
pub fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}
