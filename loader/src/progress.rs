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
        }
    }
}

/// Reports the events of one file.
pub(crate) struct FileProgress<'a> {
    callback: Option<&'a mut ProgressCallback>,
    file: String,
    file_index: usize,
    file_count: usize,
}

impl FileProgress<'_> {
    /// A reporter that reports nothing, for files outside the numbered list.
    pub(crate) fn silent() -> FileProgress<'static> {
        FileProgress { callback: None, file: String::new(), file_index: 0, file_count: 0 }
    }

    /// The md5 of the file's `bytes` bytes matched.
    pub(crate) fn verified(&mut self, bytes: u64) {
        self.emit(ProgressPhase::Verify, bytes, bytes);
    }

    /// The shard's `bytes` bytes are in memory.
    pub(crate) fn loaded(&mut self, bytes: u64) {
        self.emit(ProgressPhase::Load, bytes, bytes);
    }

    /// Reports `bytes_done` of `bytes_total` in `phase`.
    pub(crate) fn emit(&mut self, phase: ProgressPhase, bytes_done: u64, bytes_total: u64) {
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
