//! `uthin serve`: the daemon's command line.  With no arguments it serves
//! `./uthin-pool` (created on first run with a first volume `vol0`) on a
//! unix socket in the pool folder and on 127.0.0.1:10809.

use crate::pool::{ConfigArgs, CreateArgs, Location};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use uthin_nbd::{ServerOptions, Tls};
use uthin_server::daemon::{wait_for_stop_signal, Daemon, ServeOptions};
use uthin_server::layout::{parse_size, DEFAULT_VOLUME_SIZE};

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    loc: Location,
    #[command(flatten)]
    create: CreateArgs,
    #[command(flatten)]
    config: ConfigArgs,
    /// Name of the volume a new pool starts with.
    #[arg(long, default_value = "vol0")]
    first_volume: String,
    /// Size of that first volume.
    #[arg(long, default_value_t = DEFAULT_VOLUME_SIZE, value_parser = parse_size)]
    first_volume_size: u64,
    /// Create no first volume.
    #[arg(long)]
    no_first_volume: bool,
    /// NBD unix socket (default DIR/nbd.sock; "none" for no unix socket).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// TCP address to listen on (repeatable; "none" for no TCP).  Use a
    /// loopback address unless the network is trusted.
    #[arg(long = "listen", default_value = "127.0.0.1:10809")]
    listen: Vec<String>,
    /// Command run (by sh -c) on pool events, with UTHIN_EVENT etc. set.
    #[arg(long)]
    hook: Option<String>,
    /// TLS certificate chain (PEM): offer TLS (NBD_OPT_STARTTLS).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve nothing before STARTTLS (needs --tls-cert and --tls-key).
    #[arg(long, requires = "tls_cert")]
    tls_require: bool,
    /// Most NBD connections at once.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
}

pub fn run(a: ServeArgs) -> Result<()> {
    let paths = a.loc.paths();
    let unix_socket = match &a.socket {
        Some(p) if p.as_os_str() == "none" => None,
        Some(p) => Some(p.clone()),
        None => Some(paths.nbd_socket()),
    };
    let tcp = a.listen.iter().filter(|l| *l != "none").cloned().collect();
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some(Tls::from_pem_files(c, k, a.tls_require)?),
        _ => None,
    };
    let server = ServerOptions {
        max_connections: a.max_connections,
        tls,
        ..ServerOptions::default()
    };
    let opts = ServeOptions {
        paths,
        create: a.create.options(),
        first_volume: (!a.no_first_volume).then(|| (a.first_volume.clone(), a.first_volume_size)),
        config: a.config.config(),
        unix_socket,
        tcp,
        hook: a.hook.clone(),
        server,
    };
    let daemon = Daemon::start(opts)?;
    for l in &daemon.banner {
        println!("{l}");
    }
    println!(
        "uthin serve: running (pid {}); Ctrl-C or SIGTERM stops it",
        std::process::id()
    );
    let sig = wait_for_stop_signal()?;
    eprintln!("uthin serve: signal {sig}: draining and committing");
    daemon.stop()?;
    eprintln!("uthin serve: stopped cleanly");
    Ok(())
}
