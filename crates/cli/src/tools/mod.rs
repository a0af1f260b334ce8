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
