//! `mlc-wgpu list`, `pull` and `rm`, and the names `--model` accepts, run as
//! a user runs them; downloads come from a file server on 127.0.0.1.

#[path = "common/artifacts.rs"]
mod artifacts;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use artifacts::{mlc_wgpu, stderr, tempdir, tiny_qwen2_with_tokenizer};

/// Serves the files of `dir` under `/org/tiny/resolve/main/` until the test
/// process ends; returns the artifact's URL.
fn serve_folder(dir: &Path) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/org/tiny", listener.local_addr().unwrap());
    let dir: PathBuf = dir.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap_or_default();
            let path = line.split_whitespace().nth(1).unwrap_or_default();
            let file = path.strip_prefix("/org/tiny/resolve/main/").map(|name| dir.join(name));
            let mut stream = stream;
            let _ = match file.and_then(|file| std::fs::read(file).ok()) {
                Some(bytes) => stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            bytes.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|()| stream.write_all(&bytes)),
                None => stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                ),
            };
        }
    });
    url
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn pull_list_use_by_id_and_rm_a_model() {
    let model = tiny_qwen2_with_tokenizer();
    let url = serve_folder(model.path());
    let cache = tempdir::Dir::new();
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
    std::fs::remove_file(&shard).unwrap();
    assert!(stdout(&mlc_wgpu(&["list", "--cache-dir", cache_dir])).contains(" partial "));

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

#[test]
fn an_unknown_id_is_answered_with_the_nearest_known_ones() {
    let cache = tempdir::Dir::new();
    let output = mlc_wgpu(&[
        "inspect",
        "--model",
        "Qwen2.5-0.5B-Instruct-q4f16",
        "--cache-dir",
        cache.path().to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("unknown model `Qwen2.5-0.5B-Instruct-q4f16`"), "{text}");
    assert!(text.contains("did you mean Qwen2.5-0.5B-Instruct-q4f16_1-MLC"), "{text}");
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
