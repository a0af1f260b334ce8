//! `uthin serve` with real NBD clients: qemu-io (patterns, discard, write
//! -z), qemu-img convert / compare, nbdinfo --map, nbdcopy, and fio's nbd
//! engine with crc32c verification on two connections at once.

mod serve_common;

use serve_common::*;

#[test]
fn qemu_io_patterns_discard_and_zeroes() {
    let s = Served::small(&[]);
    let uri = s.uri("vol0");
    qemu_io(
        &uri,
        &[
            "write -P 0xaa 0 1M",
            "write -P 0xbb 3000000 100000",
            "write -P 0xcc 67104768 4k",
            "flush",
        ],
    );
    qemu_io(
        &uri,
        &[
            "read -P 0xaa 0 1M",
            "read -P 0xbb 3000000 100000",
            "read -P 0 3100000 10000",
            "read -P 0xcc 67104768 4k",
            "discard 0 512k",
            "read -P 0 0 512k",
            "read -P 0xaa 512k 512k",
            "write -z 3000000 100000",
            "read -P 0 2900000 300000",
            "write -z -u 8M 1M",
            "read -P 0 8M 1M",
        ],
    );
    // The discarded and never-written ranges are holes again.
    let map = run(&["nbdinfo", "--map", &uri]);
    let first: Vec<&str> = map.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(&first[..4], ["0", "524288", "3", "hole,zero"], "{map}");
    assert!(map.contains("524288      524288    0  data"), "{map}");
    // Reads past the end fail; the volume's size is what was asked.
    let out = try_run(&["qemu-io", "-f", "raw", "-c", "read 64M 4k", &uri]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("failed") || !out.status.success(), "{text}");
    let size = run(&["nbdinfo", "--size", &uri]);
    assert_eq!(size.trim(), (64 * MIB).to_string());
}

#[test]
fn qemu_img_convert_compare_and_map() {
    let s = Served::small(&["--first-volume-size", "16M"]);
    let src = s.tmp.path().join("src.img");
    // 16 MiB: data in the first 4 MiB and at 12 MiB, holes elsewhere.
    let f = std::fs::File::create(&src).unwrap();
    f.set_len(16 * MIB).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&pattern(4 << 20, 7), 0).unwrap();
    f.write_all_at(&pattern(1 << 20, 9), 12 * MIB).unwrap();
    let uri = s.uri("vol0");
    run(&[
        "qemu-img",
        "convert",
        "-n",
        "--target-is-zero",
        "-f",
        "raw",
        "-O",
        "raw",
        src.to_str().unwrap(),
        &uri,
    ]);
    run(&[
        "qemu-img",
        "compare",
        "-f",
        "raw",
        "-F",
        "raw",
        src.to_str().unwrap(),
        &uri,
    ]);
    // Only the data was written: the rest is unprovisioned.
    let map = run(&["qemu-img", "map", "-f", "raw", "--output=json", &uri]);
    let data: Vec<&str> = map
        .lines()
        .filter(|l| l.contains("\"data\": true"))
        .collect();
    assert_eq!(data.len(), 2, "{map}");
    assert!(
        data[0].contains("\"start\": 0, \"length\": 4194304"),
        "{map}"
    );
    assert!(
        data[1].contains("\"start\": 12582912, \"length\": 1048576"),
        "{map}"
    );
    let info = run(&["qemu-img", "info", "-f", "raw", &uri]);
    assert!(info.contains("virtual size: 16 MiB"), "{info}");
    // And back out again.
    let back = s.tmp.path().join("back.img");
    run(&[
        "qemu-img",
        "convert",
        "-f",
        "raw",
        "-O",
        "raw",
        &uri,
        back.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&src).unwrap());
}

#[test]
fn nbdcopy_in_and_out_and_nbdinfo() {
    let s = Served::small(&[]);
    s.cli(&["create", "copy", "--size", "8M"]);
    let src = s.tmp.path().join("src.img");
    pattern_file(&src, 8 << 20, 3);
    let uri = s.uri("copy");
    run(&["nbdcopy", src.to_str().unwrap(), &uri]);
    let back = read_volume(&uri, s.tmp.path(), "copy");
    assert_eq!(back, std::fs::read(&src).unwrap());
    let list = run(&["nbdinfo", "--list", &s.uri("")]);
    assert!(
        list.contains("export=\"copy\"") && list.contains("export=\"vol0\""),
        "{list}"
    );
    assert!(list.contains("uthin volume copy (thin device 2)"), "{list}");
    let json = run(&["nbdinfo", "--json", &uri]);
    assert!(json.contains("\"can_multi_conn\": true"), "{json}");
    assert!(json.contains("\"export-size\": 8388608"), "{json}");
}

/// fio's nbd engine: crc32c-verified writes from two connections at once
/// (each job on its own half), random and sequential, and a mixed workload.
#[test]
fn fio_crc32c_two_connections() {
    let s = Served::small(&[]);
    for (rw, bs) in [("randwrite", "4k"), ("write", "256k"), ("randrw", "16k")] {
        let out = run(&[
            "fio",
            "--name=verify",
            "--ioengine=nbd",
            &format!("--uri={}", s.uri("vol0")),
            &format!("--rw={rw}"),
            &format!("--bs={bs}"),
            "--size=16M",
            "--offset_increment=16M",
            "--numjobs=2",
            "--iodepth=32",
            "--verify=crc32c",
            "--verify_state_save=0",
            "--verify_fatal=1",
            "--group_reporting",
            "--output-format=terse",
        ]);
        let line = out
            .lines()
            .find(|l| l.starts_with("3;"))
            .expect("terse line");
        let f: Vec<&str> = line.split(';').collect();
        assert_eq!(f[4], "0", "fio error: {out}");
        assert_eq!(f[5], "32768", "KiB verified: {out}");
    }
    // The pool is sound after all that.
    s.cli(&["status"]);
}
