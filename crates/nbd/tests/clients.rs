//! Real NBD clients against the server: qemu-io, qemu-img, nbdinfo,
//! nbdcopy (over the unix socket, and TCP on 127.0.0.1).  A test fails
//! when its tool is not installed.

mod common;

use common::{pattern_file, require, run, stdout, try_run};
use std::sync::Arc;
use uthin_nbd::{Export, MemExport};

const MIB: u64 = 1 << 20;

fn mem_server(size: u64) -> (common::TestServer, Arc<MemExport>) {
    let mem = Arc::new(MemExport::new(size).with_description("test volume"));
    let ro = Arc::new(MemExport::new(MIB).read_only());
    let t = common::start(vec![("vol0", mem.clone() as Arc<dyn Export>), ("ro", ro)]);
    (t, mem)
}

fn qemu_io(image: &str, cmds: &[&str]) -> std::process::Output {
    let mut args = vec!["qemu-io", "-f", "raw"];
    for c in cmds {
        args.extend(["-c", c]);
    }
    args.push(image);
    try_run(&args)
}

#[test]
fn qemu_io_patterns_discard_and_zeroes() {
    require("qemu-io");
    let (t, mem) = mem_server(64 * MIB);
    let img = t.qemu("vol0");
    let o = qemu_io(
        &img,
        &[
            "write -P 0xab 0 1M",
            "write -P 0xcd 5M 64k",
            "write -P 0x11 7340032 4096",
            "aio_write -P 0x22 8M 64k",
            "aio_write -P 0x33 9M 64k",
            "aio_flush",
            "flush",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = qemu_io(
        &img,
        &[
            "read -P 0xab 0 1M",
            "read -P 0xcd 5M 64k",
            "read -P 0x11 7340032 4096",
            "read -P 0x22 8M 64k",
            "read -P 0x33 9M 64k",
            "read -P 0 1M 4M",
        ],
    );
    let out = stdout(&o);
    assert!(o.status.success() && !out.contains("failed"), "{out}");
    // discard and write -z (with and without unmap) read back as zeroes.
    let o = qemu_io(
        &img,
        &[
            "discard 0 1M",
            "write -z 5M 64k",
            "write -z -u 8M 64k",
            "read -P 0 5M 64k",
            "read -P 0 8M 64k",
            "read -P 0x33 9M 64k",
        ],
    );
    let out = stdout(&o);
    assert!(o.status.success() && !out.contains("failed"), "{out}");
    assert!(
        mem.allocated_chunks() <= 4,
        "{} chunks",
        mem.allocated_chunks()
    );
    // Writes to the read-only export fail, reads work.
    let o = qemu_io(&t.qemu("ro"), &["read -P 0 0 64k", "write -P 1 0 4k"]);
    assert!(!o.status.success());
    // Reads past the end are refused (qemu checks the size itself; the
    // server's own check is tested with a raw client).
    let o = qemu_io(&img, &["read 64M 4k"]);
    assert!(!o.status.success() || stdout(&o).contains("error"));
}

#[test]
fn qemu_img_convert_compare_and_map() {
    require("qemu-img");
    let (t, _) = mem_server(32 * MIB);
    let src = t.path("src.img");
    // 32 MiB sparse image with data at 2 MiB and 20 MiB.
    pattern_file(&src, 32 * MIB as usize, 7);
    let f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
    f.set_len(0).unwrap();
    f.set_len(32 * MIB).unwrap();
    drop(f);
    let data = t.path("data.bin");
    pattern_file(&data, 3 * MIB as usize, 9);
    run(&[
        "dd",
        &format!("if={}", data.display()),
        &format!("of={}", src.display()),
        "bs=1M",
        "seek=2",
        "conv=notrunc",
        "status=none",
    ]);
    run(&[
        "dd",
        &format!("if={}", data.display()),
        &format!("of={}", src.display()),
        "bs=1M",
        "seek=20",
        "count=1",
        "conv=notrunc",
        "status=none",
    ]);
    let nbd = t.qemu("vol0");
    run(&[
        "qemu-img",
        "convert",
        "-n",
        "-f",
        "raw",
        "-O",
        "raw",
        src.to_str().unwrap(),
        &nbd,
    ]);
    run(&[
        "qemu-img",
        "compare",
        "-f",
        "raw",
        "-F",
        "raw",
        src.to_str().unwrap(),
        &nbd,
    ]);
    // qemu-img map sees the unwritten ranges as zero holes.
    let map = stdout(&run(&[
        "qemu-img",
        "map",
        "--output=json",
        "-f",
        "raw",
        &nbd,
    ]));
    assert!(map.contains("\"data\": false"), "{map}");
    assert!(map.contains("\"data\": true"), "{map}");
    // Back out to a file over TCP; a changed byte makes compare fail.
    let back = t.path("back.img");
    let tcp = t.tcp_uri("vol0");
    run(&[
        "qemu-img",
        "convert",
        "-f",
        "raw",
        "-O",
        "raw",
        &tcp,
        back.to_str().unwrap(),
    ]);
    run(&["cmp", src.to_str().unwrap(), back.to_str().unwrap()]);
    run(&["qemu-io", "-f", "raw", "-c", "write -P 0x42 21M 512", &nbd]);
    let o = try_run(&[
        "qemu-img",
        "compare",
        "-f",
        "raw",
        "-F",
        "raw",
        src.to_str().unwrap(),
        &nbd,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let info = stdout(&run(&["qemu-img", "info", "--output=json", &nbd]));
    assert!(
        info.contains(&format!("\"virtual-size\": {}", 32 * MIB)),
        "{info}"
    );
}

#[test]
fn nbdinfo_list_and_map() {
    require("nbdinfo");
    let (t, mem) = mem_server(16 * MIB);
    let list = stdout(&run(&["nbdinfo", "--list", &t.uri("")]));
    assert!(
        list.contains("export=\"vol0\"") && list.contains("export=\"ro\""),
        "{list}"
    );
    assert!(list.contains("test volume"), "{list}");
    let info = stdout(&run(&["nbdinfo", "--json", &t.uri("vol0")]));
    for needle in [
        "\"export-size\": 16777216",
        "\"can_multi_conn\": true",
        "\"can_fast_zero\": true",
        "base:allocation",
    ] {
        assert!(info.contains(needle), "{needle} in {info}");
    }
    let ro = stdout(&run(&["nbdinfo", "--json", &t.uri("ro")]));
    assert!(ro.contains("\"is_read_only\": true"), "{ro}");
    mem.write_at(4 * MIB, &[1u8; 8192], false).unwrap();
    mem.write_at(9 * MIB + 4096, &[2u8; 100], false).unwrap();
    // Holes where nothing was written, data (64 KiB chunks) where it was.
    let map = stdout(&run(&["nbdinfo", "--map", &t.uri("vol0")]));
    let rows: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let expect = [
        (0, 4 * MIB, "3"),
        (4 * MIB, 65536, "0"),
        (4 * MIB + 65536, 5 * MIB - 65536, "3"),
        (9 * MIB, 65536, "0"),
        (9 * MIB + 65536, 7 * MIB - 65536, "3"),
    ];
    assert_eq!(rows.len(), expect.len(), "{map}");
    for (row, (off, len, ty)) in rows.iter().zip(expect) {
        assert_eq!(
            (row[0], row[1], row[2]),
            (off.to_string().as_str(), len.to_string().as_str(), ty),
            "{map}"
        );
    }
    let tcp = stdout(&run(&["nbdinfo", "--map", "--totals", &t.tcp_uri("vol0")]));
    assert!(tcp.contains("hole,zero"), "{tcp}");
}

#[test]
fn nbdcopy_in_and_out() {
    require("nbdcopy");
    let (t, mem) = mem_server(24 * MIB);
    let src = t.path("in.img");
    pattern_file(&src, 24 * MIB as usize, 3);
    // Make part of the source sparse: nbdcopy skips zeroes on the target.
    let zeros = vec![0u8; 4 * MIB as usize];
    let mut data = std::fs::read(&src).unwrap();
    data[8 * MIB as usize..12 * MIB as usize].copy_from_slice(&zeros);
    std::fs::write(&src, &data).unwrap();
    run(&[
        "nbdcopy",
        "--flush",
        "-C",
        "2",
        src.to_str().unwrap(),
        &t.uri("vol0"),
    ]);
    assert!(mem.flushes() >= 1);
    let out = t.path("out.img");
    run(&["nbdcopy", &t.uri("vol0"), out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), data);
    let out2 = t.path("out2.img");
    run(&[
        "nbdcopy",
        "--synchronous",
        &t.tcp_uri("vol0"),
        out2.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&out2).unwrap(), data);
}
