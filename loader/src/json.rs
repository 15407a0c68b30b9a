//! JSON parsing with errors that point at the offending value.

use serde::de::DeserializeOwned;

/// Parses `text`, describing a failure by the JSON path of the value concerned
/// (e.g. `` `conv_template.seps[0]` ``) and serde's line and column.
pub(crate) fn parse<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        match path.as_str() {
            // The document itself, or a position serde could not attribute.
            "." | "?" => error.into_inner().to_string(),
            _ => format!("`{path}`: {}", error.into_inner()),
        }
    })?;
    deserializer.end().map_err(|error| error.to_string())?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Doc {
        outer: Vec<u32>,
    }

    #[test]
    fn errors_name_the_path_and_the_line() {
        assert_eq!(parse::<Doc>("{\"outer\": [7]}").unwrap().outer, [7]);
        let error = parse::<Doc>("{\n \"outer\": [1, \"two\"]\n}").unwrap_err();
        assert!(error.starts_with("`outer[1]`: invalid type: string \"two\""), "{error}");
        assert!(error.contains("line 2"), "{error}");
        let error = parse::<Doc>("{\"outer\": []} trailing").unwrap_err();
        assert!(error.contains("trailing characters"), "{error}");
        let error = parse::<Doc>("{\"outer\": [").unwrap_err();
        assert!(error.contains("EOF"), "{error}");
    }
}
