//! Mistral and Ministral 3 with a sliding window (`families/mistral-window-tiny`:
//! window 16, 4 attention sinks, prefill chunks of 16; `ministral3-window-tiny`:
//! the same without sinks, with YaRN): MLC's rolling KV cache on the CPU
//! engines and the GPU engine (both kernel paths) against the float64
//! reference of `conformance/tools/make_mistral_window.py`, with prompts and
//! generations longer than the window (docs/families.md, "mistral").

use mlc_conformance::*;
use mlc_engine::backend::StepInput;
use mlc_engine::gpu::GpuOptions;
use mlc_engine::models::spec_for;
use mlc_engine::{
    BatchRow, BatchedModel, EngineError, GreedyOptions, LanguageModel, generate_greedy, load_cpu,
    load_cpu_fast, load_gpu,
};
use mlc_kernels::cpu::RollingWindow;
use mlc_kernels::{ContextOptions, GpuContext};
use pollster::FutureExt as _;

const MODEL: &str = "families/mistral-window-tiny";
/// Both fixtures, with their sink counts.
const MODELS: [(&str, usize); 2] =
    [("families/mistral-window-tiny", 4), ("families/ministral3-window-tiny", 0)];

/// Every prompt's last logits, prompt 1's logits at every position, the 16
/// greedy tokens of every prompt and prompt 0's 48 (three windows of decode
/// steps), within `tolerance` × the reference's logit std.
fn check_engine(what: &str, model: &str, engine: &mut dyn LanguageModel, tolerance: f32) {
    let what = format!("{what} {model}");
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures_dir().join(model).join("golden/index.json")).unwrap(),
    )
    .unwrap();
    let vocab = engine.spec().vocab_size;
    for (k, prompt) in golden(model).prompts.into_iter().enumerate() {
        engine.reset();
        let logits = engine.prefill(&prompt.token_ids).block_on().unwrap();
        let want = golden_file(model, &prompt.last_logits_file);
        assert_close(&format!("{what} {} last logits", prompt.name), &logits, &want, tolerance);
        if let Some(file) = &prompt.all_logits_file {
            engine.reset();
            let all = engine.score(&prompt.token_ids).block_on().unwrap();
            let want = golden_file(model, file);
            assert_eq!(all.len(), prompt.token_ids.len() * vocab);
            for (position, (got, want)) in all.chunks(vocab).zip(want.chunks(vocab)).enumerate() {
                let label = format!("{what} {} position {position}", prompt.name);
                assert_close(&label, got, want, tolerance);
            }
        }
        let want: Vec<u32> = match index["prompts"][k].get("greedy_long") {
            Some(long) => serde_json::from_value(long.clone()).unwrap(),
            None => prompt.greedy_16.clone(),
        };
        engine.reset();
        let options = GreedyOptions { max_tokens: want.len(), stop_token_ids: Vec::new() };
        let tokens = generate_greedy(engine, &prompt.token_ids, &options).block_on().unwrap();
        assert_eq!(tokens, want, "{what} {} greedy tokens", prompt.name);
        assert!(engine.position() > 16 + 4, "{what}: generation ran past the window");
    }
}

#[test]
fn the_converted_artifacts_have_a_rolling_window_and_no_context_limit() {
    for (model, sink) in MODELS {
        let (_temp, artifact) = converted_family(model);
        let config = &artifact.config;
        let windows =
            (config.sliding_window_size, config.attention_sink_size, config.context_window_size);
        assert_eq!(windows, (16, sink as i64, -1), "{model}");
        let spec = spec_for(config).unwrap();
        assert_eq!(spec.rolling_window, Some(RollingWindow { size: 16, sink }), "{model}");
        assert_eq!(spec.sliding_window, None, "not Gemma 3's masked local layers");
        assert_eq!((spec.prefill_chunk_size, spec.context_window_size), (16, usize::MAX));
        assert!(!spec.rewindable());
    }
    let (_temp, artifact) = converted_family(MODEL);
    let config = &artifact.config;

    // WebLLM's checks: both windows set, or a negative sink size, are refused;
    // TVM's: a sink size below the window.
    for (context, sink) in [(4096, 4), (-1, -1), (-1, 16)] {
        let mut config = config.clone();
        (config.context_window_size, config.attention_sink_size) = (context, sink);
        let error = spec_for(&config).unwrap_err();
        assert!(matches!(error, EngineError::Config(_)), "{error}");
    }
}

#[test]
fn cpu_engine_matches_the_rolling_cache_reference() {
    for (model, _) in MODELS {
        let (_temp, artifact) = converted_family(model);
        check_engine("cpu", model, &mut load_cpu(&artifact).unwrap(), CPU_TOLERANCE);
    }
}

#[test]
fn fast_cpu_engine_matches_the_rolling_cache_reference() {
    for (model, _) in MODELS {
        let (_temp, artifact) = converted_family(model);
        check_engine("cpu_fast", model, &mut load_cpu_fast(&artifact).unwrap(), GPU_TOLERANCE);
    }
}

#[test]
fn a_chat_round_continues_the_rolled_cache_and_dropped_steps_empty_it() {
    let (_temp, artifact) = converted_family(MODEL);
    let prompt = &golden(MODEL).prompts[0];
    let mut engine = load_cpu(&artifact).unwrap();
    // A second round appends to the context the first left, as WebLLM's
    // multi-round chat does: generating in two calls is generating once.
    let options = GreedyOptions { max_tokens: 24, stop_token_ids: Vec::new() };
    let first = generate_greedy(&mut engine, &prompt.token_ids, &options).block_on().unwrap();
    let rest = generate_greedy(&mut engine, &first[23..], &options).block_on().unwrap();
    engine.reset();
    let both = GreedyOptions { max_tokens: 48, stop_token_ids: Vec::new() };
    let once = generate_greedy(&mut engine, &prompt.token_ids, &both).block_on().unwrap();
    assert_eq!([&first[..], &rest].concat(), once);

    // A queued step rolled the window: dropping it cannot rewind the cache,
    // so the context starts over.
    assert!(engine.position() > 0);
    engine.queue_greedy(StepInput::Tokens(&once[47..])).unwrap();
    engine.drop_queued();
    assert_eq!(engine.position(), 0);
}

#[test]
fn gpu_engine_matches_the_rolling_cache_reference_on_both_paths() {
    let portable =
        GpuContext::new_blocking(&ContextOptions { portable_only: true, ..Default::default() })
            .expect("a GPU adapter (lavapipe in CI)");
    let fast = GpuContext::new_blocking(&ContextOptions::default()).expect("a GPU adapter");
    for (path, ctx) in [("portable", portable), ("fast", fast)] {
        for (model, _) in MODELS {
            let (_temp, artifact) = converted_family(model);
            // Steps of 4 rows at most: the engine takes MLC's prefill chunks (16)
            // anyway, since what a rolling cache's rows see depends on them.
            let options = GpuOptions { max_rows: 4, sequences: 2, ..GpuOptions::default() };
            let mut engine = load_gpu(&artifact, ctx.clone(), options).unwrap();
            check_engine(&format!("gpu {path}"), model, &mut engine, GPU_TOLERANCE);
            // Several sequences in one batched pass, one of them past its window.
            let prompts = golden(model).prompts;
            let (short, long) = (&prompts[0].token_ids, &prompts[2].token_ids);
            let mut alone = Vec::new();
            for prompt in [short, long] {
                engine.reset();
                let options = GreedyOptions { max_tokens: 4, stop_token_ids: Vec::new() };
                alone.push(generate_greedy(&mut engine, prompt, &options).block_on().unwrap());
            }
            let mut last = Vec::new();
            for (sequence, prompt) in [short, long].into_iter().enumerate() {
                engine.select_sequence(sequence).unwrap();
                engine.reset();
                last.push(engine.greedy_next(prompt).block_on().unwrap());
            }
            let mut together = vec![vec![last[0]], vec![last[1]]];
            for _ in 1..4 {
                let rows: Vec<BatchRow> = (0..2)
                    .map(|sequence| BatchRow {
                        sequence,
                        token: Some(*together[sequence].last().unwrap()),
                        step: None,
                    })
                    .collect();
                let drawn = engine.decode_batch(&rows).block_on().unwrap();
                for (sequence, next) in drawn.into_iter().enumerate() {
                    together[sequence].push(next.unwrap().token);
                }
            }
            assert_eq!(together, alone, "gpu {path} {model}: batched steps");
        }
    }
}
