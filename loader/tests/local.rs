//! Opening artifacts from local folders.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use mlc_loader::{Artifact, LoadError, OpenOptions, ProgressPhase, Quantization};

fn open(dir: &Path) -> Result<Artifact, LoadError> {
    Artifact::open(dir.to_str().unwrap(), OpenOptions::default())
}

fn synthetic_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &synthetic_artifact());
    dir
}

#[test]
fn opens_a_folder_in_place_and_decodes_every_record() {
    let dir = synthetic_dir();
    let (callback, events) = recorder();
    let options = OpenOptions { progress: Some(callback), ..OpenOptions::default() };
    let artifact = Artifact::open(dir.path().to_str().unwrap(), options).unwrap();

    assert_eq!(artifact.dir(), Some(dir.path()));
    assert_eq!(artifact.source(), dir.path().to_str().unwrap());
    assert_eq!(artifact.quantization(), Quantization::Q4F16_1);
    assert_eq!(artifact.config.conv_template.as_ref().unwrap().stop_token_ids, [3]);
    assert_synthetic_tensors(&artifact);

    // The float16 record of 6 bytes leaves the next uint32 record at 2 mod 4.
    let (shard, odd) = artifact.index.find("odd.u32").unwrap();
    assert_eq!((shard, odd.byte_offset % 4), (0, 2));
    // A quantized weight and its scale may live in different shards.
    assert_eq!(artifact.index.find("embed.q_weight").unwrap().0, 0);
    assert_eq!(artifact.index.find("embed.q_scale").unwrap().0, 1);
    assert!(artifact.has_tensor("filler") && !artifact.has_tensor("missing"));

    let events = events.lock().unwrap();
    assert!(events.iter().all(|e| e.phase != ProgressPhase::Download && e.file_count == 3));
    for (index, shard) in [(2, SHARD_0), (3, SHARD_1)] {
        let phases: Vec<ProgressPhase> =
            events.iter().filter(|e| e.file == shard).map(|e| e.phase).collect();
        assert_eq!(phases, [ProgressPhase::Verify, ProgressPhase::Load], "{shard}");
        assert!(events.iter().filter(|e| e.file == shard).all(|e| e.file_index == index));
    }
}

#[test]
fn missing_tensor_is_a_typed_error() {
    let dir = synthetic_dir();
    let artifact = open(dir.path()).unwrap();
    let error = artifact.tensor("model.layers.9.mlp.down_proj.q_weight").unwrap_err();
    assert!(
        matches!(&error, LoadError::MissingTensor { name } if name == "model.layers.9.mlp.down_proj.q_weight")
    );
    assert_eq!(
        error.to_string(),
        "no tensor named `model.layers.9.mlp.down_proj.q_weight` in the weight index"
    );
}

#[test]
fn shard_of_the_wrong_size_is_reported() {
    let dir = synthetic_dir();
    let shard = dir.path().join(SHARD_1);
    let mut bytes = fs::read(&shard).unwrap();
    let expected = bytes.len() as u64;
    bytes.push(0);
    fs::write(&shard, &bytes).unwrap();
    let error = open(dir.path()).unwrap_err();
    let LoadError::ShardSize { file, expected: want, actual } = &error else { panic!("{error:?}") };
    assert_eq!((PathBuf::from(file), *want, *actual), (shard, expected, expected + 1));
    assert!(error.to_string().contains(&format!(
        "params_shard_1.bin: {} bytes, but the index says {expected}",
        expected + 1
    )));
}

#[test]
fn md5_mismatch_is_reported_unless_disabled() {
    let dir = synthetic_dir();
    let shard = dir.path().join(SHARD_0);
    let mut bytes = fs::read(&shard).unwrap();
    bytes[0] ^= 1;
    fs::write(&shard, &bytes).unwrap();
    let error = open(dir.path()).unwrap_err();
    assert!(
        matches!(&error, LoadError::Md5Mismatch { file, .. } if file.ends_with(SHARD_0)),
        "{error:?}"
    );

    let artifact = Artifact::open(
        dir.path().to_str().unwrap(),
        OpenOptions { verify_md5: false, ..OpenOptions::default() },
    )
    .unwrap();
    assert_eq!(
        artifact.tensor("embed.q_weight").unwrap().to_u32_vec().unwrap()[0],
        Q_WEIGHT[0] ^ 1
    );
}

#[test]
fn falls_back_to_ndarray_cache_json() {
    let dir = synthetic_dir();
    fs::rename(dir.path().join("tensor-cache.json"), dir.path().join("ndarray-cache.json"))
        .unwrap();
    assert_synthetic_tensors(&open(dir.path()).unwrap());

    fs::remove_file(dir.path().join("ndarray-cache.json")).unwrap();
    let error = open(dir.path()).unwrap_err();
    let LoadError::MissingFile { file } = &error else { panic!("{error:?}") };
    assert!(file.contains("tensor-cache.json (nor ndarray-cache.json)"), "{file}");
}

#[test]
fn missing_files_are_named() {
    for (missing, expected) in [
        ("mlc-chat-config.json", "mlc-chat-config.json"),
        (TOKENIZER, TOKENIZER),
        (SHARD_1, SHARD_1),
    ] {
        let dir = synthetic_dir();
        fs::remove_file(dir.path().join(missing)).unwrap();
        let error = open(dir.path()).unwrap_err();
        let LoadError::MissingFile { file } = &error else { panic!("{missing}: {error:?}") };
        assert_eq!(PathBuf::from(file), dir.path().join(expected));
    }
}

#[test]
fn unsupported_quantization_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = synthetic_artifact();
    set_quantization(&mut files, "q4f16_0");
    write_files(dir.path(), &files);
    let error = open(dir.path()).unwrap_err();
    assert!(
        matches!(&error, LoadError::UnsupportedQuantization { name, .. } if name == "q4f16_0"),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("unsupported quantization `q4f16_0` (supported: q4f16_1"),
        "{error}"
    );
}

#[test]
fn malformed_metadata_names_the_file() {
    let dir = synthetic_dir();
    let config = dir.path().join("mlc-chat-config.json");
    fs::write(&config, "{\"model_type\": \"llama\",\n \"quantization\": 4}").unwrap();
    let error = open(dir.path()).unwrap_err();
    assert!(
        matches!(&error, LoadError::Config { file, .. } if Path::new(file) == config),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("`quantization`: invalid type: integer `4`, expected a string at line 2"),
        "{error}"
    );

    let dir = synthetic_dir();
    let index = dir.path().join("tensor-cache.json");
    let text = fs::read_to_string(&index).unwrap().replace("\"nbytes\": 6,", "\"nbytes\": 7,");
    fs::write(&index, text).unwrap();
    let error = open(dir.path()).unwrap_err();
    assert!(
        matches!(&error, LoadError::Index { file, .. } if Path::new(file) == index),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("tensor `norm.weight`: nbytes 7 disagrees with shape [3] of float16"),
        "{error}"
    );

    let dir = synthetic_dir();
    let config = dir.path().join("mlc-chat-config.json");
    let text =
        fs::read_to_string(&config).unwrap().replace("\"tokenizer.json\"", "\"../tokenizer.json\"");
    fs::write(&config, text).unwrap();
    let error = open(dir.path()).unwrap_err();
    assert!(
        error.to_string().contains(
            "`tokenizer_files`: file name \"../tokenizer.json\" is not a plain relative path"
        ),
        "{error}"
    );
}

/// The real tiny-qwen2 conformance artifact, when the checkout has it.
#[test]
fn opens_the_conformance_artifact() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/fixtures/tiny-qwen2/mlc");
    if !dir.join("params_shard_0.bin").is_file() {
        eprintln!("skipped: {} is absent", dir.display());
        return;
    }
    let artifact = open(&dir).unwrap();
    assert_eq!(
        (artifact.config.model_type.as_str(), artifact.quantization()),
        ("qwen2", Quantization::Q4F16_1)
    );
    assert_eq!(artifact.index.names().count(), 25);
    let q_weight = artifact.tensor("model.embed_tokens.q_weight").unwrap();
    assert_eq!(
        (q_weight.shape, q_weight.to_u32_vec().unwrap().len()),
        (&[151936, 8][..], 151936 * 8)
    );
    let scales = artifact.tensor("model.embed_tokens.q_scale").unwrap().to_f32_vec().unwrap();
    assert_eq!(scales.len(), 151936 * 2);
    assert!(scales.iter().all(|s| s.is_finite() && *s >= 0.0) && scales.iter().any(|s| *s > 0.0));
    for name in artifact.index.names() {
        let tensor = artifact.tensor(name).unwrap();
        assert_eq!(tensor.bytes.len(), tensor.numel() * tensor.dtype.size_in_bytes(), "{name}");
    }
}
