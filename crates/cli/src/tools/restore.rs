//! thin_restore command line, as thin-provisioning-tools 1.x: `-i/--input`
//! (XML), `-o/--output` (an existing file or device of at least 40 KiB),
//! `-q`, and the superblock overrides `--transaction-id`,
//! `--data-block-size`, `--nr-data-blocks`.  Exit codes: 0 done, 2 bad
//! arguments (clap), 64 any other failure (1.x reports every failure as
//! `EX_USAGE`).

use clap::Parser;
use std::ffi::OsString;
use std::path::PathBuf;
use uthin_tools::dump::checks;
use uthin_tools::ir::SuperblockOverrides;
use uthin_tools::report::Report;
use uthin_tools::restore::restore;

/// Exit code of a failed restore.
const EXIT_FAILURE: i32 = 64;

#[derive(Parser)]
#[command(
    name = "thin_restore",
    about = "Convert XML format metadata to binary.",
    next_display_order = None
)]
struct Args {
    #[arg(
        long,
        value_name = "SECTORS",
        help = "Override the data block size if needed"
    )]
    data_block_size: Option<u32>,
    #[arg(short = 'i', long, value_name = "FILE", help = "Specify the input xml")]
    input: PathBuf,
    #[arg(
        long,
        value_name = "NUM",
        help = "Override the number of data blocks if needed"
    )]
    nr_data_blocks: Option<u64>,
    #[arg(
        short = 'o',
        long,
        value_name = "FILE",
        help = "Specify the output device"
    )]
    output: PathBuf,
    #[arg(
        short = 'q',
        long,
        help = "Suppress output messages, return only exit code."
    )]
    quiet: bool,
    #[arg(
        long,
        value_name = "NUM",
        help = "Override the transaction id if needed"
    )]
    transaction_id: Option<u64>,
    /// 1.x's hidden `-v` (log verbosity): accepted, no effect.
    #[arg(short = 'v', action = clap::ArgAction::Count, hide = true)]
    verbose: u8,
    /// 1.x's hidden engine choice: checked, uthin has one engine.
    #[arg(long = "io-engine", value_name = "IO_ENGINE", hide = true)]
    io_engine: Option<String>,
}

/// Entry point: `args[0]` is the program name.
pub fn main(args: Vec<OsString>) -> i32 {
    let a = match super::parse_derived::<Args>(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let report = Report::new(a.quiet);
    let overrides = SuperblockOverrides {
        transaction_id: a.transaction_id,
        data_block_size: a.data_block_size,
        nr_data_blocks: a.nr_data_blocks,
    };
    let r = checks::check_input_file(&a.input)
        .and_then(|_| checks::check_output_file(&a.output))
        .and_then(|_| {
            super::check_engine_name(a.io_engine.as_deref()).map_err(uthin_tools::Error::msg)
        })
        .and_then(|_| restore(&a.input, &a.output, overrides, &report));
    match r {
        Ok(()) => 0,
        Err(e) => {
            if !a.quiet {
                eprintln!("{e}");
            }
            EXIT_FAILURE
        }
    }
}
