//! Which models may be sent `tools`: WebLLM's list, which names them by id,
//! and the Qwen2.5 models whose own tool-call format this engine also speaks.
//! Kept apart so that the tool formats and the error that lists these
//! models read one source.

/// Model ids for which WebLLM accepts `tools` (`functionCallingModelIds`).
pub const FUNCTION_CALLING_MODEL_IDS: [&str; 5] = [
    "Hermes-2-Pro-Llama-3-8B-q4f16_1-MLC",
    "Hermes-2-Pro-Llama-3-8B-q4f32_1-MLC",
    "Hermes-2-Pro-Mistral-7B-q4f16_1-MLC",
    "Hermes-3-Llama-3.1-8B-q4f32_1-MLC",
    "Hermes-3-Llama-3.1-8B-q4f16_1-MLC",
];

/// What `UnsupportedModelIdError` adds to WebLLM's list: the models whose
/// native tool-call format this engine also speaks (docs/structured-output.md).
pub const QWEN_TOOL_MODELS: &str = ", and models with the `qwen2` conversation template (Qwen2.5)";
