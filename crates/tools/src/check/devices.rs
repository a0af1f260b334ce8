//! The device details tree and the top level of the mapping tree, of the
//! live superblock and of a held metadata snapshot: they must name the same
//! devices; the top level gives the roots of the devices' mapping trees.

use super::counts::{tag, MetaCounts};
use super::io::Disk;
use super::node::le64;
use super::problems::Problems;
use super::trees::{self, TreeWalk};
use std::collections::BTreeMap;
use uthin_pdata::btree::Value;
use uthin_thin::details::DeviceDetails;

/// Devices: id -> (mapping tree root, details).
pub type Thins = BTreeMap<u64, (u64, DeviceDetails)>;

/// The roots a superblock names.
#[derive(Clone, Copy)]
pub struct Roots {
    pub details: u64,
    pub mapping: u64,
}

/// What the walks need.
pub struct Ctx<'a> {
    pub disk: &'a Disk,
    pub meta: &'a MetaCounts,
    pub problems: &'a Problems,
    pub ignore_non_fatal: bool,
}

impl Ctx<'_> {
    fn walk(&self, what: &'static str, t: u8, vs: usize) -> TreeWalk<'_> {
        TreeWalk {
            disk: self.disk,
            meta: self.meta,
            problems: self.problems,
            ignore_non_fatal: self.ignore_non_fatal,
            what,
            tag: t,
            leaf_vs: vs,
        }
    }

    /// Walks (and counts) both trees; returns the details and top-level
    /// entries found in nodes not reached before, and the number of errors.
    fn count(
        &self,
        r: Roots,
        prefix: &'static str,
    ) -> (BTreeMap<u64, DeviceDetails>, BTreeMap<u64, u64>, usize) {
        let (dw, tw) = match prefix {
            "" => ("device details tree", "mapping tree top level"),
            _ => (
                "metadata snapshot: device details tree",
                "metadata snapshot: mapping tree top level",
            ),
        };
        let mut details = BTreeMap::new();
        let mut tops = BTreeMap::new();
        let e1 = self
            .walk(dw, tag::DETAILS, 24)
            .walk(r.details, &mut |k, v, _, _| {
                details.insert(k, DeviceDetails::unpack(v));
            });
        let e2 = self
            .walk(tw, tag::TOP, 8)
            .walk(r.mapping, &mut |k, v, _, _| {
                tops.insert(k, le64(v, 0));
            });
        (details, tops, e1 + e2)
    }

    /// The live devices; their roots are appended to `roots`.
    pub fn live(&self, r: Roots, roots: &mut Vec<u64>) -> Result<Thins, String> {
        let before = (self.problems.nr_fatal(), self.problems.nr_non_fatal());
        let (details, tops, _) = self.count(r, "");
        let after = (self.problems.nr_fatal(), self.problems.nr_non_fatal());
        if after.0 > before.0 || (!self.ignore_non_fatal && after.1 > before.1) {
            return Err(
                "Check of the device details tree and the top level of the mapping tree failed"
                    .into(),
            );
        }
        if !self.consistent(&details, &tops, "") {
            return Err("Inconsistency between the details tree and the mapping tree".into());
        }
        roots.extend(tops.values());
        Ok(tops
            .into_iter()
            .zip(details.into_values())
            .map(|((id, root), d)| (id, (root, d)))
            .collect())
    }

    fn consistent(
        &self,
        details: &BTreeMap<u64, DeviceDetails>,
        tops: &BTreeMap<u64, u64>,
        prefix: &str,
    ) -> bool {
        let mut ok = true;
        for id in details.keys().filter(|k| !tops.contains_key(k)) {
            self.problems.fatal(
                None,
                format!("{prefix}device {id} is in the details tree but not in the mapping tree"),
            );
            ok = false;
        }
        for id in tops.keys().filter(|k| !details.contains_key(k)) {
            self.problems.fatal(
                None,
                format!("{prefix}device {id} is in the mapping tree but not in the details tree"),
            );
            ok = false;
        }
        ok
    }

    /// The devices of the metadata snapshot that the live trees do not have
    /// with the same root (all of them when `live` is None).  Every root of
    /// the snapshot's top level found in nodes not shared with the live
    /// tree is appended to `roots` (each is a reference).  Errors are
    /// deferred by the caller, as thin_check 1.x does.
    pub fn snapshot(
        &self,
        r: Roots,
        live: Option<&Thins>,
        roots: &mut Vec<u64>,
    ) -> Result<Thins, String> {
        let mut details = BTreeMap::new();
        let mut tops = BTreeMap::new();
        trees::list(self.disk, r.details, 24, &mut |k, v| {
            details.insert(k, DeviceDetails::unpack(v));
        })
        .map_err(|e| format!("device details tree: {e}"))?;
        trees::list(self.disk, r.mapping, 8, &mut |k, v| {
            tops.insert(k, le64(v, 0));
        })
        .map_err(|e| format!("mapping tree top level: {e}"))?;
        if !self.consistent(&details, &tops, "metadata snapshot: ") {
            return Err("Inconsistency between the details tree and the mapping tree".into());
        }
        let (_, counted, errors) = self.count(r, "snap");
        if errors > 0 {
            return Err("its device details tree or mapping tree top level is damaged".into());
        }
        roots.extend(counted.values());
        Ok(tops
            .into_iter()
            .zip(details.into_values())
            .filter(|((id, root), _)| live.is_none_or(|l| l.get(id).is_none_or(|(r, _)| r != root)))
            .map(|((id, root), d)| (id, (root, d)))
            .collect())
    }
}
