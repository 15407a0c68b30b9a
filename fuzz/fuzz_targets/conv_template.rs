//! The `conv_template` value of `mlc-chat-config.json`, in both forms the
//! loader accepts (an object, or a legacy built-in name as a string): the
//! fuzz input is spliced into an otherwise valid config, so every byte the
//! fuzzer varies lands in the template's deserializer (or, when the input
//! closes the object early, in the config's, which is fine too).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlc_loader::ChatConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(template) = std::str::from_utf8(data) else { return };
    let text = format!(
        r#"{{"model_type": "qwen2", "quantization": "q4f16_1", "vocab_size": 16, "conv_template": {template}}}"#
    );
    let Ok(config) = ChatConfig::from_json(&text) else { return };
    if let Some(template) = &config.conv_template {
        // The legacy string form fills in nothing but the name.
        if template.name_only {
            assert!(
                template.seps.is_empty()
                    && template.roles.is_empty()
                    && template.stop_token_ids.is_empty()
            );
        }
    }
});
