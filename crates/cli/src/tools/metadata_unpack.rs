//! thin_metadata_unpack command line (1.x options): `thin_metadata_unpack
//! -i|--input FILE -o|--output DEV [-f|--force]`.

use super::ls::common::{check_input, check_overwrite, engine_arg, fail, parse};
use std::ffi::OsString;
use std::path::PathBuf;
use uthin_tools::report::Report;

/// Entry point: `args[0]` is the program name.
pub fn main(args: Vec<OsString>) -> i32 {
    use clap::{Arg, ArgAction, Command};
    let cmd = Command::new("thin_metadata_unpack")
        .about("Unpack a compressed file of thin metadata.")
        .arg(
            Arg::new("force")
                .short('f')
                .long("force")
                .help("Force overwrite the output file")
                .action(ArgAction::SetTrue),
        )
        .arg(
            Arg::new("input")
                .short('i')
                .long("input")
                .value_name("FILE")
                .help("Specify packed input file")
                .required(true)
                .value_parser(clap::value_parser!(PathBuf)),
        )
        .arg(
            Arg::new("output")
                .short('o')
                .long("output")
                .value_name("DEV")
                .help("Specify thinp metadata binary device/file")
                .required(true)
                .value_parser(clap::value_parser!(PathBuf)),
        )
        .arg(engine_arg());
    let m = match parse(cmd, args) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let input = m.get_one::<PathBuf>("input").expect("required");
    let output = m.get_one::<PathBuf>("output").expect("required");
    if let Err(e) =
        check_input(input, false).and_then(|_| check_overwrite(output, m.get_flag("force")))
    {
        return fail(&e);
    }
    match uthin_tools::pack::unpack(input, output, &Report::new(false)) {
        Ok(_) => 0,
        Err(e) => fail(&e.to_string()),
    }
}
