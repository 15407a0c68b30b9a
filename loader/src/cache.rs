//! Where the disk cache lives. What downloads put there, and how, is the
//! `download` module's (`download/cache.rs`).

use std::ffi::OsString;
use std::path::PathBuf;

/// The cache folder used when [`OpenOptions::cache_dir`](crate::OpenOptions::cache_dir)
/// is `None`: `$MLC_WGPU_CACHE`, else `$XDG_CACHE_HOME/mlc-wgpu`, else
/// `$HOME/.cache/mlc-wgpu` (the system temporary folder when none is set).
pub fn default_cache_dir() -> PathBuf {
    cache_dir_from(|name| std::env::var_os(name))
}

fn cache_dir_from(var: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let set = |name: &str| var(name).filter(|value| !value.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("MLC_WGPU_CACHE") {
        dir
    } else if let Some(dir) = set("XDG_CACHE_HOME") {
        dir.join("mlc-wgpu")
    } else if let Some(home) = set("HOME") {
        home.join(".cache").join("mlc-wgpu")
    } else {
        std::env::temp_dir().join("mlc-wgpu")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_follows_the_environment() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter().find(|(key, _)| *key == name).map(|(_, value)| OsString::from(value))
            }
        };
        static ALL: [(&str, &str); 3] =
            [("MLC_WGPU_CACHE", "/override"), ("XDG_CACHE_HOME", "/xdg"), ("HOME", "/home/u")];
        assert_eq!(cache_dir_from(env(&ALL)), PathBuf::from("/override"));
        assert_eq!(cache_dir_from(env(&ALL[1..])), PathBuf::from("/xdg/mlc-wgpu"));
        assert_eq!(cache_dir_from(env(&ALL[2..])), PathBuf::from("/home/u/.cache/mlc-wgpu"));
        assert_eq!(
            cache_dir_from(env(&[("MLC_WGPU_CACHE", ""), ("HOME", "/h")])),
            PathBuf::from("/h/.cache/mlc-wgpu")
        );
        assert_eq!(cache_dir_from(env(&[])), std::env::temp_dir().join("mlc-wgpu"));
    }
}
