//! Metadata engine benchmark (not a test): prints
//! * inserts and lookups per second for N mappings (default 10 million) in
//!   one device, sequential and random;
//! * snapshot creation time of a device with 10 and with N mapped blocks
//!   (they should be equal: a snapshot is one reference-count increment);
//! * commit time after 100k random inserts into the big device.
//!
//! Usage: cargo run --release -p uthin-thin --example bench_metadata [N] [DIR]
//! Files go to DIR (default: the system temp dir) and are removed afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};
use uthin_block_io::FileDevice;
use uthin_thin::{DevId, OpenOptions, PoolMetadata, VirtBlock};

/// A small xorshift generator, so the runs are repeatable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn rate(n: u64, d: Duration) -> String {
    format!(
        "{:.0}/s ({:.2} s for {n})",
        n as f64 / d.as_secs_f64(),
        d.as_secs_f64()
    )
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(10_000_000, |s| s.parse().expect("N"));
    let dir = std::env::args()
        .nth(2)
        .map_or_else(std::env::temp_dir, Into::into);
    let path = dir.join(format!("uthin-bench-{}.meta", std::process::id()));
    let dev = Arc::new(FileDevice::create(&path, 4 << 30).expect("metadata file"));
    let mut md = PoolMetadata::open(dev, OpenOptions::new(128)).expect("format");
    md.resize_data_dev(n + 1_000_000).unwrap();
    md.create_thin(DevId(0)).unwrap();
    md.create_thin(DevId(1)).unwrap();
    for v in 0..10 {
        let b = md.alloc_data_block().unwrap().unwrap();
        md.insert_block(DevId(1), VirtBlock(v), b).unwrap();
    }
    println!(
        "uthin metadata benchmark: {n} mappings, metadata file {}",
        path.display()
    );

    let ((), d) = time(|| {
        for v in 0..n {
            let b = md.alloc_data_block().unwrap().unwrap();
            md.insert_block(DevId(0), VirtBlock(v), b).unwrap();
        }
    });
    println!("sequential inserts:   {}", rate(n, d));
    let ((), d) = time(|| md.commit().unwrap());
    println!("commit after them:    {:.3} s", d.as_secs_f64());

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let ((), d) = time(|| {
        for _ in 0..n {
            let v = rng.next() % n;
            assert!(md.find_block(DevId(0), VirtBlock(v)).unwrap().is_some());
        }
    });
    println!("random lookups:       {}", rate(n, d));
    let ((), d) = time(|| {
        for v in 0..n {
            assert!(md.find_block(DevId(0), VirtBlock(v)).unwrap().is_some());
        }
    });
    println!("sequential lookups:   {}", rate(n, d));

    // Median of 51 snapshots each (ids 100.., 200..), each followed by a commit.
    for (origin, mapped, base) in [(1u64, 10u64, 100u64), (0, n, 200)] {
        let mut creates = Vec::new();
        let mut commits = Vec::new();
        for i in 0..51 {
            let ((), d) = time(|| md.create_snap(DevId(base + i), DevId(origin)).unwrap());
            let ((), c) = time(|| md.commit().unwrap());
            creates.push(d);
            commits.push(c);
        }
        creates.sort();
        commits.sort();
        println!(
            "snapshot of a device with {mapped:>9} mapped blocks: create {:>6.1} us, commit {:>6.2} ms (medians of 51)",
            creates[25].as_secs_f64() * 1e6,
            commits[25].as_secs_f64() * 1e3
        );
    }

    // Lookups at snapshot depth 1 and 1000: a chain of snapshots of device 1.
    let mut prev = DevId(1);
    for i in 0..1000u64 {
        let id = DevId(1000 + i);
        md.create_snap(id, prev).unwrap();
        prev = id;
    }
    md.commit().unwrap();
    for (depth, dev) in [(1u64, DevId(1000)), (1000, prev)] {
        let ((), d) = time(|| {
            for i in 0..1_000_000u64 {
                assert!(md.find_block(dev, VirtBlock(i % 10)).unwrap().is_some());
            }
        });
        println!(
            "lookups in a snapshot at depth {depth:>4}: {}",
            rate(1_000_000, d)
        );
    }

    let k = 100_000u64;
    let ((), d) = time(|| {
        for _ in 0..k {
            let b = md.alloc_data_block().unwrap().unwrap();
            let v = rng.next() % (2 * n);
            md.insert_block(DevId(0), VirtBlock(v), b).unwrap();
        }
    });
    println!(
        "random inserts (after snapshot, breaking sharing): {}",
        rate(k, d)
    );
    let ((), d) = time(|| md.commit().unwrap());
    println!("commit after 100k random inserts: {:.3} s", d.as_secs_f64());
    println!(
        "metadata used: {} of {} blocks",
        md.metadata_dev_size().unwrap() - md.free_metadata_blocks().unwrap(),
        md.metadata_dev_size().unwrap()
    );
    drop(md);
    let _ = std::fs::remove_file(&path);
}
