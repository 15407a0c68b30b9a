//! `mlc-chat-config.json` as `Artifact::open` reads it: any bytes must parse
//! to a config or fail with an error, never panic; a parsed config's accessors
//! must be total too (the runtime calls them on whatever the file holds).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlc_loader::ChatConfig;

fuzz_target!(|data: &[u8]| {
    // The loader reads the file as UTF-8 text first; other bytes never reach the parser.
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = ChatConfig::from_json(text) else { return };
    let _ = config.quantization();
    // The keys the model families read, with the types they read them as.
    for key in
        ["hidden_size", "num_attention_heads", "head_dim", "vocab_size", "context_window_size"]
    {
        let _ = config.model_config_get::<usize>(key);
    }
    for key in ["rope_theta", "rms_norm_eps", "layer_norm_eps"] {
        let _ = config.model_config_get::<f64>(key);
    }
    let _ = config.model_config_get::<bool>("tie_word_embeddings");
    let _ = config.model_config_get::<String>("hidden_act");
    let _ = config.model_config_get::<serde_json::Value>("rope_scaling");
});
