//! A GGUF file is untrusted input: damaged and hostile files give typed
//! errors naming the position, never a panic or an unbounded allocation.

use std::path::{Path, PathBuf};

use mlc_convert::ConvertError;
use mlc_convert::gguf::{GgufFile, parse_header_bytes, read_header};

fn fixture(name: &str) -> Vec<u8> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/fixtures/gguf").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn malformed(result: Result<impl std::fmt::Debug, ConvertError>, expect: &str) -> String {
    match result {
        Err(ConvertError::Malformed { message, .. }) => {
            assert!(message.contains(expect), "message {message:?} does not mention {expect:?}");
            assert!(
                message.contains("at byte") || message.contains("file offset"),
                "no position in {message:?}"
            );
            message
        }
        other => panic!("expected Malformed({expect}), got {other:?}"),
    }
}

/// Byte position just after the first occurrence of `needle`.
fn after(bytes: &[u8], needle: &[u8]) -> usize {
    bytes.windows(needle.len()).position(|w| w == needle).unwrap() + needle.len()
}

fn write_temp(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

#[test]
fn every_truncation_is_malformed() {
    let bytes = fixture("metadata.gguf");
    let header = parse_header_bytes(&bytes).unwrap();
    let data_end =
        header.tensors.iter().map(|t| header.data_offset + t.offset + t.n_bytes).max().unwrap()
            as usize;
    for len in 0..data_end {
        let result = parse_header_bytes(&bytes[..len]);
        assert!(
            matches!(result, Err(ConvertError::Malformed { .. })),
            "prefix of {len} bytes: {result:?}"
        );
    }
    // Padding after the last tensor is not data: the file is complete without it.
    parse_header_bytes(&bytes[..data_end]).unwrap();

    // The same through a file, and a truncation inside the metadata says so.
    let (_dir, path) = write_temp(&bytes[..100]);
    let message = malformed(GgufFile::open(&path), "truncated");
    assert!(message.contains("at byte"), "{message}");
}

#[test]
fn bad_magic_is_malformed() {
    let mut bytes = fixture("metadata.gguf");
    bytes[0..4].copy_from_slice(b"GGML");
    malformed(parse_header_bytes(&bytes), "magic");
    malformed(parse_header_bytes(b""), "truncated");
}

#[test]
fn version_two_reads_and_other_versions_do_not() {
    let mut bytes = fixture("metadata.gguf");
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(parse_header_bytes(&bytes).unwrap().version, 2);
    bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert!(matches!(parse_header_bytes(&bytes), Err(ConvertError::Unsupported { .. })));
    bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
    match parse_header_bytes(&bytes) {
        Err(ConvertError::Unsupported { what, .. }) => {
            assert!(what.contains("big-endian"), "{what}")
        }
        other => panic!("{other:?}"),
    }
    bytes[4..8].copy_from_slice(&77u32.to_le_bytes());
    malformed(parse_header_bytes(&bytes), "version 77");
}

#[test]
fn tensor_data_beyond_the_file_is_malformed() {
    let bytes = fixture("metadata.gguf");
    // "second": name, n_dims u32 = 1, one u64 dim, type u32, then the offset u64.
    let offset_at = after(&bytes, b"second") + 4 + 8 + 4;
    let mut patched = bytes.clone();
    patched[offset_at..offset_at + 8].copy_from_slice(&(1u64 << 20).to_le_bytes());
    malformed(parse_header_bytes(&patched), "beyond the end of the file");
    let (_dir, path) = write_temp(&patched);
    malformed(GgufFile::open(&path), "beyond the end of the file");

    // An offset so large that offset + size overflows.
    patched[offset_at..offset_at + 8].copy_from_slice(&(u64::MAX - 63).to_le_bytes());
    malformed(parse_header_bytes(&patched), "beyond the end of the file");

    // A misaligned offset.
    patched[offset_at..offset_at + 8].copy_from_slice(&65u64.to_le_bytes());
    malformed(parse_header_bytes(&patched), "alignment");
}

#[test]
fn counts_that_cannot_fit_or_overflow_are_malformed() {
    let bytes = fixture("metadata.gguf");
    // Header: magic, version, tensor count at 8, metadata count at 16.
    for (at, what) in [(8, "tensor count"), (16, "metadata count")] {
        let mut patched = bytes.clone();
        patched[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        malformed(parse_header_bytes(&patched), what);
    }
    // A string length of 2^64 − 1 (the first key's length, at 24).
    let mut patched = bytes.clone();
    patched[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    malformed(parse_header_bytes(&patched), "length");
    // The same through a reader of unknown length: no allocation up front,
    // the bytes simply run out.
    let result = read_header(&mut &patched[..], None, Path::new("stream"));
    malformed(result, "truncated");

    // An array claiming 2^62 elements.
    let count_at = after(&bytes, b"test.array.u64") + 4 + 4;
    let mut patched = bytes.clone();
    patched[count_at..count_at + 8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    malformed(parse_header_bytes(&patched), "cannot fit");
    assert!(matches!(
        read_header(&mut &patched[..], None, Path::new("stream")),
        Err(ConvertError::Malformed { .. })
    ));

    // Dimensions whose product overflows: "first" is [4, 2]; make them [2^40, 2^40].
    let dims_at = after(&bytes, b"first") + 4;
    let mut patched = bytes.clone();
    patched[dims_at..dims_at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    patched[dims_at + 8..dims_at + 16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    malformed(parse_header_bytes(&patched), "overflow");

    // Five dimensions (ggml allows four).
    let mut patched = bytes.clone();
    patched[dims_at - 4..dims_at].copy_from_slice(&5u32.to_le_bytes());
    malformed(parse_header_bytes(&patched), "dimensions");
}

#[test]
fn unknown_value_types_and_bad_values_are_malformed() {
    let bytes = fixture("metadata.gguf");
    // The type of `test.u8` follows its key.
    let type_at = after(&bytes, b"test.u8");
    let mut patched = bytes.clone();
    patched[type_at..type_at + 4].copy_from_slice(&13u32.to_le_bytes());
    malformed(parse_header_bytes(&patched), "unknown value type 13");

    // An array of an unknown element type.
    let elem_at = after(&bytes, b"test.array.u8") + 4;
    let mut patched = bytes.clone();
    patched[elem_at..elem_at + 4].copy_from_slice(&99u32.to_le_bytes());
    malformed(parse_header_bytes(&patched), "unknown array element type 99");

    // A boolean that is neither 0 nor 1.
    let bool_at = after(&bytes, b"test.bool") + 4;
    let mut patched = bytes.clone();
    patched[bool_at] = 2;
    malformed(parse_header_bytes(&patched), "not 0 or 1");

    // A string that is not UTF-8.
    let string_at = after(&bytes, b"test.string") + 4 + 8;
    let mut patched = bytes.clone();
    patched[string_at] = 0xff;
    malformed(parse_header_bytes(&patched), "UTF-8");

    // A duplicate key (rename test.i8 to test.u8).
    let mut patched = bytes.clone();
    let key_at = after(&bytes, b"test.i8") - 2;
    patched[key_at] = b'u';
    malformed(parse_header_bytes(&patched), "duplicate metadata key");

    // general.alignment that is not a power of two.
    let align_at = after(&bytes, b"general.alignment") + 4;
    let mut patched = bytes.clone();
    patched[align_at..align_at + 4].copy_from_slice(&48u32.to_le_bytes());
    malformed(parse_header_bytes(&patched), "power of two");
}

#[test]
fn unsupported_tensor_types_are_named() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/fixtures/gguf");
    let mut file = GgufFile::open(&dir.join("unsupported.gguf")).unwrap();
    match file.read_f32("iq2") {
        Err(ConvertError::Unsupported { what, .. }) => {
            assert!(what.contains("IQ2_XXS") && what.contains("iq2"), "{what}")
        }
        other => panic!("{other:?}"),
    }
    // A type id ggml never defined.
    let mut bytes = fixture("unsupported.gguf");
    let type_at = after(&bytes, b"iq2") + 4 + 8 + 8;
    assert_eq!(bytes[type_at..type_at + 4], 16u32.to_le_bytes(), "IQ2_XXS is type 16");
    bytes[type_at..type_at + 4].copy_from_slice(&99u32.to_le_bytes());
    match parse_header_bytes(&bytes) {
        Err(ConvertError::Unsupported { what, .. }) => {
            assert!(what.contains("99") && what.contains("iq2"), "{what}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap stand-in for the fuzzer: every single-byte corruption of the
    // header of a valid file, parsed from memory.
    let bytes = fixture("metadata.gguf");
    let header_end = parse_header_bytes(&bytes).unwrap().data_offset as usize;
    for at in 0..header_end {
        for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut patched = bytes.clone();
            patched[at] = value;
            let _ = parse_header_bytes(&patched);
        }
    }
}
