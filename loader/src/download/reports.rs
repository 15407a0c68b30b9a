//! A download's progress events, throttled: a shard reports about twenty
//! times, not once per read.

use crate::ProgressPhase;
use crate::progress::FileProgress;

/// Download events per file, at most (plus the final one).
const DOWNLOAD_REPORTS: u64 = 20;

/// The throttle of one download's events, kept across its retries.
#[derive(Default)]
pub(crate) struct DownloadReports {
    next_report: u64,
    last_report: Option<u64>,
}

impl DownloadReports {
    /// `done` bytes of a download of `total` bytes (when known) are on disk.
    /// Reported only each time another twentieth of `total` is reached.
    pub(crate) fn downloading(
        &mut self,
        progress: &mut FileProgress<'_>,
        done: u64,
        total: Option<u64>,
    ) {
        let Some(total) = total.filter(|&total| total > 0) else { return };
        if done < self.next_report {
            return;
        }
        let step = total.div_ceil(DOWNLOAD_REPORTS);
        self.next_report = (done / step).saturating_add(1).saturating_mul(step);
        self.report(progress, done, total);
    }

    /// The download completed with `bytes` bytes.
    pub(crate) fn downloaded(&mut self, progress: &mut FileProgress<'_>, bytes: u64) {
        if self.last_report != Some(bytes) {
            self.report(progress, bytes, bytes);
        }
    }

    fn report(&mut self, progress: &mut FileProgress<'_>, done: u64, total: u64) {
        self.last_report = Some(done);
        progress.emit(ProgressPhase::Download, done, total);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::progress::Reporter;
    use crate::{Progress, ProgressCallback};

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
        let mut reports = DownloadReports::default();
        for done in (0..=10_000).step_by(7) {
            reports.downloading(&mut file, done, Some(10_000));
        }
        reports.downloading(&mut file, 10_000, Some(10_000));
        reports.downloaded(&mut file, 10_000);
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
        let mut reports = DownloadReports::default();
        reports.downloading(&mut file, 500, None);
        reports.downloaded(&mut file, 900);
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].phase, events[0].bytes_done, events[0].bytes_total),
            (ProgressPhase::Download, 900, 900)
        );
    }
}
