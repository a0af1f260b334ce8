//! Errors of the pool engine, and their coarse kinds (with the errno the
//! kernel's target would complete the request with).

use crate::mode::PoolMode;
use std::io;
use uthin_thin::DevId;

/// Coarse classification for control flow and for reporting to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A device failed an I/O (or the metadata is corrupt).
    Io,
    /// Out of data space (or metadata space).
    NoSpace,
    /// The pool cannot change its metadata (read-only or out of metadata
    /// space); the request needed a change.
    ReadOnly,
    /// The request is refused in the pool's current mode or configuration.
    Unsupported,
    /// An argument is malformed or out of range.
    Invalid,
    /// A thin device (or metadata snapshot) does not exist.
    NotFound,
    /// The object is in use or already exists.
    Busy,
    /// The pool is in fail mode (or closed): nothing works.
    Failed,
}

impl ErrorKind {
    /// The Linux errno the kernel completes such a request with.
    pub fn errno(self) -> i32 {
        match self {
            ErrorKind::Io | ErrorKind::ReadOnly | ErrorKind::Failed => 5, // EIO
            ErrorKind::NoSpace => 28,                                     // ENOSPC
            ErrorKind::Unsupported => 95,                                 // EOPNOTSUPP
            ErrorKind::Invalid => 22,                                     // EINVAL
            ErrorKind::NotFound => 61,                                    // ENODATA
            ErrorKind::Busy => 16,                                        // EBUSY
        }
    }
}

/// An error of the pool engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The data device failed a request.
    #[error("data device: {op} of {len} bytes at offset {offset} failed: {source}")]
    DataIo {
        op: &'static str,
        offset: u64,
        len: u64,
        #[source]
        source: io::Error,
    },
    /// The external origin failed a read.
    #[error("external origin: read of {len} bytes at offset {offset} failed: {source}")]
    OriginIo {
        offset: u64,
        len: u64,
        #[source]
        source: io::Error,
    },
    /// A metadata operation failed (for changes, the transaction was aborted
    /// and the pool went read-only, see [`crate::PoolMode`]).
    #[error("metadata operation {op} failed: {source}")]
    Metadata {
        op: &'static str,
        #[source]
        source: uthin_thin::Error,
    },
    /// No free data block and the pool errors instead of queueing (or the
    /// queueing timed out).
    #[error("the pool is out of data space")]
    NoDataSpace,
    /// The request needs a metadata change the pool cannot make now.
    #[error("{what} needs a metadata change, but the pool is {mode}")]
    ReadOnly { what: &'static str, mode: PoolMode },
    /// The pool is in fail mode.
    #[error("the pool is in fail mode (its metadata could not be re-read)")]
    Failed,
    /// The pool was closed.
    #[error("the pool is closed")]
    Closed,
    /// A flush or FUA write on a device whose changes an abort threw away.
    #[error("thin device {0} lost uncommitted changes in an aborted transaction")]
    AbortedWithChanges(DevId),
    /// A pool message refused in the current mode (EOPNOTSUPP).
    #[error("{what} is refused while the pool is {mode}")]
    Refused { what: String, mode: PoolMode },
    /// A malformed pool message.
    #[error("bad pool message {msg:?}: {why}")]
    BadMessage { msg: String, why: String },
    /// A bad configuration.
    #[error("bad pool configuration: {0}")]
    Config(String),
    /// An I/O range outside the thin device's address space.
    #[error("I/O of {len} bytes at offset {offset} is out of range")]
    OutOfRange { offset: u64, len: u64 },
    /// The data device is smaller than the pool's data space map.
    #[error("the data device holds {have} blocks, less than the pool's {need}; it cannot shrink")]
    DataDeviceTooSmall { have: u64, need: u64 },
}

impl Error {
    /// The coarse kind.
    pub fn kind(&self) -> ErrorKind {
        use uthin_pdata::ErrorKind as K;
        match self {
            Error::DataIo { .. } | Error::OriginIo { .. } => ErrorKind::Io,
            Error::Metadata { source, .. } => match source {
                uthin_thin::Error::ReadOnly | uthin_thin::Error::NeedsCheck(_) => {
                    ErrorKind::ReadOnly
                }
                uthin_thin::Error::Failed => ErrorKind::Failed,
                e => match e.kind() {
                    K::Io | K::Corrupt => ErrorKind::Io,
                    K::NoSpace => ErrorKind::NoSpace,
                    K::NotFound => ErrorKind::NotFound,
                    K::Busy => ErrorKind::Busy,
                    K::Unsupported => ErrorKind::Unsupported,
                    K::Invalid => ErrorKind::Invalid,
                },
            },
            Error::NoDataSpace => ErrorKind::NoSpace,
            Error::ReadOnly { .. } => ErrorKind::ReadOnly,
            Error::Failed | Error::Closed => ErrorKind::Failed,
            Error::AbortedWithChanges(_) => ErrorKind::Io,
            Error::Refused { .. } => ErrorKind::Unsupported,
            Error::BadMessage { .. }
            | Error::Config(_)
            | Error::OutOfRange { .. }
            | Error::DataDeviceTooSmall { .. } => ErrorKind::Invalid,
        }
    }

    pub(crate) fn data_io(op: &'static str, offset: u64, len: u64, source: io::Error) -> Self {
        Error::DataIo {
            op,
            offset,
            len,
            source,
        }
    }
}

/// Result of the pool engine.
pub type Result<T> = std::result::Result<T, Error>;
