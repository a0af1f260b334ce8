//! thin_metadata_size command line: 1.x's numbers and text for every output
//! form and unit, the multi-call name, and bad sizes and arguments.
//! FORMAT.md §7: `-b64k -s1t -m1000` needs 134 154 blocks (1 073 232
//! sectors) with 1.x; 0.9.0's older formula gives 1 073 224.

mod ls_fixtures;

use ls_fixtures::{fails, stdout_ok, tool, uthin};

fn size(args: &[&str]) -> String {
    stdout_ok(uthin("metadata-size").args(args))
}

#[test]
fn forms_and_units() {
    let dir = tempfile::tempdir().unwrap();
    let base = ["-b64k", "-s1t", "-m1000"];
    let with = |extra: &[&str]| size(&[&base[..], extra].concat());
    assert_eq!(
        stdout_ok(tool(dir.path(), "thin_metadata_size").args(base)),
        "1073232 sectors\n"
    );
    assert_eq!(with(&[]), "1073232 sectors\n");
    assert_eq!(with(&["-n"]), "1073232\n");
    assert_eq!(with(&["--numeric-only"]), "1073232\n");
    assert_eq!(with(&["-n=short"]), "1073232s\n");
    assert_eq!(with(&["--numeric-only=long"]), "1073232sectors\n");
    assert_eq!(with(&["-u", "b"]), "549494784 bytes\n");
    assert_eq!(with(&["-u", "k"]), "536616 kibibytes\n");
    assert_eq!(with(&["--unit", "m"]), "524.04 mebibytes\n");
    assert_eq!(with(&["-u", "MiB", "-n=short"]), "524.04m\n");
    assert_eq!(with(&["-u", "M"]), "549.49 megabytes\n");
    assert_eq!(with(&["-u", "g"]), "0.5117568969726563 gibibytes\n");
    assert_eq!(with(&["-u", "t", "-n=short"]), "0.0004997625946998596t\n");
    assert_eq!(with(&["-u", "t"]), "0.0004997625946998596 terabytes\n");
    assert_eq!(
        size(&[
            "--block-size",
            "128",
            "--pool-size",
            "2097152",
            "--max-thins",
            "1"
        ]),
        "1064 sectors\n"
    );
    // A huge pool is capped at the largest metadata device.
    assert_eq!(
        size(&["-b", "64k", "-s", "15e", "-m", "1", "-u", "b", "-n"]),
        "17045913600\n"
    );
}

#[test]
fn bad_sizes_and_arguments() {
    let e = fails(
        uthin("metadata-size").args(["-b", "96k", "-s", "1t", "-m", "1"]),
        64,
    );
    assert_eq!(e, "block size must be a multiple of 64 KiB\n");
    let e = fails(
        uthin("metadata-size").args(["-b", "2g", "-s", "1t", "-m", "1"]),
        64,
    );
    assert_eq!(e, "maximum block size is 1 GiB\n");
    let e = fails(
        uthin("metadata-size").args(["-b", "1m", "-s", "512k", "-m", "1"]),
        64,
    );
    assert_eq!(e, "pool size must be larger than block size\n");
    for args in [
        &["-s", "1t", "-m", "1"][..],
        &["-b", "64k", "-m", "1"],
        &["-b", "64k", "-s", "1t"],
        &["-b", "64x", "-s", "1t", "-m", "1"],
        &["-b", "64k", "-s", "16e", "-m", "1"],
        &["-b", "64k", "-s", "1t", "-m", "-1"],
        &["-b", "64k", "-s", "1t", "-m", "1", "-u", "q"],
        &["-b", "64k", "-s", "1t", "-m", "1", "-n=medium"],
        &["-b", "64k", "-s", "1t", "-m", "1", "-n", "short"],
    ] {
        fails(uthin("metadata-size").args(args), 2);
    }
    uthin("metadata-size").arg("--help").assert().success();
}
