//! The models in the download cache (`list`, `pull`, `rm`), and what a
//! `--model` argument names: a folder, a URL, a WebLLM prebuilt id, or the id
//! of a cached model. An unknown id is answered with the nearest known ones;
//! a `.gguf` file with the `convert` command that makes an artifact of it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::HumanBytes;
use mlc_engine::prebuilt::{PrebuiltModel, prebuilt_models, why_not_runnable};
use mlc_loader::{Artifact, CONFIG_FILE, OpenOptions, TensorIndex, cache_folder};

use crate::progress;

/// How many known ids an unknown one is answered with.
const SUGGESTIONS: usize = 3;
/// Deepest folder under the cache searched for artifacts (host/org/name/resolve/main is 5).
const MAX_DEPTH: usize = 8;

/// The cache a model command works on.
#[derive(Args)]
pub struct CacheArgs {
    /// Download cache (default: $MLC_WGPU_CACHE, $XDG_CACHE_HOME/mlc-wgpu or ~/.cache/mlc-wgpu).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

impl CacheArgs {
    fn dir(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(mlc_loader::default_cache_dir)
    }
}

/// `mlc-wgpu pull`.
#[derive(Args)]
pub struct PullArgs {
    /// A WebLLM prebuilt model id or an artifact's http(s) URL.
    model: String,
    #[command(flatten)]
    cache: CacheArgs,
}

/// `mlc-wgpu rm`.
#[derive(Args)]
pub struct RmArgs {
    /// The id of a cached model (as `mlc-wgpu list` shows it).
    model: String,
    #[command(flatten)]
    cache: CacheArgs,
}

/// An artifact folder in the cache.
struct CachedModel {
    /// The prebuilt id whose URL it caches, else its repository's (or folder's) name.
    id: String,
    dir: PathBuf,
    /// Bytes of the files in the folder, partial downloads included.
    bytes: u64,
    /// Whether the index and every shard it lists are there, at their sizes.
    complete: bool,
}

/// What `--model` resolved to.
pub(super) enum Target {
    /// A folder or a URL, opened as it is.
    Location(String),
    /// A WebLLM prebuilt record (its URL, and overrides for its config).
    Prebuilt(PrebuiltModel),
}

/// Resolves `--model`: an existing path or a URL as it is; a `.gguf` file is
/// refused with the `convert` command; then a prebuilt id, then the id of a
/// cached model; a bare name that is none of these is an unknown id,
/// answered with the nearest known ones. Anything else (a path that does
/// not exist) is left to the loader, which names the missing file.
pub(super) fn resolve(model: &str, cache: &Path) -> Result<Target> {
    if model.to_ascii_lowercase().ends_with(".gguf") {
        bail!(
            "{model} is a GGUF file, which runs once converted into an MLC artifact: \
             mlc-wgpu convert --from {model} --out DIR (then --model DIR)"
        );
    }
    if Path::new(model).exists() || model.contains("://") {
        return Ok(Target::Location(model.to_string()));
    }
    if let Some(record) = prebuilt_models().into_iter().find(|record| record.model_id == model) {
        return Ok(Target::Prebuilt(record));
    }
    let cached = cached_models(cache);
    if let Some(found) = cached.iter().find(|found| found.id == model) {
        return Ok(Target::Location(found.dir.to_string_lossy().into_owned()));
    }
    if let Some(why) = why_not_runnable(model) {
        bail!(
            "`{model}` is a WebLLM model that mlc-wgpu cannot run: {why}. docs/families.md lists \
             the families that run; `mlc-wgpu list` shows the cached models"
        );
    }
    let looks_like_a_path = model.contains(std::path::MAIN_SEPARATOR) || model.starts_with('.');
    if looks_like_a_path {
        return Ok(Target::Location(model.to_string()));
    }
    let known: Vec<String> = prebuilt_models()
        .into_iter()
        .map(|record| record.model_id)
        .chain(cached.into_iter().map(|found| found.id))
        .collect();
    bail!(
        "unknown model `{model}`: not a folder, a URL, a cached model or a WebLLM model id; \
         did you mean {}? (`mlc-wgpu list` shows the cached models)",
        nearest(model, &known).join(", ")
    )
}

/// `mlc-wgpu list`: the cached models with their sizes.
pub fn list(args: &CacheArgs) -> Result<()> {
    let cache = args.dir();
    let models = cached_models(&cache);
    if models.is_empty() {
        println!("no models in {}", cache.display());
        return Ok(());
    }
    let width = models.iter().map(|model| model.id.len()).max().unwrap_or(0);
    for model in &models {
        let state = if model.complete { "complete" } else { "partial" };
        println!(
            "{:width$}  {:>10}  {state:8}  {}",
            model.id,
            HumanBytes(model.bytes).to_string(),
            model.dir.display()
        );
    }
    Ok(())
}

/// `mlc-wgpu pull`: downloads a model into the cache, with a progress bar;
/// a download cut short resumes where it stopped at the next pull.
pub fn pull(args: &PullArgs) -> Result<()> {
    let cache = args.cache.dir();
    let (location, id) = match resolve(&args.model, &cache)? {
        Target::Prebuilt(record) => (record.model, record.model_id),
        Target::Location(location) if location.contains("://") => (location, args.model.clone()),
        Target::Location(location) => {
            bail!("{location} is a local folder: it is used in place, there is nothing to pull")
        }
    };
    let options = OpenOptions {
        cache_dir: Some(cache.clone()),
        progress: Some(progress::bar()),
        ..OpenOptions::default()
    };
    let artifact =
        Artifact::open(&location, options).with_context(|| format!("pulling {location}"))?;
    let dir = artifact.dir().context("a download has a cache folder")?;
    println!("pulled {id}: {} in {}", HumanBytes(folder_bytes(dir)), dir.display());
    Ok(())
}

/// `mlc-wgpu rm`: deletes a cached model's folder.
pub fn rm(args: &RmArgs) -> Result<()> {
    let cache = args.cache.dir();
    let models = cached_models(&cache);
    let Some(model) = models.iter().find(|model| model.id == args.model) else {
        let ids: Vec<String> = models.into_iter().map(|model| model.id).collect();
        match ids.is_empty() {
            true => bail!("`{}` is not cached: no models in {}", args.model, cache.display()),
            false => bail!(
                "`{}` is not cached; did you mean {}? (`mlc-wgpu list` shows the cached models)",
                args.model,
                nearest(&args.model, &ids).join(", ")
            ),
        }
    };
    fs::remove_dir_all(&model.dir).with_context(|| format!("removing {}", model.dir.display()))?;
    remove_empty_parents(&model.dir, &cache);
    println!("removed {} ({} freed)", model.id, HumanBytes(model.bytes));
    Ok(())
}

/// Every artifact folder (one holding `mlc-chat-config.json`) under `cache`, sorted by id.
fn cached_models(cache: &Path) -> Vec<CachedModel> {
    let mut dirs = Vec::new();
    find_artifacts(cache, 0, &mut dirs);
    let prebuilt: Vec<(PathBuf, String)> = prebuilt_models()
        .into_iter()
        .filter_map(|record| {
            Some((cache_folder(&record.model, Some(cache)).ok()?, record.model_id))
        })
        .collect();
    let mut models: Vec<CachedModel> = dirs
        .into_iter()
        .map(|dir| {
            let id = prebuilt
                .iter()
                .find(|(folder, _)| *folder == dir)
                .map_or_else(|| repository_name(&dir), |(_, id)| id.clone());
            CachedModel { id, bytes: folder_bytes(&dir), complete: is_complete(&dir), dir }
        })
        .collect();
    models.sort_by(|a, b| a.id.cmp(&b.id));
    models
}

fn find_artifacts(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    if dir.join(CONFIG_FILE).is_file() {
        found.push(dir.to_path_buf());
        return;
    }
    if depth == MAX_DEPTH {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut children: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .map(|entry| entry.path())
        .collect();
    children.sort();
    for child in children {
        find_artifacts(&child, depth + 1, found);
    }
}

/// `name` of `.../org/name/resolve/main`, else the folder's own name.
fn repository_name(dir: &Path) -> String {
    let names: Vec<String> = dir.iter().map(|part| part.to_string_lossy().into_owned()).collect();
    let repository = match names.as_slice() {
        [.., name, resolve, _] if resolve == "resolve" => name,
        [.., name] => name,
        [] => "",
    };
    repository.to_string()
}

/// Bytes of the files directly in `dir`.
fn folder_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Whether the index of the artifact in `dir` parses and each of its shards is there at its size.
fn is_complete(dir: &Path) -> bool {
    let index = [mlc_loader::TENSOR_CACHE_FILE, mlc_loader::NDARRAY_CACHE_FILE]
        .iter()
        .find_map(|name| fs::read_to_string(dir.join(name)).ok())
        .and_then(|text| TensorIndex::from_json(&text).ok());
    index.is_some_and(|index| {
        index.shards.iter().all(|entry| {
            fs::metadata(dir.join(&entry.data_path)).is_ok_and(|meta| meta.len() == entry.nbytes)
        })
    })
}

/// Removes the folders between `dir` and `cache` that are now empty.
fn remove_empty_parents(dir: &Path, cache: &Path) {
    let mut parent = dir.parent();
    while let Some(folder) = parent.filter(|folder| folder.starts_with(cache) && *folder != cache) {
        if fs::remove_dir(folder).is_err() {
            break;
        }
        parent = folder.parent();
    }
}

/// The `SUGGESTIONS` of `known` nearest to `name`: ids that begin with it
/// first (a name typed short), then by edit distance; case-insensitive.
fn nearest(name: &str, known: &[String]) -> Vec<String> {
    let lower = name.to_lowercase();
    let mut ranked: Vec<(bool, usize, &String)> = known
        .iter()
        .map(|id| {
            let id_lower = id.to_lowercase();
            (!id_lower.starts_with(&lower), edit_distance(&lower, &id_lower), id)
        })
        .collect();
    ranked.sort();
    ranked.dedup_by(|a, b| a.2 == b.2);
    ranked.into_iter().take(SUGGESTIONS).map(|(_, _, id)| id.clone()).collect()
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn a_typo_in_a_prebuilt_id_suggests_it_first() {
        let known: Vec<String> = prebuilt_models().into_iter().map(|r| r.model_id).collect();
        let suggested = nearest("qwen2.5-0.5b-instruct-q4f16", &known);
        assert_eq!(suggested.len(), SUGGESTIONS);
        assert_eq!(suggested[0], "Qwen2.5-0.5B-Instruct-q4f16_1-MLC", "{suggested:?}");
    }

    #[test]
    fn a_cached_folder_is_named_by_its_repository() {
        assert_eq!(repository_name(Path::new("/c/h/org/tiny/resolve/main")), "tiny");
        assert_eq!(repository_name(Path::new("/c/models/SmolLM2")), "SmolLM2");
    }
}
