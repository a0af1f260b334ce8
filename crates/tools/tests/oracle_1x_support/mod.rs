//! Shared support of the tests against thin-provisioning-tools 1.1.0, the
//! 1.x oracle (Debian sid's build, extracted by
//! `scripts/install-test-deps.sh` into `~/.cache/uthin-tpt1`): where its
//! binary is, running it, and the metadata images the comparisons run on.
//! Also used by `crates/cli/tests/oracle_1x_cli.rs` (through `#[path]`), so
//! it depends only on crates the CLI has too.
//!
//! The oracle is required: a missing binary fails the test with the command
//! that installs it, never skips it.
#![allow(dead_code)]

pub mod images;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the 1.1.0 package is extracted (`UTHIN_TPT1_DIR` overrides).
pub fn tpt1_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("UTHIN_TPT1_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cache/uthin-tpt1")
}

/// The 1.1.0 tool `tool` (a symlink to the multi-call `pdata_tools`, so it
/// runs under its own name as LVM runs it).
pub fn tpt1(tool: &str) -> PathBuf {
    let p = tpt1_dir().join("usr/sbin").join(tool);
    assert!(
        p.exists(),
        "thin-provisioning-tools 1.1.0 ({}) is missing: run scripts/install-test-deps.sh, \
         which extracts Debian sid's 1.1.0 package into ~/.cache/uthin-tpt1",
        p.display()
    );
    p
}

/// What a tool run printed and how it exited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn from(o: std::process::Output) -> Out {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs 1.1.0's `tool` with `args` (stdin empty).
pub fn run1<S: AsRef<OsStr>>(tool: &str, args: &[S]) -> Out {
    let o = Command::new(tpt1(tool))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running 1.1.0's {tool}: {e}"));
    Out::from(o)
}

/// Runs 1.1.0's `tool` and requires exit 0; its standard output.
pub fn run1_ok<S: AsRef<OsStr>>(tool: &str, args: &[S]) -> String {
    let o = run1(tool, args);
    assert_eq!(
        o.code,
        0,
        "1.1.0 {tool} {:?} failed:\n{}",
        args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
        o.stderr
    );
    o.stdout
}

/// 1.1.0's `thin_check -q`: whether it accepts `meta`.
pub fn check1_passes(meta: &Path, opts: &[&str]) -> bool {
    let mut args: Vec<&OsStr> = opts.iter().map(OsStr::new).collect();
    args.push(OsStr::new("-q"));
    args.push(meta.as_os_str());
    run1("thin_check", &args).code == 0
}

/// Requires 1.1.0's `thin_check` to accept `meta`, showing its report if not.
pub fn assert_check1(meta: &Path, what: &str) {
    let o = run1("thin_check", &[meta]);
    assert_eq!(
        o.code,
        0,
        "1.1.0 thin_check rejects {what} ({}):\n{}{}",
        meta.display(),
        o.stdout,
        o.stderr
    );
}

/// Asserts uthin's output is byte-identical to 1.1.0's, showing the first
/// differing line.
pub fn assert_same(what: &str, uthin: &str, tpt1: &str) {
    assert_text_eq(what, ("uthin", uthin), ("1.1.0", tpt1));
}

/// Asserts two named texts are byte-identical, showing the first differing
/// line.
pub fn assert_text_eq(what: &str, a: (&str, &str), b: (&str, &str)) {
    if a.1 == b.1 {
        return;
    }
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.1.split('\n').collect(), b.1.split('\n').collect());
    let i = la
        .iter()
        .zip(&lb)
        .position(|(x, y)| x != y)
        .unwrap_or(la.len().min(lb.len()));
    panic!(
        "{what}: {} and {} differ at line {} ({} lines, {} lines)\n{}: {:?}\n{}: {:?}",
        a.0,
        b.0,
        i + 1,
        la.len(),
        lb.len(),
        a.0,
        la.get(i),
        b.0,
        lb.get(i)
    );
}
