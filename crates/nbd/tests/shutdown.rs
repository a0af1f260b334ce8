//! Graceful shutdown: stop accepting, answer what was already read, close;
//! unix socket files are replaced when stale and removed at the end.

mod common;

use common::raw::Raw;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use uthin_nbd::export::Result;
use uthin_nbd::proto::*;
use uthin_nbd::{Export, ExportMap, MemExport, Server, ServerOptions};

/// A memory export whose writes take 300 ms.
struct Slow(MemExport);

impl Export for Slow {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.0.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<()> {
        thread::sleep(Duration::from_millis(300));
        self.0.write_at(offset, data, fua)
    }
    fn flush(&self) -> Result<()> {
        self.0.flush()
    }
}

#[test]
fn shutdown_drains_in_flight_requests() {
    let t = common::start(vec![("s", Arc::new(Slow(MemExport::new(1 << 20))))]);
    let (mut r, ..) = Raw::open(&t.sock, "s", false, false);
    let mut idle = Raw::connect(&t.sock);
    idle.greeting();
    for h in 0..4u64 {
        r.request(CMD_WRITE, 0, h, h * 4096, 4096);
        r.send(&[h as u8; 4096]);
    }
    thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    assert!(
        t.server.shutdown(Duration::from_secs(10)),
        "drained in time"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(150),
        "waited for the writes"
    );
    let mut handles: Vec<u64> = (0..4)
        .map(|_| r.simple())
        .map(|(e, h)| {
            assert_eq!(e, 0);
            h
        })
        .collect();
    handles.sort();
    assert_eq!(handles, [0, 1, 2, 3]);
    assert!(r.closed());
    assert!(idle.closed());
    assert_eq!(t.server.connections(), 0);
    assert!(!t.sock.exists(), "socket file removed");
    assert!(
        std::net::TcpStream::connect(t.tcp).is_err(),
        "TCP listener closed"
    );
    assert!(t.server.shutdown(Duration::from_secs(1)), "idempotent");
}

#[test]
fn stale_socket_is_replaced_live_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let map = Arc::new(ExportMap::new());
    map.insert("m", Arc::new(MemExport::new(4096)));
    let a = Server::new(map.clone(), Some("m"), ServerOptions::default());
    a.listen_unix(&path).unwrap();
    let b = Server::new(map, Some("m"), ServerOptions::default());
    assert!(b.listen_unix(&path).is_err(), "a live socket is not stolen");
    let (mut r, size, _) = Raw::open(&path, "", false, false);
    assert_eq!(size, 4096);
    r.request(CMD_DISC, 0, 0, 0, 0);
    assert!(r.closed());
    drop(a);
    assert!(UnixStream::connect(&path).is_err());
}
