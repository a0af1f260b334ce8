//! The thin_* tools' command lines.  Each tool module parses the options of
//! thin-provisioning-tools 1.x, calls `uthin_tools`, prints, and returns the
//! exit code.  A tool runs when the binary is invoked under the tool's name
//! (a symlink `thin_check -> uthin`, the multi-call convention) or as
//! `uthin check ...`.

mod check;
mod delta;
mod dump;
mod ls;
mod metadata_pack;
mod metadata_size;
mod metadata_unpack;
mod repair;
mod restore;
mod rmap;
mod trim;

use std::ffi::OsString;

/// A tool's entry point: `args[0]` is the program name.
pub type ToolMain = fn(Vec<OsString>) -> i32;

/// What `-V`/`--version` prints: the thin-provisioning-tools release whose
/// options, output and exit codes the tools reproduce.  Bare, as 1.x prints
/// it since 1.0.12: LVM reads it with `"%u.%u.%u"` to decide which options
/// `thin_check` takes.
pub const TOOLS_VERSION: &str = "1.3.3";

/// 1.x's check of the hidden `--io-engine` option: `sync` and `spindle`
/// (and `async`, which 1.x builds with io_uring take; uthin has one engine
/// and takes every name 1.x defines), anything else fails.
pub fn check_engine_name(name: Option<&str>) -> Result<(), String> {
    match name {
        None | Some("sync" | "spindle" | "async") => Ok(()),
        Some(e) => Err(format!("unknown io engine type '{e}'")),
    }
}

/// 1.x's `-V/--version`: allowed only alone (clap's `exclusive`, so the
/// required arguments are not asked for).
pub fn version_arg() -> clap::Arg {
    clap::Arg::new("version")
        .short('V')
        .long("version")
        .help("Print version")
        .exclusive(true)
        .action(clap::ArgAction::SetTrue)
}

/// Parses `args` with `cmd` (its own version flag replaced by
/// [`version_arg`]); on a bad argument, `--help` or `--version`, prints
/// what 1.x prints and returns the exit code.  Options are listed in the
/// help in alphabetical order, as 1.x lists them.
pub fn parse_args(cmd: clap::Command, args: Vec<OsString>) -> Result<clap::ArgMatches, i32> {
    let m = cmd
        .next_display_order(None)
        .mut_args(|a| a.display_order(None))
        .disable_version_flag(true)
        .arg(version_arg())
        .try_get_matches_from(args)
        .map_err(|e| {
            let _ = e.print();
            e.exit_code()
        })?;
    if m.get_flag("version") {
        return Err(ls::common::print(&format!("{TOOLS_VERSION}\n")));
    }
    Ok(m)
}

/// [`parse_args`] for the tools whose options are a `clap::Parser`.
pub fn parse_derived<T: clap::Parser>(args: Vec<OsString>) -> Result<T, i32> {
    let m = parse_args(T::command(), args)?;
    T::from_arg_matches(&m).map_err(|e| {
        let _ = e.print();
        e.exit_code()
    })
}

/// (program name, subcommand, entry point) of every tool.
pub const TOOLS: &[(&str, &str, ToolMain)] = &[
    ("thin_check", "check", check::main),
    ("thin_dump", "dump", dump::main),
    ("thin_restore", "restore", restore::main),
    ("thin_repair", "repair", repair::main),
    ("thin_ls", "ls", ls::main),
    ("thin_delta", "delta", delta::main),
    ("thin_rmap", "rmap", rmap::main),
    ("thin_trim", "trim", trim::main),
    ("thin_metadata_size", "metadata-size", metadata_size::main),
    ("thin_metadata_pack", "metadata-pack", metadata_pack::main),
    (
        "thin_metadata_unpack",
        "metadata-unpack",
        metadata_unpack::main,
    ),
];

/// The tool invoked as `program` (a path's file name), if any.
pub fn by_program(program: &str) -> Option<ToolMain> {
    TOOLS.iter().find(|t| t.0 == program).map(|t| t.2)
}

/// The tool named by a subcommand of `uthin`, with its program name.
pub fn by_subcommand(sub: &str) -> Option<(&'static str, ToolMain)> {
    TOOLS.iter().find(|t| t.1 == sub).map(|t| (t.0, t.2))
}
