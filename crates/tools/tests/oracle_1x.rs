//! uthin's tools against thin-provisioning-tools 1.1.0 (the 1.x oracle, see
//! `oracle_1x_support`), on the images of `oracle_1x_support::images`:
//!
//! * `thin_dump` byte for byte: default XML, `-f human_readable`,
//!   `--skip-mappings`, `--dev-id` (one, several, absent), `-m`, the
//!   superblock overrides, `-r` on healthy metadata;
//! * `thin_check`: both accept each image, with each option set;
//! * `thin_ls`: every field, the default fields, `--no-headers`, `-m`;
//! * `thin_delta`: XML of pairs of devices, by id and by root, `--verbose`;
//! * round trips: what uthin's `thin_restore` writes (from uthin's 1.x
//!   form and from Debian 0.9.0's form) passes 1.1.0's `thin_check`, and
//!   1.1.0's and uthin's dumps of it are the same bytes; uthin dumps what
//!   1.1.0's `thin_restore` writes as 1.1.0 dumps it.
//!
//! Each test builds one image and runs every comparison on it.  uthin runs
//! through the library calls its command lines make (the output bytes are
//! the library's); `crates/cli/tests/oracle_1x_cli.rs` runs the binary.
//!
//! Known differences, each normalised only where it occurs:
//! * `thin_dump -r` on sound metadata ([`repair_scan_missed`]): 1.x scans
//!   every block for tree roots first and keeps the superblock only if its
//!   root pair is among the compatible pairs the scan finds; the scan takes
//!   a leaf whose values are all below the metadata size for a top-level
//!   leaf, so a device whose only mapping is to data block 0 makes the real
//!   tree look broken.  1.x then dumps the stale tree it found (warning
//!   "found N mapping trees without device details"), and on a pool without
//!   devices fails ("no compatible roots found").  That loses devices; uthin
//!   dumps a sound superblock's trees as they are.  There, uthin's `-r` dump
//!   must equal the plain dump (itself compared with 1.1.0's).
//! * `thin_check --skip-mappings` with NEEDS_CHECK set: 1.x tries to clear
//!   the flag on a read-only open and fails ([`skip_mappings_write_bug`]).
//! * NEEDS_CHECK through a round trip: both restores write flags 0 (1.1.0's
//!   too, see `needs_check_flag`), so the dump of the restored metadata
//!   lacks the original's `flags="1"`; only that attribute is removed before
//!   comparing.
//! * `thin_ls`'s default listing: 1.x walks every mapping to count MAPPED;
//!   uthin takes it from the device details (the issue asks the default
//!   fields not to walk the mappings).  The two agree whenever the details
//!   are right, which `thin_check` guarantees, so the stdout comparison
//!   stands unchanged.

mod oracle_1x_support;

use oracle_1x_support::images::{self, Image};
use oracle_1x_support::*;
use std::path::{Path, PathBuf};
use uthin_tools::check::{check_path, CheckOptions};
use uthin_tools::delta::{delta, DeltaOptions, Snap};
use uthin_tools::dump::{dump, DumpOptions, OutputFormat};
use uthin_tools::ir::SuperblockOverrides;
use uthin_tools::ls::{self, Field};
use uthin_tools::reader::{Reader, SbChoice};
use uthin_tools::report::Report;
use uthin_tools::restore::restore;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// uthin's `thin_dump` output with `opts` (as the command line writes it).
fn dump_u(img: &Path, opts: &DumpOptions) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    dump(img, Some(&out), opts, &Report::silent()).map_err(|e| e.to_string())?;
    Ok(std::fs::read_to_string(&out).expect("dump output"))
}

/// One thin_dump case: 1.1.0's arguments and uthin's options.
struct DumpCase {
    args: Vec<String>,
    opts: DumpOptions,
}

fn case(args: &[&str], f: impl FnOnce(&mut DumpOptions)) -> DumpCase {
    let mut opts = DumpOptions::default();
    f(&mut opts);
    DumpCase {
        args: args.iter().map(|a| a.to_string()).collect(),
        opts,
    }
}

fn dump_cases(img: &Image) -> Vec<DumpCase> {
    let hr = |o: &mut DumpOptions| o.format = OutputFormat::HumanReadable;
    let mut v = vec![
        case(&[], |_| {}),
        case(&["-f", "xml"], |_| {}),
        case(&["-f", "human_readable"], hr),
        case(&["--skip-mappings"], |o| o.skip_mappings = true),
        case(&["--skip-mappings", "-f", "human_readable"], |o| {
            o.skip_mappings = true;
            hr(o)
        }),
        case(&["--dev-id", "999999"], |o| o.dev_ids = Some(vec![999_999])),
        case(&["-r"], |o| o.repair = true),
        case(
            &[
                "--transaction-id",
                "1000",
                "--data-block-size",
                "256",
                "--nr-data-blocks",
                "3",
            ],
            |o| {
                o.overrides = SuperblockOverrides {
                    transaction_id: Some(1000),
                    data_block_size: Some(256),
                    nr_data_blocks: Some(3),
                }
            },
        ),
    ];
    if let (Some(&first), Some(&last)) = (img.devs.first(), img.devs.last()) {
        let (f, l) = (first.to_string(), last.to_string());
        v.push(case(&["--dev-id", &f], |o| o.dev_ids = Some(vec![first])));
        v.push(case(
            &["--dev-id", &l, "--dev-id", &f, "-f", "human_readable"],
            |o| {
                o.dev_ids = Some(vec![last, first]);
                hr(o)
            },
        ));
        v.push(case(&["--dev-id", &l, "--dev-id", "999999"], |o| {
            o.dev_ids = Some(vec![last, 999_999])
        }));
    }
    // -m: the held snapshot (1.1.0 fails as uthin does when none is held).
    v.push(case(&["-m"], |o| o.sb = SbChoice::MetadataSnap));
    v.push(case(&["-m", "-f", "human_readable"], |o| {
        o.sb = SbChoice::MetadataSnap;
        hr(o)
    }));
    v.push(case(&["-m", "--skip-mappings"], |o| {
        o.sb = SbChoice::MetadataSnap;
        o.skip_mappings = true
    }));
    v
}

/// Whether 1.1.0's `thin_dump -r` fell into the known difference (see the
/// module doc): its root scan missed the superblock's sound trees.
fn repair_scan_missed(t: &Out) -> bool {
    t.stderr.contains("no compatible roots found")
        || t.stderr.contains("mapping trees without device details")
}

/// Every thin_dump case: the same bytes, or both fail.
fn compare_dumps(img: &Image) {
    for c in dump_cases(img) {
        let mut args = c.args.clone();
        args.push(s(&img.path).to_string());
        let t = run1("thin_dump", &args);
        let u = dump_u(&img.path, &c.opts);
        let what = format!("{}: thin_dump {}", img.name, c.args.join(" "));
        if c.opts.repair && repair_scan_missed(&t) {
            let plain = dump_u(&img.path, &DumpOptions::default()).expect("plain dump");
            assert_text_eq(
                &what,
                ("uthin -r", &u.expect("uthin -r")),
                ("uthin", &plain),
            );
            continue;
        }
        match (u, t.code) {
            (Ok(u), 0) => assert_same(&what, &u, &t.stdout),
            (Err(_), c) if c != 0 => {}
            (Ok(_), c) => panic!("{what}: uthin dumps, 1.1.0 fails ({c}): {}", t.stderr),
            (Err(e), _) => panic!("{what}: uthin fails ({e}), 1.1.0 dumps"),
        }
    }
}

/// thin_check: both accept the image, whatever the option set (`light`:
/// 1.1.0's full check only once, for the images where it is slow).
fn compare_check(img: &Image, light: bool) {
    let mut sets: Vec<(Vec<&str>, CheckOptions)> = vec![
        (vec![], CheckOptions::default()),
        (
            vec!["--skip-mappings"],
            CheckOptions {
                skip_mappings: true,
                ..Default::default()
            },
        ),
        (
            vec!["--super-block-only"],
            CheckOptions {
                sb_only: true,
                ..Default::default()
            },
        ),
        (
            vec!["--ignore-non-fatal-errors"],
            CheckOptions {
                ignore_non_fatal: true,
                ..Default::default()
            },
        ),
    ];
    if img.held {
        sets.push((
            vec!["-m"],
            CheckOptions {
                metadata_snap: true,
                ..Default::default()
            },
        ));
    }
    if light {
        sets.retain(|(a, _)| a == &["--super-block-only"] || a == &["--skip-mappings"]);
    }
    for (args, opts) in sets {
        let u = check_path(&img.path, opts, &Report::silent()).expect("open");
        assert!(
            u.passed(),
            "{}: uthin thin_check {args:?} fails: {:?}",
            img.name,
            u.error
        );
        if args == ["--skip-mappings"] && skip_mappings_write_bug(&img.path) {
            continue;
        }
        assert!(
            check1_passes(&img.path, &args),
            "{}: 1.1.0 thin_check {args:?} fails",
            img.name
        );
    }
}

/// Known difference: 1.x's `thin_check --skip-mappings` clears NEEDS_CHECK
/// whether or not `--clear-needs-check-flag` was given; without it the
/// metadata is open read-only, the write fails and 1.x exits 64 with "Bad
/// file descriptor (os error 9)" (1.1.0, and the same code in the current
/// source).  uthin writes only when asked and passes.  True when `img` has
/// NEEDS_CHECK set and 1.1.0 failed that way.
fn skip_mappings_write_bug(img: &Path) -> bool {
    let r = Reader::open(img, SbChoice::Live, 16).expect("open");
    if !r.sb.needs_check() {
        return false;
    }
    let t = run1("thin_check", &[Path::new("--skip-mappings"), img]);
    t.code == 64
        && t.stderr
            .trim_end()
            .ends_with("Bad file descriptor (os error 9)")
}

const ALL_FIELDS: &str = "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,HIGHEST_BLOCK,\
MAPPED_SECTORS,EXCLUSIVE_SECTORS,SHARED_SECTORS,HIGHEST_SECTOR,MAPPED_BYTES,EXCLUSIVE_BYTES,\
SHARED_BYTES,HIGHEST_BYTE,MAPPED,EXCLUSIVE,SHARED,HIGHEST_MAPPED,TRANSACTION,CREATE_TIME,SNAP_TIME";

/// uthin's thin_ls output (as the command line prints it).
fn ls_u(img: &Path, msnap: bool, fields: &[Field], headers: bool) -> Result<String, String> {
    let l = ls::list(img, msnap, fields, &Report::silent()).map_err(|e| e.to_string())?;
    Ok(ls::render(fields, &l, headers))
}

fn compare_ls(img: &Image) {
    let all: Vec<Field> = ALL_FIELDS.split(',').map(|f| f.parse().unwrap()).collect();
    let some: Vec<Field> = ["SHARED", "DEV", "HIGHEST_BLOCK", "MAPPED_BLOCKS"]
        .iter()
        .map(|f| f.parse().unwrap())
        .collect();
    let cases: Vec<(Vec<&str>, bool, Vec<Field>, bool)> = vec![
        (vec![], false, ls::DEFAULT_FIELDS.to_vec(), true),
        (
            vec!["--no-headers"],
            false,
            ls::DEFAULT_FIELDS.to_vec(),
            false,
        ),
        (vec!["-o", ALL_FIELDS], false, all.clone(), true),
        (
            vec![
                "-o",
                "SHARED,DEV,HIGHEST_BLOCK,MAPPED_BLOCKS",
                "--no-headers",
            ],
            false,
            some,
            false,
        ),
        (vec!["-m"], true, ls::DEFAULT_FIELDS.to_vec(), true),
        (vec!["-m", "-o", ALL_FIELDS], true, all, true),
    ];
    for (args, msnap, fields, headers) in cases {
        let mut a = args.clone();
        a.push(s(&img.path));
        let t = run1("thin_ls", &a);
        let what = format!("{}: thin_ls {}", img.name, args.join(" "));
        match (ls_u(&img.path, msnap, &fields, headers), t.code) {
            (Ok(u), 0) => assert_same(&what, &u, &t.stdout),
            (Err(_), c) if c != 0 => {}
            (Ok(_), c) => panic!("{what}: uthin lists, 1.1.0 fails ({c}): {}", t.stderr),
            (Err(e), _) => panic!("{what}: uthin fails ({e}), 1.1.0 lists"),
        }
    }
}

/// The mapping-tree roots of the live devices.
fn roots(img: &Path) -> std::collections::BTreeMap<u64, u64> {
    let r = Reader::open(img, SbChoice::Live, 64).expect("open");
    ls::device_roots(&r, &r.sb).expect("roots")
}

fn delta_u(img: &Path, opts: &DeltaOptions) -> Result<String, String> {
    let mut out = Vec::new();
    delta(img, opts, &Report::silent(), &mut out).map_err(|e| e.to_string())?;
    Ok(String::from_utf8(out).expect("utf-8"))
}

fn compare_delta(img: &Image) {
    let roots = roots(&img.path);
    let mut pairs = img.pairs.clone();
    if let (Some(&a), Some(&b)) = (img.devs.first(), img.devs.last()) {
        pairs.push((b, a));
        pairs.push((a, a));
        pairs.push((a, 999_999));
    }
    for (a, b) in pairs {
        for verbose in [false, true] {
            let mut sides = vec![(
                vec![
                    "--snap1".to_string(),
                    a.to_string(),
                    "--thin2".into(),
                    b.to_string(),
                ],
                Snap::DevId(a),
                Snap::DevId(b),
            )];
            if let (Some(ra), Some(rb)) = (roots.get(&a), roots.get(&b)) {
                sides.push((
                    vec![
                        "--root1".into(),
                        ra.to_string(),
                        "--root2".into(),
                        rb.to_string(),
                    ],
                    Snap::Root(*ra),
                    Snap::Root(*rb),
                ));
            }
            for (mut args, snap1, snap2) in sides {
                if verbose {
                    args.push("--verbose".into());
                }
                let opts = DeltaOptions {
                    snap1,
                    snap2,
                    verbose,
                    metadata_snap: false,
                };
                args.push(s(&img.path).into());
                let t = run1("thin_delta", &args);
                let what = format!("{}: thin_delta {}", img.name, args.join(" "));
                match (delta_u(&img.path, &opts), t.code) {
                    (Ok(u), 0) => assert_same(&what, &u, &t.stdout),
                    (Err(_), c) if c != 0 => {}
                    (Ok(_), c) => panic!("{what}: uthin succeeds, 1.1.0 fails ({c}): {}", t.stderr),
                    (Err(e), _) => panic!("{what}: uthin fails ({e}), 1.1.0 succeeds"),
                }
            }
        }
    }
}

/// A sparse file of the image's size.
fn blank_like(img: &Path, to: &Path) -> PathBuf {
    let len = std::fs::metadata(img).unwrap().len();
    let f = std::fs::File::create(to).unwrap();
    f.set_len(len).unwrap();
    to.to_path_buf()
}

fn restore_u(xml: &Path, out: &Path) {
    restore(xml, out, SuperblockOverrides::default(), &Report::silent())
        .unwrap_or_else(|e| panic!("uthin thin_restore {}: {e}", xml.display()));
}

/// The round trips through both restores (`light`: only through uthin's
/// restore of its own dump, for the images where 1.1.0 is slow).
fn round_trips(img: &Image, light: bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let xml = dump_u(&img.path, &DumpOptions::default()).expect("dump");
    std::fs::write(d("u.xml"), &xml).unwrap();
    // Known difference: restores write flags 0 (see the module doc).
    let restored_xml = xml.replacen(r#" flags="1""#, "", 1);

    // uthin restores its 1.x-form dump: 1.1.0 accepts it and dumps it back.
    let m = blank_like(&img.path, &d("u.meta"));
    restore_u(&d("u.xml"), &m);
    assert_check1(&m, &format!("uthin's restore of {}", img.name));
    let back = run1_ok("thin_dump", &[&m]);
    assert_text_eq(
        &format!("{}: round trip through uthin's restore", img.name),
        ("1.1.0's dump of the restore", back.trim_end()),
        ("uthin's dump of the image", restored_xml.trim_end()),
    );
    assert_same(
        &format!("{}: dumps of uthin's restore", img.name),
        &dump_u(&m, &DumpOptions::default()).unwrap(),
        &back,
    );
    if light {
        return;
    }

    // uthin restores Debian 0.9.0's form (no defs): 1.1.0 accepts it, and
    // both dump it the same.
    let deb = std::process::Command::new("/usr/sbin/thin_dump")
        .arg(&img.path)
        .output()
        .expect("Debian's thin_dump 0.9.0: run scripts/install-test-deps.sh");
    assert!(
        deb.status.success(),
        "0.9.0 thin_dump failed on {}",
        img.name
    );
    std::fs::write(d("deb.xml"), &deb.stdout).unwrap();
    let m = blank_like(&img.path, &d("deb.meta"));
    restore_u(&d("deb.xml"), &m);
    assert_check1(
        &m,
        &format!("uthin's restore of 0.9.0's dump of {}", img.name),
    );
    assert_same(
        &format!("{}: dumps of uthin's restore of 0.9.0's form", img.name),
        &dump_u(&m, &DumpOptions::default()).unwrap(),
        &run1_ok("thin_dump", &[&m]),
    );

    // 1.1.0 restores uthin's dump: uthin dumps it as 1.1.0 does.
    let m = blank_like(&img.path, &d("t.meta"));
    run1_ok(
        "thin_restore",
        &[Path::new("-i"), &d("u.xml"), Path::new("-o"), &m],
    );
    assert_same(
        &format!("{}: dumps of 1.1.0's restore", img.name),
        &dump_u(&m, &DumpOptions::default()).unwrap(),
        &run1_ok("thin_dump", &[&m]),
    );
    assert!(
        check_path(&m, CheckOptions::default(), &Report::silent())
            .unwrap()
            .passed(),
        "{}: uthin thin_check rejects 1.1.0's restore",
        img.name
    );
}

fn compare_all(img: &Image) {
    compare_dumps(img);
    compare_check(img, false);
    compare_ls(img);
    compare_delta(img);
    round_trips(img, false);
}

#[test]
fn empty_pool() {
    let dir = tempfile::tempdir().unwrap();
    compare_all(&images::empty(dir.path()));
}

#[test]
fn thin_devices() {
    let dir = tempfile::tempdir().unwrap();
    compare_all(&images::thins(dir.path()));
}

#[test]
fn snapshots_sharing_subtrees() {
    let dir = tempfile::tempdir().unwrap();
    let img = images::snapshots(dir.path());
    let xml = dump_u(&img.path, &DumpOptions::default()).unwrap();
    assert!(
        xml.contains("<def ") && xml.contains("<ref "),
        "no sharing:\n{xml}"
    );
    compare_all(&img);
}

#[test]
fn held_metadata_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    compare_all(&images::held(dir.path()));
}

#[test]
fn largest_device_id() {
    let dir = tempfile::tempdir().unwrap();
    compare_all(&images::max_dev_id(dir.path()));
}

/// 1.1.0 takes about 40 s to check a data space map of 2^32 blocks, so
/// its full check runs once, on what uthin's restore wrote.
#[test]
fn data_blocks_beyond_2_pow_32() {
    let dir = tempfile::tempdir().unwrap();
    let img = images::big_data(dir.path());
    compare_dumps(&img);
    compare_check(&img, true);
    assert!(
        check_path(&img.path, CheckOptions::default(), &Report::silent())
            .unwrap()
            .passed()
    );
    compare_ls(&img);
    compare_delta(&img);
    round_trips(&img, true);
}

#[test]
fn many_devices() {
    let dir = tempfile::tempdir().unwrap();
    compare_all(&images::many_devices(dir.path()));
}

#[test]
fn multi_level_trees() {
    let dir = tempfile::tempdir().unwrap();
    compare_all(&images::multi_level(dir.path()));
}

/// NEEDS_CHECK: dumped as `flags="1"` by both; both restores drop it.
#[test]
fn needs_check_flag() {
    let dir = tempfile::tempdir().unwrap();
    let img = images::needs_check(dir.path());
    let xml = dump_u(&img.path, &DumpOptions::default()).unwrap();
    assert!(
        xml.starts_with(r#"<superblock uuid="" time="0" transaction="0" flags="1" "#),
        "{xml}"
    );
    compare_all(&img);
    let m = blank_like(&img.path, &img.path.with_extension("t"));
    std::fs::write(img.path.with_extension("xml"), &xml).unwrap();
    run1_ok(
        "thin_restore",
        &[
            Path::new("-i"),
            &img.path.with_extension("xml"),
            Path::new("-o"),
            &m,
        ],
    );
    let t = run1_ok("thin_dump", &[&m]);
    assert!(
        !t.contains("flags="),
        "1.1.0's restore kept the flags:\n{t}"
    );
}
