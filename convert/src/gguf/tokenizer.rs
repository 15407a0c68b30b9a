//! A Hugging Face `tokenizer.json` rebuilt from a GGUF's `tokenizer.ggml.*`
//! metadata.
//!
//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`) is what llama.cpp's
//! converter writes for SmolLM, Llama 3 and Qwen2/3: the vocabulary (already
//! in byte-level form, `Ġthe`), the merges (`"Ġ t"`), and a token type per
//! token (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
//! What GGUF does not store is the pre-tokenizer: llama.cpp names it
//! (`tokenizer.ggml.pre`) and hard-codes its regex, so the name is mapped
//! here to the pre-tokenizer of the Hugging Face file that model family ships.
//! The JSON is laid out as the `tokenizers` library writes it, so that a
//! rebuilt SmolLM2 file is byte-identical to the original.

use std::collections::HashSet;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::header::{GgufArray, GgufHeader, GgufValue};
use crate::ConvertError;

/// `tokenizer.ggml.pre` values this builder knows, for error messages.
pub const SUPPORTED_PRE: &str =
    "default, gpt-2, smollm, starcoder, refact, llama-bpe, llama3, qwen2";

/// llama.cpp's token types (`llama_token_type`).
const TOKEN_UNKNOWN: i64 = 2;
const TOKEN_CONTROL: i64 = 3;
const TOKEN_USER_DEFINED: i64 = 4;

/// Llama 3's split regex (`llama-bpe` in llama.cpp).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split regex: Llama 3's with single digits.
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GPT-2's byte-level step, with or without its own split regex.
fn byte_level(add_prefix_space: bool, trim_offsets: bool, use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": trim_offsets, "use_regex": use_regex})
}

fn split(regex: &str) -> Value {
    json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false})
}

/// `(normalizer, pre_tokenizer, post_processor, decoder, ignore_merges)` of
/// the Hugging Face file of the family llama.cpp calls `pre`.
fn family(pre: &str) -> Option<(Value, Value, Value, Value, bool)> {
    let gpt2_post = byte_level(true, false, true);
    let gpt2_decoder = byte_level(true, true, true);
    Some(match pre {
        "default" | "gpt-2" | "gpt2" => {
            (Value::Null, byte_level(false, true, true), gpt2_post, gpt2_decoder, false)
        }
        // llama.cpp: `\p{N}` first, then GPT-2's regex (StarCoder's tokenizer).
        "smollm" | "starcoder" | "refact" => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(false, true, true)]}),
            gpt2_post,
            gpt2_decoder,
            false,
        ),
        // Llama 3 also ignores merges for whole-vocabulary words (llama.cpp
        // sets `ignore_merges` for this pre-tokenizer too).
        "llama-bpe" | "llama3" => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_REGEX), byte_level(false, true, false)]}),
            gpt2_post,
            gpt2_decoder,
            true,
        ),
        "qwen2" => (
            json!({"type": "NFC"}),
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2_REGEX), byte_level(false, false, false)]}),
            byte_level(false, false, false),
            byte_level(false, false, false),
            false,
        ),
        _ => return None,
    })
}

fn unsupported(what: String, message: &str) -> ConvertError {
    ConvertError::Unsupported { what, message: message.to_string() }
}

/// Builds `tokenizer.json` (pretty-printed, as `tokenizers` writes it) from
/// the GGUF's tokenizer metadata; `path` names the GGUF in errors.
pub fn build_tokenizer_json(header: &GgufHeader, path: &Path) -> Result<Vec<u8>, ConvertError> {
    let model = header.get("tokenizer.ggml.model").and_then(GgufValue::as_str).unwrap_or("(none)");
    if model != "gpt2" {
        return Err(unsupported(
            format!("GGUF tokenizer model \"{model}\""),
            "only byte-level BPE (\"gpt2\") tokenizers are rebuilt; SentencePiece (\"llama\") is not yet",
        ));
    }
    let pre = header.get("tokenizer.ggml.pre").and_then(GgufValue::as_str).unwrap_or("default");
    let (normalizer, pre_tokenizer, mut post_processor, decoder, ignore_merges) = family(pre)
        .ok_or_else(|| {
            unsupported(
                format!("GGUF pre-tokenizer \"{pre}\""),
                &format!("supported: {SUPPORTED_PRE}"),
            )
        })?;

    let tokens = match header.get("tokenizer.ggml.tokens").and_then(GgufValue::as_array) {
        Some(GgufArray::String(t)) => t,
        _ => {
            return Err(unsupported(
                "GGUF without a `tokenizer.ggml.tokens` string array".into(),
                "the vocabulary is needed",
            ));
        }
    };
    let merges = match header.get("tokenizer.ggml.merges").and_then(GgufValue::as_array) {
        Some(GgufArray::String(m)) => m.as_slice(),
        None => &[],
        Some(_) => {
            return Err(unsupported(
                "`tokenizer.ggml.merges` that is not a string array".into(),
                "merges are strings \"a b\"",
            ));
        }
    };
    let types = header.get("tokenizer.ggml.token_type").and_then(GgufValue::as_array);
    if let Some(types) = types
        && types.len() != tokens.len()
    {
        return Err(ConvertError::Malformed {
            path: path.to_path_buf(),
            message: format!(
                "tokenizer.ggml.token_type: {} token types for {} tokens",
                types.len(),
                tokens.len()
            ),
        });
    }

    let mut added = Vec::new();
    let mut vocab = Map::new();
    let mut seen = HashSet::with_capacity(tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        if !seen.insert(token.as_str()) {
            return Err(ConvertError::Malformed {
                path: path.to_path_buf(),
                message: format!(
                    "tokenizer.ggml.tokens: token {id} {token:?} appears twice; a Hugging Face vocabulary maps each string to one id"
                ),
            });
        }
        vocab.insert(token.clone(), json!(id));
        let ty = types.and_then(|t| t.int_at(id)).unwrap_or(1);
        if matches!(ty, TOKEN_UNKNOWN | TOKEN_CONTROL | TOKEN_USER_DEFINED) {
            added.push(json!({
                "id": id,
                "content": token,
                "single_word": false,
                "lstrip": false,
                "rstrip": false,
                "normalized": false,
                "special": ty != TOKEN_USER_DEFINED,
            }));
        }
    }
    for (i, m) in merges.iter().enumerate() {
        let mut parts = m.split(' ');
        let ok = matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty());
        if !ok {
            return Err(ConvertError::Malformed {
                path: path.to_path_buf(),
                message: format!(
                    "tokenizer.ggml.merges: merge {i} {m:?} is not two tokens separated by one space"
                ),
            });
        }
    }

    // A model that wants a BOS token gets it from the post-processor, as the
    // Hugging Face files of those models do (Llama 3's TemplateProcessing).
    let add_bos =
        header.get("tokenizer.ggml.add_bos_token").and_then(GgufValue::as_bool).unwrap_or(false);
    if add_bos
        && let Some(bos) = header.get("tokenizer.ggml.bos_token_id").and_then(GgufValue::as_u64)
        && let Some(bos_token) = tokens.get(bos as usize)
    {
        let template = json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos_token, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": bos_token, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": bos_token, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}
            ],
            "special_tokens": {bos_token.clone(): {"id": bos_token, "ids": [bos], "tokens": [bos_token]}}
        });
        post_processor = json!({"type": "Sequence", "processors": [post_processor, template]});
    }

    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": decoder,
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": null,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            "ignore_merges": ignore_merges,
            "vocab": vocab,
            "merges": merges,
        }
    });
    serde_json::to_vec_pretty(&tokenizer)
        .map_err(|e| unsupported("tokenizer JSON".into(), &e.to_string()))
}
