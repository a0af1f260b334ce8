//! `uthin`: the command line.  Commands parse arguments, call the libraries
//! and report; they hold no logic of their own.
//!
//! `uthin pool create|status|message` on a pool folder (default
//! `./uthin-pool`: files `metadata` and `data`), and the thin_* tools as
//! `uthin check ...` or under their own names (see [`tools`]).

mod pool;
mod tools;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "uthin", version, about = "dm-thin provisioning in user space")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create, inspect and change a pool.
    #[command(subcommand)]
    Pool(pool::PoolCmd),
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
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
        Cmd::Pool(c) => pool::run(c),
    };
    if let Err(e) = r {
        eprintln!("uthin: {e:#}");
        std::process::exit(1);
    }
}
