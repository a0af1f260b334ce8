//! The thin_* tools' command lines.  Each tool module parses the options of
//! thin-provisioning-tools 1.x, calls `uthin_tools`, prints, and returns the
//! exit code.  A tool runs when the binary is invoked under the tool's name
//! (a symlink `thin_check -> uthin`, the multi-call convention) or as
//! `uthin check ...`.

use std::ffi::OsString;

/// A tool's entry point: `args[0]` is the program name.
pub type ToolMain = fn(Vec<OsString>) -> i32;

/// (program name, subcommand, entry point) of every tool.
pub const TOOLS: &[(&str, &str, ToolMain)] = &[];

/// The tool invoked as `program` (a path's file name), if any.
pub fn by_program(program: &str) -> Option<ToolMain> {
    TOOLS.iter().find(|t| t.0 == program).map(|t| t.2)
}

/// The tool named by a subcommand of `uthin`, with its program name.
pub fn by_subcommand(sub: &str) -> Option<(&'static str, ToolMain)> {
    TOOLS.iter().find(|t| t.1 == sub).map(|t| (t.0, t.2))
}
