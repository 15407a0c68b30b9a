//! Checks on file names taken from artifact metadata.

/// Accepts a file name that stays inside the artifact folder: relative,
/// `/`-separated, without empty, `.` or `..` components, backslashes, colons or
/// control characters. Index `dataPath`s and config `tokenizer_files` are
/// joined to a folder and a URL, so anything else could escape either.
pub(crate) fn check_relative_file(name: &str) -> Result<(), String> {
    let bad_char = name.chars().find(|&c| c == '\\' || c == ':' || c.is_control());
    if let Some(c) = bad_char {
        return Err(format!("file name {name:?} contains {c:?}"));
    }
    if name.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err(format!("file name {name:?} is not a plain relative path"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_relative_names_only() {
        for good in ["params_shard_0.bin", "tokenizer.json", "sub/params_shard_1.bin", "a..b"] {
            assert!(check_relative_file(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x.bin",
            "a/../../x",
            "./x",
            "a//b",
            "dir/",
            "c:x",
            "a\\b",
            "x\n",
        ] {
            assert!(check_relative_file(bad).is_err(), "{bad:?}");
        }
    }
}
