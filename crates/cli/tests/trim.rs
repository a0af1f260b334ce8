//! thin_trim command line: --metadata-dev, --data-dev, -q, the multi-call
//! name, holes punched in a regular data file, exit 65 (1.x's code) with
//! 1.x's message on damaged metadata, 64 for other failures, 2 for bad
//! arguments.

mod ls_fixtures;

use ls_fixtures::{bad_inputs, fails, pool, tool, uthin};
use std::os::unix::fs::{FileExt, MetadataExt};

const BLOCK: u64 = 65536;

#[test]
fn trims_a_data_file() {
    let (dir, meta, md) = pool();
    let data = dir.path().join("data");
    let f = std::fs::File::create(&data).unwrap();
    for b in 0..2000u64 {
        f.write_all_at(&vec![0xC3; BLOCK as usize], b * BLOCK)
            .unwrap();
    }
    let before = std::fs::metadata(&data).unwrap().blocks() * 512;
    tool(dir.path(), "thin_trim")
        .arg("--metadata-dev")
        .arg(&meta)
        .arg("--data-dev")
        .arg(&data)
        .assert()
        .success()
        // As 1.x: thin_check's report first.
        .stdout(predicates::str::starts_with("TRANSACTION_ID="))
        .stderr("Checking thin metadata\ndevice details tree\nmapping tree\ndata space map\nmetadata space map\n");
    let after = std::fs::metadata(&data).unwrap().blocks() * 512;
    // 321 blocks are mapped (301 + 20 rewritten by the snapshot).
    assert!(
        after <= before - (2000 - 321) * BLOCK,
        "{before} -> {after}"
    );
    let f = std::fs::File::open(&data).unwrap();
    let mut buf = vec![0u8; BLOCK as usize];
    let mut mapped = std::collections::BTreeSet::new();
    for id in md.device_ids().unwrap() {
        md.for_each_mapping(
            id,
            uthin_thin::VirtBlock(0),
            uthin_thin::VirtBlock(u64::MAX),
            &mut |_, bt| {
                mapped.insert(bt.block.0);
            },
        )
        .unwrap();
    }
    assert_eq!(mapped.len(), 321);
    for b in 0..2000 {
        f.read_exact_at(&mut buf, b * BLOCK).unwrap();
        let want = if mapped.contains(&b) { 0xC3 } else { 0 };
        assert!(buf.iter().all(|&x| x == want), "block {b}");
    }
    uthin("trim")
        .args(["-q", "--metadata-dev"])
        .arg(&meta)
        .arg("--data-dev")
        .arg(&data)
        .assert()
        .success();
}

#[test]
fn damaged_metadata_and_bad_inputs() {
    let (dir, meta, _md) = pool();
    let data = dir.path().join("data");
    std::fs::File::create(&data)
        .unwrap()
        .set_len(2000 * BLOCK)
        .unwrap();
    // A mapping tree root with a broken checksum.
    let r = uthin_tools::reader::Reader::open(&meta, Default::default(), 64).unwrap();
    let root = uthin_tools::ls::device_roots(&r, &r.sb).unwrap()[&1];
    drop(r);
    let copy = dir.path().join("broken");
    std::fs::copy(&meta, &copy).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
    f.write_all_at(&[9; 16], root * 4096 + 200).unwrap();
    let e = fails(
        uthin("trim")
            .arg("--metadata-dev")
            .arg(&copy)
            .arg("--data-dev")
            .arg(&data),
        65,
    );
    assert!(e.ends_with("metadata contains errors (run thin_check for details).\nperhaps you need to run thin_repair.\n"), "{e}");
    assert!(e.contains("checksum"), "{e}");
    let out = uthin("trim")
        .args(["-q", "--metadata-dev"])
        .arg(&copy)
        .arg("--data-dev")
        .arg(&data)
        .assert()
        .code(65);
    assert!(out.get_output().stderr.is_empty());
    // A data device smaller than the pool.
    std::fs::File::create(&data)
        .unwrap()
        .set_len(1000 * BLOCK)
        .unwrap();
    let e = fails(
        uthin("trim")
            .arg("--metadata-dev")
            .arg(&meta)
            .arg("--data-dev")
            .arg(&data),
        64,
    );
    assert!(
        e.contains("unexpected data device size, wanted 131072000 bytes"),
        "{e}"
    );
    // Arguments.
    fails(uthin("trim").arg("--metadata-dev").arg(&meta), 2);
    fails(uthin("trim").arg("--data-dev").arg(&data), 2);
    fails(uthin("trim").arg(&meta), 2);
    for (path, msg) in bad_inputs(dir.path()) {
        // Junk fails the metadata check (65); the rest fail the input checks.
        let code = if msg.contains("superblock") || msg.contains("zeroes") {
            65
        } else {
            64
        };
        let e = fails(
            uthin("trim")
                .arg("--metadata-dev")
                .arg(&path)
                .arg("--data-dev")
                .arg(&data),
            code,
        );
        // Metadata that fails thin_check: 1.x's words only.
        let msg = if code == 65 {
            "metadata contains errors (run thin_check for details)"
        } else {
            msg
        };
        assert!(e.contains(msg), "{path:?}: {e}");
    }
    let e = fails(
        uthin("trim")
            .arg("--metadata-dev")
            .arg(&meta)
            .arg("--data-dev")
            .arg(dir.path().join("none")),
        64,
    );
    assert!(e.contains("Couldn't find input file"), "{e}");
}
