//! The volume commands: `create`, `snapshot`, `delete`, `list`, `resize`,
//! `status`, `message`, `metadata-snap`.  Each goes to the running daemon
//! through its control socket, or opens the pool itself (locked) when no
//! daemon runs, and prints the outcome.

use crate::pool::Location;
use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use std::path::PathBuf;
use uthin_pool::PoolConfig;
use uthin_server::api::{Outcome, Request, StatusInfo, VolumeInfo};
use uthin_server::control;
use uthin_server::layout::{human, parse_size};

#[derive(Subcommand)]
pub enum VolumeCmd {
    /// Create a thin volume.
    Create {
        name: String,
        /// Size (e.g. 10G); defaults to the origin's size with --origin.
        #[arg(long, value_parser = parse_size)]
        size: Option<u64>,
        /// A read-only external origin (file or block device): unwritten
        /// blocks read from it.
        #[arg(long)]
        origin: Option<PathBuf>,
        /// Serve it read-only.
        #[arg(long)]
        read_only: bool,
        #[command(flatten)]
        loc: Location,
    },
    /// Snapshot a volume (crash-consistent while clients write to it).
    Snapshot {
        source: String,
        name: String,
        /// Serve the snapshot read-only.
        #[arg(long)]
        read_only: bool,
        #[command(flatten)]
        loc: Location,
    },
    /// Delete a volume (refused while NBD clients use it).
    Delete {
        name: String,
        #[command(flatten)]
        loc: Location,
    },
    /// List volumes: size, mapped and exclusive space, snapshot parentage.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Skip the exclusive-space column (it walks every mapping).
        #[arg(long)]
        no_exclusive: bool,
        #[command(flatten)]
        loc: Location,
    },
    /// Change a volume's size.
    Resize {
        name: String,
        #[arg(long, value_parser = parse_size)]
        size: u64,
        /// Allow a smaller size (the data beyond it is discarded).
        #[arg(long)]
        allow_shrink: bool,
        #[command(flatten)]
        loc: Location,
    },
    /// Pool status: in words, as JSON, or as the kernel's status lines.
    Status {
        #[arg(long, value_enum, default_value_t = StatusFormat::Human)]
        format: StatusFormat,
        /// Same as --format json.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        loc: Location,
    },
    /// Send a pool message in dmsetup's words: "create_thin 5",
    /// "create_snap 6 5", "delete 5", "set_transaction_id 1 2",
    /// "reserve_metadata_snap", "release_metadata_snap".
    Message {
        #[arg(required = true, num_args = 1..)]
        words: Vec<String>,
        #[command(flatten)]
        loc: Location,
    },
    /// Reserve or release the metadata snapshot (for thin_dump -m, thin_ls -m).
    MetadataSnap {
        action: SnapAction,
        #[command(flatten)]
        loc: Location,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Human,
    Json,
    /// `dmsetup status` lines: the pool, then each volume.
    Kernel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SnapAction {
    Reserve,
    Release,
}

/// Runs a volume command.
pub fn run(cmd: VolumeCmd) -> Result<()> {
    let (loc, req, print): (Location, Request, Printer) = match cmd {
        VolumeCmd::Create {
            name,
            size,
            origin,
            read_only,
            loc,
        } => {
            if size.is_none() && origin.is_none() {
                anyhow::bail!("create {name}: give --size (or --origin to take its size)");
            }
            let req = Request::Create {
                name,
                size: size.unwrap_or(0),
                origin,
                read_only,
            };
            (loc, req, Printer::Text)
        }
        VolumeCmd::Snapshot {
            source,
            name,
            read_only,
            loc,
        } => (
            loc,
            Request::Snapshot {
                source,
                name,
                read_only,
            },
            Printer::Text,
        ),
        VolumeCmd::Delete { name, loc } => (loc, Request::Delete { name }, Printer::Text),
        VolumeCmd::List {
            json,
            no_exclusive,
            loc,
        } => (
            loc,
            Request::List {
                exclusive: !no_exclusive,
            },
            if json { Printer::Json } else { Printer::Text },
        ),
        VolumeCmd::Resize {
            name,
            size,
            allow_shrink,
            loc,
        } => (
            loc,
            Request::Resize {
                name,
                size,
                allow_shrink,
            },
            Printer::Text,
        ),
        VolumeCmd::Status { format, json, loc } => {
            let p = match (json, format) {
                (true, _) | (_, StatusFormat::Json) => Printer::Json,
                (_, StatusFormat::Kernel) => Printer::Kernel,
                _ => Printer::Text,
            };
            (loc, Request::Status, p)
        }
        VolumeCmd::Message { words, loc } => (
            loc,
            Request::Message {
                text: words.join(" "),
            },
            Printer::Text,
        ),
        VolumeCmd::MetadataSnap { action, loc } => (
            loc,
            Request::MetadataSnap {
                reserve: action == SnapAction::Reserve,
            },
            Printer::Text,
        ),
    };
    let (outcome, _daemon) = control::run(&loc.paths(), PoolConfig::default(), req)?;
    print.print(&outcome)?;
    Ok(())
}

enum Printer {
    Text,
    Json,
    Kernel,
}

impl Printer {
    fn print(&self, o: &Outcome) -> Result<()> {
        let text = match (self, o) {
            (Printer::Json, Outcome::List { volumes }) => {
                serde_json::to_string_pretty(volumes)? + "\n"
            }
            (Printer::Json, Outcome::Status { status }) => {
                serde_json::to_string_pretty(status)? + "\n"
            }
            (Printer::Json, o) => serde_json::to_string_pretty(o)? + "\n",
            (_, Outcome::Done { text }) | (_, Outcome::Volume { text, .. }) => format!("{text}\n"),
            (_, Outcome::List { volumes }) => list_table(volumes),
            (Printer::Kernel, Outcome::Status { status }) => {
                let mut t = format!("pool: {}\n", status.pool_status);
                for v in &status.volumes {
                    t.push_str(&format!("{}: {}\n", v.name, v.thin_status));
                }
                t
            }
            (_, Outcome::Status { status }) => status_text(status),
        };
        emit(&text)
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// The volume table of `uthin list`.
fn list_table(vols: &[VolumeInfo]) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "DEV".into(),
        "SIZE".into(),
        "MAPPED".into(),
        "EXCLUSIVE".into(),
        "SNAPSHOT OF".into(),
        "ATTR".into(),
    ]];
    for v in vols {
        let mut attr = String::new();
        if v.read_only {
            attr.push_str("ro ");
        }
        if let Some(o) = &v.origin {
            attr.push_str(&format!("origin={}", o.display()));
        }
        rows.push([
            v.name.clone(),
            v.dev_id.to_string(),
            human(v.size),
            human(v.mapped_bytes),
            v.exclusive_bytes.map_or("-".into(), human),
            v.snapshot_of.clone().unwrap_or_else(|| "-".into()),
            attr.trim_end().to_string(),
        ]);
    }
    let mut w = [0usize; 7];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `uthin status` in words.
fn status_text(s: &StatusInfo) -> String {
    let pct = |u: u64, t: u64| {
        if t == 0 {
            0.0
        } else {
            u as f64 * 100.0 / t as f64
        }
    };
    let mut o = String::new();
    o.push_str(&format!(
        "pool: {} ({}), transaction {}\n",
        s.mode,
        if s.needs_check {
            "needs_check: run thin_check"
        } else {
            "metadata clean"
        },
        s.transaction_id
    ));
    o.push_str(&format!(
        "data: {} of {} used ({:.1}%), {} blocks of {}, {}\n",
        human(s.data_used_blocks * s.block_size),
        human(s.data_total_blocks * s.block_size),
        pct(s.data_used_blocks, s.data_total_blocks),
        s.data_total_blocks,
        human(s.block_size),
        s.data_path.display()
    ));
    o.push_str(&format!(
        "metadata: {} of {} blocks used ({:.1}%), {}{}\n",
        s.metadata_used_blocks,
        s.metadata_total_blocks,
        pct(s.metadata_used_blocks, s.metadata_total_blocks),
        s.metadata_path.display(),
        s.held_metadata_root.map_or(String::new(), |b| format!(
            ", metadata snapshot held at block {b}"
        ))
    ));
    o.push_str(&format!("table: {}\n", s.pool_table));
    match &s.daemon {
        Some(d) => o.push_str(&format!(
            "daemon: pid {}, {} NBD connection(s), listening on {}\n",
            d.pid,
            d.connections,
            d.listening.join(", ")
        )),
        None => o.push_str("daemon: not running\n"),
    }
    o.push_str(&format!("kernel status: {}\n", s.pool_status));
    for v in &s.volumes {
        o.push_str(&format!(
            "volume {} (thin {}): {}\n",
            v.name, v.dev_id, v.thin_status
        ));
    }
    o
}
