//! [`Server`]: listeners (unix and TCP), the table of live connections, the
//! byte budget shared by all connections, and graceful shutdown.
//!
//! Shutdown stops the listeners, then shuts down the reading side of every
//! connection: each one stops taking requests, finishes and answers the
//! requests it already read, and closes.  [`Server::shutdown`] waits for that
//! (up to a grace period) before cutting what is left.

use crate::conn;
use crate::export::Exports;
use crate::stream::Stream;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Tunables of a [`Server`].
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Connections served at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// Requests of one connection executed at once (its threads).
    pub max_in_flight: usize,
    /// Largest READ or WRITE length, advertised as the maximum block size
    /// (the spec's interoperable limit is 32 MiB).
    pub max_request: u32,
    /// READ and WRITE buffer bytes in flight over all connections.
    pub buffer_budget: u64,
    /// Time a client has to finish the handshake.
    pub handshake_timeout: Option<Duration>,
    /// A client that takes no reply bytes for this long is disconnected (it
    /// would otherwise pin threads and buffer budget).
    pub reply_timeout: Option<Duration>,
    /// Answer large reads over holes with `OFFSET_HOLE` chunks.
    pub sparse_reads: bool,
    /// Stack size of connection threads (exports run on them).
    pub thread_stack: usize,
    /// TLS (`NBD_OPT_STARTTLS`), offered or required; None: not offered.
    pub tls: Option<crate::tls::Tls>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: 1024,
            max_in_flight: 16,
            max_request: 32 << 20,
            buffer_budget: 512 << 20,
            handshake_timeout: Some(Duration::from_secs(30)),
            reply_timeout: Some(Duration::from_secs(60)),
            sparse_reads: true,
            thread_stack: 1 << 20,
            tls: None,
        }
    }
}

type Closer = Box<dyn Fn(Shutdown) + Send + Sync>;

struct Table {
    next_id: u64,
    live: HashMap<u64, Closer>,
}

/// State shared by the server, its listeners and its connections.
pub(crate) struct Shared {
    pub(crate) exports: Arc<dyn Exports>,
    pub(crate) default_export: Option<String>,
    pub(crate) opts: ServerOptions,
    pub(crate) budget: Budget,
    pub(crate) stopping: AtomicBool,
    table: Mutex<Table>,
    drained: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bytes of request and reply buffers that may be allocated at once.
pub(crate) struct Budget {
    total: u64,
    left: Mutex<u64>,
    freed: Condvar,
}

/// A share of the [`Budget`], returned on drop.
pub(crate) struct Grant<'a> {
    budget: &'a Budget,
    n: u64,
}

impl Budget {
    fn new(total: u64) -> Self {
        Budget {
            total,
            left: Mutex::new(total),
            freed: Condvar::new(),
        }
    }

    /// Wait for `n` bytes (at most the whole budget).
    pub(crate) fn acquire(&self, n: u64) -> Grant<'_> {
        let n = n.min(self.total);
        let mut left = lock(&self.left);
        while *left < n {
            left = self.freed.wait(left).unwrap_or_else(|e| e.into_inner());
        }
        *left -= n;
        Grant { budget: self, n }
    }
}

impl Drop for Grant<'_> {
    fn drop(&mut self) {
        *lock(&self.budget.left) += self.n;
        self.budget.freed.notify_all();
    }
}

impl Shared {
    pub(crate) fn new(
        exports: Arc<dyn Exports>,
        default_export: Option<&str>,
        opts: ServerOptions,
    ) -> Arc<Self> {
        Arc::new(Shared {
            exports,
            default_export: default_export.map(str::to_string),
            budget: Budget::new(opts.buffer_budget.max(u64::from(opts.max_request))),
            opts,
            stopping: AtomicBool::new(false),
            table: Mutex::new(Table {
                next_id: 0,
                live: HashMap::new(),
            }),
            drained: Condvar::new(),
        })
    }

    fn register(&self, closer: Closer) -> Option<u64> {
        let mut t = lock(&self.table);
        if self.stopping.load(Ordering::SeqCst) || t.live.len() >= self.opts.max_connections {
            return None;
        }
        let id = t.next_id;
        t.next_id += 1;
        t.live.insert(id, closer);
        Some(id)
    }

    pub(crate) fn deregister(&self, id: u64) {
        let mut t = lock(&self.table);
        t.live.remove(&id);
        if t.live.is_empty() {
            self.drained.notify_all();
        }
    }

    fn spawn<S: Stream>(self: &Arc<Self>, stream: S) -> io::Result<()> {
        let stream = Arc::new(stream);
        let handle = stream.clone();
        let closer: Closer = Box::new(move |how| {
            let _ = handle.shutdown(how);
        });
        let Some(id) = self.register(closer) else {
            log::warn!(
                "refusing a connection from {}: at the limit or stopping",
                stream.peer()
            );
            let _ = stream.shutdown(Shutdown::Both);
            return Ok(());
        };
        let shared = self.clone();
        let s = stream.clone();
        thread::Builder::new()
            .name(format!("nbd-conn-{id}"))
            .stack_size(self.opts.thread_stack)
            .spawn(move || conn::serve(shared, id, s))
            .map(drop)
            .inspect_err(|_| self.deregister(id))
    }
}

enum AnyListener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl AsFd for AnyListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            AnyListener::Tcp(l) => l.as_fd(),
            AnyListener::Unix(l, _) => l.as_fd(),
        }
    }
}

struct Listening {
    listener: Arc<AnyListener>,
    thread: JoinHandle<()>,
}

fn accept_loop(shared: Arc<Shared>, l: Arc<AnyListener>) {
    loop {
        let r = match &*l {
            AnyListener::Tcp(t) => t.accept().map(|(s, _)| {
                let _ = s.set_nodelay(true);
                shared.spawn(s)
            }),
            AnyListener::Unix(u, _) => u.accept().map(|(s, _)| shared.spawn(s)),
        };
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = r.and_then(|spawned| spawned) {
            // Out of descriptors or threads: back off instead of spinning.
            log::warn!("accept: {e}");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// An NBD server: exports from a registry, served on any number of
/// listeners until [`Server::shutdown`] (or drop).
pub struct Server {
    shared: Arc<Shared>,
    listeners: Mutex<Vec<Listening>>,
}

impl Server {
    /// A server for `exports`; clients asking for the empty name get
    /// `default_export`.
    pub fn new(
        exports: Arc<dyn Exports>,
        default_export: Option<&str>,
        options: ServerOptions,
    ) -> Server {
        Server {
            shared: Shared::new(exports, default_export, options),
            listeners: Mutex::new(Vec::new()),
        }
    }

    fn start(&self, l: AnyListener) -> io::Result<()> {
        let listener = Arc::new(l);
        let (shared, l2) = (self.shared.clone(), listener.clone());
        let thread = thread::Builder::new()
            .name("nbd-accept".into())
            .spawn(move || accept_loop(shared, l2))?;
        lock(&self.listeners).push(Listening { listener, thread });
        Ok(())
    }

    /// Listen on TCP `addr` (use a loopback address unless the network is
    /// trusted: there is no TLS yet); returns the bound address.
    pub fn listen_tcp(&self, addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
        let l = TcpListener::bind(addr)?;
        let bound = l.local_addr()?;
        self.start(AnyListener::Tcp(l))?;
        Ok(bound)
    }

    /// Listen on a unix socket at `path`.  A socket file nobody listens on
    /// (left by a crash) is replaced; a live one is an error.  The file is
    /// removed at shutdown.
    pub fn listen_unix(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        let l = match UnixListener::bind(path) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                let stale = fs::symlink_metadata(path)?.file_type().is_socket()
                    && UnixStream::connect(path)
                        .is_err_and(|c| c.kind() == io::ErrorKind::ConnectionRefused);
                if !stale {
                    return Err(e);
                }
                fs::remove_file(path)?;
                UnixListener::bind(path)?
            }
            r => r?,
        };
        self.start(AnyListener::Unix(l, path.to_path_buf()))
    }

    /// Serve a connected stream (socket activation, a socketpair, TLS).
    pub fn serve_stream<S: Stream>(&self, stream: S) -> io::Result<()> {
        self.shared.spawn(stream)
    }

    /// Connections currently open.
    pub fn connections(&self) -> usize {
        lock(&self.shared.table).live.len()
    }

    /// Stop accepting, let every connection answer what it already read,
    /// and close; connections still open after `grace` are cut.  Returns
    /// whether everything drained within `grace`.  Idempotent.
    pub fn shutdown(&self, grace: Duration) -> bool {
        {
            let _t = lock(&self.shared.table);
            self.shared.stopping.store(true, Ordering::SeqCst);
        }
        for l in lock(&self.listeners).drain(..) {
            // Wakes the blocked accept (Linux returns EINVAL).
            let _ = rustix::net::shutdown(&*l.listener, rustix::net::Shutdown::Read);
            let _ = l.thread.join();
            if let AnyListener::Unix(_, path) = &*l.listener {
                let _ = fs::remove_file(path);
            }
        }
        let mut t = lock(&self.shared.table);
        for close in t.live.values() {
            close(Shutdown::Read);
        }
        let deadline = Instant::now() + grace;
        let mut cut = false;
        while !t.live.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                if cut {
                    break;
                }
                log::warn!("{} connections did not drain; closing them", t.live.len());
                for close in t.live.values() {
                    close(Shutdown::Both);
                }
                cut = true;
            }
            let wait = deadline
                .saturating_duration_since(now)
                .max(Duration::from_millis(100));
            t = self
                .shared
                .drained
                .wait_timeout(t, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        !cut
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(10));
    }
}
