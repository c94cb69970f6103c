//! Progress reporting: an `indicatif` bar with rate, ETA and live metrics, status lines, and
//! the end-of-run summary naming every file written. This is the only place in the library
//! that prints (to stderr, so stdout stays clean for results).
//! Invariant: the bar is drawn only when stderr is a terminal and `EBMC_NO_PROGRESS` is not
//! `1`; status lines and the summary print either way, so logs of non-interactive runs keep them.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether a bar should be drawn: stderr is a terminal and `EBMC_NO_PROGRESS` is not `1`.
pub fn bar_enabled() -> bool {
    std::env::var("EBMC_NO_PROGRESS").map_or(true, |v| v != "1") && std::io::stderr().is_terminal()
}

/// A progress bar over `total` steps (e.g. mini-batches of the whole run).
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

const TEMPLATE: &str =
    "{prefix} {bar:30.cyan/blue} {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}] {msg}";

impl Progress {
    /// A bar that draws only where [`bar_enabled`] says so.
    pub fn new(total: u64, label: &str) -> Progress {
        let target = if bar_enabled() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self::with_target(total, label, target)
    }

    /// A bar that never draws (tests, library callers that want silence).
    pub fn hidden(total: u64) -> Progress {
        Self::with_target(total, "", ProgressDrawTarget::hidden())
    }

    fn with_target(total: u64, label: &str, target: ProgressDrawTarget) -> Progress {
        let style = ProgressStyle::with_template(TEMPLATE)
            .expect("TEMPLATE is a valid indicatif template")
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(total), target)
            .with_style(style)
            .with_prefix(label.to_string());
        Progress { bar }
    }

    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }

    /// Advances by `n` steps.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Steps done so far.
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// Sets the position (after resuming part-way through a run).
    pub fn set_position(&self, pos: u64) {
        self.bar.set_position(pos);
    }

    /// Shows `name=value` pairs after the bar, e.g. `epoch=3 recon=0.0712 lr=0.01`.
    pub fn set_metrics(&self, metrics: &[(&str, f64)]) {
        self.bar.set_message(format_metrics(metrics));
    }

    /// Prints a status line above the bar (or plainly when the bar is hidden).
    pub fn println(&self, msg: &str) {
        if self.bar.is_hidden() {
            eprintln!("{msg}");
        } else {
            self.bar.println(msg);
        }
    }

    /// Removes the bar; the status lines stay.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// One metric value in at most ~6 significant characters.
pub fn format_value(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        format!("{v:.3e}")
    } else if a >= 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// `name=value` pairs joined by spaces, in the given order.
pub fn format_metrics(metrics: &[(&str, f64)]) -> String {
    metrics
        .iter()
        .map(|(k, v)| format!("{k}={}", format_value(*v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every file a run wrote, in first-written order without repeats, for the final summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WrittenFiles {
    files: Vec<PathBuf>,
}

impl WrittenFiles {
    pub fn new() -> WrittenFiles {
        WrittenFiles::default()
    }

    /// Notes that `path` was written (again); the first time fixes its place in the summary.
    pub fn record(&mut self, path: &Path) {
        if !self.files.iter().any(|p| p == path) {
            self.files.push(path.to_path_buf());
        }
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// `wrote: out/samples.png, out/filters.png, ...` (or `wrote: nothing`).
    pub fn summary(&self) -> String {
        if self.files.is_empty() {
            return "wrote: nothing".into();
        }
        let names: Vec<String> = self.files.iter().map(|p| p.display().to_string()).collect();
        format!("wrote: {}", names.join(", "))
    }

    /// Prints the summary through `progress` (above the bar, or plainly).
    pub fn print_summary(&self, progress: &Progress) {
        progress.println(&self.summary());
    }
}
