//! thin_delta command line: --thin1/--snap1, --thin2/--snap2, --root1/
//! --root2, -m, --verbose, the multi-call name, 0.9.0's output (1.x writes
//! no final newline), and bad arguments and inputs.

mod ls_fixtures;

use ls_fixtures::{bad_inputs, debian_ok, fails, pool, stdout_ok, tool, uthin, write};

const SIMPLE: &str = "<superblock uuid=\"\" time=\"1\" transaction=\"0\" data_block_size=\"128\" nr_data_blocks=\"2000\">
  <diff left=\"1\" right=\"2\">
    <different begin=\"0\" length=\"20\"/>
    <same begin=\"20\" length=\"280\"/>
    <same begin=\"1000\" length=\"1\"/>
  </diff>
</superblock>";

#[test]
fn options_and_aliases() {
    let (dir, meta, _md) = pool();
    let m = meta.to_str().unwrap();
    for args in [
        ["--thin1", "1", "--thin2", "2"],
        ["--snap1", "1", "--snap2", "2"],
        ["--snap1", "1", "--thin2", "2"],
    ] {
        assert_eq!(
            stdout_ok(tool(dir.path(), "thin_delta").args(args).arg(m)),
            SIMPLE
        );
    }
    assert_eq!(
        format!("{SIMPLE}\n"),
        debian_ok("thin_delta", &["--snap1", "1", "--snap2", "2", m])
    );
    let v = stdout_ok(uthin("delta").args(["--verbose", "--thin1", "1", "--thin2", "3", m]));
    assert!(v.contains("  <diff left=\"1\" right=\"3\">\n    <left_only>\n      <range begin=\"0\" data_begin=\"0\" length=\"300\"/>\n      <range begin=\"1000\" data_begin=\"300\" length=\"1\"/>\n    </left_only>\n  </diff>"), "{v}");
    assert_eq!(
        format!("{v}\n"),
        debian_ok(
            "thin_delta",
            &["--verbose", "--snap1", "1", "--snap2", "3", m]
        )
    );
    // Roots: the same diff under left_root/right_root.
    let r = uthin_tools::reader::Reader::open(&meta, Default::default(), 64).unwrap();
    let roots = uthin_tools::ls::device_roots(&r, &r.sb).unwrap();
    let (r1, r2) = (roots[&1].to_string(), roots[&2].to_string());
    let out = stdout_ok(uthin("delta").args(["--root1", &r1, "--root2", &r2, m]));
    assert_eq!(
        out,
        SIMPLE.replace(
            "left=\"1\" right=\"2\"",
            &format!("left_root=\"{r1}\" right_root=\"{r2}\"")
        )
    );
    let out = stdout_ok(uthin("delta").args(["--thin1", "1", "--root2", &r2, m]));
    assert!(out.contains(&format!("<diff left=\"1\" right_root=\"{r2}\">")));
}

#[test]
fn metadata_snap() {
    let (_dir, meta, mut md) = pool();
    md.reserve_metadata_snap().unwrap();
    md.commit().unwrap();
    write(&mut md, 2, 500..510);
    md.commit().unwrap();
    let m = meta.to_str().unwrap();
    for flag in ["-m", "--metadata-snap"] {
        let out = stdout_ok(uthin("delta").args([flag, "--thin1", "1", "--thin2", "2", m]));
        assert_eq!(
            out,
            SIMPLE.replace("nr_data_blocks=\"2000\"", "nr_data_blocks=\"0\"")
        );
    }
    let live = stdout_ok(uthin("delta").args(["--thin1", "1", "--thin2", "2", m]));
    assert!(live.contains("<right_only begin=\"500\" length=\"10\"/>"));
}

#[test]
fn bad_arguments_and_inputs() {
    let (dir, meta, _md) = pool();
    let m = meta.to_str().unwrap();
    // A missing side fails after the input checks, as 1.x does.
    let e = fails(uthin("delta").args(["--thin1", "1", m]), 64);
    assert_eq!(e, "--thin2 or --root2 not specified\n");
    let e = fails(uthin("delta").args(["--thin2", "1", m]), 64);
    assert_eq!(e, "--thin1 or --root1 not specified\n");
    let e = fails(uthin("delta").args(["--thin2", "1", "nowhere"]), 64);
    assert_eq!(e, "Couldn't find input file 'nowhere'\n");
    fails(
        uthin("delta").args(["--thin1", "1", "--root1", "5", "--thin2", "2", m]),
        2,
    );
    fails(uthin("delta").args(["--thin1", "x", "--thin2", "2", m]), 2);
    fails(uthin("delta").args(["--thin1", "1", "--thin2", "2"]), 2);
    fails(
        uthin("delta").args(["-m=5", "--thin1", "1", "--thin2", "2", m]),
        2,
    );
    let e = fails(uthin("delta").args(["--thin1", "1", "--thin2", "9", m]), 64);
    assert_eq!(e, "Unable to find mapping tree for snap2 (9)\n");
    let e = fails(uthin("delta").args(["--root1", "0", "--thin2", "2", m]), 64);
    assert!(e.contains("btree node") || e.contains("checksum"), "{e}");
    let e = fails(
        uthin("delta").args(["-m", "--thin1", "1", "--thin2", "2", m]),
        64,
    );
    assert!(e.contains("no current metadata snap"), "{e}");
    for (path, msg) in bad_inputs(dir.path()) {
        let e = fails(
            tool(dir.path(), "thin_delta")
                .args(["--thin1", "1", "--thin2", "2"])
                .arg(&path),
            64,
        );
        assert!(e.contains(msg) && e.lines().count() == 1, "{path:?}: {e}");
    }
}
