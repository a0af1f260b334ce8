//! thin_check's options: NEEDS_CHECK clearing, --auto-repair limits,
//! --super-block-only, --skip-mappings, -m and the root overrides.

mod check_common;
use check_common::*;
use uthin_pdata::checksum::BlockKind;
use uthin_pdata::types::put64;
use uthin_tools::check::CheckOptions;

fn opts(f: impl FnOnce(&mut CheckOptions)) -> CheckOptions {
    let mut o = CheckOptions::default();
    f(&mut o);
    o
}

fn leak(p: &std::path::Path) -> u64 {
    let free = free_meta_block(p);
    set_bitmap_entry(p, meta_bitmap0(p), 0, free, 1);
    free
}

#[test]
fn clear_needs_check_writes_only_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let p = small(dir.path(), "p");
    set_flags(&p, 1);
    let o = check_ok(&p);
    assert!(o.passed() && !o.needs_check_cleared && sb(&p).flags == 1);
    let before = std::fs::read(&p).unwrap();
    let o = check(&p, opts(|o| o.clear_needs_check = true));
    assert!(o.passed() && o.needs_check_cleared, "{}", text(&o));
    let after = std::fs::read(&p).unwrap();
    assert_eq!(sb(&p).flags, 0);
    let changed: Vec<usize> = (0..before.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    assert!(
        changed.iter().all(|&i| i < 8),
        "bytes changed beyond csum and flags: {changed:?}"
    );
    assert!(debian_passes(&p));
}

#[test]
fn needs_check_stays_when_the_check_fails() {
    let dir = tempfile::tempdir().unwrap();
    let p = small(dir.path(), "p");
    set_flags(&p, 1);
    let free = leak(&p);
    let o = check(&p, opts(|o| o.clear_needs_check = true));
    assert!(!o.passed() && sb(&p).flags == 1, "{}", text(&o));
    // A leak is non-fatal: ignored, the flag is cleared but the leak stays.
    let o = check(
        &p,
        opts(|o| {
            o.clear_needs_check = true;
            o.ignore_non_fatal = true
        }),
    );
    assert!(
        o.passed() && o.needs_check_cleared && o.leaks_repaired == 0,
        "{}",
        text(&o)
    );
    assert_eq!(bitmap_entry(&p, meta_bitmap0(&p), 0, free), 1);

    for (name, f) in [
        (
            "sb_only",
            (|o: &mut CheckOptions| o.sb_only = true) as fn(&mut CheckOptions),
        ),
        ("skip_mappings", |o: &mut CheckOptions| {
            o.skip_mappings = true
        }),
    ] {
        let p = small(dir.path(), name);
        set_flags(&p, 1);
        leak(&p);
        let o = check(
            &p,
            opts(|o| {
                o.clear_needs_check = true;
                f(o)
            }),
        );
        assert!(
            o.passed() && o.needs_check_cleared && sb(&p).flags == 0,
            "{name}: {}",
            text(&o)
        );
    }
}

#[test]
fn auto_repair_leaves_healthy_metadata_alone_and_clears_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let p = build(
        dir.path(),
        "p",
        &Spec {
            held_snap: true,
            ..Spec::default()
        },
    );
    let before = std::fs::read(&p).unwrap();
    let o = check(&p, opts(|o| o.auto_repair = true));
    assert!(o.passed() && o.leaks_repaired == 0);
    assert_eq!(std::fs::read(&p).unwrap(), before);
    set_flags(&p, 1);
    let o = check(&p, opts(|o| o.auto_repair = true));
    assert!(o.passed() && o.needs_check_cleared && sb(&p).flags == 0);
    // Many leaks over several bitmaps' worth of entries, with NEEDS_CHECK.
    set_flags(&p, 1);
    let bm = meta_bitmap0(&p);
    let free: Vec<u64> = (100..4000)
        .filter(|&b| bitmap_entry(&p, bm, 0, b) == 0)
        .take(40)
        .collect();
    for &b in &free {
        set_bitmap_entry(&p, bm, 0, b, 1);
    }
    assert!(!check_ok(&p).passed());
    let o = check(&p, opts(|o| o.auto_repair = true));
    assert!(
        o.passed() && o.leaks_repaired == 40 && o.needs_check_cleared,
        "{}",
        text(&o)
    );
    assert!(check_ok(&p).problems.is_empty());
    assert!(debian_passes(&p));
}

#[test]
fn writes_are_refused_outside_the_live_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let p = build(
        dir.path(),
        "p",
        &Spec {
            held_snap: true,
            ..Spec::default()
        },
    );
    for o in [
        opts(|o| {
            o.auto_repair = true;
            o.metadata_snap = true
        }),
        opts(|o| {
            o.clear_needs_check = true;
            o.override_mapping_root = Some(1)
        }),
        opts(|o| {
            o.clear_needs_check = true;
            o.override_details_root = Some(1)
        }),
    ] {
        let e = uthin_tools::check::Checker::open_path(&p, o).err().unwrap();
        assert_eq!(
            e.to_string(),
            "cannot perform repair outside the actual metadata"
        );
    }
}

#[test]
fn super_block_only_and_skip_mappings_skip_what_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let p = small(dir.path(), "p");
    let leaf = *leftmost(&p, dev_root(&p, 0)).last().unwrap();
    patch(&p, leaf, None, |d| d[3000] ^= 1);
    assert!(!check_ok(&p).passed());
    assert!(check(&p, opts(|o| o.sb_only = true)).passed());
    assert!(check(&p, opts(|o| o.skip_mappings = true)).passed());
    let details = sb(&p).details;
    patch(&p, details, None, |d| d[3000] ^= 1);
    assert!(check(&p, opts(|o| o.sb_only = true)).passed());
    let o = check(&p, opts(|o| o.skip_mappings = true));
    assert_fails_with(
        &o,
        &[
            &format!("device details tree: node {details}"),
            "checksum error",
        ],
    );

    // Only the superblock left: --super-block-only still passes.
    let p = small(dir.path(), "q");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(4096)
        .unwrap();
    assert!(check(&p, opts(|o| o.sb_only = true)).passed());
    assert!(!check_ok(&p).passed());
}

#[test]
fn metadata_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let p = build(
        dir.path(),
        "p",
        &Spec {
            held_snap: true,
            ..Spec::default()
        },
    );
    let held = sb(&p).held;
    assert!(held != 0);
    assert!(check(&p, opts(|o| o.metadata_snap = true)).passed());
    assert!(check_ok(&p).passed());
    // Damage a leaf only the live metadata has (device 500 came later).
    let leaf = *leftmost(&p, dev_root(&p, 500)).last().unwrap();
    patch(&p, leaf, None, |d| d[3000] ^= 1);
    assert!(!check_ok(&p).passed());
    assert!(check(&p, opts(|o| o.metadata_snap = true)).passed());
    // A damaged snapshot copy: -m fails at once, a full check at the end.
    let p = build(
        dir.path(),
        "q",
        &Spec {
            held_snap: true,
            ..Spec::default()
        },
    );
    patch(&p, held, None, |d| d[200] ^= 1);
    let e = snap_open_error(&p);
    assert!(
        e.contains("metadata snap: bad checksum in superblock"),
        "{e}"
    );
    assert_fails_with(
        &check_ok(&p),
        &["metadata snap: bad checksum in superblock"],
    );
    // No snapshot held.
    let p = small(dir.path(), "r");
    assert_eq!(snap_open_error(&p), "no current metadata snap");
}

/// With -m, a missing or unreadable snapshot fails on opening, before
/// TRANSACTION_ID is printed (as 1.x): the error.
fn snap_open_error(p: &std::path::Path) -> String {
    let o = opts(|o| o.metadata_snap = true);
    match uthin_tools::check::Checker::open_path(p, o) {
        Ok(_) => panic!("-m opened {}", p.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn snapshot_only_devices_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let p = build(
        dir.path(),
        "p",
        &Spec {
            held_snap: true,
            ..Spec::default()
        },
    );
    // Delete device 2 from the live metadata: only the snapshot has it.
    {
        use std::sync::Arc;
        let dev = Arc::new(uthin_block_io::FileDevice::open(&p, true).unwrap());
        let mut md =
            uthin_thin::PoolMetadata::open(dev, uthin_thin::OpenOptions::new(128)).unwrap();
        md.delete_thin(uthin_thin::DevId(2)).unwrap();
        md.close().unwrap();
    }
    assert!(check_ok(&p).passed());
    assert!(debian_passes(&p));
    // Its mapped_blocks in the snapshot's details tree is checked.
    let snap_details = sb_at(&p, sb(&p).held).details;
    let (_, keys, _) = node(&p, snap_details);
    let i = keys.iter().position(|&k| k == 2).unwrap();
    let bm = meta_bitmap0(&p);
    assert_eq!(
        bitmap_entry(&p, bm, 0, snap_details),
        1,
        "snapshot details leaf not exclusive"
    );
    patch(&p, snap_details, Some(BlockKind::Node), |d| {
        put64(d, 32 + 8 * 126 + 24 * i, 5)
    });
    assert_fails_with(
        &check_ok(&p),
        &["Thin device 2 has unexpected number of mappings, expected 5"],
    );
}

#[test]
fn override_roots() {
    let dir = tempfile::tempdir().unwrap();
    let p = small(dir.path(), "p");
    let s = sb(&p);
    let o = check(
        &p,
        opts(|o| {
            o.override_mapping_root = Some(s.mapping);
            o.override_details_root = Some(s.details)
        }),
    );
    assert!(o.passed(), "{}", text(&o));
    let o = check(&p, opts(|o| o.override_details_root = Some(s.mapping)));
    assert_fails_with(&o, &["device details tree", "value_size mismatch"]);
}
