//! Resumable, verified HTTP downloads into the cache.

use std::io::{ErrorKind, Read};
use std::path::Path;
use std::thread;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use reqwest::header::{CONTENT_RANGE, RANGE};

use super::cache::PartFile;
use super::reports::DownloadReports;
use crate::LoadError;
use crate::metadata::Check;
use crate::progress::FileProgress;
use crate::shard::{check_md5, check_size};

/// Consecutive attempts that bring no new bytes before a download gives up.
const MAX_FAILED_ATTEMPTS: u32 = 5;
/// Wait before the first retry; doubled for each further failure.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Longest wait for a connection, or for the next bytes of a response.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_BUFFER: usize = 256 * 1024;

/// What a download must produce; checked before the file gets its final name.
#[derive(Clone, Copy, Default)]
pub(crate) struct Expected<'a> {
    /// Exact size in bytes.
    pub(crate) size: Option<u64>,
    /// Hex md5.
    pub(crate) md5: Option<&'a str>,
    /// A check of the whole content (a metadata file parses).
    pub(crate) content: Option<Check<'a>>,
}

impl LoadError {
    /// True for an HTTP 404, which for optional files means "absent".
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, LoadError::Http { status: Some(404), .. })
    }
}

/// How one request ended, when it did not end the download for good.
enum Attempt {
    /// The server sent the whole body.
    Complete,
    /// A transient failure; worth retrying.
    Retry { status: Option<u16>, reason: String },
}

/// An HTTP client that downloads files resumably.
pub(crate) struct Downloader {
    client: Client,
}

impl Downloader {
    /// A client for downloads from `url`'s server (named in a setup error).
    pub(crate) fn new(url: &str) -> Result<Downloader, LoadError> {
        let client = Client::builder()
            .user_agent(concat!("mlc-wgpu/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            // Blocking reqwest applies this to each read, not to the whole body.
            .timeout(STALL_TIMEOUT)
            .build()
            .map_err(|error| LoadError::Http {
                url: url.to_string(),
                status: None,
                message: format!("cannot set up an HTTP client: {error}"),
            })?;
        Ok(Downloader { client })
    }

    /// Downloads `url` to `dest` through `dest.part`, resuming what an
    /// earlier attempt left there. Transient failures (cut connections, 5xx,
    /// 429) are retried with backoff; a cut body resumes with a `Range`
    /// request. The result is checked against `expected` before the rename:
    /// a file of the wrong size, md5 or content is deleted, never left under
    /// `dest`. A download that fails before its first byte (a 404) leaves no
    /// part file behind.
    pub(crate) fn download(
        &self,
        url: &str,
        dest: &Path,
        expected: Expected<'_>,
        progress: &mut FileProgress<'_>,
    ) -> Result<(), LoadError> {
        let mut part = PartFile::open(dest, expected.size, expected.md5.is_some())?;
        match self.fill(url, &mut part, expected, progress) {
            Ok(()) => part.commit(dest),
            Err(error) => {
                if part.len() == 0 {
                    part.discard()?;
                }
                Err(error)
            }
        }
    }

    /// Brings `part` to the whole, checked file.
    fn fill(
        &self,
        url: &str,
        part: &mut PartFile,
        expected: Expected<'_>,
        progress: &mut FileProgress<'_>,
    ) -> Result<(), LoadError> {
        // Without a size to check, a resumed prefix could splice two versions
        // of a file together unnoticed: such files (small metadata) start over.
        let resumable = expected.size.is_some();
        if !resumable || expected.size.is_some_and(|size| part.len() > size) {
            part.restart()?;
        }
        // Failures count while no attempt gets further than the ones before,
        // so a flaky connection that keeps delivering is not given up on, and
        // one that keeps cutting at the same point is.
        let mut failures = 0;
        let mut furthest = part.len();
        let mut reports = DownloadReports::default();
        // A part file that is already whole (the rename never happened) needs no request.
        while expected.size != Some(part.len()) {
            match self.attempt(url, part, expected.size, &mut reports, progress) {
                Ok(Attempt::Complete) => break,
                Ok(Attempt::Retry { status, reason }) => {
                    if part.len() > furthest {
                        furthest = part.len();
                        failures = 1;
                    } else {
                        failures += 1;
                    }
                    if failures >= MAX_FAILED_ATTEMPTS {
                        let message = format!(
                            "{reason} (gave up after {failures} attempts that got no further)"
                        );
                        return Err(LoadError::Http { url: url.to_string(), status, message });
                    }
                    thread::sleep(FIRST_RETRY_DELAY * 2u32.pow(failures - 1));
                    if !resumable {
                        part.restart()?;
                    }
                }
                Err(error) => {
                    if matches!(error, LoadError::ShardSize { .. }) {
                        part.restart()?;
                    }
                    return Err(error);
                }
            }
        }
        let len = part.len();
        reports.downloaded(progress, len);
        if let Err(error) = check(url, part, expected) {
            part.restart()?;
            return Err(error);
        }
        if expected.md5.is_some() {
            progress.verified(len);
        }
        Ok(())
    }

    /// One request, continuing from the part file's current length.
    fn attempt(
        &self,
        url: &str,
        part: &mut PartFile,
        size: Option<u64>,
        reports: &mut DownloadReports,
        progress: &mut FileProgress<'_>,
    ) -> Result<Attempt, LoadError> {
        let offset = part.len();
        let mut request = self.client.get(url);
        if offset > 0 {
            request = request.header(RANGE, format!("bytes={offset}-"));
        }
        let mut response = match request.send() {
            Ok(response) => response,
            Err(error) => return Ok(retry(None, error_chain(&error))),
        };
        let status = response.status();
        match status {
            StatusCode::OK if offset > 0 => part.restart()?,
            StatusCode::OK => {}
            StatusCode::PARTIAL_CONTENT if offset > 0 && range_start(&response) == Some(offset) => {
            }
            StatusCode::PARTIAL_CONTENT | StatusCode::RANGE_NOT_SATISFIABLE => {
                // The server's idea of the file no longer matches the part file.
                part.restart()?;
                return Ok(retry(Some(status), format!("HTTP {status} for a resumed download")));
            }
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
                return Ok(retry(Some(status), format!("HTTP {status}")));
            }
            _ if status.is_server_error() => {
                return Ok(retry(Some(status), format!("HTTP {status}")));
            }
            _ => {
                return Err(LoadError::Http {
                    url: url.to_string(),
                    status: Some(status.as_u16()),
                    message: format!("HTTP {status}"),
                });
            }
        }
        let total = size.or_else(|| {
            response.content_length().and_then(|length| length.checked_add(part.len()))
        });
        // A length the server announces that cannot add up is final: no retry fixes it.
        if let (Some(size), Some(length)) = (size, response.content_length()) {
            let announced = length.saturating_add(part.len());
            if announced != size {
                return Err(LoadError::ShardSize {
                    file: url.to_string(),
                    expected: size,
                    actual: announced,
                });
            }
        }
        let mut buffer = vec![0; READ_BUFFER];
        loop {
            match response.read(&mut buffer) {
                Ok(0) => return Ok(Attempt::Complete),
                Ok(n) => {
                    part.append(&buffer[..n])?;
                    if let Some(size) = size.filter(|&size| part.len() > size) {
                        return Err(LoadError::ShardSize {
                            file: url.to_string(),
                            expected: size,
                            actual: part.len(),
                        });
                    }
                    reports.downloading(progress, part.len(), total);
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    return Ok(retry(None, format!("connection lost: {}", error_chain(&error))));
                }
            }
        }
    }
}

/// Checks a finished download against what the index expects.
fn check(url: &str, part: &PartFile, expected: Expected<'_>) -> Result<(), LoadError> {
    if let Some(size) = expected.size {
        check_size(url, size, part.len())?;
    }
    if let (Some(md5), Some(actual)) = (expected.md5, part.md5_hex()) {
        check_md5(url, md5, &actual)?;
    }
    match expected.content {
        Some(content) => content(&part.bytes()?, url),
        None => Ok(()),
    }
}

fn retry(status: Option<StatusCode>, reason: String) -> Attempt {
    Attempt::Retry { status: status.map(|status| status.as_u16()), reason }
}

/// The first byte of a 206 response's `Content-Range: bytes START-END/TOTAL`.
fn range_start(response: &Response) -> Option<u64> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let range = value.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// An error and its causes on one line: reqwest's own message is often just
/// "error sending request".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        cause = inner.source();
    }
    message
}
