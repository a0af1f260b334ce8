//! Persistent data structures for uthin, byte-compatible with the Linux kernel's
//! `drivers/md/persistent-data`.
//!
//! Layers, bottom up:
//! * [`checksum`] and [`validator`]: the one place where block checksums, block
//!   numbers and magics are verified (on read) and sealed (on write).
//! * [`block_manager`]: a bounded cache of 4 KiB metadata blocks over a
//!   [`uthin_block_io::BlockDevice`]; callers only ever see validated bytes.
//! * [`sm`]: space maps (reference counts of metadata and data blocks), kept in
//!   memory during a transaction and materialised on disk at commit.
//! * [`tm`]: the transaction manager: shadowing (copy-on-write), lazy reference
//!   counts, commit and abort.
//! * [`btree`]: copy-on-write B-trees generic over the value type.
//!
//! Nothing here knows about thin provisioning; the `uthin-thin` crate builds the
//! pool metadata on top.
#![forbid(unsafe_code)]

pub mod block_manager;
pub mod btree;
pub mod checksum;
pub mod error;
pub mod sm;
pub mod tm;
pub mod types;
pub mod validator;

pub use error::{Error, ErrorKind, Result};
pub use types::MetaBlock;
