//! WebLLM's `response_format.grammar` is XGrammar's EBNF (the GBNF dialect:
//! `root ::= ...`, `"strings"`, `[character classes]`, `( )`, `|`, `*`, `+`,
//! `?`, `{m,n}`, `#` comments). The grammar engine reads Lark, where `[x]`
//! means "optional" and rules are `name: ...`, so this module rewrites the
//! syntax, rule by rule, without interpreting the grammar: strings become
//! JSON-escaped Lark strings, character classes `/[...]/` regexes, rule names
//! `r<i>_<name>` (Lark reserves upper-case names for terminals), and `root`
//! becomes the start rule.

use std::collections::HashMap;

/// Translates an EBNF grammar into Lark; errors name the offending place.
pub fn ebnf_to_lark(ebnf: &str) -> Result<String, String> {
    let tokens = lex(ebnf)?;
    let mut names: HashMap<String, String> = HashMap::new();
    let mut lark_name = |name: &str| -> String {
        let next = names.len();
        names
            .entry(name.to_string())
            .or_insert_with(|| {
                let clean: String = name
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
                    .collect();
                format!("r{next}_{clean}")
            })
            .clone()
    };
    let mut rules: Vec<String> = Vec::new();
    let mut has_root = false;
    let mut i = 0;
    while i < tokens.len() {
        let Token::Name(name) = &tokens[i] else {
            return Err(format!("expected a rule name, found {}", tokens[i].describe()));
        };
        if tokens.get(i + 1) != Some(&Token::Defines) {
            return Err(format!("expected `::=` after rule name `{name}`"));
        }
        has_root |= name == "root";
        let mut line = format!("{}:", lark_name(name));
        i += 2;
        let body_start = i;
        // A body runs until the next `name ::=`.
        while i < tokens.len()
            && !(matches!(tokens[i], Token::Name(_)) && tokens.get(i + 1) == Some(&Token::Defines))
        {
            line.push(' ');
            match &tokens[i] {
                Token::Name(reference) => line.push_str(&lark_name(reference)),
                token => line.push_str(&token.lark()),
            }
            i += 1;
        }
        if i == body_start {
            return Err(format!("rule `{name}` has an empty body"));
        }
        rules.push(line);
    }
    if !has_root {
        return Err("the grammar has no `root` rule".to_string());
    }
    Ok(format!("start: {}\n{}\n", lark_name("root"), rules.join("\n")))
}

/// An EBNF token.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Defines,
    /// A string literal's text (escapes resolved).
    Literal(String),
    /// A character class with its brackets, as written (regex syntax).
    Class(String),
    /// `( ) | * + ?` and `{m,n}` repetitions, copied as they are.
    Operator(String),
}

impl Token {
    fn lark(&self) -> String {
        match self {
            Token::Literal(text) => serde_json::to_string(text).expect("a string serializes"),
            Token::Class(class) => format!("/{}/", class.replace('/', "\\/")),
            Token::Operator(op) => op.clone(),
            Token::Name(name) => name.clone(),
            Token::Defines => "::=".to_string(),
        }
    }

    fn describe(&self) -> String {
        format!("`{}`", self.lark())
    }
}

fn lex(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ':' if chars[i..].starts_with(&[':', ':', '=']) => {
                tokens.push(Token::Defines);
                i += 3;
            }
            '"' => {
                let (literal, next) = string_literal(&chars, i + 1)?;
                tokens.push(Token::Literal(literal));
                i = next;
            }
            '[' => {
                let start = i;
                i += 1;
                while i < chars.len() && chars[i] != ']' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                if i >= chars.len() {
                    return Err("unterminated character class".to_string());
                }
                i += 1;
                tokens.push(Token::Class(chars[start..i].iter().collect()));
            }
            '{' => {
                let start = i;
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                let repeat: String = chars[start..(i + 1).min(chars.len())].iter().collect();
                if i >= chars.len()
                    || !repeat[1..repeat.len() - 1]
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == ',' || c == ' ')
                {
                    return Err(format!("bad repetition `{repeat}`"));
                }
                tokens.push(Token::Operator(repeat.replace(' ', "")));
                i += 1;
            }
            '(' | ')' | '|' | '*' | '+' | '?' => {
                tokens.push(Token::Operator(c.to_string()));
                i += 1;
            }
            _ if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric()
                        || chars[i] == '_'
                        || chars[i] == '-'
                        || chars[i] == '.')
                {
                    i += 1;
                }
                tokens.push(Token::Name(chars[start..i].iter().collect()));
            }
            _ => return Err(format!("unexpected character {c:?}")),
        }
    }
    Ok(tokens)
}

/// The text of a `"..."` literal whose body starts at `start`; returns it and
/// the index after the closing quote.
fn string_literal(chars: &[char], start: usize) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut i = start;
    loop {
        let Some(&c) = chars.get(i) else { return Err("unterminated string".to_string()) };
        i += 1;
        match c {
            '"' => return Ok((out, i)),
            '\\' => {
                let Some(&escape) = chars.get(i) else {
                    return Err("unterminated string".to_string());
                };
                i += 1;
                let hex = |digits: usize, i: &mut usize| -> Result<char, String> {
                    let code: String =
                        chars.get(*i..*i + digits).ok_or("short escape")?.iter().collect();
                    *i += digits;
                    u32::from_str_radix(&code, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or(format!("bad escape `{code}`"))
                };
                out.push(match escape {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    'x' => hex(2, &mut i)?,
                    'u' => hex(4, &mut i)?,
                    'U' => hex(8, &mut i)?,
                    other => other,
                });
            }
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_strings_classes_and_repetitions_translate() {
        let ebnf = "# yes or no\nroot ::= answer (\" \" answer){0,2}\nanswer ::= \"yes\" | \"no\\n\" | [0-9/]+\n";
        let lark = ebnf_to_lark(ebnf).unwrap();
        assert_eq!(
            lark,
            "start: r0_root\nr0_root: r1_answer ( \" \" r1_answer ) {0,2}\nr1_answer: \"yes\" | \"no\\n\" | /[0-9\\/]/ +\n"
        );
    }

    #[test]
    fn malformed_grammars_are_errors() {
        assert!(ebnf_to_lark("answer ::= \"x\"").unwrap_err().contains("root"));
        assert!(ebnf_to_lark("root ::= \"x").unwrap_err().contains("unterminated"));
        assert!(ebnf_to_lark("root = \"x\"").is_err());
        assert!(ebnf_to_lark("root ::=").unwrap_err().contains("empty"));
    }
}
