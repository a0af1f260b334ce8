//! kill -9 of `uthin serve` in the middle of work, then a restart:
//! everything acknowledged before the last completed flush reads back, the
//! metadata passes Debian's thin_check, and the volume registry and the
//! pool agree without either being patched up by guesswork.

#[path = "../../nbd/tests/common/raw.rs"]
#[allow(dead_code)]
mod raw;
mod serve_common;

use serve_common::*;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;
use uthin_nbd::proto::{CMD_FLUSH, CMD_WRITE, FLAG_CAN_MULTI_CONN};

/// A small deterministic generator for the kill times.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn kill_during_writes_keeps_flushed_data() {
    let mut s = Served::small(&[]);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 1..=6u64 {
        // Acknowledged and flushed: must survive.
        let off = (round - 1) * MIB;
        qemu_io(
            &s.uri("vol0"),
            &[&format!("write -P {round} {off} 1M"), "flush"],
        );
        // Unflushed writes in flight while the daemon dies.
        let mut fio = Command::new("fio")
            .args([
                "--name=load",
                "--ioengine=nbd",
                &format!("--uri={}", s.uri("vol0")),
                "--rw=randwrite",
                "--bs=4k",
                "--offset=16M",
                "--size=32M",
                "--iodepth=16",
                "--time_based",
                "--runtime=30",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300 + next(&mut seed) % 900));
        s.kill9();
        let _ = fio.wait();
        // The committed metadata is consistent at any crash point.
        run(&["thin_check", s.metadata().to_str().unwrap()]);
        s.restart();
        for r in 1..=round {
            let o = (r - 1) * MIB;
            qemu_io(&s.uri("vol0"), &[&format!("read -P {r} {o} 1M")]);
        }
    }
}

/// Multi-connection flush semantics: a FLUSH on one connection makes the
/// writes completed on another durable (the export says CAN_MULTI_CONN).
#[test]
fn flush_on_one_connection_covers_writes_on_another() {
    let mut s = Served::small(&[]);
    let (mut a, _, flags) = raw::Raw::open(&s.sock(), "vol0", false, false);
    assert!(flags & FLAG_CAN_MULTI_CONN != 0);
    let (mut b, _, _) = raw::Raw::open(&s.sock(), "vol0", false, false);
    for (i, off) in [(1u64, 0u64), (2, 5 << 20), (3, (40 << 20) + 512)] {
        a.request(CMD_WRITE, 0, i, off, 8192);
        a.send(&vec![0x40 + i as u8; 8192]);
        assert_eq!(a.simple(), (0, i));
    }
    b.request(CMD_FLUSH, 0, 9, 0, 0);
    assert_eq!(b.simple(), (0, 9));
    s.kill9();
    s.restart();
    qemu_io(
        &s.uri("vol0"),
        &[
            "read -P 0x41 0 8k",
            "read -P 0x42 5M 8k",
            "read -P 0x43 41943552 8k",
        ],
    );
}

/// Thin device ids in the committed metadata, per Debian's thin_dump.
fn pool_devices(s: &Served) -> BTreeSet<u64> {
    let xml = run(&[
        "thin_dump",
        "--skip-mappings",
        s.metadata().to_str().unwrap(),
    ]);
    xml.lines()
        .filter_map(|l| l.trim().strip_prefix("<device dev_id=\""))
        .map(|l| l[..l.find('"').unwrap()].parse().unwrap())
        .collect()
}

#[test]
fn kill_during_volume_changes_keeps_registry_and_pool_in_step() {
    let mut s = Served::small(&["--no-first-volume"]);
    let dir = s.dir.to_str().unwrap().to_string();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..8 {
        // A stream of creates, snapshots and deletes from the CLI.
        let script = format!(
            "i=0; while true; do i=$((i+1)); \
             {bin} create r{round}v$i --size 1M --dir {dir} >/dev/null 2>&1; \
             {bin} snapshot r{round}v$i r{round}s$i --dir {dir} >/dev/null 2>&1; \
             {bin} delete r{round}v$i --dir {dir} >/dev/null 2>&1; done",
            bin = bin()
        );
        // In a process group of its own, so the whole loop can be stopped.
        let mut load = Command::new("setsid")
            .args(["sh", "-c", &script])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200 + next(&mut seed) % 800));
        // Stop the clients first (so none opens the pool itself once the
        // daemon is gone), then crash the daemon, which may still be
        // working on a request it read.
        Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", load.id())])
            .status()
            .unwrap();
        s.kill9();
        load.wait().unwrap();
        run(&["thin_check", s.metadata().to_str().unwrap()]);
        let devices = pool_devices(&s);
        s.restart();
        let log = s.log_text();
        for l in log.lines().filter(|l| l.contains("interrupted change")) {
            eprintln!("round {round}: {l}");
        }
        assert!(
            !log.contains("has no volume") && !log.contains("is not in the pool"),
            "the registry had to be patched up after a crash:\n{log}"
        );
        let list: serde_json::Value =
            serde_json::from_str(&s.cli(&["list", "--json", "--no-exclusive"])).unwrap();
        let ids: BTreeSet<u64> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["dev_id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, devices, "registry {list} vs pool");
    }
}
