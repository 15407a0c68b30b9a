//! Telling URLs from folders, and WebLLM's base-URL rule (docs/mlc-format.md, "Base URL").

/// True when `location` is an http(s) URL rather than a folder path.
pub(crate) fn is_url(location: &str) -> bool {
    let lower = location.get(..8).unwrap_or(location).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// The base URL of an artifact, as WebLLM's `cleanModelUrl` computes it:
/// ensures a trailing `/`, then appends `resolve/main/` unless the URL already
/// has a `/resolve/<revision>/` part. Every artifact file is this base plus
/// its name, e.g. `https://huggingface.co/mlc-ai/X` becomes
/// `https://huggingface.co/mlc-ai/X/resolve/main/`.
pub fn resolve_model_url(url: &str) -> String {
    let mut base = url.to_string();
    if !base.ends_with('/') {
        base.push('/');
    }
    // WebLLM's test is the regex `/resolve/.+/`: a non-empty revision, then a slash.
    let has_revision = base
        .match_indices("/resolve/")
        .any(|(at, marker)| base[at + marker.len()..].chars().skip(1).any(|c| c == '/'));
    if !has_revision {
        base.push_str("resolve/main/");
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_the_main_revision_when_none_is_given() {
        let expected =
            "https://huggingface.co/mlc-ai/Qwen2.5-0.5B-Instruct-q4f16_1-MLC/resolve/main/";
        assert_eq!(
            resolve_model_url("https://huggingface.co/mlc-ai/Qwen2.5-0.5B-Instruct-q4f16_1-MLC"),
            expected
        );
        assert_eq!(
            resolve_model_url("https://huggingface.co/mlc-ai/Qwen2.5-0.5B-Instruct-q4f16_1-MLC/"),
            expected
        );
        assert_eq!(
            resolve_model_url("http://127.0.0.1:8000/models/x"),
            "http://127.0.0.1:8000/models/x/resolve/main/"
        );
    }

    #[test]
    fn keeps_an_explicit_revision() {
        assert_eq!(
            resolve_model_url("https://hf.co/org/m/resolve/main/"),
            "https://hf.co/org/m/resolve/main/"
        );
        assert_eq!(
            resolve_model_url("https://hf.co/org/m/resolve/v1.2"),
            "https://hf.co/org/m/resolve/v1.2/"
        );
        assert_eq!(
            resolve_model_url("https://hf.co/org/m/resolve/abc123/sub/"),
            "https://hf.co/org/m/resolve/abc123/sub/"
        );
    }

    #[test]
    fn a_bare_resolve_segment_is_not_a_revision() {
        assert_eq!(
            resolve_model_url("https://hf.co/org/resolve"),
            "https://hf.co/org/resolve/resolve/main/"
        );
        assert_eq!(
            resolve_model_url("https://hf.co/org/resolve/"),
            "https://hf.co/org/resolve/resolve/main/"
        );
        assert_eq!(resolve_model_url("https://hf.co/resolve//x"), "https://hf.co/resolve//x/");
        assert_eq!(resolve_model_url("https://hf.co/m/resolve/é"), "https://hf.co/m/resolve/é/");
    }

    #[test]
    fn recognizes_urls() {
        assert!(is_url("https://hf.co/x") && is_url("HTTP://host/x") && is_url("http://h"));
        assert!(
            !is_url("/models/x")
                && !is_url("httpdocs/model")
                && !is_url("C:\\models")
                && !is_url("")
        );
    }
}
