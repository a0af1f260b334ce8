//! The one reporting type of the tools: progress on stderr when it is a
//! terminal (silenced by `-q`), and messages.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Progress and messages for a long-running tool.
pub struct Report {
    quiet: bool,
    tty: bool,
    title: Mutex<String>,
    total: AtomicU64,
    done: AtomicU64,
    last: Mutex<Instant>,
}

impl Report {
    /// A reporter; progress is drawn only when stderr is a terminal and not quiet.
    pub fn new(quiet: bool) -> Self {
        Report {
            quiet,
            tty: std::io::stderr().is_terminal(),
            title: Mutex::new(String::new()),
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            last: Mutex::new(Instant::now()),
        }
    }

    /// A reporter that never prints progress (tests, pipelines).
    pub fn silent() -> Self {
        let mut r = Report::new(true);
        r.tty = false;
        r
    }

    /// Whether messages are suppressed.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Starts a phase of `total` units.
    pub fn start(&self, title: &str, total: u64) {
        *self.title.lock().unwrap_or_else(|e| e.into_inner()) = title.to_string();
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        self.draw(true);
    }

    /// Adds `n` units of progress.
    pub fn inc(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        self.draw(false);
    }

    /// Ends the progress line.
    pub fn finish(&self) {
        if self.tty && !self.quiet {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }

    fn draw(&self, force: bool) {
        if !self.tty || self.quiet {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if !force && last.elapsed().as_millis() < 100 {
            return;
        }
        *last = Instant::now();
        let (done, total) = (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        );
        let pct = (done * 100).checked_div(total).unwrap_or(0).min(100);
        let bar = "#".repeat(pct as usize / 4);
        let title = self.title.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let _ = write!(std::io::stderr(), "\r{title} [{bar:<25}] {pct:>3}%");
    }

    /// A phase title as 1.x prints it when stderr is not a terminal (its
    /// "simple" report: one line); on a terminal the progress bar of
    /// [`Report::start`] carries the title instead.
    pub fn title(&self, title: &str) {
        if !self.tty && !self.quiet {
            eprintln!("{title}");
        }
    }

    /// A message on stderr unless quiet.
    pub fn info(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }
}
