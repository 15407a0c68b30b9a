//! `mlc-wgpu list`, `pull` and `rm`, and the names `--model` accepts, run as
//! a user runs them; downloads come from a file server on 127.0.0.1.

#[path = "common/artifacts.rs"]
mod artifacts;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use artifacts::{mlc_wgpu, stderr, temp_dir, tiny_qwen2_with_tokenizer};

/// Requests the file server received: the file name and the start of its `Range`.
type Log = Arc<Mutex<Vec<(String, Option<usize>)>>>;

/// Serves the files of `dir` under `/org/tiny/resolve/main/` (honouring
/// `Range: bytes=N-`) until the test process ends; returns the artifact's
/// URL and the request log.
fn serve_folder(dir: &Path) -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/org/tiny", listener.local_addr().unwrap());
    let dir: PathBuf = dir.to_path_buf();
    let log = Log::default();
    let requests = Arc::clone(&log);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                head.push(line.trim().to_string());
            }
            let path = head.first().and_then(|line| line.split_whitespace().nth(1));
            let name = path.and_then(|path| path.strip_prefix("/org/tiny/resolve/main/"));
            let range: Option<usize> = head.iter().find_map(|line| {
                line.to_ascii_lowercase()
                    .strip_prefix("range: bytes=")?
                    .strip_suffix('-')?
                    .parse()
                    .ok()
            });
            requests.lock().unwrap().push((name.unwrap_or_default().to_string(), range));
            let bytes = name.and_then(|name| std::fs::read(dir.join(name)).ok());
            let (status, body) = match (bytes, range) {
                (Some(bytes), Some(start)) if start < bytes.len() => {
                    let header = format!("bytes {start}-{}/{}", bytes.len() - 1, bytes.len());
                    (
                        format!("206 Partial Content\r\nContent-Range: {header}"),
                        bytes[start..].to_vec(),
                    )
                }
                (Some(bytes), _) => ("200 OK".to_string(), bytes),
                (None, _) => ("404 Not Found".to_string(), Vec::new()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
        }
    });
    (url, log)
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn pull_list_use_by_id_and_rm_a_model() {
    let model = tiny_qwen2_with_tokenizer();
    let (url, log) = serve_folder(model.path());
    let cache = temp_dir();
    let cache_dir = cache.path().to_str().unwrap();

    let listed = mlc_wgpu(&["list", "--cache-dir", cache_dir]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(stdout(&listed).starts_with("no models in "), "{}", stdout(&listed));

    let pulled = mlc_wgpu(&["pull", &url, "--cache-dir", cache_dir]);
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    assert!(stdout(&pulled).starts_with(&format!("pulled {url}: ")), "{}", stdout(&pulled));

    let listed = mlc_wgpu(&["list", "--cache-dir", cache_dir]);
    let text = stdout(&listed);
    let line = text.lines().next().unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((fields[0], fields[3]), ("tiny", "complete"), "{text}");
    let folder = PathBuf::from(fields[4]);
    let bytes: u64 =
        std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    let shown: f64 = fields[1].parse().unwrap();
    assert_eq!(fields[2], "MiB", "{text}");
    assert!((shown - bytes as f64 / 1048576.0).abs() < 0.01, "{text}: {bytes} bytes");
    assert_eq!(text.lines().count(), 1, "{text}");

    // A cached model is named by its id, offline.
    let inspected =
        mlc_wgpu(&["inspect", "--model", "tiny", "--cache-dir", cache_dir, "--offline"]);
    assert!(inspected.status.success(), "{}", stderr(&inspected));
    assert!(stdout(&inspected).contains("qwen2"), "{}", stdout(&inspected));

    // A shard gone missing makes the model partial.
    let shard = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|path| path.to_string_lossy().ends_with(".bin"))
        .unwrap();
    let whole = std::fs::read(&shard).unwrap();
    std::fs::remove_file(&shard).unwrap();
    assert!(stdout(&mlc_wgpu(&["list", "--cache-dir", cache_dir])).contains(" partial "));

    // A pull cut short left half the shard behind: the next pull resumes it.
    let half = whole.len() / 2;
    let mut part = shard.clone().into_os_string();
    part.push(".part");
    std::fs::write(&part, &whole[..half]).unwrap();
    log.lock().unwrap().clear();
    let pulled = mlc_wgpu(&["pull", &url, "--cache-dir", cache_dir]);
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let name = shard.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(*log.lock().unwrap(), [(name, Some(half))], "only the rest of the shard is fetched");
    assert_eq!(std::fs::read(&shard).unwrap(), whole);
    assert!(stdout(&mlc_wgpu(&["list", "--cache-dir", cache_dir])).contains(" complete "));

    let typo = mlc_wgpu(&["rm", "tinny", "--cache-dir", cache_dir]);
    assert!(!typo.status.success());
    assert!(
        stderr(&typo).contains("`tinny` is not cached; did you mean tiny?"),
        "{}",
        stderr(&typo)
    );

    let removed = mlc_wgpu(&["rm", "tiny", "--cache-dir", cache_dir]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(stdout(&removed).starts_with("removed tiny ("), "{}", stdout(&removed));
    assert!(!folder.exists());
    assert_eq!(
        std::fs::read_dir(cache.path()).unwrap().count(),
        0,
        "empty folders are removed too"
    );
}

/// `inspect --model MODEL` over an empty cache, which must fail: its stderr,
/// and whether the cache is still empty.
fn inspect_fails(model: &str) -> (String, bool) {
    let cache = temp_dir();
    let output =
        mlc_wgpu(&["inspect", "--model", model, "--cache-dir", cache.path().to_str().unwrap()]);
    assert!(!output.status.success());
    (stderr(&output), std::fs::read_dir(cache.path()).unwrap().count() == 0)
}

#[test]
fn an_unknown_id_is_answered_with_the_nearest_known_ones() {
    let (text, _) = inspect_fails("Qwen2.5-0.5B-Instruct-q4f16");
    assert!(text.contains("unknown model `Qwen2.5-0.5B-Instruct-q4f16`"), "{text}");
    assert!(text.contains("did you mean Qwen2.5-0.5B-Instruct-q4f16_1-MLC"), "{text}");
}

#[test]
fn a_webllm_id_of_a_family_that_does_not_run_says_why_before_any_download() {
    let (text, cache_empty) = inspect_fails("gemma-4-E2B-it-q4f16_1-MLC");
    assert!(
        text.contains("`gemma-4-E2B-it-q4f16_1-MLC` is a WebLLM model that mlc-wgpu cannot run"),
        "{text}"
    );
    assert!(text.contains("model-package"), "{text}");
    assert!(cache_empty, "nothing was downloaded");
}

#[test]
fn a_gguf_file_points_at_convert() {
    let output = mlc_wgpu(&["chat", "--model", "models/qwen.Q4_K_M.gguf", "--device", "cpu"]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains(
            "mlc-wgpu convert --from models/qwen.Q4_K_M.gguf --out DIR (then --model DIR)"
        ),
        "{text}"
    );
}

#[test]
fn pull_refuses_a_local_folder() {
    let model = tiny_qwen2_with_tokenizer();
    let output = mlc_wgpu(&["pull", model.path().to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("there is nothing to pull"), "{}", stderr(&output));
}
