//! `thin_delta`: the differences between the mappings of two thin devices
//! (or two mapping-tree roots), as the XML of thin-provisioning-tools 1.x.
//!
//! Every virtual block mapped by either side is one of: `left_only`,
//! `right_only`, `same` (both map it to the same data block) or `different`.
//! Output is the maximal runs of consecutive blocks of one kind, in block
//! order:
//!
//! ```text
//! <superblock uuid="" time="2" transaction="5" data_block_size="128" nr_data_blocks="1000">
//!   <diff left="1" right="2">
//!     <same begin="0" length="2"/>
//!     <different begin="2" length="2"/>
//!   </diff>
//! </superblock>
//! ```
//!
//! `--verbose` groups consecutive runs of a kind in one element holding
//! `<range begin= data_begin= length=/>` (`left_data_begin=` and
//! `right_data_begin=` for `different`).  As 1.x does, a run's data
//! beginning is that of its first block even when the data blocks of the
//! run are not consecutive.  Attributes: `flags="1"` only when NEEDS_CHECK
//! is set; `nr_data_blocks` is the data space map's size (0 for a metadata
//! snapshot); `left_root`/`right_root` replace `left`/`right` for `--root1`/
//! `--root2`.  Indentation is two spaces; there is no newline after the
//! closing tag (1.x writes none).
//!
//! Both trees are loaded together, so nodes they share (after a snapshot)
//! are read once; each leaf becomes runs of consecutive virtual and data
//! blocks, and the two run lists are merged.

use crate::error::{Error, Result};
use crate::ls::nodes::{leaves_in_order, load_trees, Loaded, NodeReader};
use crate::ls::{devices, open_metadata};
use crate::reader::{Reader, SbChoice};
use crate::report::Report;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use uthin_pdata::btree::node::Node;

/// One side of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Snap {
    /// A thin device id (`--thin1`/`--snap1`).
    DevId(u64),
    /// A mapping-tree root block (`--root1`).
    Root(u64),
}

/// What to compare and how to print it.
#[derive(Clone, Copy, Debug)]
pub struct DeltaOptions {
    pub snap1: Snap,
    pub snap2: Snap,
    pub verbose: bool,
    /// Read the metadata snapshot instead of the live metadata.
    pub metadata_snap: bool,
}

/// Consecutive virtual blocks mapped to consecutive data blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub thin: u64,
    pub data: u64,
    pub len: u64,
}

/// The kind of a difference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    LeftOnly,
    RightOnly,
    Different,
    Same,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::LeftOnly => "left_only",
            Kind::RightOnly => "right_only",
            Kind::Different => "different",
            Kind::Same => "same",
        }
    }
}

/// A run of blocks of one kind; data beginnings are those of its first block
/// (`right_data` only for [`Kind::Different`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Diff {
    pub kind: Kind,
    pub begin: u64,
    pub len: u64,
    pub data: u64,
    pub right_data: u64,
}

fn push_run(runs: &mut Vec<Run>, thin: u64, data: u64, len: u64) {
    if let Some(r) = runs.last_mut() {
        if r.thin.checked_add(r.len) == Some(thin) && r.data.checked_add(r.len) == Some(data) {
            r.len += len;
            return;
        }
    }
    runs.push(Run { thin, data, len });
}

fn leaf_runs(n: &Node<'_>) -> Vec<Run> {
    let mut runs = Vec::new();
    for i in 0..n.nr_entries() {
        let v = u64::from_le_bytes(n.value(i).try_into().expect("8 bytes"));
        push_run(&mut runs, n.key(i), v >> 24, 1);
    }
    runs
}

/// The mapping runs of one tree, in order.
fn tree_runs(map: &HashMap<u64, Loaded<Vec<Run>>>, root: u64) -> Result<Vec<Run>> {
    let mut out: Vec<Run> = Vec::new();
    for leaf in leaves_in_order(map, root)? {
        let Some(Loaded::Leaf(runs)) = map.get(&leaf) else {
            continue;
        };
        for r in runs {
            if let Some(last) = out.last() {
                if r.thin < last.thin.saturating_add(last.len) {
                    return Err(Error::msg(format!(
                        "mapping tree at block {root}: key {} out of order in leaf {leaf}",
                        r.thin
                    )));
                }
            }
            push_run(&mut out, r.thin, r.data, r.len);
        }
    }
    Ok(out)
}

/// Appends `d`, merging it into the previous run of its kind if it follows it.
fn push_diff(out: &mut Vec<Diff>, d: Diff) {
    if let Some(last) = out.last_mut() {
        if last.kind == d.kind && last.begin.checked_add(last.len) == Some(d.begin) {
            last.len += d.len;
            return;
        }
    }
    out.push(d);
}

/// The differences between two run lists.
pub fn compare(left: &[Run], right: &[Run]) -> Vec<Diff> {
    fn take(it: &mut std::slice::Iter<'_, Run>, cur: &mut Option<Run>, len: u64) {
        if let Some(r) = cur {
            if len >= r.len {
                *cur = it.next().copied();
            } else {
                r.thin += len;
                r.data += len;
                r.len -= len;
            }
        }
    }
    let diff = |kind, begin, len, data, right_data| Diff {
        kind,
        begin,
        len,
        data,
        right_data,
    };
    let (mut li, mut ri) = (left.iter(), right.iter());
    let (mut l, mut r) = (li.next().copied(), ri.next().copied());
    let mut out = Vec::new();
    loop {
        match (l, r) {
            (Some(a), Some(b)) if a.thin < b.thin => {
                let len = a.len.min(b.thin - a.thin);
                push_diff(&mut out, diff(Kind::LeftOnly, a.thin, len, a.data, 0));
                take(&mut li, &mut l, len);
            }
            (Some(a), Some(b)) if b.thin < a.thin => {
                let len = b.len.min(a.thin - b.thin);
                push_diff(&mut out, diff(Kind::RightOnly, b.thin, len, b.data, 0));
                take(&mut ri, &mut r, len);
            }
            (Some(a), Some(b)) => {
                let len = a.len.min(b.len);
                let d = if a.data == b.data {
                    diff(Kind::Same, a.thin, len, a.data, 0)
                } else {
                    diff(Kind::Different, a.thin, len, a.data, b.data)
                };
                push_diff(&mut out, d);
                take(&mut li, &mut l, len);
                take(&mut ri, &mut r, len);
            }
            (Some(a), None) => {
                push_diff(&mut out, diff(Kind::LeftOnly, a.thin, a.len, a.data, 0));
                l = li.next().copied();
            }
            (None, Some(b)) => {
                push_diff(&mut out, diff(Kind::RightOnly, b.thin, b.len, b.data, 0));
                r = ri.next().copied();
            }
            (None, None) => return out,
        }
    }
}

/// Compares in the metadata at `path` and writes the XML to `out`.
pub fn delta(path: &Path, opts: &DeltaOptions, report: &Report, out: &mut dyn Write) -> Result<()> {
    let choice = if opts.metadata_snap {
        SbChoice::MetadataSnap
    } else {
        SbChoice::Live
    };
    let r = open_metadata(path, choice)?;
    delta_reader(&r, opts, report, out)
}

/// [`delta`] on open metadata.
pub fn delta_reader(
    r: &Reader,
    opts: &DeltaOptions,
    report: &Report,
    out: &mut dyn Write,
) -> Result<()> {
    let (roots, _) = devices(r, &r.sb)?;
    let root_of = |s: Snap, which: &str| match s {
        Snap::DevId(id) => roots
            .get(&id)
            .copied()
            .ok_or_else(|| Error::msg(format!("Unable to find mapping tree for {which} ({id})"))),
        Snap::Root(b) => Ok(b),
    };
    let root1 = root_of(opts.snap1, "snap1")?;
    let root2 = root_of(opts.snap2, "snap2")?;
    let nr = NodeReader::new(r);
    report.start(
        "Reading mappings",
        r.sb.metadata_sm_root.nr_allocated.max(1),
    );
    let map = load_trees(&nr, &[root1, root2], |_, n| Ok(leaf_runs(n)), report);
    report.finish();
    let map = map?;
    let diffs = compare(&tree_runs(&map, root1)?, &tree_runs(&map, root2)?);
    write_xml(r, opts, &diffs, out).map_err(|e| Error::msg(format!("writing the output: {e}")))
}

fn write_xml(
    r: &Reader,
    opts: &DeltaOptions,
    diffs: &[Diff],
    w: &mut dyn Write,
) -> std::io::Result<()> {
    let sb = &r.sb;
    write!(
        w,
        r#"<superblock uuid="" time="{}" transaction="{}""#,
        sb.time, sb.trans_id
    )?;
    if sb.needs_check() {
        write!(w, r#" flags="1""#)?;
    }
    write!(
        w,
        r#" data_block_size="{}" nr_data_blocks="{}">"#,
        sb.data_block_size, sb.data_sm_root.nr_blocks
    )?;
    let side = |s: Snap, name: &str| match s {
        Snap::DevId(id) => format!(r#"{name}="{id}""#),
        Snap::Root(b) => format!(r#"{name}_root="{b}""#),
    };
    write!(
        w,
        "\n  <diff {} {}>",
        side(opts.snap1, "left"),
        side(opts.snap2, "right")
    )?;
    let mut open: Option<Kind> = None;
    for d in diffs {
        if !opts.verbose {
            write!(
                w,
                "\n    <{} begin=\"{}\" length=\"{}\"/>",
                d.kind.tag(),
                d.begin,
                d.len
            )?;
            continue;
        }
        if open != Some(d.kind) {
            if let Some(k) = open {
                write!(w, "\n    </{}>", k.tag())?;
            }
            write!(w, "\n    <{}>", d.kind.tag())?;
            open = Some(d.kind);
        }
        if d.kind == Kind::Different {
            write!(
                w,
                "\n      <range begin=\"{}\" left_data_begin=\"{}\" right_data_begin=\"{}\" length=\"{}\"/>",
                d.begin, d.data, d.right_data, d.len
            )?;
        } else {
            write!(
                w,
                "\n      <range begin=\"{}\" data_begin=\"{}\" length=\"{}\"/>",
                d.begin, d.data, d.len
            )?;
        }
    }
    if let Some(k) = open {
        write!(w, "\n    </{}>", k.tag())?;
    }
    write!(w, "\n  </diff>\n</superblock>")?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(v: &[(u64, u64, u64)]) -> Vec<Run> {
        v.iter()
            .map(|&(thin, data, len)| Run { thin, data, len })
            .collect()
    }

    #[test]
    fn per_block_kinds_merge_into_runs() {
        // left 10..40 -> 1234.., 40..50 -> 2345..; right 20..70 -> 1244..
        let d = compare(
            &runs(&[(10, 1234, 30), (40, 2345, 10)]),
            &runs(&[(20, 1244, 50)]),
        );
        let k: Vec<_> = d.iter().map(|d| (d.kind, d.begin, d.len)).collect();
        assert_eq!(
            k,
            vec![
                (Kind::LeftOnly, 10, 10),
                (Kind::Same, 20, 20),
                (Kind::Different, 40, 10),
                (Kind::RightOnly, 50, 20)
            ]
        );
        assert_eq!((d[2].data, d[2].right_data), (2345, 1264));
    }

    #[test]
    fn same_runs_merge_across_data_gaps() {
        let d = compare(
            &runs(&[(0, 5, 2), (2, 9, 2)]),
            &runs(&[(0, 5, 2), (2, 9, 2)]),
        );
        assert_eq!(
            d,
            vec![Diff {
                kind: Kind::Same,
                begin: 0,
                len: 4,
                data: 5,
                right_data: 0
            }]
        );
    }
}
