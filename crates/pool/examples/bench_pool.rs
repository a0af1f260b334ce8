//! Pool engine benchmark: in-process, 2 threads, 64 KiB blocks, files in a
//! temporary directory.  Each workload runs on a thin volume and, side by
//! side, with plain pread/pwrite on a file of the same size (the ceiling);
//! the ratio is printed.  Targets: overwrites and reads >= 0.9x, provisioning
//! writes with zeroing >= 0.5x.  Also times snapshot creation at a small and
//! a large mapped size (it must not grow).
//!
//! `cargo run --release -p uthin-pool --example bench_pool [volume_MiB] [ops]`
//! (defaults: 1024 MiB, 65536 4 KiB operations).  `BENCH_DIR` picks the
//! directory (default: the system temp dir), `BENCH_THREADS` the threads,
//! and `BENCH_ONLY=reads` runs only what the 4 KiB read figures need.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uthin_block_io::{FileDevice, SharedDevice};
use uthin_pool::{DevId, Pool, PoolConfig, Thin, VirtBlock};

const BLOCK: u64 = 64 << 10;
const SMALL: usize = 4 << 10;
const LARGE: usize = 1 << 20;
/// Threads per workload (`BENCH_THREADS`, default 2).
fn threads() -> usize {
    std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2)
}
const ROUNDS: usize = 5;

/// A tiny deterministic generator.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49eb_133d_111b);
        z ^ (z >> 31)
    }
}

/// Something to run a workload against.
trait Target: Sync {
    fn read(&self, off: u64, buf: &mut [u8]);
    fn write(&self, off: u64, buf: &[u8]);
}

impl Target for Thin {
    fn read(&self, off: u64, buf: &mut [u8]) {
        Thin::read(self, off, buf).expect("thin read");
    }
    fn write(&self, off: u64, buf: &[u8]) {
        Thin::write(self, off, buf, false).expect("thin write");
    }
}

struct Plain(File);
impl Target for Plain {
    fn read(&self, off: u64, buf: &mut [u8]) {
        self.0.read_exact_at(buf, off).expect("pread");
    }
    fn write(&self, off: u64, buf: &[u8]) {
        self.0.write_all_at(buf, off).expect("pwrite");
    }
}

/// Runs `offsets` (split between the threads) as reads or writes of `len`.
fn run(t: &dyn Target, offsets: &[u64], len: usize, write: bool) -> Duration {
    let threads = threads();
    let start = Instant::now();
    std::thread::scope(|s| {
        for part in offsets.chunks(offsets.len().div_ceil(threads)) {
            s.spawn(move || {
                let mut buf = vec![0x5au8; len];
                for (i, &off) in part.iter().enumerate() {
                    if write {
                        buf[..8].copy_from_slice(&(off ^ i as u64).to_le_bytes());
                        t.write(off, &buf);
                    } else {
                        t.read(off, &mut buf);
                    }
                }
            });
        }
    });
    start.elapsed()
}

fn report(name: &str, ops: usize, len: usize, thin: Duration, plain: Duration, target: f64) {
    let rate = |d: Duration| ops as f64 / d.as_secs_f64();
    let mbs = |d: Duration| (ops * len) as f64 / d.as_secs_f64() / (1 << 20) as f64;
    let ratio = plain.as_secs_f64() / thin.as_secs_f64();
    println!(
        "{name:<34} thin {:>9.0} op/s {:>7.0} MiB/s | plain {:>9.0} op/s {:>7.0} MiB/s | ratio {ratio:.2}x (target {target}x){}",
        rate(thin),
        mbs(thin),
        rate(plain),
        mbs(plain),
        if target > 0.0 && ratio < target { "  BELOW TARGET" } else { "" }
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let vol_mib: u64 = args.get(1).map_or(1024, |s| s.parse().expect("volume MiB"));
    let nops: usize = args.get(2).map_or(65536, |s| s.parse().expect("ops"));
    let vol = vol_mib << 20;
    let nblocks = vol / BLOCK;
    let dir = match std::env::var_os("BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("temp dir");
    println!(
        "pool engine benchmark: {vol_mib} MiB volumes, 64 KiB blocks, {} threads, {nops} small ops, dir {}",
        threads(),
        dir.path().display()
    );

    // Data: room for two full volumes, a snapshot's worth, and slack.
    let meta: SharedDevice =
        Arc::new(FileDevice::create(dir.path().join("meta"), 256 << 20).expect("meta"));
    let data_file =
        Arc::new(FileDevice::create(dir.path().join("data"), 3 * vol + (64 << 20)).expect("data"));
    let pool = Pool::open(meta, data_file.clone(), PoolConfig::new(128)).expect("open pool");
    for id in 1..=3 {
        pool.create_thin(DevId(id)).expect("create_thin");
    }
    let t1 = pool.thin(DevId(1), None).expect("thin 1");
    let t2 = pool.thin(DevId(2), None).expect("thin 2");
    let plain = |name: &str| {
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join(name))
            .expect("plain file");
        f.set_len(vol).expect("set_len");
        Plain(f)
    };
    let (pa, pb, pr) = (plain("plain-a"), plain("plain-b"), plain("plain-r"));

    let seq: Vec<u64> = (0..vol / LARGE as u64).map(|i| i * LARGE as u64).collect();
    let mut rng = Rng(42);
    let rand4k: Vec<u64> = (0..nops)
        .map(|_| rng.next() % (vol / SMALL as u64) * SMALL as u64)
        .collect();
    // Fresh-space writes: each to a different unprovisioned block.
    let mut blocks: Vec<u64> = (0..nblocks).collect();
    for i in (1..blocks.len()).rev() {
        blocks.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let fresh: Vec<u64> = blocks
        .iter()
        .take(nops.min(nblocks as usize))
        .map(|b| b * BLOCK + rng.next() % (BLOCK / SMALL as u64) * SMALL as u64)
        .collect();

    // Each comparison alternates plain and thin runs and keeps the best of
    // `ROUNDS` (the machine may be shared); dirty pages are written back
    // before each run so one run's writeback does not land on the next.
    let sync = || {
        for f in [data_file.file(), &pa.0, &pb.0, &pr.0] {
            f.sync_all().expect("sync");
        }
    };
    let best = |rounds: usize, f: &mut dyn FnMut() -> Duration| {
        (0..rounds)
            .map(|_| {
                sync();
                f()
            })
            .min()
            .expect("rounds")
    };
    let cmp = |name: &str,
               thin: &Thin,
               plain: &Plain,
               offs: &[u64],
               len: usize,
               write: bool,
               rounds: usize,
               target: f64| {
        let mut tt = Duration::MAX;
        let mut pp = Duration::MAX;
        for r in 0..rounds {
            if r % 2 == 0 {
                pp = pp.min(best(1, &mut || run(plain, offs, len, write)));
                tt = tt.min(best(1, &mut || run(thin, offs, len, write)));
            } else {
                tt = tt.min(best(1, &mut || run(thin, offs, len, write)));
                pp = pp.min(best(1, &mut || run(plain, offs, len, write)));
            }
        }
        report(name, offs.len(), len, tt, pp, target);
    };
    // Fresh space can only be written once per target.
    cmp(
        "1 MiB sequential writes (fresh)",
        &t1,
        &pa,
        &seq,
        LARGE,
        true,
        1,
        0.0,
    );
    let only_reads = std::env::var("BENCH_ONLY").is_ok_and(|s| s == "reads");
    if !only_reads {
        cmp(
            "1 MiB sequential overwrites",
            &t1,
            &pa,
            &seq,
            LARGE,
            true,
            ROUNDS,
            0.0,
        );
        cmp(
            "1 MiB sequential reads",
            &t1,
            &pa,
            &seq,
            LARGE,
            false,
            ROUNDS,
            0.0,
        );
    }
    // The page cache keeps the folio size a file was written with, and a
    // small write into a large folio costs more: the pool's data file was
    // written in 64 KiB pieces (one per block), so the ceiling for small
    // random I/O is a file written the same way.
    let blocks64k: Vec<u64> = (0..nblocks).map(|b| b * BLOCK).collect();
    run(&pr, &blocks64k, BLOCK as usize, true);
    if !only_reads {
        cmp(
            "4 KiB random overwrites",
            &t1,
            &pr,
            &rand4k,
            SMALL,
            true,
            ROUNDS,
            0.9,
        );
    }
    cmp(
        "4 KiB random reads",
        &t1,
        &pr,
        &rand4k,
        SMALL,
        false,
        ROUNDS,
        0.9,
    );
    // Where the gap comes from: the same reads as plain preads of the
    // pool's data file at the data blocks they map to (the engine's cost
    // alone, without the difference between the two files).
    let phys: Vec<u64> = pool.inspect_metadata(|md| {
        rand4k
            .iter()
            .map(|&off| {
                let l = md.find_block(DevId(1), VirtBlock(off / BLOCK));
                l.expect("lookup").expect("mapped").block.0 * BLOCK + off % BLOCK
            })
            .collect()
    });
    let df = Plain(File::open(dir.path().join("data")).expect("data file"));
    let (mut tt, mut pp) = (Duration::MAX, Duration::MAX);
    for r in 0..ROUNDS {
        for plain_side in [r % 2 == 0, r % 2 != 0] {
            sync();
            if plain_side {
                pp = pp.min(run(&df, &phys, SMALL, false));
            } else {
                tt = tt.min(run(&t1, &rand4k, SMALL, false));
            }
        }
    }
    report(
        "  the same, vs the pool's data file",
        rand4k.len(),
        SMALL,
        tt,
        pp,
        0.0,
    );
    if only_reads {
        return;
    }
    // Fresh space: disjoint equal parts of the fresh offsets, one per round,
    // in alternating order (a shorter remainder is left out, so every
    // round's time is for the same number of writes); then the time to make
    // it all durable (a flush of the thin volume, fdatasync of the plain
    // file).
    let (mut tt, mut pp) = (Duration::MAX, Duration::MAX);
    let part_len = (fresh.len() / ROUNDS).max(1);
    for (r, part) in fresh.chunks_exact(part_len).enumerate() {
        sync();
        let order: [bool; 2] = if r % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for plain_side in order {
            if plain_side {
                pp = pp.min(run(&pb, part, SMALL, true));
            } else {
                tt = tt.min(run(&t2, part, SMALL, true));
            }
        }
    }
    report(
        "4 KiB random writes, fresh space",
        part_len,
        SMALL,
        tt,
        pp,
        0.5,
    );
    let start = Instant::now();
    t2.flush().expect("flush");
    let tf = start.elapsed();
    let start = Instant::now();
    pb.0.sync_data().expect("fdatasync");
    let pf = start.elapsed();
    println!(
        "  final flush after the fresh writes: thin {:.0} ms, plain {:.0} ms",
        tf.as_secs_f64() * 1e3,
        pf.as_secs_f64() * 1e3
    );
    if let Ok(side) = std::env::var("BENCH_PROFILE") {
        // Profiling aid: repeat one side of the small-I/O workloads.
        let plain_side = side == "plain";
        for _ in 0..10 {
            let t = if plain_side {
                run(&pr, &rand4k, SMALL, false)
            } else {
                run(&t1, &rand4k, SMALL, false)
            };
            report(
                "4 KiB random reads (one side)",
                rand4k.len(),
                SMALL,
                t,
                t,
                0.0,
            );
        }
        return;
    }

    // Snapshot creation: volume 3 has a few blocks mapped, volume 1 all.
    let t3 = pool.thin(DevId(3), None).expect("thin 3");
    t3.write(0, &vec![1u8; 16 * BLOCK as usize], false)
        .expect("write");
    drop(t3);
    let mut next_id = 10;
    for (name, origin) in [("small (16 blocks)", 3), ("large (all blocks)", 1)] {
        let mapped = pool.inspect_metadata(|md| md.mapped_count(DevId(origin)).unwrap());
        let mut times = Vec::new();
        for _ in 0..5 {
            pool.commit().expect("commit");
            let start = Instant::now();
            pool.create_snap(DevId(next_id), DevId(origin))
                .expect("create_snap");
            times.push(start.elapsed().as_secs_f64() * 1e3);
            next_id += 1;
        }
        times.sort_by(f64::total_cmp);
        println!(
            "create_snap of a volume with {mapped:>6} mapped blocks ({name}): median {:.2} ms, min {:.2} ms (5 runs, commit included)",
            times[2], times[0]
        );
    }
    drop((t1, t2));
    pool.close().expect("close");
    println!("pool status at the end: {}", pool.status_line_noflush());
    engine_overhead();
}

/// A data device that does nothing: what is left is the engine's own cost.
struct Null(u64);
impl uthin_block_io::BlockDevice for Null {
    fn read_at(&self, _: &mut [u8], _: u64) -> std::io::Result<()> {
        Ok(())
    }
    fn write_at(&self, _: &[u8], _: u64) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.0)
    }
}

/// The engine's CPU cost per 4 KiB request (one thread, null data device,
/// metadata in memory, 16384 mapped blocks).
fn engine_overhead() {
    let meta: SharedDevice = Arc::new(uthin_block_io::testing::MemDevice::new(64 << 20));
    let mut c = PoolConfig::new(128);
    c.commit_period = Duration::ZERO;
    let pool = Pool::open(meta, Arc::new(Null(2 << 30)), c).expect("open");
    pool.create_thin(DevId(1)).expect("create");
    let t = pool.thin(DevId(1), None).expect("thin");
    let big = vec![1u8; BLOCK as usize];
    for b in 0..16384 {
        t.write(b * BLOCK, &big, false).expect("write");
    }
    let n = 1_000_000u64;
    let mut b = [0u8; SMALL];
    let mut time = |write: bool| {
        let mut rng = Rng(9);
        let start = Instant::now();
        for _ in 0..n {
            let off = rng.next() % 16384 * BLOCK + 4096;
            if write {
                t.write(off, &b, false).expect("write");
            } else {
                t.read(off, &mut b).expect("read");
            }
        }
        start.elapsed().as_nanos() as f64 / n as f64
    };
    let (r, w) = (time(false), time(true));
    println!(
        "engine CPU per 4 KiB request (null data device): read {r:.0} ns, overwrite {w:.0} ns"
    );
}
