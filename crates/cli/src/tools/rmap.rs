//! thin_rmap command line (being written).

use std::ffi::OsString;

/// Entry point: `args[0]` is the program name.
pub fn main(_args: Vec<OsString>) -> i32 {
    eprintln!("thin_rmap: not implemented yet");
    1
}
