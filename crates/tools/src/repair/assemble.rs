//! The recovered pool: devices with their leaves and details, and the
//! superblock values, settled as thin-provisioning-tools 1.x settles them.
//!
//! * Data block size: `--data-block-size`, else the valid superblock's;
//!   with neither, repair stops ("data block size needs to be provided due
//!   to corruption in the superblock").
//! * Transaction id: the larger of `--transaction-id` and the valid
//!   superblock's; without a valid superblock, the larger of the option and
//!   one more than the highest device transaction id.
//! * Data blocks: the largest of `--nr-data-blocks`, the valid superblock's
//!   data space map size, and one more than the highest mapped data block.
//! * Time: the larger of the valid superblock's and the newest time in the
//!   recovered mappings and details.
//!
//! `mapped_blocks` is recounted.  A device whose details were lost gets
//! `snapshotted_time` above every time in its mappings, so each of its
//! mappings counts as possibly shared (a write copies the block rather than
//! overwriting data a snapshot might also map), and the transaction id and
//! creation time of an old details entry if one was found.

use super::devices::{DetailsFrom, Plan};
use super::scan::{SbState, Scan};
use super::walk::{LeafRef, Walked};
use super::Overrides;
use crate::error::{Error, Result};
use uthin_thin::details::DeviceDetails;

/// One recovered thin device.
#[derive(Clone, Debug)]
pub struct RecoveredDevice {
    pub id: u64,
    pub details: DeviceDetails,
    /// Its leaves in key order; each contributes its keys in `lo..=hi`.
    pub leaves: Vec<LeafRef>,
}

/// The recovered pool.  Mappings stay in the source's leaves and are read
/// by [`Recovered::for_each_mapping`].
pub struct Recovered {
    pub time: u32,
    pub transaction_id: u64,
    pub data_block_size: u32,
    pub nr_data_blocks: u64,
    pub devices: Vec<RecoveredDevice>,
    /// What repair had to make up or could not do, for the user.
    pub notes: Vec<String>,
    scan: Scan,
}

impl Recovered {
    /// Calls `f(virtual block, data block, time)` for every mapping of `dev`,
    /// in ascending virtual block order.
    pub fn for_each_mapping(
        &self,
        dev: &RecoveredDevice,
        f: &mut dyn FnMut(u64, u64, u32) -> Result<()>,
    ) -> Result<()> {
        for l in &dev.leaves {
            self.for_each_in_leaf(l, f)?;
        }
        Ok(())
    }

    /// Calls `f` for the mappings one leaf contributes.
    pub fn for_each_in_leaf(
        &self,
        l: &LeafRef,
        f: &mut dyn FnMut(u64, u64, u32) -> Result<()>,
    ) -> Result<()> {
        for (k, v) in self.scan.leaf8(l.blk)? {
            if (l.lo..=l.hi).contains(&k) {
                f(k, v >> 24, (v & 0xFF_FFFF) as u32)?;
            }
        }
        Ok(())
    }

    /// Number of blocks the source had.
    pub fn source_blocks(&self) -> u64 {
        self.scan.nr_blocks
    }
}

/// (mappings, newest time, highest data block) a leaf contributes.
fn leaf_stats(scan: &Scan, l: &LeafRef) -> Result<(u64, u32, u64)> {
    let n = scan.node(l.blk).expect("recovered leaves are whole");
    if l.lo <= n.key_lo && n.key_hi <= l.hi {
        return Ok((n.nr as u64, n.max_time, n.max_data));
    }
    let mut s = (0, 0, 0);
    for (k, v) in scan.leaf8(l.blk)? {
        if (l.lo..=l.hi).contains(&k) {
            s = (s.0 + 1, s.1.max((v & 0xFF_FFFF) as u32), s.2.max(v >> 24));
        }
    }
    Ok(s)
}

fn check_block_size(bs: u32) -> Result<u32> {
    if !(128..=2_097_152).contains(&bs) || !bs.is_multiple_of(128) {
        return Err(Error::msg("invalid data block size"));
    }
    Ok(bs)
}

/// Settles the recovered pool.
pub fn assemble(
    scan: Scan,
    ov: &Overrides,
    plan: &Plan,
    walked: Vec<Walked>,
    notes: Vec<String>,
) -> Result<Recovered> {
    let sb = match &scan.sb {
        SbState::Valid(sb) => Some(sb.clone()),
        SbState::Invalid(_) => None,
    };
    let data_block_size = ov
        .data_block_size
        .or(sb.as_ref().map(|s| s.data_block_size))
        .ok_or_else(|| {
            Error::msg("data block size needs to be provided due to corruption in the superblock")
        })
        .and_then(check_block_size)?;
    let mut age = sb.as_ref().map_or(0, |s| s.time);
    let mut highest: Option<u64> = None;
    let mut max_tid: Option<u64> = None;
    let mut devices = Vec::with_capacity(plan.devices.len());
    // Devices whose details are made up, with their newest mapping time.
    let mut rebuilt: Vec<(usize, u32)> = Vec::new();
    for (p, w) in plan.devices.iter().zip(walked) {
        let (mut mapped, mut newest) = (0u64, 0u32);
        for l in &w.leaves {
            let (n, t, d) = leaf_stats(&scan, l)?;
            if n > 0 {
                mapped += n;
                newest = newest.max(t);
                highest = Some(highest.map_or(d, |h| h.max(d)));
            }
        }
        age = age.max(newest);
        let details = match p.details {
            DetailsFrom::Tree(d) => {
                age = age.max(d.creation_time).max(d.snapshotted_time);
                max_tid = Some(max_tid.map_or(d.transaction_id, |m| m.max(d.transaction_id)));
                d
            }
            DetailsFrom::Stale(d) => {
                max_tid = Some(max_tid.map_or(d.transaction_id, |m| m.max(d.transaction_id)));
                rebuilt.push((devices.len(), newest));
                d
            }
            DetailsFrom::None => {
                rebuilt.push((devices.len(), newest));
                DeviceDetails::default()
            }
        };
        devices.push(RecoveredDevice {
            id: p.id,
            details: DeviceDetails {
                mapped_blocks: mapped,
                ..details
            },
            leaves: w.leaves,
        });
    }
    let transaction_id = match &sb {
        Some(s) => s.trans_id.max(ov.transaction_id.unwrap_or(0)),
        None => max_tid
            .map_or(0, |t| t.saturating_add(1))
            .max(ov.transaction_id.unwrap_or(0)),
    };
    let mut time = age;
    for &(i, newest) in &rebuilt {
        let d = &mut devices[i].details;
        let fresh = d.creation_time == 0 && d.snapshotted_time == 0 && d.transaction_id == 0;
        d.snapshotted_time = d
            .snapshotted_time
            .max(newest.saturating_add(1))
            .min(0xFF_FFFF);
        if fresh {
            d.creation_time = d.snapshotted_time;
            d.transaction_id = transaction_id.saturating_sub(1);
        }
        d.creation_time = d.creation_time.min(d.snapshotted_time);
        time = time.max(d.snapshotted_time);
    }
    let nr_data_blocks = highest
        .map_or(0, |h| h + 1)
        .max(ov.nr_data_blocks.unwrap_or(0))
        .max(sb.as_ref().map_or(0, |s| s.data_sm_root.nr_blocks));
    Ok(Recovered {
        time,
        transaction_id,
        data_block_size,
        nr_data_blocks,
        devices,
        notes,
        scan,
    })
}
