//! Errors of the persistent-data layer: what went wrong and at which block.

use crate::types::MetaBlock;
use std::io;

/// Coarse classification for control flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The device failed an I/O.
    Io,
    /// On-disk bytes are not what the format allows.
    Corrupt,
    /// No free block is left.
    NoSpace,
    /// A key, device or block that was asked for does not exist.
    NotFound,
    /// The object is in use or already exists.
    Busy,
    /// The request is not allowed in the current state (read-only, failed).
    Unsupported,
    /// An argument is out of range.
    Invalid,
}

/// An error of the persistent-data layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("I/O error at metadata block {blk}: {source}")]
    Io {
        blk: MetaBlock,
        #[source]
        source: io::Error,
    },
    #[error("I/O error flushing the metadata device: {0}")]
    Flush(#[source] io::Error),
    #[error("corrupt {what} at metadata block {blk}: {why}")]
    Corrupt {
        what: &'static str,
        blk: MetaBlock,
        why: String,
    },
    #[error("no free {0} blocks left")]
    NoSpace(&'static str),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Busy(String),
    #[error("metadata is read-only")]
    ReadOnly,
    #[error("metadata handle is unusable after an earlier error; abort the transaction first")]
    Poisoned,
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl Error {
    /// The coarse kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } | Error::Flush(_) => ErrorKind::Io,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::NoSpace(_) => ErrorKind::NoSpace,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Busy(_) => ErrorKind::Busy,
            Error::ReadOnly | Error::Poisoned | Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::Invalid(_) => ErrorKind::Invalid,
        }
    }

    /// Shorthand for a corruption error.
    pub fn corrupt(what: &'static str, blk: MetaBlock, why: impl Into<String>) -> Self {
        Error::Corrupt {
            what,
            blk,
            why: why.into(),
        }
    }
}

/// Result of the persistent-data layer.
pub type Result<T> = std::result::Result<T, Error>;
