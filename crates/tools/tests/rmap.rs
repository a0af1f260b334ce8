//! thin_rmap: runs against the pool's mappings and against Debian's 0.9.0
//! `thin_rmap`, whose line format and walk 1.x kept (1.x sorts lines by
//! data begin, data end, device, virtual begin).  Both walk a node shared
//! by several devices once, for the lowest device id: without snapshots the
//! lines are exactly the model's runs; with them, every line is a run of
//! its device and every mapped block in the regions is on some line.

#![allow(clippy::single_range_in_vec_init)]

mod ls_fixtures;

use ls_fixtures::{debian_ok, Model, Pool, Rng};
use std::ops::Range;
use uthin_tools::report::Report;
use uthin_tools::rmap::{rmap, RmapRun};

/// The runs the model gives: per device, consecutive virtual blocks mapped
/// to consecutive data blocks inside the regions.
fn expected(m: &Model, regions: &[Range<u64>]) -> Vec<RmapRun> {
    let mut out = Vec::new();
    for (&dev_id, dev) in m {
        let mut cur: Option<RmapRun> = None;
        for (&v, &d) in dev {
            if !regions.iter().any(|r| r.contains(&d)) {
                continue;
            }
            match cur.as_mut() {
                Some(c) if c.end == d && c.thin_begin + (c.end - c.begin) == v => c.end += 1,
                _ => {
                    out.extend(cur.take());
                    cur = Some(RmapRun {
                        begin: d,
                        end: d + 1,
                        dev_id,
                        thin_begin: v,
                    });
                }
            }
        }
        out.extend(cur);
    }
    out.sort();
    out
}

/// Every line is a run of its device; every mapped block in the regions is
/// on a line.
fn assert_consistent(runs: &[RmapRun], m: &Model, regions: &[Range<u64>]) {
    let mut seen = std::collections::BTreeSet::new();
    for r in runs {
        for i in 0..r.end - r.begin {
            assert_eq!(
                m[&r.dev_id].get(&(r.thin_begin + i)),
                Some(&(r.begin + i)),
                "{r}"
            );
            seen.insert(r.begin + i);
        }
    }
    let mapped: std::collections::BTreeSet<u64> = m
        .values()
        .flat_map(|d| d.values().copied())
        .filter(|d| regions.iter().any(|r| r.contains(d)))
        .collect();
    assert_eq!(seen, mapped);
}

fn text(runs: &[RmapRun]) -> String {
    runs.iter().map(|r| format!("{r}\n")).collect()
}

/// 0.9.0's lines in 1.x's order.
fn debian_sorted(meta: &str, regions: &[&str]) -> String {
    let mut args: Vec<&str> = regions.iter().flat_map(|r| ["--region", r]).collect();
    args.push(meta);
    let out = debian_ok("thin_rmap", &args);
    let mut lines: Vec<(RmapRun, &str)> = out
        .lines()
        .map(|l| {
            let n: Vec<u64> = l
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect();
            (
                RmapRun {
                    begin: n[0],
                    end: n[1],
                    dev_id: n[2],
                    thin_begin: n[3],
                },
                l,
            )
        })
        .collect();
    lines.sort();
    lines.iter().map(|(_, l)| format!("{l}\n")).collect()
}

fn snapshot_pool() -> Pool {
    let mut p = Pool::new(16, 20_000);
    p.thin(1).write(1, 0..3000).write(1, [5000, 5001, 7000]);
    p.snap(2, 1).write(2, (100..120).chain(2990..3010));
    p.snap(3, 2);
    p.thin(4).write(4, 0..50).map_to(4, 60, 3);
    p.commit();
    p
}

#[test]
fn every_device_and_region_matches_the_pool_and_debian() {
    let p = snapshot_pool();
    let m = p.model();
    let meta = p.meta.to_str().unwrap();
    for regions in [
        vec!["0..20000"],
        vec!["0..1"],
        vec!["100..200", "2995..3020"],
        vec!["3000..3003", "3003..3100"],
        vec!["19999..20000"],
    ] {
        let rs: Vec<Range<u64>> = regions
            .iter()
            .map(|r| uthin_tools::rmap::parse_region(r).unwrap())
            .collect();
        let ours = rmap(&p.meta, &rs, &Report::silent()).unwrap();
        assert_consistent(&ours, &m, &rs);
        assert_eq!(text(&ours), debian_sorted(meta, &regions), "{regions:?}");
    }
}

#[test]
fn scattered_mappings_in_deep_trees() {
    let mut p = Pool::new(32, 100_000);
    let mut rng = Rng(99);
    p.thin(1);
    let vs: Vec<u64> = (0..30_000).map(|_| rng.below(1 << 32)).collect();
    p.write(1, vs);
    p.snap(2, 1);
    let vs: Vec<u64> = (0..3_000).map(|_| rng.below(1 << 32)).collect();
    p.write(2, vs);
    p.commit();
    let m = p.model();
    let rs = vec![0..1000, 20_000..20_500, 32_000..100_000];
    let ours = rmap(&p.meta, &rs, &Report::silent()).unwrap();
    assert_consistent(&ours, &m, &rs);
    let regions = ["0..1000", "20000..20500", "32000..100000"];
    assert_eq!(
        text(&ours),
        debian_sorted(p.meta.to_str().unwrap(), &regions)
    );
}

#[test]
fn without_snapshots_lines_are_the_model_runs() {
    let mut p = Pool::new(16, 20_000);
    let mut rng = Rng(5);
    for id in [3, 1, 8] {
        p.thin(id).write(id, 0..700);
        let vs: Vec<u64> = (0..500).map(|_| rng.below(100_000)).collect();
        p.write(id, vs);
    }
    p.map_to(8, 1_000_000, 5).map_to(8, 1_000_001, 6).commit();
    let m = p.model();
    for rs in [vec![0..20_000], vec![5..7, 1000..1500], vec![2100..2101]] {
        assert_eq!(
            rmap(&p.meta, &rs, &Report::silent()).unwrap(),
            expected(&m, &rs),
            "{rs:?}"
        );
    }
}

#[test]
fn errors() {
    let p = snapshot_pool();
    assert!(rmap(&p.meta, &[], &Report::silent()).is_err());
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![1u8; 4096]).unwrap();
    let e = rmap(&junk, &[0..10], &Report::silent()).unwrap_err();
    assert!(e.to_string().contains("superblock"), "{e}");
}
