//! Constrained decoding: a grammar (a JSON schema, any JSON, or a grammar in
//! Lark syntax) compiled against the model's vocabulary into a matcher that
//! gives, before each step, the bitmask of tokens that keep the output in the
//! language, and follows each sampled token.
//!
//! The grammar engine is `llguidance` (Earley parsing over a lexer, with a
//! token trie so a mask costs far less than one check per vocabulary entry).
//! The vocabulary's bytes come from `tokenizer.json` (`llguidance`'s own
//! reader, byte-level BPE and byte-fallback alike); the tokenizer itself is
//! never run during masking.

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};

/// The JSON formatting structured output uses: `, ` and `: ` and no other
/// whitespace. WebLLM's XGrammar allows any whitespace; a fixed layout keeps a
/// small model from spending its tokens (or looping) on blanks.
const COMPACT_JSON: &str =
    r#"{"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}"#;

/// What the output must be.
#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// Any JSON document: an object or an array (XGrammar's built-in JSON
    /// grammar, which WebLLM 0.2.79 used for `json_object` without a schema).
    AnyJson,
    /// JSON valid against this JSON schema.
    JsonSchema(serde_json::Value),
    /// A grammar in llguidance's Lark syntax (start rule `start`).
    Lark(String),
}

impl Grammar {
    /// The llguidance form of the grammar.
    fn top_level(&self) -> TopLevelGrammar {
        match self {
            Grammar::AnyJson => {
                TopLevelGrammar::from_json_schema(with_compact_layout(serde_json::json!({
                    "anyOf": [{"type": "object"}, {"type": "array"}]
                })))
            }
            Grammar::JsonSchema(schema) => {
                TopLevelGrammar::from_json_schema(with_compact_layout(schema.clone()))
            }
            Grammar::Lark(text) => TopLevelGrammar::from_lark(text.clone()),
        }
    }
}

/// `schema` with [`COMPACT_JSON`] as its layout, unless it names its own
/// (`x-guidance`); a schema that is not an object (`true`) is wrapped.
pub(crate) fn with_compact_layout(schema: serde_json::Value) -> serde_json::Value {
    let layout: serde_json::Value = serde_json::from_str(COMPACT_JSON).expect("constant JSON");
    match schema {
        serde_json::Value::Object(mut map) => {
            map.entry("x-guidance").or_insert(layout);
            serde_json::Value::Object(map)
        }
        other => serde_json::json!({"allOf": [other], "x-guidance": layout}),
    }
}

/// The model's vocabulary prepared for grammars: build once per model (it
/// indexes every token's bytes), then compile any number of grammars.
pub struct GrammarCompiler {
    factory: ParserFactory,
    /// Mask words: `ceil(vocab_size / 32)`.
    words: usize,
    /// The tokens that end a reply; the first is the grammar's own end token.
    ends: Arc<[u32]>,
}

impl GrammarCompiler {
    /// Indexes the tokens of `tokenizer.json` for a model whose logits have
    /// `vocab_size` entries (ids past the tokenizer's are never allowed).
    /// `ends` are the tokens that end a reply (the template's stop tokens): a
    /// grammar allows them exactly where the output is complete.
    pub fn new(
        tokenizer_json: &[u8],
        vocab_size: usize,
        ends: &[u32],
    ) -> Result<GrammarCompiler, String> {
        let &end = ends.first().ok_or("no end token")?;
        if let Some(bad) = ends.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(format!("end token {bad} is outside the vocabulary of {vocab_size}"));
        }
        let json: serde_json::Value = serde_json::from_slice(tokenizer_json)
            .map_err(|error| format!("tokenizer.json: {error}"))?;
        let mut tokens = llguidance::token_bytes_from_tokenizer_json(&json)
            .map_err(|error| format!("tokenizer.json: {error}"))?;
        if tokens.len() > vocab_size {
            return Err(format!(
                "tokenizer.json has {} tokens, more than the model's {vocab_size}",
                tokens.len()
            ));
        }
        // Padding rows of the embedding: empty byte strings are never allowed.
        tokens.resize(vocab_size, Vec::new());
        let info = TokRxInfo::new(vocab_size as u32, end);
        let trie = TokTrie::from(&info, &tokens);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory = ParserFactory::new_simple(&env).map_err(|error| error.to_string())?;
        // Warnings and statistics would go to stderr, which a browser does not have.
        factory.quiet();
        Ok(GrammarCompiler { factory, words: vocab_size.div_ceil(32), ends: ends.into() })
    }

    /// A matcher for one output, at its start. Errors are the grammar's
    /// (unparsable, unsatisfiable or unsupported schema or grammar).
    pub fn matcher(&self, grammar: &Grammar) -> Result<TokenMatcher, String> {
        let parser =
            self.factory.create_parser(grammar.top_level()).map_err(|error| error.to_string())?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(error) = matcher.get_error() {
            return Err(error);
        }
        Ok(TokenMatcher { matcher, words: self.words, ends: Arc::clone(&self.ends) })
    }
}

/// One output's position in its grammar (cloned to start another output).
#[derive(Clone)]
pub struct TokenMatcher {
    matcher: Matcher,
    words: usize,
    ends: Arc<[u32]>,
}

impl TokenMatcher {
    /// The tokens allowed next: bit `i % 32` of word `i / 32` set for each
    /// allowed id (`ceil(vocab / 32)` words). Where the output may end, every
    /// end token is allowed; after a complete output, only they are.
    pub fn mask(&mut self) -> Result<Vec<u32>, String> {
        let allowed = self.matcher.compute_mask_or_eos().map_err(|error| error.to_string())?;
        let mut words = allowed.as_slice().to_vec();
        words.resize(self.words, 0);
        let bit = |id: u32| (id as usize / 32, 1u32 << (id % 32));
        let (word, mask) = bit(self.ends[0]);
        if words[word] & mask != 0 {
            for &end in &self.ends[1..] {
                let (word, mask) = bit(end);
                words[word] |= mask;
            }
        }
        if words.iter().all(|&word| word == 0) {
            return Err("the grammar allows no token here".to_string());
        }
        Ok(words)
    }

    /// Moves past `token`, which must have been allowed by the last mask.
    pub fn accept(&mut self, token: u32) -> Result<(), String> {
        if self.matcher.is_stopped() {
            // Only the end tokens were allowed; one closes the output.
            return Ok(());
        }
        // Any end token stands for the grammar's own.
        let token = if self.ends.contains(&token) { self.ends[0] } else { token };
        self.matcher.consume_token(token).map_err(|error| error.to_string())
    }
}

/// A byte-level test vocabulary and helpers to drive matchers over it.
#[cfg(test)]
pub(crate) mod test_vocab {
    use super::*;

    /// A byte-level vocabulary: one token per printable ASCII byte, then `<end>`.
    pub(crate) fn compiler() -> (GrammarCompiler, Vec<String>) {
        let texts: Vec<String> = (0x20u8..0x7f).map(|b| (b as char).to_string()).collect();
        let vocab: serde_json::Map<String, serde_json::Value> = texts
            .iter()
            .enumerate()
            .map(|(id, text)| (text.replace(' ', "Ġ"), id.into()))
            .collect();
        let end = texts.len();
        let json = serde_json::json!({
            "model": {"type": "BPE", "vocab": vocab, "merges": []},
            "decoder": {"type": "ByteLevel"},
            "added_tokens": [{"id": end, "content": "<end>", "special": true}],
        });
        let compiler =
            GrammarCompiler::new(json.to_string().as_bytes(), end + 8, &[end as u32]).unwrap();
        (compiler, texts)
    }

    pub(crate) fn allowed(mask: &[u32], id: usize) -> bool {
        mask[id / 32] & (1 << (id % 32)) != 0
    }

    /// Whether `grammar` matches exactly `text` (each byte allowed in turn, then the end).
    pub(crate) fn accepts(
        compiler: &GrammarCompiler,
        texts: &[String],
        grammar: &Grammar,
        text: &str,
    ) -> bool {
        let mut matcher = compiler.matcher(grammar).unwrap();
        for c in text.chars() {
            let Some(id) = texts.iter().position(|t| *t == c.to_string()) else { return false };
            if !matcher.mask().is_ok_and(|mask| allowed(&mask, id)) {
                return false;
            }
            matcher.accept(id as u32).unwrap();
        }
        matcher.mask().is_ok_and(|mask| allowed(&mask, texts.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::test_vocab::{allowed, compiler};
    use super::*;

    /// Drives a matcher by always taking the lowest allowed id.
    fn first_choice(matcher: &mut TokenMatcher, texts: &[String]) -> String {
        let mut out = String::new();
        loop {
            let mask = matcher.mask().unwrap();
            let id = (0..texts.len() + 8).find(|&id| allowed(&mask, id)).unwrap();
            matcher.accept(id as u32).unwrap();
            if id == texts.len() {
                return out;
            }
            out.push_str(&texts[id]);
        }
    }

    #[test]
    fn a_schema_mask_allows_exactly_the_continuations_and_the_end_when_complete() {
        let (compiler, texts) = compiler();
        let schema = serde_json::json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": false});
        let mut matcher = compiler.matcher(&Grammar::JsonSchema(schema)).unwrap();
        let mask = matcher.mask().unwrap();
        let open = texts.iter().position(|t| t == "{").unwrap();
        assert!(allowed(&mask, open));
        assert_eq!(
            (0..texts.len() + 8).filter(|&id| allowed(&mask, id)).count(),
            1,
            "only `{{` can start it"
        );
        let text = first_choice(&mut matcher, &texts);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        // The lowest ids spell `-0`: an integer to JSON Schema, a float to serde_json.
        assert!(value["a"].as_f64().is_some_and(|a| a.fract() == 0.0), "{text}");
    }

    #[test]
    fn bad_grammars_are_errors_not_panics() {
        let (compiler, _) = compiler();
        assert!(compiler.matcher(&Grammar::Lark("start: (".to_string())).is_err());
        assert!(
            compiler
                .matcher(&Grammar::JsonSchema(serde_json::json!({"type": "no-such-type"})))
                .is_err()
        );
        let lark = compiler.matcher(&Grammar::Lark("start: \"yes\" | \"no\"".to_string()));
        assert!(lark.is_ok());
    }
}
