//! `thin_dump`: metadata to the IR (and so to XML or 1.x's human-readable
//! text), as thin-provisioning-tools 1.3.3 writes it.
//!
//! Steps (as 1.x): read the superblock (live, or a metadata snapshot with
//! `-m`); read the details and top-level mapping trees; collect each
//! device's leaf blocks in key order; cut the leaf sequences into runs and
//! turn the runs that devices share into defs ([`runs`]); emit the defs, in
//! ascending order of their head block (their name), then the devices in id
//! order, mappings merged into runs.  Leaves are read once each, in output
//! order, by a prefetch thread (`emit`).
//!
//! Superblock fields as 1.x: `uuid=""`, `flags` only when NEEDS_CHECK is
//! set, `version` from the superblock, `nr_data_blocks` from the data
//! space map root (0 for a metadata snapshot, whose copy has none); the
//! overrides (`--transaction-id`, `--data-block-size`, `--nr-data-blocks`)
//! apply to the live superblock only; `--skip-mappings` lists every device
//! even with `--dev-id` (1.3.3 does).
//!
//! `--repair`: damaged nodes are reported and skipped with what is below
//! them; an unusable superblock is rebuilt from thin_repair's scan.

pub mod checks;
mod emit;
pub mod runs;
pub mod walk;

use crate::error::{Error, Result};
use crate::ir::{self, MetadataVisitor, SuperblockOverrides};
use crate::reader::{Reader, SbChoice};
use crate::report::Report;
use crate::xml::{HumanReadableWriter, XmlWriter};
use emit::Item;
use runs::{Def, Entry};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use uthin_pdata::MetaBlock;
use uthin_thin::details::DeviceDetails;
use walk::Tolerance;

/// Output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    #[default]
    Xml,
    HumanReadable,
}

/// What to dump and how.
#[derive(Clone, Debug, Default)]
pub struct DumpOptions {
    pub format: OutputFormat,
    /// Skip damaged subtrees instead of failing.
    pub repair: bool,
    /// Which superblock.
    pub sb: SbChoice,
    /// Only these devices (all when `None`; ignored with `skip_mappings`,
    /// as 1.3.3 does).
    pub dev_ids: Option<Vec<u64>>,
    /// Devices without their mappings.
    pub skip_mappings: bool,
    /// 1.x's superblock overrides (live superblock only).
    pub overrides: SuperblockOverrides,
    /// Use this top-level mapping tree root instead of the superblock's.
    pub mapping_root: Option<u64>,
    /// Use this details tree root instead of the superblock's.
    pub details_root: Option<u64>,
}

/// The metadata as a dump sees it: defs and devices, leaves not yet read.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    pub sb: ir::Superblock,
    pub defs: Vec<Def>,
    pub devices: Vec<(ir::Device, Vec<Entry>)>,
}

/// Opens metadata for a dump; a bad superblock says so in 1.x's words.
pub fn open(path: &Path, choice: SbChoice) -> Result<Reader> {
    Reader::open(path, choice, 1024).map_err(|e| superblock_error_at(path, e))
}

/// [`superblock_error`], saying also when block 0 of `path` is all zeroes
/// (not formatted metadata).
pub fn superblock_error_at(path: &Path, e: Error) -> Error {
    match &e {
        Error::Pdata(uthin_pdata::Error::Corrupt {
            what: "superblock",
            blk,
            ..
        }) if blk.0 == 0 && block0_is_zero(path) => Error::msg(
            "bad checksum in superblock (block 0 is all zeroes: not formatted metadata?)",
        ),
        _ => superblock_error(e),
    }
}

fn block0_is_zero(path: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let mut b = vec![0u8; uthin_block_io::BLOCK_SIZE];
    std::fs::File::open(path)
        .and_then(|f| f.read_exact_at(&mut b, 0))
        .is_ok_and(|_| b.iter().all(|&x| x == 0))
}

/// Rewords superblock failures as 1.x does ("bad checksum in superblock").
pub fn superblock_error(e: Error) -> Error {
    match &e {
        Error::Pdata(uthin_pdata::Error::Corrupt {
            what: "superblock",
            blk,
            why,
        }) if why.starts_with("bad checksum") => Error::msg(format!(
            "bad checksum in superblock (block {}, {})",
            blk.0,
            why.trim_start_matches("bad checksum ")
                .trim_start_matches('(')
                .trim_end_matches(')')
        )),
        Error::Pdata(uthin_pdata::Error::Corrupt {
            what: "superblock",
            blk,
            why,
        }) => Error::msg(format!("bad superblock at block {}: {why}", blk.0)),
        _ => e,
    }
}

fn to_ir(id: u64, d: &DeviceDetails) -> ir::Device {
    ir::Device {
        dev_id: id,
        mapped_blocks: d.mapped_blocks,
        transaction: d.transaction_id,
        creation_time: d.creation_time,
        snap_time: d.snapshotted_time,
    }
}

/// Reads the superblock fields, devices and leaf structure of `r`.
pub fn read_metadata(r: &Reader, opts: &DumpOptions, report: &Report) -> Result<Metadata> {
    let tol = Tolerance {
        repair: opts.repair,
        report,
    };
    let sb = &r.sb;
    let mut irsb = ir::Superblock {
        uuid: String::new(),
        time: sb.time,
        transaction: sb.trans_id,
        flags: sb.needs_check().then_some(1),
        version: Some(sb.version),
        data_block_size: sb.data_block_size,
        nr_data_blocks: sb.data_sm_root.nr_blocks,
        metadata_snap: None,
    };
    if opts.sb == SbChoice::Live {
        opts.overrides.apply(&mut irsb);
    }
    let details_root = MetaBlock(opts.details_root.unwrap_or(sb.device_details_root.0));
    let mapping_root = MetaBlock(opts.mapping_root.unwrap_or(sb.data_mapping_root.0));
    // As 1.3.3: --skip-mappings lists every device, --dev-id or not.
    let wanted =
        |id: u64| opts.skip_mappings || opts.dev_ids.as_ref().is_none_or(|ids| ids.contains(&id));
    let details: Vec<(u64, DeviceDetails)> =
        walk::read_tree::<DeviceDetails>(&r.tm, details_root, tol)?
            .into_iter()
            .filter(|(id, _)| wanted(*id))
            .collect();
    if opts.skip_mappings {
        return Ok(Metadata {
            sb: irsb,
            defs: Vec::new(),
            devices: details
                .iter()
                .map(|(id, d)| (to_ir(*id, d), Vec::new()))
                .collect(),
        });
    }
    let roots: BTreeMap<u64, u64> = walk::read_tree::<u64>(&r.tm, mapping_root, tol)?
        .into_iter()
        .filter(|(id, _)| wanted(*id))
        .collect();
    for id in roots.keys() {
        if !details.iter().any(|d| d.0 == *id) {
            tol.absorb(Error::msg(format!(
                "device {id} is in the mapping tree but not in the details tree"
            )))?;
        }
    }
    let mut devs = Vec::new();
    for (id, d) in &details {
        match roots.get(id) {
            Some(root) => devs.push((*id, d, *root)),
            None => tol.absorb(Error::msg(format!(
                "device {id} is in the details tree but not in the mapping tree"
            )))?,
        }
    }
    let mut leaves: HashMap<u64, Vec<u64>> = HashMap::new();
    for (_, _, root) in &devs {
        if !leaves.contains_key(root) {
            let l = walk::collect_leaves(&r.tm, MetaBlock(*root), tol)?;
            leaves.insert(*root, l);
        }
    }
    let seqs: Vec<&[u64]> = devs.iter().map(|d| &leaves[&d.2][..]).collect();
    let (defs, entries) = runs::optimise(&seqs);
    Ok(Metadata {
        sb: irsb,
        defs,
        devices: devs
            .iter()
            .zip(entries)
            .map(|((id, d, _), e)| (to_ir(*id, d), e))
            .collect(),
    })
}

/// Emits `md` to `out`, reading the leaves through `r`.
pub fn emit_metadata(
    r: &Reader,
    md: &Metadata,
    out: &mut dyn MetadataVisitor,
    repair: bool,
    report: &Report,
) -> Result<()> {
    let tol = Tolerance { repair, report };
    out.superblock_begin(&md.sb)?;
    let items: Vec<Item> = md
        .defs
        .iter()
        .map(|d| Item::Def(d.head, &d.leaves))
        .chain(md.devices.iter().map(|(d, e)| Item::Device(d, e)))
        .collect();
    emit::emit_items(r.tm.bm().device(), r.nr_blocks, &items, out, tol)?;
    out.superblock_end()?;
    out.eof()?;
    Ok(())
}

/// Dumps the metadata of an open reader into any visitor.
pub fn dump_reader(
    r: &Reader,
    opts: &DumpOptions,
    out: &mut dyn MetadataVisitor,
    report: &Report,
) -> Result<()> {
    let md = read_metadata(r, opts, report)?;
    emit_metadata(r, &md, out, opts.repair, report)
}

/// `thin_dump`: dumps the metadata at `input` to `output` (stdout when
/// `None`).  The output file is created only once the metadata was read.
/// With `repair`, damaged subtrees are skipped, and an unusable superblock
/// is rebuilt by thin_repair's scan ([`crate::repair::recover`]), whose
/// result is dumped (its defs are the leaves it found shared).
pub fn dump(
    input: &Path,
    output: Option<&Path>,
    opts: &DumpOptions,
    report: &Report,
) -> Result<()> {
    let r = match open(input, opts.sb) {
        Ok(r) => r,
        // As 1.x's --repair: an unusable superblock is rebuilt from a scan
        // (thin_repair's), and what the scan recovers is dumped.
        Err(e) if opts.repair && opts.sb == SbChoice::Live => {
            report.info(&format!("{e}; rebuilding it from a scan"));
            let dev = crate::reader::open_device(input, false)?;
            let ropts = crate::repair::RepairOptions {
                overrides: opts.overrides,
                verbose: false,
            };
            let rec = crate::repair::recover(dev, &ropts, report)?;
            let mut v = writer(output, opts.format)?;
            return crate::repair::output::emit(&rec, v.as_mut(), report);
        }
        Err(e) => return Err(e),
    };
    let md = read_metadata(&r, opts, report)?;
    let mut v = writer(output, opts.format)?;
    emit_metadata(&r, &md, v.as_mut(), opts.repair, report)
}

/// The output visitor: XML or human-readable text, on a file or stdout.
fn writer(output: Option<&Path>, format: OutputFormat) -> Result<Box<dyn MetadataVisitor>> {
    let w: Box<dyn Write> = match output {
        Some(p) => Box::new(std::fs::File::create(p).map_err(|e| Error::File {
            path: p.display().to_string(),
            source: e,
        })?),
        None => Box::new(std::io::stdout().lock()),
    };
    Ok(match format {
        OutputFormat::Xml => Box::new(XmlWriter::new(w)),
        OutputFormat::HumanReadable => Box::new(HumanReadableWriter::new(w)),
    })
}
