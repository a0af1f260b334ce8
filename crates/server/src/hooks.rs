//! Pool events for people and scripts: every event is logged, and runs the
//! hook command given with `--hook` (as LVM's dmeventd runs its autoextend
//! policy), e.g. to grow the data file when the low water mark is reached.
//!
//! The command runs through `sh -c`, one at a time in order, with:
//!
//! ```text
//! UTHIN_EVENT       data-low-water | metadata-low-water | mode-change
//! UTHIN_FREE        free blocks (low-water events)
//! UTHIN_OLD_MODE    UTHIN_NEW_MODE (mode-change): write, out-of-data-space,
//!                   out-of-metadata-space, read-only, fail
//! UTHIN_POOL_DIR    UTHIN_METADATA  UTHIN_DATA   the pool's paths
//! ```
//!
//! After the command finishes the daemon looks at the devices' sizes again,
//! so a hook that grew the data file brings the pool back at once.

use crate::layout::PoolPaths;
use std::process::Command;
use std::sync::mpsc::{channel, Sender};
use std::thread;
use uthin_pool::{PoolEvent, PoolMode};

/// The environment a hook runs with for `ev`.
pub fn event_env(ev: &PoolEvent) -> Vec<(&'static str, String)> {
    match *ev {
        PoolEvent::DataLowWater { free } => vec![
            ("UTHIN_EVENT", "data-low-water".into()),
            ("UTHIN_FREE", free.to_string()),
        ],
        PoolEvent::MetadataLowWater { free } => vec![
            ("UTHIN_EVENT", "metadata-low-water".into()),
            ("UTHIN_FREE", free.to_string()),
        ],
        PoolEvent::ModeChanged { old, new } => vec![
            ("UTHIN_EVENT", "mode-change".into()),
            ("UTHIN_OLD_MODE", mode_word(old).into()),
            ("UTHIN_NEW_MODE", mode_word(new).into()),
        ],
    }
}

fn mode_word(m: PoolMode) -> &'static str {
    match m {
        PoolMode::Write => "write",
        PoolMode::OutOfDataSpace => "out-of-data-space",
        PoolMode::OutOfMetadataSpace => "out-of-metadata-space",
        PoolMode::ReadOnly => "read-only",
        PoolMode::Fail => "fail",
    }
}

/// Runs hooks on a thread of their own, in order.
pub struct Hooks {
    tx: Sender<PoolEvent>,
}

impl Hooks {
    /// Starts the hook thread: `command` (if any) runs for each event, then
    /// `after` (the daemon's size check).
    pub fn start(
        command: Option<String>,
        paths: &PoolPaths,
        after: impl Fn() + Send + 'static,
    ) -> Hooks {
        let (tx, rx) = channel::<PoolEvent>();
        let paths = paths.clone();
        thread::Builder::new()
            .name("event-hooks".into())
            .spawn(move || {
                for ev in rx {
                    if let Some(cmd) = &command {
                        run_hook(cmd, &paths, &ev);
                    }
                    after();
                }
            })
            .expect("spawning the hook thread");
        Hooks { tx }
    }

    /// Queues an event (logged here).
    pub fn event(&self, ev: PoolEvent) {
        match ev {
            PoolEvent::ModeChanged { old, new } => log::warn!(
                "pool mode changed from {} to {}",
                mode_word(old),
                mode_word(new)
            ),
            ev => log::warn!("pool event: {ev:?}"),
        }
        let _ = self.tx.send(ev);
    }
}

fn run_hook(cmd: &str, paths: &PoolPaths, ev: &PoolEvent) {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(cmd)
        .env("UTHIN_POOL_DIR", &paths.dir)
        .env("UTHIN_METADATA", &paths.metadata)
        .env("UTHIN_DATA", &paths.data);
    for (k, v) in event_env(ev) {
        c.env(k, v);
    }
    match c.status() {
        Ok(s) if s.success() => log::info!("hook {cmd:?} ran for {ev:?}"),
        Ok(s) => log::error!("hook {cmd:?} for {ev:?} failed: {s}"),
        Err(e) => log::error!("hook {cmd:?} for {ev:?} could not run: {e}"),
    }
}
