//! The two long phases of a check: the mapping tree (with every device's
//! `mapped_blocks`) and the space maps (with leak repair).

use super::counts::{DataCounts, MetaCounts};
use super::devices::Thins;
use super::mapping::{Reader, Store};
use super::problems::Problems;
use super::repair::{self, SbUpdate};
use super::space_maps::{self, Diff, SmOnDisk};
use super::summary::Summarizer;
use super::{Checker, Done};
use crate::error::{Error, Result};
use crate::report::Report;

impl Checker {
    /// Reads the bottom level of the mapping tree under `roots` and checks
    /// the devices of `thins` and of the metadata snapshot.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn check_mappings(
        &self,
        report: &Report,
        problems: &Problems,
        meta: &MetaCounts,
        data: &DataCounts,
        roots: &[u64],
        thins: Option<&Thins>,
        thins_snap: Option<std::result::Result<Thins, String>>,
    ) -> Result<()> {
        let ignore = self.opts.ignore_non_fatal;
        let before = (problems.nr_fatal(), problems.nr_non_fatal());
        let store = Store::default();
        report.start(
            "Checking thin metadata",
            self.sb.metadata_sm_root.nr_allocated.max(1),
        );
        Reader {
            disk: &self.disk,
            meta,
            data,
            store: &store,
            problems,
            report,
            ignore_non_fatal: ignore,
        }
        .read_all(roots);
        report.finish();
        let nodes = store.freeze();
        let (errs, io, csum) = nodes.error_stats();
        let mut sums = Summarizer::new(&nodes, problems, ignore);
        let check = |t: &Thins, sums: &mut Summarizer<'_>| {
            let mut failed = false;
            for (id, (root, details)) in t {
                let s = sums.device(*root);
                let expected = details.mapped_blocks;
                if s.errors > 0 {
                    let e = if s.errors == u32::MAX {
                        format!("{}+", s.errors)
                    } else {
                        s.errors.to_string()
                    };
                    problems.fatal(None, format!(
                        "Thin device {id} has {e} errors and is missing {} mappings, while expected {expected}",
                        expected.saturating_sub(s.nr)
                    ));
                    failed = true;
                } else if s.nr != expected {
                    problems.fatal(None, format!(
                        "Thin device {id} has unexpected number of mappings, expected {expected}, actual {}",
                        s.nr
                    ));
                    failed = true;
                }
            }
            failed
        };
        let failed = thins.is_some_and(|t| check(t, &mut sums));
        if errs > 0 {
            problems.fatal(
                None,
                format!("{errs} nodes in data mapping tree contain errors"),
            );
            problems.fatal(None, format!("{io} io errors, {csum} checksum errors"));
        }
        problems.flush(report);
        let bad = problems.nr_fatal() > before.0 || (!ignore && problems.nr_non_fatal() > before.1);
        if failed || bad {
            return Err(Error::msg("Check of mappings failed"));
        }
        let failed = match thins_snap {
            Some(Err(e)) => return Err(Error::msg(format!("metadata snap: {e}"))),
            Some(Ok(ts)) => check(&ts, &mut sums),
            None => false,
        };
        problems.flush(report);
        if failed {
            return Err(Error::msg("metadata snap: Check of mappings failed"));
        }
        Ok(())
    }

    /// Compares both space maps with the expected counts; repairs leaks
    /// with `--auto-repair`; clears NEEDS_CHECK if asked and all is well.
    pub(super) fn check_space_maps(
        &self,
        report: &Report,
        problems: &Problems,
        meta: &MetaCounts,
        data: &DataCounts,
        done: &mut Done,
    ) -> Result<()> {
        let o = &self.opts;
        let disk = &self.disk;
        let before = problems.nr_fatal();
        report.info("data space map");
        let data_sm = space_maps::read_data(
            disk,
            meta,
            problems,
            o.ignore_non_fatal,
            &self.sb.data_sm_root,
        );
        let data_diff = data_sm
            .as_ref()
            .map(|sm| space_maps::compare(disk, sm, data, problems));
        problems.flush(report);
        report.info("metadata space map");
        let meta_sm = space_maps::read_metadata(
            disk,
            meta,
            problems,
            o.ignore_non_fatal,
            &self.sb.metadata_sm_root,
        );
        // Every reference is counted now, the space maps' own blocks included.
        let meta_diff = meta_sm
            .as_ref()
            .map(|sm| space_maps::compare(disk, sm, meta, problems));
        if let Some(sm) = &meta_sm {
            beyond_the_space_map(sm.nr_blocks, meta, problems);
        }
        problems.flush(report);
        let (Some(data_sm), Some(data_diff)) = (data_sm, data_diff) else {
            return Err(Error::msg(
                "data space map: it cannot be checked (see above)",
            ));
        };
        let (Some(meta_sm), Some(meta_diff)) = (meta_sm, meta_diff) else {
            return Err(Error::msg(
                "metadata space map: it cannot be checked (see above)",
            ));
        };
        for (kind, d) in [("data", &data_diff), ("metadata", &meta_diff)] {
            if d.bad > 0 {
                return Err(Error::msg(format!(
                    "{kind} space map: {} {kind} blocks have bad reference counts",
                    d.bad
                )));
            }
        }
        if problems.nr_fatal() > before {
            return Err(Error::msg("Check of the space maps failed"));
        }
        let mut u = SbUpdate {
            clear_needs_check: o.writes(),
            ..SbUpdate::default()
        };
        let leaky: [(&SmOnDisk, &Diff, &dyn super::counts::Expected); 2] =
            [(&data_sm, &data_diff, data), (&meta_sm, &meta_diff, meta)];
        for (sm, diff, exp) in leaky {
            if diff.leaks == 0 {
                continue;
            }
            if o.auto_repair {
                report.info(&format!("Repairing {} leaks.", sm.kind));
                done.leaks_repaired += repair::repair_leaks(disk, sm, diff, exp)?;
                let n = Some(diff.expected_allocated);
                if sm.kind == "data" {
                    u.data_nr_allocated = n
                } else {
                    u.meta_nr_allocated = n
                }
            } else if !o.ignore_non_fatal {
                return Err(Error::msg(format!(
                    "{} space map contains leaks\nperhaps you wanted to run with --auto-repair",
                    sm.kind
                )));
            }
        }
        if o.writes() && repair::update_superblock(disk, &u)? {
            report.info("Cleared needs_check flag");
            done.needs_check_cleared = true;
        }
        Ok(())
    }
}

/// Reports metadata blocks in use beyond the metadata space map's end.
fn beyond_the_space_map(nr_blocks: u64, meta: &MetaCounts, problems: &Problems) {
    let beyond: Vec<u64> = (nr_blocks..meta.nr_blocks())
        .filter(|&b| meta.get(b) > 0)
        .collect();
    for &b in beyond.iter().take(20) {
        let msg = format!(
            "metadata block {b} is in use but beyond the metadata space map's {nr_blocks} blocks"
        );
        problems.fatal(Some(b), msg);
    }
    if beyond.len() > 20 {
        let msg = format!(
            "{} metadata blocks in use beyond the space map",
            beyond.len()
        );
        problems.fatal(None, msg);
    }
}
