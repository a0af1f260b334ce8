//! The requests the volume manager takes and what it answers, shared by the
//! control socket (as JSON, one object a line) and the CLI's direct path.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A request to the volume manager.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// A new empty volume (optionally over a read-only external origin).
    Create {
        name: String,
        /// Bytes; with an origin, 0 means the origin's size.
        size: u64,
        #[serde(default)]
        origin: Option<PathBuf>,
        #[serde(default)]
        read_only: bool,
    },
    /// A snapshot of a volume, taken between two of its writes.
    Snapshot {
        source: String,
        name: String,
        #[serde(default)]
        read_only: bool,
    },
    /// Delete a volume (refused while clients use it).
    Delete { name: String },
    /// Change a volume's size (shrinking discards the tail, and must be asked for).
    Resize {
        name: String,
        size: u64,
        #[serde(default)]
        allow_shrink: bool,
    },
    /// The volumes, with mapped and (if `exclusive`) exclusive space.
    List {
        #[serde(default)]
        exclusive: bool,
    },
    /// The pool's status.
    Status,
    /// A raw pool message in the dmsetup vocabulary.
    Message { text: String },
    /// Reserve (true) or release (false) the metadata snapshot.
    MetadataSnap { reserve: bool },
}

/// One volume, as `uthin list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub name: String,
    pub dev_id: u64,
    pub size: u64,
    pub mapped_bytes: u64,
    /// Bytes mapped by this volume alone (None when not computed, or when a
    /// user holds the metadata snapshot it would be computed from).
    pub exclusive_bytes: Option<u64>,
    /// The volume this one is a snapshot of (its name, or `thin N` if it
    /// has gone).
    pub snapshot_of: Option<String>,
    pub origin: Option<PathBuf>,
    pub read_only: bool,
    /// Seconds since the epoch.
    pub created: u64,
    /// The kernel's thin status line: `<mapped sectors> <highest sector|->`.
    pub thin_status: String,
}

/// The pool, as `uthin status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// The kernel's pool status line.
    pub pool_status: String,
    /// The kernel's pool table arguments (block size, low water, features).
    pub pool_table: String,
    pub mode: String,
    pub transaction_id: u64,
    pub block_size: u64,
    pub data_used_blocks: u64,
    pub data_total_blocks: u64,
    pub metadata_used_blocks: u64,
    pub metadata_total_blocks: u64,
    pub held_metadata_root: Option<u64>,
    pub needs_check: bool,
    pub metadata_path: PathBuf,
    pub data_path: PathBuf,
    pub volumes: Vec<VolumeStatus>,
    /// Present when a daemon answered.
    pub daemon: Option<DaemonInfo>,
}

/// A volume's line in the status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeStatus {
    pub name: String,
    pub dev_id: u64,
    pub thin_status: String,
}

/// The running daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub pid: u32,
    pub connections: usize,
    pub listening: Vec<String>,
}

/// The answer to a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Done; a line for the user.
    Done { text: String },
    /// A volume was made or changed.
    Volume { volume: VolumeInfo, text: String },
    /// The volumes.
    List { volumes: Vec<VolumeInfo> },
    /// The status.
    Status { status: StatusInfo },
}

/// A reply on the control socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
