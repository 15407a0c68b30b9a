//! `response_format: {type: "structural_tag", structural_tag}`: XGrammar's
//! structural tags (what WebLLM 0.2.86 hands to XGrammar) written as a Lark
//! grammar for llguidance.
//!
//! A structural tag is `{type: "structural_tag", format}` (or the bare
//! `format`, or either as a JSON string). Formats nest:
//!
//! - `const_string {value}`, `regex {pattern}`, `json_schema {json_schema}`,
//!   `any_text`;
//! - `sequence {elements}`, `or {elements}`;
//! - `tag {begin, content, end}` (`end` a string or a list of strings): the
//!   begin string, the content, one of the end strings; `any_text` content runs
//!   until the first end string;
//! - `triggered_tags {triggers, tags, at_least_one?, stop_after_first?}`: free
//!   text that never contains a trigger, and where a trigger starts, one of the
//!   tags (whose begin strings start with a trigger);
//! - `tags_with_separator {tags, separator, at_least_one?, stop_after_first?}`:
//!   tags and the separator between them, nothing else.
//!
//! `grammar` (nested EBNF) and `qwen_xml_parameter` are refused with a message
//! naming them.

use serde_json::Value;

use super::grammar::with_compact_layout;

/// The Lark grammar (start rule `start`) of a structural tag, or why it cannot
/// be built.
pub fn structural_tag_to_lark(tag: &Value) -> Result<String, String> {
    let parsed;
    let tag = match tag {
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|error| format!("structural_tag is not valid JSON: {error}"))?;
            &parsed
        }
        other => other,
    };
    let format = match tag.get("format") {
        Some(format) => {
            match tag.get("type") {
                None => {}
                Some(Value::String(kind)) if kind == "structural_tag" => {}
                Some(_) => {
                    return Err(
                        "structural tag \"type\" field must be \"structural_tag\" when present"
                            .to_string(),
                    );
                }
            }
            format
        }
        None => tag,
    };
    let mut lark = Lark::default();
    let start = lark.format(format)?;
    lark.rules.insert(0, format!("start: {start}"));
    Ok(lark.rules.join("\n") + "\n")
}

/// The rules written so far; each format becomes an expression over them.
#[derive(Default)]
struct Lark {
    rules: Vec<String>,
}

impl Lark {
    /// A new rule `name: body` (with `attributes` such as `[suffix=…]`); its name.
    fn rule(&mut self, attributes: &str, body: &str) -> String {
        let name = format!("st_{}", self.rules.len());
        self.rules.push(format!("{name}{attributes}: {body}"));
        name
    }

    /// A new terminal `NAME: body`; its name.
    fn terminal(&mut self, body: &str) -> String {
        let name = format!("ST_{}", self.rules.len());
        self.rules.push(format!("{name}: {body}"));
        name
    }

    /// The expression matching `format`.
    fn format(&mut self, format: &Value) -> Result<String, String> {
        let kind = format
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("a structural tag format needs a string \"type\": {format}"))?;
        match kind {
            "const_string" => Ok(literal(str_field(format, kind, "value")?)),
            "regex" => Ok(self.terminal(&regex(str_field(format, kind, "pattern")?))),
            "any_text" => Ok(self.terminal("/(?s:.+)/").to_string() + "?"),
            "json_schema" => {
                let schema =
                    format.get("json_schema").ok_or_else(|| missing(kind, "json_schema"))?;
                let schema = match schema {
                    Value::String(text) => serde_json::from_str(text)
                        .map_err(|error| format!("json_schema is not valid JSON: {error}"))?,
                    other => other.clone(),
                };
                Ok(self.rule("", &format!("%json {}", with_compact_layout(schema))))
            }
            "sequence" | "or" => {
                let elements = array_field(format, kind, "elements")?;
                if elements.is_empty() {
                    return Err(format!("{kind} needs at least one element"));
                }
                let parts = elements
                    .iter()
                    .map(|element| self.format(element))
                    .collect::<Result<Vec<_>, _>>()?;
                let joiner = if kind == "or" { " | " } else { " " };
                Ok(self.rule("", &parts.join(joiner)))
            }
            "tag" => self.tag(format),
            "triggered_tags" => self.triggered_tags(format),
            "tags_with_separator" => {
                let tags = self.tags(format, kind)?;
                let separator = literal(str_field(format, kind, "separator")?);
                let (at_least_one, stop_after_first) = flags(format);
                let body = match (at_least_one, stop_after_first) {
                    (true, true) => tags,
                    (false, true) => format!("{tags}?"),
                    (true, false) => format!("{tags} ({separator} {tags})*"),
                    (false, false) => format!("({tags} ({separator} {tags})*)?"),
                };
                Ok(self.rule("", &body))
            }
            "grammar" | "qwen_xml_parameter" => {
                Err(format!("the structural tag format \"{kind}\" is not supported by this engine"))
            }
            other => Err(format!("unknown structural tag format type \"{other}\"")),
        }
    }

    /// `begin`, the content, then one of the `end` strings.
    fn tag(&mut self, tag: &Value) -> Result<String, String> {
        let begin = match str_field(tag, "tag", "begin")? {
            "" => String::new(),
            begin => literal(begin),
        };
        let ends: Vec<&str> = match tag.get("end") {
            Some(Value::String(end)) => vec![end.as_str()],
            Some(Value::Array(ends)) if !ends.is_empty() => ends
                .iter()
                .map(|end| {
                    end.as_str().ok_or_else(|| "tag \"end\" strings must be strings".to_string())
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(missing("tag", "end")),
        };
        let content = tag.get("content").ok_or_else(|| missing("tag", "content"))?;
        if content.get("type").and_then(Value::as_str) == Some("any_text") {
            // Free text up to, and including, the first end string.
            let suffix = match ends.as_slice() {
                [end] => literal(end),
                _ => regex(&ends.iter().map(|end| regex_escape(end)).collect::<Vec<_>>().join("|")),
            };
            let text = self.rule(&format!("[suffix={suffix}]"), "/(?s:.*)/");
            return Ok(self.rule("", &format!("{begin} {text}")));
        }
        let content = self.format(content)?;
        let end = ends.iter().map(|end| literal(end)).collect::<Vec<_>>().join(" | ");
        Ok(self.rule("", &format!("{begin} {content} ({end})")))
    }

    /// An alternation of the `tags` of a format.
    fn tags(&mut self, format: &Value, kind: &str) -> Result<String, String> {
        let tags = array_field(format, kind, "tags")?;
        if tags.is_empty() {
            return Err(format!("{kind} needs at least one tag"));
        }
        let tags = tags.iter().map(|tag| self.tag(tag)).collect::<Result<Vec<_>, _>>()?;
        Ok(self.rule("", &tags.join(" | ")))
    }

    fn triggered_tags(&mut self, format: &Value) -> Result<String, String> {
        let kind = "triggered_tags";
        let triggers: Vec<&str> = array_field(format, kind, "triggers")?
            .iter()
            .map(|trigger| trigger.as_str().filter(|t| !t.is_empty()))
            .collect::<Option<_>>()
            .ok_or("triggers must be non-empty strings")?;
        if triggers.is_empty() {
            return Err("triggered_tags needs at least one trigger".to_string());
        }
        if array_field(format, kind, "tags")?.is_empty() {
            return Err("triggered_tags needs at least one tag".to_string());
        }
        for tag in array_field(format, kind, "tags")? {
            let begin = tag.get("begin").and_then(Value::as_str).unwrap_or_default();
            if !triggers.iter().any(|trigger| begin.starts_with(trigger)) {
                return Err(format!("the tag begin {begin:?} starts with none of the triggers"));
            }
        }
        // Free text runs lazily up to a trigger, which the tag then continues; the text after
        // the last tag never contains a trigger (so a trigger always opens a tag).
        let mut segments = Vec::new();
        for trigger in &triggers {
            let text = self.rule(&format!("[suffix={}]", literal(trigger)), "/(?s:.*)/");
            let mut rests = Vec::new();
            for tag in array_field(format, kind, "tags")? {
                let begin = tag.get("begin").and_then(Value::as_str).unwrap_or_default();
                if let Some(rest) = begin.strip_prefix(trigger) {
                    let rest_tag = with_begin(tag, rest);
                    rests.push(self.tag(&rest_tag)?);
                }
            }
            if !rests.is_empty() {
                segments.push(format!("{text} ({})", rests.join(" | ")));
            }
        }
        let segment = self.rule("", &segments.join(" | "));
        let any_trigger = triggers.iter().map(|t| regex_escape(t)).collect::<Vec<_>>().join("|");
        let tail = self.terminal(&format!("/(?s:.+)/ & ~/(?s:.*(?:{any_trigger}).*)/"));
        let (at_least_one, stop_after_first) = flags(format);
        let body = match (at_least_one, stop_after_first) {
            (true, true) => segment,
            (false, true) => format!("({segment} | {tail})?"),
            (true, false) => format!("{segment}+ {tail}?"),
            (false, false) => format!("{segment}* {tail}?"),
        };
        Ok(self.rule("", &body))
    }
}

/// `tag` with its begin string replaced by `begin`.
fn with_begin(tag: &Value, begin: &str) -> Value {
    let mut tag = tag.clone();
    tag["begin"] = Value::String(begin.to_string());
    tag
}

fn flags(format: &Value) -> (bool, bool) {
    let flag = |key: &str| format.get(key).and_then(Value::as_bool).unwrap_or(false);
    (flag("at_least_one"), flag("stop_after_first"))
}

fn missing(kind: &str, field: &str) -> String {
    format!("a structural tag \"{kind}\" needs \"{field}\"")
}

fn str_field<'a>(format: &'a Value, kind: &str, field: &str) -> Result<&'a str, String> {
    format.get(field).and_then(Value::as_str).ok_or_else(|| missing(kind, field))
}

fn array_field<'a>(format: &'a Value, kind: &str, field: &str) -> Result<&'a [Value], String> {
    format
        .get(field)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| missing(kind, field))
}

/// A Lark string literal (JSON's escapes, which llguidance's Lark reads).
fn literal(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

/// A Lark regex literal of `pattern`.
fn regex(pattern: &str) -> String {
    format!("/{}/", pattern.replace('/', "\\/"))
}

/// `text` matched literally inside a regex.
fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| if "\\.+*?()|[]{}^$/-".contains(c) { format!("\\{c}") } else { c.to_string() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::Grammar;
    use crate::grammar::test_vocab::{accepts, compiler};
    use serde_json::json;

    fn check(tag: Value, good: &[&str], bad: &[&str]) {
        let lark = structural_tag_to_lark(&tag).unwrap();
        let (compiler, texts) = compiler();
        let grammar = Grammar::Lark(lark.clone());
        for text in good {
            assert!(accepts(&compiler, &texts, &grammar, text), "{text:?} should match\n{lark}");
        }
        for text in bad {
            assert!(
                !accepts(&compiler, &texts, &grammar, text),
                "{text:?} should not match\n{lark}"
            );
        }
    }

    fn weather_tag() -> Value {
        json!({"type": "tag", "begin": "<function=get_weather>", "end": "</function>", "content": {
            "type": "json_schema",
            "json_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}
        }})
    }

    #[test]
    fn triggered_tags_allow_free_text_and_hold_each_tag_to_its_schema() {
        let tag = json!({"type": "structural_tag", "format": {
            "type": "triggered_tags", "triggers": ["<function="], "tags": [weather_tag()]
        }});
        check(
            tag,
            &[
                "Let me check.",
                "<function=get_weather>{\"city\": \"Oslo\"}</function>",
                "Checking <function=get_weather>{\"city\": \"Oslo\"}</function> done",
            ],
            &[
                "Checking <function=get_time>{}</function>",
                "<function=get_weather>{\"town\": 1}</function>",
            ],
        );
    }

    #[test]
    fn formats_nest_and_strings_are_read_as_json() {
        let tag = json!({"type": "sequence", "elements": [
            {"type": "const_string", "value": "A: "},
            {"type": "or", "elements": [{"type": "regex", "pattern": "[0-9]+"}, {"type": "const_string", "value": "none"}]},
            {"type": "tag", "begin": " [", "content": {"type": "any_text"}, "end": ["]", ")"]}
        ]});
        check(tag.clone(), &["A: 42 [x y]", "A: none [)"], &["A: x [y]", "A: 4 [y"]);
        let as_string = Value::String(json!({"format": tag}).to_string());
        check(as_string, &["A: 7 []"], &["B"]);
        let separated = json!({"type": "tags_with_separator", "separator": ",", "at_least_one": true, "tags": [weather_tag()]});
        check(
            separated,
            &[
                "<function=get_weather>{\"city\": \"a\"}</function>,<function=get_weather>{\"city\": \"b\"}</function>",
            ],
            &["", "text"],
        );
    }

    #[test]
    fn unsupported_or_malformed_tags_are_errors() {
        for (tag, words) in [
            (
                json!({"type": "grammar", "grammar": "root ::= \"a\""}),
                "\"grammar\" is not supported",
            ),
            (json!({"type": "no_such"}), "unknown structural tag format"),
            (
                json!({"type": "tag", "begin": "<a>", "content": {"type": "any_text"}}),
                "needs \"end\"",
            ),
            (
                json!({"type": "triggered_tags", "triggers": ["<f"], "tags": [{"type": "tag", "begin": "<g>", "end": "</g>", "content": {"type": "any_text"}}]}),
                "none of the triggers",
            ),
            (
                json!({"type": "other", "format": {"type": "any_text"}}),
                "must be \"structural_tag\"",
            ),
        ] {
            let error = structural_tag_to_lark(&tag).unwrap_err();
            assert!(error.contains(words), "{error}");
        }
    }
}
