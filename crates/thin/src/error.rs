//! Errors of the thin metadata layer.

use crate::types::DevId;
use uthin_pdata::ErrorKind;

/// An error of the thin metadata layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Pdata(#[from] uthin_pdata::Error),
    #[error("thin device {0} does not exist")]
    NoSuchDevice(DevId),
    #[error("thin device {0} already exists")]
    DeviceExists(DevId),
    #[error("thin device {0} is open")]
    DeviceBusy(DevId),
    #[error("thin device id {0} is out of range (0 ..= {max})", max = DevId::MAX.0)]
    BadDevId(DevId),
    #[error("transaction id is {actual}, not {expected}")]
    TransactionIdMismatch { expected: u64, actual: u64 },
    #[error("a metadata snapshot is already held (at block {0})")]
    MetadataSnapExists(u64),
    #[error("no metadata snapshot is held")]
    NoMetadataSnap,
    #[error("data block size {requested} sectors differs from the pool's {stored} (it can never change)")]
    BlockSizeMismatch { stored: u32, requested: u32 },
    #[error("data block size {0} sectors is invalid (128 ..= 2097152, a multiple of 128)")]
    BadBlockSize(u32),
    #[error("superblock has unsupported incompatible features {0:#x}")]
    IncompatFeatures(u32),
    #[error("superblock has unsupported read-only compatible features {0:#x}; open read-only")]
    CompatRoFeatures(u32),
    #[error("the metadata device is unformatted (all zero) and was opened read-only")]
    Unformatted,
    #[error("metadata is read-only")]
    ReadOnly,
    #[error("metadata is in fail mode after a failed abort; only close is possible")]
    Failed,
    #[error("an earlier error left the transaction unusable; abort first")]
    NeedsAbort,
    #[error("needs_check is set: {0} refused until the metadata is checked")]
    NeedsCheck(&'static str),
    #[error("cannot shrink the {what} from {from} to {to} blocks")]
    Shrink {
        what: &'static str,
        from: u64,
        to: u64,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("the pool time counter is at its 24-bit maximum; no more snapshots")]
    TimeOverflow,
}

impl Error {
    /// The coarse kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Pdata(e) => e.kind(),
            Error::NoSuchDevice(_) | Error::NoMetadataSnap => ErrorKind::NotFound,
            Error::DeviceExists(_) | Error::DeviceBusy(_) | Error::MetadataSnapExists(_) => {
                ErrorKind::Busy
            }
            Error::BadDevId(_)
            | Error::TransactionIdMismatch { .. }
            | Error::BlockSizeMismatch { .. }
            | Error::BadBlockSize(_)
            | Error::Shrink { .. }
            | Error::Invalid(_) => ErrorKind::Invalid,
            Error::IncompatFeatures(_) | Error::CompatRoFeatures(_) | Error::Unformatted => {
                ErrorKind::Unsupported
            }
            Error::ReadOnly
            | Error::Failed
            | Error::NeedsAbort
            | Error::NeedsCheck(_)
            | Error::TimeOverflow => ErrorKind::Unsupported,
        }
    }
}

/// Result of the thin metadata layer.
pub type Result<T> = std::result::Result<T, Error>;
