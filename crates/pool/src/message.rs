//! The kernel's pool messages (FORMAT.md §6.1): `create_thin <id>`,
//! `create_snap <id> <origin>`, `delete <id>`, `set_transaction_id <cur>
//! <new>`, `reserve_metadata_snap`, `release_metadata_snap`.  Each is
//! refused (EOPNOTSUPP) when the metadata cannot change, and committed on
//! success.

use crate::error::{Error, Result};
use crate::pool::Pool;
use std::sync::atomic::Ordering;
use uthin_thin::{DevId, PoolMetadata};

impl Pool {
    /// Runs a pool message, as `dmsetup message <pool> 0 "<msg>"`.
    pub fn message(&self, msg: &str) -> Result<()> {
        let w: Vec<&str> = msg.split_whitespace().collect();
        let bad = |why: &str| Error::BadMessage {
            msg: msg.to_string(),
            why: why.to_string(),
        };
        let num = |s: &str| -> Result<u64> {
            s.parse()
                .map_err(|_| bad(&format!("{s:?} is not a number")))
        };
        match w.as_slice() {
            ["create_thin", id] => self.create_thin(DevId(num(id)?)),
            ["create_snap", id, origin] => self.create_snap(DevId(num(id)?), DevId(num(origin)?)),
            ["delete", id] => self.delete_thin(DevId(num(id)?)),
            ["set_transaction_id", cur, new] => self.set_transaction_id(num(cur)?, num(new)?),
            ["reserve_metadata_snap"] => self.reserve_metadata_snap(),
            ["release_metadata_snap"] => self.release_metadata_snap(),
            [cmd, ..] => Err(bad(&format!(
                "unknown message or wrong arguments for {cmd:?}"
            ))),
            [] => Err(bad("empty message")),
        }
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
            self.cache.remove_dev(id);
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
