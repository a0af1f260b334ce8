//! thin_delta: the XML against the runs computed from the pool's mappings,
//! and against Debian's 0.9.0 `thin_delta` (same XML as 1.x but for the
//! final newline, which 1.x does not write), in simple and verbose form,
//! by device id and by root, on live metadata and on a metadata snapshot.

mod ls_fixtures;

use ls_fixtures::{debian, debian_ok, Model, Pool, Rng};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use uthin_tools::delta::{delta, DeltaOptions, Snap};
use uthin_tools::report::Report;

fn run(p: &Pool, opts: DeltaOptions) -> String {
    let mut out = Vec::new();
    delta(&p.meta, &opts, &Report::silent(), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn opts(a: u64, b: u64, verbose: bool) -> DeltaOptions {
    DeltaOptions {
        snap1: Snap::DevId(a),
        snap2: Snap::DevId(b),
        verbose,
        metadata_snap: false,
    }
}

/// The body (diff entries) the model gives: per virtual block a kind, then
/// maximal runs of one kind with the data of their first block.
fn expected_body(m: &Model, a: u64, b: u64, verbose: bool) -> String {
    let empty = BTreeMap::new();
    let (l, r) = (m.get(&a).unwrap_or(&empty), m.get(&b).unwrap_or(&empty));
    let mut keys: Vec<u64> = l.keys().chain(r.keys()).copied().collect();
    keys.sort();
    keys.dedup();
    // (kind, begin, len, left data, right data)
    let mut runs: Vec<(&str, u64, u64, u64, u64)> = Vec::new();
    for k in keys {
        let (kind, ld, rd) = match (l.get(&k), r.get(&k)) {
            (Some(&x), None) => ("left_only", x, 0),
            (None, Some(&y)) => ("right_only", y, 0),
            (Some(&x), Some(&y)) if x == y => ("same", x, 0),
            (Some(&x), Some(&y)) => ("different", x, y),
            (None, None) => unreachable!(),
        };
        match runs.last_mut() {
            Some(last) if last.0 == kind && last.1 + last.2 == k => last.2 += 1,
            _ => runs.push((kind, k, 1, ld, rd)),
        }
    }
    let mut s = String::new();
    let mut open: Option<&str> = None;
    for (kind, begin, len, ld, rd) in runs {
        if !verbose {
            write!(s, "\n    <{kind} begin=\"{begin}\" length=\"{len}\"/>").unwrap();
            continue;
        }
        if open != Some(kind) {
            if let Some(o) = open {
                write!(s, "\n    </{o}>").unwrap();
            }
            write!(s, "\n    <{kind}>").unwrap();
            open = Some(kind);
        }
        if kind == "different" {
            write!(s, "\n      <range begin=\"{begin}\" left_data_begin=\"{ld}\" right_data_begin=\"{rd}\" length=\"{len}\"/>").unwrap();
        } else {
            write!(
                s,
                "\n      <range begin=\"{begin}\" data_begin=\"{ld}\" length=\"{len}\"/>"
            )
            .unwrap();
        }
    }
    if let Some(o) = open {
        write!(s, "\n    </{o}>").unwrap();
    }
    s
}

/// 0.9.0's verbose output splits a `different` run where the right side's
/// data blocks stop being consecutive; 1.x merges abutting runs of a kind
/// whatever their data.  Merges abutting `<range>` lines of one element.
fn merge_abutting(xml: &str) -> String {
    let attr = |l: &str, a: &str| -> Option<u64> {
        let i = l.find(&format!(" {a}=\""))? + a.len() + 3;
        l[i..].split('"').next()?.parse().ok()
    };
    let mut out: Vec<String> = Vec::new();
    for line in xml.lines() {
        if let (Some(prev), Some(b), Some(len)) =
            (out.last_mut(), attr(line, "begin"), attr(line, "length"))
        {
            if line.trim_start().starts_with("<range") && prev.trim_start().starts_with("<range") {
                let (pb, pl) = (attr(prev, "begin").unwrap(), attr(prev, "length").unwrap());
                if pb + pl == b {
                    *prev = prev.replace(
                        &format!("length=\"{pl}\""),
                        &format!("length=\"{}\"", pl + len),
                    );
                    continue;
                }
            }
        }
        out.push(line.to_string());
    }
    out.iter().map(|l| format!("{l}\n")).collect()
}

fn pool() -> Pool {
    let mut p = Pool::new(16, 30_000);
    let mut rng = Rng(7);
    p.thin(1)
        .write(1, 0..5000)
        .write(1, [9000, 9001, 9003, 20_000]);
    p.snap(2, 1);
    let w: Vec<u64> = (0..400).map(|_| rng.below(6000)).collect();
    p.write(2, w)
        .write(2, 100..180)
        .discard(2, (3000..3100).chain([9001]));
    p.snap(3, 2);
    p.thin(4).write(4, 50..60);
    p.thin(5);
    p.commit();
    p
}

#[test]
fn matches_the_pool_and_debian() {
    let p = pool();
    let m = p.model();
    let sb = p.md.committed_superblock().unwrap();
    let head = format!(
        "<superblock uuid=\"\" time=\"{}\" transaction=\"{}\" data_block_size=\"128\" nr_data_blocks=\"30000\">",
        sb.time, sb.trans_id
    );
    let meta = p.meta.to_str().unwrap();
    for (a, b) in [
        (1, 2),
        (2, 1),
        (2, 3),
        (1, 4),
        (4, 5),
        (5, 5),
        (1, 1),
        (3, 1),
    ] {
        for verbose in [false, true] {
            let ours = run(&p, opts(a, b, verbose));
            let want = format!(
                "{head}\n  <diff left=\"{a}\" right=\"{b}\">{}\n  </diff>\n</superblock>",
                expected_body(&m, a, b, verbose)
            );
            assert_eq!(ours, want, "{a} vs {b} verbose {verbose}");
            let mut args = vec![
                "--snap1",
                &*Box::leak(a.to_string().into_boxed_str()),
                "--snap2",
            ];
            args.push(Box::leak(b.to_string().into_boxed_str()));
            if verbose {
                args.push("--verbose");
            }
            args.push(meta);
            let theirs = debian_ok("thin_delta", &args);
            assert_eq!(format!("{ours}\n"), merge_abutting(&theirs), "{a} vs {b}");
        }
    }
}

#[test]
fn roots_and_metadata_snapshot() {
    let mut p = pool();
    let before = p.model();
    p.md.reserve_metadata_snap().unwrap();
    p.commit();
    p.write(1, 6000..6100).discard(2, 0..50).commit();
    let after = p.model();
    let meta = p.meta.to_str().unwrap();

    // -m: the snapshot's mappings, and nr_data_blocks 0 as 1.x prints it.
    let o = DeltaOptions {
        metadata_snap: true,
        ..opts(1, 2, false)
    };
    let snap = run(&p, o);
    assert!(
        snap.starts_with("<superblock uuid=\"\" time=") && snap.contains("nr_data_blocks=\"0\">")
    );
    assert!(snap.contains(&expected_body(&before, 1, 2, false)));
    assert_eq!(
        format!("{snap}\n"),
        debian_ok("thin_delta", &["-m", "--snap1", "1", "--snap2", "2", meta])
    );
    let live = run(&p, opts(1, 2, false));
    assert!(live.contains(&expected_body(&after, 1, 2, false)));

    // --root1/--root2 name the trees directly.
    let r = uthin_tools::reader::Reader::open(&p.meta, Default::default(), 64).unwrap();
    let roots = uthin_tools::ls::device_roots(&r, &r.sb).unwrap();
    let o = DeltaOptions {
        snap1: Snap::Root(roots[&1]),
        snap2: Snap::Root(roots[&3]),
        ..opts(0, 0, true)
    };
    let by_root = run(&p, o);
    assert!(by_root.contains(&format!(
        "<diff left_root=\"{}\" right_root=\"{}\">",
        roots[&1], roots[&3]
    )));
    assert!(by_root.contains(&expected_body(&after, 1, 3, true)));
}

#[test]
fn needs_check_flag_and_errors() {
    let mut p = pool();
    p.md.set_needs_check().unwrap();
    p.commit();
    let out = run(&p, opts(1, 4, false));
    assert!(out.contains(" flags=\"1\" data_block_size="), "{out}");
    let mut sink = Vec::new();
    let e = delta(&p.meta, &opts(1, 77, false), &Report::silent(), &mut sink).unwrap_err();
    assert_eq!(e.to_string(), "Unable to find mapping tree for snap2 (77)");
    let o = DeltaOptions {
        snap1: Snap::Root(0),
        ..opts(1, 1, false)
    };
    assert!(delta(&p.meta, &o, &Report::silent(), &mut sink).is_err());
    let o = DeltaOptions {
        snap1: Snap::Root(1 << 40),
        ..opts(1, 1, false)
    };
    assert!(delta(&p.meta, &o, &Report::silent(), &mut sink).is_err());
    // No metadata snapshot: an error, as in 0.9.0.
    let o = DeltaOptions {
        metadata_snap: true,
        ..opts(1, 2, false)
    };
    assert!(delta(&p.meta, &o, &Report::silent(), &mut sink).is_err());
    assert!(!debian(
        "thin_delta",
        &[
            "-m",
            "--snap1",
            "1",
            "--snap2",
            "2",
            p.meta.to_str().unwrap()
        ]
    )
    .status
    .success());
}
