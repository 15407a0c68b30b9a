//! The artifact writer against the official converter's output and a
//! hand-worked sharding example.

use std::fs;
use std::path::{Path, PathBuf};

use mlc_loader::writer::{ArtifactWriter, DEFAULT_SHARD_CAP, WriteError, plan_shards};
use mlc_loader::{Artifact, CONFIG_FILE, DType, OpenOptions, TensorIndex};

fn tiny_qwen2() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/fixtures/tiny-qwen2/mlc")
}

fn open(dir: &Path) -> Artifact {
    Artifact::open(dir.to_str().unwrap(), OpenOptions::default()).unwrap()
}

/// The unquantized parameter count the converter divided by, recovered from
/// the index's metadata (`BitsPerParam = ParamBytes · 8 / count`).
fn source_parameters(index: &TensorIndex) -> u64 {
    let bytes = index.metadata["ParamBytes"].as_f64().unwrap();
    (bytes * 8.0 / index.metadata["BitsPerParam"].as_f64().unwrap()).round() as u64
}

/// Nothing is left next to `out` but `out` itself (no staging folder).
fn siblings(out: &Path) -> Vec<String> {
    fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn rewriting_the_official_artifact_reproduces_its_files() {
    let source = open(&tiny_qwen2());
    let temp = tempfile::tempdir().unwrap();
    let out = temp.path().join("tiny-qwen2");
    let mut writer = ArtifactWriter::create(&out, DEFAULT_SHARD_CAP).unwrap();
    // One shard, so its record order is the emission order.
    for name in source.index.names() {
        let tensor = source.tensor(name).unwrap();
        writer.add_tensor(name, tensor.shape, tensor.dtype, &tensor.bytes).unwrap();
    }
    writer.add_file(CONFIG_FILE, &fs::read(tiny_qwen2().join(CONFIG_FILE)).unwrap()).unwrap();
    let index = writer.finish(source_parameters(&source.index)).unwrap();

    assert_eq!(index, source.index);
    assert_eq!(
        fs::read(out.join("params_shard_0.bin")).unwrap(),
        fs::read(tiny_qwen2().join("params_shard_0.bin")).unwrap()
    );
    let official = fs::read_to_string(tiny_qwen2().join("tensor-cache.json")).unwrap();
    assert_eq!(
        fs::read_to_string(out.join("tensor-cache.json")).unwrap(),
        official,
        "the index text differs"
    );
    assert_eq!(fs::read_to_string(out.join("ndarray-cache.json")).unwrap(), official);
    assert_eq!(
        fs::read(out.join(CONFIG_FILE)).unwrap(),
        fs::read(tiny_qwen2().join(CONFIG_FILE)).unwrap()
    );
    assert!(!out.join("tensor-cache-b16.json").exists(), "no float32 tensor, no bf16 index");
    assert_eq!(siblings(&out), ["tiny-qwen2"]);
    assert_eq!(open(&out).index, source.index);
}

/// One tensor of the hand-worked example: name, elements, dtype.
struct Case(&'static str, usize, DType);

fn bytes_of(case: &Case) -> Vec<u8> {
    match case.2 {
        // Values bf16 holds exactly, so they survive the bf16 encoding.
        DType::F32 => (0..case.1).flat_map(|i| (i as f32 * 0.5 - 1.0).to_le_bytes()).collect(),
        _ => (0..case.1 * case.2.size_in_bytes()).map(|i| (i * 7 + case.0.len()) as u8).collect(),
    }
}

#[test]
fn shards_follow_the_official_rule_with_a_small_cap() {
    // Cap 100 bytes. Worked by hand, `open` being the open shard's bytes:
    //   a 40 → open 40;  b 40 → open 80;
    //   c 60: 80+60 ≥ 100 and 60 ≥ 50 → alone, file 0 (written before a, b);
    //   d float32[8], stored as bf16 = 16 bytes: 96 < 100 → offset 80;
    //   e 8: 104 ≥ 100, 8 < 50 → close [a b d] as file 1, e at 0 of a new shard;
    //   h 52: 8+52 < 100 → offset 8 (≥ cap/2 but it fits: it shares);
    //   f 120: alone, file 2;  g 4 → offset 60;  end: [e h g] is file 3.
    let cases = [
        Case("a", 10, DType::U32),
        Case("b", 20, DType::F16),
        Case("c", 15, DType::U32),
        Case("d", 8, DType::F32),
        Case("e", 4, DType::BF16),
        Case("h", 13, DType::U32),
        Case("f", 60, DType::F16),
        Case("g", 1, DType::U32),
    ];
    let expected: [&[(&str, u64)]; 4] = [
        &[("c", 0)],
        &[("a", 0), ("b", 40), ("d", 80)],
        &[("f", 0)],
        &[("e", 0), ("h", 8), ("g", 60)],
    ];

    let stored: Vec<u64> = cases
        .iter()
        .map(|c| (c.1 * if c.2 == DType::F32 { 2 } else { c.2.size_in_bytes() }) as u64)
        .collect();
    let plan: Vec<Vec<(&str, u64)>> = plan_shards(&stored, 100)
        .into_iter()
        .map(|shard| shard.into_iter().map(|(i, offset)| (cases[i].0, offset)).collect())
        .collect();
    assert_eq!(plan, expected);

    let temp = tempfile::tempdir().unwrap();
    let out = temp.path().join("small");
    let mut writer = ArtifactWriter::create(&out, 100).unwrap();
    for case in &cases {
        writer.add_tensor(case.0, &[case.1], case.2, &bytes_of(case)).unwrap();
    }
    writer
        .add_file(
            CONFIG_FILE,
            br#"{"model_type": "test", "quantization": "q4f16_1", "vocab_size": 1}"#,
        )
        .unwrap();
    writer.add_file("tokenizer/extra.txt", b"kept as given").unwrap();
    let index = writer.finish(1000).unwrap();

    let layout: Vec<Vec<(&str, u64)>> = index
        .shards
        .iter()
        .map(|s| s.records.iter().map(|r| (r.name.as_str(), r.byte_offset)).collect())
        .collect();
    assert_eq!(layout, expected);
    let files: Vec<(&str, u64)> =
        index.shards.iter().map(|s| (s.data_path.as_str(), s.nbytes)).collect();
    let names =
        ["params_shard_0.bin", "params_shard_1.bin", "params_shard_2.bin", "params_shard_3.bin"];
    assert_eq!(files, names.into_iter().zip([60, 96, 120, 64]).collect::<Vec<_>>());
    assert_eq!(index.metadata["ParamSize"], 8);
    assert_eq!(
        index.metadata["ParamBytes"], 356.0,
        "float32 counts 4 bytes per value, as stored before encoding"
    );
    assert_eq!(index.metadata["BitsPerParam"], 356.0 * 8.0 / 1000.0);
    assert_eq!(fs::read(out.join("tokenizer/extra.txt")).unwrap(), b"kept as given");

    let artifact = open(&out);
    for case in &cases {
        let tensor = artifact.tensor(case.0).unwrap();
        assert_eq!((tensor.shape, tensor.dtype), (&[case.1][..], case.2), "{}", case.0);
        assert_eq!(tensor.bytes.as_ref(), bytes_of(case), "{}", case.0);
    }
    assert_eq!(artifact.index.find("d").unwrap().1.nbytes, 16);

    // The float32 tensor makes the converter add a bf16 view of the index.
    let b16: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("tensor-cache-b16.json")).unwrap())
            .unwrap();
    let d = &b16["records"][1]["records"][2];
    assert_eq!(
        (d["name"].as_str(), d["dtype"].as_str(), d["format"].as_str()),
        (Some("d"), Some("bfloat16"), Some("raw"))
    );
    assert_eq!(b16["records"][1]["records"][0]["format"], "f32-to-bf16");
}

#[test]
fn a_failed_write_leaves_nothing_behind() {
    let temp = tempfile::tempdir().unwrap();
    let out = temp.path().join("model");

    let mut writer = ArtifactWriter::create(&out, DEFAULT_SHARD_CAP).unwrap();
    writer.add_tensor("w", &[2], DType::U32, &[0; 8]).unwrap();
    let error = writer.add_tensor("w", &[2], DType::U32, &[0; 8]).unwrap_err();
    assert_eq!(error.to_string(), "tensor `w`: is added twice");
    let error = writer.add_tensor("x", &[3], DType::F16, &[0; 8]).unwrap_err();
    assert_eq!(error.to_string(), "tensor `x`: 8 bytes do not hold shape [3] of float16");
    assert!(
        writer
            .add_tensor("z", &[0, 4], DType::F16, &[])
            .unwrap_err()
            .to_string()
            .contains("has no elements")
    );
    for name in ["../escape", "tensor-cache.json", "params_shard_9.bin"] {
        assert!(
            matches!(writer.add_file(name, b""), Err(WriteError::InvalidFile { .. })),
            "{name}"
        );
    }
    assert!(matches!(writer.finish(1), Err(WriteError::MissingConfig)));
    assert!(!out.exists());
    assert!(siblings(&out).is_empty(), "{:?}", siblings(&out));

    let writer = ArtifactWriter::create(&out, DEFAULT_SHARD_CAP).unwrap();
    drop(writer);
    assert!(siblings(&out).is_empty(), "{:?}", siblings(&out));

    fs::create_dir(&out).unwrap();
    fs::write(out.join("keep"), b"").unwrap();
    let error = ArtifactWriter::create(&out, DEFAULT_SHARD_CAP).err().unwrap();
    assert!(matches!(&error, WriteError::Exists { path } if path == &out), "{error:?}");
    assert!(
        error.to_string().ends_with("model: already exists and is not an empty folder"),
        "{error}"
    );
    assert_eq!(fs::read_dir(&out).unwrap().count(), 1, "the existing folder is untouched");
}
