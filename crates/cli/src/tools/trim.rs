//! thin_trim command line (1.x options): `thin_trim [-q] --metadata-dev FILE
//! --data-dev FILE`.  As 1.x, a full thin_check runs first and prints its
//! report (`TRANSACTION_ID=` on stdout, the phases on stderr).  Exit 65
//! (1.x's code) when the metadata is damaged, 64 for other failures.

use super::ls::common::{
    check_engine, check_input, engine_arg, parse, verbose_arg, EXIT_DATAERR, EXIT_FAILURE,
};
use std::ffi::OsString;
use std::path::PathBuf;
use uthin_tools::check::{CheckOptions, Checker};
use uthin_tools::report::Report;
use uthin_tools::trim::{trim, TrimError};

/// Entry point: `args[0]` is the program name.
pub fn main(args: Vec<OsString>) -> i32 {
    use clap::{Arg, ArgAction, Command};
    let path_arg = |name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .value_name("FILE")
            .help(help)
            .required(true)
            .value_parser(clap::value_parser!(PathBuf))
    };
    let cmd = Command::new("thin_trim")
        .about("Issue discard requests for free pool space (offline tool).")
        .arg(
            Arg::new("quiet")
                .short('q')
                .long("quiet")
                .help("Suppress output messages, return only exit code.")
                .action(ArgAction::SetTrue),
        )
        .arg(path_arg("metadata-dev", "Specify the pool metadata device"))
        .arg(path_arg("data-dev", "Specify the pool data device"))
        .arg(engine_arg())
        .arg(verbose_arg());
    let m = match parse(cmd, args) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let quiet = m.get_flag("quiet");
    let say = |msg: &str| {
        if !quiet {
            eprintln!("{msg}");
        }
    };
    let meta = m.get_one::<PathBuf>("metadata-dev").expect("required");
    let data = m.get_one::<PathBuf>("data-dev").expect("required");
    if let Err(e) = check_engine(&m)
        .and_then(|_| check_input(meta, true))
        .and_then(|_| check_input(data, false))
    {
        say(&e);
        return EXIT_FAILURE;
    }
    let report = Report::new(quiet);
    // As 1.x: a full thin_check first, printing its report (the
    // TRANSACTION_ID lines, the phase titles, the problems); if it fails,
    // nothing is discarded.
    let words = "metadata contains errors (run thin_check for details).\nperhaps you need to run thin_repair.";
    match Checker::open_path(meta, CheckOptions::default()) {
        Err(_) => {
            say(words);
            return EXIT_DATAERR;
        }
        Ok(c) => {
            if !quiet {
                println!("TRANSACTION_ID={}", c.transaction_id());
                println!("METADATA_FREE_BLOCKS={}", c.metadata_free_blocks());
            }
            if !c.run(&report).passed() {
                say(words);
                return EXIT_DATAERR;
            }
        }
    }
    match trim(meta, data, &report) {
        Ok(_) => 0,
        Err(TrimError::Metadata(e)) => {
            say(&e.to_string());
            say(words);
            EXIT_DATAERR
        }
        Err(TrimError::Other(e)) => {
            say(&e.to_string());
            EXIT_FAILURE
        }
    }
}
