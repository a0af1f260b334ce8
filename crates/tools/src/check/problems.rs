//! What the checker found, with its severity (thin_check 1.x's model):
//!
//! * **fatal**: corruption that makes the metadata unusable or wrong
//!   (checksums, block numbers, key order, wrong reference counts, a wrong
//!   `mapped_blocks`, ...); the check fails whatever the options;
//! * **non-fatal**: harmless or repairable defects (a leaked block, an
//!   under-filled node, `max_entries` not a multiple of 3); the check fails
//!   unless `--ignore-non-fatal-errors` is given.
//!
//! Problems are collected from many threads and printed sorted by block, at most
//! [`MAX_PRINTED`] lines per batch, so a badly damaged pool does not flood
//! the terminal.

use crate::report::Report;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

/// Most problem lines printed per batch.
pub const MAX_PRINTED: usize = 100;
/// Most problems kept in memory per batch.
const MAX_KEPT: usize = 10_000;

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Fatal,
    NonFatal,
}

/// One problem: what and, when known, which metadata block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub block: Option<u64>,
    pub msg: String,
}

/// A thread-safe collector.
#[derive(Default)]
pub struct Problems {
    pending: Mutex<Vec<Problem>>,
    all: Mutex<Vec<Problem>>,
    dropped: AtomicUsize,
    fatal: AtomicUsize,
    non_fatal: AtomicUsize,
}

impl Problems {
    /// Records a problem.
    pub fn add(&self, severity: Severity, block: Option<u64>, msg: String) {
        match severity {
            Severity::Fatal => self.fatal.fetch_add(1, Relaxed),
            Severity::NonFatal => self.non_fatal.fetch_add(1, Relaxed),
        };
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() < MAX_KEPT {
            p.push(Problem {
                severity,
                block,
                msg,
            });
        } else {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    /// A fatal problem.
    pub fn fatal(&self, block: Option<u64>, msg: impl Into<String>) {
        self.add(Severity::Fatal, block, msg.into());
    }

    /// A non-fatal problem.
    pub fn non_fatal(&self, block: Option<u64>, msg: impl Into<String>) {
        self.add(Severity::NonFatal, block, msg.into());
    }

    /// Number of fatal problems so far.
    pub fn nr_fatal(&self) -> usize {
        self.fatal.load(Relaxed)
    }

    /// Number of non-fatal problems so far.
    pub fn nr_non_fatal(&self) -> usize {
        self.non_fatal.load(Relaxed)
    }

    /// Prints the problems recorded since the last flush, sorted by block.
    pub fn flush(&self, report: &Report) {
        let mut batch =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        let dropped = self.dropped.swap(0, Relaxed);
        if batch.is_empty() {
            return;
        }
        // Problems found at a block first, by block (they may come from many
        // threads); then the others in the order they were found.
        batch.sort_by_key(|p| (p.block.is_none(), p.block));
        batch.dedup();
        report.finish();
        for p in batch.iter().take(MAX_PRINTED) {
            report.info(&p.msg);
        }
        let more = batch.len().saturating_sub(MAX_PRINTED) + dropped;
        if more > 0 {
            report.info(&format!("... and {more} more problems"));
        }
        self.all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(batch);
    }

    /// Every problem printed so far.
    pub fn into_list(self) -> Vec<Problem> {
        let mut all = self.all.into_inner().unwrap_or_else(|e| e.into_inner());
        all.extend(self.pending.into_inner().unwrap_or_else(|e| e.into_inner()));
        all
    }
}
