//! `uthin serve`: opens (or first creates) a pool, serves its volumes over
//! NBD on a unix socket and TCP, takes volume-manager requests on the
//! control socket, runs event hooks, follows devices that grow, and stops
//! gracefully on SIGINT / SIGTERM: stop accepting, drain the requests
//! clients already sent, commit, close.

use crate::api::DaemonInfo;
use crate::control::ControlServer;
use crate::error::{Error, Result};
use crate::hooks::Hooks;
use crate::layout::{create, human, CreateOptions, PoolPaths};
use crate::manager::Manager;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::Duration;
use uthin_block_io::BlockDevice;
use uthin_nbd::{Exports, Server, ServerOptions};
use uthin_pool::{Pool, PoolConfig, PoolMode};

/// How often device sizes are looked at (besides after each hook).
const SIZE_POLL: Duration = Duration::from_secs(2);
/// How long clients get to finish what they sent when stopping.
const DRAIN_GRACE: Duration = Duration::from_secs(30);

/// What `uthin serve` runs with.
#[derive(Clone)]
pub struct ServeOptions {
    pub paths: PoolPaths,
    /// For a pool created on this start.
    pub create: CreateOptions,
    /// The volume a new pool starts with.
    pub first_volume: Option<(String, u64)>,
    pub config: PoolConfig,
    /// The NBD unix socket (None: none).
    pub unix_socket: Option<PathBuf>,
    /// TCP addresses to listen on.
    pub tcp: Vec<String>,
    /// Hook command for events.
    pub hook: Option<String>,
    pub server: ServerOptions,
}

/// A running daemon.
pub struct Daemon {
    manager: Arc<Manager>,
    nbd: Arc<Server>,
    control: ControlServer,
    stop_watch: Arc<AtomicBool>,
    watcher: Option<JoinHandle<()>>,
    /// Lines telling the user how to connect.
    pub banner: Vec<String>,
}

impl Daemon {
    /// Starts serving.
    pub fn start(opts: ServeOptions) -> Result<Daemon> {
        let paths = &opts.paths;
        let mut banner = Vec::new();
        let fresh = !paths.exists();
        if fresh {
            let c = create(paths, &opts.create)?;
            banner.push(format!("created pool {}: {c}", paths.dir.display()));
            banner.push(format!(
                "  metadata {}, data {} (sparse files)",
                paths.metadata.display(),
                paths.data.display()
            ));
        }
        let manager = Arc::new(Manager::open(paths, opts.config.clone())?);
        if fresh {
            if let Some((name, size)) = &opts.first_volume {
                let req = crate::api::Request::Create {
                    name: name.clone(),
                    size: *size,
                    origin: None,
                    read_only: false,
                };
                manager.handle(req)?;
                banner.push(format!("created volume {name} ({})", human(*size)));
            }
        }
        let pool = manager.pool().clone();
        let sizes = Arc::new(SizeWatch::new(&pool));
        let hooks = Hooks::start(opts.hook.clone(), paths, {
            let sizes = sizes.clone();
            move || sizes.check()
        });
        pool.set_event_handler(move |ev| hooks.event(ev));
        if pool.mode() != PoolMode::Write {
            log::warn!("the pool is {}", crate::manager::mode_name(pool.mode()));
        }

        let names = manager.volume_names();
        let default = names
            .iter()
            .find(|n| opts.first_volume.as_ref().is_some_and(|f| &f.0 == *n))
            .or(names.first())
            .cloned();
        let exports: Arc<dyn Exports> = manager.clone();
        let nbd = Arc::new(Server::new(
            exports,
            default.as_deref(),
            opts.server.clone(),
        ));
        let mut listening = Vec::new();
        if let Some(sock) = &opts.unix_socket {
            nbd.listen_unix(sock)
                .map_err(|e| Error::io(sock, "listen", e))?;
            listening.push(format!("unix:{}", sock.display()));
        }
        let mut tcp_addrs: Vec<SocketAddr> = Vec::new();
        for a in &opts.tcp {
            let bound = nbd
                .listen_tcp(a.as_str())
                .map_err(|e| Error::Other(format!("cannot listen on {a}: {e}")))?;
            let tls_required = opts.server.tls.as_ref().is_some_and(|t| t.required);
            if !bound.ip().is_loopback() && !tls_required {
                log::warn!(
                    "listening on {bound} without requiring TLS: anyone who can reach it can \
                     read and write the volumes (--tls-cert, --tls-key, --tls-require)"
                );
            }
            listening.push(format!("tcp:{bound}"));
            tcp_addrs.push(bound);
        }
        let info = {
            let nbd = Arc::downgrade(&nbd);
            let listening = listening.clone();
            move || DaemonInfo {
                pid: std::process::id(),
                connections: nbd.upgrade().map_or(0, |s| s.connections()),
                listening: listening.clone(),
            }
        };
        let control = ControlServer::start(&paths.control_socket(), manager.clone(), info)?;
        let stop_watch = Arc::new(AtomicBool::new(false));
        let watcher = {
            let stop = stop_watch.clone();
            thread::Builder::new()
                .name("size-watch".into())
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        thread::park_timeout(SIZE_POLL);
                        sizes.check();
                    }
                })
                .map_err(|e| Error::Other(format!("starting the size watcher: {e}")))?
        };
        banner.extend(connect_help(&names, &opts, &tcp_addrs, default.as_deref()));
        let dir = if paths.dir == std::path::Path::new(crate::layout::DEFAULT_DIR) {
            String::new()
        } else {
            format!(" --dir {}", paths.dir.display())
        };
        banner.push(format!(
            "manage volumes: {} create|snapshot|delete|list|status ...{dir}",
            program_name()
        ));
        Ok(Daemon {
            manager,
            nbd,
            control,
            stop_watch,
            watcher: Some(watcher),
            banner,
        })
    }

    /// The volume manager.
    pub fn manager(&self) -> &Arc<Manager> {
        &self.manager
    }

    /// The NBD server.
    pub fn nbd(&self) -> &Server {
        &self.nbd
    }

    /// Stops: no new connections or control requests, clients' requests
    /// already sent are answered, then the pool commits and closes.
    pub fn stop(mut self) -> Result<()> {
        self.control.stop();
        if !self.nbd.shutdown(DRAIN_GRACE) {
            log::warn!("some NBD connections were cut after {DRAIN_GRACE:?}");
        }
        self.stop_watch.store(true, Ordering::SeqCst);
        if let Some(w) = self.watcher.take() {
            w.thread().unpark();
            let _ = w.join();
        }
        self.manager.close()
    }
}

/// Blocks until SIGINT or SIGTERM.
pub fn wait_for_stop_signal() -> Result<i32> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Error::Other(format!("installing signal handlers: {e}")))?;
    let sig = signals.forever().next().unwrap_or(SIGTERM);
    // A second signal while draining ends the process at once.
    thread::spawn(move || {
        if signals.forever().next().is_some() {
            eprintln!("uthin: second signal: exiting without draining");
            std::process::exit(130);
        }
    });
    Ok(sig)
}

/// Follows the devices' sizes: when one grew (a hook or an administrator
/// extended the data file, say) the pool grows with it, which also ends an
/// out-of-space state.
struct SizeWatch {
    pool: Weak<Pool>,
    /// Device lengths last seen: (data, metadata).
    seen: parking_lot::Mutex<(u64, u64)>,
}

impl SizeWatch {
    fn new(pool: &Arc<Pool>) -> Self {
        let seen = (
            pool.data_device().len().unwrap_or(0),
            pool.metadata_device().len().unwrap_or(0),
        );
        SizeWatch {
            pool: Arc::downgrade(pool),
            seen: parking_lot::Mutex::new(seen),
        }
    }

    fn check(&self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        let mut guard = self.seen.lock();
        let seen = &mut *guard;
        let (data, meta) = (pool.data_device(), pool.metadata_device());
        for (dev, seen, what) in [(data, &mut seen.0, "data"), (meta, &mut seen.1, "metadata")] {
            let Ok(len) = dev.len() else { continue };
            if len <= *seen {
                continue;
            }
            let grown = if what == "data" {
                pool.resize_data()
            } else {
                pool.resize_metadata()
            };
            match grown {
                Ok(()) => {
                    log::warn!("the {what} device grew to {}", human(len));
                    *seen = len;
                }
                Err(e) => log::error!("growing the pool's {what} space: {e}"),
            }
        }
    }
}

/// How to run this binary again: `uthin` when that is what the PATH finds,
/// else its full path (e.g. `target/release/uthin` under `cargo run`).
fn program_name() -> String {
    let me = std::env::current_exe().ok();
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("uthin"))
            .find(|c| c.is_file())
    });
    match (me, on_path) {
        (Some(me), Some(found)) if std::fs::canonicalize(&found).ok() == Some(me.clone()) => {
            "uthin".into()
        }
        (Some(me), _) => me.display().to_string(),
        _ => "uthin".into(),
    }
}

/// How to connect, for the banner.
fn connect_help(
    names: &[String],
    opts: &ServeOptions,
    tcp: &[SocketAddr],
    default: Option<&str>,
) -> Vec<String> {
    let mut v = Vec::new();
    let vols = if names.is_empty() {
        "none yet (uthin create NAME --size SIZE)".to_string()
    } else {
        names.join(", ")
    };
    v.push(format!("serving volumes: {vols}"));
    let name = default.unwrap_or("NAME");
    let scheme = if opts.server.tls.is_some() {
        "nbds"
    } else {
        "nbd"
    };
    for a in tcp {
        let host = if a.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else if a.is_ipv6() {
            format!("[{}]", a.ip())
        } else {
            a.ip().to_string()
        };
        let port = if a.port() == 10809 {
            String::new()
        } else {
            format!(":{}", a.port())
        };
        v.push(format!("  nbdinfo {scheme}://{host}{port}/{name}"));
        v.push(format!("  qemu-img info {scheme}://{host}{port}/{name}"));
    }
    if let Some(s) = &opts.unix_socket {
        v.push(format!(
            "  nbdinfo '{scheme}+unix:///{name}?socket={}'",
            s.display()
        ));
    }
    if opts.server.tls.is_some() {
        v.push("  (TLS: give clients the CA, e.g. nbdinfo '...?tls-certificates=DIR' with DIR/ca-cert.pem)".into());
    }
    v
}
