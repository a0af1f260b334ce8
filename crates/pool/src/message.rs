//! The kernel's pool messages (FORMAT.md §6.1): `create_thin <id>`,
//! `create_snap <id> <origin>`, `delete <id>`, `set_transaction_id <cur>
//! <new>`, `reserve_metadata_snap`, `release_metadata_snap`.  Each is
//! refused (EOPNOTSUPP) when the metadata cannot change, and committed on
//! success.

use crate::error::{Error, Result};
use crate::pool::Pool;
use std::sync::atomic::Ordering;
use uthin_thin::{DevId, PoolMetadata};

/// A pool message, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// `create_thin <id>`
    CreateThin(DevId),
    /// `create_snap <id> <origin>`
    CreateSnap { id: DevId, origin: DevId },
    /// `delete <id>`
    Delete(DevId),
    /// `set_transaction_id <current> <new>`
    SetTransactionId { current: u64, new: u64 },
    /// `reserve_metadata_snap`
    ReserveMetadataSnap,
    /// `release_metadata_snap`
    ReleaseMetadataSnap,
}

impl std::str::FromStr for Message {
    type Err = Error;

    fn from_str(msg: &str) -> Result<Self> {
        let w: Vec<&str> = msg.split_whitespace().collect();
        let bad = |why: &str| Error::BadMessage {
            msg: msg.to_string(),
            why: why.to_string(),
        };
        let num = |s: &str| -> Result<u64> {
            s.parse()
                .map_err(|_| bad(&format!("{s:?} is not a number")))
        };
        Ok(match w.as_slice() {
            ["create_thin", id] => Message::CreateThin(DevId(num(id)?)),
            ["create_snap", id, origin] => Message::CreateSnap {
                id: DevId(num(id)?),
                origin: DevId(num(origin)?),
            },
            ["delete", id] => Message::Delete(DevId(num(id)?)),
            ["set_transaction_id", cur, new] => Message::SetTransactionId {
                current: num(cur)?,
                new: num(new)?,
            },
            ["reserve_metadata_snap"] => Message::ReserveMetadataSnap,
            ["release_metadata_snap"] => Message::ReleaseMetadataSnap,
            [cmd, ..] => {
                return Err(bad(&format!(
                    "unknown message or wrong arguments for {cmd:?}"
                )))
            }
            [] => return Err(bad("empty message")),
        })
    }
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::CreateThin(id) => write!(f, "create_thin {id}"),
            Message::CreateSnap { id, origin } => write!(f, "create_snap {id} {origin}"),
            Message::Delete(id) => write!(f, "delete {id}"),
            Message::SetTransactionId { current, new } => {
                write!(f, "set_transaction_id {current} {new}")
            }
            Message::ReserveMetadataSnap => f.write_str("reserve_metadata_snap"),
            Message::ReleaseMetadataSnap => f.write_str("release_metadata_snap"),
        }
    }
}

impl Pool {
    /// Runs a pool message, as `dmsetup message <pool> 0 "<msg>"`.
    pub fn message(&self, msg: &str) -> Result<()> {
        self.send(msg.parse()?)
    }

    /// Runs a parsed pool message.
    pub fn send(&self, m: Message) -> Result<()> {
        match m {
            Message::CreateThin(id) => self.create_thin(id),
            Message::CreateSnap { id, origin } => self.create_snap(id, origin),
            Message::Delete(id) => self.delete_thin(id),
            Message::SetTransactionId { current, new } => self.set_transaction_id(current, new),
            Message::ReserveMetadataSnap => self.reserve_metadata_snap(),
            Message::ReleaseMetadataSnap => self.release_metadata_snap(),
        }
    }

    /// Runs a device message (`create_thin`, `create_snap`, `delete`) and
    /// moves the transaction id from `current` to `new`, in one commit: a
    /// crash leaves either both or neither (what LVM needs to keep its own
    /// records in step with the pool, and does with two messages).  Nothing
    /// changes if the transaction id is not `current` or the message is
    /// refused.
    pub fn send_with_transaction_id(&self, m: Message, current: u64, new: u64) -> Result<()> {
        // The devices whose snapshot time the change may move.
        let (op, touched) = match m {
            Message::CreateThin(id) => ("create_thin", vec![id]),
            Message::CreateSnap { id, origin } => ("create_snap", vec![id, origin]),
            Message::Delete(_) => ("delete", vec![]),
            other => {
                return Err(Error::BadMessage {
                    msg: other.to_string(),
                    why: "only device messages go with a transaction id".into(),
                })
            }
        };
        self.check_message(op)?;
        let origin = match m {
            Message::CreateSnap { origin, .. } => Some(self.thin_shared(origin)),
            _ => None,
        };
        let _quiesced = origin.as_ref().map(|o| o.quiesce.write());
        self.run_message(op, |md| {
            // Checked first: a device message changes nothing when it fails,
            // and setting the id cannot fail once it matched.
            let actual = md.transaction_id()?;
            if actual != current {
                return Err(uthin_thin::Error::TransactionIdMismatch {
                    expected: current,
                    actual,
                });
            }
            match m {
                Message::CreateThin(id) => md.create_thin(id)?,
                Message::CreateSnap { id, origin } => md.create_snap(id, origin)?,
                Message::Delete(id) => {
                    md.delete_thin(id)?;
                    self.forget_dev(id);
                }
                _ => {}
            }
            md.set_transaction_id(current, new)?;
            for id in touched {
                // After the metadata (see `Pool::lookup`).
                self.note_snap_time(md, id);
            }
            Ok(())
        })
    }

    /// Creates an empty thin device.
    pub fn create_thin(&self, id: DevId) -> Result<()> {
        self.run_message("create_thin", |md| {
            md.create_thin(id)?;
            self.note_snap_time(md, id);
            Ok(())
        })
    }

    /// Snapshots `origin` as `id`.  Writes to the origin are held off while
    /// the snapshot is taken and committed, so it falls between two writes.
    pub fn create_snap(&self, id: DevId, origin: DevId) -> Result<()> {
        self.check_message("create_snap")?;
        let shared = self.thin_shared(origin);
        let _quiesced = shared.quiesce.write();
        self.run_message("create_snap", |md| {
            md.create_snap(id, origin)?;
            // After the metadata (see `Pool::lookup`).
            self.note_snap_time(md, id);
            self.note_snap_time(md, origin);
            Ok(())
        })
    }

    /// Deletes a thin device (refused while it is open).
    pub fn delete_thin(&self, id: DevId) -> Result<()> {
        self.run_message("delete", |md| {
            md.delete_thin(id)?;
            self.forget_dev(id);
            Ok(())
        })
    }

    /// Sets the transaction id if it equals `current`.
    pub fn set_transaction_id(&self, current: u64, new: u64) -> Result<()> {
        self.run_message("set_transaction_id", |md| {
            md.set_transaction_id(current, new)
        })
    }

    /// Takes a metadata snapshot for userland tools (`thin_dump -m`).
    pub fn reserve_metadata_snap(&self) -> Result<()> {
        self.check_message("reserve_metadata_snap")?;
        // The metadata layer commits first; do it here so the commit gate
        // and the data flush apply.
        self.commit_inner()?;
        self.run_message("reserve_metadata_snap", |md| {
            md.reserve_metadata_snap().map(|_| ())
        })
    }

    /// Releases the metadata snapshot.
    pub fn release_metadata_snap(&self) -> Result<()> {
        self.run_message("release_metadata_snap", |md| md.release_metadata_snap())
    }

    /// Publishes a device's snapshot time to the mapping cache's users.
    fn note_snap_time(&self, md: &PoolMetadata, id: DevId) {
        if let Ok(d) = md.device_details(id) {
            self.thin_shared(id)
                .snap_time
                .store(d.snapshotted_time, Ordering::Release);
        }
    }

    /// Refuses messages when the metadata cannot change.
    fn check_message(&self, what: &str) -> Result<()> {
        self.check_io()?;
        let mode = self.mode();
        if !mode.metadata_writable() {
            return Err(Error::Refused {
                what: what.to_string(),
                mode,
            });
        }
        Ok(())
    }

    /// Runs a message's change and commits.
    fn run_message(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut PoolMetadata) -> uthin_thin::Result<()>,
    ) -> Result<()> {
        self.check_message(op)?;
        let r = self
            .change(op, f)
            .and_then(|()| self.commit_inner().map(|_| ()));
        self.events.deliver();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::Message;
    use crate::{ErrorKind, Pool, PoolConfig};
    use std::sync::Arc;
    use uthin_block_io::testing::MemDevice;
    use uthin_block_io::SharedDevice;
    use uthin_thin::DevId;

    fn pool() -> Arc<Pool> {
        let meta: SharedDevice = Arc::new(MemDevice::new(4 << 20));
        let data: SharedDevice = Arc::new(MemDevice::new(16 << 20));
        Pool::open(meta, data, PoolConfig::default()).unwrap()
    }

    fn txid(p: &Pool) -> u64 {
        p.inspect_metadata(|md| md.committed_superblock().unwrap().trans_id)
    }

    #[test]
    fn messages_parse_and_print() {
        for m in [
            "create_thin 5",
            "create_snap 6 5",
            "delete 5",
            "set_transaction_id 0 1",
            "reserve_metadata_snap",
            "release_metadata_snap",
        ] {
            assert_eq!(m.parse::<Message>().unwrap().to_string(), m);
        }
        for bad in ["", "create_thin", "create_thin x", "frob 1", "delete 1 2"] {
            let e = bad.parse::<Message>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Invalid, "{bad}: {e}");
        }
    }

    #[test]
    fn device_message_and_transaction_id_commit_together() {
        let p = pool();
        p.send_with_transaction_id(Message::CreateThin(DevId(1)), 0, 1)
            .unwrap();
        assert_eq!(txid(&p), 1);
        p.send_with_transaction_id(
            Message::CreateSnap {
                id: DevId(2),
                origin: DevId(1),
            },
            1,
            2,
        )
        .unwrap();
        assert_eq!(txid(&p), 2);
        // A wrong current id changes nothing.
        let e = p
            .send_with_transaction_id(Message::CreateThin(DevId(3)), 1, 2)
            .unwrap_err();
        assert!(e.to_string().contains("transaction id is 2"), "{e}");
        // A refused message leaves the id alone.
        assert!(p
            .send_with_transaction_id(Message::CreateThin(DevId(1)), 2, 3)
            .is_err());
        assert!(p
            .send_with_transaction_id(Message::ReserveMetadataSnap, 2, 3)
            .is_err());
        p.send_with_transaction_id(Message::Delete(DevId(2)), 2, 3)
            .unwrap();
        p.inspect_metadata(|md| {
            assert_eq!(md.transaction_id().unwrap(), 3);
            assert!(!md.device_exists(DevId(3)).unwrap());
            assert!(!md.device_exists(DevId(2)).unwrap());
            assert!(md.device_exists(DevId(1)).unwrap());
            assert!(!md.is_dirty());
        });
        // The pool stays writable after the refusals.
        assert!(p.mode().metadata_writable());
    }
}
