//! dm-thin pool metadata, byte-compatible with the Linux kernel's
//! `dm-thin-metadata.c` (FORMAT.md §1.3-§5).
//!
//! [`PoolMetadata`] is the entry point: open (or format) a metadata device,
//! create thin devices and snapshots, map virtual blocks to data blocks,
//! commit, abort, and hold a metadata snapshot for userland tools.
//! [`superblock`] has the on-disk superblock, [`mapping`] and [`details`] the
//! tree value types.
#![forbid(unsafe_code)]

pub mod details;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod mapping;
pub mod metadata;
pub mod status;
pub mod superblock;
pub mod types;

pub use error::{Error, Result};
pub use metadata::{Lookup, MappedRange, OpenOptions, PoolMetadata};
pub use types::{DataBlock, DevId, Time, TransactionId, VirtBlock};
