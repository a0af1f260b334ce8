//! `uthin`: the command line.  Commands parse arguments, call the libraries
//! and report; they hold no logic of their own.
//!
//! * `uthin serve`: the daemon (see [`serve`]);
//! * `uthin create|snapshot|delete|list|resize|status|message|metadata-snap`:
//!   volume management, through the daemon or on the pool directly (see
//!   [`volumes`]);
//! * `uthin pool create`: make a pool without serving it;
//! * the thin_* tools as `uthin check ...` or under their own names (see
//!   [`tools`]).

mod pool;
mod serve;
mod tools;
mod volumes;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "uthin",
    version,
    about = "dm-thin provisioning in user space: thin volumes over NBD",
    after_help = "The thin_* tools run as `uthin check|dump|restore|repair|ls|delta|rmap|trim|\
                  metadata-size|metadata-pack|metadata-unpack ...`, or as thin_check etc. \
                  through symlinks to this binary."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve a pool's volumes over NBD (creates ./uthin-pool on first run).
    Serve(serve::ServeArgs),
    #[command(flatten)]
    Volume(volumes::VolumeCmd),
    /// Create a pool without serving it.
    #[command(subcommand)]
    Pool(PoolCmd),
}

#[derive(Subcommand)]
enum PoolCmd {
    /// Create a pool: sparse files in the folder, unless devices are given.
    Create {
        #[command(flatten)]
        loc: pool::Location,
        #[command(flatten)]
        create: pool::CreateArgs,
    },
}

fn main() {
    let level = match std::env::args().nth(1).as_deref() {
        Some("serve") => "info",
        _ => "warn",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let program = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(tool) = tools::by_program(&program) {
        std::process::exit(tool(args));
    }
    if let Some((name, tool)) = args
        .get(1)
        .and_then(|a| a.to_str())
        .and_then(tools::by_subcommand)
    {
        args.remove(0);
        args[0] = name.into();
        std::process::exit(tool(args));
    }
    let cli = Cli::parse();
    let r: Result<()> = match cli.cmd {
        Cmd::Serve(a) => serve::run(a),
        Cmd::Volume(c) => volumes::run(c),
        Cmd::Pool(PoolCmd::Create { loc, create }) => pool::create(&loc, &create),
    };
    if let Err(e) = r {
        eprintln!("uthin: {e:#}");
        std::process::exit(1);
    }
}
