//! Volume management against a running daemon and without one: create,
//! snapshot, delete, resize, list, status, message, metadata-snap, with
//! their refusals; one writer per pool; graceful stop; the pool passes
//! Debian's thin_check afterwards.

mod serve_common;

use serve_common::*;

fn fails_with(s: &Served, args: &[&str], needle: &str) {
    let o = s.try_cli(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "uthin {args:?} should fail");
    assert!(err.contains(needle), "uthin {args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn volumes_through_the_daemon() {
    let s = Served::small(&[]);
    assert!(
        s.banner.iter().any(|l| l.contains("created volume vol0")),
        "{:?}",
        s.banner
    );
    let out = s.cli(&["create", "data", "--size", "10M"]);
    assert!(
        out.contains("created volume data (10 MiB, thin device 2)"),
        "{out}"
    );
    qemu_io(&s.uri("data"), &["write -P 0x5a 0 2M", "flush"]);
    let out = s.cli(&["snapshot", "data", "snap", "--read-only"]);
    assert!(
        out.contains("created snapshot snap of data (thin device 3)"),
        "{out}"
    );
    // The origin changes; the snapshot keeps the old bytes and is read-only.
    qemu_io(&s.uri("data"), &["write -P 0x77 0 1M"]);
    run(&[
        "qemu-io",
        "-r",
        "-f",
        "raw",
        "-c",
        "read -P 0x5a 0 2M",
        &s.uri("snap"),
    ]);
    let ro = run(&["nbdinfo", "--json", &s.uri("snap")]);
    assert!(ro.contains("\"is_read_only\": true"), "{ro}");
    // Snapshots of snapshots.
    s.cli(&["snapshot", "snap", "snap2"]);
    qemu_io(&s.uri("snap2"), &["read -P 0x5a 0 2M", "write -P 1 0 64k"]);

    // list: sizes, mapped, exclusive, parentage; --json.
    let list = s.cli(&["list"]);
    let row = |name: &str| {
        list.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} in {list}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("data")[..8],
        ["data", "2", "10", "MiB", "2", "MiB", "1", "MiB"],
        "{list}"
    );
    // snap2 rewrote block 0, which leaves snap's block 0 to snap alone.
    assert_eq!(
        row("snap")[..9],
        ["snap", "3", "10", "MiB", "2", "MiB", "64", "KiB", "data"],
        "{list}"
    );
    assert_eq!(row("snap2")[8], "snap", "{list}");
    let json: serde_json::Value = serde_json::from_str(&s.cli(&["list", "--json"])).unwrap();
    let snap2 = json
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "snap2")
        .unwrap();
    assert_eq!(snap2["exclusive_bytes"], 65536);
    assert_eq!(snap2["mapped_bytes"], 2 << 20);

    // Refusals, each in one line.
    fails_with(&s, &["create", "data", "--size", "1M"], "already exists");
    fails_with(
        &s,
        &["create", "bad/name", "--size", "1M"],
        "bad volume name",
    );
    fails_with(&s, &["create", "nosize"], "give --size");
    fails_with(&s, &["snapshot", "nope", "x"], "no volume named \"nope\"");
    fails_with(&s, &["delete", "nope"], "no volume named");
    fails_with(&s, &["resize", "data", "--size", "1M"], "--allow-shrink");
    fails_with(&s, &["message", "frob", "1"], "unknown message");
    fails_with(&s, &["message", "create_thin", "2"], "already exists");

    // resize: a new connection sees the new size; shrinking drops the tail.
    s.cli(&["resize", "data", "--size", "20M"]);
    assert_eq!(
        run(&["nbdinfo", "--size", &s.uri("data")]).trim(),
        (20 * MIB).to_string()
    );
    s.cli(&["resize", "data", "--size", "1536k", "--allow-shrink"]);
    s.cli(&["resize", "data", "--size", "4M"]);
    qemu_io(
        &s.uri("data"),
        &[
            "read -P 0x77 0 1M",
            "read -P 0x5a 1M 512k",
            "read -P 0 1536k 2560k",
        ],
    );

    // delete: refused while a client is connected, then done.
    let mut hold = std::process::Command::new("qemu-io")
        .args(["-f", "raw", "-c", "sleep 3000", &s.uri("snap2")])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    fails_with(&s, &["delete", "snap2"], "in use");
    hold.wait().unwrap();
    s.cli(&["delete", "snap2"]);
    let list = s.cli(&["list", "--no-exclusive"]);
    assert!(!list.contains("snap2"), "{list}");

    // Raw messages are followed by the registry.
    s.cli(&["message", "create_thin", "40"]);
    assert!(s.cli(&["list"]).contains("thin40"));
    s.cli(&["delete", "thin40"]);

    // metadata-snap: reserve, read with thin_dump -m, release.
    s.cli(&["metadata-snap", "reserve"]);
    let st = s.cli(&["status"]);
    assert!(st.contains("metadata snapshot held at block"), "{st}");
    let dump = run(&["thin_dump", "-m", s.metadata().to_str().unwrap()]);
    assert!(dump.contains("dev_id=\"3\""), "{dump}");
    s.cli(&["metadata-snap", "release"]);

    // status in its three forms.
    let st = s.cli(&["status"]);
    assert!(st.contains("pool: read-write (metadata clean)"), "{st}");
    assert!(st.contains("daemon: pid"), "{st}");
    let k = s.cli(&["status", "--format", "kernel"]);
    assert!(k.starts_with("pool: "), "{k}");
    assert!(
        k.contains(" rw discard_passdown queue_if_no_space - "),
        "{k}"
    );
    let j: serde_json::Value = serde_json::from_str(&s.cli(&["status", "--json"])).unwrap();
    assert_eq!(j["mode"], "read-write");
    assert_eq!(j["block_size"], 65536);

    // A second daemon on the same pool is refused.
    let o = std::process::Command::new(bin())
        .args(["serve", "--listen", "none", "--dir"])
        .arg(&s.dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("is open in another uthin process"),
        "{err}"
    );
}

#[test]
fn graceful_stop_then_commands_without_a_daemon() {
    let mut s = Served::small(&[]);
    // A client writing while the stop comes: what it sent before is served.
    qemu_io(&s.uri("vol0"), &["write -P 0x42 0 4M"]);
    s.stop();
    // No daemon: the CLI opens the pool itself.
    let st = s.cli(&["status"]);
    assert!(st.contains("daemon: not running"), "{st}");
    s.cli(&["create", "offline", "--size", "4M"]);
    s.cli(&["snapshot", "vol0", "vol0-snap"]);
    let list = s.cli(&["list"]);
    assert!(
        list.contains("offline") && list.contains("vol0-snap"),
        "{list}"
    );
    // Debian's thin_check accepts the pool.
    run(&["thin_check", s.metadata().to_str().unwrap()]);
    // The daemon serves what was made offline, with the data.
    s.restart();
    qemu_io(&s.uri("vol0-snap"), &["read -P 0x42 0 4M"]);
    qemu_io(&s.uri("offline"), &["read -P 0 0 4M"]);
}

#[test]
fn bad_command_lines() {
    let s = Served::small(&[]);
    for (args, needle) in [
        (vec!["create", "x", "--size", "12q"], "unknown size unit"),
        (vec!["resize", "vol0"], "--size"),
        (vec!["frobnicate"], "unrecognized subcommand"),
        (vec!["status", "--format", "yaml"], "invalid value"),
        (vec!["metadata-snap", "hold"], "invalid value"),
    ] {
        let o = s.try_cli(&args);
        assert!(!o.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // No pool at all.
    let o = std::process::Command::new(bin())
        .args(["list", "--dir"])
        .arg(s.tmp.path().join("nowhere"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no pool at"), "{err}");
    // serve with a bad block size refuses before creating anything.
    let dir = s.tmp.path().join("bad");
    let o = std::process::Command::new(bin())
        .args(["serve", "--listen", "none", "--block-size", "4k", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("block size"), "{err}");
}

#[test]
fn volume_over_an_external_origin() {
    let s = Served::small(&[]);
    let origin = s.tmp.path().join("golden.img");
    pattern_file(&origin, 3 << 20, 11);
    let out = s.cli(&["create", "clone", "--origin", origin.to_str().unwrap()]);
    assert!(out.contains("created volume clone (3 MiB"), "{out}");
    let uri = s.uri("clone");
    assert_eq!(
        read_volume(&uri, s.tmp.path(), "clone"),
        pattern(3 << 20, 11)
    );
    // Writes land in the pool; the origin file is never written.
    qemu_io(&uri, &["write -P 0x99 100000 5000", "flush"]);
    let mut want = pattern(3 << 20, 11);
    want[100000..105000].fill(0x99);
    assert_eq!(read_volume(&uri, s.tmp.path(), "clone2"), want);
    assert_eq!(std::fs::read(&origin).unwrap(), pattern(3 << 20, 11));
    // Unwritten ranges read from the origin, so they are data, not holes.
    let map = run(&["nbdinfo", "--map", &uri]);
    assert!(!map.contains("hole"), "{map}");
    let list = s.cli(&["list"]);
    assert!(list.contains("origin="), "{list}");
    // A snapshot shares the origin.
    s.cli(&["snapshot", "clone", "clone-snap"]);
    assert_eq!(read_volume(&s.uri("clone-snap"), s.tmp.path(), "cs"), want);
}
