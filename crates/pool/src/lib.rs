//! The pool engine: what the kernel's dm-thin target does with its metadata,
//! as a library (FORMAT.md §6).
//!
//! A [`Pool`] is a metadata device plus a data device.  Each thin volume
//! ([`Thin`]) maps its virtual blocks onto data blocks on demand: the first
//! write to a block provisions it, a write to a block shared with a snapshot
//! breaks the sharing, a discard unmaps whole blocks and hands the space back
//! to the data device.  Flushes and FUA writes commit the metadata; otherwise
//! a background thread commits every second when something changed.
//!
//! Layers, bottom up:
//! * [`config`]: the kernel's table line (block size, low water, features);
//! * `cells`: per-virtual-block locks (the kernel's bio prison) in a hash
//!   table, `mapcache`: cached mapping lookups beside them; `dense`: the
//!   same in per-device arrays, for the blocks a budget covers;
//!   `devcells`: one device's cells, wherever each block's is;
//! * [`mode`]: pool modes and their transitions, [`event`]: events for the
//!   embedder (low water marks, mode changes);
//! * `pool`: opening, metadata access and the failure discipline;
//! * `commit`: commits and the periodic committer thread; `space`:
//!   allocation, running out of data space, resizing;
//! * `io`: reads, writes and flushes of a [`Thin`]; `discard`: discards
//!   and write-zeroes;
//! * `message`: the kernel's pool messages; `status`: status lines.
//!
//! Locking order (never taken the other way round): a thin's quiesce lock,
//! then cells (ascending virtual block), then the commit gate, then the
//! metadata lock.  Data-device I/O happens under cells and, for new blocks,
//! under the commit gate, but never under the metadata lock.
#![forbid(unsafe_code)]

mod cells;
mod commit;
pub mod config;
mod dense;
mod devcells;
mod discard;
pub mod error;
pub mod event;
mod io;
mod mapcache;
pub mod message;
pub mod mode;
mod pool;
mod query;
mod space;
mod status;

pub use config::{Features, PoolConfig};
pub use error::{Error, ErrorKind, Result};
pub use event::PoolEvent;
pub use io::{Thin, MAX_THIN_BYTES};
pub use message::Message;
pub use mode::PoolMode;
pub use pool::Pool;
pub use query::Allocation;
pub use uthin_thin::{DataBlock, DevId, VirtBlock};
