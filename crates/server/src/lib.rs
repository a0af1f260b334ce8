//! `uthin serve` and volume management: a pool's thin volumes served over
//! NBD by name, like LVM's logical volumes on dm-thin.
//!
//! * [`layout`]: the pool folder and creating a pool's files;
//! * [`registry`]: names, sizes and parentage of volumes, kept in step with
//!   the pool's transaction id so a crash between the two is repaired;
//! * [`manager`]: volume operations on an open pool (create, snapshot,
//!   delete, resize, list, status, raw messages), and the exports;
//! * [`volume`]: a thin volume as an NBD export;
//! * [`control`]: the daemon's control socket and the CLI's client for it;
//! * [`hooks`]: event logging and the hook command;
//! * [`daemon`]: the daemon's life: start, signals, graceful stop;
//! * [`lock`]: one writer per pool.
#![forbid(unsafe_code)]

pub mod api;
pub mod control;
pub mod daemon;
pub mod error;
pub mod hooks;
pub mod layout;
pub mod lock;
pub mod manager;
pub mod registry;
pub mod volume;

pub use error::{Error, Result};
