//! GPU faults (issue 7, "GPU faults"): a load that does not fit the device
//! fails with the memory plan, and a device lost under a loaded engine fails
//! the next request with the device-lost error — no hang, no panic, no
//! garbage — while a reload on a new device answers as a fresh run.
//! On lavapipe in CI.

#[path = "common/artifacts.rs"]
mod artifacts;

use std::sync::mpsc;
use std::time::Duration;

use artifacts::{assert_clean_failure, edited_copy, fixture, mlc_wgpu};
use mlc_engine::gpu::GpuOptions;
use mlc_engine::{EngineError, GreedyOptions, LanguageModel, generate_greedy, load_gpu};
use mlc_kernels::{ContextOptions, GpuContext};
use mlc_loader::{Artifact, OpenOptions};
use pollster::FutureExt as _;

fn gpu() -> GpuContext {
    GpuContext::new_blocking(&ContextOptions::from_env()).expect("a GPU adapter (lavapipe in CI)")
}

fn tiny_qwen2() -> Artifact {
    Artifact::open(&fixture("tiny-qwen2").join("mlc").to_string_lossy(), OpenOptions::default())
        .unwrap()
}

const PROMPT: [u32; 5] = [9707, 11, 1879, 0, 374];

fn greedy(model: &mut dyn LanguageModel) -> Result<Vec<u32>, EngineError> {
    model.reset();
    generate_greedy(model, &PROMPT, &GreedyOptions { max_tokens: 8, stop_token_ids: Vec::new() })
        .block_on()
}

/// tiny-qwen2's KV cache is 2 heads x 16 dims x 2 bytes (f16) = 64 bytes per
/// position and layer: four million positions need 256 MB per buffer, about
/// twice lavapipe's (and WebGPU's default) 128 MiB storage binding.
const TOO_MANY_POSITIONS: usize = 4_000_000;

fn with_a_long_context_window() -> artifacts::TempDir {
    edited_copy("tiny-qwen2", |config| {
        config["context_window_size"] = serde_json::json!(4 * TOO_MANY_POSITIONS)
    })
}

#[test]
fn a_kv_cache_beyond_the_device_limits_fails_the_load_with_the_memory_plan() {
    let dir = with_a_long_context_window();
    let artifact = Artifact::open(&dir.path().to_string_lossy(), OpenOptions::default()).unwrap();
    let ctx = gpu();
    let binding = ctx.limits.max_storage_buffer_binding_size;
    let options = GpuOptions { context_length: Some(TOO_MANY_POSITIONS), ..GpuOptions::default() };
    let Err(error) = load_gpu(&artifact, ctx.clone(), options) else {
        panic!("the load succeeded")
    };
    let EngineError::GpuOutOfMemory { plan, cause } = &error else { panic!("{error:?}") };
    assert_eq!(
        (plan.kv_positions, plan.layers, plan.kv_buffer),
        (TOO_MANY_POSITIONS, 2, 64 * TOO_MANY_POSITIONS as u64)
    );
    assert_eq!(plan.device.as_ref().map(|d| d.max_storage_buffer_binding_size), Some(binding));
    assert!(
        cause.contains("exceeds max_storage_buffer_binding_size")
            && cause.contains(&format!("at most {} positions fit", binding / 64)),
        "{cause}"
    );
    let message = error.to_string();
    for part in [
        "not enough GPU memory to load the model",
        "GPU memory plan:",
        "weights",
        "KV cache",
        "4000000 positions x 2 layers",
        "activations",
        "total",
        "max_buffer_size",
    ] {
        assert!(message.contains(part), "{part:?} missing from:\n{message}");
    }
    // The refusal came before any allocation: the device has nothing to report.
    ctx.health().check().unwrap();

    // 1.5 million positions: each K cache fits (96 MB), the RoPE table (128
    // bytes a position, bound whole too) does not.
    let options = GpuOptions { context_length: Some(1_500_000), ..GpuOptions::default() };
    let Err(EngineError::GpuOutOfMemory { cause, .. }) = load_gpu(&artifact, ctx.clone(), options)
    else {
        panic!("the load with a RoPE table beyond a binding did not fail with the plan")
    };
    assert!(
        cause.contains("the RoPE table")
            && cause.contains(&format!("at most {} positions fit", binding / 128)),
        "{cause}"
    );
    ctx.health().check().unwrap();

    // The same model with a KV cache that fits loads on the same device.
    let fits = GpuOptions { max_rows: 64, context_length: Some(512), ..GpuOptions::default() };
    let mut model = load_gpu(&artifact, ctx, fits).unwrap();
    assert_eq!(greedy(&mut model).unwrap().len(), 8);
}

#[test]
fn the_cli_prints_the_plan_when_the_model_does_not_fit_and_inspect_prints_it_always() {
    let dir = with_a_long_context_window();
    let model = dir.path().to_str().unwrap();
    let contexts = TOO_MANY_POSITIONS.to_string();
    let args = [
        "bench",
        "--model",
        model,
        "--device",
        "gpu",
        "--prompt-tokens",
        "4",
        "--gen-tokens",
        "2",
        "--contexts",
        &contexts,
    ];
    assert_clean_failure(&args, "not enough GPU memory to load the model: one layer's K cache");
    let err = artifacts::stderr(&mlc_wgpu(&args));
    assert!(
        err.contains("GPU memory plan:")
            && err.contains("KV cache")
            && err.contains("max_storage_buffer_binding_size"),
        "{err}"
    );

    let output = mlc_wgpu(&["inspect", "--model", model]);
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", artifacts::stderr(&output));
    // Default options: 4096 positions of 64 bytes, 2 layers, K and V.
    assert!(
        out.contains("GPU memory plan:")
            && out.contains("KV cache     1.0 MiB (1048576 bytes) (4096 positions x 2 layers"),
        "{out}"
    );
}

/// Runs `scenario` on a thread of its own and fails if it takes longer than
/// `limit` (a request on a lost device must fail, not hang).
fn within<T: Send + 'static>(limit: Duration, scenario: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(scenario());
    });
    result
        .recv_timeout(limit)
        .expect("the scenario finished in time (a lost device must not hang a request)")
}

#[test]
fn a_lost_device_fails_the_next_request_and_a_reload_answers_as_a_fresh_run() {
    let (fresh, lost, reloaded) = within(Duration::from_secs(300), || {
        let artifact = tiny_qwen2();
        let options =
            GpuOptions { max_rows: 64, context_length: Some(512), ..GpuOptions::default() };
        let mut model = load_gpu(&artifact, gpu(), options.clone()).unwrap();
        let fresh = greedy(&mut model).unwrap();

        model.backend().context().device.destroy();
        let lost = greedy(&mut model);
        let again = greedy(&mut model);
        assert!(
            matches!(&again, Err(e) if e.is_device_lost()),
            "the engine stays failed: {again:?}"
        );

        // What `serve` and `engine.reload()` do: load again on a new device.
        let mut reloaded = load_gpu(&artifact, gpu(), options).unwrap();
        (
            fresh,
            lost.map_err(|e| (e.is_device_lost(), e.to_string())),
            greedy(&mut reloaded).unwrap(),
        )
    });
    let Err((is_lost, message)) = lost else {
        panic!("a request on a destroyed device returned {lost:?}")
    };
    assert!(is_lost && message.starts_with("GPU device lost: "), "{message}");
    assert_eq!(reloaded, fresh);
}
