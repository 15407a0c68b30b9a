//! The mistral, ministral3, phi3, gemma, gemma2, gemma3, olmo2, stablelm, phi, gpt_neox and qwen3_5 fixtures: each Hugging Face checkpoint is
//! converted by `mlc-wgpu convert` and run on the CPU engine and on the GPU
//! engine (both kernel paths), against transformers' float32 reference outputs
//! (`conformance/tools/make_families.py`, which also records how far each
//! family's feature under test moves the logits when it is switched off).

use mlc_conformance::*;
use mlc_engine::gpu::GpuOptions;
use mlc_engine::{GreedyOptions, LanguageModel, generate_greedy, load_cpu, load_gpu};
use mlc_kernels::{ContextOptions, GpuContext};
use pollster::FutureExt as _;

/// Last logits of every prompt, every position's logits of one prompt, and the
/// 16 greedy tokens of every prompt, within `tolerance`.
fn check_model(what: &str, model: &str, engine: &mut dyn LanguageModel, tolerance: f32) {
    let vocab = engine.spec().vocab_size;
    for prompt in golden(model).prompts {
        engine.reset();
        let logits = engine.prefill(&prompt.token_ids).block_on().unwrap();
        assert_close(
            &format!("{what} {model} {} last logits", prompt.name),
            &logits,
            &golden_file(model, &prompt.last_logits_file),
            tolerance,
        );
        if let Some(file) = &prompt.all_logits_file {
            engine.reset();
            let all = engine.score(&prompt.token_ids).block_on().unwrap();
            let want = golden_file(model, file);
            assert_eq!(all.len(), prompt.token_ids.len() * vocab);
            for (position, (got, want)) in all.chunks(vocab).zip(want.chunks(vocab)).enumerate() {
                assert_close(
                    &format!("{what} {model} {} position {position}", prompt.name),
                    got,
                    want,
                    tolerance,
                );
            }
        }
        engine.reset();
        let options = GreedyOptions { max_tokens: 16, stop_token_ids: Vec::new() };
        let tokens = generate_greedy(engine, &prompt.token_ids, &options).block_on().unwrap();
        assert_eq!(tokens, prompt.greedy_16, "{what} {model} {} greedy tokens", prompt.name);
    }
}

#[test]
fn cpu_engine_matches_transformers() {
    for model in FAMILY_MODELS {
        let (_temp, artifact) = converted_family(model);
        let mut engine = load_cpu(&artifact).unwrap();
        check_model("cpu", model, &mut engine, CPU_TOLERANCE);
    }
}

#[test]
fn cpu_prefill_in_small_chunks_equals_one_prefill() {
    for model in FAMILY_MODELS {
        let (_temp, artifact) = converted_family(model);
        let mut engine = load_cpu(&artifact).unwrap();
        let prompt = golden(model).prompts.into_iter().max_by_key(|p| p.token_ids.len()).unwrap();
        let mut logits = Vec::new();
        for chunk in prompt.token_ids.chunks(7) {
            logits = engine.prefill(chunk).block_on().unwrap();
        }
        assert_close(
            &format!("{model} chunked prefill"),
            &logits,
            &golden_file(model, &prompt.last_logits_file),
            CPU_TOLERANCE,
        );
    }
}

#[test]
fn gpu_engine_matches_transformers_on_both_paths() {
    let portable =
        GpuContext::new_blocking(&ContextOptions { portable_only: true, ..Default::default() })
            .expect("a GPU adapter (lavapipe in CI)");
    let fast = GpuContext::new_blocking(&ContextOptions::default()).expect("a GPU adapter");
    for (path, ctx) in [("portable", portable), ("fast", fast)] {
        for model in FAMILY_MODELS {
            let (_temp, artifact) = converted_family(model);
            // 16-row calls: the 30-token prompt spans two, crossing the KV cache between
            // calls (gemma3's 1100-token one spans 69, most of them past its local window).
            let longest = golden(model).prompts.iter().map(|p| p.token_ids.len()).max().unwrap();
            let context_length = Some((longest + 16).max(256));
            let mut engine = load_gpu(
                &artifact,
                ctx.clone(),
                GpuOptions { max_rows: 16, context_length, ..GpuOptions::default() },
            )
            .unwrap();
            check_model(&format!("gpu {path}"), model, &mut engine, GPU_TOLERANCE);
            if engine.spec().recurrent() {
                // Steps queued ahead on the device, and one dropped: the
                // state is cleared and the sequence prefilled again.
                let prompt = golden(model).prompts.remove(1);
                check_queued_greedy(&format!("gpu {path} {model}"), &mut engine, &prompt);
            }
        }
    }
}

#[test]
fn qwen3_5_spec_alternates_gated_delta_net_and_gated_attention_layers() {
    use mlc_engine::memory::MemoryPlan;
    use mlc_engine::models::spec_for;
    let (_temp, artifact) = converted_family("families/qwen3_5-tiny");
    let spec = spec_for(&artifact.config).unwrap();
    assert_eq!(spec.family, "qwen3_5");
    let kinds: Vec<bool> = (0..spec.num_layers).map(|l| spec.linear_layer(l).is_some()).collect();
    assert_eq!(kinds, [true, true, false, true, true, false]);
    let shape = spec.linear_layer(0).unwrap();
    assert_eq!(
        (shape.key_heads, shape.value_heads, shape.key_dim, shape.conv_kernel),
        (2, 4, 16, 4)
    );
    assert!(spec.recurrent() && spec.attention_output_gate && spec.tie_word_embeddings);
    // int(32 · 0.25) = 8 rotated dimensions; [q | gate] per head, then k and v.
    assert_eq!((spec.rotary_dim, spec.qkv_width()), (8, (2 * 4 + 2 * 2) * 32));
    // The KV cache covers the two attention layers; the four linear layers
    // keep a 3-row convolution window and 4 states of 16 × 16, in f32.
    let plan = MemoryPlan::new(&spec, &artifact.index, artifact.quantization(), 64, 1, 1, 1 << 27);
    assert_eq!(plan.layers, 2);
    assert_eq!(plan.recurrent, 4 * (3 * 128 + 4 * 16 * 16) * 4);
    assert!(plan.total() >= plan.weight_bytes() + plan.kv_bytes() + plan.recurrent);

    // `qwen3_5` (the vision-language checkpoint's type) reads its text_config.
    let mut config = artifact.config.clone();
    let text = std::mem::take(&mut config.model_config);
    config.model_type = "qwen3_5".into();
    config.model_config.insert("text_config".into(), serde_json::Value::Object(text));
    let nested = spec_for(&config).unwrap();
    assert_eq!((nested.num_layers, nested.rotary_dim), (6, 8));
    assert_eq!(nested.linear_layer(1), spec.linear_layer(1));
}

#[test]
fn webllm_prebuilt_records_of_these_families_resolve_and_their_overrides_load() {
    use mlc_engine::models::spec_for;
    use mlc_engine::prebuilt::{apply_overrides, find_prebuilt};
    let ids = [
        ("mistral", "Mistral-7B-Instruct-v0.3-q4f16_1-MLC"),
        ("mistral", "Mistral-7B-Instruct-v0.2-q4f16_1-MLC"),
        ("mistral", "Hermes-2-Pro-Mistral-7B-q4f16_1-MLC"),
        ("mistral", "WizardMath-7B-V1.1-q4f16_1-MLC"),
        ("phi3", "Phi-3.5-mini-instruct-q4f16_1-MLC"),
        ("phi3", "Phi-4-mini-instruct-q4f32_1-MLC"),
        ("phi3", "Phi-3-mini-4k-instruct-q4f16_1-MLC-1k"),
        ("gemma", "gemma-2b-it-q4f16_1-MLC"),
        ("gemma", "gemma-2b-it-q4f32_1-MLC-1k"),
        ("gemma2", "gemma-2-2b-it-q4f16_1-MLC"),
        ("gemma2", "gemma-2-9b-it-q4f32_1-MLC"),
        ("gemma2", "gemma-2-2b-jpn-it-q4f16_1-MLC"),
        ("gemma3", "gemma3-1b-it-q4f16_1-MLC"),
        ("olmo2", "OLMo-2-0425-1B-Instruct-q4f16_1-MLC"),
        ("olmo2", "OLMo-2-1124-7B-Instruct-q4f32_1-MLC"),
        ("stablelm", "stablelm-2-zephyr-1_6b-q4f16_1-MLC"),
        ("stablelm", "stablelm-2-zephyr-1_6b-q4f32_1-MLC-1k"),
        ("phi", "phi-2-q4f16_1-MLC"),
        ("phi", "phi-1_5-q4f32_1-MLC-1k"),
        ("gpt_neox", "RedPajama-INCITE-Chat-3B-v1-q4f16_1-MLC"),
        ("gpt_neox", "RedPajama-INCITE-Chat-3B-v1-q4f32_1-MLC-1k"),
        ("qwen3_5", "Qwen3.5-0.8B-q4f16_1-MLC"),
        ("qwen3_5", "Qwen3.5-2B-q4f32_1-MLC"),
        ("ministral3", "Ministral-3-3B-Instruct-2512-BF16-q4f16_1-MLC"),
        ("ministral3", "Ministral-3-3B-Reasoning-2512-q4f32_1-MLC"),
        ("ministral3", "Ministral-3-3B-Base-2512-q4f16_1-MLC"),
    ];
    for (family, id) in ids {
        let record = find_prebuilt(id).unwrap_or_else(|| panic!("{id} is a prebuilt record"));
        let model = FAMILY_MODELS.iter().find(|m| m.ends_with(&format!("/{family}-tiny"))).unwrap();
        let (_temp, artifact) = converted_family(model);
        let mut config = artifact.config.clone();
        if family == "mistral" {
            // What a Mistral-7B-v0.1-style artifact says (HF sliding_window 4096):
            // a rolling KV cache with MLC's 4 attention sinks ...
            config.sliding_window_size = 4096;
            config.context_window_size = -1;
            let spec = spec_for(&config).unwrap();
            let window = mlc_kernels::cpu::RollingWindow { size: 4096, sink: 4 };
            assert_eq!(spec.rolling_window, Some(window));
            assert_eq!(record.overrides["sliding_window_size"], -1);
        }
        // ... which WebLLM's record turns off with a 4096 (or 1024) context.
        apply_overrides(&mut config, &record.overrides);
        let spec = spec_for(&config).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(
            spec.context_window_size as i64,
            record.overrides["context_window_size"].as_i64().unwrap(),
            "{id}"
        );
        assert_eq!(spec.family, family);
    }
}

#[test]
fn ministral3_spec_has_tvm_yarn_and_the_yarn_softmax_scale() {
    use mlc_engine::EngineError;
    use mlc_engine::models::{RopeScaling, spec_for};
    use mlc_kernels::cpu::{Rope, YarnScaling};
    let (_temp, artifact) = converted_family("families/ministral3-tiny");
    let spec = spec_for(&artifact.config).unwrap();
    assert_eq!(spec.family, "ministral3");
    // 4 heads of 32 over a hidden size of 64, GQA with 2 KV heads, tied.
    assert_eq!((spec.num_heads, spec.num_kv_heads, spec.head_dim), (4, 2, 32));
    assert!(spec.tie_word_embeddings);
    let yarn = YarnScaling {
        factor: 4.0,
        original_max_position_embeddings: 256.0,
        beta_fast: 32.0,
        beta_slow: 1.0,
    };
    assert_eq!(spec.rope_scaling, RopeScaling::Yarn(yarn));
    assert_eq!(spec.rope_theta, 10_000.0);
    // sm = 0.1 · ln 4 + 1, squared onto 32^-0.5.
    let sm = 0.1 * 4f32.ln() + 1.0;
    assert!((spec.attention_scale() - sm * sm / 32f32.sqrt()).abs() < 1e-6);
    // TVM's ramp: dimensions 0..=6 blend (low 0.42, high 6.44), the rest,
    // every second element of a pair included, interpolate (÷ 4).
    let (rope, plain) = (spec.rope(), Rope::new(10_000.0, 32, None));
    assert_eq!(rope.inv_freq.len(), 32);
    assert_eq!(rope.inv_freq[0], plain.inv_freq[0]);
    for d in 7..32 {
        let want = plain.inv_freq[d] / 4.0;
        assert!((rope.inv_freq[d] - want).abs() <= 1e-6 * want, "dimension {d}");
    }
    assert!(rope.inv_freq[16] < rope.inv_freq[0] / 3.9);

    // A rope_parameters without rope_type rotates plainly (TVM's default) and
    // keeps the softmax factor; another kind is refused with its name.
    let mut config = artifact.config.clone();
    let rope_parameters = config.model_config.get_mut("rope_parameters").unwrap();
    rope_parameters.as_object_mut().unwrap().shift_remove("rope_type");
    let untyped = spec_for(&config).unwrap();
    assert_eq!(untyped.rope_scaling, RopeScaling::None);
    assert_eq!(untyped.attention_scale(), spec.attention_scale());
    let mut config = artifact.config.clone();
    config.model_config["rope_parameters"]["rope_type"] = "dynamic".into();
    let error = spec_for(&config).unwrap_err();
    assert!(matches!(error, EngineError::Config(_)) && error.to_string().contains("dynamic"));
}

#[test]
fn stablelm_spec_has_layer_norms_a_quarter_rotation_and_no_tying() {
    use mlc_engine::EngineError;
    use mlc_engine::models::spec_for;
    let (_temp, artifact) = converted_family("families/stablelm-tiny");
    let spec = spec_for(&artifact.config).unwrap();
    assert!(spec.layer_norm && spec.qkv_bias && !spec.tie_word_embeddings, "{spec:?}");
    assert_eq!((spec.rms_norm_eps, spec.head_dim, spec.rotary_dim), (1e-5, 16, 4));
    let mut config = artifact.config.clone();
    // MLC's StableLmConfig has no tie flag: a stray one changes nothing.
    config.model_config.insert("tie_word_embeddings".into(), serde_json::json!(true));
    assert!(!spec_for(&config).unwrap().tie_word_embeddings);
    // 16 × 0.1 → 1 rotated dimension: not a whole number of pairs.
    config.model_config.insert("partial_rotary_factor".into(), serde_json::json!(0.1));
    let error = spec_for(&config).unwrap_err();
    assert!(matches!(error, EngineError::Config(_)), "{error}");
    config.model_config.remove("layer_norm_eps");
    let error = spec_for(&config).unwrap_err();
    assert!(error.to_string().contains("layer_norm_eps"), "{error}");
}

#[test]
fn phi_spec_is_a_parallel_block_with_biases_and_a_partial_rotation() {
    use mlc_engine::EngineError;
    use mlc_engine::models::{NormPlacement, spec_for};
    let (_temp, artifact) = converted_family("families/phi-tiny");
    let spec = spec_for(&artifact.config).unwrap();
    assert_eq!(spec.norms, NormPlacement::Parallel);
    assert!(spec.layer_norm && spec.qkv_bias && spec.dense_bias && !spec.gated_mlp, "{spec:?}");
    assert!(!spec.tie_word_embeddings);
    // int(16 · 0.4) = 6.
    assert_eq!((spec.rms_norm_eps, spec.head_dim, spec.rotary_dim), (1e-5, 16, 6));
    let mut config = artifact.config.clone();
    // 16 × 0.1 → 1 rotated dimension: not a whole number of pairs.
    config.model_config.insert("partial_rotary_factor".into(), serde_json::json!(0.1));
    let error = spec_for(&config).unwrap_err();
    assert!(matches!(error, EngineError::Config(_)), "{error}");
    // A non-gated MLP cannot be zero-padded to whole groups as a gated one is.
    let (_temp, mut odd) = converted_family("families/phi-tiny");
    odd.config.model_config.insert("intermediate_size".into(), serde_json::json!(250));
    let error = load_cpu(&odd).err().expect("an odd intermediate size is refused");
    assert!(error.to_string().contains("multiple of 32"), "{error}");
}

#[test]
fn gpt_neox_specs_are_sequential_or_parallel_with_two_layer_norms_and_exact_gelu() {
    use mlc_engine::models::{Activation, NormPlacement, spec_for};
    for (model, norms, rotary_dim) in [
        ("families/gpt_neox-tiny", NormPlacement::Pre, 8),
        ("families/gpt_neox-parallel-tiny", NormPlacement::Parallel, 4),
    ] {
        let (_temp, artifact) = converted_family(model);
        let spec = spec_for(&artifact.config).unwrap();
        assert_eq!(
            (spec.norms, spec.rotary_dim, spec.head_dim),
            (norms, rotary_dim, 16),
            "{model}"
        );
        assert!(
            spec.layer_norm && spec.qkv_bias && spec.dense_bias && !spec.lm_head_bias,
            "{spec:?}"
        );
        assert!(!spec.gated_mlp && !spec.tie_word_embeddings, "{spec:?}");
        assert_eq!(spec.activation, Activation::Gelu);
        let mut broken = artifact.config.clone();
        broken.model_config.insert("use_parallel_residual".into(), serde_json::json!(null));
        let error = spec_for(&broken).unwrap_err();
        assert!(error.to_string().contains("use_parallel_residual"), "{error}");
    }
}

/// The artifact's `model_config` as MLC's `PhiConfig` (`phi-msft`, GPT-2's key
/// names and an explicit `rotary_dim`) writes the same model.
fn as_phi_msft(config: &mut mlc_loader::ChatConfig) {
    let mc = &config.model_config;
    let renamed = serde_json::json!({
        "model_type": "phi-msft",
        "vocab_size": mc["vocab_size"],
        "n_positions": mc["context_window_size"],
        "n_embd": mc["hidden_size"],
        "n_layer": mc["num_hidden_layers"],
        "n_inner": mc["intermediate_size"],
        "n_head": mc["num_attention_heads"],
        "rotary_dim": 6,
        "position_embedding_base": mc["position_embedding_base"],
        "layer_norm_epsilon": mc["layer_norm_eps"],
        "context_window_size": mc["context_window_size"],
        "prefill_chunk_size": mc["prefill_chunk_size"],
        "n_head_kv": mc["num_key_value_heads"],
        "head_dim": mc["head_dim"],
        "tensor_parallel_shards": 1,
    });
    config.model_type = "phi-msft".into();
    config.model_config = renamed.as_object().unwrap().clone();
}

#[test]
fn a_phi_msft_artifact_reads_as_the_same_model() {
    use mlc_engine::models::spec_for;
    let model = "families/phi-tiny";
    let (_temp, mut artifact) = converted_family(model);
    let phi = spec_for(&artifact.config).unwrap();
    as_phi_msft(&mut artifact.config);
    let msft = spec_for(&artifact.config).unwrap();
    assert_eq!(msft.family, "phi-msft");
    assert_eq!(
        (msft.hidden_size, msft.intermediate_size, msft.num_layers, msft.num_heads),
        (phi.hidden_size, phi.intermediate_size, phi.num_layers, phi.num_heads)
    );
    assert_eq!(
        (msft.num_kv_heads, msft.rotary_dim, msft.rms_norm_eps, msft.norms),
        (phi.num_kv_heads, phi.rotary_dim, phi.rms_norm_eps, phi.norms)
    );
    // Same parameter names: the engine runs it to the same logits.
    let mut engine = load_cpu(&artifact).unwrap();
    let prompt = golden(model).prompts.into_iter().max_by_key(|p| p.token_ids.len()).unwrap();
    let logits = engine.prefill(&prompt.token_ids).block_on().unwrap();
    let want = golden_file(model, &prompt.last_logits_file);
    assert_close("phi-msft last logits", &logits, &want, CPU_TOLERANCE);
    // A phi-msft config without its own key names is an error naming one.
    artifact.config.model_config.remove("n_embd");
    let error = spec_for(&artifact.config).unwrap_err();
    assert!(error.to_string().contains("n_embd"), "{error}");
}
