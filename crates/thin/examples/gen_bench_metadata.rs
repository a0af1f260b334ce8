//! Generates the metadata the tools benchmark runs on (not a test):
//! 32 thin devices of 1M mapped blocks each, mapped in runs of 1..256
//! blocks with gaps, plus 8 snapshots that share 90% of their origin (10% of
//! their mapped blocks overwritten).  About 33 million mappings.
//!
//! Usage: cargo run --release -p uthin-thin --example gen_bench_metadata OUT.meta [DEVICES] [BLOCKS_PER_DEVICE]

use std::sync::Arc;
use std::time::Instant;
use uthin_block_io::FileDevice;
use uthin_thin::{DevId, OpenOptions, PoolMetadata, VirtBlock};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .expect("usage: gen_bench_metadata OUT.meta [DEVICES] [BLOCKS_PER_DEVICE]");
    let devices: u64 = args.next().map_or(32, |s| s.parse().expect("DEVICES"));
    let per_dev: u64 = args
        .next()
        .map_or(1 << 20, |s| s.parse().expect("BLOCKS_PER_DEVICE"));
    let snaps = devices.min(8);
    let t = Instant::now();
    let _ = std::fs::remove_file(&out);
    // Generous sparse metadata: leaves filled in ascending order split
    // half full (16 bytes a mapping in a full leaf), so 40 bytes a mapping
    // plus slack; the format caps the device just under 16 GiB.
    let meta_bytes = ((devices * per_dev + snaps * per_dev / 2) * 40 + (64 << 20)).min(15 << 30);
    let dev = Arc::new(FileDevice::create(&out, meta_bytes).expect("create metadata file"));
    let mut opts = OpenOptions::new(128);
    opts.cache_blocks = 65536;
    let mut md = PoolMetadata::open(dev, opts).expect("format");
    let data_blocks = devices * per_dev + snaps * per_dev / 10 + 1024;
    md.resize_data_dev(data_blocks).unwrap();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut mapped: Vec<Vec<u64>> = Vec::new();
    for d in 0..devices {
        md.create_thin(DevId(d)).unwrap();
        let mut v = 0u64;
        let mut n = 0u64;
        let mut keys = Vec::new();
        while n < per_dev {
            v += rng.next() % 64;
            let run = (1 + rng.next() % 256).min(per_dev - n);
            for i in 0..run {
                let b = md.alloc_data_block().unwrap().expect("data space");
                md.insert_block(DevId(d), VirtBlock(v + i), b).unwrap();
                if d < snaps {
                    keys.push(v + i);
                }
            }
            v += run;
            n += run;
        }
        mapped.push(keys);
        md.commit().unwrap();
        eprint!("\rdevice {}/{devices}", d + 1);
    }
    for s in 0..snaps {
        let id = DevId(1000 + s);
        md.create_snap(id, DevId(s)).unwrap();
        let keys = &mapped[s as usize];
        for _ in 0..per_dev / 10 {
            let v = keys[(rng.next() % keys.len() as u64) as usize];
            let b = md.alloc_data_block().unwrap().expect("data space");
            md.insert_block(id, VirtBlock(v), b).unwrap();
        }
        md.commit().unwrap();
        eprint!("\rsnapshot {}/{snaps}   ", s + 1);
    }
    md.set_transaction_id(0, 1).unwrap();
    md.commit().unwrap();
    let total: u64 = md
        .device_ids()
        .unwrap()
        .iter()
        .map(|&d| md.mapped_count(d).unwrap())
        .sum();
    eprintln!(
        "\r{out}: {} devices, {total} mappings, {} metadata blocks used, {:.1} s",
        md.device_ids().unwrap().len(),
        md.metadata_dev_size().unwrap() - md.free_metadata_blocks().unwrap(),
        t.elapsed().as_secs_f64()
    );
    md.close().unwrap();
}
