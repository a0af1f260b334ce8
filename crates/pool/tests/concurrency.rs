//! Concurrency: threads writing different sectors of the same blocks while
//! snapshots are taken, the pool commits and readers read.
//!
//! Every sector belongs to one writer thread, which stamps it with its own
//! tags in order (common/history.rs).  The blocks are provisioned, shared by
//! snapshots and broken again under the writers, so provisioning, breaking
//! sharing and in-place overwrites race on the same cells.  At the end each
//! sector of the origin holds its owner's last tag; every snapshot holds,
//! in every sector, a whole write of the owner (never a torn or foreign
//! sector), and readers never saw anything else either.

mod common;

use common::history::{decode, sector_bytes, SECTOR};
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use uthin_pool::DevId;

const BLOCKS: u64 = 4;
const WRITERS: u64 = 6;
const SECTORS: u64 = BLOCKS * BLOCK / SECTOR;

/// The writer owning sector `s`.
fn owner(s: u64) -> u64 {
    s % WRITERS
}

/// Tags of writer `w`: `w + 1 + WRITERS * i`, so the owner is recoverable.
fn tag(w: u64, i: u64) -> u32 {
    (w + 1 + WRITERS * i) as u32
}

fn check_sector(bytes: &[u8], s: u64, what: &str) -> u32 {
    let t = decode(bytes, s).unwrap_or_else(|e| panic!("{what}: sector {s} {e}"));
    assert!(
        t == 0 || (t as u64 - 1) % WRITERS == owner(s),
        "{what}: sector {s} holds foreign tag {t}"
    );
    t
}

#[test]
fn same_block_writers_with_snapshots() {
    let mut c = cfg();
    c.commit_period = Duration::from_millis(5);
    let (pool, meta, _d) = mem_pool(4, 256, c);
    pool.create_thin(DevId(1)).unwrap();
    let t = pool.thin(DevId(1), None).unwrap();
    let done = AtomicBool::new(false);
    let last: Vec<Vec<u32>> = std::thread::scope(|s| {
        let readers: Vec<_> = (0..2u64)
            .map(|r| {
                let (t, done) = (&t, &done);
                s.spawn(move || {
                    let mut rng = Rng(r + 100);
                    let mut buf = vec![0u8; BLOCK as usize];
                    while !done.load(Ordering::Relaxed) {
                        let b = rng.below(BLOCKS);
                        t.read(b * BLOCK, &mut buf).unwrap();
                        for (i, sec) in buf.chunks(SECTOR as usize).enumerate() {
                            check_sector(sec, b * BLOCK / SECTOR + i as u64, "live read");
                        }
                    }
                })
            })
            .collect();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let t = &t;
                s.spawn(move || {
                    let mut rng = Rng(w);
                    let mut mine = vec![0u32; SECTORS as usize];
                    for i in 0..400 {
                        let s = owner_sector(w, rng.below(SECTORS / WRITERS));
                        let tg = tag(w, i);
                        t.write(s * SECTOR, &sector_bytes(tg, s), i % 50 == 0)
                            .unwrap();
                        mine[s as usize] = tg;
                    }
                    mine
                })
            })
            .collect();
        for id in 2..12 {
            std::thread::sleep(Duration::from_millis(3));
            pool.create_snap(DevId(id), DevId(if id % 3 == 0 { id - 1 } else { 1 }))
                .unwrap();
        }
        let mut last = vec![];
        for w in writers {
            last.push(w.join().unwrap());
        }
        done.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        last
    });
    let mut buf = vec![0u8; (SECTORS * SECTOR) as usize];
    t.read(0, &mut buf).unwrap();
    for (i, sec) in buf.chunks(SECTOR as usize).enumerate() {
        let s = i as u64;
        let got = check_sector(sec, s, "origin");
        assert_eq!(
            got,
            last[owner(s) as usize][i],
            "origin sector {s}: not the last write"
        );
    }
    for id in 2..12 {
        let snap = pool.thin(DevId(id), None).unwrap();
        snap.read(0, &mut buf).unwrap();
        for (i, sec) in buf.chunks(SECTOR as usize).enumerate() {
            check_sector(sec, i as u64, &format!("snapshot {id}"));
        }
    }
    drop(t);
    pool.close().unwrap();
    assert_thin_check_image(&meta.snapshot());
}

/// Writer `w`'s `k`-th sector.
fn owner_sector(w: u64, k: u64) -> u64 {
    k * WRITERS + w
}
