//! The `mlc-wgpu` command-line contract, run as a user runs it, on the tiny
//! official artifacts in `conformance/fixtures/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(model: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/fixtures").join(model)
}

fn mlc_wgpu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlc-wgpu")).args(args).output().expect("run mlc-wgpu")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A fresh copy of a tiny artifact whose config is edited by `edit`.
fn edited_copy(model: &str, edit: impl FnOnce(&mut serde_json::Value)) -> tempdir::Dir {
    let dir = tempdir::Dir::new();
    let source = fixture(model).join("mlc");
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let config_path = dir.path().join("mlc-chat-config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    dir
}

/// A temporary folder removed on drop (kept minimal to avoid a dependency).
mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Dir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!("mlc-wgpu-cli-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst)));
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

fn golden_prompt(model: &str, index: usize) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(model).join("golden/index.json")).unwrap();
    let golden: serde_json::Value = serde_json::from_str(&text).unwrap();
    golden["prompts"][index].clone()
}

fn ids(value: &serde_json::Value) -> String {
    value.as_array().unwrap().iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",")
}

#[test]
fn logits_command_writes_the_reference_logits() {
    let model = fixture("tiny-llama").join("mlc");
    let prompt = golden_prompt("tiny-llama", 2);
    let out = tempdir::Dir::new();
    let out_file = out.path().join("logits.f32");
    let output = mlc_wgpu(&[
        "logits", "--model", model.to_str().unwrap(), "--tokens", &ids(&prompt["token_ids"]),
        "--device", "cpu", "--out", out_file.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let got: Vec<f32> = std::fs::read(&out_file).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let want: Vec<f32> = std::fs::read(fixture("tiny-llama").join("golden").join(prompt["last_logits_file"].as_str().unwrap()))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(got.len(), 32000);
    let max_diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max_diff < 1e-3, "max |Δ| {max_diff}");
}

#[test]
fn generate_command_prints_the_greedy_tokens_as_json() {
    let model = fixture("tiny-qwen2").join("mlc");
    let prompt = golden_prompt("tiny-qwen2", 1);
    let output = mlc_wgpu(&[
        "generate", "--model", model.to_str().unwrap(), "--tokens", &ids(&prompt["token_ids"]),
        "--device", "cpu", "--max-tokens", "16", "--greedy", "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["tokens"], prompt["greedy_16"]);
}

#[test]
fn inspect_prints_the_config_and_the_tensor_table() {
    let model = fixture("tiny-qwen2").join("mlc");
    let output = mlc_wgpu(&["inspect", "--model", model.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("model_type:      qwen2"), "{stdout}");
    assert!(stdout.contains("model.layers.1.self_attn.c_attn.bias"), "{stdout}");
    assert!(stdout.contains("[151936, 8]"), "{stdout}");
}

/// Runs a failing command and checks it fails cleanly with a message containing `expected`.
fn assert_clean_failure(args: &[&str], expected: &str) {
    let output = mlc_wgpu(args);
    let err = stderr(&output);
    assert!(!output.status.success(), "expected failure for {args:?}");
    assert!(err.contains("error:") && err.contains(expected), "stderr for {args:?} lacks {expected:?}:\n{err}");
    assert!(!err.contains("panicked") && !err.contains("internal error"), "panic for {args:?}:\n{err}");
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let tiny = fixture("tiny-qwen2").join("mlc");
    let tiny = tiny.to_str().unwrap();
    assert_clean_failure(&["logits", "--model", "/nonexistent/model", "--tokens", "1", "--device", "cpu", "--out", "/tmp/x"], "/nonexistent/model");
    // A WebLLM model id resolves to its official URL; offline with an empty cache it says so.
    let empty_cache = tempdir::Dir::new();
    assert_clean_failure(
        &["inspect", "--model", "Qwen2.5-0.5B-Instruct-q4f16_1-MLC", "--offline", "--cache-dir", empty_cache.path().to_str().unwrap()],
        "mlc-ai/Qwen2.5-0.5B-Instruct-q4f16_1-MLC",
    );
    assert_clean_failure(&["generate", "--model", tiny, "--tokens", "151936", "--device", "cpu", "--greedy"], "out of range");

    let q3 = edited_copy("tiny-qwen2", |c| c["quantization"] = "q3f16_1".into());
    assert_clean_failure(&["inspect", "--model", q3.path().to_str().unwrap()], "q3f16_1");

    let rwkv = edited_copy("tiny-qwen2", |c| c["model_type"] = "rwkv6".into());
    assert_clean_failure(
        &["generate", "--model", rwkv.path().to_str().unwrap(), "--tokens", "1", "--device", "cpu", "--greedy"],
        "unsupported model_type `rwkv6`",
    );

    let wrong_width = edited_copy("tiny-qwen2", |c| c["model_config"]["intermediate_size"] = 320.into());
    assert_clean_failure(
        &["generate", "--model", wrong_width.path().to_str().unwrap(), "--tokens", "1", "--device", "cpu", "--greedy"],
        "gate_up_proj",
    );

    let small_window = edited_copy("tiny-qwen2", |c| c["context_window_size"] = 4.into());
    assert_clean_failure(
        &["generate", "--model", small_window.path().to_str().unwrap(), "--tokens", "1,2,3", "--device", "cpu", "--greedy", "--max-tokens", "5"],
        "context window exceeded",
    );
}
