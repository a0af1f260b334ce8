//! thin_ls command line (1.x options): `thin_ls [--no-headers] [-m]
//! [-o FIELD,...] INPUT`.
//!
//! [`common`] holds what the command lines of ls, delta, rmap, trim,
//! metadata_size and metadata_pack/unpack share: argument parsing with
//! clap's exit codes (2 for bad arguments), 1.x's checks of the input file
//! and their messages, and exit code 64 for a failure, as 1.x.

use common::{check_engine, check_input, engine_arg, fail, parse, verbose_arg};
use std::ffi::OsString;
use std::path::PathBuf;
use uthin_tools::ls::{self, Field, DEFAULT_FIELDS};
use uthin_tools::report::Report;

/// Entry point: `args[0]` is the program name.
pub fn main(args: Vec<OsString>) -> i32 {
    use clap::{Arg, ArgAction, Command};
    let cmd = Command::new("thin_ls")
        .about("List thin volumes within a pool")
        .arg(
            Arg::new("no-headers")
                .long("no-headers")
                .help("Don't output headers")
                .action(ArgAction::SetTrue),
        )
        .arg(
            Arg::new("metadata-snap")
                .short('m')
                .long("metadata-snap")
                .help("Use metadata snapshot")
                .action(ArgAction::SetTrue),
        )
        .arg(
            Arg::new("format")
                .short('o')
                .long("format")
                .value_name("FIELDS")
                .help("Give a comma separated list of fields to be output")
                .value_delimiter(',')
                .value_parser(|s: &str| s.parse::<Field>()),
        )
        .arg(
            Arg::new("INPUT")
                .help("Specify the input device")
                .required(true)
                .value_parser(clap::value_parser!(PathBuf)),
        )
        .arg(engine_arg())
        .arg(verbose_arg());
    let m = match parse(cmd, args) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let input = m.get_one::<PathBuf>("INPUT").expect("required");
    if let Err(e) = check_engine(&m).and_then(|_| check_input(input, true)) {
        return fail(&e);
    }
    let fields: Vec<Field> = m
        .get_many::<Field>("format")
        .map(|f| f.copied().collect())
        .unwrap_or_else(|| DEFAULT_FIELDS.to_vec());
    let report = Report::new(false);
    match ls::list(input, m.get_flag("metadata-snap"), &fields, &report) {
        Ok(listing) => common::print(&ls::render(&fields, &listing, !m.get_flag("no-headers"))),
        Err(e) => fail(&e.to_string()),
    }
}

/// Shared by the command lines of ls, delta, rmap, trim, metadata_size and
/// metadata_pack/unpack.
pub(super) mod common {
    use clap::{Arg, ArgAction, ArgMatches, Command};
    use std::ffi::OsString;
    use std::io::Write;
    use std::path::Path;
    use uthin_block_io::BlockDevice;

    /// 1.x's exit code for any failure (`EX_USAGE`).
    pub const EXIT_FAILURE: i32 = 64;
    /// 1.x's exit code when thin_trim finds the metadata damaged (`EX_DATAERR`).
    pub const EXIT_DATAERR: i32 = 65;

    /// Parses `args`; on a bad argument (or --help/--version) prints what
    /// clap says and returns the exit code.
    pub fn parse(cmd: Command, args: Vec<OsString>) -> Result<ArgMatches, i32> {
        super::super::parse_args(cmd, args)
    }

    /// The hidden `--io-engine` option of 1.x (accepted; uthin has one engine).
    pub fn engine_arg() -> Arg {
        Arg::new("io-engine")
            .long("io-engine")
            .value_name("IO_ENGINE")
            .hide(true)
    }

    /// The hidden, repeatable `-v` of 1.x (accepted, no effect).
    pub fn verbose_arg() -> Arg {
        Arg::new("verbose-level")
            .short('v')
            .action(ArgAction::Count)
            .hide(true)
    }

    /// Checks the `--io-engine` value as 1.x does.
    pub fn check_engine(m: &ArgMatches) -> Result<(), String> {
        let name = m.try_get_one::<String>("io-engine").ok().flatten();
        super::super::check_engine_name(name.map(String::as_str))
    }

    /// 1.x's input checks: the file exists and is a regular file or a block
    /// device; with `metadata`, it holds at least one 4 KiB block.
    pub fn check_input(path: &Path, metadata: bool) -> Result<(), String> {
        use std::os::unix::fs::FileTypeExt;
        let md = std::fs::metadata(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("Couldn't find input file '{}'", path.display())
            } else {
                format!("Invalid input file '{}': {e}", path.display())
            }
        })?;
        if !md.is_file() && !md.file_type().is_block_device() {
            return Err(format!(
                "Not a block device or regular file '{}'.",
                path.display()
            ));
        }
        if metadata {
            let len = uthin_block_io::FileDevice::open(path, false)
                .and_then(|d| d.len())
                .map_err(|e| format!("Couldn't get file size: {e}"))?;
            if len < 4096 {
                return Err("Metadata device/file too small.  Is this binary metadata?".into());
            }
        }
        Ok(())
    }

    /// Refuses XML where binary metadata is expected (1.x's check).
    pub fn check_not_xml(path: &Path) -> Result<(), String> {
        use std::io::Read;
        let mut head = [0u8; 16];
        let ok = std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok();
        let xml = [&b"<superblock"[..], b"?xml", b"<!DOCTYPE"]
            .iter()
            .any(|p| head.starts_with(p));
        if ok && xml {
            return Err(
                "This looks like XML.  This tool only supports the binary metadata format.".into(),
            );
        }
        Ok(())
    }

    /// Unless `force`, asks before overwriting a file that holds metadata.
    pub fn check_overwrite(path: &Path, force: bool) -> Result<(), String> {
        if force || !uthin_tools::pack::holds_metadata(path) {
            return Ok(());
        }
        // On stderr, as 1.x asks (stdout may be a pipe).
        eprint!("The destination appears to already contain metadata, are you sure? [y/n]: ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        let a = answer.trim_end().to_lowercase();
        if a == "y" || a == "yes" {
            Ok(())
        } else {
            Err("Output file not overwritten".into())
        }
    }

    /// Prints a failure on stderr; returns 1.x's exit code.
    pub fn fail(msg: &str) -> i32 {
        eprintln!("{msg}");
        EXIT_FAILURE
    }

    /// Writes `text` to stdout (a closed pipe is not an error); returns 0.
    pub fn print(text: &str) -> i32 {
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                fail(&format!("writing the output: {e}"))
            }
            _ => 0,
        }
    }
}
