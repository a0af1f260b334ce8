//! Running out of data space under `uthin serve`: the low-water hook grows
//! the data file (as LVM's autoextend does) and writes carry on; with
//! error_if_no_space writes fail with ENOSPC until the file grows; by
//! default they wait for the file to grow.

mod serve_common;

use serve_common::*;
use std::time::{Duration, Instant};

fn data_blocks(s: &Served) -> u64 {
    let j: serde_json::Value = serde_json::from_str(&s.cli(&["status", "--json"])).unwrap();
    j["data_total_blocks"].as_u64().unwrap()
}

fn mode(s: &Served) -> String {
    let j: serde_json::Value = serde_json::from_str(&s.cli(&["status", "--json"])).unwrap();
    j["mode"].as_str().unwrap().to_string()
}

/// A pool of 64 data blocks (4 MiB) with a 64 MiB first volume.
fn tiny(extra: &[&str]) -> Served {
    let mut a = vec![
        "--data-size",
        "4M",
        "--metadata-size",
        "8M",
        "--first-volume-size",
        "64M",
        "--listen",
        "none",
    ];
    a.extend_from_slice(extra);
    Served::start(&a)
}

fn grow(path: &std::path::Path, bytes: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(bytes)
        .unwrap();
}

#[test]
fn low_water_hook_grows_the_data_file() {
    let tmp = tempfile::tempdir().unwrap();
    let events = tmp.path().join("events.log");
    let hook = format!(
        "echo \"$UTHIN_EVENT free=$UTHIN_FREE\" >> {ev}; \
         if [ \"$UTHIN_EVENT\" = data-low-water ]; then truncate -s +8M \"$UTHIN_DATA\"; fi",
        ev = events.display()
    );
    let s = Served::start(&[
        "--data-size",
        "8M",
        "--metadata-size",
        "8M",
        "--first-volume-size",
        "64M",
        "--listen",
        "none",
        "--low-water",
        "48",
        "--hook",
        &hook,
    ]);
    assert_eq!(data_blocks(&s), 128);
    // 20 MiB of writes need 320 blocks: the hook runs at each low-water
    // crossing (re-armed by every growth).
    for i in 0..20u64 {
        qemu_io(&s.uri("vol0"), &[&format!("write -P {} {}M 1M", i + 1, i)]);
    }
    qemu_io(&s.uri("vol0"), &["flush"]);
    for i in 0..20u64 {
        qemu_io(&s.uri("vol0"), &[&format!("read -P {} {}M 1M", i + 1, i)]);
    }
    let log = std::fs::read_to_string(&events).unwrap();
    assert!(log.contains("data-low-water free="), "{log}");
    assert!(data_blocks(&s) >= 320, "{log}");
    assert_eq!(mode(&s), "read-write");
    assert!(
        s.log_text().contains("the data device grew"),
        "{}",
        s.log_text()
    );
}

#[test]
fn error_if_no_space_fails_writes_until_the_file_grows() {
    let s = tiny(&["--error-if-no-space"]);
    qemu_io(&s.uri("vol0"), &["write -P 1 0 4M"]);
    let out = try_run(&[
        "qemu-io",
        "-f",
        "raw",
        "-c",
        "write -P 2 4M 1M",
        &s.uri("vol0"),
    ]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("No space left on device"), "{text}");
    assert_eq!(mode(&s), "out of data space");
    // Overwrites of provisioned blocks still work.
    qemu_io(&s.uri("vol0"), &["write -P 3 0 1M", "read -P 3 0 1M"]);
    grow(&s.data(), 16 << 20);
    let deadline = Instant::now() + Duration::from_secs(30);
    while mode(&s) != "read-write" {
        assert!(
            Instant::now() < deadline,
            "the pool did not follow the larger file"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    qemu_io(
        &s.uri("vol0"),
        &["write -P 2 4M 1M", "read -P 2 4M 1M", "read -P 1 1M 3M"],
    );
}

#[test]
fn writes_wait_for_space_by_default() {
    let mut s = tiny(&[]);
    qemu_io(&s.uri("vol0"), &["write -P 1 0 4M"]);
    let data = s.data();
    let grower = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        grow(&data, 16 << 20);
    });
    let t = Instant::now();
    qemu_io(&s.uri("vol0"), &["write -P 2 4M 2M", "flush"]);
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "the write did not wait"
    );
    grower.join().unwrap();
    qemu_io(&s.uri("vol0"), &["read -P 2 4M 2M", "read -P 1 0 4M"]);
    s.stop();
    run(&["thin_check", s.metadata().to_str().unwrap()]);
}
