//! `thin_rmap`: which thin devices map the data blocks of some regions, one
//! line per run as thin-provisioning-tools 1.x prints it:
//!
//! ```text
//! data 10..14 -> thin(1) 0..4
//! ```
//!
//! A run is consecutive data blocks mapped by consecutive virtual blocks of
//! one device, all inside the `--region BEGIN..END` ranges (end excluded).
//! Lines are sorted by data begin, data end, device, virtual begin.
//!
//! Devices are walked in id order and a B-tree node is walked only the first
//! time it is reached, as both 0.9.0 and 1.x do: mappings in nodes a device
//! shares with a device of lower id (a snapshot and its origin) are reported
//! once, under the lower id.  Every mapped data block in the regions
//! therefore appears at least once, but not once per device mapping it.

use crate::error::{Error, Result};
use crate::ls::nodes::{load_trees, Loaded, NodeReader};
use crate::ls::{device_roots, open_metadata};
use crate::reader::{Reader, SbChoice};
use crate::report::Report;
use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::Path;

/// Parses `BEGIN..END` (END > BEGIN) with 1.x's messages: the first
/// number's parse error, "badly formed region" when there is no second
/// number or a third part, the second number's parse error, then
/// "end <= begin".
pub fn parse_region(s: &str) -> std::result::Result<Range<u64>, String> {
    let mut parts = s.split("..");
    let num = |p: Option<&str>| -> std::result::Result<u64, String> {
        p.ok_or_else(|| "badly formed region".to_string())?
            .parse::<u64>()
            .map_err(|e| e.to_string())
    };
    let begin = num(parts.next())?;
    let end = num(parts.next())?;
    if parts.next().is_some() {
        return Err("badly formed region".into());
    }
    if end <= begin {
        return Err("end <= begin".into());
    }
    Ok(begin..end)
}

/// One output line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RmapRun {
    /// First data block.
    pub begin: u64,
    /// One past the last data block.
    pub end: u64,
    pub dev_id: u64,
    /// First virtual block.
    pub thin_begin: u64,
}

impl fmt::Display for RmapRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "data {}..{} -> thin({}) {}..{}",
            self.begin,
            self.end,
            self.dev_id,
            self.thin_begin,
            self.thin_begin.wrapping_add(self.end - self.begin)
        )
    }
}

fn in_regions(regions: &[Range<u64>], b: u64) -> bool {
    regions.iter().any(|r| r.contains(&b))
}

/// The runs of the metadata at `path` inside `regions`, sorted.
pub fn rmap(path: &Path, regions: &[Range<u64>], report: &Report) -> Result<Vec<RmapRun>> {
    let r = open_metadata(path, SbChoice::Live)?;
    rmap_reader(&r, regions, report)
}

/// [`rmap`] on open metadata.
pub fn rmap_reader(r: &Reader, regions: &[Range<u64>], report: &Report) -> Result<Vec<RmapRun>> {
    if regions.is_empty() {
        return Err(Error::msg("no region given"));
    }
    let roots = device_roots(r, &r.sb)?;
    let root_list: Vec<u64> = roots.values().copied().collect();
    let nr = NodeReader::new(r);
    report.start(
        "Reading mappings",
        r.sb.metadata_sm_root.nr_allocated.max(1),
    );
    // Leaves keep only their entries inside the regions.
    let map = load_trees(
        &nr,
        &root_list,
        |_, n| {
            Ok((0..n.nr_entries())
                .filter_map(|i| {
                    let d = u64::from_le_bytes(n.value(i).try_into().expect("8 bytes")) >> 24;
                    in_regions(regions, d).then(|| (n.key(i), d))
                })
                .collect::<Vec<(u64, u64)>>())
        },
        report,
    );
    report.finish();
    let map = map?;
    let mut out = Vec::new();
    let mut visited = HashSet::new();
    for (&dev_id, &root) in &roots {
        let mut cur: Option<RmapRun> = None;
        // Depth-first in key order, skipping nodes walked before.
        let mut stack = vec![root];
        while let Some(b) = stack.pop() {
            if !visited.insert(b) {
                continue;
            }
            let entries = match map.get(&b) {
                Some(Loaded::Leaf(entries)) => entries,
                Some(Loaded::Internal(children)) => {
                    stack.extend(children.iter().rev());
                    continue;
                }
                None => return Err(Error::msg(format!("mapping tree node {b} was not loaded"))),
            };
            for &(k, d) in entries {
                match cur.as_mut() {
                    Some(c)
                        if d == c.end && Some(k) == c.thin_begin.checked_add(c.end - c.begin) =>
                    {
                        c.end += 1
                    }
                    _ => {
                        out.extend(cur.take());
                        cur = Some(RmapRun {
                            begin: d,
                            end: d + 1,
                            dev_id,
                            thin_begin: k,
                        });
                    }
                }
            }
        }
        out.extend(cur);
    }
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_parse_as_1x() {
        assert_eq!(parse_region("0..18446744073709551615"), Ok(0..u64::MAX));
        for bad in [
            "0", "0.10", "..", "0..10,", "0..10..", "foo", "foo..10", "0..bar", "-1..0", "0..-1",
            "0..0", "5..4",
        ] {
            assert!(parse_region(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn run_text() {
        let r = RmapRun {
            begin: 10,
            end: 14,
            dev_id: 1,
            thin_begin: 0,
        };
        assert_eq!(r.to_string(), "data 10..14 -> thin(1) 0..4");
    }
}
