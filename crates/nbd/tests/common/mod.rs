//! Shared by the integration tests: a server on a unix socket and a
//! loopback TCP port, a raw protocol client, and running external clients.
#![allow(dead_code)]

pub mod raw;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use tempfile::TempDir;
use uthin_nbd::{Export, ExportMap, Server, ServerOptions};

/// A running server with its socket in a temporary directory.
pub struct TestServer {
    pub server: Server,
    pub exports: Arc<ExportMap>,
    pub dir: TempDir,
    pub sock: PathBuf,
    pub tcp: SocketAddr,
}

pub fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// Serve `exports` (the first is the default export).
pub fn start(exports: Vec<(&str, Arc<dyn Export>)>) -> TestServer {
    start_with(exports, ServerOptions::default())
}

pub fn start_with(exports: Vec<(&str, Arc<dyn Export>)>, opts: ServerOptions) -> TestServer {
    init_log();
    let map = Arc::new(ExportMap::new());
    let default = exports.first().map(|(n, _)| n.to_string());
    for (name, e) in exports {
        map.insert(name, e);
    }
    let server = Server::new(map.clone(), default.as_deref(), opts);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nbd.sock");
    server.listen_unix(&sock).unwrap();
    let tcp = server.listen_tcp("127.0.0.1:0").unwrap();
    TestServer {
        server,
        exports: map,
        dir,
        sock,
        tcp,
    }
}

impl TestServer {
    /// libnbd URI of `export` over the unix socket.
    pub fn uri(&self, export: &str) -> String {
        format!("nbd+unix:///{export}?socket={}", self.sock.display())
    }

    /// libnbd URI of `export` over TCP.
    pub fn tcp_uri(&self, export: &str) -> String {
        format!("nbd://127.0.0.1:{}/{export}", self.tcp.port())
    }

    /// qemu's JSON-less image name of `export` over the unix socket.
    pub fn qemu(&self, export: &str) -> String {
        format!("nbd+unix:///{export}?socket={}", self.sock.display())
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Fails the test unless `tool` is installed (the test command,
/// scripts/test.sh, installs every tool the tests drive; nothing skips).
pub fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is not installed: run scripts/install-test-deps.sh (scripts/test.sh does)"
    );
}

/// Run `args` (under a 120 s timeout) and return its output; panics with
/// the output when it fails.
pub fn run(args: &[&str]) -> Output {
    let out = try_run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run `args` under a timeout.
pub fn try_run(args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("120")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A file of `len` bytes with a recognisable pattern.
pub fn pattern_file(path: &Path, len: usize, seed: u8) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i / 512) as u8 ^ seed ^ (i as u8).wrapping_mul(31))
        .collect();
    std::fs::write(path, data).unwrap();
}
