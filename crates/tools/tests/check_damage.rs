//! thin_check on damaged pools: each kind of damage is found, named by
//! block, with the right severity; Debian's 0.9.0 agrees where it detects
//! the damage too.

mod check_common;
use check_common::*;
use uthin_pdata::checksum::BlockKind;
use uthin_pdata::types::{le64, put32, put64};
use uthin_tools::check::{CheckOptions, Severity};

fn ignore_nf() -> CheckOptions {
    CheckOptions {
        ignore_non_fatal: true,
        ..CheckOptions::default()
    }
}

/// Flips a byte of block `b` (checksum left stale) and expects a report
/// naming the block; 0.9.0 must fail too.
fn flip_detected(path: &std::path::Path, b: u64, needles: &[&str]) {
    let orig = read(path, b);
    patch(path, b, None, |d| d[2000] ^= 0x40);
    let o = check_ok(path);
    let blk = format!("{b}");
    let mut n = needles.to_vec();
    n.push(&blk);
    assert_fails_with(&o, &n);
    assert!(!debian_passes(path), "0.9.0 missed damage to block {b}");
    write(path, b, &orig);
    assert!(check_ok(path).passed());
}

#[test]
fn flipped_bytes_in_every_block_kind() {
    let dir = tempfile::tempdir().unwrap();
    let p = build(
        dir.path(),
        "p",
        &Spec {
            mappings: 40_000,
            devices: 2,
            ..Spec::default()
        },
    );
    let s = sb(&p);
    let root = dev_root(&p, 1);
    let path = leftmost(&p, root);
    assert!(path.len() >= 2, "want an internal node");
    flip_detected(
        &p,
        *path.last().unwrap(),
        &["mapping tree", "checksum error"],
    );
    flip_detected(&p, path[0], &["mapping tree", "checksum error"]);
    flip_detected(&p, s.details, &["device details tree", "checksum error"]);
    flip_detected(&p, s.mapping, &["mapping tree top level", "checksum error"]);
    flip_detected(
        &p,
        s.data_sm[2],
        &["data space map index", "checksum error"],
    );
    flip_detected(&p, s.data_sm[3], &["data ref-count tree", "checksum error"]);
    flip_detected(
        &p,
        s.meta_sm[3],
        &["metadata ref-count tree", "checksum error"],
    );
    flip_detected(
        &p,
        s.meta_sm[2],
        &["metadata space map: index block", "checksum error"],
    );
    flip_detected(
        &p,
        data_bitmap0(&p),
        &["data space map: bitmap 0", "checksum error"],
    );
    flip_detected(
        &p,
        meta_bitmap0(&p),
        &["metadata space map: bitmap 0", "checksum error"],
    );
    // The superblock: the check cannot even start.
    patch(&p, 0, None, |d| d[100] ^= 1);
    let e = uthin_tools::check::check_path(
        &p,
        CheckOptions::default(),
        &uthin_tools::report::Report::silent(),
    );
    assert_eq!(e.unwrap_err().to_string(), "bad checksum in superblock");
    assert!(!debian_passes(&p));
}

#[test]
fn zeroed_leaf_and_broken_roots() {
    let dir = tempfile::tempdir().unwrap();
    let p = build(
        dir.path(),
        "p",
        &Spec {
            mappings: 5000,
            ..Spec::default()
        },
    );
    let leaf = *leftmost(&p, dev_root(&p, 2)).last().unwrap();
    write(&p, leaf, &[0u8; BS]);
    let o = check_ok(&p);
    assert_fails_with(
        &o,
        &[
            &format!("node {leaf}"),
            "checksum error",
            "Thin device 2 has 1 errors",
        ],
    );
    assert!(!debian_passes(&p));

    // The details root pointing at a bitmap.
    let p = small(dir.path(), "q");
    let bm = meta_bitmap0(&p);
    patch(&p, 0, Some(BlockKind::Superblock), |d| put64(d, 328, bm));
    let o = check_ok(&p);
    assert_fails_with(&o, &[&format!("node {bm}"), "not a btree node"]);
    assert!(!debian_passes(&p));

    // A mapping root beyond the end of the device.
    let p = small(dir.path(), "r");
    patch(&p, 0, Some(BlockKind::Superblock), |d| {
        put64(d, 320, 1 << 40)
    });
    assert_fails_with(&check_ok(&p), &["beyond the end"]);
}

#[test]
fn metadata_leak_is_non_fatal_and_repairable() {
    let dir = tempfile::tempdir().unwrap();
    let p = small(dir.path(), "p");
    let free = free_meta_block(&p);
    set_bitmap_entry(&p, meta_bitmap0(&p), 0, free, 1);
    let o = check_ok(&p);
    assert_fails_with(
        &o,
        &[
            &format!("metadata block {free} has leaked"),
            "1 metadata blocks have leaked",
            "--auto-repair",
        ],
    );
    assert!(
        o.problems.iter().all(|p| p.severity == Severity::NonFatal),
        "{}",
        text(&o)
    );
    assert!(!debian_passes(&p), "0.9.0 sees metadata leaks");
    assert!(check(&p, ignore_nf()).passed());
    let o = check(
        &p,
        CheckOptions {
            auto_repair: true,
            ..CheckOptions::default()
        },
    );
    assert!(o.passed(), "{}", text(&o));
    assert_eq!(o.leaks_repaired, 1);
    let after = check_ok(&p);
    assert!(
        after.passed() && after.problems.is_empty(),
        "{}",
        text(&after)
    );
    assert!(debian_passes(&p));
}

#[test]
fn data_leak_is_repairable() {
    let dir = tempfile::tempdir().unwrap();
    let p = small(dir.path(), "p");
    let bm = data_bitmap0(&p);
    let free = (0..16000)
        .find(|&b| bitmap_entry(&p, bm, 0, b) == 0)
        .unwrap();
    set_bitmap_entry(&p, bm, 0, free, 1);
    let before = sb(&p).data_sm[1];
    assert_fails_with(
        &check_ok(&p),
        &[
            &format!("data block {free} has leaked"),
            "data space map contains leaks",
        ],
    );
    let o = check(
        &p,
        CheckOptions {
            auto_repair: true,
            ..CheckOptions::default()
        },
    );
    assert!(o.passed() && o.leaks_repaired == 1, "{}", text(&o));
    assert!(sb(&p).data_sm[1] <= before);
    assert!(check_ok(&p).problems.is_empty());
    assert!(debian_passes(&p));
}

#[test]
fn over_counts_are_fatal_and_not_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let p = small(dir.path(), "p");
    let used = sb(&p).details;
    set_bitmap_entry(&p, meta_bitmap0(&p), 0, used, 2);
    let o = check_ok(&p);
    assert_fails_with(
        &o,
        &[
            &format!("metadata block {used}.  Expected 1, but space map contains 2"),
            "bad reference counts",
        ],
    );
    assert!(!debian_passes(&p));
    let img = std::fs::read(&p).unwrap();
    let o = check(
        &p,
        CheckOptions {
            auto_repair: true,
            ..CheckOptions::default()
        },
    );
    assert!(!o.passed());
    assert_eq!(
        std::fs::read(&p).unwrap(),
        img,
        "auto-repair touched a pool with fatal errors"
    );

    // A data block counted 2 that one leaf maps: 1.x's "bad reference counts".
    let p = small(dir.path(), "q");
    let bm = data_bitmap0(&p);
    let used = (0..16000)
        .find(|&b| bitmap_entry(&p, bm, 0, b) == 1)
        .unwrap();
    set_bitmap_entry(&p, bm, 0, used, 2);
    assert_fails_with(
        &check_ok(&p),
        &[
            &format!("data block {used}.  Expected 1"),
            "data space map: 1 data blocks have bad reference counts",
        ],
    );
}

#[test]
fn ref_count_tree_entry_must_match() {
    let dir = tempfile::tempdir().unwrap();
    // Three snapshots of device 0 that keep sharing its root: the root has
    // count 4, recorded in the metadata ref-count tree.
    let p = build(
        dir.path(),
        "p",
        &Spec {
            snapshots: 0,
            ..Spec::default()
        },
    );
    {
        use std::sync::Arc;
        let dev = Arc::new(uthin_block_io::FileDevice::open(&p, true).unwrap());
        let mut md =
            uthin_thin::PoolMetadata::open(dev, uthin_thin::OpenOptions::new(128)).unwrap();
        for s in 0..3 {
            md.create_snap(uthin_thin::DevId(10 + s), uthin_thin::DevId(0))
                .unwrap();
        }
        md.close().unwrap();
    }
    assert!(check_ok(&p).passed());
    let root = dev_root(&p, 0);
    let rc = sb(&p).meta_sm[3];
    let (leaf, keys, _) = node(&p, rc);
    assert!(
        leaf && keys.contains(&root),
        "root {root} not in ref-count tree {keys:?}"
    );
    let i = keys.iter().position(|&k| k == root).unwrap();
    patch(&p, rc, Some(BlockKind::Node), |d| {
        put32(d, 32 + 8 * 336 + 4 * i, 9)
    });
    assert_fails_with(
        &check_ok(&p),
        &[&format!(
            "metadata block {root}.  Expected 4, but space map contains 9"
        )],
    );
    assert!(!debian_passes(&p));
}

#[test]
fn unsorted_and_out_of_range_keys() {
    let dir = tempfile::tempdir().unwrap();
    let p = build(
        dir.path(),
        "p",
        &Spec {
            mappings: 5000,
            ..Spec::default()
        },
    );
    let leaf = *leftmost(&p, dev_root(&p, 1)).last().unwrap();
    let orig = read(&p, leaf);
    patch(&p, leaf, Some(BlockKind::Node), |d| {
        let (a, b) = (le64(d, 32 + 8 * 3), le64(d, 32 + 8 * 4));
        put64(d, 32 + 8 * 3, b);
        put64(d, 32 + 8 * 4, a);
    });
    assert_fails_with(
        &check_ok(&p),
        &[&format!("node {leaf}"), "keys out of order"],
    );
    assert!(!debian_passes(&p));
    write(&p, leaf, &orig);
    // The leaf's last key moved beyond its parent's next key.
    let (_, keys, _) = node(&p, leaf);
    patch(&p, leaf, Some(BlockKind::Node), |d| {
        put64(d, 32 + 8 * (keys.len() - 1), 1 << 50)
    });
    assert_fails_with(
        &check_ok(&p),
        &[&format!("node {leaf}"), "outside the parent's range"],
    );
}

#[test]
fn wrong_mapped_blocks_and_missing_devices() {
    let dir = tempfile::tempdir().unwrap();
    let p = small(dir.path(), "p");
    let details = sb(&p).details;
    patch(&p, details, Some(BlockKind::Node), |d| {
        put64(d, 32 + 8 * 126 + 24, 7)
    });
    assert_fails_with(
        &check_ok(&p),
        &["Thin device 1 has unexpected number of mappings, expected 7, actual 2000"],
    );
    // 0.9.0 does not check mapped_blocks (FORMAT.md §9).
    assert!(debian_passes(&p));

    let p = small(dir.path(), "q");
    let details = sb(&p).details;
    patch(&p, details, Some(BlockKind::Node), |d| {
        put64(d, 32 + 8 * 2, 77)
    });
    assert_fails_with(
        &check_ok(&p),
        &[
            "Inconsistency between the details tree and the mapping tree",
            "device 77 is in the details tree but not in the mapping tree",
            "device 2 is in the mapping tree but not in the details tree",
        ],
    );
}

#[test]
fn underfilled_nodes_and_max_entries_are_non_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let p = build(
        dir.path(),
        "p",
        &Spec {
            mappings: 5000,
            ..Spec::default()
        },
    );
    let path = leftmost(&p, dev_root(&p, 1));
    let leaf = *path.last().unwrap();
    // Shrink the leaf to 10 entries; its parent still covers the rest.
    patch(&p, leaf, Some(BlockKind::Node), |d| put32(d, 16, 10));
    let o = check_ok(&p);
    assert_fails_with(&o, &[&format!("node {leaf}"), "under-filled"]);
    let o = check(&p, ignore_nf());
    assert!(
        !o.passed() && !text(&o).contains("under-filled"),
        "{}",
        text(&o)
    );

    let p = small(dir.path(), "q");
    let details = sb(&p).details;
    patch(&p, details, Some(BlockKind::Node), |d| put32(d, 20, 125));
    let o = check_ok(&p);
    assert_fails_with(
        &o,
        &[
            &format!("node {details}"),
            "max_entries is not divisible by 3",
        ],
    );
}

#[test]
fn bad_superblock_fields() {
    let dir = tempfile::tempdir().unwrap();
    for (off, val, needle) in [
        (32usize, 1u64, "bad magic"),
        (336, 100, "bad data_block_size 100"),
        (8, 5, "blocknr mismatch"),
    ] {
        let p = small(dir.path(), &format!("p{off}"));
        patch(&p, 0, Some(BlockKind::Superblock), |d| {
            if off == 336 {
                put32(d, off, val as u32)
            } else {
                put64(d, off, val)
            }
        });
        for o in [
            check_ok(&p),
            check(
                &p,
                CheckOptions {
                    sb_only: true,
                    ..CheckOptions::default()
                },
            ),
        ] {
            assert_fails_with(&o, &["superblock", needle]);
        }
    }
}

#[test]
fn data_block_beyond_the_data_device() {
    let dir = tempfile::tempdir().unwrap();
    let p = small(dir.path(), "p");
    let leaf = *leftmost(&p, dev_root(&p, 0)).last().unwrap();
    patch(&p, leaf, Some(BlockKind::Node), |d| {
        put64(d, 32 + 8 * 252, (1u64 << 35) << 24)
    });
    assert_fails_with(
        &check_ok(&p),
        &[&format!(
            "leaf {leaf} maps 1 blocks beyond the end of the data device"
        )],
    );
}
