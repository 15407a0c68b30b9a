//! What `response_format` asks the reply to be, as a [`Grammar`].
//!
//! - `json_object` without `schema`: any JSON object or array (WebLLM 0.2.86
//!   fails here; 0.2.79 and the README's examples expect this).
//! - `json_object` with `schema`: WebLLM's form, the schema as a JSON string
//!   (an object is read too).
//! - `json_schema` with `json_schema.schema`: OpenAI's form (WebLLM ignores it).
//! - `grammar` with `grammar`: WebLLM's EBNF, translated to Lark.
//! - `structural_tag` with `structural_tag`: XGrammar's structural tag,
//!   translated to Lark (`structural_tag.rs`).
//! - `text`, absent or another type: free text.

use super::ebnf::ebnf_to_lark;
use super::error::ChatError;
use super::grammar::Grammar;
use super::openai::ResponseFormat;
use super::structural_tag::structural_tag_to_lark;

/// The grammar `format` asks for (`None`: free text). Errors are WebLLM's
/// `GrammarMatcherInitError` for the type.
pub fn grammar_of(format: &ResponseFormat) -> Result<Option<Grammar>, ChatError> {
    let kind = format.kind.as_deref().unwrap_or_default();
    let fail = |cause: String| ChatError::GrammarMatcherInit { kind: kind.to_string(), cause };
    match kind {
        "json_object" => match &format.schema {
            None => Ok(Some(Grammar::AnyJson)),
            Some(schema) => Ok(Some(Grammar::JsonSchema(schema_value(schema).map_err(fail)?))),
        },
        "json_schema" => {
            let schema = format.json_schema.as_ref().and_then(|format| format.schema.as_ref());
            let schema =
                schema.ok_or_else(|| fail("`json_schema.schema` is required".to_string()))?;
            Ok(Some(Grammar::JsonSchema(schema_value(schema).map_err(fail)?)))
        }
        "grammar" => {
            let text = format.grammar.as_deref().unwrap_or_default();
            Ok(Some(Grammar::Lark(ebnf_to_lark(text).map_err(fail)?)))
        }
        "structural_tag" => {
            let tag = format.structural_tag.as_ref().unwrap_or(&serde_json::Value::Null);
            Ok(Some(Grammar::Lark(structural_tag_to_lark(tag).map_err(fail)?)))
        }
        _ => Ok(None),
    }
}

/// A schema given as JSON text (WebLLM's form) or as a JSON value.
fn schema_value(schema: &serde_json::Value) -> Result<serde_json::Value, String> {
    match schema {
        serde_json::Value::String(text) => {
            serde_json::from_str(text).map_err(|error| format!("invalid JSON schema: {error}"))
        }
        value => Ok(value.clone()),
    }
}
