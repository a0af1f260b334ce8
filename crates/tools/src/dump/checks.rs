//! The argument checks of thin-provisioning-tools 1.x's command lines, with
//! its messages: the input must exist and be a regular file or block
//! device, metadata must hold at least one block, and an output for
//! metadata must exist and hold at least ten blocks.

use crate::error::{Error, Result};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

fn is_file_or_blk(path: &Path) -> std::io::Result<bool> {
    let t = std::fs::metadata(path)?.file_type();
    Ok(t.is_file() || t.is_block_device())
}

fn size(path: &Path) -> std::io::Result<u64> {
    let m = std::fs::metadata(path)?;
    if m.file_type().is_block_device() {
        let f = std::fs::File::open(path)?;
        use std::io::Seek;
        let mut f = f;
        return f.seek(std::io::SeekFrom::End(0));
    }
    Ok(m.len())
}

/// The input exists and is a regular file or a block device.
pub fn check_input_file(path: &Path) -> Result<()> {
    match is_file_or_blk(path) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::msg(format!(
            "Not a block device or regular file '{}'.",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::msg(format!(
            "Couldn't find input file '{}'",
            path.display()
        ))),
        Err(e) => Err(Error::msg(format!(
            "Invalid input file '{}': {e}",
            path.display()
        ))),
    }
}

/// The input holds at least one 4 KiB block.
pub fn check_file_not_tiny(path: &Path) -> Result<()> {
    match size(path) {
        Ok(0..=4095) => Err(Error::msg(
            "Metadata device/file too small.  Is this binary metadata?",
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(Error::msg(format!(
            "Couldn't get file size of '{}': {e}",
            path.display()
        ))),
    }
}

/// An output for metadata exists, is a file or block device, and holds at
/// least 10 blocks (the smallest metadata with one device).
pub fn check_output_file(path: &Path) -> Result<()> {
    match is_file_or_blk(path) {
        Ok(true) => {}
        // 1.x's words (its file_size fails that way).
        Ok(false) => {
            return Err(Error::msg(
                "Invalid output file: Not a block device or regular file",
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::msg(format!(
                "Couldn't find output file '{}'",
                path.display()
            )))
        }
        Err(e) => {
            return Err(Error::msg(format!(
                "Invalid output file '{}': {e}",
                path.display()
            )))
        }
    }
    match size(path) {
        Ok(0..=40959) => Err(Error::msg("Output file too small.")),
        Ok(_) => Ok(()),
        Err(e) => Err(Error::msg(format!(
            "Invalid output file '{}': {e}",
            path.display()
        ))),
    }
}
