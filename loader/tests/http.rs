//! Opening artifacts over HTTP, through the disk cache, from a local test server.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::server::{Fault, Request, Server};
use common::*;
use mlc_loader::{Artifact, LoadError, OpenOptions, ProgressPhase};

fn options(cache: &Path) -> OpenOptions {
    OpenOptions { cache_dir: Some(cache.to_path_buf()), ..OpenOptions::default() }
}

fn offline(cache: &Path) -> OpenOptions {
    OpenOptions { allow_network: false, ..options(cache) }
}

/// Where the cache keeps the server's artifact.
fn cached(cache: &Path, server: &Server) -> PathBuf {
    cache.join(server.cache_host()).join("org/model/resolve/main")
}

/// The names in the artifact's cache folder, sorted.
fn cache_listing(cache: &Path, server: &Server) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(cached(cache, server)) {
        Ok(entries) => {
            entries.map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect()
        }
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

fn request(file: &str, range: Option<u64>) -> Request {
    Request { file: file.to_string(), range }
}

#[test]
fn downloads_into_the_cache_and_decodes() {
    let server = Server::start(synthetic_artifact());
    let cache = tempfile::tempdir().unwrap();
    let (callback, events) = recorder();
    let artifact = Artifact::open(
        &server.url(),
        OpenOptions { progress: Some(callback), ..options(cache.path()) },
    )
    .unwrap();

    assert_eq!(artifact.source(), server.base_url());
    assert_eq!(artifact.dir(), Some(cached(cache.path(), &server).as_path()));
    assert_synthetic_tensors(&artifact);
    let files = synthetic_artifact();
    for name in ["mlc-chat-config.json", "tensor-cache.json", TOKENIZER, SHARD_0, SHARD_1] {
        assert_eq!(fs::read(artifact.dir().unwrap().join(name)).unwrap(), files[name], "{name}");
    }
    assert_eq!(cache_listing(cache.path(), &server).len(), 5, "no .part file is left");
    let requested: Vec<String> = server.requests().into_iter().map(|r| r.file).collect();
    assert_eq!(
        requested,
        ["mlc-chat-config.json", "tensor-cache.json", TOKENIZER, SHARD_0, SHARD_1]
    );

    let events = events.lock().unwrap();
    assert!(events.iter().all(|e| e.file_count == 3));
    let tokenizer = events_for(&events, ProgressPhase::Download, TOKENIZER);
    assert_eq!(
        tokenizer.last().map(|e| (e.file_index, e.bytes_done)),
        Some((1, files[TOKENIZER].len() as u64))
    );
    let size = files[SHARD_1].len() as u64;
    let downloads = events_for(&events, ProgressPhase::Download, SHARD_1);
    assert!((1..=21).contains(&downloads.len()), "{} download events", downloads.len());
    assert!(downloads.iter().all(|e| e.file_index == 3 && e.bytes_total == size));
    assert_eq!(downloads.last().unwrap().bytes_done, size);
    let phases: Vec<ProgressPhase> = events
        .iter()
        .filter(|e| e.file == SHARD_1)
        .map(|e| e.phase)
        .skip(downloads.len())
        .collect();
    assert_eq!(phases, [ProgressPhase::Verify, ProgressPhase::Load]);
}

#[test]
fn second_open_is_served_from_the_cache() {
    let server = Server::start(synthetic_artifact());
    let cache = tempfile::tempdir().unwrap();
    Artifact::open(&server.url(), options(cache.path())).unwrap();
    server.clear_log();

    let (callback, events) = recorder();
    let artifact = Artifact::open(
        &server.url(),
        OpenOptions { progress: Some(callback), ..options(cache.path()) },
    )
    .unwrap();
    assert_synthetic_tensors(&artifact);
    assert_eq!(server.requests(), []);
    assert!(events.lock().unwrap().iter().all(|e| e.phase != ProgressPhase::Download));

    let artifact = Artifact::open(&server.url(), offline(cache.path())).unwrap();
    assert_synthetic_tensors(&artifact);
    assert_eq!(server.requests(), []);
}

#[test]
fn offline_open_of_an_uncached_url_fails() {
    let server = Server::start(synthetic_artifact());
    let cache = tempfile::tempdir().unwrap();
    let error = Artifact::open(&server.url(), offline(cache.path())).unwrap_err();
    let LoadError::Offline { url } = &error else { panic!("{error:?}") };
    assert_eq!(*url, format!("{}mlc-chat-config.json", server.base_url()));
    assert_eq!(server.requests(), []);

    // With only some files cached, the first missing one is named.
    Artifact::open(&server.url(), options(cache.path())).unwrap();
    fs::remove_file(cached(cache.path(), &server).join(SHARD_1)).unwrap();
    let error = Artifact::open(&server.url(), offline(cache.path())).unwrap_err();
    assert!(matches!(&error, LoadError::Offline { url } if url.ends_with(SHARD_1)), "{error:?}");
}

#[test]
fn cut_connection_resumes_with_a_range_request() {
    let server = Server::start(synthetic_artifact());
    server.fail_once(SHARD_1, Fault::CutAfter(10_000));
    let cache = tempfile::tempdir().unwrap();
    let artifact = Artifact::open(&server.url(), options(cache.path())).unwrap();
    assert_synthetic_tensors(&artifact);
    assert_eq!(
        server.requests_for(SHARD_1),
        [request(SHARD_1, None), request(SHARD_1, Some(10_000))]
    );
}

#[test]
fn cut_file_of_unknown_size_starts_over() {
    let server = Server::start(synthetic_artifact());
    server.fail_once(TOKENIZER, Fault::CutAfter(10));
    let cache = tempfile::tempdir().unwrap();
    let artifact = Artifact::open(&server.url(), options(cache.path())).unwrap();
    assert_eq!(
        fs::read(artifact.dir().unwrap().join(TOKENIZER)).unwrap(),
        synthetic_artifact()[TOKENIZER]
    );
    assert_eq!(
        server.requests_for(TOKENIZER),
        [request(TOKENIZER, None), request(TOKENIZER, None)]
    );
}

#[test]
fn repeated_cuts_still_complete_while_bytes_arrive() {
    let server = Server::start(synthetic_artifact());
    server.fail_always(SHARD_1, Fault::CutAfter(7_000));
    let cache = tempfile::tempdir().unwrap();
    let artifact = Artifact::open(&server.url(), options(cache.path())).unwrap();
    assert_synthetic_tensors(&artifact);
    let ranges: Vec<Option<u64>> =
        server.requests_for(SHARD_1).into_iter().map(|r| r.range).collect();
    let size = synthetic_artifact()[SHARD_1].len() as u64;
    let expected: Vec<Option<u64>> =
        (0..size).step_by(7_000).map(|start| (start > 0).then_some(start)).collect();
    assert_eq!(ranges, expected);
}

#[test]
fn server_ignoring_the_range_restarts_from_zero() {
    let server = Server::start(synthetic_artifact());
    server.fail_once(SHARD_1, Fault::CutAfter(10_000));
    server.fail_once(SHARD_1, Fault::IgnoreRange);
    let cache = tempfile::tempdir().unwrap();
    let artifact = Artifact::open(&server.url(), options(cache.path())).unwrap();
    assert_synthetic_tensors(&artifact);
    assert_eq!(server.requests_for(SHARD_1).len(), 2);
}

#[test]
fn a_server_that_restarts_and_cuts_at_the_same_point_is_given_up_on() {
    let server = Server::start(synthetic_artifact());
    server.fail_always(SHARD_1, Fault::CutIgnoringRange(7_000));
    let cache = tempfile::tempdir().unwrap();
    let error = Artifact::open(&server.url(), options(cache.path())).unwrap_err();
    assert!(matches!(&error, LoadError::Http { url, .. } if url.ends_with(SHARD_1)), "{error:?}");
    assert_eq!(server.requests_for(SHARD_1).len(), 5);
    assert!(!cached(cache.path(), &server).join(SHARD_1).exists());
}

#[test]
fn a_connection_that_never_delivers_gives_up_without_caching() {
    let server = Server::start(synthetic_artifact());
    server.fail_always(SHARD_1, Fault::CutAfter(0));
    let cache = tempfile::tempdir().unwrap();
    let error = Artifact::open(&server.url(), options(cache.path())).unwrap_err();
    let LoadError::Http { url, message, .. } = &error else { panic!("{error:?}") };
    assert!(url.ends_with(SHARD_1) && message.contains("gave up after 5 attempts"), "{error}");
    assert_eq!(server.requests_for(SHARD_1).len(), 5);
    assert!(!cached(cache.path(), &server).join(SHARD_1).exists());

    // The partial download is kept and resumed once the server recovers.
    server.heal();
    assert_synthetic_tensors(&Artifact::open(&server.url(), options(cache.path())).unwrap());
}

#[test]
fn md5_mismatch_leaves_nothing_in_the_cache() {
    let server = Server::start(synthetic_artifact());
    server.fail_always(SHARD_1, Fault::Corrupt);
    let cache = tempfile::tempdir().unwrap();
    let error = Artifact::open(&server.url(), options(cache.path())).unwrap_err();
    let LoadError::Md5Mismatch { file, expected, .. } = &error else { panic!("{error:?}") };
    assert_eq!(*file, format!("{}{SHARD_1}", server.base_url()));
    assert_eq!(*expected, md5_hex(&synthetic_artifact()[SHARD_1]));
    assert!(!cache_listing(cache.path(), &server).iter().any(|name| name.starts_with(SHARD_1)));
    // The metadata was checked once against the server (unchanged), and only once.
    assert_eq!(server.requests_for("tensor-cache.json").len(), 2);
    assert_eq!(server.requests_for("mlc-chat-config.json").len(), 2);
    assert_eq!(server.requests_for(SHARD_1).len(), 1);
    assert_eq!(
        cache_listing(cache.path(), &server),
        ["mlc-chat-config.json", SHARD_0, "tensor-cache.json", TOKENIZER]
    );
}

#[test]
fn a_short_file_on_the_server_is_rejected() {
    let server = Server::start(synthetic_artifact());
    server.fail_always(SHARD_1, Fault::Truncate(1000));
    let cache = tempfile::tempdir().unwrap();
    let error = Artifact::open(&server.url(), options(cache.path())).unwrap_err();
    let size = synthetic_artifact()[SHARD_1].len() as u64;
    assert!(
        matches!(&error, LoadError::ShardSize { file, expected, actual: 1000 } if file.ends_with(SHARD_1) && *expected == size),
        "{error:?}"
    );
    assert!(!cache_listing(cache.path(), &server).iter().any(|name| name.starts_with(SHARD_1)));
}

#[test]
fn missing_shard_is_a_clear_error() {
    let server = Server::start(synthetic_artifact());
    server.remove(SHARD_1);
    let cache = tempfile::tempdir().unwrap();
    let error = Artifact::open(&server.url(), options(cache.path())).unwrap_err();
    assert!(matches!(&error, LoadError::Http { status: Some(404), .. }), "{error:?}");
    assert_eq!(error.to_string(), format!("{}{SHARD_1}: HTTP 404 Not Found", server.base_url()));
    assert_eq!(server.requests_for(SHARD_1).len(), 1, "a 404 is not retried");
}

#[test]
fn missing_tokenizer_file_is_a_clear_error() {
    let server = Server::start(synthetic_artifact());
    server.remove(TOKENIZER);
    let cache = tempfile::tempdir().unwrap();
    let error = Artifact::open(&server.url(), options(cache.path())).unwrap_err();
    assert!(
        matches!(&error, LoadError::Http { url, status: Some(404), .. } if url.ends_with(TOKENIZER)),
        "{error:?}"
    );
    assert!(
        server.requests_for(SHARD_0).is_empty(),
        "shards are not fetched after a failed tokenizer file"
    );
}

#[test]
fn falls_back_to_ndarray_cache_json() {
    let mut files = synthetic_artifact();
    let index = files.remove("tensor-cache.json").unwrap();
    files.insert("ndarray-cache.json".to_string(), index);
    let server = Server::start(files);
    let cache = tempfile::tempdir().unwrap();
    assert_synthetic_tensors(&Artifact::open(&server.url(), options(cache.path())).unwrap());
    let requested: Vec<String> = server.requests().into_iter().map(|r| r.file).take(3).collect();
    assert_eq!(requested, ["mlc-chat-config.json", "tensor-cache.json", "ndarray-cache.json"]);

    server.clear_log();
    assert_synthetic_tensors(&Artifact::open(&server.url(), offline(cache.path())).unwrap());
    assert_eq!(server.requests(), []);

    let server = Server::start(synthetic_artifact());
    server.remove("tensor-cache.json");
    let error =
        Artifact::open(&server.url(), options(tempfile::tempdir().unwrap().path())).unwrap_err();
    assert!(
        matches!(&error, LoadError::MissingFile { file } if file.ends_with("tensor-cache.json (nor ndarray-cache.json)")),
        "{error:?}"
    );
}

#[test]
fn transient_server_errors_are_retried() {
    let server = Server::start(synthetic_artifact());
    server.fail_once(SHARD_0, Fault::Status(503));
    server.fail_once(SHARD_0, Fault::Status(500));
    let cache = tempfile::tempdir().unwrap();
    assert_synthetic_tensors(&Artifact::open(&server.url(), options(cache.path())).unwrap());
    assert_eq!(server.requests_for(SHARD_0).len(), 3);

    let server = Server::start(synthetic_artifact());
    server.fail_always("mlc-chat-config.json", Fault::Status(502));
    let error = Artifact::open(&server.url(), options(cache.path())).unwrap_err();
    assert!(matches!(&error, LoadError::Http { status: Some(502), .. }), "{error:?}");
    assert!(
        error.to_string().contains("mlc-chat-config.json: HTTP 502 Bad Gateway (gave up"),
        "{error}"
    );
}

#[test]
fn leftover_part_file_is_resumed() {
    let server = Server::start(synthetic_artifact());
    let cache = tempfile::tempdir().unwrap();
    let folder = cached(cache.path(), &server);
    fs::create_dir_all(&folder).unwrap();
    fs::write(folder.join(format!("{SHARD_1}.part")), &synthetic_artifact()[SHARD_1][..1000])
        .unwrap();
    assert_synthetic_tensors(&Artifact::open(&server.url(), options(cache.path())).unwrap());
    assert_eq!(server.requests_for(SHARD_1), [request(SHARD_1, Some(1000))]);
}

#[test]
fn leftover_part_file_with_bad_bytes_is_caught_and_replaced() {
    let server = Server::start(synthetic_artifact());
    let cache = tempfile::tempdir().unwrap();
    let folder = cached(cache.path(), &server);
    fs::create_dir_all(&folder).unwrap();
    fs::write(folder.join(format!("{SHARD_1}.part")), vec![0xEE; 1000]).unwrap();
    let error = Artifact::open(&server.url(), options(cache.path())).unwrap_err();
    assert!(
        matches!(&error, LoadError::Md5Mismatch { file, .. } if file.ends_with(SHARD_1)),
        "{error:?}"
    );
    assert!(!folder.join(SHARD_1).exists() && !folder.join(format!("{SHARD_1}.part")).exists());

    assert_synthetic_tensors(&Artifact::open(&server.url(), options(cache.path())).unwrap());
}

#[test]
fn damaged_cached_shard_is_downloaded_again() {
    let server = Server::start(synthetic_artifact());
    let cache = tempfile::tempdir().unwrap();
    Artifact::open(&server.url(), options(cache.path())).unwrap();
    let shard = cached(cache.path(), &server).join(SHARD_0);
    let size = fs::metadata(&shard).unwrap().len() as usize;
    fs::write(&shard, vec![0; size]).unwrap();

    let error = Artifact::open(&server.url(), offline(cache.path())).unwrap_err();
    assert!(
        matches!(&error, LoadError::Md5Mismatch { file, .. } if Path::new(file) == shard),
        "{error:?}"
    );

    server.clear_log();
    assert_synthetic_tensors(&Artifact::open(&server.url(), options(cache.path())).unwrap());
    assert_eq!(server.requests(), [request(SHARD_0, None)]);
}

#[test]
fn urls_with_a_query_are_rejected() {
    let error = Artifact::open("http://127.0.0.1:9/m?rev=1", OpenOptions::default()).unwrap_err();
    assert!(matches!(error, LoadError::InvalidUrl { .. }), "{error:?}");
}

#[test]
fn a_slow_server_is_waited_for() {
    // 64 KiB in 8 KiB pieces, 50 ms apart: slow, but never stalled for the
    // client's 60 s stall timeout, so the download completes in one request.
    let server = Server::start(synthetic_artifact());
    server.fail_once(SHARD_1, Fault::Slow { bytes: 8 * 1024, pause_ms: 50 });
    let cache = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    assert_synthetic_tensors(&Artifact::open(&server.url(), options(cache.path())).unwrap());
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(400),
        "the fault did not slow the download"
    );
    assert_eq!(server.requests_for(SHARD_1), [request(SHARD_1, None)]);
}

#[test]
fn an_evicted_file_is_downloaded_again_alone() {
    let server = Server::start(synthetic_artifact());
    let cache = tempfile::tempdir().unwrap();
    Artifact::open(&server.url(), options(cache.path())).unwrap();
    // A storage layer dropping one entry (quota pressure, a user clearing files).
    fs::remove_file(cached(cache.path(), &server).join(SHARD_1)).unwrap();

    let error = Artifact::open(&server.url(), offline(cache.path())).unwrap_err();
    assert!(matches!(&error, LoadError::Offline { url } if url.ends_with(SHARD_1)), "{error:?}");
    server.clear_log();
    assert_synthetic_tensors(&Artifact::open(&server.url(), options(cache.path())).unwrap());
    assert_eq!(server.requests(), [request(SHARD_1, None)]);
}

#[test]
fn a_shard_swapped_on_the_server_between_runs_is_never_mixed_into_the_cache() {
    let original = synthetic_artifact()[SHARD_1].clone();
    let server = Server::start(synthetic_artifact());
    // Run 1 gives up and leaves 10 000 bytes of the original shard behind.
    server.fail_always(SHARD_1, Fault::CutIgnoringRange(10_000));
    let cache = tempfile::tempdir().unwrap();
    assert!(Artifact::open(&server.url(), options(cache.path())).is_err());
    assert!(
        cache_listing(cache.path(), &server).contains(&format!("{SHARD_1}.part")),
        "{:?}",
        cache_listing(cache.path(), &server)
    );

    // Between runs the server's copy changes (same size, other bytes); run 2
    // resumes from the partial file, and the md5 of the index the cache holds
    // catches the mix of old and new bytes.
    server.heal();
    server.replace(SHARD_1, original.iter().map(|byte| byte ^ 0x5A).collect());
    server.clear_log();
    let error = Artifact::open(&server.url(), options(cache.path())).unwrap_err();
    assert!(
        matches!(&error, LoadError::Md5Mismatch { file, .. } if file.ends_with(SHARD_1)),
        "{error:?}"
    );
    assert_eq!(
        server.requests_for(SHARD_1),
        [request(SHARD_1, Some(10_000))],
        "run 2 resumed the partial file"
    );
    assert!(
        !cache_listing(cache.path(), &server).iter().any(|name| name.starts_with(SHARD_1)),
        "mixed bytes were kept"
    );

    // Once the server serves what the index describes again, the shard loads.
    server.replace(SHARD_1, original);
    assert_synthetic_tensors(&Artifact::open(&server.url(), options(cache.path())).unwrap());
}

/// The synthetic artifact as its publisher might update it: other bytes in
/// both shards (shard 1 also 256 bytes longer), a new tokenizer file, and an
/// index and config that describe them.
fn updated_artifact() -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = synthetic_artifact();
    let mut index: serde_json::Value = serde_json::from_slice(&files["tensor-cache.json"]).unwrap();
    for (i, shard) in [SHARD_0, SHARD_1].into_iter().enumerate() {
        let bytes = files.get_mut(shard).unwrap();
        bytes.iter_mut().for_each(|byte| *byte = byte.wrapping_add(1));
        if shard == SHARD_1 {
            bytes.extend([7; 256]);
        }
        index["records"][i]["nbytes"] = bytes.len().into();
        index["records"][i]["md5sum"] = md5_hex(bytes).into();
    }
    files.insert("tensor-cache.json".to_string(), serde_json::to_vec_pretty(&index).unwrap());
    let mut config: serde_json::Value =
        serde_json::from_slice(&files["mlc-chat-config.json"]).unwrap();
    config["context_window_size"] = 128.into();
    files.insert("mlc-chat-config.json".to_string(), serde_json::to_vec_pretty(&config).unwrap());
    files.insert(
        TOKENIZER.to_string(),
        br#"{"version": "1.0", "model": {"type": "BPE"}, "updated": true}"#.to_vec(),
    );
    files
}

/// Serves `files` in place of what the server had (an upstream update).
fn publish(server: &Server, files: &std::collections::BTreeMap<String, Vec<u8>>) {
    for (name, bytes) in files {
        server.replace(name, bytes.clone());
    }
}

#[test]
fn an_artifact_updated_upstream_after_its_index_was_cached_is_fetched_again_as_a_whole() {
    let server = Server::start(synthetic_artifact());
    let cache = tempfile::tempdir().unwrap();
    // Run 1 caches config, index, tokenizer and shard 0, then shard 1 fails.
    server.fail_once(SHARD_1, Fault::Status(404));
    assert!(Artifact::open(&server.url(), options(cache.path())).is_err());
    assert_eq!(
        cache_listing(cache.path(), &server),
        ["mlc-chat-config.json", SHARD_0, "tensor-cache.json", TOKENIZER],
        "a 404 leaves no part file"
    );

    // Upstream publishes a new version; a stale shard from an older one and a
    // partial download of the old shard 1 are lying around too.
    let updated = updated_artifact();
    publish(&server, &updated);
    let folder = cached(cache.path(), &server);
    fs::write(folder.join("params_shard_9.bin"), b"old").unwrap();
    fs::write(folder.join(format!("{SHARD_1}.part")), &synthetic_artifact()[SHARD_1][..1000])
        .unwrap();
    server.clear_log();

    // Run 2: the resumed shard 1 contradicts the cached index; the metadata is
    // fetched again, found changed, and the open starts over with the new version.
    let artifact = Artifact::open(&server.url(), options(cache.path())).unwrap();
    assert_eq!(artifact.config.context_window_size, 128);
    for name in ["mlc-chat-config.json", "tensor-cache.json", TOKENIZER, SHARD_0, SHARD_1] {
        assert_eq!(fs::read(folder.join(name)).unwrap(), updated[name], "{name}");
    }
    let norm: Vec<u8> =
        synthetic_artifact()[SHARD_0][16..22].iter().map(|byte| byte.wrapping_add(1)).collect();
    assert_eq!(
        artifact.tensor("norm.weight").unwrap().bytes.as_ref(),
        norm.as_slice(),
        "tensors come from the new shard"
    );
    assert_eq!(
        cache_listing(cache.path(), &server),
        ["mlc-chat-config.json", SHARD_0, SHARD_1, "tensor-cache.json", TOKENIZER],
        "old and partial files are gone"
    );
    let requested: Vec<Request> = server.requests();
    assert_eq!(
        requested,
        [
            request(SHARD_1, Some(1000)), // resumed against the old index: fails
            request("mlc-chat-config.json", None), // the metadata, once more
            request("tensor-cache.json", None),
            request(TOKENIZER, None), // the old one was dropped
            request(SHARD_0, None),   // the cached copy fails the new md5
            request(SHARD_1, None),
        ]
    );

    // Later opens use the new version from the cache, offline too.
    server.clear_log();
    let again = Artifact::open(&server.url(), offline(cache.path())).unwrap();
    assert_eq!(again.tensor("norm.weight").unwrap().bytes.as_ref(), norm.as_slice());
    assert_eq!(server.requests(), []);
}

#[test]
fn a_fully_cached_old_version_is_used_until_a_download_reveals_the_update() {
    // Everything cached and valid: the open does not ask the server at all,
    // even if upstream changed (the cache is the source of truth offline and online).
    let server = Server::start(synthetic_artifact());
    let cache = tempfile::tempdir().unwrap();
    Artifact::open(&server.url(), options(cache.path())).unwrap();
    publish(&server, &updated_artifact());
    server.clear_log();
    assert_synthetic_tensors(&Artifact::open(&server.url(), options(cache.path())).unwrap());
    assert_eq!(server.requests(), []);

    // Once a shard has to be downloaded (here: evicted), the update is found
    // and the whole artifact moves to the new version.
    fs::remove_file(cached(cache.path(), &server).join(SHARD_1)).unwrap();
    let artifact = Artifact::open(&server.url(), options(cache.path())).unwrap();
    assert_eq!(artifact.config.context_window_size, 128);
    let updated = updated_artifact();
    for name in ["tensor-cache.json", TOKENIZER, SHARD_0, SHARD_1] {
        assert_eq!(
            fs::read(cached(cache.path(), &server).join(name)).unwrap(),
            updated[name],
            "{name}"
        );
    }
}

#[test]
fn offline_a_stale_index_is_not_refreshed() {
    let server = Server::start(synthetic_artifact());
    let cache = tempfile::tempdir().unwrap();
    Artifact::open(&server.url(), options(cache.path())).unwrap();
    let shard = cached(cache.path(), &server).join(SHARD_1);
    fs::write(&shard, &updated_artifact()[SHARD_1][..synthetic_artifact()[SHARD_1].len()]).unwrap();
    server.clear_log();
    let error = Artifact::open(&server.url(), offline(cache.path())).unwrap_err();
    assert!(
        matches!(&error, LoadError::Md5Mismatch { file, .. } if Path::new(file) == shard),
        "{error:?}"
    );
    assert_eq!(server.requests(), []);
}

#[test]
fn too_little_disk_space_for_the_shards_fails_before_downloading_them() {
    // An index whose shard 1 claims 1 EiB: no disk holds it. The check uses
    // the real free space of the cache's filesystem.
    let mut files = synthetic_artifact();
    let mut index: serde_json::Value = serde_json::from_slice(&files["tensor-cache.json"]).unwrap();
    index["records"][1]["nbytes"] = (1u64 << 60).into();
    files.insert("tensor-cache.json".to_string(), serde_json::to_vec(&index).unwrap());
    let shard0 = files[SHARD_0].len() as u64;
    let server = Server::start(files);
    let cache = tempfile::tempdir().unwrap();
    let error = Artifact::open(&server.url(), options(cache.path())).unwrap_err();
    let LoadError::DiskFull { folder, file: None, needed, available } = &error else {
        panic!("{error:?}")
    };
    assert_eq!((folder, *needed), (&cached(cache.path(), &server), (1u64 << 60) + shard0));
    assert!(*available > 0 && *available < 1 << 60, "{available}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "not enough disk space for the model cache in {}: ",
            folder.display()
        )),
        "{message}"
    );
    assert!(message.contains(&format!("({needed} bytes) still to download")), "{message}");
    assert!(message.contains(&format!("({available} bytes) free")), "{message}");
    assert!(
        server.requests_for(SHARD_0).is_empty() && server.requests_for(SHARD_1).is_empty(),
        "no shard was requested"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_disk_that_fills_up_during_a_download_is_a_clear_error_and_leaves_no_entry() {
    // A real ENOSPC: the part file of shard 1 is a symlink to /dev/full,
    // whose every write fails with "No space left on device". (Without md5
    // checks the loader does not read the part file back first.)
    let server = Server::start(synthetic_artifact());
    let cache = tempfile::tempdir().unwrap();
    let folder = cached(cache.path(), &server);
    fs::create_dir_all(&folder).unwrap();
    let part = folder.join(format!("{SHARD_1}.part"));
    std::os::unix::fs::symlink("/dev/full", &part).unwrap();
    let no_md5 = || OpenOptions { verify_md5: false, ..options(cache.path()) };
    let error = Artifact::open(&server.url(), no_md5()).unwrap_err();
    let size = synthetic_artifact()[SHARD_1].len() as u64;
    let LoadError::DiskFull { folder: named_folder, file: Some(file), needed, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!((named_folder, file, *needed), (&folder, &part, size));
    assert!(
        error.to_string().starts_with(&format!(
            "disk full while writing {}: {} ({size} bytes) of it still to download",
            part.display(),
            "64.0 KiB"
        )),
        "{error}"
    );
    assert!(!folder.join(SHARD_1).exists(), "nothing under the final name");
    assert!(fs::symlink_metadata(&part).is_err(), "an empty part file is not left behind");

    // With space again, the download completes.
    assert_synthetic_tensors(&Artifact::open(&server.url(), no_md5()).unwrap());
}

#[test]
fn a_404_leaves_no_empty_part_file() {
    let server = Server::start(synthetic_artifact());
    server.remove(TOKENIZER);
    let cache = tempfile::tempdir().unwrap();
    assert!(Artifact::open(&server.url(), options(cache.path())).is_err());
    assert_eq!(cache_listing(cache.path(), &server), ["mlc-chat-config.json", "tensor-cache.json"]);
}

#[test]
fn a_broken_config_or_index_on_the_server_never_enters_the_cache() {
    for (name, bytes) in [
        ("mlc-chat-config.json", &b"<html>rate limited</html>"[..]),
        ("tensor-cache.json", &b"{\"records\": [{\"dataPath\": 7}]}"[..]),
    ] {
        let server = Server::start(synthetic_artifact());
        server.replace(name, bytes.to_vec());
        let cache = tempfile::tempdir().unwrap();
        let error = Artifact::open(&server.url(), options(cache.path())).unwrap_err();
        assert!(
            matches!(&error, LoadError::Config { file, .. } | LoadError::Index { file, .. }
                if *file == format!("{}{name}", server.base_url())),
            "{error:?}"
        );
        let listing = cache_listing(cache.path(), &server);
        assert!(!listing.iter().any(|file| file.starts_with(name)), "{name}: {listing:?}");

        // Once the server is fixed, the next open works.
        server.replace(name, synthetic_artifact()[name].clone());
        assert_synthetic_tensors(&Artifact::open(&server.url(), options(cache.path())).unwrap());
    }
}

#[test]
fn a_tokenizer_that_does_not_fit_the_config_never_enters_the_cache() {
    let server = Server::start(synthetic_artifact());
    // The synthetic config has vocab_size 4.
    server.replace(TOKENIZER, br#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 9}}}"#.to_vec());
    let cache = tempfile::tempdir().unwrap();
    let error = Artifact::open(&server.url(), options(cache.path())).unwrap_err();
    assert!(
        error.to_string().contains("token id 9 does not fit the config's vocab_size 4"),
        "{error}"
    );
    assert!(!cache_listing(cache.path(), &server).iter().any(|file| file.starts_with(TOKENIZER)));
    assert!(server.requests_for(SHARD_0).is_empty(), "no shard is fetched for a bad tokenizer");
}

#[test]
fn a_damaged_cached_metadata_file_is_fetched_again_once() {
    for name in ["mlc-chat-config.json", "tensor-cache.json", TOKENIZER] {
        let server = Server::start(synthetic_artifact());
        let cache = tempfile::tempdir().unwrap();
        Artifact::open(&server.url(), options(cache.path())).unwrap();
        let path = cached(cache.path(), &server).join(name);
        fs::write(&path, b"{\"truncated\": ").unwrap();
        server.clear_log();

        let artifact = Artifact::open(&server.url(), options(cache.path())).unwrap();
        assert_synthetic_tensors(&artifact);
        assert_eq!(fs::read(&path).unwrap(), synthetic_artifact()[name], "{name}");
        assert_eq!(server.requests_for(name).len(), 1, "{name}: {:?}", server.requests());
        assert!(server.requests_for(SHARD_1).is_empty(), "{name}: intact shards are kept");
    }
}

#[test]
fn a_damaged_cached_file_that_the_server_also_has_broken_fails_after_one_refresh() {
    let server = Server::start(synthetic_artifact());
    let cache = tempfile::tempdir().unwrap();
    Artifact::open(&server.url(), options(cache.path())).unwrap();
    let path = cached(cache.path(), &server).join("mlc-chat-config.json");
    fs::write(&path, b"not json").unwrap();
    server.replace("mlc-chat-config.json", b"not json either".to_vec());
    server.clear_log();
    let error = Artifact::open(&server.url(), options(cache.path())).unwrap_err();
    assert!(matches!(&error, LoadError::Config { .. }), "{error:?}");
    assert_eq!(server.requests_for("mlc-chat-config.json").len(), 1);

    // Offline nothing is fetched: the cached file's error stands.
    server.clear_log();
    let error = Artifact::open(&server.url(), offline(cache.path())).unwrap_err();
    assert!(
        matches!(&error, LoadError::Config { file, .. } if Path::new(file) == path),
        "{error:?}"
    );
    assert_eq!(server.requests(), []);
}

#[test]
fn a_cached_index_naming_a_shard_the_server_no_longer_has_is_refreshed() {
    let server = Server::start(synthetic_artifact());
    let cache = tempfile::tempdir().unwrap();
    Artifact::open(&server.url(), options(cache.path())).unwrap();
    fs::remove_file(cached(cache.path(), &server).join(SHARD_1)).unwrap();

    // Upstream renames shard 1; the cached index still names the old file.
    let renamed = "params_shard_1_v2.bin";
    let mut index: serde_json::Value =
        serde_json::from_slice(&synthetic_artifact()["tensor-cache.json"]).unwrap();
    index["records"][1]["dataPath"] = renamed.into();
    server.replace("tensor-cache.json", serde_json::to_vec(&index).unwrap());
    server.replace(renamed, synthetic_artifact()[SHARD_1].clone());
    server.remove(SHARD_1);
    server.clear_log();

    assert_synthetic_tensors(&Artifact::open(&server.url(), options(cache.path())).unwrap());
    assert_eq!(
        server.requests(),
        [
            request(SHARD_1, None), // 404: the cached index is stale
            request("mlc-chat-config.json", None),
            request("tensor-cache.json", None),
            request(TOKENIZER, None),
            request(renamed, None),
        ]
    );
}
