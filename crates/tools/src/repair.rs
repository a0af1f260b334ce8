//! thin_repair: rebuild pool metadata from a damaged source.
//!
//! Nothing on the source is trusted except whole B-tree nodes.  The
//! algorithm:
//!
//! 1. [`scan`]: read every block; keep the nodes whose checksum matches the
//!    node salt and whose header and keys the format allows.
//! 2. [`graph`]: summarise the tree each node heads (kind, completeness,
//!    mappings, newest time) and find the nodes nothing points to.
//! 3. [`roots`]: take the superblock's roots when it is valid and they are
//!    whole nodes; otherwise pick among unreferenced top-level and details
//!    trees the pair that agrees best (1.x's rules, see there).
//! 4. [`devices`]: the devices of both trees; a device missing from the
//!    top-level tree gets an unreferenced mapping tree holding exactly its
//!    `mapped_blocks` mappings; lost details are rebuilt.
//! 5. [`walk`]: walk each device's tree, keeping every whole leaf and
//!    recording the key ranges lost with damaged nodes.
//! 6. [`fill`]: give those ranges back the loose whole leaves that hung
//!    below the damaged nodes.
//! 7. [`assemble`]: recount `mapped_blocks`, pick time, transaction id and
//!    data device size (superblock values and overrides, as 1.x does).
//! 8. [`output`]: write fresh metadata, space maps recomputed.
//!
//! The space maps of a valid superblock are never copied; when they can be
//! read they serve as witnesses ([`oracle`]) of which loose nodes were live.

mod assemble;
mod devices;
mod fill;
mod graph;
mod oracle;
pub mod output;
mod relate;
mod roots;
mod scan;
mod walk;

pub use assemble::{Recovered, RecoveredDevice};
pub use walk::LeafRef;

use crate::error::{Error, Result};
use crate::report::Report;
use std::path::Path;
use std::sync::Arc;
use uthin_block_io::BlockDevice;

/// Values given on the command line for what a damaged superblock lost
/// (`--transaction-id`, `--data-block-size`, `--nr-data-blocks`).
pub use crate::ir::SuperblockOverrides as Overrides;

/// Options of a repair.
#[derive(Clone, Debug, Default)]
pub struct RepairOptions {
    pub overrides: Overrides,
    /// Also describe the candidate roots in [`Recovered::notes`].
    pub verbose: bool,
}

/// Recovers what can be recovered from the metadata on `dev`.
pub fn recover(
    dev: Arc<dyn BlockDevice>,
    opts: &RepairOptions,
    report: &Report,
) -> Result<Recovered> {
    let scan = scan::scan(dev, report)?;
    if let scan::SbState::Invalid(why) = &scan.sb {
        log::info!("superblock unusable: {why}");
    }
    let g = graph::Graph::build(&scan);
    let o = oracle::Oracle::load(&scan);
    let mut log = Vec::new();
    let roots = roots::choose(&scan, &g, &o, &mut log);
    if opts.verbose {
        log.push(format!("chosen roots: {roots:?}"));
    } else {
        log.clear();
    }
    let plan = devices::plan(&scan, &g, &o, &roots);
    if devices::nothing_found(&roots, &plan) {
        return Err(Error::msg("no compatible roots found"));
    }
    let mut walked: Vec<walk::Walked> = plan
        .devices
        .iter()
        .map(|d| {
            let mut w = walk::Walked::default();
            match d.root {
                Some(r) => walk::walk(&scan, r, d.small(), &mut w),
                None if d.expects_mappings() => w.gaps.push(walk::Gap {
                    lo: 0,
                    hi: u64::MAX,
                    cause: u64::MAX - d.id,
                    leaf: d.small(),
                }),
                None => {}
            }
            w
        })
        .collect();
    let filled = fill::fill(&scan, &g, &o, &mut walked)?;
    let mut notes = log;
    notes.extend(plan.notes.iter().cloned());
    let lost: usize = walked.iter().map(|w| w.gaps.len()).sum();
    if lost > 0 {
        notes.push(format!(
            "{lost} damaged node(s) cut mappings off; {} loose leaves put back",
            filled.attached
        ));
    }
    if filled.unattributed > 0 {
        notes.push(format!(
            "{} loose leaves could not be attributed to a device",
            filled.unattributed
        ));
    }
    assemble::assemble(scan, &opts.overrides, &plan, walked, notes)
}

/// Repairs the metadata at `input` into `output` (an existing file or device,
/// whose contents are replaced).
pub fn repair(input: &Path, output: &Path, opts: &RepairOptions, report: &Report) -> Result<()> {
    let dev = crate::reader::open_device(input, false)?;
    let rec = recover(dev, opts, report)?;
    for n in &rec.notes {
        report.info(n);
    }
    output::write(&rec, output, report)
}
