//! thin_repair's command line: options, messages and exit codes of
//! thin-provisioning-tools 1.x, under its own name (a symlink to `uthin`)
//! and as `uthin repair`.

use assert_cmd::Command;
use predicates::str::contains;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uthin_block_io::FileDevice;
use uthin_thin::{DevId, OpenOptions, PoolMetadata, VirtBlock};

const META: u64 = 4 << 20;

/// A directory with a `thin_repair` symlink to the binary.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_uthin"), dir.path().join("thin_repair"))
            .unwrap();
        Env { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn repair(&self) -> Command {
        Command::new(self.path("thin_repair"))
    }

    /// Valid metadata: two devices, a snapshot, transaction 3.
    fn valid(&self) -> PathBuf {
        let p = self.path("meta");
        let dev = Arc::new(FileDevice::create(&p, META).unwrap());
        let mut md = PoolMetadata::open(dev, OpenOptions::new(128)).unwrap();
        md.resize_data_dev(20_480).unwrap();
        md.create_thin(DevId(0)).unwrap();
        for v in 0..1000 {
            let b = md.alloc_data_block().unwrap().unwrap();
            md.insert_block(DevId(0), VirtBlock(v), b).unwrap();
        }
        md.create_snap(DevId(1), DevId(0)).unwrap();
        md.set_transaction_id(0, 3).unwrap();
        md.commit().unwrap();
        p
    }

    /// A zeroed file of `len` bytes.
    fn zeroed(&self, name: &str, len: u64) -> PathBuf {
        let p = self.path(name);
        std::fs::File::create(&p).unwrap().set_len(len).unwrap();
        p
    }
}

fn sb_u64(p: &Path, off: usize) -> u64 {
    let b = std::fs::read(p).unwrap();
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn sb_u32(p: &Path, off: usize) -> u32 {
    let b = std::fs::read(p).unwrap();
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn debian_check_ok(p: &Path) {
    if Path::new("/usr/sbin/thin_check").exists() {
        Command::new("/usr/sbin/thin_check")
            .arg("-q")
            .arg(p)
            .assert()
            .success();
    }
}

#[test]
fn help_and_version() {
    let e = Env::new();
    e.repair()
        .arg("-h")
        .assert()
        .success()
        .stdout(contains("--transaction-id"))
        .stdout(contains("--data-block-size"))
        .stdout(contains("--nr-data-blocks"))
        .stdout(contains("--input"));
    e.repair().arg("-V").assert().success().stdout("1.3.3\n");
}

#[test]
fn bad_arguments() {
    let e = Env::new();
    e.repair()
        .arg("--wibble")
        .assert()
        .code(2)
        .stderr(contains("unexpected argument"));
    let out = e.zeroed("out", META);
    e.repair()
        .arg("-o")
        .arg(&out)
        .assert()
        .code(2)
        .stderr(contains(
            "the following required arguments were not provided",
        ));
    let input = e.valid();
    e.repair().arg("-i").arg(&input).assert().code(2);
    e.repair()
        .args(["--transaction-id", "lots", "-i"])
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(2);
}

#[test]
fn bad_files() {
    let e = Env::new();
    let input = e.valid();
    let out = e.zeroed("out", META);
    let run = |i: &Path, o: &Path, msg: &str| {
        e.repair()
            .arg("-i")
            .arg(i)
            .arg("-o")
            .arg(o)
            .assert()
            .code(64)
            .stderr(contains(msg));
    };
    run(&e.path("nope"), &out, "Couldn't find input file");
    run(e.dir.path(), &out, "Not a block device or regular file");
    run(
        &e.zeroed("tiny", 1024),
        &out,
        "Metadata device/file too small.  Is this binary metadata?",
    );
    run(&input, &e.path("nope"), "Couldn't find output file");
    run(&input, &e.zeroed("small", 4096), "Output file too small.");
    // Nothing to recover: the output is left alone.
    run(&e.zeroed("zeros", META), &out, "no compatible roots found");
    assert!(std::fs::read(&out).unwrap().iter().all(|&b| b == 0));
    // -q: exit code only.
    e.repair()
        .args(["-q", "-i"])
        .arg(e.path("nope"))
        .arg("-o")
        .arg(&out)
        .assert()
        .code(64)
        .stderr("");
}

#[test]
fn repairs_valid_metadata() {
    let e = Env::new();
    let input = e.valid();
    let out = e.zeroed("out", META);
    // lvconvert passes an empty positional argument.
    e.repair()
        .arg("-i")
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .arg("")
        .assert()
        .success();
    debian_check_ok(&out);
    assert_eq!(sb_u64(&out, 48), 3);
    assert_eq!(sb_u64(&out, 64), 20_480);
    let out2 = e.zeroed("out2", META);
    Command::new(env!("CARGO_BIN_EXE_uthin"))
        .args(["repair", "-q", "-i"])
        .arg(&input)
        .arg("-o")
        .arg(&out2)
        .assert()
        .success();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&out2).unwrap());
}

#[test]
fn overrides() {
    let e = Env::new();
    let input = e.valid();
    let out = e.zeroed("out", META);
    let run = |flag: &str, val: &str| {
        e.repair()
            .args([flag, val, "-i"])
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .assert()
            .success();
    };
    run("--transaction-id", "2345");
    assert_eq!(sb_u64(&out, 48), 2345);
    run("--data-block-size", "8192");
    assert_eq!(sb_u32(&out, 336), 8192);
    run("--nr-data-blocks", "234500");
    assert_eq!(sb_u64(&out, 64), 234_500);
    debian_check_ok(&out);
}

#[test]
fn damaged_superblock() {
    let e = Env::new();
    let input = e.valid();
    let mut img = std::fs::read(&input).unwrap();
    img[100] ^= 0x5a;
    std::fs::write(&input, &img).unwrap();
    let out = e.zeroed("out", META);
    e.repair()
        .args(["--transaction-id=1", "--nr-data-blocks=20480", "-i"])
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(64)
        .stderr(contains("data block size needs to be provided"));
    // -v lists the candidate roots considered.
    e.repair()
        .args(["-v", "--data-block-size=128", "-i"])
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .assert()
        .success()
        .stderr(contains("mapping candidates (1)"));
    debian_check_ok(&out);
    // One past the devices' transaction id; one past the highest data block.
    assert_eq!(sb_u64(&out, 48), 1);
    assert_eq!(sb_u64(&out, 64), 1000);
    e.repair()
        .args([
            "--data-block-size=128",
            "--transaction-id=3",
            "--nr-data-blocks=20480",
            "-i",
        ])
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    assert_eq!((sb_u64(&out, 48), sb_u64(&out, 64)), (3, 20_480));
}
