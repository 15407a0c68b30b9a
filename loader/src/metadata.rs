//! Checks of an artifact's small files (config, index, tokenizer files):
//! each parses as what it is, and the tokenizer fits the config. A download
//! is checked before it gets its final name in the cache, and a cached copy
//! each time it is used, so a broken file is never trusted.

use std::collections::HashMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::config::CONFIG_FILE;
use crate::index::INDEX_FILES;
use crate::{ChatConfig, LoadError, TensorIndex};

/// A check of one file's bytes; the `&str` names the file (path or URL) in errors.
pub(crate) type Check<'a> = &'a dyn Fn(&[u8], &str) -> Result<(), LoadError>;

/// The tokenizer file whose token ids are compared with the config's `vocab_size`.
const TOKENIZER_JSON: &str = "tokenizer.json";

/// Checks file `name` on its own: the config and the index parse as such,
/// any other `.json` file is JSON. Other files (`merges.txt`, ...) have no
/// structure to check.
pub(crate) fn check_alone(name: &str, bytes: &[u8], file: &str) -> Result<(), LoadError> {
    if name == CONFIG_FILE {
        ChatConfig::parse(&utf8(bytes, file, config_error)?, file).map(drop)
    } else if INDEX_FILES.contains(&name) {
        TensorIndex::parse(&utf8(bytes, file, index_error)?, file).map(drop)
    } else if name.ends_with(".json") {
        json_value(bytes, file).map(drop)
    } else {
        Ok(())
    }
}

/// Checks tokenizer file `name` of the artifact whose config is `config`:
/// it parses, and no token id of `tokenizer.json` lies beyond the config's
/// `vocab_size` (a config and a tokenizer of different models).
pub(crate) fn check_tokenizer_file(
    config: &ChatConfig,
    name: &str,
    bytes: &[u8],
    file: &str,
) -> Result<(), LoadError> {
    if name != TOKENIZER_JSON {
        return check_alone(name, bytes, file);
    }
    let tokenizer: TokenizerIds = serde_json::from_slice(bytes)
        .map_err(|error| config_error(file, format!("not a tokenizer: {error}")))?;
    match tokenizer.highest_id() {
        Some(id) if id >= config.vocab_size as u64 => Err(config_error(
            file,
            format!(
                "token id {id} does not fit the config's vocab_size {} \
                 (the config and the tokenizer are from different models)",
                config.vocab_size
            ),
        )),
        _ => Ok(()),
    }
}

/// The parts of a `tokenizer.json` that give token ids.
#[derive(Deserialize)]
struct TokenizerIds {
    #[serde(default)]
    model: Option<TokenizerModel>,
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
}

#[derive(Deserialize)]
struct TokenizerModel {
    #[serde(default)]
    vocab: Option<Vocab>,
}

/// BPE, WordPiece and WordLevel map tokens to ids; Unigram lists them in id order.
#[derive(Deserialize)]
#[serde(untagged)]
enum Vocab {
    Map(HashMap<String, u64>),
    List(Vec<IgnoredAny>),
}

#[derive(Deserialize)]
struct AddedToken {
    id: u64,
}

impl TokenizerIds {
    fn highest_id(&self) -> Option<u64> {
        let vocab = match self.model.as_ref().and_then(|model| model.vocab.as_ref()) {
            Some(Vocab::Map(ids)) => ids.values().max().copied(),
            Some(Vocab::List(pieces)) => (pieces.len() as u64).checked_sub(1),
            None => None,
        };
        let added = self.added_tokens.iter().map(|token| token.id).max();
        vocab.max(added)
    }
}

fn json_value(bytes: &[u8], file: &str) -> Result<IgnoredAny, LoadError> {
    serde_json::from_slice(bytes).map_err(|error| config_error(file, format!("not JSON: {error}")))
}

fn utf8(
    bytes: &[u8],
    file: &str,
    error: fn(&str, String) -> LoadError,
) -> Result<String, LoadError> {
    String::from_utf8(bytes.to_vec()).map_err(|e| error(file, format!("not valid UTF-8 text: {e}")))
}

fn config_error(file: &str, message: String) -> LoadError {
    LoadError::Config { file: file.to_string(), message }
}

fn index_error(file: &str, message: String) -> LoadError {
    LoadError::Index { file: file.to_string(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vocab_size: usize) -> ChatConfig {
        let text = format!(
            r#"{{"model_type": "llama", "quantization": "q4f16_1", "vocab_size": {vocab_size}}}"#
        );
        ChatConfig::parse(&text, "c").unwrap()
    }

    #[test]
    fn each_kind_of_file_is_parsed_as_what_it_is() {
        assert!(check_alone(CONFIG_FILE, br#"{"model_type": "llama"}"#, "c").is_err());
        assert!(check_alone("tensor-cache.json", b"{\"records\": 3}", "i").is_err());
        assert!(matches!(
            check_alone("tokenizer_config.json", b"<html>", "t"),
            Err(LoadError::Config { .. })
        ));
        assert!(check_alone("merges.txt", b"anything", "m").is_ok());
        assert!(check_alone("vocab.json", b"{}", "v").is_ok());
    }

    #[test]
    fn a_tokenizer_with_ids_beyond_the_vocab_does_not_fit_the_config() {
        let bpe = br#"{"model": {"vocab": {"a": 0, "b": 9}}, "added_tokens": [{"id": 11}]}"#;
        assert!(check_tokenizer_file(&config(12), TOKENIZER_JSON, bpe, "t").is_ok());
        let error = check_tokenizer_file(&config(11), TOKENIZER_JSON, bpe, "t").unwrap_err();
        assert!(error.to_string().contains("token id 11 does not fit"), "{error}");
        let unigram = br#"{"model": {"vocab": [["a", 0.0], ["b", -1.0], ["c", -2.0]]}}"#;
        assert!(check_tokenizer_file(&config(3), TOKENIZER_JSON, unigram, "t").is_ok());
        assert!(check_tokenizer_file(&config(2), TOKENIZER_JSON, unigram, "t").is_err());
        assert!(check_tokenizer_file(&config(2), TOKENIZER_JSON, b"[1", "t").is_err());
    }
}
