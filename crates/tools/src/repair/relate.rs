//! Which recovered devices are related (a snapshot and its origin), and how
//! a loose leaf's data blocks are used by recovered mappings: the evidence
//! [`super::fill`] uses to give a loose leaf to the right device.
//!
//! Two devices are related when their recovered trees share a node, or
//! when a sample of one's mappings (up to 256, spread over its leaves) is
//! found with the same data block in the other: a snapshot keeps its
//! origin's mappings until either side overwrites them.

use super::scan::Scan;
use super::walk::Walked;
use crate::error::Result;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

/// Leaves sampled per device, and mappings sampled per leaf.
const SAMPLE_LEAVES: usize = 16;
const SAMPLE_PER_LEAF: usize = 16;

/// How a candidate's data blocks are used by recovered mappings.
pub enum Use {
    /// A recovered mapping uses one of them at another virtual block: the
    /// candidate is a stale copy whose blocks were reused.
    Stale,
    /// These devices map one of them at the same virtual block (they share
    /// it, or the candidate is a copy of one of their leaves).
    Devices(Vec<usize>),
}

/// For each candidate block that shares a data block with a recovered
/// mapping, how.
pub fn data_uses(scan: &Scan, walked: &[Walked], blks: &[u64]) -> Result<HashMap<u64, Use>> {
    let mut wanted: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
    let cand: HashSet<u64> = blks.iter().copied().collect();
    for &blk in &cand {
        for (k, v) in scan.leaf8(blk)? {
            wanted.entry(v >> 24).or_default().push((k, blk));
        }
    }
    let mut uses: HashMap<u64, Use> = HashMap::new();
    if wanted.is_empty() {
        return Ok(uses);
    }
    for (d, w) in walked.iter().enumerate() {
        for l in &w.leaves {
            for (k, v) in scan.leaf8(l.blk)? {
                let Some(users) = wanted.get(&(v >> 24)) else {
                    continue;
                };
                for &(ck, cblk) in users {
                    if cblk == l.blk {
                        continue;
                    }
                    let u = uses.entry(cblk).or_insert(Use::Devices(Vec::new()));
                    match u {
                        _ if ck != k => *u = Use::Stale,
                        Use::Devices(ds) if !ds.contains(&d) => ds.push(d),
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(uses)
}

/// Relatedness of recovered devices, computed on demand.
pub struct Relations<'a> {
    scan: &'a Scan,
    walked: &'a [Walked],
    family: Vec<usize>,
    cache: HashMap<(usize, usize), bool>,
    samples: HashMap<usize, Vec<(u64, u64)>>,
}

impl<'a> Relations<'a> {
    /// Relations among the devices of `walked`.
    pub fn new(scan: &'a Scan, walked: &'a [Walked]) -> Self {
        Relations {
            scan,
            walked,
            family: families(walked),
            cache: HashMap::new(),
            samples: HashMap::new(),
        }
    }

    /// Whether device `x` is related to any of `ys`; None for a device with
    /// nothing recovered (nothing to tell).
    pub fn related_any(&mut self, x: usize, ys: &[usize]) -> Result<Option<bool>> {
        if self.walked[x].leaves.is_empty() {
            return Ok(None);
        }
        for &y in ys {
            if self.related(x, y)? {
                return Ok(Some(true));
            }
        }
        Ok(Some(false))
    }

    fn related(&mut self, x: usize, y: usize) -> Result<bool> {
        if x == y || self.family[x] == self.family[y] {
            return Ok(true);
        }
        let key = (x.min(y), x.max(y));
        if let Some(&r) = self.cache.get(&key) {
            return Ok(r);
        }
        let r = self.shares_mapping(x, y)? || self.shares_mapping(y, x)?;
        self.cache.insert(key, r);
        Ok(r)
    }

    /// Mappings sampled from device `d`'s recovered leaves.
    fn sample(&mut self, d: usize) -> Result<&[(u64, u64)]> {
        if !self.samples.contains_key(&d) {
            let leaves = &self.walked[d].leaves;
            let step = leaves.len().div_ceil(SAMPLE_LEAVES).max(1);
            let mut s = Vec::new();
            for l in leaves.iter().step_by(step) {
                let es = self.scan.leaf8(l.blk)?;
                let inner = es.len().div_ceil(SAMPLE_PER_LEAF).max(1);
                s.extend(
                    es.into_iter()
                        .step_by(inner)
                        .filter(|e| (l.lo..=l.hi).contains(&e.0)),
                );
            }
            self.samples.insert(d, s);
        }
        Ok(&self.samples[&d])
    }

    /// Whether one of `x`'s sampled mappings is in `y` with the same data
    /// block.
    fn shares_mapping(&mut self, x: usize, y: usize) -> Result<bool> {
        let sample = self.sample(x)?.to_vec();
        let leaves = &self.walked[y].leaves;
        let mut read: HashMap<u64, HashMap<u64, u64>> = HashMap::new();
        for (k, v) in sample {
            let i = leaves.partition_point(|l| l.hi < k);
            let Some(l) = leaves.get(i).filter(|l| l.lo <= k) else {
                continue;
            };
            let leaf = match read.entry(l.blk) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(self.scan.leaf8(l.blk)?.into_iter().collect()),
            };
            if leaf.get(&k).is_some_and(|w| w >> 24 == v >> 24) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Groups devices whose trees share a node: `result[d]` names device `d`'s
/// group.
fn families(walked: &[Walked]) -> Vec<usize> {
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    let mut parent: Vec<usize> = (0..walked.len()).collect();
    let mut first: HashMap<u64, usize> = HashMap::new();
    for (d, w) in walked.iter().enumerate() {
        let nodes = w.internals.iter().chain(w.leaves.iter().map(|l| &l.blk));
        for &b in nodes {
            let e = *first.entry(b).or_insert(d);
            let (a, c) = (find(&mut parent, e), find(&mut parent, d));
            parent[a] = c;
        }
    }
    (0..walked.len()).map(|d| find(&mut parent, d)).collect()
}
