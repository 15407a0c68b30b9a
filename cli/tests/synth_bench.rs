//! `mlc-wgpu synth` and `mlc-wgpu bench`, run as a user runs them, on the
//! tiny official artifact. No speed is asserted: only that every figure is
//! there and positive.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn tiny_qwen2() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/fixtures/tiny-qwen2/mlc")
}

fn mlc_wgpu(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlc-wgpu"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run mlc-wgpu")
}

fn succeed(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = mlc_wgpu(args, env);
    assert!(
        output.status.success(),
        "mlc-wgpu {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A folder under the system's temp folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir()
            .join(format!("mlc-wgpu-synth-bench-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The index without its shards' `md5sum`s: the layout of an artifact.
fn layout_of(index: &Path) -> Value {
    let mut index = read_json(index);
    for shard in index["records"].as_array_mut().unwrap() {
        shard.as_object_mut().unwrap().remove("md5sum");
    }
    index
}

fn synth(out: &Path, seed: &str) -> Output {
    let layout = tiny_qwen2().join("tensor-cache.json");
    let config = tiny_qwen2().join("mlc-chat-config.json");
    let args = [
        "synth",
        "--layout",
        layout.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--seed",
        seed,
    ];
    mlc_wgpu(&args, &[])
}

#[test]
fn synth_writes_a_runnable_artifact_with_the_layout_asked_for() {
    let temp = TempDir::new("synth");
    let out = temp.0.join("model");
    let output = synth(&out, "7");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    assert_eq!(
        layout_of(&out.join("tensor-cache.json")),
        layout_of(&tiny_qwen2().join("tensor-cache.json"))
    );
    assert_eq!(
        std::fs::read(out.join("ndarray-cache.json")).unwrap(),
        std::fs::read(out.join("tensor-cache.json")).unwrap()
    );
    assert_eq!(
        std::fs::read(out.join("mlc-chat-config.json")).unwrap(),
        std::fs::read(tiny_qwen2().join("mlc-chat-config.json")).unwrap()
    );
    let shard = std::fs::read(out.join("params_shard_0.bin")).unwrap();
    assert_ne!(
        shard,
        std::fs::read(tiny_qwen2().join("params_shard_0.bin")).unwrap(),
        "the weights are random, not copied"
    );

    // It opens (md5s checked), and the random weights give finite logits all the way.
    let model = out.to_str().unwrap();
    let stdout = succeed(
        &[
            "generate",
            "--model",
            model,
            "--tokens",
            "1,2,3",
            "--device",
            "cpu",
            "--greedy",
            "--ignore-eos",
            "--max-tokens",
            "8",
            "--json",
        ],
        &[],
    );
    let tokens: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(tokens["tokens"].as_array().unwrap().len(), 8, "{stdout}");

    // The same seed writes the same bytes; another seed does not.
    let again = temp.0.join("again");
    assert!(synth(&again, "7").status.success());
    assert_eq!(std::fs::read(again.join("params_shard_0.bin")).unwrap(), shard);
    let other = temp.0.join("other");
    assert!(synth(&other, "8").status.success());
    assert_ne!(std::fs::read(other.join("params_shard_0.bin")).unwrap(), shard);

    // An existing artifact is never overwritten.
    let output = synth(&out, "9");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("already exists and is not an empty folder"), "{stderr}");
    assert_eq!(std::fs::read(out.join("params_shard_0.bin")).unwrap(), shard);
}

#[test]
fn synth_rejects_a_layout_that_is_not_an_index() {
    let temp = TempDir::new("bad-layout");
    let config = tiny_qwen2().join("mlc-chat-config.json");
    let out = temp.0.join("model");
    let output = mlc_wgpu(
        &[
            "synth",
            "--layout",
            config.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("reading the layout") && stderr.contains("mlc-chat-config.json"),
        "{stderr}"
    );
    assert!(!out.exists());
}

/// Runs `bench --json` with small numbers and returns its report.
fn bench(extra: &[&str], env: &[(&str, &str)]) -> Value {
    let model = tiny_qwen2();
    let mut args = vec![
        "bench",
        "--model",
        model.to_str().unwrap(),
        "--prompt-tokens",
        "12",
        "--gen-tokens",
        "4",
    ];
    args.extend(["--contexts", "16,100000", "--context-steps", "3", "--json"]);
    args.extend(extra);
    let stdout = succeed(&args, env);
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

fn assert_positive(report: &Value, fields: &[&str]) {
    for field in fields {
        let value =
            report[field].as_f64().unwrap_or_else(|| panic!("`{field}` missing in {report}"));
        assert!(value > 0.0 && value.is_finite(), "`{field}` = {value} in {report}");
    }
}

fn assert_common_figures(report: &Value) {
    assert_positive(
        report,
        &[
            "load_s",
            "ttft_s",
            "prefill_tok_s",
            "decode_tok_s",
            "decode_stepwise_tok_s",
            "decode_sampled_tok_s",
            "decode_sampled_stepwise_tok_s",
            "weight_bytes",
        ],
    );
    assert_eq!(
        (report["prompt_tokens"].as_u64(), report["gen_tokens"].as_u64()),
        (Some(12), Some(4))
    );
    let at = &report["decode_at_context"];
    assert_eq!(at.as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!((at[0]["context"].as_u64(), at[0]["steps"].as_u64()), (Some(16), Some(3)));
    assert_positive(&at[0], &["tok_s", "stepwise_tok_s"]);
    assert_eq!(report["skipped_contexts"], serde_json::json!([100000]), "beyond the KV cache");
}

#[test]
fn bench_reports_every_figure_on_the_cpu() {
    let report = bench(&["--device", "cpu"], &[]);
    assert_common_figures(&report);
    assert_eq!((report["device"].as_str(), report["adapter"].as_str()), (Some("cpu"), None));
    assert!(report["kernels"].is_null());
}

/// Mesa's lavapipe, the Vulkan driver of CI, unless a driver is already chosen.
fn lavapipe() -> Vec<(&'static str, String)> {
    if std::env::var_os("VK_ICD_FILENAMES").is_some() {
        return Vec::new();
    }
    let icd = std::fs::read_dir("/usr/share/vulkan/icd.d")
        .ok()
        .and_then(|dir| {
            dir.map(|e| e.unwrap().path())
                .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("lvp_icd"))
        })
        .expect("no lavapipe driver (install mesa-vulkan-drivers)");
    vec![("VK_ICD_FILENAMES", icd.display().to_string()), ("WGPU_BACKEND", "vulkan".to_string())]
}

#[test]
fn bench_reports_every_figure_on_the_gpu_with_kernel_bandwidth() {
    let env = lavapipe();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let report = bench(&["--device", "gpu", "--kernels", "--kernel-mib", "8"], &env);
    assert_common_figures(&report);
    assert_eq!(report["device"], "gpu");
    assert!(!report["adapter"].as_str().unwrap().is_empty(), "{report}");
    let kernels = &report["kernels"];
    assert_positive(kernels, &["copy_gb_s", "shader_copy_gb_s"]);
    let matmuls = kernels["matmuls"].as_array().unwrap();
    let shapes: Vec<(&str, u64, u64)> = matmuls
        .iter()
        .map(|m| {
            (m["name"].as_str().unwrap(), m["rows"].as_u64().unwrap(), m["cols"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(shapes, [("lm_head", 151936, 64), ("gate_up", 512, 64)]);
    for matmul in matmuls {
        assert_positive(matmul, &["gb_s", "of_copy", "of_shader_copy", "weight_bytes"]);
    }
    // One workgroup, and gate_up's decode grid: 2 · 256 rows / 32 a workgroup.
    let chains = kernels["dispatch_chain"].as_array().unwrap();
    let grids: Vec<u64> = chains.iter().map(|c| c["workgroups"].as_u64().unwrap()).collect();
    assert_eq!(grids, [1, 16]);
    for chain in chains {
        assert_positive(chain, &["us_per_dispatch"]);
    }
}

#[test]
fn bench_profile_charges_every_kernel_of_a_step_to_its_name() {
    let env = lavapipe();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let report = bench(&["--device", "gpu", "--profile"], &env);
    let profile = &report["profile"];
    for (phase, tokens) in [("decode", 1), ("prefill", 12)] {
        let p = &profile[phase];
        assert_eq!(p["tokens"].as_u64(), Some(tokens), "{phase}: {p}");
        assert_positive(p, &["wall_us", "gpu_busy_us"]);
        assert!(
            p["gpu_busy_us"].as_f64() <= p["wall_us"].as_f64(),
            "{phase}: the GPU cannot be busy longer than the step: {p}"
        );
        let kernels = p["kernels"].as_array().unwrap();
        let calls = |name: &str| {
            kernels.iter().find(|k| k["name"] == name).and_then(|k| k["calls_per_step"].as_f64())
        };
        // tiny-qwen2: 2 layers (q/k/v 64 → 128, gate/up 64 → 512, down 256 → 64), tied 151936 × 64
        // head; every RMSNorm runs with the product after it, SiLU·up with down_proj, and
        // RoPE + the KV append with the attention (one slot; its own dispatch only in prefill).
        let expected = [
            ("embed", 1.0),
            ("rms_norm+matmul 64x128", 2.0),
            ("rope_append+attention", 2.0),
            ("matmul 64x64 +residual", 2.0),
            ("rms_norm+matmul 64x512", 2.0),
            ("Silu gate+matmul 256x64 +residual", 2.0),
            ("rms_norm+matmul 64x151936", 1.0),
            ("sampler", 1.0),
        ];
        for (name, count) in expected {
            assert_eq!(calls(name), Some(count), "{phase}: {name}: {p}");
        }
        assert_eq!(kernels.len(), expected.len(), "{phase}: no other kernel: {p}");
        // The gaps between consecutive stamps add up to the first-to-last span.
        let sum: f64 = kernels.iter().map(|k| k["us_per_step"].as_f64().unwrap()).sum();
        let busy = p["gpu_busy_us"].as_f64().unwrap();
        assert!(
            (sum - busy).abs() <= busy * 1e-3 + 1.0,
            "{phase}: kernels add up to {sum} µs, busy {busy} µs"
        );
    }
}

#[test]
fn bench_profile_needs_the_gpu() {
    let output = mlc_wgpu(
        &["bench", "--model", tiny_qwen2().to_str().unwrap(), "--device", "cpu", "--profile"],
        &[],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--profile times GPU kernels"), "{stderr}");
}
