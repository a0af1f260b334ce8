//! thin_ls command line: every option, the default and all fields, the
//! multi-call name, 0.9.0's output where 1.x kept it, and bad arguments and
//! inputs with 1.x's exit codes (2 for arguments, 64 for failures).

mod ls_fixtures;

use ls_fixtures::{bad_inputs, debian_ok, fails, pool, stdout_ok, tool, uthin, write};
use uthin_thin::DevId;

#[test]
fn default_listing_by_name_and_subcommand() {
    let (dir, meta, _md) = pool();
    let by_name = stdout_ok(tool(dir.path(), "thin_ls").arg(&meta));
    let by_sub = stdout_ok(uthin("ls").arg(&meta));
    assert_eq!(by_name, by_sub);
    assert_eq!(
        by_name,
        "DEV MAPPED CREATE_TIME SNAP_TIME \n  1  19MiB           0         1 \n  2  19MiB           1         1 \n  3     0b           1         1 \n"
    );
    // 0.9.0 prints the same but "0" for no bytes.
    let theirs = debian_ok("thin_ls", &[meta.to_str().unwrap()]);
    assert_eq!(by_name.replace("     0b ", "      0 "), theirs);
}

#[test]
fn format_no_headers_and_metadata_snap() {
    let (dir, meta, mut md) = pool();
    let fields = "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,HIGHEST_BLOCK,TRANSACTION";
    let out = stdout_ok(tool(dir.path(), "thin_ls").args(["-o", fields]).arg(&meta));
    assert_eq!(
        out,
        "DEV MAPPED_BLOCKS EXCLUSIVE_BLOCKS SHARED_BLOCKS HIGHEST_BLOCK TRANSACTION \n\
         \x20 1           301               20           281          1000           0 \n\
         \x20 2           301               20           281          1000           0 \n\
         \x20 3             0                0             0             0           0 \n"
    );
    let out = stdout_ok(
        uthin("ls")
            .args([
                "--format",
                "MAPPED_SECTORS,HIGHEST_SECTOR,HIGHEST_BYTE,HIGHEST_MAPPED,SHARED,EXCLUSIVE",
                "--no-headers",
            ])
            .arg(&meta),
    );
    assert_eq!(
        out.lines().next().unwrap(),
        "38528 128127 65601535 63MiB 18MiB 1280KiB "
    );
    // -m / --metadata-snap: the pool as it was when the snapshot was taken.
    md.reserve_metadata_snap().unwrap();
    md.commit().unwrap();
    write(&mut md, 3, 0..5);
    md.delete_thin(DevId(1)).unwrap();
    md.commit().unwrap();
    for m in ["-m", "--metadata-snap"] {
        let out = stdout_ok(
            uthin("ls")
                .args([m, "--no-headers", "-o", "DEV,MAPPED_BLOCKS"])
                .arg(&meta),
        );
        assert_eq!(out, "1 301 \n2 301 \n3   0 \n");
    }
    let out = stdout_ok(
        uthin("ls")
            .args(["--no-headers", "-o", "DEV,MAPPED_BLOCKS"])
            .arg(&meta),
    );
    assert_eq!(out, "2 301 \n3   5 \n");
    let theirs = debian_ok(
        "thin_ls",
        &[
            "-m",
            "--no-headers",
            "-o",
            "DEV,MAPPED_BLOCKS",
            meta.to_str().unwrap(),
        ],
    );
    assert_eq!(theirs, "1 301 \n2 301 \n3   0 \n");
}

#[test]
fn bad_arguments_and_inputs() {
    let (dir, meta, _md) = pool();
    let e = fails(uthin("ls").args(["-o", "DEV,NOPE"]).arg(&meta), 2);
    assert!(e.contains("Unknown field"), "{e}");
    fails(&mut uthin("ls"), 2);
    fails(uthin("ls").arg("--bogus").arg(&meta), 2);
    fails(uthin("ls").args(["--io-engine", "bogus"]).arg(&meta), 64);
    stdout_ok(uthin("ls").args(["--io-engine", "sync", "-v"]).arg(&meta));
    uthin("ls").arg("--help").assert().success();
    uthin("ls").arg("-V").assert().success();
    let e = fails(uthin("ls").arg("-m").arg(&meta), 64);
    assert!(e.contains("no current metadata snap"), "{e}");
    for (path, msg) in bad_inputs(dir.path()) {
        let e = fails(tool(dir.path(), "thin_ls").arg(&path), 64);
        assert!(e.contains(msg) && e.lines().count() == 1, "{path:?}: {e}");
    }
}
