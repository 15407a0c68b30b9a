//! The CPU engine against the float32 references of the official tiny artifacts.

use mlc_conformance::*;
use mlc_engine::{GreedyOptions, LanguageModel, generate_greedy, load_cpu};
use mlc_loader::{Artifact, OpenOptions};
use pollster::FutureExt as _;

fn open(model: &str) -> Artifact {
    Artifact::open(tiny_artifact(model).to_str().unwrap(), OpenOptions::default())
        .expect("open tiny artifact")
}

#[test]
fn final_logits_match_for_every_prompt() {
    for model in TINY_MODELS {
        let artifact = open(model);
        let mut engine = load_cpu(&artifact).unwrap();
        for prompt in golden(model).prompts {
            engine.reset();
            let logits = engine.prefill(&prompt.token_ids).block_on().unwrap();
            let want = golden_file(model, &prompt.last_logits_file);
            assert_close(
                &format!("{model} {} last logits", prompt.name),
                &logits,
                &want,
                CPU_TOLERANCE,
            );
        }
    }
}

#[test]
fn prefill_in_small_chunks_equals_one_prefill() {
    // The longest prompt split across chunks exercises the KV cache between calls.
    for model in TINY_MODELS {
        let artifact = open(model);
        let mut engine = load_cpu(&artifact).unwrap();
        let prompt = golden(model).prompts.into_iter().max_by_key(|p| p.token_ids.len()).unwrap();
        let mut logits = Vec::new();
        for chunk in prompt.token_ids.chunks(17) {
            logits = engine.prefill(chunk).block_on().unwrap();
        }
        let want = golden_file(model, &prompt.last_logits_file);
        assert_close(&format!("{model} chunked prefill"), &logits, &want, CPU_TOLERANCE);
    }
}

#[test]
fn hidden_states_and_all_position_logits_match() {
    for model in TINY_MODELS {
        let artifact = open(model);
        let mut engine = load_cpu(&artifact).unwrap();
        let prompt = golden(model)
            .prompts
            .into_iter()
            .find(|p| p.hidden_trace_files.is_some())
            .expect("a traced prompt");
        let (logits, trace) = engine.trace(&prompt.token_ids).unwrap();
        let files = prompt.hidden_trace_files.as_ref().unwrap();
        assert_eq!(
            trace.len(),
            files.len(),
            "{model}: trace points {:?}",
            trace.iter().map(|t| &t.0).collect::<Vec<_>>()
        );
        for (point, values) in &trace {
            let file = files
                .get(point)
                .unwrap_or_else(|| panic!("{model}: no reference for trace point {point}"));
            assert_close(
                &format!("{model} hidden {point}"),
                values,
                &golden_file(model, file),
                CPU_TOLERANCE,
            );
        }
        let vocab = artifact.config.vocab_size;
        let last = &logits[(prompt.token_ids.len() - 1) * vocab..];
        assert_close(
            &format!("{model} traced last logits"),
            last,
            &golden_file(model, &prompt.last_logits_file),
            CPU_TOLERANCE,
        );
        if let Some(file) = &prompt.all_logits_file {
            assert_close(
                &format!("{model} all-position logits"),
                &logits,
                &golden_file(model, file),
                CPU_TOLERANCE,
            );
        }
        if let Some(top) = &prompt.all_positions_top128 {
            for (position, (ids, want)) in top.ids.iter().zip(&top.logits).enumerate() {
                let row = &logits[position * vocab..(position + 1) * vocab];
                let got: Vec<f32> = ids.iter().map(|&id| row[id as usize]).collect();
                let full_std = std_dev(row);
                let diff = max_abs_diff(&got, want);
                assert!(
                    diff <= CPU_TOLERANCE * full_std,
                    "{model} position {position}: top-128 max |Δ| {diff:e}"
                );
            }
        }
    }
}

#[test]
fn greedy_continuations_are_identical() {
    for model in TINY_MODELS {
        let artifact = open(model);
        let mut engine = load_cpu(&artifact).unwrap();
        for prompt in golden(model).prompts {
            engine.reset();
            let options = GreedyOptions { max_tokens: 16, stop_token_ids: Vec::new() };
            let tokens =
                generate_greedy(&mut engine, &prompt.token_ids, &options).block_on().unwrap();
            assert_eq!(tokens, prompt.greedy_16, "{model} {} greedy tokens", prompt.name);
        }
    }
}

#[test]
fn queued_greedy_steps_follow_the_reference() {
    for model in TINY_MODELS {
        let mut engine = load_cpu(&open(model)).unwrap();
        for prompt in golden(model).prompts {
            check_queued_greedy(&format!("cpu {model} {}", prompt.name), &mut engine, &prompt);
        }
    }
}

#[test]
fn dequantized_weights_match_the_reference_rows() {
    use mlc_engine::weights::dequantize_rows;
    for model in TINY_MODELS {
        let artifact = open(model);
        let index = golden(model);
        let tensors: std::collections::BTreeMap<String, String> =
            serde_json::from_value(index.dequant_fixtures["tensors"].clone()).unwrap();
        assert_eq!(tensors.len(), 2, "{model}: qkv and down_proj fixtures");
        for (name, file) in &tensors {
            let want = golden_file(model, file);
            let rows = artifact.tensor(&format!("{name}.q_weight")).unwrap().shape[0];
            let got = dequantize_rows(&artifact, name, None, Some(want.len() / rows)).unwrap();
            assert_close(&format!("{model} dequantized {name}"), &got, &want, 1e-6);
        }
        let row_ids: Vec<usize> =
            serde_json::from_value(index.dequant_fixtures["embed_rows"]["row_ids"].clone())
                .unwrap();
        let rows = dequantize_rows(&artifact, "model.embed_tokens", Some(&row_ids), None).unwrap();
        assert_close(
            &format!("{model} dequantized embedding rows"),
            &rows,
            &golden_file(model, "dequant_embed_rows.f32"),
            1e-6,
        );
    }
}
