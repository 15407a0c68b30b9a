//! Building artifacts from files held in memory (what the browser build gets).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use mlc_loader::{
    Artifact, LoadError, MEMORY_SOURCE, OpenOptions, Progress, ProgressCallback, ProgressPhase,
};

/// The official tiny Qwen2 artifact of the conformance suite.
fn tiny_qwen2() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/fixtures/tiny-qwen2/mlc")
}

/// Every file of `dir`, keyed by its name.
fn files_of(dir: &Path) -> HashMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (entry.file_name().into_string().unwrap(), fs::read(entry.path()).unwrap())
        })
        .collect()
}

#[test]
fn files_in_memory_give_the_same_artifact_as_the_folder() {
    let dir = tiny_qwen2();
    let opened = Artifact::open(dir.to_str().unwrap(), OpenOptions::default()).unwrap();
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Progress>::new()));
    let sink = std::sync::Arc::clone(&events);
    let callback: ProgressCallback =
        Box::new(move |event: &Progress| sink.lock().unwrap().push(event.clone()));
    let options = OpenOptions { progress: Some(callback), ..OpenOptions::default() };
    let memory = Artifact::from_files(files_of(&dir), options).unwrap();

    assert_eq!(memory.config, opened.config);
    assert_eq!(memory.index, opened.index);
    assert_eq!(memory.quantization(), opened.quantization());
    assert_eq!((memory.source(), memory.dir()), (MEMORY_SOURCE, None));
    let names: Vec<&str> = opened.index.names().collect();
    assert!(!names.is_empty());
    for name in names {
        let (a, b) = (memory.tensor(name).unwrap(), opened.tensor(name).unwrap());
        assert_eq!((a.shape, a.dtype, a.bytes), (b.shape, b.dtype, b.bytes), "{name}");
    }
    // The index has md5 sums: each shard is verified, then loaded.
    let phases: Vec<ProgressPhase> =
        events.lock().unwrap().iter().map(|event| event.phase).collect();
    assert_eq!(phases, [ProgressPhase::Verify, ProgressPhase::Load]);
    // Other files stay readable, as they are from the folder.
    assert_eq!(
        memory.file("mlc-chat-config.json").unwrap(),
        opened.file("mlc-chat-config.json").unwrap()
    );
    assert!(
        matches!(memory.file("tokenizer.json"), Err(LoadError::MissingFile { file }) if file == "tokenizer.json")
    );
}

#[test]
fn files_in_memory_are_checked_like_files_on_disk() {
    let mut files = files_of(&tiny_qwen2());
    files.get_mut("params_shard_0.bin").unwrap()[0] ^= 1;
    let error = Artifact::from_files(files.clone(), OpenOptions::default()).unwrap_err();
    assert!(
        matches!(&error, LoadError::Md5Mismatch { file, .. } if file == "params_shard_0.bin"),
        "{error:?}"
    );
    let unchecked = OpenOptions { verify_md5: false, ..OpenOptions::default() };
    assert!(Artifact::from_files(files.clone(), unchecked).is_ok());

    files.get_mut("params_shard_0.bin").unwrap().pop();
    let error = Artifact::from_files(files.clone(), OpenOptions::default()).unwrap_err();
    assert!(matches!(error, LoadError::ShardSize { .. }), "{error:?}");

    files.remove("params_shard_0.bin");
    let error = Artifact::from_files(files.clone(), OpenOptions::default()).unwrap_err();
    assert!(
        matches!(&error, LoadError::MissingFile { file } if file == "params_shard_0.bin"),
        "{error:?}"
    );

    // The older index name is accepted; without any index the error names both.
    let index = files.remove("tensor-cache.json").unwrap();
    let error = Artifact::from_files(files.clone(), OpenOptions::default()).unwrap_err();
    assert_eq!(error.to_string(), "tensor-cache.json (nor ndarray-cache.json): no such file");
    files.insert("ndarray-cache.json".to_string(), index);
    let error = Artifact::from_files(files, OpenOptions::default()).unwrap_err();
    assert!(
        matches!(&error, LoadError::MissingFile { file } if file == "params_shard_0.bin"),
        "{error:?}"
    );
}
