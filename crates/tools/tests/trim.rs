//! thin_trim on a regular data file: free runs become holes (the file's
//! allocated size shrinks and they read as zeroes), mapped blocks keep
//! their bytes, blocks only a held metadata snapshot still maps are kept,
//! and damaged metadata stops the trim before anything is discarded.

mod ls_fixtures;

use ls_fixtures::{Pool, Rng, BS};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use uthin_tools::report::Report;
use uthin_tools::trim::{trim, TrimError};

const BLOCK: u64 = BS as u64 * 512;

/// A data file of `nr` blocks, every block filled with its number.
fn data_file(dir: &Path, nr: u64) -> PathBuf {
    let p = dir.join("data");
    let f = std::fs::File::create(&p).unwrap();
    for b in 0..nr {
        f.write_all_at(&vec![(b % 251) as u8 + 1; BLOCK as usize], b * BLOCK)
            .unwrap();
    }
    p
}

fn block(p: &Path, b: u64) -> Vec<u8> {
    let mut buf = vec![0u8; BLOCK as usize];
    std::fs::File::open(p)
        .unwrap()
        .read_exact_at(&mut buf, b * BLOCK)
        .unwrap();
    buf
}

fn allocated(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().blocks() * 512
}

#[test]
fn punches_holes_in_free_runs_only() {
    let nr = 400;
    let mut p = Pool::new(8, nr);
    let mut rng = Rng(3);
    p.thin(1).write(1, 0..150);
    p.snap(2, 1).write(2, 10..30);
    let gone: Vec<u64> = (0..40).map(|_| rng.below(150)).collect();
    p.discard(1, gone).thin(3).write(3, 500..520).commit();
    let m = p.model();
    let data = data_file(p.dir.path(), nr);
    let before = allocated(&data);

    let stats = trim(&p.meta, &data, &Report::silent()).unwrap();

    let mapped: std::collections::BTreeSet<u64> =
        m.values().flat_map(|d| d.values().copied()).collect();
    let free = nr - mapped.len() as u64;
    assert_eq!(stats.blocks, free);
    assert!(stats.discards >= 2 && stats.discards <= free);
    assert!(allocated(&data) <= before - free * BLOCK, "holes punched");
    for b in 0..nr {
        let bytes = block(&data, b);
        if mapped.contains(&b) {
            assert!(
                bytes.iter().all(|&x| x == (b % 251) as u8 + 1),
                "mapped block {b} kept"
            );
        } else {
            assert!(bytes.iter().all(|&x| x == 0), "free block {b} discarded");
        }
    }
    // Trimming again finds the same runs and changes nothing mapped.
    assert_eq!(trim(&p.meta, &data, &Report::silent()).unwrap(), stats);
}

#[test]
fn blocks_a_metadata_snapshot_maps_are_kept() {
    let nr = 200;
    let mut p = Pool::new(8, nr);
    p.thin(1).write(1, 0..100).commit();
    let held = p.model();
    p.md.reserve_metadata_snap().unwrap();
    p.commit();
    p.discard(1, 0..100).commit();
    let data = data_file(p.dir.path(), nr);
    let stats = trim(&p.meta, &data, &Report::silent()).unwrap();
    for &b in held[&1].values() {
        assert!(
            block(&data, b).iter().all(|&x| x == (b % 251) as u8 + 1),
            "block {b}"
        );
    }
    assert!(stats.blocks <= nr - 100);
    // Released, the blocks are free.
    p.md.release_metadata_snap().unwrap();
    p.commit();
    let stats = trim(&p.meta, &data, &Report::silent()).unwrap();
    assert_eq!((stats.blocks, stats.discards), (nr, 1));
}

#[test]
fn damaged_metadata_or_small_data_device_stop_it() {
    let nr = 100;
    let mut p = Pool::new(8, nr);
    p.thin(1).write(1, 0..2000u64.min(nr)).commit();
    let data = data_file(p.dir.path(), nr - 1);
    match trim(&p.meta, &data, &Report::silent()) {
        Err(TrimError::Other(e)) => {
            assert!(e.to_string().contains("unexpected data device size"), "{e}")
        }
        r => panic!("{r:?}"),
    }
    let data = data_file(p.dir.path(), nr);
    let r = uthin_tools::reader::Reader::open(&p.meta, Default::default(), 64).unwrap();
    let roots = uthin_tools::ls::device_roots(&r, &r.sb).unwrap();
    drop(r);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&p.meta)
        .unwrap();
    f.write_all_at(&[0xFF; 8], roots[&1] * 4096 + 64).unwrap();
    let before = allocated(&data);
    match trim(&p.meta, &data, &Report::silent()) {
        Err(TrimError::Metadata(e)) => assert!(e.to_string().contains("checksum"), "{e}"),
        r => panic!("{r:?}"),
    }
    assert_eq!(allocated(&data), before, "nothing discarded");
    let missing = p.dir.path().join("nope");
    assert!(matches!(
        trim(&p.meta, &missing, &Report::silent()),
        Err(TrimError::Metadata(_)) | Err(TrimError::Other(_))
    ));
}
