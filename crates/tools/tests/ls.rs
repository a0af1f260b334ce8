//! thin_ls: every field against values computed from the pool (mappings
//! read back through `PoolMetadata`), and against Debian's 0.9.0 `thin_ls`
//! for the fields and layout 1.x kept.  Pools have snapshots sharing whole
//! trees, snapshots whose sharing was broken by writes, empty devices, a
//! held metadata snapshot and trees several levels deep.

mod ls_fixtures;

use ls_fixtures::{debian_ok, shared_counts, Model, Pool, Rng, BS};
use std::collections::BTreeMap;
use uthin_tools::ls::{self, Field, Listing, DEFAULT_FIELDS};
use uthin_tools::metadata_size::units::compact_size;
use uthin_tools::report::Report;

fn all_fields() -> Vec<Field> {
    Field::all_names().map(|n| n.parse().unwrap()).collect()
}

fn list(p: &Pool, snap: bool, fields: &[Field]) -> Listing {
    ls::list(&p.meta, snap, fields, &Report::silent()).unwrap()
}

/// A pool with an origin, a snapshot whose sharing writes broke, a fresh
/// snapshot sharing everything, an empty device and a device mapping a data
/// block of another one directly.
fn mixed_pool() -> Pool {
    let mut p = Pool::new(8, 4000);
    p.thin(1).write(1, 0..300).write(1, [1000, 1001, 5000]);
    p.snap(2, 1)
        .write(2, (0..40).chain(250..260))
        .discard(2, [5000]);
    p.snap(3, 1);
    p.thin(4);
    p.thin(7).write(7, 10..20).map_to(7, 30, 5);
    p.commit();
    p
}

/// The expected cell values of one device, from the model.
fn expected(m: &Model, id: u64, shared: u64) -> BTreeMap<&'static str, String> {
    let dev = &m[&id];
    let mapped = dev.len() as u64;
    let highest = dev.keys().next_back().copied().unwrap_or(0);
    let bs = BS as u64;
    let mut e = BTreeMap::new();
    e.insert("DEV", id.to_string());
    e.insert("MAPPED_BLOCKS", mapped.to_string());
    e.insert("SHARED_BLOCKS", shared.to_string());
    e.insert("EXCLUSIVE_BLOCKS", (mapped - shared).to_string());
    e.insert("HIGHEST_BLOCK", highest.to_string());
    e.insert("MAPPED_SECTORS", (mapped * bs).to_string());
    e.insert("SHARED_SECTORS", (shared * bs).to_string());
    e.insert("EXCLUSIVE_SECTORS", ((mapped - shared) * bs).to_string());
    e.insert("HIGHEST_SECTOR", ((highest + 1) * bs - 1).to_string());
    e.insert("MAPPED_BYTES", (mapped * bs * 512).to_string());
    e.insert("SHARED_BYTES", (shared * bs * 512).to_string());
    e.insert(
        "EXCLUSIVE_BYTES",
        ((mapped - shared) * bs * 512).to_string(),
    );
    e.insert("HIGHEST_BYTE", ((highest + 1) * bs * 512 - 1).to_string());
    e
}

/// Cells of a rendered table: header name -> column, per row.
fn parse_table(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = text.lines();
    let heads: Vec<String> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    lines
        .map(|l| {
            heads
                .iter()
                .cloned()
                .zip(l.split_whitespace().map(String::from))
                .collect()
        })
        .collect()
}

#[test]
fn every_field_matches_the_pool() {
    let p = mixed_pool();
    let m = p.model();
    let shared = shared_counts(&m);
    let fields = all_fields();
    let listing = list(&p, false, &fields);
    let text = ls::render(&fields, &listing, true);
    let rows = parse_table(&text);
    assert_eq!(rows.len(), m.len());
    for (row, (&id, _)) in rows.iter().zip(&m) {
        for (k, v) in expected(&m, id, shared[&id]) {
            assert_eq!(row[k], v, "dev {id} field {k}\n{text}");
        }
    }
    // The snapshot that shares everything, and the broken one.
    assert_eq!(shared[&3], m[&3].len() as u64);
    assert!(shared[&2] < m[&2].len() as u64 && shared[&2] > 0);
    // Unit-less columns and details.
    let r4 = &rows[3];
    assert_eq!(
        (r4["MAPPED"].as_str(), r4["HIGHEST_MAPPED"].as_str()),
        ("0b", "64KiB")
    );
    let r1 = &rows[0];
    let bytes = m[&1].len() as u64 * 65536;
    assert_eq!(r1["MAPPED"], compact_size(bytes));
    assert_eq!(r1["MAPPED"], "19MiB");
    let d = p.md.device_details(uthin_thin::DevId(2)).unwrap();
    assert_eq!(rows[1]["TRANSACTION"], d.transaction_id.to_string());
    assert_eq!(rows[1]["CREATE_TIME"], d.creation_time.to_string());
    assert_eq!(rows[1]["SNAP_TIME"], d.snapshotted_time.to_string());
}

#[test]
fn layout_and_counting_fields_match_debian() {
    let p = mixed_pool();
    let meta = p.meta.to_str().unwrap();
    // Default fields: same table, except that 1.x writes 0 bytes as "0b".
    let ours = ls::render(DEFAULT_FIELDS, &list(&p, false, DEFAULT_FIELDS), true);
    let theirs = debian_ok("thin_ls", &[meta]);
    assert_eq!(
        ours.lines().map(str::len).collect::<Vec<_>>(),
        theirs.lines().map(str::len).collect::<Vec<_>>(),
        "\n{ours}\n{theirs}"
    );
    let mut want = parse_table(&theirs);
    for row in &mut want {
        if row["MAPPED"] == "0" {
            row.insert("MAPPED".into(), "0b".into());
        }
    }
    assert_eq!(parse_table(&ours), want);
    assert!(ours.ends_with(" \n") && theirs.ends_with(" \n"));
    // Every field 0.9.0 knows (it has no HIGHEST_*), no headers.
    let names = "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,MAPPED_SECTORS,EXCLUSIVE_SECTORS,\
                 SHARED_SECTORS,MAPPED_BYTES,EXCLUSIVE_BYTES,SHARED_BYTES,TRANSACTION,CREATE_TIME,SNAP_TIME";
    let fields: Vec<Field> = names.split(',').map(|n| n.parse().unwrap()).collect();
    let ours = ls::render(&fields, &list(&p, false, &fields), false);
    let theirs = debian_ok("thin_ls", &["--no-headers", "-o", names, meta]);
    assert_eq!(ours, theirs);
}

#[test]
fn default_fields_do_not_need_the_mappings() {
    // A leaf of device 1 is destroyed: the default listing (details and the
    // right edge of each tree) still works, the sharing columns fail cleanly.
    let mut p = Pool::new(8, 4000);
    p.thin(1).write(1, 0..2000).commit();
    let leaf = {
        let r = uthin_tools::reader::Reader::open(&p.meta, Default::default(), 64).unwrap();
        let roots = ls::device_roots(&r, &r.sb).unwrap();
        let d =
            r.tm.read(
                uthin_pdata::MetaBlock(roots[&1]),
                &uthin_pdata::validator::NODE,
            )
            .unwrap();
        uthin_pdata::btree::node::Node::new(&d).child(0).0
    };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&p.meta)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xAB; 64], leaf * 4096 + 100).unwrap();
    let fields = [Field::DevId, Field::Mapped, Field::HighestBlock];
    let l = list(&p, false, &fields);
    assert_eq!((l.rows[0].mapped, l.rows[0].highest), (2000, 1999));
    let err = ls::list(&p.meta, false, &[Field::Shared], &Report::silent()).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn metadata_snapshot_is_listed_as_it_was() {
    let mut p = mixed_pool();
    let before = p.model();
    p.md.reserve_metadata_snap().unwrap();
    p.commit();
    p.write(1, 300..400).snap(9, 7).commit();
    p.md.delete_thin(uthin_thin::DevId(2)).unwrap();
    p.commit();
    let fields = all_fields();
    let snap = list(&p, true, &fields);
    assert_eq!(
        snap.rows
            .iter()
            .map(|r| (r.dev_id, r.mapped))
            .collect::<Vec<_>>(),
        before
            .iter()
            .map(|(&id, d)| (id, d.len() as u64))
            .collect::<Vec<_>>()
    );
    let shared = shared_counts(&before);
    for r in &snap.rows {
        assert_eq!(r.shared, shared[&r.dev_id], "dev {}", r.dev_id);
    }
    let live = list(&p, false, &fields);
    let now = p.model();
    assert_eq!(live.rows.len(), now.len());
    assert!(live
        .rows
        .iter()
        .all(|r| r.shared == shared_counts(&now)[&r.dev_id]));
    // 0.9.0 agrees on the snapshot's mapped counts (-m).
    let theirs = debian_ok(
        "thin_ls",
        &[
            "-m",
            "--no-headers",
            "-o",
            "DEV,MAPPED_BLOCKS",
            p.meta.to_str().unwrap(),
        ],
    );
    let ours = ls::render(&[Field::DevId, Field::MappedBlocks], &snap, false);
    assert_eq!(ours, theirs);
    // No metadata snapshot held: a clear error.
    let q = mixed_pool();
    let e = ls::list(&q.meta, true, DEFAULT_FIELDS, &Report::silent()).unwrap_err();
    assert!(e.to_string().contains("no current metadata snap"), "{e}");
}

#[test]
fn deep_trees_with_many_snapshots() {
    // 60k mappings in runs and scattered blocks, 6 snapshots with random
    // overwrites and discards: three-level trees, shared subtrees at every
    // level, copied leaves.
    let mut p = Pool::new(64, 200_000);
    let mut rng = Rng(0x1234_5678);
    p.thin(1).write(1, 0..40_000);
    let scattered: Vec<u64> = (0..20_000).map(|_| 100_000 + rng.below(1 << 30)).collect();
    p.write(1, scattered);
    for s in 2..8 {
        p.snap(s, if s % 2 == 0 { 1 } else { s - 1 });
        let writes: Vec<u64> = (0..1500).map(|_| rng.below(40_000)).collect();
        p.write(s, writes);
        let discards: Vec<u64> = (0..300).map(|_| rng.below(40_000)).collect();
        p.discard(s, discards);
    }
    p.commit();
    let m = p.model();
    let shared = shared_counts(&m);
    let l = list(&p, false, &all_fields());
    for r in &l.rows {
        let dev = &m[&r.dev_id];
        assert_eq!(r.mapped, dev.len() as u64);
        assert_eq!(r.shared, shared[&r.dev_id], "dev {}", r.dev_id);
        assert_eq!(r.highest, *dev.keys().next_back().unwrap());
    }
    let names = "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS";
    let fields: Vec<Field> = names.split(',').map(|n| n.parse().unwrap()).collect();
    let theirs = debian_ok("thin_ls", &["-o", names, p.meta.to_str().unwrap()]);
    assert_eq!(ls::render(&fields, &l, true), theirs);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("junk");
    std::fs::write(&f, vec![7u8; 8192]).unwrap();
    let e = ls::list(&f, false, DEFAULT_FIELDS, &Report::silent()).unwrap_err();
    assert!(e.to_string().contains("superblock"), "{e}");
    std::fs::write(&f, vec![0u8; 100]).unwrap();
    assert!(ls::list(&f, false, DEFAULT_FIELDS, &Report::silent()).is_err());
    assert!(ls::list(
        &dir.path().join("none"),
        false,
        DEFAULT_FIELDS,
        &Report::silent()
    )
    .is_err());
}
