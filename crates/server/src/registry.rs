//! The volume registry: names, sizes and parentage of a pool's thin
//! devices, which the kernel's metadata does not store (LVM keeps them in
//! its own metadata the same way).
//!
//! It is a small JSON file beside the pool, replaced atomically (write a
//! temporary file, fsync, rename, fsync the folder).  It stays in step with
//! the pool through the metadata's transaction id, as LVM does:
//!
//! 1. the registry is written with the change as `pending`, tagged with the
//!    next transaction id;
//! 2. the pool runs the device message and moves its transaction id to that
//!    value, in one commit ([`uthin_pool::Pool::send_with_transaction_id`]);
//! 3. the registry is written with the change applied and no `pending`.
//!
//! A crash anywhere leaves one of three states, which [`Registry::reconcile`]
//! resolves on the next start: the pool's id equals the pending one (step 2
//! happened: apply the change), equals the registry's (it did not: drop it),
//! or something else changed the pool behind the registry's back (raw pool
//! messages, another tool): then the pool's device list wins, and volumes
//! are dropped or adopted to match it, with a warning for each.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The registry file's format version.
const FORMAT: u32 = 1;

/// One named volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// The thin device id in the pool.
    pub dev_id: u64,
    /// Size in bytes (what clients see).
    pub size: u64,
    /// Seconds since the epoch when it was created.
    pub created: u64,
    /// The thin device this one is a snapshot of (at the time it was taken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_of: Option<u64>,
    /// A read-only external origin: unprovisioned blocks read from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<PathBuf>,
    /// Served read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// A change of the registry that goes with a pool message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A volume was created (a thin device or a snapshot).
    Add { name: String, volume: Volume },
    /// A volume was deleted.
    Remove { name: String },
}

/// A change written before the pool message, tagged with the transaction id
/// the pool will have once the message is committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub transaction_id: u64,
    pub change: Change,
}

/// The registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    pub format: u32,
    /// The pool's transaction id this registry matches.
    pub transaction_id: u64,
    pub volumes: BTreeMap<String, Volume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            format: FORMAT,
            transaction_id: 0,
            volumes: BTreeMap::new(),
            pending: None,
        }
    }
}

/// What the pool says, for [`Registry::reconcile`].
#[derive(Clone, Debug)]
pub struct PoolView {
    pub transaction_id: u64,
    /// Thin device ids with the byte length their highest mapping reaches.
    pub devices: BTreeMap<u64, u64>,
}

impl Change {
    fn apply(self, reg: &mut Registry) {
        match self {
            Change::Add { name, volume } => {
                reg.volumes.insert(name, volume);
            }
            Change::Remove { name } => {
                reg.volumes.remove(&name);
            }
        }
    }
}

impl Registry {
    /// Reads the registry at `path`; a missing file is an empty registry.
    pub fn load(path: &Path) -> Result<Registry> {
        let bad = |why: String| Error::Registry {
            path: path.display().to_string(),
            why,
        };
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Registry::default()),
            Err(e) => return Err(Error::io(path, "read", e)),
        };
        let reg: Registry =
            serde_json::from_str(&text).map_err(|e| bad(format!("not a volume registry: {e}")))?;
        if reg.format != FORMAT {
            return Err(bad(format!(
                "format {} is not supported (this uthin reads {FORMAT})",
                reg.format
            )));
        }
        for (name, v) in &reg.volumes {
            check_name(name).map_err(|e| bad(e.to_string()))?;
            if v.dev_id > uthin_thin::DevId::MAX.0 {
                return Err(bad(format!("volume {name:?}: bad device id {}", v.dev_id)));
            }
        }
        let ids: BTreeSet<u64> = reg.volumes.values().map(|v| v.dev_id).collect();
        if ids.len() != reg.volumes.len() {
            return Err(bad("two volumes name the same thin device".into()));
        }
        Ok(reg)
    }

    /// Replaces the registry at `path` atomically and durably.
    pub fn save(&self, path: &Path) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp = path.with_extension("json.tmp");
        let mut text = serde_json::to_string_pretty(self).expect("serializable");
        text.push('\n');
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })?
            .sync_all()
        };
        write().map_err(|e| Error::io(path, "write", e))
    }

    /// The volume called `name`.
    pub fn volume(&self, name: &str) -> Result<Volume> {
        self.volumes
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NoVolume(name.into()))
    }

    /// The volume using thin device `id`.
    pub fn by_dev(&self, id: u64) -> Option<(&String, &Volume)> {
        self.volumes.iter().find(|(_, v)| v.dev_id == id)
    }

    /// Records `change` as pending for transaction id `next`.
    pub fn begin(&mut self, next: u64, change: Change) {
        self.pending = Some(Pending {
            transaction_id: next,
            change,
        });
    }

    /// Applies the pending change (the pool committed it).
    pub fn finish(&mut self) {
        if let Some(p) = self.pending.take() {
            self.transaction_id = p.transaction_id;
            p.change.apply(self);
        }
    }

    /// Brings the registry in step with the pool (see the module docs).
    /// Returns what was done, one line each, for the log; empty when the
    /// two already agreed.
    pub fn reconcile(&mut self, pool: &PoolView) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(p) = self.pending.clone() {
            if p.transaction_id == pool.transaction_id {
                notes.push(format!(
                    "completing an interrupted change (the pool committed it): {:?}",
                    p.change
                ));
                self.finish();
            } else {
                notes.push(format!(
                    "dropping an interrupted change the pool never committed: {:?}",
                    p.change
                ));
                self.pending = None;
            }
        }
        let gone: Vec<String> = self
            .volumes
            .iter()
            .filter(|(_, v)| !pool.devices.contains_key(&v.dev_id))
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            let v = self.volumes.remove(&name).expect("listed");
            notes.push(format!(
                "volume {name:?}: thin device {} is not in the pool; dropped from the registry",
                v.dev_id
            ));
        }
        let known: BTreeSet<u64> = self.volumes.values().map(|v| v.dev_id).collect();
        for (&id, &reach) in &pool.devices {
            if known.contains(&id) {
                continue;
            }
            let mut name = format!("thin{id}");
            while self.volumes.contains_key(&name) {
                name.push('_');
            }
            notes.push(format!(
                "thin device {id} has no volume; registered as {name:?} with size {reach} bytes"
            ));
            self.volumes.insert(
                name,
                Volume {
                    dev_id: id,
                    size: reach,
                    created: now(),
                    snapshot_of: None,
                    origin: None,
                    read_only: false,
                },
            );
        }
        if self.transaction_id != pool.transaction_id {
            if notes.is_empty() {
                notes.push(format!(
                    "transaction id {} of the registry follows the pool's {}",
                    self.transaction_id, pool.transaction_id
                ));
            }
            self.transaction_id = pool.transaction_id;
        }
        notes
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Volume names: 1 to 128 characters of letters, digits, `.`, `_`, `-` and
/// `+`, not starting with `-` or `.` (they are NBD export names and appear
/// in file names of tools that use them).
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "bad volume name {name:?}: use 1 to 128 letters, digits, '.', '_', '-', '+', not starting with '-' or '.'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(id: u64) -> Volume {
        Volume {
            dev_id: id,
            size: 1 << 20,
            created: 1,
            snapshot_of: None,
            origin: None,
            read_only: false,
        }
    }

    fn view(txid: u64, ids: &[u64]) -> PoolView {
        PoolView {
            transaction_id: txid,
            devices: ids.iter().map(|&i| (i, 0)).collect(),
        }
    }

    #[test]
    fn save_and_load() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("volumes.json");
        assert_eq!(Registry::load(&p).unwrap(), Registry::default());
        let mut r = Registry::default();
        r.volumes.insert("a".into(), vol(1));
        r.begin(
            1,
            Change::Add {
                name: "b".into(),
                volume: vol(2),
            },
        );
        r.save(&p).unwrap();
        assert_eq!(Registry::load(&p).unwrap(), r);
        fs::write(&p, "{").unwrap();
        assert!(Registry::load(&p)
            .unwrap_err()
            .to_string()
            .contains("not a volume registry"));
    }

    #[test]
    fn reconcile_completes_or_drops_pending() {
        let mut r = Registry::default();
        r.begin(
            1,
            Change::Add {
                name: "a".into(),
                volume: vol(1),
            },
        );
        let mut done = r.clone();
        assert_eq!(done.reconcile(&view(1, &[1])).len(), 1);
        assert_eq!(done.volumes.len(), 1);
        assert_eq!(done.transaction_id, 1);
        assert!(done.pending.is_none());
        let mut undone = r.clone();
        assert_eq!(undone.reconcile(&view(0, &[])).len(), 1);
        assert!(undone.volumes.is_empty());
        assert_eq!(undone.transaction_id, 0);
        // Agreement says nothing.
        assert!(done.reconcile(&view(1, &[1])).is_empty());
    }

    #[test]
    fn reconcile_follows_the_pool() {
        let mut r = Registry::default();
        r.volumes.insert("a".into(), vol(1));
        r.volumes.insert("thin3".into(), vol(9));
        let notes = r.reconcile(&view(7, &[3, 9]));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert_eq!(r.transaction_id, 7);
        assert!(!r.volumes.contains_key("a"));
        assert_eq!(r.volumes["thin3_"].dev_id, 3);
    }

    #[test]
    fn names() {
        for ok in ["vol0", "a.b-c_d+e", "X"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "-x", ".x", "a/b", "a b", &"x".repeat(129), "é"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
