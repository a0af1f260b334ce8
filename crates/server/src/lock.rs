//! One writer per pool: an exclusive `flock` on the metadata device, held
//! for as long as the pool is open (a daemon's life, or one CLI command).
//! The lock goes with the process, so a crashed daemon never leaves it
//! behind.  The holder's pid is written beside the pool for the message.

use crate::error::{Error, Result};
use crate::layout::PoolPaths;
use rustix::fs::{flock, FlockOperation};
use std::fs::File;
use std::path::PathBuf;

/// A held pool lock.
pub struct PoolLock {
    _file: File,
    pid_file: PathBuf,
}

impl PoolLock {
    /// Takes the lock, or says who holds it.
    pub fn acquire(paths: &PoolPaths) -> Result<PoolLock> {
        let file =
            File::open(&paths.metadata).map_err(|e| Error::io(&paths.metadata, "open", e))?;
        let pid_file = paths.dir.join("uthin.pid");
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            let who = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .map_or_else(String::new, |p| format!(" (pid {p})"));
            return Err(Error::Locked(format!(
                "the pool {} is open in another uthin process{who}; a running `uthin serve` takes \
                 commands through its control socket {}",
                paths.metadata.display(),
                paths.control_socket().display()
            )));
        }
        let _ = std::fs::write(&pid_file, format!("{}\n", std::process::id()));
        Ok(PoolLock {
            _file: file,
            pid_file,
        })
    }
}

impl Drop for PoolLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pid_file);
    }
}
