//! Large writes of whole blocks: provisioned a run at a time, so two
//! volumes written at once still get consecutive data blocks per request;
//! over a snapshot's shared blocks they break sharing; short of space they
//! fall back to block by block.

mod common;

use common::*;
use uthin_pool::{DevId, Thin, VirtBlock};

const MIB: usize = 1 << 20;
const PER_MIB: u64 = MIB as u64 / BLOCK;

fn data_blocks(t: &Thin, first: u64, n: u64) -> Vec<u64> {
    t.pool().inspect_metadata(|md| {
        (first..first + n)
            .map(|v| {
                md.find_block(t.dev_id(), VirtBlock(v))
                    .unwrap()
                    .expect("mapped")
                    .block
                    .0
            })
            .collect()
    })
}

#[test]
fn concurrent_large_writes_get_consecutive_blocks() {
    let (pool, meta, _data) = mem_pool(4, 512, cfg());
    pool.create_thin(DevId(1)).unwrap();
    pool.create_thin(DevId(2)).unwrap();
    let vols = [
        pool.thin(DevId(1), None).unwrap(),
        pool.thin(DevId(2), None).unwrap(),
    ];
    std::thread::scope(|s| {
        for (i, t) in vols.iter().enumerate() {
            s.spawn(move || {
                for m in 0..8u64 {
                    let at = m * MIB as u64;
                    t.write(at, &pattern(i as u64, at, MIB), false).unwrap();
                }
            });
        }
    });
    for (i, t) in vols.iter().enumerate() {
        for m in 0..8u64 {
            let blocks = data_blocks(t, m * PER_MIB, PER_MIB);
            assert!(
                blocks.windows(2).all(|w| w[1] == w[0] + 1),
                "volume {i}, MiB {m}: {blocks:?}"
            );
        }
        let mut back = vec![0u8; 8 * MIB];
        t.read(0, &mut back).unwrap();
        assert_bytes(&back, &pattern(i as u64, 0, 8 * MIB), "volume");
    }
    drop(vols);
    pool.close().unwrap();
    assert_thin_check_image(&meta.snapshot());
}

#[test]
fn large_writes_over_a_snapshot_break_sharing() {
    let (pool, meta, _data) = mem_pool(4, 64, cfg());
    pool.create_thin(DevId(1)).unwrap();
    let t = pool.thin(DevId(1), None).unwrap();
    let old = pattern(1, 0, MIB);
    t.write(0, &old, false).unwrap();
    pool.create_snap(DevId(2), DevId(1)).unwrap();
    // Half of it mapped unshared again, the rest still shared: one request
    // over both goes block by block; one over the shared half alone runs.
    t.write(0, &pattern(2, 0, BLOCK as usize), false).unwrap();
    let new = pattern(3, 0, MIB);
    t.write(0, &new, false).unwrap();
    let half = MIB / 2;
    t.write(half as u64, &pattern(4, half as u64, half), false)
        .unwrap();
    let mut want = new.clone();
    want[half..].copy_from_slice(&pattern(4, half as u64, half));
    let mut back = vec![0u8; MIB];
    t.read(0, &mut back).unwrap();
    assert_bytes(&back, &want, "origin");
    let snap = pool.thin(DevId(2), None).unwrap();
    snap.read(0, &mut back).unwrap();
    assert_bytes(&back, &old, "snapshot");
    let (o, s) = (data_blocks(&t, 0, PER_MIB), data_blocks(&snap, 0, PER_MIB));
    assert!(o.iter().all(|b| !s.contains(b)), "{o:?} {s:?}");
    pool.inspect_metadata(|md| {
        for b in o.iter().chain(&s) {
            assert_eq!(md.data_block_count(uthin_pool::DataBlock(*b)).unwrap(), 1);
        }
    });
    drop((t, snap));
    pool.close().unwrap();
    assert_thin_check_image(&meta.snapshot());
}

#[test]
fn short_of_space_a_large_write_goes_block_by_block() {
    let mut c = cfg();
    c.features.error_if_no_space = true;
    let (pool, meta, _data) = mem_pool(4, 10, c);
    pool.create_thin(DevId(1)).unwrap();
    let t = pool.thin(DevId(1), None).unwrap();
    let bytes = pattern(5, 0, MIB);
    t.write(0, &bytes, false).expect_err("16 blocks into 10");
    // The first ten blocks were written, block by block.
    let mut back = vec![0u8; 10 * BLOCK as usize];
    t.read(0, &mut back).unwrap();
    assert_bytes(&back, &bytes[..back.len()], "written part");
    drop(t);
    pool.close().unwrap();
    assert_thin_check_image(&meta.snapshot());
}
