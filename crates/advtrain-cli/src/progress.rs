//! Progress bars (indicatif) for the library's `Progress` reports.

use std::sync::Mutex;

use advtrain::progress::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Draws one bar per loop with ETA and images/s; notes are printed above the bar. When
/// `quiet` (or when stderr is not a terminal) bars are hidden but notes still print.
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    quiet: bool,
}

impl Bars {
    pub fn new(quiet: bool) -> Self {
        Self {
            bar: Mutex::new(None),
            quiet,
        }
    }
}

impl Progress for Bars {
    fn begin(&self, label: &str, total: u64) {
        let bar = ProgressBar::new(total);
        if self.quiet {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:.bold} [{bar:30}] {pos}/{len} {per_sec:.cyan} eta {eta} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        *self.bar.lock().unwrap() = Some(bar);
    }

    fn advance(&self, n: u64, status: &str) {
        if let Some(bar) = self.bar.lock().unwrap().as_ref() {
            bar.inc(n);
            bar.set_message(status.to_string());
        }
    }

    fn end(&self) {
        if let Some(bar) = self.bar.lock().unwrap().take() {
            bar.finish_and_clear();
        }
    }

    fn note(&self, message: &str) {
        match self.bar.lock().unwrap().as_ref() {
            Some(bar) if !self.quiet => bar.println(message),
            _ => eprintln!("{message}"),
        }
    }
}
