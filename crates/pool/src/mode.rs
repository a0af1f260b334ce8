//! Pool modes (FORMAT.md §6.8), ordered by degradation:
//! `Write < OutOfDataSpace < OutOfMetadataSpace < ReadOnly < Fail`.
//!
//! | Mode | Reads | New blocks / breaking sharing | Other writes | Discards | Commits, messages |
//! |---|---|---|---|---|---|
//! | Write | ok | ok | ok | processed | yes |
//! | OutOfDataSpace | ok | queued or ENOSPC | ok | processed | yes |
//! | OutOfMetadataSpace | ok | EIO | ok | no-op | no |
//! | ReadOnly | ok | EIO | ok | no-op | no |
//! | Fail | EIO | EIO | EIO | EIO | no |
//!
//! Transitions happen under the metadata write lock ([`Pool::set_mode`]),
//! which also switches the metadata read-only or back.  A pool whose
//! metadata has `needs_check` never enters Write or OutOfDataSpace; Fail is
//! terminal.

use crate::event::PoolEvent;
use crate::pool::Pool;
use parking_lot::{Condvar, Mutex};
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;
use uthin_thin::PoolMetadata;

/// The pool's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PoolMode {
    /// Everything works.
    Write,
    /// No free data block: writes needing one wait (or fail).
    OutOfDataSpace,
    /// No free metadata block: metadata is read-only until it grows.
    OutOfMetadataSpace,
    /// Metadata is read-only (feature, needs_check, or a failed operation).
    ReadOnly,
    /// Even the metadata abort failed: every request fails.
    Fail,
}

impl PoolMode {
    const ALL: [PoolMode; 5] = [
        PoolMode::Write,
        PoolMode::OutOfDataSpace,
        PoolMode::OutOfMetadataSpace,
        PoolMode::ReadOnly,
        PoolMode::Fail,
    ];

    /// The mode word of the kernel's pool status line.
    pub fn status_word(self) -> &'static str {
        match self {
            PoolMode::Write => "rw",
            PoolMode::OutOfDataSpace => "out_of_data_space",
            PoolMode::OutOfMetadataSpace | PoolMode::ReadOnly => "ro",
            PoolMode::Fail => "Fail",
        }
    }

    /// Whether the metadata can change in this mode.
    pub fn metadata_writable(self) -> bool {
        self <= PoolMode::OutOfDataSpace
    }
}

impl fmt::Display for PoolMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoolMode::Write => "writable",
            PoolMode::OutOfDataSpace => "out of data space",
            PoolMode::OutOfMetadataSpace => "out of metadata space",
            PoolMode::ReadOnly => "read-only",
            PoolMode::Fail => "failed",
        })
    }
}

/// Mode state beyond the mode itself.
pub(crate) struct ModeState {
    pub(crate) mode: PoolMode,
    /// When the pool entered OutOfDataSpace.
    pub(crate) oods_since: Option<Instant>,
    /// The no-space timeout expired: writes needing space fail at once
    /// until the pool returns to Write (the kernel sets error_if_no_space).
    pub(crate) no_space_error: bool,
    /// The data low-water event may fire.
    pub(crate) data_low_armed: bool,
}

/// The mode, readable without a lock on the I/O path.
pub(crate) struct ModeCtl {
    fast: AtomicU8,
    pub(crate) state: Mutex<ModeState>,
    /// Signalled on every mode change (writers waiting for space).
    pub(crate) changed: Condvar,
}

impl ModeCtl {
    pub(crate) fn new(mode: PoolMode) -> Self {
        ModeCtl {
            fast: AtomicU8::new(mode as u8),
            state: Mutex::new(ModeState {
                mode,
                oods_since: None,
                no_space_error: false,
                data_low_armed: true,
            }),
            changed: Condvar::new(),
        }
    }

    pub(crate) fn get(&self) -> PoolMode {
        PoolMode::ALL[self.fast.load(Ordering::Acquire) as usize]
    }
}

impl Pool {
    /// The pool's mode.
    pub fn mode(&self) -> PoolMode {
        self.mode.get()
    }

    /// Moves to `new` (under the metadata write lock), applying the rules:
    /// Fail is terminal, needs_check or the read_only feature keep the pool
    /// at least ReadOnly, and the metadata follows (read-only from
    /// OutOfMetadataSpace on).
    pub(crate) fn set_mode(&self, md: &mut PoolMetadata, mut new: PoolMode) {
        let mut st = self.mode.state.lock();
        let old = st.mode;
        if old == PoolMode::Fail || md.is_failed() {
            new = PoolMode::Fail;
        }
        let needs_check = md.needs_check().unwrap_or(true);
        if new < PoolMode::ReadOnly && (needs_check || self.cfg.features.read_only) {
            new = PoolMode::ReadOnly;
        }
        if new.metadata_writable() {
            if let Err(e) = md.set_read_only(false) {
                log::error!("cannot make the metadata writable: {e}");
                new = PoolMode::ReadOnly;
            }
        }
        if !new.metadata_writable() {
            // Only fails when asked to go read-write.
            let _ = md.set_read_only(true);
        }
        if new == old {
            return;
        }
        if new == PoolMode::OutOfDataSpace {
            st.oods_since = Some(Instant::now());
        } else {
            st.oods_since = None;
            st.no_space_error = false;
        }
        st.mode = new;
        self.mode.fast.store(new as u8, Ordering::Release);
        match new {
            PoolMode::Write => log::info!("pool switched to write mode"),
            m => log::warn!("pool switched to {m} mode"),
        }
        self.events.push(PoolEvent::ModeChanged { old, new });
        self.mode.changed.notify_all();
    }

    /// Whether writes needing space fail at once now (the feature, or the
    /// no-space timeout expired).
    pub(crate) fn error_if_no_space_now(&self) -> bool {
        if self.cfg.features.error_if_no_space {
            return true;
        }
        let st = self.mode.state.lock();
        st.no_space_error
            || (!self.cfg.no_space_timeout.is_zero()
                && st
                    .oods_since
                    .is_some_and(|t| t.elapsed() >= self.cfg.no_space_timeout))
    }
}
