//! Progress lines on stderr: one line per compiler phase with its timing,
//! then a summary line. `-q` silences them, `-v` adds per-file detail.
//!
//! Plain lines on every kind of stderr, TTY or not: they are short, they
//! read well in CI logs, and they keep the timings of every phase visible.

use std::time::{Duration, Instant};

/// Where progress goes and how much of it.
#[derive(Debug)]
pub struct Progress {
    /// Phase and summary lines are printed.
    enabled: bool,
    /// Per-file detail lines are printed too.
    verbose: bool,
    /// When the command started, for the total in the summary line.
    started: Instant,
}

impl Progress {
    pub fn new(quiet: bool, verbose: bool) -> Self {
        Self {
            enabled: !quiet,
            verbose: verbose && !quiet,
            started: Instant::now(),
        }
    }

    /// No progress at all (commands whose stdout is the result, like `graph`).
    pub fn silent() -> Self {
        Self::new(true, false)
    }

    /// `read      3.1 ms`
    pub fn phase(&self, name: &str, took: Duration) {
        self.line(&format!("{name:<8} {}", millis(took)));
    }

    /// A line printed unless `-q`.
    pub fn line(&self, text: &str) {
        if self.enabled {
            eprintln!("{text}");
        }
    }

    /// A line printed only with `-v`.
    pub fn detail(&self, text: &str) {
        if self.verbose {
            eprintln!("  {text}");
        }
    }

    /// Time since the command started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// `3.1 ms`, right-aligned so phase lines line up.
pub fn millis(took: Duration) -> String {
    format!("{:>7.1} ms", took.as_secs_f64() * 1000.0)
}
