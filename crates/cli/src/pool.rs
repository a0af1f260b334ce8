//! `uthin pool ...`: create a pool (sparse metadata and data files, or block
//! devices), report its status in the kernel's format and in words, and send
//! it the kernel's pool messages.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uthin_block_io::{BlockDevice, FileDevice, SECTOR_SIZE};
use uthin_thin::superblock::probe;
use uthin_thin::{DevId, OpenOptions, PoolMetadata};

/// Default pool folder.
pub const DEFAULT_DIR: &str = "uthin-pool";

#[derive(Subcommand)]
pub enum PoolCmd {
    /// Create a pool (sparse files in a folder, unless devices are given).
    Create(CreateArgs),
    /// Show a pool's status; creates the default pool on first use.
    Status(Location),
    /// Send a pool message, as `dmsetup message`: create_thin ID,
    /// create_snap ID ORIGIN, delete ID, set_transaction_id CUR NEW,
    /// reserve_metadata_snap, release_metadata_snap.
    Message {
        #[command(flatten)]
        loc: Location,
        /// The message words.
        #[arg(required = true, num_args = 1..)]
        words: Vec<String>,
    },
}

#[derive(Args, Clone)]
pub struct Location {
    /// Pool folder holding `metadata` and `data`.
    #[arg(long, default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Metadata file or block device (overrides the folder's).
    #[arg(long)]
    pub metadata: Option<PathBuf>,
    /// Data file or block device (overrides the folder's).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub loc: Location,
    /// Metadata size for a new file (e.g. 64M).
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    pub metadata_size: u64,
    /// Data size for a new file (e.g. 16G; sparse).
    #[arg(long, default_value = "16G", value_parser = parse_size)]
    pub data_size: u64,
    /// Data block size (64k to 1g, a multiple of 64k).
    #[arg(long, default_value = "64k", value_parser = parse_size)]
    pub block_size: u64,
}

/// Parses sizes like 4096, 64k, 16M, 2G, 1T (powers of 1024), or 128s (sectors).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (s, 1u64),
        Some((i, _)) => {
            let m = match s[i..]
                .to_ascii_lowercase()
                .trim_end_matches("ib")
                .trim_end_matches('b')
            {
                "" => 1,
                "s" => 512,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                "t" => 1 << 40,
                u => return Err(format!("unknown size unit {u:?} in {s:?}")),
            };
            (&s[..i], m)
        }
    };
    let n: u64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

impl Location {
    fn meta_path(&self) -> PathBuf {
        self.metadata
            .clone()
            .unwrap_or_else(|| self.dir.join("metadata"))
    }
    fn data_path(&self) -> PathBuf {
        self.data.clone().unwrap_or_else(|| self.dir.join("data"))
    }
}

pub fn run(cmd: PoolCmd) -> Result<()> {
    match cmd {
        PoolCmd::Create(a) => create(&a).map(|_| ()),
        PoolCmd::Status(loc) => {
            if loc.metadata.is_none() && !loc.meta_path().exists() {
                let a = CreateArgs {
                    loc: loc.clone(),
                    metadata_size: parse_size("64M").expect("const"),
                    data_size: parse_size("16G").expect("const"),
                    block_size: 65536,
                };
                create(&a)?;
            }
            status(&loc)
        }
        PoolCmd::Message { loc, words } => message(&loc, &words),
    }
}

fn open_dev(p: &Path, writable: bool) -> Result<Arc<FileDevice>> {
    Ok(Arc::new(
        FileDevice::open(p, writable).with_context(|| format!("cannot open {}", p.display()))?,
    ))
}

fn create(a: &CreateArgs) -> Result<()> {
    let bs = a.block_size;
    if !bs.is_multiple_of(65536) || !(65536..=1 << 30).contains(&bs) {
        bail!("block size {bs} bytes: must be 64 KiB to 1 GiB and a multiple of 64 KiB");
    }
    let (mp, dp) = (a.loc.meta_path(), a.loc.data_path());
    if a.loc.metadata.is_none() || a.loc.data.is_none() {
        std::fs::create_dir_all(&a.loc.dir)
            .with_context(|| format!("cannot create {}", a.loc.dir.display()))?;
    }
    let meta = if mp.exists() {
        open_dev(&mp, true)?
    } else {
        Arc::new(
            FileDevice::create(&mp, a.metadata_size)
                .with_context(|| format!("cannot create {}", mp.display()))?,
        )
    };
    if probe(meta.as_ref())?.is_some() {
        bail!(
            "{} already holds pool metadata; not overwriting it",
            mp.display()
        );
    }
    let data = if dp.exists() {
        open_dev(&dp, true)?
    } else {
        Arc::new(
            FileDevice::create(&dp, a.data_size)
                .with_context(|| format!("cannot create {}", dp.display()))?,
        )
    };
    let sectors = (bs / SECTOR_SIZE) as u32;
    let mut md = PoolMetadata::open(meta.clone(), OpenOptions::new(sectors))?;
    md.resize_data_dev(data.len()? / bs)?;
    md.commit()?;
    println!(
        "created pool: metadata {} ({} MiB), data {} ({} MiB, {} blocks of {} KiB)",
        mp.display(),
        meta.len()? >> 20,
        dp.display(),
        data.len()? >> 20,
        md.data_dev_size()?,
        bs >> 10
    );
    md.close()?;
    Ok(())
}

fn open_pool(loc: &Location, writable: bool) -> Result<PoolMetadata> {
    let mp = loc.meta_path();
    let meta = open_dev(&mp, writable)?;
    let Some(sb) =
        probe(meta.as_ref()).with_context(|| format!("{} is not pool metadata", mp.display()))?
    else {
        bail!(
            "{} is not formatted (all zero); run `uthin pool create`",
            mp.display()
        );
    };
    let mut o = OpenOptions::new(sb.data_block_size);
    o.read_only = !writable;
    o.format_if_empty = false;
    Ok(PoolMetadata::open(meta, o)?)
}

fn status(loc: &Location) -> Result<()> {
    let md = open_pool(loc, false)?;
    let st = uthin_thin::status::PoolStatus::read(&md)?;
    println!("{}", st.kernel_line());
    println!(
        "metadata: {} of {} blocks used; data: {} of {} blocks used ({} KiB blocks)",
        st.used_meta,
        st.total_meta,
        st.used_data,
        st.total_data,
        md.data_block_size() / 2
    );
    for id in md.device_ids()? {
        let d = md.device_details(id)?;
        println!(
            "thin {id}: {} mapped blocks, created at time {} (transaction {}), snapshotted at time {}",
            d.mapped_blocks, d.creation_time, d.transaction_id, d.snapshotted_time
        );
    }
    Ok(())
}

fn message(loc: &Location, words: &[String]) -> Result<()> {
    let mut md = open_pool(loc, true)?;
    let n = |i: usize| -> Result<u64> {
        let w = words
            .get(i)
            .with_context(|| format!("{}: missing argument {i}", words[0]))?;
        w.parse()
            .with_context(|| format!("{}: {w:?} is not a number", words[0]))
    };
    let argc = |k: usize| -> Result<()> {
        if words.len() != k + 1 {
            bail!(
                "{} takes {k} argument(s), got {}",
                words[0],
                words.len() - 1
            );
        }
        Ok(())
    };
    match words[0].as_str() {
        "create_thin" => {
            argc(1)?;
            md.create_thin(DevId(n(1)?))?
        }
        "create_snap" => {
            argc(2)?;
            md.create_snap(DevId(n(1)?), DevId(n(2)?))?
        }
        "delete" => {
            argc(1)?;
            md.delete_thin(DevId(n(1)?))?
        }
        "set_transaction_id" => {
            argc(2)?;
            md.set_transaction_id(n(1)?, n(2)?)?
        }
        "reserve_metadata_snap" => {
            argc(0)?;
            md.reserve_metadata_snap()?;
        }
        "release_metadata_snap" => {
            argc(0)?;
            md.release_metadata_snap()?
        }
        w => bail!("unknown pool message {w:?}"),
    }
    md.commit()?;
    md.close()?;
    Ok(())
}
