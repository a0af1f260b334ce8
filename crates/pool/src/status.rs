//! Status lines in the kernel's formats (FORMAT.md §6.1):
//!
//! ```text
//! pool: <trans_id> <used_meta>/<total_meta> <used_data>/<total_data> <held_root|->
//!       <rw|ro|out_of_data_space> <discard_passdown|no_discard_passdown|ignore_discard>
//!       <queue_if_no_space|error_if_no_space> <needs_check|-> <metadata_low_watermark>
//!       (or "Fail")
//! thin: <mapped_sectors> <highest_mapped_sector|->   (or "Fail")
//! ```

use crate::io::Thin;
use crate::mode::PoolMode;
use crate::pool::Pool;
use uthin_thin::status::PoolStatus;

impl Pool {
    /// The pool status line, after a commit (as `dmsetup status` does
    /// unless asked for `--noflush`).
    pub fn status_line(&self) -> String {
        if self.check_io().is_ok() && self.mode().metadata_writable() {
            if let Err(e) = self.commit_inner() {
                log::error!("commit before status failed: {e}");
            }
        }
        self.events.deliver();
        self.status_line_noflush()
    }

    /// The pool status line without committing first.
    pub fn status_line_noflush(&self) -> String {
        let mode = self.mode();
        if mode == PoolMode::Fail {
            return "Fail".into();
        }
        let st = match PoolStatus::read(&self.md.read()) {
            Ok(st) => st,
            Err(e) => {
                log::error!("reading the pool status: {e}");
                return "Error".into();
            }
        };
        let f = &self.cfg.features;
        let discard = if f.ignore_discard {
            "ignore_discard"
        } else if f.no_discard_passdown {
            "no_discard_passdown"
        } else {
            "discard_passdown"
        };
        let no_space = if self.error_if_no_space_now() {
            "error_if_no_space"
        } else {
            "queue_if_no_space"
        };
        format!(
            "{} {}/{} {}/{} {} {} {} {} {} {}",
            st.transaction_id,
            st.used_meta,
            st.total_meta,
            st.used_data,
            st.total_data,
            st.held_root.map_or("-".to_string(), |h| h.to_string()),
            mode.status_word(),
            discard,
            no_space,
            if st.needs_check { "needs_check" } else { "-" },
            st.metadata_low_watermark
        )
    }
}

impl Thin {
    /// The thin status line: mapped sectors and the highest mapped sector.
    pub fn status_line(&self) -> String {
        if self.pool.mode() == PoolMode::Fail {
            return "Fail".into();
        }
        let bs = self.pool.cfg.data_block_size as u64;
        let md = self.pool.md.read();
        let dev = self.dev_id();
        match (md.mapped_count(dev), md.highest_mapped(dev)) {
            (Ok(n), Ok(h)) => format!(
                "{} {}",
                n * bs,
                h.map_or("-".to_string(), |h| ((h.0 + 1) * bs - 1).to_string())
            ),
            _ => "Error".into(),
        }
    }

    /// Mapped blocks of this device.
    pub fn mapped_blocks(&self) -> crate::Result<u64> {
        self.pool
            .md
            .read()
            .mapped_count(self.dev_id())
            .map_err(crate::pool::meta_err("mapped_count"))
    }
}
