//! thin_dump and thin_restore command lines (as `thin_dump` through a
//! symlink, and as `uthin dump`): every option, bad arguments, missing and
//! unusable files, with 1.x's messages and exit codes (2 for bad arguments,
//! 64 for any other failure).  Errors are one line, never a panic.

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uthin_block_io::FileDevice;
use uthin_thin::{DevId, OpenOptions, PoolMetadata, VirtBlock};

const DUMP_USAGE: &str = "Dump thin-provisioning metadata to stdout in XML format

Usage: thin_dump [OPTIONS] <INPUT>

Arguments:
  <INPUT>  Specify the input device to dump

Options:
      --data-block-size <SECTORS>  Provide the data block size for repairing
      --dev-id <THIN_ID>           Dump the specified device
  -f, --format <TYPE>              Choose the output format
  -h, --help                       Print help
  -m, --metadata-snap[=<BLOCKNR>]  Access the metadata snapshot on a live pool
      --nr-data-blocks <NUM>       Override the number of data blocks if needed
  -o, --output <FILE>              Specify the output file rather than stdout
  -q, --quiet                      Suppress output messages, return only exit code.
  -r, --repair                     Repair the metadata whilst dumping it
      --skip-mappings              Do not dump the mappings
      --transaction-id <NUM>       Override the transaction id if needed
  -V, --version                    Print version";

const RESTORE_USAGE: &str = "Convert XML format metadata to binary.

Usage: thin_restore [OPTIONS] --input <FILE> --output <FILE>

Options:
      --data-block-size <SECTORS>  Override the data block size if needed
  -h, --help                       Print help
  -i, --input <FILE>               Specify the input xml
      --nr-data-blocks <NUM>       Override the number of data blocks if needed
  -o, --output <FILE>              Specify the output device
  -q, --quiet                      Suppress output messages, return only exit code.
      --transaction-id <NUM>       Override the transaction id if needed
  -V, --version                    Print version";

const XML: &str = r#"<superblock uuid="" time="1" transaction="3" version="2" data_block_size="128" nr_data_blocks="20480">
  <device dev_id="1" mapped_blocks="2" transaction="0" creation_time="0" snap_time="1">
    <range_mapping origin_begin="0" data_begin="5" length="2" time="0"/>
  </device>
  <device dev_id="2" mapped_blocks="0" transaction="1" creation_time="1" snap_time="1">
  </device>
</superblock>"#;

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for tool in ["thin_dump", "thin_restore"] {
            std::os::unix::fs::symlink(
                assert_cmd::cargo::cargo_bin("uthin"),
                dir.path().join(tool),
            )
            .unwrap();
        }
        Dir { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn tool(&self, name: &str) -> Command {
        Command::new(self.path(name))
    }
    /// A zeroed file of `bytes`.
    fn zeroed(&self, name: &str, bytes: usize) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, vec![0u8; bytes]).unwrap();
        p
    }
    /// Metadata restored from `XML`.
    fn meta(&self) -> PathBuf {
        let xml = self.path("in.xml");
        std::fs::write(&xml, XML).unwrap();
        let meta = self.zeroed("meta", 4 << 20);
        self.tool("thin_restore")
            .args(["-i", s(&xml), "-o", s(&meta)])
            .assert()
            .success();
        meta
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn one_line_error(code: i32) -> impl Fn(&std::process::Output) {
    move |o| {
        assert_eq!(o.status.code(), Some(code), "{o:?}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(e.trim_end().lines().count(), 1, "not one line: {e:?}");
        assert!(!e.contains("panicked"), "{e}");
    }
}

#[test]
fn dump_help_version_and_bad_arguments() {
    let d = Dir::new();
    d.tool("thin_dump")
        .arg("--help")
        .assert()
        .success()
        .stdout(format!("{DUMP_USAGE}\n"));
    // The bare 1.x version (LVM parses it).
    d.tool("thin_dump")
        .arg("-V")
        .assert()
        .success()
        .stdout("1.3.3\n");
    d.tool("thin_dump")
        .arg("--hello")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "unexpected argument '--hello' found",
        ));
    d.tool("thin_dump")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "the following required arguments were not provided",
        ));
    let meta = d.meta();
    d.tool("thin_dump")
        .args([s(&meta), "-f", "json"])
        .assert()
        .code(2);
    d.tool("thin_dump")
        .args([s(&meta), "--dev-id", "x"])
        .assert()
        .code(2);
    d.tool("thin_dump")
        .args([s(&meta), "-r", "-m"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot be used with"));
    d.tool("thin_dump")
        .args(["-m", "5", s(&meta)])
        .assert()
        .code(2);
}

#[test]
fn dump_bad_inputs_say_so_in_one_line() {
    let d = Dir::new();
    let o = d
        .tool("thin_dump")
        .arg(s(&d.path("no-such-file")))
        .output()
        .unwrap();
    one_line_error(64)(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("Couldn't find input file"));
    let o = d.tool("thin_dump").arg("/tmp").output().unwrap();
    one_line_error(64)(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("Not a block device or regular file"));
    let tiny = d.zeroed("tiny", 1024);
    let o = d.tool("thin_dump").arg(s(&tiny)).output().unwrap();
    one_line_error(64)(&o);
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("Metadata device/file too small.  Is this binary metadata?"));
    let zero = d.zeroed("zero", 1 << 20);
    let o = d.tool("thin_dump").arg(s(&zero)).output().unwrap();
    one_line_error(64)(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad checksum in superblock"));
    let junk = d.path("junk");
    std::fs::write(
        &junk,
        (0..65536u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    one_line_error(64)(&d.tool("thin_dump").arg(s(&junk)).output().unwrap());
    // -q: only the exit code.
    d.tool("thin_dump")
        .args(["-q", s(&zero)])
        .assert()
        .code(64)
        .stderr("")
        .stdout("");
}

#[test]
fn dump_outputs() {
    let d = Dir::new();
    let meta = d.meta();
    d.tool("thin_dump")
        .arg(s(&meta))
        .assert()
        .success()
        .stdout(XML)
        .stderr("");
    let out = d.path("out.xml");
    d.tool("thin_dump")
        .args([s(&meta), "-o", s(&out)])
        .assert()
        .success()
        .stdout("");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), XML);
    d.tool("thin_dump")
        .args(["--format", "human_readable", s(&meta)])
        .assert()
        .success()
        .stdout(predicate::str::starts_with(
            "begin superblock: \"\", 1, 3, 0, 2, 128, 20480\ndevice: 1\n",
        ));
    d.tool("thin_dump")
        .args(["--dev-id", "2", "--dev-id=7", s(&meta)])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("dev_id=\"2\"")
                .and(predicate::str::contains("dev_id=\"1\"").not()),
        );
    d.tool("thin_dump")
        .args(["--skip-mappings", s(&meta)])
        .assert()
        .success()
        .stdout(predicate::str::contains("mapping").not());
    d.tool("thin_dump")
        .args(["--transaction-id", "2345", "--data-block-size=8192", "--nr-data-blocks", "234500", s(&meta)])
        .assert()
        .success()
        .stdout(predicate::str::starts_with(
            r#"<superblock uuid="" time="1" transaction="2345" version="2" data_block_size="8192" nr_data_blocks="234500">"#,
        ));
    d.tool("thin_dump")
        .args(["-r", s(&meta)])
        .assert()
        .success()
        .stdout(XML);
    // As a subcommand of uthin.
    Command::cargo_bin("uthin")
        .unwrap()
        .args(["dump", s(&meta)])
        .assert()
        .success()
        .stdout(XML);
    // An unwritable output.
    d.tool("thin_dump")
        .args([s(&meta), "-o", "/nonexistent/dir/x.xml"])
        .assert()
        .code(64);
}

#[test]
fn dump_metadata_snapshot() {
    let d = Dir::new();
    let meta = d.zeroed("meta", 8 << 20);
    let dev = Arc::new(FileDevice::open(&meta, true).unwrap());
    let mut md = PoolMetadata::open(dev, OpenOptions::new(128)).unwrap();
    md.resize_data_dev(1000).unwrap();
    md.create_thin(DevId(1)).unwrap();
    d.tool("thin_dump").args(["-m", s(&meta)]).assert().code(64);
    let b = md.alloc_data_block().unwrap().unwrap();
    md.insert_block(DevId(1), VirtBlock(0), b).unwrap();
    let held = md.reserve_metadata_snap().unwrap();
    md.create_thin(DevId(2)).unwrap();
    md.commit().unwrap();
    d.tool("thin_dump")
        .arg(s(&meta))
        .assert()
        .success()
        .stdout(predicate::str::contains("dev_id=\"2\""));
    let snap = d
        .tool("thin_dump")
        .args(["-m", s(&meta)])
        .assert()
        .success();
    let snap = String::from_utf8(snap.get_output().stdout.clone()).unwrap();
    assert!(
        snap.contains("nr_data_blocks=\"0\"") && !snap.contains("dev_id=\"2\""),
        "{snap}"
    );
    d.tool("thin_dump")
        .args([&format!("--metadata-snap={}", held.0), s(&meta)])
        .assert()
        .success()
        .stdout(snap);
}

#[test]
fn restore_help_and_bad_arguments() {
    let d = Dir::new();
    d.tool("thin_restore")
        .arg("--help")
        .assert()
        .success()
        .stdout(format!("{RESTORE_USAGE}\n"));
    d.tool("thin_restore").arg("--version").assert().success();
    d.tool("thin_restore").arg("--hello").assert().code(2);
    let meta = d.zeroed("meta", 4 << 20);
    d.tool("thin_restore")
        .args(["-o", s(&meta)])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "the following required arguments were not provided",
        ));
    let xml = d.path("in.xml");
    std::fs::write(&xml, XML).unwrap();
    d.tool("thin_restore")
        .args(["-i", s(&xml)])
        .assert()
        .code(2);
    d.tool("thin_restore")
        .args(["-i", s(&xml), "-o", s(&meta), "--transaction-id", "x"])
        .assert()
        .code(2);
}

#[test]
fn restore_bad_files() {
    let d = Dir::new();
    let xml = d.path("in.xml");
    std::fs::write(&xml, XML).unwrap();
    let meta = d.zeroed("meta", 4 << 20);
    let untouched = |meta: &Path| assert!(std::fs::read(meta).unwrap().iter().all(|&b| b == 0));
    let o = d
        .tool("thin_restore")
        .args(["-i", "no-such.xml", "-o", s(&meta)])
        .output()
        .unwrap();
    one_line_error(64)(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("Couldn't find input file"));
    untouched(&meta);
    let o = d
        .tool("thin_restore")
        .args(["-i", s(&xml), "-o", s(&d.path("no-such"))])
        .output()
        .unwrap();
    one_line_error(64)(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("Couldn't find output file"));
    let tiny = d.zeroed("tiny", 4096);
    let o = d
        .tool("thin_restore")
        .args(["-i", s(&xml), "-o", s(&tiny)])
        .output()
        .unwrap();
    one_line_error(64)(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("Output file too small"));
    let o = d
        .tool("thin_restore")
        .args(["-i", "/tmp", "-o", s(&meta)])
        .output()
        .unwrap();
    one_line_error(64)(&o);
    // Not XML (zeroes), and XML with an error: the superblock stays zero.
    let zero_xml = d.zeroed("zero.xml", 8192);
    let o = d
        .tool("thin_restore")
        .args(["-i", s(&zero_xml), "-o", s(&meta)])
        .output()
        .unwrap();
    one_line_error(64)(&o);
    untouched(&meta);
    let bad = d.path("bad.xml");
    std::fs::write(
        &bad,
        XML.replace("length=\"2\"", "length=\"2\" colour=\"red\""),
    )
    .unwrap();
    let o = d
        .tool("thin_restore")
        .args(["-i", s(&bad), "-o", s(&meta)])
        .output()
        .unwrap();
    one_line_error(64)(&o);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("bad.xml:3:5: unknown attribute 'colour' in tag 'range_mapping'"),
        "{e}"
    );
    assert!(std::fs::read(&meta).unwrap()[..4096]
        .iter()
        .all(|&b| b == 0));
    d.tool("thin_restore")
        .args(["-q", "-i", s(&bad), "-o", s(&meta)])
        .assert()
        .code(64)
        .stderr("");
}

#[test]
fn restore_writes_what_debian_accepts() {
    let d = Dir::new();
    let xml = d.path("in.xml");
    std::fs::write(&xml, XML).unwrap();
    let meta = d.zeroed("meta", 4 << 20);
    d.tool("thin_restore")
        .args(["-q", "-i", s(&xml), "-o", s(&meta)])
        .assert()
        .success()
        .stdout("")
        .stderr("");
    d.tool("thin_restore")
        .args(["--input", s(&xml), "--output", s(&meta)])
        .assert()
        .success()
        .stdout("")
        .stderr("");
    let check = std::process::Command::new("/usr/sbin/thin_check")
        .args(["-q", s(&meta)])
        .output()
        .expect("Debian's thin_check (scripts/install-test-deps.sh)");
    assert!(
        check.status.success() && check.stderr.is_empty(),
        "{check:?}"
    );
    d.tool("thin_dump")
        .arg(s(&meta))
        .assert()
        .success()
        .stdout(XML);
    // Overrides go into the superblock.
    d.tool("thin_restore")
        .args([
            "-i",
            s(&xml),
            "-o",
            s(&meta),
            "--transaction-id",
            "2345",
            "--data-block-size",
            "8192",
            "--nr-data-blocks=234500",
        ])
        .assert()
        .success();
    d.tool("thin_dump").arg(s(&meta)).assert().success().stdout(predicate::str::starts_with(
        r#"<superblock uuid="" time="1" transaction="2345" version="2" data_block_size="8192" nr_data_blocks="234500">"#,
    ));
    d.tool("thin_restore")
        .args(["-i", s(&xml), "-o", s(&meta), "--data-block-size", "100"])
        .assert()
        .code(64)
        .stderr(predicate::str::contains("invalid data block size"));
    Command::cargo_bin("uthin")
        .unwrap()
        .args(["restore", "-i", s(&xml), "-o", s(&meta)])
        .assert()
        .success();
}

#[test]
fn dump_repair_rebuilds_a_lost_superblock() {
    let d = Dir::new();
    let meta = d.meta();
    let mut img = std::fs::read(&meta).unwrap();
    for (i, b) in img[..512].iter_mut().enumerate() {
        *b = (i * 37 % 256) as u8;
    }
    std::fs::write(&meta, img).unwrap();
    d.tool("thin_dump")
        .arg(s(&meta))
        .assert()
        .code(64)
        .stderr(predicate::str::contains("bad checksum in superblock"));
    d.tool("thin_dump")
        .args([
            "--repair",
            "--transaction-id=1",
            "--nr-data-blocks=20480",
            s(&meta),
        ])
        .assert()
        .code(64)
        .stderr(predicate::str::contains("data block size"));
    d.tool("thin_dump")
        .args([
            "--repair",
            "--transaction-id=3",
            "--data-block-size=128",
            "--nr-data-blocks=20480",
            s(&meta),
        ])
        .assert()
        .success()
        .stdout(XML);
}
