//! Writing the recovered pool: as a stream of IR events ([`emit`]) fed to
//! the restore writer ([`crate::restore::Restorer`]), which builds fresh
//! trees with full leaves and recomputes both space maps.
//!
//! A leaf the recovered trees share between devices (a snapshot's) becomes
//! a def named after its source block, referred to by each device, so the
//! output shares it again and data blocks keep the counts dm-thin expects.

use super::assemble::Recovered;
use super::walk::LeafRef;
use crate::error::{Error, Result};
use crate::ir::{self, MetadataVisitor, RunBuilder, SuperblockOverrides, Visit};
use crate::report::Report;
use crate::restore::Restorer;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use uthin_block_io::FileDevice;

/// Writes `rec` to the existing file or device at `path`.
pub fn write(rec: &Recovered, path: &Path, report: &Report) -> Result<()> {
    let dev = FileDevice::open(path, true).map_err(|e| Error::File {
        path: path.display().to_string(),
        source: e,
    })?;
    let mut r = Restorer::new(Arc::new(dev), SuperblockOverrides::default())?;
    emit(rec, &mut r, report)?;
    if !r.is_finished() {
        return Err(Error::msg("the restore writer stopped early"));
    }
    Ok(())
}

/// Sends the recovered pool to `v` as IR events.
pub fn emit(rec: &Recovered, v: &mut dyn MetadataVisitor, report: &Report) -> Result<()> {
    emit_inner(rec, v, report).map(|_| ())
}

/// `?` on a visit that may ask to stop.
macro_rules! go {
    ($e:expr) => {
        if $e? == Visit::Stop {
            return Ok(Visit::Stop);
        }
    };
}

/// Sends one leaf's mappings as runs.
fn leaf_runs(
    rec: &Recovered,
    l: &LeafRef,
    runs: &mut RunBuilder,
    v: &mut dyn MetadataVisitor,
) -> Result<Visit> {
    let mut stop = false;
    rec.for_each_in_leaf(l, &mut |k, b, t| {
        if let Some(m) = runs.next(k, b, t) {
            stop |= !stop && v.map(&m)? == Visit::Stop;
        }
        Ok(())
    })?;
    Ok(if stop { Visit::Stop } else { Visit::Continue })
}

fn emit_inner(rec: &Recovered, v: &mut dyn MetadataVisitor, report: &Report) -> Result<Visit> {
    let mut uses: HashMap<LeafRef, u32> = HashMap::new();
    for d in &rec.devices {
        for l in &d.leaves {
            *uses.entry(*l).or_default() += 1;
        }
    }
    let mut shared: BTreeMap<LeafRef, String> = BTreeMap::new();
    let mut names: HashMap<u64, u32> = HashMap::new();
    for (l, _) in uses.iter().filter(|(_, &n)| n > 1) {
        shared.insert(*l, String::new());
    }
    for (l, name) in shared.iter_mut() {
        let k = names.entry(l.blk).or_default();
        *name = match *k {
            0 => l.blk.to_string(),
            n => format!("{}.{n}", l.blk),
        };
        *k += 1;
    }
    go!(v.superblock_begin(&ir::Superblock {
        uuid: String::new(),
        time: rec.time,
        transaction: rec.transaction_id,
        flags: None,
        version: Some(2),
        data_block_size: rec.data_block_size,
        nr_data_blocks: rec.nr_data_blocks,
        metadata_snap: None,
    }));
    let total: u64 = rec.devices.iter().map(|d| d.leaves.len() as u64).sum();
    report.start("writing metadata", total);
    // Shared leaves first, as defs; an empty one is dropped.
    let mut empty = Vec::new();
    for (l, name) in &shared {
        let mut maps = Vec::new();
        let mut runs = RunBuilder::new();
        rec.for_each_in_leaf(l, &mut |k, b, t| {
            maps.extend(runs.next(k, b, t));
            Ok(())
        })?;
        maps.extend(runs.complete());
        if maps.is_empty() {
            empty.push(*l);
            continue;
        }
        go!(v.def_begin(name));
        for m in &maps {
            go!(v.map(m));
        }
        go!(v.def_end());
    }
    for d in &rec.devices {
        go!(v.device_begin(&ir::Device {
            dev_id: d.id,
            mapped_blocks: d.details.mapped_blocks,
            transaction: d.details.transaction_id,
            creation_time: d.details.creation_time,
            snap_time: d.details.snapshotted_time,
        }));
        let mut runs = RunBuilder::new();
        for l in &d.leaves {
            match shared.get(l) {
                Some(name) => {
                    if let Some(m) = runs.complete() {
                        go!(v.map(&m));
                    }
                    if !empty.contains(l) {
                        go!(v.ref_shared(name));
                    }
                }
                None => go!(leaf_runs(rec, l, &mut runs, v)),
            }
            report.inc(1);
        }
        if let Some(m) = runs.complete() {
            go!(v.map(&m));
        }
        go!(v.device_end());
    }
    go!(v.superblock_end());
    report.finish();
    v.eof()
}
