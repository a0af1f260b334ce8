//! Finding the leaves shared between devices, as thin-provisioning-tools
//! 1.x's dump does (its `Gatherer` and `optimise_metadata`), so that the
//! `<def>` / `<ref>` structure of the XML is the same.
//!
//! Every device's leaves, in key order, form a sequence.  The sequences are
//! cut into atomic runs: a run starts at a *head* and ends at a *tail*.
//! * a leaf is a head if it starts a sequence, follows a tail, or is reached
//!   from two different predecessors; a head reached again is *shared*;
//! * a leaf is a tail if it ends a sequence, has other than exactly one
//!   successor, or its (first) successor is a head.
//!
//! A run whose head is shared becomes a def named after the head's block
//! number; devices refer to it instead of listing its leaves.  Defs come in
//! ascending order of their head block.  The cuts follow 1.x's rules
//! exactly, including its heuristics (a run is shared when its *head* was
//! reached twice).

use std::collections::HashMap;

/// One item of a device's (or def's) mapping list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A leaf block, emitted in place.
    Leaf(u64),
    /// The def whose head is this block.
    Ref(u64),
}

/// A shared run of leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Def {
    /// Head block (the def's name).
    pub head: u64,
    /// Its leaves, in key order.
    pub leaves: Vec<u64>,
}

const HEAD: u8 = 1;
const TAIL: u8 = 2;
const SHARED: u8 = 4;

#[derive(Default)]
struct Node {
    /// Distinct successors, ascending.
    next: Vec<u64>,
    /// The first predecessor seen.
    back: Option<u64>,
    flags: u8,
}

#[derive(Default)]
struct Gatherer {
    prev: Option<u64>,
    nodes: HashMap<u64, Node>,
}

impl Gatherer {
    fn flag(&self, b: u64, f: u8) -> bool {
        self.nodes.get(&b).is_some_and(|n| n.flags & f != 0)
    }

    /// Sets a flag; returns whether it was set already.
    fn put(&mut self, b: u64, f: u8) -> bool {
        let n = self.nodes.entry(b).or_default();
        let was = n.flags & f != 0;
        n.flags |= f;
        was
    }

    fn mark_head(&mut self, b: u64) {
        if self.put(b, HEAD) {
            self.put(b, SHARED);
        }
    }

    fn new_seq(&mut self) {
        if let Some(b) = self.prev.take() {
            self.put(b, TAIL);
        }
    }

    fn next(&mut self, b: u64) {
        if let Some(prev) = self.prev {
            let p = self.nodes.entry(prev).or_default();
            match p.next.binary_search(&b) {
                Ok(_) => {
                    self.put(b, SHARED);
                }
                Err(i) => p.next.insert(i, b),
            }
            let n = self.nodes.entry(b).or_default();
            match n.back {
                Some(back) if back != prev => self.mark_head(b),
                Some(_) => {}
                None => n.back = Some(prev),
            }
        } else {
            self.mark_head(b);
        }
        self.nodes.entry(b).or_default();
        self.prev = Some(b);
    }

    /// The atomic runs, ascending by head, with their shared flag.
    fn gather(mut self) -> Vec<(Vec<u64>, bool)> {
        self.new_seq();
        // More tails: nodes without exactly one successor, or whose
        // successor is a head.
        let extra: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.next.len() != 1 || self.flag(n.next[0], HEAD))
            .map(|(b, _)| *b)
            .collect();
        for b in extra {
            self.put(b, TAIL);
        }
        // What follows a tail is a head (shared if it was one already).
        let follows: Vec<u64> = self
            .nodes
            .values()
            .filter(|n| n.flags & TAIL != 0)
            .flat_map(|n| n.next.iter().copied())
            .collect();
        for b in follows {
            self.mark_head(b);
        }
        let mut heads: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.flags & HEAD != 0)
            .map(|(b, _)| *b)
            .collect();
        heads.sort_unstable();
        let limit = self.nodes.len();
        heads
            .into_iter()
            .map(|h| {
                let mut run = vec![h];
                let mut b = h;
                // Bounded: corrupt input could make a cycle without a tail.
                while !self.flag(b, TAIL) && run.len() <= limit {
                    match self.nodes[&b].next.first() {
                        Some(&n) => {
                            run.push(n);
                            b = n;
                        }
                        None => break,
                    }
                }
                (run, self.flag(h, SHARED))
            })
            .collect()
    }
}

/// Cuts the devices' leaf sequences into runs: returns the defs (shared
/// runs, ascending by head) and each device's entries.
pub fn optimise(devices: &[&[u64]]) -> (Vec<Def>, Vec<Vec<Entry>>) {
    let mut g = Gatherer::default();
    for leaves in devices {
        g.new_seq();
        for &b in leaves.iter() {
            g.next(b);
        }
    }
    let runs: HashMap<u64, (Vec<u64>, bool)> =
        g.gather().into_iter().map(|r| (r.0[0], r)).collect();
    let entries = devices
        .iter()
        .map(|leaves| {
            let mut out = Vec::new();
            let mut i = 0;
            while i < leaves.len() {
                let b = leaves[i];
                match runs.get(&b) {
                    Some((run, true)) => {
                        out.push(Entry::Ref(b));
                        i += run.len();
                    }
                    Some((run, false)) => {
                        out.extend(run.iter().map(|&l| Entry::Leaf(l)));
                        i += run.len();
                    }
                    None => {
                        out.push(Entry::Leaf(b));
                        i += 1;
                    }
                }
            }
            out
        })
        .collect();
    let mut defs: Vec<Def> = runs
        .into_values()
        .filter(|(_, shared)| *shared)
        .map(|(leaves, _)| Def {
            head: leaves[0],
            leaves,
        })
        .collect();
    defs.sort_unstable_by_key(|d| d.head);
    (defs, entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(seqs: &[&[u64]]) -> Vec<(Vec<u64>, bool)> {
        let mut g = Gatherer::default();
        for s in seqs {
            g.new_seq();
            for &b in *s {
                g.next(b);
            }
        }
        g.gather()
    }

    /// The cases 1.x's own unit test pins down.
    #[test]
    fn cuts_as_1x_does() {
        let t = |seqs: &[&[u64]], want: &[(&[u64], bool)]| {
            let want: Vec<(Vec<u64>, bool)> = want.iter().map(|(r, s)| (r.to_vec(), *s)).collect();
            assert_eq!(runs(seqs), want, "{seqs:?}");
        };
        t(&[], &[]);
        t(&[&[1]], &[(&[1], false)]);
        t(&[&[1, 2, 3]], &[(&[1, 2, 3], false)]);
        t(&[&[1, 2], &[1, 2, 3]], &[(&[1, 2], true), (&[3], false)]);
        t(&[&[2, 3], &[1, 2, 3]], &[(&[1], false), (&[2, 3], true)]);
        t(
            &[&[1, 2, 3, 4], &[2, 3, 4, 5]],
            &[(&[1], false), (&[2, 3, 4], true), (&[5], false)],
        );
        t(
            &[&[2, 3, 4, 5], &[1, 2, 3, 4]],
            &[(&[1], false), (&[2, 3, 4], true), (&[5], false)],
        );
        t(
            &[&[1, 2, 3, 4], &[2, 3, 4, 5, 6], &[3, 4], &[5, 6]],
            &[
                (&[1], false),
                (&[2], true),
                (&[3, 4], true),
                (&[5, 6], true),
            ],
        );
        t(
            &[&[2, 3, 4, 5], &[2, 3, 4, 6], &[1, 3, 4, 5]],
            &[
                (&[1], false),
                (&[2], true),
                (&[3, 4], true),
                (&[5], true),
                (&[6], false),
            ],
        );
        t(&[&[1, 2], &[2, 1]], &[(&[1], true), (&[2], true)]);
    }

    #[test]
    fn snapshot_sharing_becomes_defs() {
        // Device 0 and 1 share leaves 10..12; device 1 has its own 20.
        let (defs, entries) = optimise(&[&[5, 10, 11, 12], &[10, 11, 12, 20], &[30]]);
        assert_eq!(
            defs,
            vec![Def {
                head: 10,
                leaves: vec![10, 11, 12]
            }]
        );
        assert_eq!(entries[0], vec![Entry::Leaf(5), Entry::Ref(10)]);
        assert_eq!(entries[1], vec![Entry::Ref(10), Entry::Leaf(20)]);
        assert_eq!(entries[2], vec![Entry::Leaf(30)]);
    }

    #[test]
    fn corrupt_cycles_terminate() {
        let _ = runs(&[&[1, 2, 1, 2, 1]]);
        let _ = optimise(&[&[7, 7, 7], &[7]]);
    }
}
