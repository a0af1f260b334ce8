//! The bottom level of the mapping tree, in two phases.
//!
//! **Read** (parallel): every device root is walked top-down, the children
//! of internal nodes above height 1 as separate rayon tasks, the leaves
//! under a height-1 node read in runs of adjacent blocks.  Each node
//! reference is counted; a node is read by whichever task reaches it first
//! (the tag of [`MetaCounts`] records its expected height, so a node reached
//! at two heights is caught).  Leaves are validated, their data blocks
//! counted (once per distinct leaf: lazy counting, FORMAT.md §9) and
//! summarised; internal nodes keep their keys and children.
//!
//! **Summarise** ([`super::summary`]): per device, bottom-up over what was
//! kept, without I/O: key ranges, under-filled nodes and the number of
//! mappings.

use super::counts::{tag, DataCounts, MetaCounts, Visit};
use super::io::{self, Disk};
use super::node::{self, NodeError};
use super::problems::Problems;
use super::summary::{self, Facts, Sum};
use super::trees::MAX_DEPTH;
use crate::report::Report;
use rayon::prelude::*;
use std::sync::Mutex;
use uthin_block_io::BLOCK_SIZE;
use uthin_pdata::types::BlockData;

/// What phase one kept of a node.
#[derive(Clone, Debug)]
pub enum NodeInfo {
    Leaf {
        low: u64,
        high: u64,
        nr: u32,
        max: u32,
    },
    /// An internal node whose subtree phase two summarises.
    Internal {
        keys: Box<[u64]>,
        children: Box<[u64]>,
        max: u32,
    },
    /// A height-1 node summarised by phase one (it read all its leaves).
    Summary {
        sum: Sum,
        nr: u32,
        max: u32,
        last_key: u64,
    },
    Error(NodeError),
}

/// A stored node: its height and what was kept.
#[derive(Clone, Debug)]
pub struct Stored {
    pub height: u8,
    pub info: NodeInfo,
}

/// Nodes kept by phase one, appended in batches.
#[derive(Default)]
pub struct Store {
    parts: Mutex<Vec<(u64, Stored)>>,
}

impl Store {
    fn put_all(&self, batch: Vec<(u64, Stored)>) {
        self.parts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(batch);
    }

    fn put(&self, b: u64, height: u8, info: NodeInfo) {
        self.put_all(vec![(b, Stored { height, info })]);
    }

    /// Ends phase one: the nodes sorted by block, for lookups.
    pub fn freeze(self) -> Frozen {
        let mut v = self.parts.into_inner().unwrap_or_else(|e| e.into_inner());
        v.sort_by_key(|e| e.0);
        v.dedup_by_key(|e| e.0);
        Frozen { v }
    }
}

/// The nodes kept by phase one, read-only.
pub struct Frozen {
    v: Vec<(u64, Stored)>,
}

impl Frozen {
    /// The node at `b`.
    pub fn get(&self, b: u64) -> Option<&Stored> {
        self.v
            .binary_search_by_key(&b, |e| e.0)
            .ok()
            .map(|i| &self.v[i].1)
    }

    /// (nodes with errors, io errors, checksum errors).
    pub fn error_stats(&self) -> (usize, usize, usize) {
        let mut s = (0, 0, 0);
        for (_, st) in &self.v {
            if let NodeInfo::Error(e) = &st.info {
                s.0 += 1;
                s.1 += e.is_io() as usize;
                s.2 += e.is_checksum() as usize;
            }
        }
        s
    }
}

/// Phase one.
pub struct Reader<'a> {
    pub disk: &'a Disk,
    pub meta: &'a MetaCounts,
    pub data: &'a DataCounts,
    pub store: &'a Store,
    pub problems: &'a Problems,
    pub report: &'a Report,
    pub ignore_non_fatal: bool,
}

impl Reader<'_> {
    /// Reads the trees of every root (one entry per reference).
    pub fn read_all(&self, roots: &[u64]) {
        roots.par_iter().for_each(|&r| {
            let h = self.height(r);
            self.visit(r, h, None);
        });
    }

    /// The height of the tree at `root`, from its leftmost good path.
    fn height(&self, root: u64) -> u8 {
        let mut budget = 64;
        self.depth_of(root, 0, &mut budget).unwrap_or(0)
    }

    fn depth_of(&self, b: u64, depth: usize, budget: &mut u32) -> Option<u8> {
        if depth >= MAX_DEPTH || *budget == 0 {
            return None;
        }
        *budget -= 1;
        let mut buf = [0u8; BLOCK_SIZE];
        self.disk.read(b, &mut buf).ok()?;
        let n = node::parse(&buf, b, 8).ok()?;
        if n.leaf {
            return Some(0);
        }
        n.children()
            .into_iter()
            .find_map(|c| self.depth_of(c, depth + 1, budget))
            .map(|h| h + 1)
    }

    /// Counts a reference to `b` (expected at height `h`); true if this
    /// caller is the one to read it.
    fn claim(&self, b: u64, h: u8, parent: Option<u64>) -> bool {
        let from = parent.map_or(String::new(), |p| format!(" (child of node {p})"));
        match self.meta.reference(b, tag::BOTTOM.saturating_add(h)) {
            Visit::First => true,
            Visit::Again => false,
            Visit::OutOfRange => {
                self.store.put(b, h, NodeInfo::Error(NodeError::BeyondEnd));
                let msg = format!("mapping tree: node {b}{from}: {}", NodeError::BeyondEnd);
                self.problems.fatal(Some(b), msg);
                false
            }
            Visit::Conflict(t) if t >= tag::BOTTOM => false, // caught when summarising
            Visit::Conflict(t) => {
                let msg = format!(
                    "mapping tree: node {b}{from} is also used as {}",
                    tag::name(t)
                );
                self.problems.fatal(Some(b), msg);
                false
            }
        }
    }

    /// Reports a node error; returns what to keep of the node.
    fn error(&self, b: u64, e: NodeError) -> NodeInfo {
        self.problems
            .fatal(Some(b), format!("mapping tree: node {b}: node error: {e}"));
        NodeInfo::Error(e)
    }

    fn node_error(&self, b: u64, h: u8, e: NodeError) {
        let info = self.error(b, e);
        self.store.put(b, h, info);
    }

    fn div3(&self, b: u64, max: usize) {
        if !self.ignore_non_fatal && !max.is_multiple_of(3) {
            let msg = format!("mapping tree: node {b}: max_entries is not divisible by 3 ({max})");
            self.problems.non_fatal(Some(b), msg);
        }
    }

    fn visit(&self, b: u64, h: u8, parent: Option<u64>) {
        if !self.claim(b, h, parent) {
            return;
        }
        let mut buf = [0u8; BLOCK_SIZE];
        if self.disk.read(b, &mut buf).is_err() {
            return self.node_error(b, h, NodeError::IoError);
        }
        if h == 0 {
            let info = self.leaf(b, &buf);
            return self.store.put(b, 0, info);
        }
        let n = match node::parse(&buf, b, 8) {
            Ok(n) if n.leaf => return self.node_error(b, h, NodeError::LeafExpected),
            Ok(n) => n,
            Err(e) => return self.node_error(b, h, e),
        };
        self.div3(b, n.max);
        let (keys, children, max) = (n.keys(), n.children(), n.max as u32);
        self.report.inc(1);
        if h > 1 {
            let info = NodeInfo::Internal {
                keys: keys.into(),
                children: children.clone().into(),
                max,
            };
            self.store.put(b, h, info);
            children
                .par_iter()
                .for_each(|&c| self.visit(c, h - 1, Some(b)));
        } else {
            self.leaves(b, &keys, &children, max);
        }
    }

    /// Reads the leaves under height-1 node `parent` that nobody read
    /// before; summarises `parent` if it read them all.
    fn leaves(&self, parent: u64, keys: &[u64], children: &[u64], max: u32) {
        let owned: Vec<bool> = children
            .iter()
            .map(|&c| self.claim(c, 0, Some(parent)))
            .collect();
        let mut mine: Vec<u64> = children
            .iter()
            .zip(&owned)
            .filter(|(_, o)| **o)
            .map(|(c, _)| *c)
            .collect();
        mine.sort_unstable();
        let mut batch = Vec::with_capacity(mine.len() + 1);
        let mut buf = vec![0u8; io::MAX_RUN * BLOCK_SIZE];
        for (start, len) in io::runs(&mine) {
            let run = &mut buf[..len * BLOCK_SIZE];
            let ok = self.disk.read_run(start, run).is_ok();
            for (i, chunk) in run.chunks_exact(BLOCK_SIZE).enumerate() {
                let b = start + i as u64;
                let info = if ok {
                    self.leaf(b, chunk.try_into().expect("one block"))
                } else {
                    self.error(b, NodeError::IoError)
                };
                batch.push((b, Stored { height: 0, info }));
            }
        }
        self.report.inc(mine.len() as u64);
        let all_mine = owned.iter().all(|&o| o);
        if all_mine {
            let mut sum = Sum::default();
            for (i, &c) in children.iter().enumerate() {
                let k = batch.binary_search_by_key(&c, |e| e.0).expect("read above");
                let cs = match &batch[k].1.info {
                    NodeInfo::Leaf { low, high, nr, max } => {
                        let f = Facts {
                            sum: Sum {
                                low: *low,
                                high: *high,
                                nr: *nr as u64,
                                errors: 0,
                            },
                            nr_entries: *nr as usize,
                            max_entries: *max as usize,
                            last_key: None,
                        };
                        summary::reference(
                            self.problems,
                            self.ignore_non_fatal,
                            c,
                            Some(parent),
                            summary::child_range(keys, i),
                            &f,
                        )
                    }
                    _ => Sum::error(),
                };
                sum.append(&cs, c, parent, self.problems);
            }
            let last_key = *keys.last().expect("internal nodes have entries");
            let info = NodeInfo::Summary {
                sum,
                nr: keys.len() as u32,
                max,
                last_key,
            };
            batch.push((parent, Stored { height: 1, info }));
        } else {
            let info = NodeInfo::Internal {
                keys: keys.into(),
                children: children.into(),
                max,
            };
            batch.push((parent, Stored { height: 1, info }));
        }
        self.store.put_all(batch);
    }

    /// Checks a leaf and counts its data blocks; returns what to keep.
    fn leaf(&self, b: u64, d: &BlockData) -> NodeInfo {
        let n = match node::parse(d, b, 8) {
            Ok(n) if !n.leaf => return self.error(b, NodeError::InternalExpected),
            Ok(n) => n,
            Err(e) => return self.error(b, e),
        };
        self.div3(b, n.max);
        let mut bad = 0u64;
        for i in 0..n.nr {
            if !self.data.inc(n.value64(i) >> 24) {
                bad += 1;
            }
        }
        if bad > 0 {
            let first = (0..n.nr)
                .map(|i| n.value64(i) >> 24)
                .find(|&v| v >= self.data.nr_blocks());
            let msg = format!(
                "mapping tree: leaf {b} maps {bad} blocks beyond the end of the data device ({} blocks), e.g. data block {}",
                self.data.nr_blocks(),
                first.unwrap_or(0)
            );
            self.problems.fatal(Some(b), msg);
        }
        let (low, high) = match n.nr {
            0 => (0, 0),
            k => (n.key(0), n.key(k - 1)),
        };
        NodeInfo::Leaf {
            low,
            high,
            nr: n.nr as u32,
            max: n.max as u32,
        }
    }
}
