//! thin_metadata_size command line (1.x options): `thin_metadata_size
//! -b SIZE -s SIZE -m NUM [-u UNIT] [-n[=short|long]]`.  Sizes are
//! `NUMBER[UNIT]` (sectors by default); units are b, s, k, m, g, t, p, e
//! (binary), K, M, G, T, P, E (decimal) or their long and IEC names.

use super::ls::common::{fail, parse, print};
use std::ffi::OsString;
use uthin_tools::metadata_size::units::{Size, Unit};
use uthin_tools::metadata_size::{format_size, metadata_size, OutputFormat};

/// Entry point: `args[0]` is the program name.
pub fn main(args: Vec<OsString>) -> i32 {
    use clap::builder::PossibleValuesParser;
    use clap::{value_parser, Arg, Command};
    let cmd = Command::new("thin_metadata_size")
        .about("Estimate the size of the metadata device needed for a given configuration.")
        .arg(
            Arg::new("numeric-only")
                .short('n')
                .long("numeric-only")
                .value_name("OPT")
                .help("Output numeric value only")
                .num_args(0..=1)
                .require_equals(true)
                .value_parser(PossibleValuesParser::new(["short", "long"]))
                .hide_possible_values(true),
        )
        .arg(
            Arg::new("block-size")
                .short('b')
                .long("block-size")
                .value_name("SIZE[bskmg]")
                .help("Specify the data block size")
                .required(true)
                .value_parser(|s: &str| s.parse::<Size>()),
        )
        .arg(
            Arg::new("pool-size")
                .short('s')
                .long("pool-size")
                .value_name("SIZE[bskmgtp]")
                .help("Specify the size of pool device")
                .required(true)
                .value_parser(|s: &str| s.parse::<Size>()),
        )
        .arg(
            Arg::new("max-thins")
                .short('m')
                .long("max-thins")
                .value_name("NUM")
                .help("Maximum number of thin devices and snapshots")
                .required(true)
                .value_parser(value_parser!(u64)),
        )
        .arg(
            Arg::new("unit")
                .short('u')
                .long("unit")
                .value_name("UNIT")
                .help("Specify the output unit in {bskKmMgG}")
                .default_value("sector")
                .value_parser(|s: &str| s.parse::<Unit>()),
        );
    let m = match parse(cmd, args) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let block = m.get_one::<Size>("block-size").expect("required").bytes();
    let pool = m.get_one::<Size>("pool-size").expect("required").bytes();
    let thins = *m.get_one::<u64>("max-thins").expect("required");
    let unit = *m.get_one::<Unit>("unit").expect("defaulted");
    let format = match m.get_one::<String>("numeric-only").map(String::as_str) {
        Some("short") => OutputFormat::ShortUnits,
        Some(_) => OutputFormat::LongUnits,
        None if m.contains_id("numeric-only")
            && m.value_source("numeric-only") == Some(clap::parser::ValueSource::CommandLine) =>
        {
            OutputFormat::NumericOnly
        }
        None => OutputFormat::Full,
    };
    match metadata_size(pool, block, thins) {
        Ok(bytes) => print(&format!("{}\n", format_size(bytes, unit, format))),
        Err(e) => fail(&e.to_string()),
    }
}
