//! thin_dump command line, as thin-provisioning-tools 1.x: `<INPUT>`,
//! `-f/--format xml|human_readable`, `-r/--repair`, `-m/--metadata-snap[=BLOCKNR]`,
//! `-o/--output`, `--dev-id` (repeatable), `--skip-mappings`, `-q`, and the
//! superblock overrides `--transaction-id`, `--data-block-size`,
//! `--nr-data-blocks`.  Hidden extras: `--override-mapping-root` and
//! `--override-details-root` (as thin_check's).  Exit codes: 0 done, 2 bad
//! arguments (clap), 64 any other failure (1.x reports every failure as
//! `EX_USAGE`).

use clap::{ArgAction, Parser};
use std::ffi::OsString;
use std::path::PathBuf;
use uthin_tools::dump::{checks, dump, DumpOptions, OutputFormat};
use uthin_tools::ir::SuperblockOverrides;
use uthin_tools::reader::SbChoice;
use uthin_tools::report::Report;

/// Exit code of a failed dump.
const EXIT_FAILURE: i32 = 64;

#[derive(Parser)]
#[command(
    name = "thin_dump",
    about = "Dump thin-provisioning metadata to stdout in XML format",
    next_display_order = None
)]
struct Args {
    #[arg(
        long,
        value_name = "SECTORS",
        help = "Provide the data block size for repairing"
    )]
    data_block_size: Option<u32>,
    #[arg(
        long,
        value_name = "THIN_ID",
        action = ArgAction::Append,
        help = "Dump the specified device"
    )]
    dev_id: Vec<u64>,
    #[arg(
        short = 'f',
        long,
        value_name = "TYPE",
        default_value = "xml",
        hide_default_value = true,
        hide_possible_values = true,
        value_parser = ["xml", "human_readable"],
        help = "Choose the output format"
    )]
    format: String,
    #[arg(
        short = 'm',
        long = "metadata-snap",
        value_name = "BLOCKNR",
        num_args = 0..=1,
        require_equals = true,
        help = "Access the metadata snapshot on a live pool"
    )]
    metadata_snap: Option<Option<u64>>,
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
        help = "Specify the output file rather than stdout"
    )]
    output: Option<PathBuf>,
    #[arg(
        short = 'q',
        long,
        help = "Suppress output messages, return only exit code."
    )]
    quiet: bool,
    #[arg(
        short = 'r',
        long,
        conflicts_with = "metadata_snap",
        help = "Repair the metadata whilst dumping it"
    )]
    repair: bool,
    #[arg(long, help = "Do not dump the mappings")]
    skip_mappings: bool,
    #[arg(
        long,
        value_name = "NUM",
        help = "Override the transaction id if needed"
    )]
    transaction_id: Option<u64>,
    /// 1.x's hidden `-v` (log verbosity): accepted, no effect.
    #[arg(short = 'v', action = ArgAction::Count, hide = true)]
    verbose: u8,
    /// 1.x's hidden engine choice: checked, uthin has one engine.
    #[arg(long = "io-engine", value_name = "IO_ENGINE", hide = true)]
    io_engine: Option<String>,
    #[arg(long, value_name = "BLOCKNR", hide = true)]
    override_mapping_root: Option<u64>,
    #[arg(long, value_name = "BLOCKNR", hide = true)]
    override_details_root: Option<u64>,
    #[arg(value_name = "INPUT", help = "Specify the input device to dump")]
    input: PathBuf,
}

/// Entry point: `args[0]` is the program name.
pub fn main(args: Vec<OsString>) -> i32 {
    let a = match super::parse_derived::<Args>(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let report = Report::new(a.quiet);
    let opts = DumpOptions {
        format: if a.format == "human_readable" {
            OutputFormat::HumanReadable
        } else {
            OutputFormat::Xml
        },
        repair: a.repair,
        sb: match a.metadata_snap {
            None => SbChoice::Live,
            // As 1.x: BLOCKNR is accepted and ignored; the snapshot is
            // the one the superblock holds (none held: "no current
            // metadata snap").  The library can still read one at a given
            // block (`SbChoice::At`).
            Some(_) => SbChoice::MetadataSnap,
        },
        dev_ids: (!a.dev_id.is_empty()).then(|| a.dev_id.clone()),
        skip_mappings: a.skip_mappings,
        overrides: SuperblockOverrides {
            transaction_id: a.transaction_id,
            data_block_size: a.data_block_size,
            nr_data_blocks: a.nr_data_blocks,
        },
        mapping_root: a.override_mapping_root,
        details_root: a.override_details_root,
    };
    let r = checks::check_input_file(&a.input)
        .and_then(|_| checks::check_file_not_tiny(&a.input))
        .and_then(|_| {
            super::check_engine_name(a.io_engine.as_deref()).map_err(uthin_tools::Error::msg)
        })
        .and_then(|_| dump(&a.input, a.output.as_deref(), &opts, &report));
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
