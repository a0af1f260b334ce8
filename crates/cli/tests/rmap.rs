//! thin_rmap command line: repeated --region, the multi-call name, 0.9.0's
//! lines (1.x orders them by data begin, data end, device, virtual begin),
//! and bad regions, arguments and inputs.

mod ls_fixtures;

use ls_fixtures::{bad_inputs, debian_ok, fails, pool, stdout_ok, tool, uthin};

#[test]
fn regions() {
    let (dir, meta, _md) = pool();
    let m = meta.to_str().unwrap();
    let out = stdout_ok(tool(dir.path(), "thin_rmap").args(["--region", "0..2000", m]));
    // Device 2 shares most leaves with device 1: they are walked once, for
    // device 1 (as 0.9.0 and 1.x do).
    // Device 2's copied leaf shows its own blocks 0..20 and the rest of it.
    assert!(
        out.starts_with("data 0..300 -> thin(1) 0..300\ndata 20..126 -> thin(2) 20..126\n"),
        "{out}"
    );
    assert!(
        out.ends_with("data 300..301 -> thin(1) 1000..1001\ndata 301..321 -> thin(2) 0..20\n"),
        "{out}"
    );
    let mut theirs: Vec<&str> = Vec::new();
    let d = debian_ok("thin_rmap", &["--region", "0..2000", m]);
    theirs.extend(d.lines());
    let mut ours: Vec<&str> = out.lines().collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);
    let out = stdout_ok(uthin("rmap").args(["--region", "5..7", "--region", "300..302", m]));
    assert_eq!(out, "data 5..7 -> thin(1) 5..7\ndata 300..301 -> thin(1) 1000..1001\ndata 301..302 -> thin(2) 0..1\n");
    assert_eq!(
        stdout_ok(uthin("rmap").args(["--region", "1999..2000", m])),
        ""
    );
}

#[test]
fn bad_arguments_and_inputs() {
    let (dir, meta, _md) = pool();
    let m = meta.to_str().unwrap();
    fails(uthin("rmap").arg(m), 2);
    for bad in ["5", "5..5", "6..5", "a..b", "1..2..3", "-1..4"] {
        fails(uthin("rmap").args(["--region", bad, m]), 2);
    }
    fails(uthin("rmap").args(["--region", "0..1"]), 2);
    for (path, msg) in bad_inputs(dir.path()) {
        let e = fails(
            tool(dir.path(), "thin_rmap")
                .args(["--region", "0..10"])
                .arg(&path),
            64,
        );
        assert!(e.contains(msg) && e.lines().count() == 1, "{path:?}: {e}");
    }
}
