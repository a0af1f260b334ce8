//! thin_delta command line (1.x options): `thin_delta [-m] [--verbose]
//! (--thin1|--snap1 DEV_ID | --root1 BLOCKNR) (--thin2|--snap2 DEV_ID |
//! --root2 BLOCKNR) INPUT`.

use super::ls::common::{check_engine, check_input, engine_arg, fail, parse, EXIT_FAILURE};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use uthin_tools::delta::{delta, DeltaOptions, Snap};
use uthin_tools::report::Report;

/// Names of side `n`'s arguments: (group, root, thin, alias, ordinal).
fn names(n: u8) -> [&'static str; 5] {
    if n == 1 {
        ["SNAP1", "root1", "thin1", "snap1", "first"]
    } else {
        ["SNAP2", "root2", "thin2", "snap2", "second"]
    }
}

fn side(cmd: clap::Command, n: u8) -> clap::Command {
    use clap::{value_parser, Arg, ArgGroup};
    let [group, root, thin, alias, nth] = names(n);
    cmd.arg(
        Arg::new(root)
            .long(root)
            .value_name("BLOCKNR")
            .help(format!("The root block for the {nth} thin volume to diff"))
            .value_parser(value_parser!(u64))
            .group(group),
    )
    .arg(
        Arg::new(thin)
            .long(thin)
            .alias(alias)
            .value_name("DEV_ID")
            // 1.x's help names the alias as its clap did.
            .help(format!(
                "The numeric identifier for the {nth} thin volume to diff [aliases: --{alias}]"
            ))
            .value_parser(value_parser!(u64))
            .group(group),
    )
    // Not `required`: as 1.x, a missing side is reported after the input
    // checks, as a failure (64) saying which.
    .group(ArgGroup::new(group))
}

fn snap(m: &clap::ArgMatches, n: u8) -> Result<Snap, String> {
    let [_, root, thin, ..] = names(n);
    match (m.get_one::<u64>(thin), m.get_one::<u64>(root)) {
        (Some(&id), _) => Ok(Snap::DevId(id)),
        (None, Some(&b)) => Ok(Snap::Root(b)),
        (None, None) => Err(format!("--{thin} or --{root} not specified")),
    }
}

/// Entry point: `args[0]` is the program name.
pub fn main(args: Vec<OsString>) -> i32 {
    use clap::{Arg, ArgAction, Command};
    let cmd = Command::new("thin_delta")
        .about("Print the differences in the mappings between two thin devices")
        .arg(
            Arg::new("metadata-snap")
                .short('m')
                .long("metadata-snap")
                .help("Use metadata snapshot")
                .action(ArgAction::SetTrue),
        )
        .arg(
            Arg::new("verbose")
                .long("verbose")
                .help("Provide extra information on the mappings")
                .action(ArgAction::SetTrue),
        )
        .arg(
            Arg::new("INPUT")
                .help("Specify the input device")
                .required(true)
                .value_parser(clap::value_parser!(PathBuf)),
        )
        .arg(engine_arg());
    let cmd = side(side(cmd, 1), 2);
    let m = match parse(cmd, args) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let input = m.get_one::<PathBuf>("INPUT").expect("required");
    // 1.x's order: the input, then the two sides, then the engine.
    let sides = check_input(input, true)
        .and_then(|_| Ok((snap(&m, 1)?, snap(&m, 2)?)))
        .and_then(|s| check_engine(&m).map(|_| s));
    let (snap1, snap2) = match sides {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let opts = DeltaOptions {
        snap1,
        snap2,
        verbose: m.get_flag("verbose"),
        metadata_snap: m.get_flag("metadata-snap"),
    };
    let report = Report::new(false);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match delta(input, &opts, &report, &mut out) {
        Ok(()) => 0,
        Err(e) if e.to_string().contains("Broken pipe") => 0,
        Err(e) => {
            let _ = out.flush();
            fail(&e.to_string());
            EXIT_FAILURE
        }
    }
}
