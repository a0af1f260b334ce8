//! thin_check command line: the options, messages and exit codes of
//! thin-provisioning-tools 1.x.  Success exits 0; any failure exits 64
//! (1.x's `exitcode::USAGE` for every error); bad arguments exit 2 (clap).
//! Standard output carries `TRANSACTION_ID=` and `METADATA_FREE_BLOCKS=`
//! (1.x's info lines), standard error the progress titles and problems;
//! `-q` silences both.

use clap::{ArgAction, Parser};
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use uthin_tools::check::{CheckOptions, Checker};
use uthin_tools::report::Report;

/// Exit status of a failed check (thin-provisioning-tools 1.x).
pub const FAILURE: i32 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "thin_check",
    about = "Validates thin provisioning metadata on a device or file."
)]
struct Args {
    #[arg(help = "Auto repair trivial issues.", 
        long = "auto-repair",
        conflicts_with_all = ["ignore_non_fatal", "metadata_snap", "override_mapping_root",
                              "override_details_root", "sb_only", "skip_mappings"]
    )]
    auto_repair: bool,

    #[arg(help = "Clears the 'needs_check' flag in the superblock", 
        long = "clear-needs-check-flag",
        conflicts_with_all = ["metadata_snap", "override_mapping_root", "override_details_root"]
    )]
    clear_needs_check: bool,

    #[arg(
        help = "Only return a non-zero exit code if a fatal error is found.",
        long = "ignore-non-fatal-errors"
    )]
    ignore_non_fatal: bool,

    #[arg(
        help = "Check the metadata snapshot on a live pool",
        short = 'm',
        long = "metadata-snap"
    )]
    metadata_snap: bool,

    #[arg(
        help = "Suppress output messages, return only exit code.",
        short = 'q',
        long = "quiet"
    )]
    quiet: bool,

    #[arg(help = "Only check the superblock.", long = "super-block-only")]
    sb_only: bool,

    #[arg(help = "Don't check the mapping tree", long = "skip-mappings")]
    skip_mappings: bool,

    #[arg(
        help = "Specify a mapping root to use",
        long = "override-mapping-root",
        value_name = "BLOCKNR"
    )]
    override_mapping_root: Option<u64>,

    #[arg(
        help = "Specify a details root to use",
        long = "override-details-root",
        value_name = "BLOCKNR"
    )]
    override_details_root: Option<u64>,

    #[arg(help = "Increase log verbosity (accepted for compatibility)", short = 'v', action = ArgAction::Count, hide = true)]
    verbose: u8,

    #[arg(
        help = "Select an io engine to use (accepted for compatibility)",
        long = "io-engine",
        value_name = "IO_ENGINE",
        hide = true
    )]
    io_engine: Option<String>,

    #[arg(help = "Specify the input device to check", value_name = "INPUT")]
    input: PathBuf,
}

/// 1.x's checks of the input path, with its messages.
fn check_input(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let md = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("Couldn't find input file '{}'", path.display()),
        _ => format!("Couldn't access input file '{}': {e}", path.display()),
    })?;
    let ft = md.file_type();
    if !ft.is_file() && !ft.is_block_device() {
        return Err(format!(
            "Not a block device or regular file '{}'.",
            path.display()
        ));
    }
    let mut f = std::fs::File::open(path)
        .map_err(|e| format!("Couldn't open input file '{}': {e}", path.display()))?;
    let size = if ft.is_file() {
        md.len()
    } else {
        use std::io::{Seek, SeekFrom};
        f.seek(SeekFrom::End(0)).unwrap_or(0)
    };
    if size < 4096 {
        return Err("Metadata device/file too small.  Is this binary metadata?".into());
    }
    let mut head = [0u8; 16];
    if ft.is_file() && f.read_exact(&mut head).is_ok() {
        let xml = [&b"<superblock"[..], b"?xml", b"<!DOCTYPE"];
        if xml.iter().any(|p| head.starts_with(p)) {
            return Err(
                "This looks like XML.  This tool only supports the binary metadata format.".into(),
            );
        }
    }
    Ok(())
}

/// Entry point: `args[0]` is the program name.
pub fn main(args: Vec<OsString>) -> i32 {
    let a = match super::parse_derived::<Args>(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let report = Report::new(a.quiet);
    let fail = |msg: &str| {
        report.finish();
        report.info(msg);
        FAILURE
    };
    if let Err(msg) =
        check_input(&a.input).and_then(|_| super::check_engine_name(a.io_engine.as_deref()))
    {
        return fail(&msg);
    }
    let opts = CheckOptions {
        sb_only: a.sb_only,
        skip_mappings: a.skip_mappings,
        ignore_non_fatal: a.ignore_non_fatal,
        auto_repair: a.auto_repair,
        clear_needs_check: a.clear_needs_check,
        metadata_snap: a.metadata_snap,
        override_mapping_root: a.override_mapping_root,
        override_details_root: a.override_details_root,
    };
    let checker = match Checker::open_path(&a.input, opts) {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    if !a.quiet {
        println!("TRANSACTION_ID={}", checker.transaction_id());
        println!("METADATA_FREE_BLOCKS={}", checker.metadata_free_blocks());
    }
    match checker.run(&report).error {
        None => 0,
        Some(e) => fail(&e.to_string()),
    }
}
