//! The shards of a local folder, read and hashed by a pool of threads and
//! handed out in index order as each becomes ready: the md5 of a 0.5B model's
//! 278 MB takes ~0.5 s on one core, and the caller checks and reports a shard
//! (its progress event) while the next ones are still being read, instead of
//! after all of them.
//!
//! A browser reads no folders (its files come through `Artifact::from_files`).
#![cfg_attr(target_arch = "wasm32", allow(dead_code))]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use crate::ShardEntry;
use crate::shard::{Hashed, read_and_hash};

/// The shards being read, in index order ([`Iterator`]); reading stops when
/// this is dropped.
pub(crate) struct LocalShards {
    results: mpsc::Receiver<(usize, Hashed)>,
    /// Results that arrived before an earlier shard's.
    early: BTreeMap<usize, Hashed>,
    next: usize,
    stop: Arc<AtomicBool>,
}

/// Starts reading (and, when `verify_md5` and the index has one, hashing) the
/// shards `entries` of folder `dir`.
pub(crate) fn read_all(dir: &Path, entries: &[ShardEntry], verify_md5: bool) -> LocalShards {
    let (dir, entries) = (dir.to_path_buf(), entries.to_vec());
    let count = entries.len();
    spawn_readers(count, move |i| {
        read_and_hash(&dir.join(&entries[i].data_path), &entries[i], verify_md5)
    })
}

/// Runs `read(0) .. read(count - 1)` on one thread per core, each taking the
/// lowest index not yet taken, so that results come roughly in order.
fn spawn_readers(
    count: usize,
    read: impl Fn(usize) -> Hashed + Send + Sync + 'static,
) -> LocalShards {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let read = Arc::new(read);
    let taken = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (sender, results) = mpsc::channel();
    for _ in 0..cores.min(count) {
        let (read, taken, stop, sender) =
            (read.clone(), taken.clone(), stop.clone(), sender.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let i = taken.fetch_add(1, Ordering::Relaxed);
                if i >= count || sender.send((i, read(i))).is_err() {
                    return;
                }
            }
        });
    }
    LocalShards { results, early: BTreeMap::new(), next: 0, stop }
}

impl Iterator for LocalShards {
    type Item = Hashed;

    /// The next shard's result, waiting for it; `None` past the last (or if a
    /// reader died, in which case the caller reads the shard itself).
    fn next(&mut self) -> Option<Hashed> {
        loop {
            if let Some(result) = self.early.remove(&self.next) {
                self.next += 1;
                return Some(result);
            }
            let (i, result) = self.results.recv().ok()?;
            self.early.insert(i, result);
        }
    }
}

impl Drop for LocalShards {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_shard_is_handed_out_as_soon_as_it_and_those_before_it_are_read() {
        // Shard 1's read waits until the consumer has received shard 0: a pool
        // that handed out results only after reading everything would never
        // let it finish (the consumer would wait for shard 0 forever).
        let (received_first, wait_for_first) = mpsc::channel::<()>();
        let wait_for_first = Mutex::new(wait_for_first);
        let mut shards = spawn_readers(3, move |i| {
            if i == 1 {
                let signal = wait_for_first.lock().unwrap().recv_timeout(Duration::from_secs(30));
                assert!(signal.is_ok(), "shard 0 was not handed out before shard 1 was read");
            }
            Ok((vec![i as u8], None))
        });
        assert_eq!(shards.next().unwrap().unwrap().0, vec![0]);
        received_first.send(()).unwrap();
        assert_eq!(shards.next().unwrap().unwrap().0, vec![1]);
        assert_eq!(shards.next().unwrap().unwrap().0, vec![2]);
        assert!(shards.next().is_none());
    }

    #[test]
    fn results_come_in_index_order_whatever_order_the_reads_finish_in() {
        let mut shards = spawn_readers(8, |i| {
            std::thread::sleep(Duration::from_millis(5 * (8 - i as u64)));
            Ok((vec![i as u8], None))
        });
        let order: Vec<u8> = shards.by_ref().map(|r| r.unwrap().0[0]).collect();
        assert_eq!(order, (0..8).collect::<Vec<u8>>());
    }
}
