//! Terminal progress bars: downloads (fed by the loader's progress events)
//! and counted work such as a conversion. indicatif draws them only when
//! stderr is a terminal.

use indicatif::{ProgressBar, ProgressStyle};
use mlc_loader::{Progress, ProgressPhase};

/// Returns a callback that draws download progress on stderr. Local folders
/// report no downloads, so nothing is drawn for them.
pub fn bar() -> Box<dyn FnMut(&Progress) + Send> {
    let bar = ProgressBar::hidden();
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    Box::new(move |event: &Progress| match event.phase {
        ProgressPhase::Download => {
            if bar.is_hidden() {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
            bar.set_length(event.bytes_total);
            bar.set_position(event.bytes_done);
            bar.set_message(format!("[{}/{}] {}", event.file_index, event.file_count, event.file));
        }
        ProgressPhase::Verify | ProgressPhase::Load => {
            if !bar.is_hidden()
                && event.file_index == event.file_count
                && event.bytes_done == event.bytes_total
            {
                bar.finish_and_clear();
            }
        }
    })
}

/// A bar counting items of work (`{prefix} [bar] done/total  item`); it
/// appears at the first [`count`].
pub fn count_bar(prefix: &'static str) -> ProgressBar {
    let bar = ProgressBar::hidden();
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {wide_msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix);
    bar
}

/// `done` of `total` items finished, the last one `item`.
pub fn count(bar: &ProgressBar, done: usize, total: usize, item: &str) {
    if bar.is_hidden() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    bar.set_length(total as u64);
    bar.set_position(done as u64);
    bar.set_message(item.to_string());
}
