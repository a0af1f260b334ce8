//! Which devices the pool had, and where each one's mappings start.
//!
//! The devices are those of the trees a valid superblock names (both, when
//! it names both), else those of the details tree found by search, else
//! those of the top-level tree found by search.  A device's sub-tree root
//! comes from the top-level tree; when that tree lacks the device, or was
//! found by search and disagrees with the device's details, a whole mapping
//! tree that nothing points to, used by no other device, and holding exactly
//! `mapped_blocks` mappings is taken (the newest), else, when the old tree
//! is whole (so out of date rather than damaged), the loose tree sharing
//! most nodes with it (its copy-on-write successor), or for
//! a device the top-level tree lacks, the newest root an old top-level leaf
//! gives it, then the damaged multi-level tree nothing points to holding
//! most of `mapped_blocks` (at least half).  When the space map says a tree
//! found by search has fewer references than devices claiming it, the live
//! loose tree sharing most nodes (or, for one-leaf trees, entries) with it
//! takes its place for the surplus devices ([`supersede`]).  A device whose
//! details are lost takes the transaction id and creation time from the
//! newest old details entry for it, if any.

use super::graph::{Graph, Tree};
use super::oracle::Oracle;
use super::roots::{details_entries, top_entries, Roots};
use super::scan::{NodeKind, Scan};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use uthin_pdata::btree::node::max_entries;
use uthin_thin::details::DeviceDetails;

/// Where a device's details come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetailsFrom {
    /// The chosen details tree.
    Tree(DeviceDetails),
    /// An old details entry (transaction id and creation time are kept).
    Stale(DeviceDetails),
    /// Nothing: made up.
    None,
}

/// One device to recover.
#[derive(Clone, Debug)]
pub struct DevPlan {
    pub id: u64,
    /// Root of its bottom-level tree, if known.
    pub root: Option<u64>,
    pub details: DetailsFrom,
}

impl DevPlan {
    /// Whether the device should have mappings (a lost tree is then a gap
    /// over every key).
    pub fn expects_mappings(&self) -> bool {
        match self.details {
            DetailsFrom::Tree(d) => d.mapped_blocks > 0,
            _ => true,
        }
    }

    /// Whether its details say its mappings fit in one leaf (so its tree
    /// was a single leaf, whose loss no loose leaf can make good).
    pub fn small(&self) -> bool {
        match self.details {
            DetailsFrom::Tree(d) => d.mapped_blocks <= max_entries(8) as u64,
            _ => false,
        }
    }
}

/// Devices, and messages about how they were found.
pub struct Plan {
    pub devices: Vec<DevPlan>,
    pub notes: Vec<String>,
}

/// Plans the devices.
pub fn plan(scan: &Scan, g: &Graph, o: &Oracle, roots: &Roots) -> Plan {
    let top = roots
        .top
        .map(|r| top_entries(scan, r.blk))
        .unwrap_or_default();
    let top_auth = roots.top.is_some_and(|r| r.from_superblock);
    let details = roots
        .details
        .map(|r| details_entries(scan, r.blk))
        .unwrap_or_default();
    // Details of a tree found by search and dead at the last commit are
    // stale: only ids, transaction ids and creation times are kept.
    let details_live = roots
        .details
        .is_some_and(|r| r.from_superblock || o.meta_count(r.blk) != Some(0));
    // The trees a valid superblock names decide which devices exist; of two
    // trees found by search, the details tree does (an older top-level tree
    // would bring back deleted devices).
    let details_auth = roots.details.is_some_and(|r| r.from_superblock);
    let ids: BTreeSet<u64> = match (top_auth, details_auth) {
        (true, true) => top.keys().chain(details.keys()).copied().collect(),
        (true, false) => top.keys().copied().collect(),
        (false, true) => details.keys().copied().collect(),
        (false, false) if roots.details.is_some() => details.keys().copied().collect(),
        (false, false) => top.keys().copied().collect(),
    };
    let claimed: BTreeSet<u64> = top.values().copied().collect();
    let claimed_list: Vec<u64> = claimed.iter().copied().collect();
    let orphans = orphan_roots(scan, g, o);
    let mut notes = Vec::new();
    let mut devices = Vec::new();
    for id in ids {
        let det = details.get(&id).copied().filter(|_| details_live);
        let exact = |det: &DeviceDetails| -> Option<u64> {
            orphans
                .iter()
                .filter(|r| r.1 == det.mapped_blocks && !claimed.contains(&r.0))
                .min_by_key(|r| (std::cmp::Reverse(r.2), r.0))
                .map(|r| r.0)
        };
        let fits = |r: u64, det: &DeviceDetails| {
            g.sub(scan, r)
                .is_some_and(|s| s.complete && s.entries == det.mapped_blocks)
        };
        let root = match (top.get(&id).copied(), det) {
            (Some(r), _) if top_auth => Some(r),
            // A whole tree with another count is out of date: its
            // successor, if any (a damaged one may well be the right one).
            (Some(r), Some(d)) if !fits(r, &d) => exact(&d)
                .or_else(|| {
                    let whole = g.sub(scan, r).is_some_and(|s| s.complete);
                    whole
                        .then(|| successor(scan, g, o, r, &claimed_list))
                        .flatten()
                })
                .or(Some(r)),
            (Some(r), _) => Some(r),
            (None, Some(d)) if d.mapped_blocks == 0 => None,
            (None, Some(d)) => {
                let r = exact(&d)
                    .or_else(|| old_top_root(scan, g, o, id))
                    .or_else(|| nearest(scan, g, o, &claimed, d.mapped_blocks));
                match r {
                    Some(r) => notes.push(format!(
                        "device {id}: not in the mapping tree; using the mapping tree at block {r}"
                    )),
                    None => notes.push(format!(
                        "device {id}: no mapping tree found; only loose leaves can be recovered"
                    )),
                }
                r
            }
            (None, None) => None,
        };
        let details = match (det, details.get(&id)) {
            (Some(d), _) => DetailsFrom::Tree(d),
            (None, Some(&d)) => DetailsFrom::Stale(d),
            (None, None) => {
                notes.push(format!("device {id}: details lost; rebuilt"));
                old_details(scan, id).map_or(DetailsFrom::None, DetailsFrom::Stale)
            }
        };
        devices.push(DevPlan { id, root, details });
    }
    if !top_auth && o.meta.is_some() {
        supersede(scan, g, o, &mut devices, &mut notes);
    }
    Plan { devices, notes }
}

/// With a top-level tree found by search (an older commit's), a sub-tree
/// root claimed by more devices than the space map counts references to
/// was copied since by some of them (or they were deleted): those devices
/// move to the live loose tree sharing most with it, the oldest devices
/// first (an origin is written to more often than its snapshots); when
/// the root is dead and no such tree exists, the device is dropped.
fn supersede(
    scan: &Scan,
    g: &Graph,
    o: &Oracle,
    devices: &mut Vec<DevPlan>,
    notes: &mut Vec<String>,
) {
    let mut claims: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, d) in devices.iter().enumerate() {
        if let Some(r) = d.root {
            claims.entry(r).or_default().push(i);
        }
    }
    let mut taken: Vec<u64> = claims.keys().copied().collect();
    let mut dropped = Vec::new();
    for (r, mut who) in claims {
        let refs = o.meta_count(r).map_or(usize::MAX, |c| c as usize);
        if who.len() <= refs {
            continue;
        }
        who.sort_by_key(|&i| {
            let created = match devices[i].details {
                DetailsFrom::Tree(d) | DetailsFrom::Stale(d) => d.creation_time,
                DetailsFrom::None => u32::MAX,
            };
            (created, devices[i].id)
        });
        for &i in who.iter().take(who.len() - refs) {
            let id = devices[i].id;
            match successor(scan, g, o, r, &taken) {
                Some(s) => {
                    notes.push(format!(
                        "device {id}: mapping tree at block {r} is out of date; using its successor at block {s}"
                    ));
                    taken.push(s);
                    devices[i].root = Some(s);
                }
                None if refs == 0 => {
                    notes.push(format!(
                        "device {id}: only a stale mapping tree (block {r}) was found; device dropped"
                    ));
                    dropped.push(i);
                }
                None => notes.push(format!(
                    "device {id}: mapping tree at block {r} may be out of date"
                )),
            }
        }
    }
    dropped.sort_unstable();
    for i in dropped.into_iter().rev() {
        devices.remove(i);
    }
}

/// The unclaimed, incomplete multi-level mapping tree that nothing points to
/// and that holds the most mappings, between half and all of `mapped`
/// (a device's tree with damage below its root), newest first.
fn nearest(
    scan: &Scan,
    g: &Graph,
    o: &Oracle,
    claimed: &BTreeSet<u64>,
    mapped: u64,
) -> Option<u64> {
    g.unreferenced(scan, Tree::Mapping)
        .into_iter()
        .filter(|b| o.maybe_live(*b) && !claimed.contains(b))
        .filter_map(|b| {
            let s = g.sub(scan, b)?;
            let fits =
                !s.complete && s.height > 0 && s.entries <= mapped && 2 * s.entries >= mapped;
            fits.then_some(((s.entries, s.newness()), b))
        })
        .max()
        .map(|x| x.1)
}

/// (root, mappings, newness) of every complete mapping tree no whole node
/// points to.
fn orphan_roots(scan: &Scan, g: &Graph, o: &Oracle) -> Vec<(u64, u64, (u32, u64, u64))> {
    g.unreferenced(scan, Tree::Mapping)
        .into_iter()
        .filter(|&b| o.maybe_live(b))
        .filter_map(|b| {
            let s = g.sub(scan, b)?;
            s.complete.then_some((b, s.entries, s.newness()))
        })
        .collect()
}

/// The loose mapping tree (not dead at the last commit, per the space map)
/// sharing most with the tree at `r` (children of a root, or entries of a
/// leaf), one not taken by another device: `r`'s successor after
/// copy-on-write.
fn successor(scan: &Scan, g: &Graph, o: &Oracle, r: u64, taken: &[u64]) -> Option<u64> {
    let old = scan.node(r)?;
    let old_leaf: Vec<(u64, u64)> = match old.kind {
        NodeKind::Leaf8 => scan.leaf8(r).ok()?,
        _ => Vec::new(),
    };
    let mut best: Option<(usize, u64)> = None;
    for c in g.unreferenced(scan, Tree::Mapping) {
        if c == r || o.meta_count(c) == Some(0) {
            continue;
        }
        let n = scan.node(c)?;
        let shared = match (old.kind, n.kind) {
            (NodeKind::Internal, NodeKind::Internal) => {
                let mine: HashSet<u64> = scan.entries_of(old).iter().map(|e| e.1).collect();
                scan.entries_of(n)
                    .iter()
                    .filter(|e| mine.contains(&e.1))
                    .count()
            }
            (NodeKind::Leaf8, NodeKind::Leaf8) => {
                let theirs: HashSet<(u64, u64)> = scan.leaf8(c).ok()?.into_iter().collect();
                old_leaf.iter().filter(|e| theirs.contains(e)).count()
            }
            _ => 0,
        };
        if shared > 0 && !taken.contains(&c) && best.is_none_or(|b| shared > b.0) {
            best = Some((shared, c));
        }
    }
    best.map(|b| b.1)
}

/// The newest whole mapping tree an old top-level leaf gives device `id`.
fn old_top_root(scan: &Scan, g: &Graph, o: &Oracle, id: u64) -> Option<u64> {
    scan.nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            g.sub_at(*i)
                .is_some_and(|s| s.tree == Tree::Top && s.height == 0)
        })
        .filter_map(|(_, n)| {
            let es = scan.entries_of(n);
            let i = es.binary_search_by_key(&id, |e| e.0).ok()?;
            let r = es[i].1;
            let s = g.sub(scan, r).filter(|s| s.tree == Tree::Mapping)?;
            o.maybe_live(r).then_some((s.newness(), r))
        })
        .max()
        .map(|x| x.1)
}

/// The newest details entry for `id` in any whole details leaf.
fn old_details(scan: &Scan, id: u64) -> Option<DeviceDetails> {
    scan.details
        .iter()
        .filter(|(k, _)| *k == id)
        .map(|(_, d)| *d)
        .max_by_key(|d| (d.snapshotted_time, d.creation_time, d.mapped_blocks))
}

/// Whether any device could be found at all.
pub fn nothing_found(roots: &Roots, plan: &Plan) -> bool {
    roots.top.is_none() && roots.details.is_none() && plan.devices.is_empty()
}
