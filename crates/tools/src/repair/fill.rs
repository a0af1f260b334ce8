//! Filling gaps with loose leaves.
//!
//! A gap is a key range of a device lost with a damaged internal node; the
//! whole leaves that hung below that node are still on disk, but nothing
//! whole points to them any more.  (A range lost with a leaf stays lost: only
//! a stale copy of the leaf could fill it.)
//!
//! Candidates: a leaf or a whole sub-tree (an internal node below the lost
//! one) referenced less often by the recovered trees (and a held metadata
//! snapshot) than the metadata space map counts, when it knows the count;
//! otherwise any, except a leaf the data space map says maps a free block.  Evidence of ownership: the devices already holding
//! the leaf, and those mapping one of its data blocks at the same virtual
//! block (its "users"); a leaf mapping a block some recovered mapping uses
//! at another virtual block is a stale copy and is dropped.
//!
//! A leaf may go to a gap whose range holds all its keys, of a device not
//! holding it yet and related to its users, if it has any (see
//! [`super::relate`]; a device with nothing recovered only when the space
//! map says a reference is missing).  Gaps are served narrowest first (a
//! node shared by several devices is one gap, so they all get the leaf
//! back); each takes, among the leaves it may have, the non-overlapping set
//! holding the most mappings, loose leaves and newer ones first among
//! equals.  A leaf is used as many times as the space map says references
//! are missing (once when unknown).  A leaf fitting several unrelated gaps
//! equally well, with nothing to choose between them, is left out.

use super::graph::{Graph, Tree};
use super::oracle::Oracle;
use super::relate::{data_uses, Relations, Use};
use super::scan::{NodeKind, Scan};
use super::walk::{walk_into, Gap, LeafRef, Walked};
use crate::error::Result;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Outcome of filling.
#[derive(Default, Debug)]
pub struct Filled {
    /// Leaves attached to gaps.
    pub attached: usize,
    /// Loose leaves no gap could take.
    pub unattributed: usize,
    /// Candidates rejected as stale.
    pub stale: usize,
}

/// A leaf, or a sub-tree, that may belong in a gap.
struct Cand {
    blk: u64,
    /// Keys it covers, mappings, newest time; whether it is a sub-tree.
    lo: u64,
    hi: u64,
    nr: u64,
    max_time: u32,
    internal: bool,
    /// Uses left: references it lacks per the space map (1 when unknown).
    uses: u32,
    /// Nothing recovered references it.
    loose: bool,
    /// The devices already holding it.
    owners: Vec<usize>,
    /// The gaps it may go to: (width, cause).
    fits: Vec<(u64, u64)>,
}

/// Fills the gaps of `walked` (one entry per device, in order).
pub fn fill(scan: &Scan, g: &Graph, o: &Oracle, walked: &mut [Walked]) -> Result<Filled> {
    let mut out = Filled::default();
    let gaps: Vec<(usize, Gap)> = walked
        .iter()
        .enumerate()
        .flat_map(|(d, w)| w.gaps.iter().map(move |&gap| (d, gap)))
        .filter(|(_, gap)| !gap.leaf)
        .collect();
    if gaps.is_empty() {
        return Ok(out);
    }
    let mut cands = candidates(scan, g, o, walked, &gaps, &mut out)?;
    let blks: Vec<u64> = cands
        .iter()
        .filter(|c| !c.internal)
        .map(|c| c.blk)
        .collect();
    let uses = data_uses(scan, walked, &blks)?;
    let mut rel = Relations::new(scan, walked);
    for c in cands.iter_mut() {
        let mut users = c.owners.clone();
        match uses.get(&c.blk) {
            Some(Use::Stale) => {
                out.stale += 1;
                continue;
            }
            Some(Use::Devices(u)) => users.extend(u),
            None => {}
        }
        users.sort_unstable();
        users.dedup();
        let (mut related, mut unknown) = (Vec::new(), Vec::new());
        for (d, gap) in &gaps {
            if !gap.holds(c.lo, c.hi) || c.owners.contains(d) {
                continue;
            }
            if users.is_empty() {
                related.push((gap.width(), gap.cause));
                continue;
            }
            match rel.related_any(*d, &users)? {
                Some(true) => related.push((gap.width(), gap.cause)),
                None if o.meta_count(c.blk).is_some() => unknown.push((gap.width(), gap.cause)),
                _ => {}
            }
        }
        let mut fits = if related.is_empty() { unknown } else { related };
        fits.sort_unstable();
        fits.dedup_by_key(|f| f.1);
        // Equally narrow unrelated gaps, and nothing to tell them apart.
        let tied = fits.iter().take_while(|f| f.0 == fits[0].0).count();
        if tied > 1 && users.is_empty() && (c.uses as usize) < tied {
            out.unattributed += usize::from(c.loose);
            continue;
        }
        if fits.is_empty() {
            out.unattributed += usize::from(c.loose);
        }
        c.fits = fits;
    }
    let by_blk: HashMap<u64, usize> = cands.iter().enumerate().map(|(i, c)| (c.blk, i)).collect();
    // Serve the gaps narrowest first.
    let mut order: BTreeMap<u64, u64> = BTreeMap::new();
    for (_, gap) in &gaps {
        let w = order.entry(gap.cause).or_insert(gap.width());
        *w = (*w).min(gap.width());
    }
    let mut order: Vec<(u64, u64)> = order.into_iter().map(|(c, w)| (w, c)).collect();
    order.sort_unstable();
    for (_, cause) in order {
        let here: Vec<usize> = (0..cands.len())
            .filter(|&i| cands[i].uses > 0 && cands[i].fits.iter().any(|f| f.1 == cause))
            .collect();
        let chosen = best_set(&cands, &here);
        for &i in &chosen {
            cands[i].uses -= 1;
        }
        for w in walked.iter_mut() {
            let holes: Vec<Gap> = w
                .gaps
                .iter()
                .filter(|g| g.cause == cause)
                .copied()
                .collect();
            for gap in holes {
                for &i in &chosen {
                    let c = &cands[i];
                    if !gap.holds(c.lo, c.hi) {
                        continue;
                    }
                    if c.internal {
                        let mut sub = Walked::default();
                        walk_into(scan, c.blk, gap.lo, gap.hi, &mut sub);
                        out.attached += sub.leaves.len();
                        w.leaves.extend(sub.leaves);
                        w.internals.extend(sub.internals);
                    } else {
                        w.leaves.push(LeafRef {
                            lo: c.lo,
                            hi: c.hi,
                            blk: c.blk,
                        });
                        out.attached += 1;
                    }
                }
            }
        }
        // The leaves of a sub-tree put back are used up with it.
        let units: Vec<u64> = chosen
            .iter()
            .filter(|&&i| cands[i].internal)
            .map(|&i| cands[i].blk)
            .collect();
        for blk in units {
            let mut sub = Walked::default();
            walk_into(scan, blk, 0, u64::MAX, &mut sub);
            for l in sub.leaves {
                if let Some(&j) = by_blk.get(&l.blk) {
                    cands[j].uses = cands[j].uses.saturating_sub(1);
                }
            }
        }
    }
    for w in walked.iter_mut() {
        w.leaves.sort_unstable();
    }
    Ok(out)
}

/// The leaves that may fill some gap.
fn candidates(
    scan: &Scan,
    g: &Graph,
    o: &Oracle,
    walked: &[Walked],
    gaps: &[(usize, Gap)],
    out: &mut Filled,
) -> Result<Vec<Cand>> {
    let rrefs = recovered_refs(scan, walked);
    let mut owners: HashMap<u64, Vec<usize>> = HashMap::new();
    for (d, w) in walked.iter().enumerate() {
        for l in &w.leaves {
            owners.entry(l.blk).or_default().push(d);
        }
    }
    let mut reaching: HashMap<u64, Vec<usize>> = HashMap::new();
    for (d, w) in walked.iter().enumerate() {
        for &b in &w.internals {
            reaching.entry(b).or_default().push(d);
        }
    }
    let mut cands = Vec::new();
    for (i, n) in scan.nodes.iter().enumerate() {
        let Some(sub) = g.sub_at(i).filter(|s| s.tree == Tree::Mapping) else {
            continue;
        };
        let internal = match n.kind {
            NodeKind::Leaf8 if n.nr > 0 => false,
            NodeKind::Internal => true,
            _ => continue,
        };
        let hi = if internal { sub.max_key } else { n.key_hi };
        if !gaps.iter().any(|(_, gap)| gap.holds(n.key_lo, hi)) {
            continue;
        }
        let recovered = rrefs.get(&n.blk).copied().unwrap_or(0);
        let have = recovered + o.held.get(&n.blk).copied().unwrap_or(0);
        let uses = match o.meta_count(n.blk) {
            Some(c) if c > have => c - have,
            Some(_) => continue,
            None => 1,
        };
        if !internal && !data_live(scan, o, n.blk)? {
            out.stale += 1;
            continue;
        }
        let owners = if internal { &reaching } else { &owners };
        cands.push(Cand {
            blk: n.blk,
            lo: n.key_lo,
            hi,
            nr: sub.entries,
            max_time: sub.age,
            internal,
            uses,
            loose: recovered == 0,
            owners: owners.get(&n.blk).cloned().unwrap_or_default(),
            fits: Vec::new(),
        });
    }
    Ok(cands)
}

/// The non-overlapping subset of `here` (indices into `cands`) with the
/// greatest weight: most mappings, then loose ones, then newest (weighted
/// interval scheduling).
fn best_set(cands: &[Cand], here: &[usize]) -> Vec<usize> {
    let mut v: Vec<usize> = here.to_vec();
    v.sort_by_key(|&i| (cands[i].hi, cands[i].blk));
    let weight = |i: usize| -> u128 {
        let c = &cands[i];
        ((c.nr as u128) << 64) | ((c.loose as u128) << 40) | ((c.max_time as u128) << 8)
    };
    // best[j]: best weight using the first j intervals; back-pointers.
    let mut best = vec![0u128; v.len() + 1];
    let mut take = vec![false; v.len() + 1];
    let mut prev = vec![0usize; v.len() + 1];
    for j in 1..=v.len() {
        let c = &cands[v[j - 1]];
        let p = v[..j - 1].partition_point(|&k| cands[k].hi < c.lo);
        let with = best[p] + weight(v[j - 1]);
        if with > best[j - 1] {
            (best[j], take[j], prev[j]) = (with, true, p);
        } else {
            (best[j], prev[j]) = (best[j - 1], j - 1);
        }
    }
    let (mut j, mut chosen) = (v.len(), Vec::new());
    while j > 0 {
        if take[j] {
            chosen.push(v[j - 1]);
        }
        j = prev[j];
    }
    chosen
}

/// How often the recovered trees reference each node: once per child slot
/// of each distinct internal node, once per device for a device's root.
fn recovered_refs(scan: &Scan, walked: &[Walked]) -> HashMap<u64, u32> {
    let mut refs: HashMap<u64, u32> = HashMap::new();
    let mut seen = HashSet::new();
    for w in walked {
        if let Some(root) = w.root {
            *refs.entry(root).or_default() += 1;
        }
        for &b in &w.internals {
            if seen.insert(b) {
                for &(_, c) in scan.node(b).map_or(&[][..], |n| scan.entries_of(n)) {
                    *refs.entry(c).or_default() += 1;
                }
            }
        }
    }
    refs
}

/// Whether every data block the leaf maps may be in use.
fn data_live(scan: &Scan, o: &Oracle, blk: u64) -> Result<bool> {
    if o.data.is_none() {
        return Ok(true);
    }
    Ok(scan
        .leaf8(blk)?
        .iter()
        .all(|&(_, v)| o.data_maybe_used(v >> 24)))
}
