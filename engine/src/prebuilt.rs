//! WebLLM's prebuilt model ids (`prebuiltAppConfig.model_list` of
//! `@mlc-ai/web-llm` 0.2.86), so a user can name a model as a WebLLM page does.
//! `prebuilt-models.json` holds the records of the families this runtime
//! implements: the CLI downloads a whole artifact before it reads its family,
//! so an id it cannot run must not resolve. It is generated, with the JS
//! module's full list (`web/js/prebuilt_records.js`), by
//! `scripts/webllm-prebuilt.mjs`.

use serde::Deserialize;

/// One prebuilt model record.
#[derive(Debug, Clone, Deserialize)]
pub struct PrebuiltModel {
    /// The id WebLLM pages pass to `CreateMLCEngine`.
    pub model_id: String,
    /// The artifact URL (WebLLM appends `resolve/main/`).
    pub model: String,
    /// Config fields WebLLM overrides for this record (e.g. `context_window_size`).
    #[serde(default)]
    pub overrides: serde_json::Map<String, serde_json::Value>,
}

/// A WebLLM record this build cannot run, and why.
#[derive(Debug, Clone, Deserialize)]
struct NotRunnable {
    model_id: String,
    why: String,
}

#[derive(Deserialize)]
struct ModelList {
    model_list: Vec<PrebuiltModel>,
    not_runnable: Vec<NotRunnable>,
}

fn embedded_list() -> ModelList {
    serde_json::from_str(include_str!("prebuilt-models.json"))
        .expect("the embedded list is valid JSON")
}

/// Every prebuilt record this build knows.
pub fn prebuilt_models() -> Vec<PrebuiltModel> {
    embedded_list().model_list
}

/// Why `model_id` cannot run, when it is one of WebLLM's records of a family
/// (or quantization) this build does not implement.
pub fn why_not_runnable(model_id: &str) -> Option<String> {
    embedded_list().not_runnable.into_iter().find(|r| r.model_id == model_id).map(|r| r.why)
}

/// The record of `model_id`, if it is a prebuilt one.
pub fn find_prebuilt(model_id: &str) -> Option<PrebuiltModel> {
    prebuilt_models().into_iter().find(|m| m.model_id == model_id)
}

/// Applies a record's overrides to a loaded config, as WebLLM merges
/// `modelRecord.overrides` over `mlc-chat-config.json`. Only the window sizes
/// occur in the prebuilt list; other keys are kept in `extra`.
pub fn apply_overrides(
    config: &mut mlc_loader::ChatConfig,
    overrides: &serde_json::Map<String, serde_json::Value>,
) {
    for (key, value) in overrides {
        let number = value.as_i64();
        match (key.as_str(), number) {
            ("context_window_size", Some(v)) => config.context_window_size = v,
            ("sliding_window_size", Some(v)) => config.sliding_window_size = v,
            ("attention_sink_size", Some(v)) => config.attention_sink_size = v,
            ("prefill_chunk_size", Some(v)) => config.prefill_chunk_size = v,
            _ => {
                config.extra.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_model_id_resolves_to_its_official_artifact() {
        let record =
            find_prebuilt("Qwen2.5-0.5B-Instruct-q4f16_1-MLC").expect("the seed model is listed");
        assert!(
            record.model.ends_with("/mlc-ai/Qwen2.5-0.5B-Instruct-q4f16_1-MLC"),
            "{}",
            record.model
        );
        assert!(find_prebuilt("no-such-model").is_none());
        assert!(prebuilt_models().len() >= 20);
    }

    #[test]
    fn webllm_ids_of_implemented_families_resolve_and_others_do_not() {
        for id in [
            "Llama-3.1-8B-Instruct-q4f32_1-MLC",
            "Hermes-2-Pro-Llama-3-8B-q4f16_1-MLC",
            "gemma3-1b-it-q4f16_1-MLC",
        ] {
            let record = find_prebuilt(id).unwrap_or_else(|| panic!("{id} is listed"));
            assert!(record.model.ends_with(&format!("/mlc-ai/{id}")), "{}", record.model);
        }
        // The embedding models: -b4 and -b32 (WebLLM's compiled batch sizes) share one artifact.
        for id in
            ["snowflake-arctic-embed-m-q0f32-MLC-b4", "snowflake-arctic-embed-m-q0f32-MLC-b32"]
        {
            let record = find_prebuilt(id).unwrap_or_else(|| panic!("{id} is listed"));
            assert!(record.model.ends_with("/mlc-ai/snowflake-arctic-embed-m-q0f32-MLC"));
        }
        // Gemma 4 is not implemented; a q3 quantization is not loaded.
        assert!(find_prebuilt("gemma-4-E2B-it-q4f16_1-MLC").is_none());
        assert!(find_prebuilt("Llama-3.1-70B-Instruct-q3f16_1-MLC").is_none());
    }

    #[test]
    fn webllm_ids_that_cannot_run_say_why() {
        let why = |id| why_not_runnable(id).unwrap_or_else(|| panic!("{id} has a reason"));
        assert!(why("gemma-4-E2B-it-q4f16_1-MLC").contains("model-package"));
        assert!(why("Llama-3.1-70B-Instruct-q3f16_1-MLC").contains("quantization q3f16_1"));
        assert!(why("Phi-3.5-vision-instruct-q4f16_1-MLC").contains("vision"));
        assert!(why_not_runnable("Qwen2.5-0.5B-Instruct-q4f16_1-MLC").is_none());
        assert!(why_not_runnable("snowflake-arctic-embed-s-q0f32-MLC-b32").is_none());
        // Every WebLLM id is either runnable or explained (WebLLM 0.2.86 has 165).
        let list = embedded_list();
        assert_eq!(list.model_list.len() + list.not_runnable.len(), 165);
    }
}
