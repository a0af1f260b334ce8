//! A `uthin serve` daemon in a temporary folder for the end-to-end tests,
//! the CLI against it, and the real clients (qemu-io, qemu-img, nbdinfo,
//! nbdcopy, fio) that drive it.  A missing client fails the test: the test
//! command installs them all.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const MIB: u64 = 1 << 20;

/// The uthin binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_uthin")
}

/// A running daemon (stopped with SIGTERM on drop).
pub struct Served {
    pub tmp: TempDir,
    pub dir: PathBuf,
    pub child: Option<Child>,
    /// Lines the daemon printed on stdout at start.
    pub banner: Vec<String>,
    /// Its stderr (the log), a file.
    pub log: PathBuf,
    pub extra: Vec<String>,
}

/// Flags for a small pool: 256 MiB of data, 16 MiB of metadata, unix
/// socket only.
pub fn small_pool_args() -> Vec<String> {
    [
        "--data-size",
        "256M",
        "--metadata-size",
        "16M",
        "--listen",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl Served {
    /// Starts `uthin serve --dir <tmp>/pool` with `args` and waits until it
    /// serves.
    pub fn start(args: &[&str]) -> Served {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pool");
        let mut s = Served {
            tmp,
            dir,
            child: None,
            banner: Vec::new(),
            log: PathBuf::new(),
            extra: args.iter().map(|s| s.to_string()).collect(),
        };
        s.restart();
        s
    }

    /// A small pool (see [`small_pool_args`]) with a 64 MiB first volume
    /// (unless `args` say otherwise), plus `args`.
    pub fn small(args: &[&str]) -> Served {
        let mut a = small_pool_args();
        if !args.contains(&"--first-volume-size") {
            a.extend(["--first-volume-size".to_string(), "64M".to_string()]);
        }
        a.extend(args.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        Served::start(&a)
    }

    /// Starts the daemon again on the same pool (after a stop or a kill).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let n = std::fs::read_dir(self.tmp.path()).unwrap().count();
        self.log = self.tmp.path().join(format!("serve-{n}.log"));
        let log = std::fs::File::create(&self.log).unwrap();
        let mut child = Command::new(bin())
            .arg("serve")
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let running = line.starts_with("uthin serve: running");
                if tx.send(line).is_err() || running {
                    break;
                }
            }
        });
        self.banner.clear();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.starts_with("uthin serve: running") => break,
                Ok(l) => self.banner.push(l),
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "uthin serve did not start: {:?}\nlog:\n{}",
                        self.banner,
                        std::fs::read_to_string(&self.log).unwrap_or_default()
                    );
                }
            }
        }
        self.child = Some(child);
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.join("nbd.sock")
    }

    /// libnbd / qemu URI of a volume over the unix socket.
    pub fn uri(&self, vol: &str) -> String {
        format!("nbd+unix:///{vol}?socket={}", self.sock().display())
    }

    /// Runs `uthin <args> --dir <pool>`; panics unless it succeeds.
    pub fn cli(&self, args: &[&str]) -> String {
        let o = self.try_cli(args);
        assert!(
            o.status.success(),
            "uthin {args:?} failed: {}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs `uthin <args> --dir <pool>`.
    pub fn try_cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .output()
            .unwrap()
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        signal(&c, "TERM");
        let st = wait_timeout(&mut c, Duration::from_secs(60));
        assert!(
            st.is_some_and(|s| s.success()),
            "uthin serve did not stop cleanly: {st:?}\nlog:\n{}",
            self.log_text()
        );
    }

    /// SIGKILL: a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn metadata(&self) -> PathBuf {
        self.dir.join("metadata")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            signal(c, "TERM");
        }
        if let Some(mut c) = self.child.take() {
            if wait_timeout(&mut c, Duration::from_secs(30)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Sends a signal to a child we started.
pub fn signal(c: &Child, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(c.id().to_string())
        .status();
}

fn wait_timeout(c: &mut Child, t: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + t;
    loop {
        if let Ok(Some(s)) = c.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Fails the test when `tool` is missing.
pub fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is not installed: run scripts/install-test-deps.sh (scripts/test.sh does)"
    );
}

/// Runs a command under a 300 s timeout; panics with its output unless it
/// succeeds.
pub fn run(args: &[&str]) -> String {
    let o = try_run(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs a command under a 300 s timeout.
pub fn try_run(args: &[&str]) -> Output {
    need(args[0]);
    Command::new("timeout")
        .arg("300")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// `qemu-io -f raw` with commands on `uri`; panics on failure or when a
/// command reports a failure (qemu-io exits 0 after a failed command).
pub fn qemu_io(uri: &str, cmds: &[&str]) -> String {
    let mut a = vec!["qemu-io", "-f", "raw"];
    for c in cmds {
        a.push("-c");
        a.push(c);
    }
    a.push(uri);
    let out = run(&a);
    assert!(
        !out.contains("failed") && !out.contains("Pattern verification"),
        "qemu-io {cmds:?}: {out}"
    );
    out
}

/// A file of `len` bytes with a recognisable, position-dependent pattern.
pub fn pattern_file(path: &Path, len: usize, seed: u8) {
    std::fs::write(path, pattern(len, seed)).unwrap();
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i / 512) as u8 ^ seed ^ (i as u8).wrapping_mul(31))
        .collect()
}

/// Reads a whole volume with nbdcopy into a file and returns its bytes.
pub fn read_volume(uri: &str, tmp: &Path, name: &str) -> Vec<u8> {
    let out = tmp.join(format!("{name}.read"));
    let _ = std::fs::remove_file(&out);
    run(&["nbdcopy", uri, out.to_str().unwrap()]);
    std::fs::read(&out).unwrap()
}
