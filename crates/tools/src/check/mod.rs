//! thin_check: validates pool metadata as thin-provisioning-tools 1.x does
//! (FORMAT.md §9 gives the reference-count model), faster.
//!
//! Order of work, as in 1.x: the superblock (and a held metadata snapshot's
//! copy); the device details tree and the top level of the mapping tree;
//! the bottom level of the mapping tree (in parallel, [`mapping`] then
//! [`summary`]) with each device's `mapped_blocks`; then the data and the
//! metadata space maps against the counts the walks produced.  Leaks are
//! non-fatal and `--auto-repair` fixes them ([`repair`]).
//!
//! Modules: [`io`] block reads, [`node`] node validation, [`counts`]
//! expected counts, [`trees`] the small trees, [`devices`], [`mapping`],
//! [`summary`], [`space_maps`], [`superblock`], [`repair`], [`problems`];
//! [`phases`] runs the mapping and space-map phases.

mod counts;
mod devices;
mod io;
mod mapping;
mod node;
mod phases;
mod problems;
mod repair;
mod space_maps;
mod summary;
mod superblock;
mod trees;

pub use problems::{Problem, Severity};

use crate::error::{Error, Result};
use crate::report::Report;
use counts::{tag, DataCounts, MetaCounts, Visit};
use devices::{Ctx, Roots};
use io::Disk;
use problems::Problems;
use repair::SbUpdate;
use std::path::Path;
use uthin_block_io::SharedDevice;
use uthin_pdata::sm::counts::ENTRIES_PER_BITMAP;
use uthin_pdata::sm::metadata::MAX_METADATA_BLOCKS;
use uthin_thin::superblock::Superblock;

/// What to check and what may be written (thin_check 1.x's options).
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// `--super-block-only`.
    pub sb_only: bool,
    /// `--skip-mappings`: stop after the device trees.
    pub skip_mappings: bool,
    /// `--ignore-non-fatal-errors`.
    pub ignore_non_fatal: bool,
    /// `--auto-repair`: repair leaks, clear NEEDS_CHECK.
    pub auto_repair: bool,
    /// `--clear-needs-check-flag`: clear NEEDS_CHECK if the check passes.
    pub clear_needs_check: bool,
    /// `-m`: check the held metadata snapshot instead of the live metadata.
    pub metadata_snap: bool,
    pub override_mapping_root: Option<u64>,
    pub override_details_root: Option<u64>,
}

impl CheckOptions {
    /// Whether the check may write.
    pub fn writes(&self) -> bool {
        self.auto_repair || self.clear_needs_check
    }
}

/// The result of a check.
#[derive(Debug)]
pub struct CheckOutcome {
    /// Every problem found (also printed through the report).
    pub problems: Vec<Problem>,
    /// Why the check failed (None: it passed).
    pub error: Option<Error>,
    /// Leaked entries zeroed by `--auto-repair`.
    pub leaks_repaired: u64,
    /// Whether NEEDS_CHECK was cleared.
    pub needs_check_cleared: bool,
}

impl CheckOutcome {
    /// Whether the check passed.
    pub fn passed(&self) -> bool {
        self.error.is_none()
    }
}

/// A check of one metadata device.
pub struct Checker {
    disk: Disk,
    opts: CheckOptions,
    sb: Superblock,
}

impl Checker {
    /// Opens `path` (writable if the options may write) and reads the superblock.
    pub fn open_path(path: &Path, opts: CheckOptions) -> Result<Self> {
        let dev = crate::reader::open_device(path, opts.writes())?;
        Self::open(dev, opts)
    }

    /// Reads the superblock of `dev`; fails if its checksum is bad.
    pub fn open(dev: SharedDevice, opts: CheckOptions) -> Result<Self> {
        let overrides =
            opts.override_mapping_root.is_some() || opts.override_details_root.is_some();
        if opts.writes() && (opts.metadata_snap || overrides) {
            return Err(Error::msg(
                "cannot perform repair outside the actual metadata",
            ));
        }
        let disk = Disk::new(dev)?;
        if disk.nr_blocks() == 0 {
            return Err(Error::msg(
                "Metadata device/file too small.  Is this binary metadata?",
            ));
        }
        let sb = superblock::read(&disk, 0).map_err(Error::msg)?;
        // As 1.x: with -m, a missing or unreadable snapshot fails before
        // anything (TRANSACTION_ID included) is printed.
        if opts.metadata_snap {
            if sb.held_root == 0 {
                return Err(Error::msg("no current metadata snap"));
            }
            superblock::read(&disk, sb.held_root)
                .map_err(|e| Error::msg(format!("metadata snap: {e}")))?;
        }
        Ok(Checker { disk, opts, sb })
    }

    /// The live superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// `TRANSACTION_ID` as 1.x prints it.
    pub fn transaction_id(&self) -> u64 {
        self.sb.trans_id
    }

    /// `METADATA_FREE_BLOCKS` as 1.x prints it.
    pub fn metadata_free_blocks(&self) -> u64 {
        let r = &self.sb.metadata_sm_root;
        r.nr_blocks.saturating_sub(r.nr_allocated)
    }

    /// Runs the check; problems are printed through `report` as found.
    pub fn run(self, report: &Report) -> CheckOutcome {
        let problems = Problems::default();
        let mut done = Done::default();
        let r = self.run_inner(report, &problems, &mut done);
        problems.flush(report);
        report.finish();
        CheckOutcome {
            problems: problems.into_list(),
            error: r.err(),
            leaks_repaired: done.leaks_repaired,
            needs_check_cleared: done.needs_check_cleared,
        }
    }
}

#[derive(Default)]
struct Done {
    leaks_repaired: u64,
    needs_check_cleared: bool,
}

/// Checks the metadata at `path` (convenience for tests and callers that do
/// not print the superblock information).
pub fn check_path(path: &Path, opts: CheckOptions, report: &Report) -> Result<CheckOutcome> {
    Ok(Checker::open_path(path, opts)?.run(report))
}

impl Checker {
    fn clear_flag(&self, report: &Report, done: &mut Done, u: SbUpdate) -> Result<()> {
        if repair::update_superblock(&self.disk, &u)? {
            report.info("Cleared needs_check flag");
            done.needs_check_cleared = true;
        }
        Ok(())
    }

    fn run_inner(&self, report: &Report, problems: &Problems, done: &mut Done) -> Result<()> {
        let o = &self.opts;
        let disk = &self.disk;
        superblock::check_fields(&self.sb, 0, problems);
        problems.flush(report);
        if problems.nr_fatal() > 0 {
            return Err(Error::msg("the superblock is damaged"));
        }
        let held = self.sb.held_root;
        let snap = (held != 0).then(|| {
            superblock::read(disk, held).and_then(|s| {
                let p = Problems::default();
                superblock::check_fields(&s, held, &p);
                let first = p.into_list().into_iter().next();
                first.map_or(Ok(s), |pr| Err(pr.msg))
            })
        });
        if o.metadata_snap {
            match &snap {
                None => return Err(Error::msg("no current metadata snap")),
                Some(Err(e)) => return Err(Error::msg(format!("metadata snap: {e}"))),
                Some(Ok(_)) => {}
            }
        }
        if o.sb_only {
            if o.clear_needs_check {
                let u = SbUpdate {
                    clear_needs_check: true,
                    ..SbUpdate::default()
                };
                self.clear_flag(report, done, u)?;
            }
            return Ok(());
        }

        report.info("Checking thin metadata");
        report.info("device details tree");
        // Blocks beyond what the format addresses are never allocated.
        let meta = MetaCounts::new(disk.nr_blocks().min(MAX_METADATA_BLOCKS));
        meta.reference(0, tag::SUPERBLOCK);
        match (held != 0).then(|| meta.reference(held, tag::SUPERBLOCK)) {
            // Out of range: reading the copy failed, reported below.
            None | Some(Visit::First) | Some(Visit::OutOfRange) => {}
            Some(_) => problems.fatal(
                Some(held),
                format!(
                    "the metadata snapshot's block {held} is also used as {}",
                    tag::name(meta.tag(held))
                ),
            ),
        }
        let ctx = Ctx {
            disk,
            meta: &meta,
            problems,
            ignore_non_fatal: o.ignore_non_fatal,
        };
        let mut roots = Vec::new();
        let live_roots = Roots {
            details: o
                .override_details_root
                .unwrap_or(self.sb.device_details_root.0),
            mapping: o
                .override_mapping_root
                .unwrap_or(self.sb.data_mapping_root.0),
        };
        let thins = if o.metadata_snap {
            None
        } else {
            let t = ctx.live(live_roots, &mut roots);
            problems.flush(report);
            Some(t.map_err(Error::Msg)?)
        };
        let thins_snap = snap.map(|s| {
            let s = s?;
            let r = Roots {
                details: s.device_details_root.0,
                mapping: s.data_mapping_root.0,
            };
            ctx.snapshot(r, thins.as_ref(), &mut roots)
        });
        problems.flush(report);
        if o.skip_mappings {
            if o.clear_needs_check && problems.nr_fatal() == 0 {
                let u = SbUpdate {
                    clear_needs_check: true,
                    ..SbUpdate::default()
                };
                self.clear_flag(report, done, u)?;
            }
            return Ok(());
        }

        report.info("mapping tree");
        let nr_data = self.sb.data_sm_root.nr_blocks;
        if nr_data.div_ceil(ENTRIES_PER_BITMAP) > disk.nr_blocks() {
            return Err(Error::msg(format!(
                "data space map: {nr_data} data blocks need more bitmaps than the metadata device has blocks"
            )));
        }
        let data = DataCounts::new(nr_data);
        self.check_mappings(
            report,
            problems,
            &meta,
            &data,
            &roots,
            thins.as_ref(),
            thins_snap,
        )?;
        if o.metadata_snap {
            return Ok(());
        }
        self.check_space_maps(report, problems, &meta, &data, done)
    }
}
