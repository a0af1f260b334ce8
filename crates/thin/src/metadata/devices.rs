//! Thin devices: create, snapshot, delete, open/close, details, and the
//! transaction id (FORMAT.md §5.2, §5.4).

use super::{DevState, PoolMetadata};
use crate::details::DeviceDetails;
use crate::error::{Error, Result};
use crate::mapping::SubtreeRefs;
use crate::types::{DevId, Time};
use std::ops::ControlFlow;
use uthin_pdata::btree::{self, MetaBlockRefs, NoRefs};
use uthin_pdata::MetaBlock;

impl PoolMetadata {
    /// Details of `id` from the device table or the details tree.
    pub(super) fn read_details(&self, id: DevId) -> Result<Option<DeviceDetails>> {
        // In fail mode the table must not answer either.
        let inner = self.inner()?;
        if let Some(d) = self.devices.get(&id) {
            return Ok(d.exists.then_some(d.details));
        }
        Ok(btree::lookup::<DeviceDetails>(
            &inner.tm,
            inner.details_root,
            id.0,
        )?)
    }

    /// The details of a device, as of now (uncommitted changes included).
    pub fn device_details(&self, id: DevId) -> Result<DeviceDetails> {
        self.read_details(id)?.ok_or(Error::NoSuchDevice(id))
    }

    /// Whether the device exists.
    pub fn device_exists(&self, id: DevId) -> Result<bool> {
        Ok(self.read_details(id)?.is_some())
    }

    /// The root of a device's mapping sub-tree.
    pub(super) fn device_root(&self, id: DevId) -> Result<MetaBlock> {
        let inner = self.inner()?;
        btree::lookup::<u64>(&inner.tm, inner.mapping_root, id.0)?
            .map(MetaBlock)
            .ok_or(Error::NoSuchDevice(id))
    }

    /// Every device id, in order.
    pub fn device_ids(&self) -> Result<Vec<DevId>> {
        let inner = self.inner()?;
        let mut ids = Vec::new();
        btree::walk::<u64>(&inner.tm, inner.mapping_root, 0, u64::MAX, &mut |k, _| {
            ids.push(DevId(k));
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(ids)
    }

    fn state_mut(&mut self, id: DevId, details: DeviceDetails) -> &mut DevState {
        let st = self.devices.entry(id).or_default();
        st.details = details;
        st.exists = true;
        st
    }

    fn check_new_id(&self, id: DevId) -> Result<()> {
        if id > DevId::MAX {
            return Err(Error::BadDevId(id));
        }
        if self.device_exists(id)? {
            return Err(Error::DeviceExists(id));
        }
        Ok(())
    }

    /// Creates an empty thin device.
    pub fn create_thin(&mut self, id: DevId) -> Result<()> {
        self.begin()?;
        let r = self.check_new_id(id);
        self.checked(r)?;
        self.change(|md| {
            let inner = md.inner.as_mut().expect("begun");
            let root = btree::empty_tree::<u64>(&mut inner.tm)?;
            inner.mapping_root = btree::insert(
                &mut inner.tm,
                &mut MetaBlockRefs,
                inner.mapping_root,
                id.0,
                root.0,
            )?
            .0;
            let det = DeviceDetails {
                mapped_blocks: 0,
                transaction_id: inner.trans_id,
                creation_time: inner.time,
                snapshotted_time: inner.time,
            };
            md.state_mut(id, det).changed = true;
            Ok(())
        })
    }

    /// Creates `id` as a snapshot of `origin`: it shares the origin's whole
    /// mapping tree (one reference count), so the cost does not depend on the
    /// origin's size or on the snapshot depth.
    pub fn create_snap(&mut self, id: DevId, origin: DevId) -> Result<()> {
        self.begin()?;
        let r = self.check_new_id(id);
        self.checked(r)?;
        let r = self.device_details(origin);
        let odet = self.checked(r)?;
        let r = self.device_root(origin);
        let oroot = self.checked(r)?;
        if self.inner()?.time >= Time::MAX.0 {
            return Err(Error::TimeOverflow);
        }
        self.change(|md| {
            let inner = md.inner.as_mut().expect("begun");
            inner.tm.inc(oroot)?;
            inner.mapping_root = btree::insert(
                &mut inner.tm,
                &mut MetaBlockRefs,
                inner.mapping_root,
                id.0,
                oroot.0,
            )?
            .0;
            inner.time += 1;
            let time = inner.time;
            let det = DeviceDetails {
                mapped_blocks: odet.mapped_blocks,
                transaction_id: inner.trans_id,
                creation_time: time,
                snapshotted_time: time,
            };
            md.state_mut(id, det).changed = true;
            let o = md.state_mut(
                origin,
                DeviceDetails {
                    snapshotted_time: time,
                    ..odet
                },
            );
            o.changed = true;
            Ok(())
        })
    }

    /// Deletes a device: its mappings go, shared parts just lose a reference.
    pub fn delete_thin(&mut self, id: DevId) -> Result<()> {
        self.begin()?;
        let r = self.device_details(id);
        self.checked(r)?;
        if self.devices.get(&id).is_some_and(|d| d.open_count > 0) {
            return Err(Error::DeviceBusy(id));
        }
        self.change(|md| {
            let inner = md.inner.as_mut().expect("begun");
            let (dr, _) = btree::remove::<crate::details::DeviceDetails, _>(
                &mut inner.tm,
                &mut NoRefs,
                inner.details_root,
                id.0,
            )?;
            inner.details_root = dr;
            let (mr, _) = btree::remove::<u64, _>(
                &mut inner.tm,
                &mut SubtreeRefs(&mut inner.data_sm),
                inner.mapping_root,
                id.0,
            )?;
            inner.mapping_root = mr;
            md.devices.remove(&id);
            Ok(())
        })
    }

    /// Opens a device (reference counted); a missing device is an error.
    pub fn open_device(&mut self, id: DevId) -> Result<()> {
        let det = self.device_details(id)?;
        let st = self.devices.entry(id).or_insert_with(|| DevState {
            details: det,
            exists: true,
            ..Default::default()
        });
        st.open_count += 1;
        Ok(())
    }

    /// Closes a device opened with [`PoolMetadata::open_device`].
    pub fn close_device(&mut self, id: DevId) {
        if let Some(st) = self.devices.get_mut(&id) {
            st.open_count = st.open_count.saturating_sub(1);
        }
    }

    /// Whether the device changed in this transaction.
    pub fn changed_this_transaction(&self, id: DevId) -> bool {
        self.devices.get(&id).is_some_and(|d| d.changed)
    }

    /// Whether any device changed in this transaction.
    pub fn any_changed_this_transaction(&self) -> bool {
        self.devices.values().any(|d| d.changed)
    }

    /// Whether the device had changes that an abort threw away.
    pub fn aborted_with_changes(&self, id: DevId) -> bool {
        self.devices
            .get(&id)
            .is_some_and(|d| d.aborted_with_changes)
    }

    /// Sets the transaction id if it currently equals `current`.
    pub fn set_transaction_id(&mut self, current: u64, new: u64) -> Result<()> {
        let inner = self.begin()?;
        if inner.trans_id != current {
            return Err(Error::TransactionIdMismatch {
                expected: current,
                actual: inner.trans_id,
            });
        }
        inner.trans_id = new;
        inner.dirty = true;
        Ok(())
    }

    /// The transaction id (uncommitted value included).
    pub fn transaction_id(&self) -> Result<u64> {
        Ok(self.inner()?.trans_id)
    }

    /// The pool time counter.
    pub fn time(&self) -> Result<u32> {
        Ok(self.inner()?.time)
    }

    /// Updates a device's details in the table (marks it changed).
    pub(super) fn update_details(
        &mut self,
        id: DevId,
        f: impl FnOnce(&mut DeviceDetails),
    ) -> Result<()> {
        let det = self.device_details(id)?;
        let st = self.state_mut(id, det);
        f(&mut st.details);
        st.changed = true;
        Ok(())
    }
}
