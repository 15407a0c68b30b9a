//! What Ctrl-C means in `chat`: during a reply it stops the reply; at a
//! terminal prompt it warns, and a second one in a row quits; with a pipe for
//! input it quits at once.
//!
//! At a terminal the key arrives two ways. Inside `readline` the terminal is in
//! raw mode and the line editor reads Ctrl-C as a key ([`at_the_prompt`] is
//! called by the chat loop); between prompts (a reply just ended, a warning is
//! being printed) the terminal is in its normal mode and the key is a SIGINT,
//! which reaches [`install`]'s handler. Both count the same presses, so where a
//! quick double Ctrl-C lands does not change what it does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};

/// Whether a reply is being generated.
static GENERATING: AtomicBool = AtomicBool::new(false);

/// Whether the last thing typed at the prompt was Ctrl-C (the next one quits).
static WARNED: AtomicBool = AtomicBool::new(false);

/// Installs the handler. `interrupt` is the engine's flag (the reply then ends
/// at its next step with `finish_reason: "abort"` and the conversation goes on);
/// `at_a_terminal` says whether input is a terminal.
pub(super) fn install(interrupt: Arc<AtomicBool>, at_a_terminal: bool) -> Result<()> {
    let terminal = at_a_terminal.then(TerminalMode::save);
    ctrlc::set_handler(move || {
        if GENERATING.load(Ordering::SeqCst) {
            interrupt.store(true, Ordering::SeqCst);
        } else if let Some(terminal) = &terminal {
            if at_the_prompt() {
                // The editor may have switched to raw mode since the key
                // arrived; leave the terminal as the shell gave it.
                terminal.restore();
                std::process::exit(0);
            }
        } else {
            std::process::exit(130);
        }
    })
    .context("installing the Ctrl-C handler")
}

/// Ctrl-C at the prompt: true when it is the second in a row (quit), else
/// prints the warning and returns false.
pub(super) fn at_the_prompt() -> bool {
    if WARNED.swap(true, Ordering::SeqCst) {
        return true;
    }
    eprintln!("(Ctrl-C again or /exit to quit)");
    false
}

/// Something other than Ctrl-C was typed: the next Ctrl-C warns again.
pub(super) fn typed() {
    WARNED.store(false, Ordering::SeqCst);
}

/// Runs `generate` with Ctrl-C stopping the reply rather than the program.
pub(super) fn while_generating<T>(generate: impl FnOnce() -> T) -> T {
    GENERATING.store(true, Ordering::SeqCst);
    let result = generate();
    GENERATING.store(false, Ordering::SeqCst);
    result
}

/// The terminal's settings when the chat started.
struct TerminalMode {
    #[cfg(unix)]
    saved: Option<rustix::termios::Termios>,
}

impl TerminalMode {
    fn save() -> Self {
        Self {
            #[cfg(unix)]
            saved: rustix::termios::tcgetattr(std::io::stdin()).ok(),
        }
    }

    /// Puts the saved settings back (best effort: the program is quitting).
    fn restore(&self) {
        #[cfg(unix)]
        if let Some(saved) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
        }
    }
}
