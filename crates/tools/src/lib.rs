//! The thin_* metadata tools of thin-provisioning-tools 1.x, as a library.
//! Each module holds one tool's logic; the `uthin` binary parses the
//! arguments (as the tool itself when invoked under its name) and reports.
//!
//! Shared pieces: [`reader`] opens metadata read-only (optionally a metadata
//! snapshot or overridden roots), [`report`] is the one progress/reporting
//! type, [`error`] the tools' errors.
#![forbid(unsafe_code)]

pub mod check;
pub mod delta;
pub mod dump;
pub mod error;
pub mod ir;
pub mod ls;
pub mod metadata_size;
pub mod pack;
pub mod reader;
pub mod repair;
pub mod report;
pub mod restore;
pub mod rmap;
pub mod trim;
pub mod xml;

pub use error::{Error, Result};
