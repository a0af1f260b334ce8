//! uthin's thin_repair against thin-provisioning-tools 1.1.0's, on the
//! images of `oracle_1x_support::images` and on damaged copies of them:
//! 1.1.0's thin_check accepts what uthin's repair writes; on sound
//! metadata uthin's repair keeps every device and mapping (as 1.1.0's
//! dump of it shows); on damaged metadata uthin recovers every mapping
//! 1.1.0's repair recovers.
//!
//! Known difference (see `oracle_1x.rs`, `repair_scan_missed`): 1.x's
//! root scan can miss a sound superblock's trees; then 1.1.0 fails ("no
//! compatible roots found", a pool without devices) or rebuilds from a
//! stale tree ("found N mapping trees without device details"), so its
//! result is not compared with the original.

mod dump_restore_support;
mod oracle_1x_support;

use dump_restore_support::{logical, Logical};
use oracle_1x_support::images::{self, Image};
use oracle_1x_support::*;
use std::path::{Path, PathBuf};
use uthin_tools::repair::{repair, Overrides, RepairOptions};
use uthin_tools::report::Report;

/// A sparse output file of `len` bytes.
fn blank(p: &Path, len: u64) -> PathBuf {
    std::fs::File::create(p).unwrap().set_len(len).unwrap();
    p.to_path_buf()
}

fn repair_u(img: &Path, out: &Path, dbs: Option<u32>) {
    let opts = RepairOptions {
        overrides: Overrides {
            data_block_size: dbs,
            ..Overrides::default()
        },
        ..RepairOptions::default()
    };
    repair(img, out, &opts, &Report::silent())
        .unwrap_or_else(|e| panic!("uthin thin_repair {}: {e}", img.display()));
}

/// The devices and mappings 1.1.0's thin_dump shows.
fn devices1(meta: &Path) -> Logical {
    logical(&run1_ok("thin_dump", &[meta])).1
}

fn scan_missed(o: &Out) -> bool {
    o.stderr.contains("no compatible roots found")
        || o.stderr.contains("mapping trees without device details")
}

/// Sound metadata: uthin's repair keeps everything; 1.1.0's repair agrees
/// unless its root scan missed the trees.
fn sound(img: &Image) {
    let dir = tempfile::tempdir().unwrap();
    let len = std::fs::metadata(&img.path).unwrap().len();
    let before = devices1(&img.path);
    let u = blank(&dir.path().join("u"), len);
    repair_u(&img.path, &u, None);
    assert_check1(&u, &format!("uthin's repair of {}", img.name));
    assert_eq!(
        devices1(&u),
        before,
        "{}: uthin's repair changed devices or mappings",
        img.name
    );
    let t = blank(&dir.path().join("t"), len);
    let o = run1(
        "thin_repair",
        &[Path::new("-i"), &img.path, Path::new("-o"), &t],
    );
    if scan_missed(&o) {
        return;
    }
    assert_eq!(o.code, 0, "{}: 1.1.0 thin_repair: {}", img.name, o.stderr);
    assert_eq!(devices1(&t), before, "{}: 1.1.0's repair differs", img.name);
}

#[test]
fn repair_of_sound_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for img in [
        images::empty(d),
        images::thins(d),
        images::snapshots(d),
        images::held(d),
        images::max_dev_id(d),
        images::many_devices(d),
        images::multi_level(d),
        images::needs_check(d),
    ] {
        sound(&img);
    }
}

/// The mappings of each device, details left out (a repair rebuilds them
/// when the details tree is lost).
fn maps(l: &Logical) -> std::collections::BTreeMap<u64, Vec<(u64, u64, u32)>> {
    l.iter().map(|(id, (_, m))| (*id, m.clone())).collect()
}

/// Every mapping of `theirs` that `orig` holds (all of them when `orig` is
/// None) is in `ours`.  With the superblock intact 1.x can still prefer a
/// stale tree of an older transaction (bringing back deleted devices and
/// discarded blocks) where uthin keeps the superblock's; those mappings
/// are not asked of uthin.
fn covers(what: &str, ours: &Logical, theirs: &Logical, orig: Option<&Logical>) {
    for (id, (_, maps)) in theirs {
        let mine = ours.get(id).map(|d| &d.1);
        let before = orig.map(|o| o.get(id).map(|d| &d.1));
        let missing: Vec<_> = maps
            .iter()
            .filter(|m| before.is_none_or(|b| b.is_some_and(|v| v.binary_search(m).is_ok())))
            .filter(|m| mine.is_none_or(|v| v.binary_search(m).is_err()))
            .take(5)
            .collect();
        assert!(
            missing.is_empty(),
            "{what}: device {id}: 1.1.0 recovers mappings uthin does not, e.g. {missing:?}"
        );
    }
}

/// uthin invents nothing: every device and mapping it recovers was there.
fn nothing_invented(what: &str, ours: &Logical, orig: &Logical) {
    for (id, (_, maps)) in ours {
        let before = orig.get(id).map(|d| &d.1);
        let extra: Vec<_> = maps
            .iter()
            .filter(|m| before.is_none_or(|v| v.binary_search(m).is_err()))
            .take(5)
            .collect();
        assert!(
            extra.is_empty(),
            "{what}: device {id}: uthin invents {extra:?}"
        );
    }
}

fn le64_at(p: &Path, off: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 8];
    std::fs::File::open(p)
        .unwrap()
        .read_exact_at(&mut b, off)
        .unwrap();
    u64::from_le_bytes(b)
}

fn zero_block(p: &Path, b: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    f.write_all_at(&[0u8; 4096], b * 4096).unwrap();
}

/// The blocks of `img` that hold B-tree nodes of the mapping trees, as
/// 1.1.0's dump names its shared leaves (def names are block numbers).
fn def_blocks(img: &Path) -> Vec<u64> {
    dump_restore_support::def_names(&run1_ok("thin_dump", &[img]))
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// Damaged metadata: a zeroed superblock (block size given), a zeroed
/// details root, a zeroed shared leaf, and pairs of them.  uthin's output
/// passes 1.1.0's check and holds every mapping 1.1.0's repair recovers;
/// with the superblock intact it invents nothing and, when no leaf was
/// lost, keeps every mapping.
#[test]
fn repair_of_damaged_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut compared = Vec::new();
    for img in [
        images::snapshots(d),
        images::multi_level(d),
        images::held(d),
    ] {
        let len = std::fs::metadata(&img.path).unwrap().len();
        let shared = def_blocks(&img.path);
        assert!(!shared.is_empty(), "{}: no shared leaves", img.name);
        let details = le64_at(&img.path, 328);
        let orig = devices1(&img.path);
        let damages: Vec<(&str, Vec<u64>)> = vec![
            ("zeroed superblock", vec![0]),
            ("zeroed details root", vec![details]),
            ("zeroed superblock and details root", vec![0, details]),
            ("zeroed shared leaf", vec![shared[shared.len() / 2]]),
            ("zeroed superblock and shared leaf", vec![0, shared[0]]),
        ];
        for (what, blocks) in damages {
            let what = format!("{}: {what}", img.name);
            let src = d.join("damaged");
            std::fs::copy(&img.path, &src).unwrap();
            for &b in &blocks {
                zero_block(&src, b);
            }
            let u = blank(&d.join("u"), len);
            repair_u(&src, &u, Some(128));
            assert_check1(&u, &format!("uthin's repair ({what})"));
            let ours = devices1(&u);
            // Without the superblock, which tree is the latest is a guess:
            // uthin and 1.x alike take the root pair whose mappings are
            // newest and most numerous, which can be the tree from before
            // a discard.  With it, uthin keeps the live trees.
            let sb_lost = blocks.contains(&0);
            if !sb_lost {
                nothing_invented(&what, &ours, &orig);
                if !what.ends_with("shared leaf") {
                    // No leaf was lost: every mapping comes back.
                    assert_eq!(maps(&ours), maps(&orig), "{what}: uthin lost mappings");
                }
            }
            let t = blank(&d.join("t"), len);
            let args = [
                Path::new("--data-block-size"),
                Path::new("128"),
                Path::new("-i"),
                &src,
                Path::new("-o"),
                &t,
            ];
            let o = run1("thin_repair", &args);
            if what.ends_with("shared leaf") {
                // 1.x's root scan rejects a top-level tree one of whose
                // subtrees is unreadable, so with a leaf gone it finds no
                // roots at all and recovers nothing; uthin recovers every
                // mapping in the undamaged leaves (repair_damage.rs).
                assert!(
                    o.stderr.contains("no compatible roots found"),
                    "{what}: {}",
                    o.stderr
                );
                continue;
            }
            assert_eq!(o.code, 0, "{what}: 1.1.0 thin_repair: {}", o.stderr);
            covers(&what, &ours, &devices1(&t), (!sb_lost).then_some(&orig));
            compared.push(what);
        }
    }
    assert_eq!(compared.len(), 9, "compared only {compared:?}");
}
