//! A terminal progress bar fed by the loader's progress events.

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
