//! The thin_check command line: every option, bad arguments and inputs
//! (each a one-line error, never a panic), exit codes (0 pass, 64 fail as
//! thin-provisioning-tools 1.x, 2 for bad arguments), and the multi-call
//! `thin_check` name.

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uthin_thin::{DevId, OpenOptions, PoolMetadata, VirtBlock};

const FAIL: i32 = 64;

/// A pool with three devices, a snapshot and (optionally) a held metadata snapshot.
fn pool(dir: &Path, name: &str, held: bool) -> PathBuf {
    let path = dir.join(name);
    let dev = Arc::new(uthin_block_io::FileDevice::create(&path, 8 << 20).unwrap());
    let mut md = PoolMetadata::open(dev, OpenOptions::new(128)).unwrap();
    md.resize_data_dev(10_000).unwrap();
    for d in 0..3 {
        md.create_thin(DevId(d)).unwrap();
        for v in 0..700 {
            let b = md.alloc_data_block().unwrap().unwrap();
            md.insert_block(DevId(d), VirtBlock(v * 3), b).unwrap();
        }
    }
    md.create_snap(DevId(9), DevId(0)).unwrap();
    md.commit().unwrap();
    if held {
        md.reserve_metadata_snap().unwrap();
        md.commit().unwrap();
    }
    md.close().unwrap();
    path
}

fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Flips a byte of the first leaf of device 0's mapping tree; returns its block.
fn damage_leaf(p: &Path) -> u64 {
    let img = std::fs::read(p).unwrap();
    let blk = |b: u64| &img[b as usize * 4096..(b as usize + 1) * 4096];
    let top = blk(le64(&img, 320));
    let mut b = le64(top, 32 + 8 * 252); // device 0's root (first entry)
    while u32::from_le_bytes(blk(b)[4..8].try_into().unwrap()) != 2 {
        b = le64(blk(b), 32 + 8 * 252);
    }
    let mut img = img.clone();
    img[b as usize * 4096 + 3000] ^= 1;
    std::fs::write(p, img).unwrap();
    b
}

fn uthin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_uthin"));
    c.arg("check");
    c
}

fn out(c: &mut Command) -> (i32, String, String) {
    let o = c.output().unwrap();
    let s = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    (o.status.code().unwrap_or(-1), s(&o.stdout), s(&o.stderr))
}

#[test]
fn healthy_pool_output_and_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let p = pool(dir.path(), "m", false);
    let (code, stdout, stderr) = out(uthin().arg(&p));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("TRANSACTION_ID=0\n") && stdout.contains("METADATA_FREE_BLOCKS="),
        "{stdout}"
    );
    assert!(stderr.starts_with("Checking thin metadata\n"), "{stderr}");
    for q in ["-q", "--quiet"] {
        assert_eq!(
            out(uthin().arg(q).arg(&p)),
            (0, String::new(), String::new())
        );
    }
}

#[test]
fn every_option_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let p = pool(dir.path(), "m", true);
    let img = std::fs::read(&p).unwrap();
    let mapping = le64(&img, 320).to_string();
    let details = le64(&img, 328).to_string();
    let sets: Vec<Vec<&str>> = vec![
        vec!["--super-block-only"],
        vec!["--skip-mappings"],
        vec!["--ignore-non-fatal-errors"],
        vec!["--clear-needs-check-flag"],
        vec!["--clear-needs-check-flag", "--super-block-only"],
        vec!["--clear-needs-check-flag", "--skip-mappings"],
        vec!["--clear-needs-check-flag", "--ignore-non-fatal-errors"],
        vec!["--auto-repair"],
        vec!["-m"],
        vec!["--metadata-snap"],
        vec!["--override-mapping-root", &mapping],
        vec!["--override-details-root", &details],
        vec!["-v", "--io-engine", "sync"],
    ];
    for s in sets {
        let (code, _, stderr) = out(uthin().args(&s).arg("-q").arg(&p));
        assert_eq!(code, 0, "{s:?}: {stderr}");
    }
    for v in ["-h", "--help"] {
        let (code, stdout, _) = out(uthin().arg(v));
        assert_eq!(code, 0);
        assert!(stdout.contains("thin_check"), "{v}: {stdout}");
    }
    // The bare 1.x version, alone only (LVM parses it with "%u.%u.%u").
    for v in ["-V", "--version"] {
        assert_eq!(out(uthin().arg(v)), (0, "1.3.3\n".into(), String::new()));
        assert_eq!(out(uthin().args([v, "-q"]).arg(&p)).0, 2);
    }
}

#[test]
fn bad_arguments_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = pool(dir.path(), "m", true);
    let bad: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--no-such-option"],
        vec!["--override-mapping-root", "abc"],
        vec!["--auto-repair", "-m"],
        vec!["--auto-repair", "--ignore-non-fatal-errors"],
        vec!["--auto-repair", "--super-block-only"],
        vec!["--auto-repair", "--skip-mappings"],
        vec!["--auto-repair", "--override-mapping-root", "1"],
        vec!["--clear-needs-check-flag", "-m"],
        vec!["--clear-needs-check-flag", "--override-details-root", "1"],
    ];
    for a in bad {
        let with_input = !a.is_empty();
        let mut c = uthin();
        c.args(&a);
        if with_input {
            c.arg(&p);
        }
        let (code, stdout, stderr) = out(&mut c);
        assert_eq!(code, 2, "{a:?}: {stderr}");
        assert!(
            stdout.is_empty() && stderr.starts_with("error:"),
            "{a:?}: {stderr}"
        );
    }
}

#[test]
fn bad_inputs_give_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tiny"), [1u8; 100]).unwrap();
    std::fs::write(d.join("zeros"), vec![0u8; 65536]).unwrap();
    std::fs::write(
        d.join("junk"),
        (0..65536u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let mut xml = b"<superblock uuid=\"\" time=\"0\">".to_vec();
    xml.resize(8192, b' ');
    std::fs::write(d.join("xml"), xml).unwrap();
    let cases = [
        ("missing", "Couldn't find input file"),
        ("", "Not a block device or regular file"),
        (
            "tiny",
            "Metadata device/file too small.  Is this binary metadata?",
        ),
        ("zeros", "bad checksum in superblock"),
        ("junk", "bad checksum in superblock"),
        (
            "xml",
            "This looks like XML.  This tool only supports the binary metadata format.",
        ),
    ];
    for (name, msg) in cases {
        let (code, stdout, stderr) = out(uthin().arg(d.join(name)));
        assert_eq!(code, FAIL, "{name}");
        assert!(stdout.is_empty(), "{name}: {stdout}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(
            stderr.contains(msg) && !stderr.contains("panicked"),
            "{name}: {stderr}"
        );
        assert_eq!(
            out(uthin().arg("-q").arg(d.join(name))),
            (FAIL, String::new(), String::new())
        );
    }
}

#[test]
fn damage_fails_with_the_block_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = pool(dir.path(), "m", false);
    let b = damage_leaf(&p);
    let (code, stdout, stderr) = out(uthin().arg(&p));
    assert_eq!(code, FAIL);
    assert!(stdout.contains("TRANSACTION_ID="));
    assert!(
        stderr.contains(&format!("node {b}: node error: checksum error")),
        "{stderr}"
    );
    assert!(
        stderr.trim_end().ends_with("Check of mappings failed"),
        "{stderr}"
    );
    assert_eq!(
        out(uthin().arg("-q").arg(&p)),
        (FAIL, String::new(), String::new())
    );
    let (code, _, _) = out(uthin().args(["--super-block-only", "-q"]).arg(&p));
    assert_eq!(code, 0);
}

#[test]
fn multi_call_name() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("thin_check");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_uthin"), &link).unwrap();
    let p = pool(dir.path(), "m", true);
    let run = |args: &[&str], input: Option<&Path>| {
        let mut c = Command::new(&link);
        c.args(args);
        if let Some(i) = input {
            c.arg(i);
        }
        out(&mut c)
    };
    let (code, stdout, _) = run(&[], Some(&p));
    assert_eq!(code, 0);
    assert!(stdout.contains("TRANSACTION_ID="));
    assert_eq!(
        run(&["-q", "-m"], Some(&p)),
        (0, String::new(), String::new())
    );
    let (code, stdout, _) = run(&["--help"], None);
    assert_eq!(code, 0);
    assert!(stdout.contains("Usage: thin_check"), "{stdout}");
    let (code, _, stderr) = run(&[], Some(&dir.path().join("nope")));
    assert_eq!(code, FAIL);
    assert_eq!(
        stderr.trim(),
        format!(
            "Couldn't find input file '{}'",
            dir.path().join("nope").display()
        )
    );
    damage_leaf(&p);
    let (code, _, stderr) = run(&[], Some(&p));
    assert_eq!(code, FAIL, "{stderr}");
}
