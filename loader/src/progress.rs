//! Progress events reported while an artifact is opened.

/// What is happening to a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressPhase {
    /// Bytes are arriving from the network.
    Download,
    /// The file's md5 was checked (reported once it matched).
    Verify,
    /// A shard was read into memory.
    Load,
}

/// One progress event.
///
/// Files are numbered over the tokenizer files, then the shards; the config
/// and the index are fetched before that list is known and are not reported.
/// For each file: `Download` events while it downloads (at most about 20, and
/// always one when it completes), `Verify` when its md5 was checked, and, for
/// a shard, one `Load` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The phase.
    pub phase: ProgressPhase,
    /// The file's name in the artifact (e.g. `params_shard_3.bin`).
    pub file: String,
    /// 1-based position of the file.
    pub file_index: usize,
    /// Number of files reported.
    pub file_count: usize,
    /// Bytes of this file done so far.
    pub bytes_done: u64,
    /// Size of this file (for a download of unknown size, reported only when
    /// it completes, the bytes received).
    pub bytes_total: u64,
}

/// The callback type of [`OpenOptions::progress`](crate::OpenOptions::progress).
#[cfg(not(target_arch = "wasm32"))]
pub type ProgressCallback = Box<dyn FnMut(&Progress) + Send>;
/// The callback type of [`OpenOptions::progress`](crate::OpenOptions::progress);
/// not `Send` in a browser, where it calls a JavaScript function (one thread).
#[cfg(target_arch = "wasm32")]
pub type ProgressCallback = Box<dyn FnMut(&Progress)>;

/// Download events per file, at most (plus the final one).
const DOWNLOAD_REPORTS: u64 = 20;

/// Hands out per-file reporters for the files of one open. It borrows the
/// callback, so an open that starts over (a stale cached index) reports
/// through the same one.
pub(crate) struct Reporter<'a> {
    callback: Option<&'a mut ProgressCallback>,
    file_count: usize,
}

impl<'a> Reporter<'a> {
    /// A reporter over `file_count` files; `None` reports nothing.
    pub(crate) fn new(
        callback: Option<&'a mut ProgressCallback>,
        file_count: usize,
    ) -> Reporter<'a> {
        Reporter { callback, file_count }
    }

    /// The reporter of file `index` (0-based) named `file`.
    pub(crate) fn file(&mut self, index: usize, file: &str) -> FileProgress<'_> {
        FileProgress {
            callback: self.callback.as_deref_mut(),
            file: file.to_string(),
            file_index: index + 1,
            file_count: self.file_count,
            next_download_report: 0,
            last_download_report: None,
        }
    }
}

/// Reports the events of one file, throttling download events.
pub(crate) struct FileProgress<'a> {
    callback: Option<&'a mut ProgressCallback>,
    file: String,
    file_index: usize,
    file_count: usize,
    next_download_report: u64,
    last_download_report: Option<u64>,
}

impl FileProgress<'_> {
    /// A reporter that reports nothing, for files outside the numbered list.
    pub(crate) fn silent() -> FileProgress<'static> {
        FileProgress {
            callback: None,
            file: String::new(),
            file_index: 0,
            file_count: 0,
            next_download_report: 0,
            last_download_report: None,
        }
    }

    /// `done` bytes of a download of `total` bytes (when known) are on disk.
    /// Reported only each time another twentieth of `total` is reached.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn downloading(&mut self, done: u64, total: Option<u64>) {
        let Some(total) = total.filter(|&total| total > 0) else { return };
        if done < self.next_download_report {
            return;
        }
        let step = total.div_ceil(DOWNLOAD_REPORTS);
        self.next_download_report = (done / step).saturating_add(1).saturating_mul(step);
        self.download_event(done, total);
    }

    /// The download completed with `bytes` bytes.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn downloaded(&mut self, bytes: u64) {
        if self.last_download_report != Some(bytes) {
            self.download_event(bytes, bytes);
        }
    }

    /// The md5 of the file's `bytes` bytes matched.
    pub(crate) fn verified(&mut self, bytes: u64) {
        self.emit(ProgressPhase::Verify, bytes, bytes);
    }

    /// The shard's `bytes` bytes are in memory.
    pub(crate) fn loaded(&mut self, bytes: u64) {
        self.emit(ProgressPhase::Load, bytes, bytes);
    }

    fn download_event(&mut self, done: u64, total: u64) {
        self.last_download_report = Some(done);
        self.emit(ProgressPhase::Download, done, total);
    }

    fn emit(&mut self, phase: ProgressPhase, bytes_done: u64, bytes_total: u64) {
        if let Some(callback) = self.callback.as_mut() {
            callback(&Progress {
                phase,
                file: self.file.clone(),
                file_index: self.file_index,
                file_count: self.file_count,
                bytes_done,
                bytes_total,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn recording() -> (ProgressCallback, Arc<Mutex<Vec<Progress>>>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        (Box::new(move |event: &Progress| sink.lock().unwrap().push(event.clone())), events)
    }

    #[test]
    fn download_events_are_throttled_to_twenty_plus_the_last() {
        let (mut callback, events) = recording();
        let mut reporter = Reporter::new(Some(&mut callback), 3);
        let mut file = reporter.file(1, "params_shard_0.bin");
        for done in (0..=10_000).step_by(7) {
            file.downloading(done, Some(10_000));
        }
        file.downloading(10_000, Some(10_000));
        file.downloaded(10_000);
        file.verified(10_000);
        file.loaded(10_000);
        let events = events.lock().unwrap();
        let downloads: Vec<&Progress> =
            events.iter().filter(|e| e.phase == ProgressPhase::Download).collect();
        assert!((20..=21).contains(&downloads.len()), "{}", downloads.len());
        assert!(downloads.windows(2).all(|pair| pair[0].bytes_done < pair[1].bytes_done));
        let last = downloads.last().unwrap();
        assert_eq!((last.bytes_done, last.bytes_total), (10_000, 10_000));
        let tail: Vec<ProgressPhase> = events.iter().rev().take(2).map(|e| e.phase).collect();
        assert_eq!(tail, [ProgressPhase::Load, ProgressPhase::Verify]);
        assert!(
            events
                .iter()
                .all(|e| e.file == "params_shard_0.bin" && e.file_index == 2 && e.file_count == 3)
        );
    }

    #[test]
    fn unknown_sizes_report_only_completion() {
        let (mut callback, events) = recording();
        let mut reporter = Reporter::new(Some(&mut callback), 3);
        let mut file = reporter.file(0, "tokenizer.json");
        file.downloading(500, None);
        file.downloaded(900);
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].phase, events[0].bytes_done, events[0].bytes_total),
            (ProgressPhase::Download, 900, 900)
        );
    }
}
