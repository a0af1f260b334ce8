//! thin_rmap command line (1.x options): `thin_rmap --region BEGIN..END
//! [--region ...] INPUT`.

use super::ls::common::{check_engine, check_input, engine_arg, fail, parse, print};
use std::ffi::OsString;
use std::ops::Range;
use std::path::PathBuf;
use uthin_tools::report::Report;
use uthin_tools::rmap::{parse_region, rmap};

/// Entry point: `args[0]` is the program name.
pub fn main(args: Vec<OsString>) -> i32 {
    use clap::{Arg, ArgAction, Command};
    let cmd = Command::new("thin_rmap")
        .about("Output reverse map of a thin provisioned region of blocks")
        .arg(
            Arg::new("region")
                .long("region")
                .value_name("BLOCK_RANGE")
                .help("Specify range of blocks on the data device")
                .required(true)
                .action(ArgAction::Append)
                .value_parser(parse_region),
        )
        .arg(
            Arg::new("INPUT")
                .help("Specify the input device")
                .required(true)
                .value_parser(clap::value_parser!(PathBuf)),
        )
        .arg(engine_arg());
    let m = match parse(cmd, args) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let input = m.get_one::<PathBuf>("INPUT").expect("required");
    if let Err(e) = check_engine(&m).and_then(|_| check_input(input, true)) {
        return fail(&e);
    }
    let regions: Vec<Range<u64>> = m
        .get_many::<Range<u64>>("region")
        .expect("required")
        .cloned()
        .collect();
    let report = Report::new(false);
    match rmap(input, &regions, &report) {
        Ok(runs) => {
            let mut text = String::with_capacity(runs.len() * 40);
            for r in runs {
                text.push_str(&r.to_string());
                text.push('\n');
            }
            print(&text)
        }
        Err(e) => fail(&e.to_string()),
    }
}
