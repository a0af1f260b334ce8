//! Errors of the daemon and the volume manager: what failed and where, and
//! a coarse kind for exit codes and control-socket replies.

use std::path::Path;

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error of the volume manager or the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or device operation failed.
    #[error("{path}: {op} failed: {source}")]
    Io {
        path: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The pool engine refused or failed.
    #[error("{0}")]
    Pool(#[from] uthin_pool::Error),
    /// Bad arguments (a name, a size, a flag combination).
    #[error("{0}")]
    Usage(String),
    /// No such volume.
    #[error("no volume named {0:?}")]
    NoVolume(String),
    /// The name is taken.
    #[error("a volume named {0:?} already exists")]
    VolumeExists(String),
    /// The volume is in use.
    #[error("volume {name:?} is in use ({why})")]
    Busy { name: String, why: String },
    /// Another process has the pool open.
    #[error("{0}")]
    Locked(String),
    /// The registry file is unreadable or inconsistent.
    #[error("volume registry {path}: {why}")]
    Registry { path: String, why: String },
    /// The control socket protocol broke.
    #[error("control socket: {0}")]
    Control(String),
    /// Anything else, already phrased.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &Path, op: &'static str, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            op,
            source,
        }
    }
}
