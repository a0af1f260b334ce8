//! Where the pool is (`--dir`, `--metadata`, `--data`), the pool's runtime
//! configuration flags (the kernel's table line), and `uthin pool create`.

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use uthin_pool::{Features, PoolConfig};
use uthin_server::layout::{self, parse_size, CreateOptions, PoolPaths, DEFAULT_DIR};

/// Which pool.
#[derive(Args, Clone, Debug)]
pub struct Location {
    /// Pool folder (metadata and data files, volume registry, sockets).
    #[arg(long, default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Metadata file or block device (instead of DIR/metadata).
    #[arg(long)]
    pub metadata: Option<PathBuf>,
    /// Data file or block device (instead of DIR/data).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

impl Location {
    pub fn paths(&self) -> PoolPaths {
        PoolPaths::new(&self.dir, self.metadata.as_deref(), self.data.as_deref())
    }
}

/// Sizes of a pool created on first use.
#[derive(Args, Clone, Debug)]
pub struct CreateArgs {
    /// Size of a new metadata file.
    #[arg(long, default_value = "128M", value_parser = parse_size)]
    pub metadata_size: u64,
    /// Size of a new (sparse) data file.
    #[arg(long, default_value = "16G", value_parser = parse_size)]
    pub data_size: u64,
    /// Data block size: 64k to 1g, a multiple of 64k (fixed for the pool's life).
    #[arg(long, default_value = "64k", value_parser = parse_size)]
    pub block_size: u64,
}

impl CreateArgs {
    pub fn options(&self) -> CreateOptions {
        CreateOptions {
            metadata_size: self.metadata_size,
            data_size: self.data_size,
            block_size: self.block_size,
        }
    }
}

/// How the pool runs: the kernel's thin-pool table line and timers.
#[derive(Args, Clone, Debug)]
pub struct ConfigArgs {
    /// Raise the data low-water event when this many data blocks are left.
    #[arg(long, default_value_t = 0)]
    pub low_water: u64,
    /// Do not zero newly provisioned blocks.
    #[arg(long)]
    pub skip_block_zeroing: bool,
    /// Ignore discards (TRIM) entirely.
    #[arg(long)]
    pub ignore_discard: bool,
    /// Unmap discarded blocks but do not punch holes in the data device.
    #[arg(long)]
    pub no_discard_passdown: bool,
    /// Never change the metadata: serve every volume read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Fail writes at once when out of data space, instead of queueing them.
    #[arg(long)]
    pub error_if_no_space: bool,
    /// Seconds writes wait for data space before failing (0: forever).
    #[arg(long, default_value_t = 60)]
    pub no_space_timeout: u64,
}

impl ConfigArgs {
    pub fn config(&self) -> PoolConfig {
        PoolConfig {
            low_water_blocks: self.low_water,
            features: Features {
                skip_block_zeroing: self.skip_block_zeroing,
                ignore_discard: self.ignore_discard,
                no_discard_passdown: self.no_discard_passdown,
                read_only: self.read_only,
                error_if_no_space: self.error_if_no_space,
            },
            no_space_timeout: Duration::from_secs(self.no_space_timeout),
            ..PoolConfig::default()
        }
    }
}

/// `uthin pool create`.
pub fn create(loc: &Location, a: &CreateArgs) -> Result<()> {
    let paths = loc.paths();
    let c = layout::create(&paths, &a.options())?;
    println!("created pool {}: {c}", paths.dir.display());
    Ok(())
}
