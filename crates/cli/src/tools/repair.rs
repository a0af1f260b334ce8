//! thin_repair command line, as thin-provisioning-tools 1.x: `-i/--input`,
//! `-o/--output` (an existing file or device of at least 40 KiB), `-q`,
//! and the superblock overrides `--transaction-id`, `--data-block-size`,
//! `--nr-data-blocks`.  Hidden, for compatibility: a positional argument
//! (lvconvert passes an empty one), `--io-engine`, `-v` (lists the root
//! candidates).  Exit codes: 0 done, 2 bad arguments, 64 any other failure
//! (1.x reports every failure as `EX_USAGE`).

use clap::{value_parser, Arg, ArgAction, Command};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use uthin_tools::repair::{repair, Overrides, RepairOptions};
use uthin_tools::report::Report;

/// Exit code of a failed repair.
const EXIT_FAILURE: i32 = 64;

fn cli() -> Command {
    Command::new("thin_repair")
        .about("Repair thin-provisioning metadata, and write it to different device or file")
        .arg(
            Arg::new("QUIET")
                .help("Suppress output messages, return only exit code.")
                .short('q')
                .long("quiet")
                .action(ArgAction::SetTrue),
        )
        .arg(
            Arg::new("DATA_BLOCK_SIZE")
                .help("Provide the data block size for repairing")
                .long("data-block-size")
                .value_name("SECTORS")
                .value_parser(value_parser!(u32)),
        )
        .arg(
            Arg::new("INPUT")
                .help("Specify the input device")
                .short('i')
                .long("input")
                .value_name("FILE")
                .value_parser(value_parser!(PathBuf))
                .required(true),
        )
        .arg(
            Arg::new("NR_DATA_BLOCKS")
                .help("Override the number of data blocks if needed")
                .long("nr-data-blocks")
                .value_name("NUM")
                .value_parser(value_parser!(u64)),
        )
        .arg(
            Arg::new("OUTPUT")
                .help("Specify the output device")
                .short('o')
                .long("output")
                .value_name("FILE")
                .value_parser(value_parser!(PathBuf))
                .required(true),
        )
        .arg(
            Arg::new("TRANSACTION_ID")
                .help("Override the transaction id if needed")
                .long("transaction-id")
                .value_name("NUM")
                .value_parser(value_parser!(u64)),
        )
        .arg(Arg::new("DUMMY").index(1).required(false).hide(true))
        .arg(
            Arg::new("IO_ENGINE")
                .long("io-engine")
                .value_name("IO_ENGINE")
                .hide(true),
        )
        .arg(
            Arg::new("VERBOSE")
                .short('v')
                .action(ArgAction::Count)
                .hide(true),
        )
}

/// Checks the input as 1.x does: it exists, is a file or block device, and
/// holds at least one block.
fn check_input(p: &Path) -> Result<(), String> {
    let md = std::fs::metadata(p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("Couldn't find input file '{}'", p.display()),
        _ => format!("Invalid input file: {e}"),
    })?;
    if !(md.is_file() || is_block_device(&md)) {
        return Err(format!(
            "Not a block device or regular file '{}'.",
            p.display()
        ));
    }
    let len = device_len(p).map_err(|e| format!("Couldn't get file size: {e}"))?;
    if len < 4096 {
        return Err("Metadata device/file too small.  Is this binary metadata?".into());
    }
    Ok(())
}

/// Checks the output as 1.x does: it exists and holds at least 10 blocks.
fn check_output(p: &Path) -> Result<(), String> {
    let md = std::fs::metadata(p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("Couldn't find output file '{}'", p.display()),
        _ => format!("Invalid output file: {e}"),
    })?;
    // 1.x's words (its file_size fails that way).
    if !(md.is_file() || is_block_device(&md)) {
        return Err("Invalid output file: Not a block device or regular file".into());
    }
    let len = device_len(p).map_err(|e| format!("Invalid output file: {e}"))?;
    if len < 40960 {
        return Err("Output file too small.".into());
    }
    Ok(())
}

fn is_block_device(md: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    md.file_type().is_block_device()
}

fn device_len(p: &Path) -> std::io::Result<u64> {
    use uthin_block_io::BlockDevice;
    uthin_block_io::FileDevice::open(p, false)?.len()
}

/// Entry point: `args[0]` is the program name.
pub fn main(args: Vec<OsString>) -> i32 {
    let m = match super::parse_args(cli(), args) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let quiet = m.get_flag("QUIET");
    let fail = |msg: String| {
        if !quiet {
            eprintln!("{msg}");
        }
        EXIT_FAILURE
    };
    let input = m.get_one::<PathBuf>("INPUT").expect("required");
    let output = m.get_one::<PathBuf>("OUTPUT").expect("required");
    let engine = m.get_one::<String>("IO_ENGINE").map(String::as_str);
    if let Err(msg) = check_input(input)
        .and_then(|_| check_output(output))
        .and_then(|_| super::check_engine_name(engine))
    {
        return fail(msg);
    }
    let opts = RepairOptions {
        overrides: Overrides {
            transaction_id: m.get_one::<u64>("TRANSACTION_ID").copied(),
            data_block_size: m.get_one::<u32>("DATA_BLOCK_SIZE").copied(),
            nr_data_blocks: m.get_one::<u64>("NR_DATA_BLOCKS").copied(),
        },
        verbose: m.get_count("VERBOSE") > 0,
    };
    let report = Report::new(quiet);
    match repair(input, output, &opts, &report) {
        Ok(()) => 0,
        Err(e) => fail(e.to_string()),
    }
}
