//! Choosing the roots: the top-level mapping tree and the details tree.
//!
//! A root named by a valid superblock is taken when it is a whole node of
//! the right shape: it is the last commit, and damage below it is dealt
//! with while walking.  Otherwise the candidates are the whole nodes heading
//! a tree of that kind that no whole internal node points to (and, when the
//! metadata space map can be read, that were live at the last commit).
//!
//! thin-provisioning-tools 1.x pairs a top-level tree and a details tree
//! that name the same devices and agree on the number of mappings, newest
//! mapping times first: when the last commit's roots are both lost that
//! rolls back to the previous commit, dropping what the last transaction
//! created.  Here the newest details tree (creation/snapshot times, then
//! transaction ids, then mappings) is taken, and the top-level tree sharing
//! most devices with it, newest first; devices it lacks find their trees in
//! [`super::devices`].

use super::graph::{Graph, Sub, Tree};
use super::oracle::Oracle;
use super::scan::{NodeKind, SbState, Scan};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use uthin_thin::details::DeviceDetails;

/// A chosen root and whether a valid superblock named it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Root {
    pub blk: u64,
    pub from_superblock: bool,
}

/// The chosen roots.
#[derive(Clone, Copy, Debug, Default)]
pub struct Roots {
    pub top: Option<Root>,
    pub details: Option<Root>,
}

/// A tree's leaves, found by a walk that skips what is not whole.
pub fn leaves_of(scan: &Scan, root: u64, leaf: NodeKind) -> Vec<u64> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![(root, 0usize)];
    while let Some((b, depth)) = stack.pop() {
        let Some(n) = scan.node(b) else { continue };
        if depth > uthin_pdata::btree::MAX_DEPTH || !seen.insert(b) {
            continue;
        }
        if n.kind == leaf {
            out.push(b);
        } else if n.kind == NodeKind::Internal {
            stack.extend(
                scan.entries_of(n)
                    .iter()
                    .rev()
                    .map(|&(_, c)| (c, depth + 1)),
            );
        }
    }
    out
}

/// Device id -> sub-tree root of a top-level tree.  A leaf whose values
/// were not all block numbers is re-read and its usable values kept.
pub fn top_entries(scan: &Scan, root: u64) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    for b in leaves_of(scan, root, NodeKind::Leaf8) {
        let n = scan.node(b).expect("walked nodes exist");
        if n.has_entries() {
            out.extend(scan.entries_of(n).iter().copied());
        } else if let Ok(es) = scan.leaf8(b) {
            out.extend(
                es.into_iter()
                    .filter(|&(_, v)| v != 0 && v < scan.nr_blocks),
            );
        }
    }
    out
}

/// Device id -> details of a details tree.
pub fn details_entries(scan: &Scan, root: u64) -> BTreeMap<u64, DeviceDetails> {
    let mut out = BTreeMap::new();
    for b in leaves_of(scan, root, NodeKind::Leaf24) {
        let n = scan.node(b).expect("walked nodes exist");
        out.extend(scan.details_of(n).iter().copied());
    }
    out
}

struct Cand {
    blk: u64,
    sub: Sub,
    ids: BTreeSet<u64>,
}

/// Unreferenced trees of `tree`: those live at the last commit if the
/// space map knows any, else all.
fn candidates(scan: &Scan, g: &Graph, o: &Oracle, tree: Tree) -> Vec<Cand> {
    let all = g.unreferenced(scan, tree);
    let live: Vec<u64> = all.iter().copied().filter(|&b| o.maybe_live(b)).collect();
    let pick = if live.is_empty() { all } else { live };
    let mut v: Vec<Cand> = pick
        .into_iter()
        .map(|blk| {
            let ids = match tree {
                Tree::Top => top_entries(scan, blk).into_keys().collect(),
                _ => details_entries(scan, blk).into_keys().collect(),
            };
            Cand {
                blk,
                sub: g.sub(scan, blk).expect("candidates are summarised"),
                ids,
            }
        })
        .collect();
    // Newest first, then by block for a stable order.  Details trees: the
    // newest creation or snapshot time, then the highest transaction id,
    // then the most mappings and devices.
    v.sort_by_key(|c| {
        let s = &c.sub;
        let key = match tree {
            Tree::Details => (s.age, s.max_tid, s.mappings, s.entries),
            _ => (s.age, s.at_age, s.entries, 0),
        };
        (std::cmp::Reverse(key), c.blk)
    });
    v
}

fn sb_root(scan: &Scan, g: &Graph, blk: u64, tree: Tree) -> Option<Root> {
    let n = scan.node(blk)?;
    let sub = g.sub(scan, blk)?;
    let ok = match tree {
        // Any 8-byte node will do: a top-level leaf with a damaged sub-tree
        // root looks like a mapping leaf.
        Tree::Top => {
            matches!(n.kind, NodeKind::Leaf8 | NodeKind::Internal) && sub.tree != Tree::Details
        }
        _ => sub.tree == Tree::Details,
    };
    ok.then_some(Root {
        blk,
        from_superblock: true,
    })
}

fn log_cands(log: &mut Vec<String>, what: &str, cands: &[Cand]) {
    log.push(format!("{what} candidates ({}):", cands.len()));
    for c in cands {
        log.push(format!(
            "b={}, nr_devices={}, nr_mappings={}, complete={}, highest_mapped={}, age={}, at_age={}",
            c.blk,
            c.sub.entries,
            c.sub.mappings,
            c.sub.complete,
            c.sub.max_data,
            c.sub.age,
            c.sub.at_age
        ));
    }
}

/// Chooses the roots; the candidates considered are described in `log`.
pub fn choose(scan: &Scan, g: &Graph, o: &Oracle, log: &mut Vec<String>) -> Roots {
    let mut roots = Roots::default();
    if let SbState::Valid(sb) = &scan.sb {
        roots.top = sb_root(scan, g, sb.data_mapping_root.0, Tree::Top);
        roots.details = sb_root(scan, g, sb.device_details_root.0, Tree::Details);
    }
    if roots.top.is_some() && roots.details.is_some() {
        return roots;
    }
    let found = |blk: u64| {
        Some(Root {
            blk,
            from_superblock: false,
        })
    };
    match (roots.top, roots.details) {
        (None, None) => {
            // The newest details tree names the devices (a consistent older
            // pair would lose what the last transactions created); the
            // top-level tree sharing most devices with it gives the roots.
            let tops = candidates(scan, g, o, Tree::Top);
            let dets = candidates(scan, g, o, Tree::Details);
            log_cands(log, "mapping", &tops);
            log_cands(log, "device details", &dets);
            match dets.first() {
                Some(d) => {
                    roots.details = found(d.blk);
                    roots.top = best_match(&tops, &d.ids).and_then(found);
                }
                None => roots.top = tops.first().and_then(|t| found(t.blk)),
            }
        }
        (Some(t), None) => {
            let ids: BTreeSet<u64> = top_entries(scan, t.blk).into_keys().collect();
            let dets = candidates(scan, g, o, Tree::Details);
            log_cands(log, "device details", &dets);
            roots.details = best_match(&dets, &ids).and_then(found);
        }
        (None, Some(d)) => {
            let ids: BTreeSet<u64> = details_entries(scan, d.blk).into_keys().collect();
            let tops = candidates(scan, g, o, Tree::Top);
            log_cands(log, "mapping", &tops);
            roots.top = best_match(&tops, &ids).and_then(found);
        }
        (Some(_), Some(_)) => {}
    }
    roots
}

/// The candidate sharing most devices with `ids` (same set first), newest
/// first among equals; none if no candidate shares a device.
fn best_match(cands: &[Cand], ids: &BTreeSet<u64>) -> Option<u64> {
    let mut best: Option<((bool, usize, bool), u64)> = None;
    for c in cands {
        let common = c.ids.intersection(ids).count();
        let key = (c.ids == *ids, common, c.sub.complete);
        if common > 0 && best.is_none_or(|b| key > b.0) {
            best = Some((key, c.blk));
        }
    }
    best.map(|b| b.1)
}
