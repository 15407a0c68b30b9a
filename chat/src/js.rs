//! JavaScript semantics that WebLLM's observable behaviour depends on.
//!
//! WebLLM builds prompts with `String.prototype.replace`, slices stream deltas
//! by UTF-16 code units, prints numbers into error messages with JS number
//! formatting and reads `logit_bias` keys with `parseInt` in property order.
//! Reproducing those exactly is what makes our prompts, chunks and error texts
//! identical to WebLLM's.

/// `haystack.replace(pattern, replacement)` with a string pattern, as JS does
/// it: only the first occurrence is replaced, and the replacement's `$$`, `$&`,
/// `` $` `` and `$'` are expanded (ECMAScript GetSubstitution with no captures,
/// so `$1`, `$<` and a lone `$` stay literal).
pub fn replace_first(haystack: &str, pattern: &str, replacement: &str) -> String {
    let Some(start) = haystack.find(pattern) else {
        return haystack.to_string();
    };
    let end = start + pattern.len();
    let mut out = String::with_capacity(haystack.len() + replacement.len());
    out.push_str(&haystack[..start]);
    let mut rest = replacement;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let expansion = match after.as_bytes().first() {
            Some(b'$') => Some("$"),
            Some(b'&') => Some(&haystack[start..end]),
            Some(b'`') => Some(&haystack[..start]),
            Some(b'\'') => Some(&haystack[end..]),
            _ => None,
        };
        match expansion {
            Some(text) => {
                out.push_str(text);
                rest = &after[1..];
            }
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.push_str(&haystack[end..]);
    out
}

/// `String(x)` for a JS number: the shortest round-trip digits, laid out by
/// ECMAScript's Number::toString (plain up to 21 integer digits, exponent form
/// below 1e-6), e.g. `2`, `-0.5`, `1e+21`, `1.5e-7`.
pub fn number_to_string(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    if x == 0.0 {
        // JS prints -0 as "0".
        return "0".to_string();
    }
    // Rust's `{:e}` gives the same shortest round-trip digits JS uses.
    let scientific = format!("{:e}", x.abs());
    let (mantissa, exponent) = scientific.split_once('e').expect("`{:e}` always has an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    // `n` is the position of the decimal point relative to the digits.
    let n = exponent.parse::<i32>().expect("`{:e}` exponent is an integer") + 1;
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let sign = if n - 1 < 0 { '-' } else { '+' };
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        format!("{first}{fraction}e{sign}{}", (n - 1).abs())
    };
    if x < 0.0 { format!("-{body}") } else { body }
}

/// `parseInt(text)`; `None` where JS gives NaN. Leading whitespace and a sign
/// are skipped, `0x` selects hex, trailing garbage is ignored (`"12abc"` is 12).
pub fn parse_int(text: &str) -> Option<i64> {
    let text = text.trim_start_matches(is_js_whitespace);
    let (negative, text) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, text) = match text.get(..2) {
        Some("0x" | "0X") => (16, &text[2..]),
        _ => (10, text),
    };
    let digits: &str = &text[..text.find(|c: char| !c.is_digit(radix)).unwrap_or(text.len())];
    if digits.is_empty() {
        return None;
    }
    // Overflowing values are still numbers in JS; saturate rather than fail.
    let magnitude = i64::from_str_radix(digits, radix).unwrap_or(i64::MAX);
    Some(if negative { -magnitude } else { magnitude })
}

/// JS `StrWhiteSpaceChar`: Unicode white space plus the BOM.
fn is_js_whitespace(c: char) -> bool {
    c.is_whitespace() || c == '\u{FEFF}'
}

/// `items` (an object's entries in insertion order) in the order
/// `for (k in object)` visits them: array-index keys (`"0"`..`"4294967294"`,
/// canonical form) ascending, then the other keys in insertion order.
pub fn property_order<T>(items: &[T], key: impl Fn(&T) -> &str) -> Vec<&T> {
    let (mut indexed, others): (Vec<&T>, Vec<&T>) =
        items.iter().partition(|item| array_index(key(item)).is_some());
    indexed.sort_by_key(|item| array_index(key(item)));
    indexed.extend(others);
    indexed
}

/// The value of an array-index property key, if `key` is one.
fn array_index(key: &str) -> Option<u32> {
    let value: u32 = key.parse().ok()?;
    (value != u32::MAX && value.to_string() == key).then_some(value)
}

/// The byte offset in `text` of UTF-16 code unit `index`, for `slice(index)`.
/// An index inside a surrogate pair (JS would split the character) is moved
/// back to the start of that character so that no half character is emitted.
pub fn utf16_index_to_byte(text: &str, index: usize) -> usize {
    let mut units = 0;
    for (byte, c) in text.char_indices() {
        let next = units + c.len_utf16();
        if next > index {
            return byte;
        }
        units = next;
    }
    text.len()
}

/// `text.length` in JS: the number of UTF-16 code units.
pub fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_first_expands_dollar_patterns_like_js() {
        // Results checked against node: "<a>{x}</a>".replace("{x}", r).
        assert_eq!(replace_first("<a>{x}</a>", "{x}", "1$$2"), "<a>1$2</a>");
        assert_eq!(replace_first("<a>{x}</a>", "{x}", "[$&]"), "<a>[{x}]</a>");
        assert_eq!(replace_first("<a>{x}</a>", "{x}", "[$`]"), "<a>[<a>]</a>");
        assert_eq!(replace_first("<a>{x}</a>", "{x}", "[$']"), "<a>[</a>]</a>");
        assert_eq!(replace_first("<a>{x}</a>", "{x}", "$1 $< $"), "<a>$1 $< $</a>");
        assert_eq!(replace_first("{x}{x}", "{x}", "y"), "y{x}");
        assert_eq!(replace_first("abc", "{x}", "y"), "abc");
        assert_eq!(replace_first("abc", "", "$'"), "abcabc");
        assert_eq!(replace_first("é{x}", "{x}", "€$$"), "é€$");
    }

    #[test]
    fn numbers_print_like_js() {
        let cases = [
            (2.0, "2"),
            (-2.0, "-2"),
            (0.5, "0.5"),
            (-0.0, "0"),
            (100.5, "100.5"),
            (1e21, "1e+21"),
            (123456789012345680000.0, "123456789012345680000"),
            (1e-6, "0.000001"),
            (1.5e-7, "1.5e-7"),
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (value, expected) in cases {
            assert_eq!(number_to_string(value), expected, "{value:e}");
        }
    }

    #[test]
    fn parse_int_follows_js() {
        assert_eq!(parse_int("42"), Some(42));
        assert_eq!(parse_int("  -7x"), Some(-7));
        assert_eq!(parse_int("0x1A"), Some(26));
        assert_eq!(parse_int("1e3"), Some(1));
        assert_eq!(parse_int("abc"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_int("-"), None);
        assert_eq!(parse_int("0x"), None);
    }

    #[test]
    fn property_order_puts_array_indices_first() {
        let keys = ["b", "10", "a", "2", "01", "-1", "4294967295"];
        let ordered: Vec<&str> = property_order(&keys, |key| key).into_iter().copied().collect();
        assert_eq!(ordered, ["2", "10", "b", "a", "01", "-1", "4294967295"]);
    }

    #[test]
    fn utf16_indices_map_to_char_boundaries() {
        let text = "a🦙b";
        assert_eq!(utf16_len(text), 4);
        assert_eq!(utf16_index_to_byte(text, 1), 1);
        assert_eq!(utf16_index_to_byte(text, 2), 1, "inside the surrogate pair");
        assert_eq!(utf16_index_to_byte(text, 3), 5);
        assert_eq!(utf16_index_to_byte(text, 9), text.len());
    }
}
