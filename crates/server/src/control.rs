//! The control socket: a running daemon takes volume-manager requests on a
//! unix socket in the pool folder, one JSON object a line each way
//! ([`crate::api::Request`] in, [`crate::api::Reply`] out).  The socket is
//! made accessible to its owner only.
//!
//! [`run`] is what the CLI calls: it asks the daemon if one answers on the
//! socket, and otherwise opens the pool itself (taking the pool lock, so it
//! never races a daemon that is starting).

use crate::api::{DaemonInfo, Outcome, Reply, Request};
use crate::error::{Error, Result};
use crate::layout::PoolPaths;
use crate::manager::Manager;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;
use uthin_pool::PoolConfig;

/// Longest request line taken (a request is a few hundred bytes).
const MAX_LINE: u64 = 64 << 10;

/// A listening control socket.
pub struct ControlServer {
    path: PathBuf,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Listens at `path` (replacing a stale socket file); `daemon` fills in
    /// the daemon's part of a status reply.
    pub fn start(
        path: &Path,
        manager: Arc<Manager>,
        daemon: impl Fn() -> DaemonInfo + Send + Sync + 'static,
    ) -> Result<ControlServer> {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path).map_err(|e| Error::io(path, "listen", e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(path, "chmod", e))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let daemon = Arc::new(daemon);
        let thread = thread::Builder::new()
            .name("control-accept".into())
            .spawn(move || {
                for conn in l.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let (m, d) = (manager.clone(), daemon.clone());
                    let _ = thread::Builder::new()
                        .name("control".into())
                        .spawn(move || serve(conn, &m, &*d));
                }
            })
            .map_err(|e| Error::Other(format!("starting the control thread: {e}")))?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            stopping,
            thread: Some(thread),
        })
    }

    /// Stops listening and removes the socket file.
    pub fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves one control connection: a reply for each request line.
fn serve(conn: UnixStream, m: &Manager, daemon: &dyn Fn() -> DaemonInfo) {
    let mut out = match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    };
    let mut lines = BufReader::new(conn);
    loop {
        let mut line = String::new();
        match (&mut lines).take(MAX_LINE).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if !line.ends_with('\n') && line.len() as u64 >= MAX_LINE {
            let _ = send(&mut out, &error_reply("request line too long".into()));
            return;
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(req) => {
                log::info!("control: {req:?}");
                match m.handle(req) {
                    Ok(mut o) => {
                        if let Outcome::Status { status } = &mut o {
                            status.daemon = Some(daemon());
                        }
                        Reply {
                            ok: true,
                            outcome: Some(o),
                            error: None,
                        }
                    }
                    Err(e) => {
                        log::warn!("control: refused: {e}");
                        error_reply(e.to_string())
                    }
                }
            }
            Err(e) => error_reply(format!("bad request: {e}")),
        };
        if send(&mut out, &reply).is_err() {
            return;
        }
    }
}

fn error_reply(error: String) -> Reply {
    Reply {
        ok: false,
        outcome: None,
        error: Some(error),
    }
}

fn send(out: &mut UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut s = serde_json::to_string(reply).expect("serializable");
    s.push('\n');
    out.write_all(s.as_bytes())
}

/// Sends one request to the daemon at `socket`.  `Ok(None)`: no daemon
/// listens there.
pub fn ask_daemon(socket: &Path, req: &Request) -> Result<Option<Outcome>> {
    let mut conn = match UnixStream::connect(socket) {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(Error::io(socket, "connect", e)),
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(600)));
    let mut line = serde_json::to_string(req).expect("serializable");
    line.push('\n');
    conn.write_all(line.as_bytes())
        .map_err(|e| Error::io(socket, "send", e))?;
    let mut answer = String::new();
    BufReader::new(conn)
        .read_line(&mut answer)
        .map_err(|e| Error::io(socket, "receive", e))?;
    if answer.is_empty() {
        return Err(Error::Control("the daemon closed the connection".into()));
    }
    let reply: Reply = serde_json::from_str(&answer)
        .map_err(|e| Error::Control(format!("bad reply {answer:?}: {e}")))?;
    match (reply.ok, reply.outcome, reply.error) {
        (true, Some(o), _) => Ok(Some(o)),
        (false, _, Some(e)) => Err(Error::Other(e)),
        _ => Err(Error::Control(format!("malformed reply {answer:?}"))),
    }
}

/// Runs a request: through the daemon if one runs, else on the pool
/// directly (locked for the duration).  Returns the outcome and whether a
/// daemon answered.
pub fn run(paths: &PoolPaths, cfg: PoolConfig, req: Request) -> Result<(Outcome, bool)> {
    if let Some(o) = ask_daemon(&paths.control_socket(), &req)? {
        return Ok((o, true));
    }
    if !paths.exists() {
        return Err(Error::Usage(format!(
            "no pool at {}: start `uthin serve` (it creates one) or run `uthin pool create`",
            paths.metadata.display()
        )));
    }
    let m = Manager::open(paths, cfg)?;
    let r = m.handle(req);
    let c = m.close();
    let o = r?;
    c?;
    Ok((o, false))
}
