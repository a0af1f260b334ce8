//! The volume manager: a pool, its registry of named volumes, and the open
//! volumes served over NBD.  The daemon and the CLI's direct path (no
//! daemon running) both drive a pool through it, with [`Manager::handle`].
//!
//! Every change that touches the pool follows the registry's protocol
//! (pending change, one pool commit with the transaction id, final write;
//! see [`crate::registry`]); changes run one at a time under the state lock.

use crate::api::{Outcome, Request, StatusInfo, VolumeInfo, VolumeStatus};
use crate::error::{Error, Result};
use crate::layout::{human, PoolPaths};
use crate::lock::PoolLock;
use crate::registry::{check_name, now, Change, PoolView, Registry, Volume};
use crate::volume::VolumeExport;
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use uthin_block_io::{FileDevice, SharedDevice};
use uthin_nbd::{Export, Exports};
use uthin_pool::{DevId, Message, Pool, PoolConfig, PoolMode};
use uthin_thin::status::PoolStatus;

/// Volume sizes are rounded up to this (NBD clients and the kernel's nbd
/// driver address 512-byte sectors).
const SIZE_GRAIN: u64 = 512;

/// The volume manager.
pub struct Manager {
    pool: Arc<Pool>,
    paths: PoolPaths,
    registry: Mutex<Registry>,
    /// The open volumes by name (what NBD clients can connect to).
    exports: RwLock<BTreeMap<String, Arc<VolumeExport>>>,
    _lock: PoolLock,
}

fn open_dev(p: &Path, writable: bool) -> Result<SharedDevice> {
    Ok(Arc::new(
        FileDevice::open(p, writable).map_err(|e| Error::io(p, "open", e))?,
    ))
}

impl Manager {
    /// Locks and opens the pool at `paths` with `cfg` (its data block size
    /// is taken from the metadata when the pool exists), then brings the
    /// registry in step with it and opens every volume.
    pub fn open(paths: &PoolPaths, mut cfg: PoolConfig) -> Result<Manager> {
        let lock = PoolLock::acquire(paths)?;
        let writable = !cfg.features.read_only;
        let meta = open_dev(&paths.metadata, writable)?;
        if let Some(sb) = uthin_thin::superblock::probe(meta.as_ref())
            .map_err(|e| Error::Other(format!("{}: {e}", paths.metadata.display())))?
        {
            cfg.data_block_size = sb.data_block_size;
        }
        let data = open_dev(&paths.data, writable)?;
        let pool = Pool::open(meta, data, cfg)?;
        let mut reg = Registry::load(&paths.registry())?;
        let view = pool_view(&pool)?;
        let notes = reg.reconcile(&view);
        for n in &notes {
            log::warn!("volume registry: {n}");
        }
        if !notes.is_empty() {
            if pool.mode().metadata_writable() {
                reg.save(&paths.registry())?;
            } else {
                log::warn!("the pool is read-only: the registry is corrected in memory only");
            }
        }
        let m = Manager {
            pool,
            paths: paths.clone(),
            registry: Mutex::new(reg),
            exports: RwLock::new(BTreeMap::new()),
            _lock: lock,
        };
        let vols: Vec<(String, Volume)> = m
            .registry
            .lock()
            .volumes
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        for (name, v) in vols {
            if let Err(e) = m.open_volume(&name, &v) {
                log::error!("volume {name:?} cannot be served: {e}");
            }
        }
        Ok(m)
    }

    /// The pool.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// The pool's paths.
    pub fn paths(&self) -> &PoolPaths {
        &self.paths
    }

    /// Volume names, sorted.
    pub fn volume_names(&self) -> Vec<String> {
        self.registry.lock().volumes.keys().cloned().collect()
    }

    /// Commits and closes the pool (open NBD connections must be gone).
    pub fn close(&self) -> Result<()> {
        self.exports.write().clear();
        Ok(self.pool.close()?)
    }

    fn open_volume(&self, name: &str, v: &Volume) -> Result<()> {
        let origin = v
            .origin
            .as_deref()
            .map(|p| open_dev(p, false))
            .transpose()?;
        let thin = self.pool.thin(DevId(v.dev_id), origin)?;
        let ro = v.read_only || self.pool.config().features.read_only;
        let ex = Arc::new(VolumeExport::new(name, thin, v.size, ro));
        self.exports.write().insert(name.to_string(), ex);
        Ok(())
    }

    /// Runs a request.
    pub fn handle(&self, req: Request) -> Result<Outcome> {
        match req {
            Request::Create {
                name,
                size,
                origin,
                read_only,
            } => self.create(&name, size, origin.as_deref(), read_only),
            Request::Snapshot {
                source,
                name,
                read_only,
            } => self.snapshot(&source, &name, read_only),
            Request::Delete { name } => self.delete(&name),
            Request::Resize {
                name,
                size,
                allow_shrink,
            } => self.resize(&name, size, allow_shrink),
            Request::List { exclusive } => Ok(Outcome::List {
                volumes: self.list(exclusive)?,
            }),
            Request::Status => Ok(Outcome::Status {
                status: self.status()?,
            }),
            Request::Message { text } => self.message(&text),
            Request::MetadataSnap { reserve } => {
                if reserve {
                    self.pool.reserve_metadata_snap()?;
                    let at = self
                        .pool
                        .inspect_metadata(|md| md.metadata_snap())
                        .map_err(|e| Error::Other(e.to_string()))?;
                    Ok(done(format!(
                        "metadata snapshot reserved at block {}; read it with `thin_dump -m {}`",
                        at.map_or(0, |b| b.0),
                        self.paths.metadata.display()
                    )))
                } else {
                    self.pool.release_metadata_snap()?;
                    Ok(done("metadata snapshot released".into()))
                }
            }
        }
    }

    /// Runs a pool change and the registry change that goes with it.
    fn change(&self, reg: &mut Registry, msg: Message, change: Change) -> Result<()> {
        let path = self.paths.registry();
        let (cur, next) = (reg.transaction_id, reg.transaction_id + 1);
        reg.begin(next, change);
        reg.save(&path)?;
        match self.pool.send_with_transaction_id(msg, cur, next) {
            Ok(()) => {
                reg.finish();
                reg.save(&path)
            }
            Err(e) => {
                reg.pending = None;
                if let Err(se) = reg.save(&path) {
                    // The next start drops the pending change (the pool did
                    // not commit it).
                    log::error!("rewriting the registry after a refused change: {se}");
                }
                Err(e.into())
            }
        }
    }

    /// A fresh thin device id: one above every id in the pool or registry.
    fn next_dev_id(&self, reg: &Registry) -> Result<DevId> {
        let pool_max = self
            .pool
            .inspect_metadata(|md| md.device_ids())
            .map_err(|e| Error::Other(format!("listing thin devices: {e}")))?
            .into_iter()
            .map(|d| d.0)
            .max();
        let reg_max = reg.volumes.values().map(|v| v.dev_id).max();
        let id = pool_max.max(reg_max).map_or(1, |m| m + 1);
        if id > DevId::MAX.0 {
            return Err(Error::Other("no thin device id is left".into()));
        }
        Ok(DevId(id))
    }

    fn check_writable(&self, what: &str) -> Result<()> {
        let mode = self.pool.mode();
        if !mode.metadata_writable() {
            return Err(Error::Other(format!(
                "{what} is refused: the pool is {mode}"
            )));
        }
        Ok(())
    }

    fn create(
        &self,
        name: &str,
        size: u64,
        origin: Option<&Path>,
        read_only: bool,
    ) -> Result<Outcome> {
        check_name(name)?;
        self.check_writable("creating a volume")?;
        let origin = origin
            .map(|p| std::fs::canonicalize(p).map_err(|e| Error::io(p, "resolve", e)))
            .transpose()?;
        let size = match (&origin, size) {
            (Some(p), 0) => {
                use uthin_block_io::BlockDevice;
                open_dev(p, false)?
                    .len()
                    .map_err(|e| Error::io(p, "size", e))?
            }
            (None, 0) => return Err(Error::Usage("a volume needs a size (--size)".into())),
            (_, s) => s,
        };
        let size = round_size(size)?;
        let mut reg = self.registry.lock();
        if reg.volumes.contains_key(name) {
            return Err(Error::VolumeExists(name.into()));
        }
        let id = self.next_dev_id(&reg)?;
        let volume = Volume {
            dev_id: id.0,
            size,
            created: now(),
            snapshot_of: None,
            origin,
            read_only,
        };
        let change = Change::Add {
            name: name.into(),
            volume: volume.clone(),
        };
        self.change(&mut reg, Message::CreateThin(id), change)?;
        self.open_volume(name, &volume)?;
        let text = format!(
            "created volume {name} ({}, thin device {})",
            human(size),
            id
        );
        Ok(Outcome::Volume {
            volume: self.info(&reg, name, &volume, None),
            text,
        })
    }

    fn snapshot(&self, source: &str, name: &str, read_only: bool) -> Result<Outcome> {
        check_name(name)?;
        self.check_writable("taking a snapshot")?;
        let mut reg = self.registry.lock();
        let src = reg.volume(source)?;
        if reg.volumes.contains_key(name) {
            return Err(Error::VolumeExists(name.into()));
        }
        let id = self.next_dev_id(&reg)?;
        let volume = Volume {
            dev_id: id.0,
            size: src.size,
            created: now(),
            snapshot_of: Some(src.dev_id),
            origin: src.origin.clone(),
            read_only,
        };
        let change = Change::Add {
            name: name.into(),
            volume: volume.clone(),
        };
        let msg = Message::CreateSnap {
            id,
            origin: DevId(src.dev_id),
        };
        self.change(&mut reg, msg, change)?;
        self.open_volume(name, &volume)?;
        let text = format!("created snapshot {name} of {source} (thin device {id})");
        Ok(Outcome::Volume {
            volume: self.info(&reg, name, &volume, None),
            text,
        })
    }

    fn delete(&self, name: &str) -> Result<Outcome> {
        self.check_writable("deleting a volume")?;
        let mut reg = self.registry.lock();
        let v = reg.volume(name)?;
        // Take it out of the export map first, so no new client gets it.
        let ex = self.exports.write().remove(name);
        if let Some(ex) = &ex {
            let users = Arc::strong_count(ex) - 1;
            if users > 0 {
                self.exports.write().insert(name.into(), ex.clone());
                return Err(Error::Busy {
                    name: name.into(),
                    why: format!("{users} NBD connection(s) use it"),
                });
            }
        }
        drop(ex); // closes the thin device, so the pool lets it go
        let r = self.change(
            &mut reg,
            Message::Delete(DevId(v.dev_id)),
            Change::Remove { name: name.into() },
        );
        if let Err(e) = r {
            if let Err(oe) = self.open_volume(name, &v) {
                log::error!("reopening volume {name:?} after a failed delete: {oe}");
            }
            return Err(e);
        }
        Ok(done(format!(
            "deleted volume {name} (thin device {})",
            v.dev_id
        )))
    }

    fn resize(&self, name: &str, size: u64, allow_shrink: bool) -> Result<Outcome> {
        self.check_writable("resizing a volume")?;
        let size = round_size(size)?;
        let mut reg = self.registry.lock();
        let mut v = reg.volume(name)?;
        let ex = self.exports.read().get(name).cloned();
        let old = v.size;
        if size < old {
            if !allow_shrink {
                return Err(Error::Usage(format!(
                    "shrinking {name} from {} to {} discards the data beyond; add --allow-shrink",
                    human(old),
                    human(size)
                )));
            }
            let Some(ex) = &ex else {
                return Err(Error::Other(format!("volume {name:?} is not open")));
            };
            // New requests see the new size first; then the tail goes, so
            // growing again later reads zeroes there.
            ex.set_size(size);
            let bb = self.pool.block_bytes();
            let edge = size.div_ceil(bb) * bb;
            let thin = ex.thin();
            thin.write_zeroes(size, edge.min(old) - size.min(edge.min(old)), false)?;
            if old > edge {
                thin.discard(edge, old - edge)?;
            }
            thin.flush()?;
        }
        v.size = size;
        reg.volumes.insert(name.into(), v.clone());
        reg.save(&self.paths.registry())?;
        if let Some(ex) = &ex {
            ex.set_size(size);
        }
        Ok(Outcome::Volume {
            volume: self.info(&reg, name, &v, None),
            text: format!("resized {name} from {} to {}", human(old), human(size)),
        })
    }

    fn message(&self, text: &str) -> Result<Outcome> {
        let msg: Message = text.parse().map_err(Error::Pool)?;
        let mut reg = self.registry.lock();
        let r = self.pool.send(msg);
        // Whatever happened, follow the pool (a raw message changes it
        // behind the registry's back).
        let notes = reg.reconcile(&pool_view(&self.pool)?);
        for n in &notes {
            log::warn!("volume registry: {n}");
        }
        if !notes.is_empty() {
            reg.save(&self.paths.registry())?;
            let vols: Vec<(String, Volume)> = reg
                .volumes
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            let mut exports = self.exports.write();
            exports.retain(|n, _| reg.volumes.contains_key(n));
            drop(exports);
            for (n, v) in vols {
                if !self.exports.read().contains_key(&n) {
                    if let Err(e) = self.open_volume(&n, &v) {
                        log::error!("volume {n:?} cannot be served: {e}");
                    }
                }
            }
        }
        r?;
        let mut text = format!("{msg}: done");
        for n in notes {
            text.push_str(&format!("\nregistry: {n}"));
        }
        Ok(done(text))
    }

    /// Exclusive blocks per thin device, computed like `thin_ls` on a
    /// metadata snapshot taken for the purpose (the live metadata changes
    /// under a reader); None when a user holds the metadata snapshot.
    fn exclusive_blocks(&self) -> Result<Option<BTreeMap<u64, u64>>> {
        use uthin_tools::ls::{list, Field};
        use uthin_tools::report::Report;
        let held = self
            .pool
            .inspect_metadata(|md| md.metadata_snap())
            .map_err(|e| Error::Other(e.to_string()))?;
        let writable = self.pool.mode().metadata_writable();
        if held.is_some() && writable {
            return Ok(None);
        }
        if writable {
            self.pool.reserve_metadata_snap()?;
        }
        let fields = [Field::DevId, Field::MappedBlocks, Field::SharedBlocks];
        let r = list(&self.paths.metadata, writable, &fields, &Report::silent());
        if writable {
            self.pool.release_metadata_snap()?;
        }
        let listing = r.map_err(|e| Error::Other(format!("computing exclusive space: {e}")))?;
        Ok(Some(
            listing
                .rows
                .iter()
                .map(|r| (r.dev_id, r.mapped.saturating_sub(r.shared)))
                .collect(),
        ))
    }

    fn info(
        &self,
        reg: &Registry,
        name: &str,
        v: &Volume,
        exclusive: Option<&BTreeMap<u64, u64>>,
    ) -> VolumeInfo {
        let bb = self.pool.block_bytes();
        let id = DevId(v.dev_id);
        let (mapped, status) = self.pool.inspect_metadata(|md| {
            let mapped = md.mapped_count(id).unwrap_or(0);
            let status = match md.highest_mapped(id) {
                Ok(h) => {
                    let s = bb / 512;
                    format!(
                        "{} {}",
                        mapped * s,
                        h.map_or("-".into(), |h| ((h.0 + 1) * s - 1).to_string())
                    )
                }
                Err(_) => "Error".into(),
            };
            (mapped, status)
        });
        VolumeInfo {
            name: name.into(),
            dev_id: v.dev_id,
            size: v.size,
            mapped_bytes: mapped * bb,
            exclusive_bytes: exclusive.and_then(|m| m.get(&v.dev_id)).map(|b| b * bb),
            snapshot_of: v.snapshot_of.map(|p| {
                reg.by_dev(p)
                    .map_or_else(|| format!("thin {p}"), |(n, _)| n.clone())
            }),
            origin: v.origin.clone(),
            read_only: v.read_only,
            created: v.created,
            thin_status: status,
        }
    }

    /// The volumes.
    pub fn list(&self, exclusive: bool) -> Result<Vec<VolumeInfo>> {
        let reg = self.registry.lock();
        let excl = if exclusive {
            self.exclusive_blocks()?
        } else {
            None
        };
        Ok(reg
            .volumes
            .iter()
            .map(|(n, v)| self.info(&reg, n, v, excl.as_ref()))
            .collect())
    }

    /// The pool's status.
    pub fn status(&self) -> Result<StatusInfo> {
        let pool_status = self.pool.status_line();
        let st = self
            .pool
            .inspect_metadata(PoolStatus::read)
            .map_err(|e| Error::Other(format!("reading the pool status: {e}")))?;
        let reg = self.registry.lock();
        let volumes = reg
            .volumes
            .iter()
            .map(|(n, v)| VolumeStatus {
                name: n.clone(),
                dev_id: v.dev_id,
                thin_status: self.info(&reg, n, v, None).thin_status,
            })
            .collect();
        let mode = self.pool.mode();
        Ok(StatusInfo {
            pool_status,
            pool_table: self.pool.config().table_args(),
            mode: mode_name(mode).into(),
            transaction_id: st.transaction_id,
            block_size: self.pool.block_bytes(),
            data_used_blocks: st.used_data,
            data_total_blocks: st.total_data,
            metadata_used_blocks: st.used_meta,
            metadata_total_blocks: st.total_meta,
            held_metadata_root: st.held_root,
            needs_check: st.needs_check,
            metadata_path: self.paths.metadata.clone(),
            data_path: self.paths.data.clone(),
            volumes,
            daemon: None,
        })
    }
}

/// Exports for the NBD server: the open volumes.
impl Exports for Manager {
    fn names(&self) -> Vec<String> {
        self.exports.read().keys().cloned().collect()
    }

    fn get(&self, name: &str) -> Option<Arc<dyn Export>> {
        self.exports
            .read()
            .get(name)
            .map(|e| e.clone() as Arc<dyn Export>)
    }
}

fn done(text: String) -> Outcome {
    Outcome::Done { text }
}

/// A mode in words.
pub fn mode_name(m: PoolMode) -> &'static str {
    match m {
        PoolMode::Write => "read-write",
        PoolMode::OutOfDataSpace => "out of data space",
        PoolMode::OutOfMetadataSpace => "out of metadata space",
        PoolMode::ReadOnly => "read-only",
        PoolMode::Fail => "failed",
    }
}

/// Rounds a volume size up to whole sectors; refuses 0 and sizes beyond
/// what a thin device can address.
fn round_size(size: u64) -> Result<u64> {
    if size == 0 {
        return Err(Error::Usage("a volume cannot be empty".into()));
    }
    let max = uthin_pool::MAX_THIN_BYTES;
    size.checked_next_multiple_of(SIZE_GRAIN)
        .filter(|&s| s <= max)
        .ok_or_else(|| Error::Usage(format!("size {size} is beyond the {max}-byte limit")))
}

/// The pool's transaction id and devices, for reconciling the registry.
fn pool_view(pool: &Pool) -> Result<PoolView> {
    let bb = pool.block_bytes();
    pool.inspect_metadata(|md| {
        let mut devices = BTreeMap::new();
        for id in md.device_ids()? {
            let reach = md.highest_mapped(id)?.map_or(0, |h| (h.0 + 1) * bb);
            devices.insert(id.0, reach);
        }
        Ok(PoolView {
            transaction_id: md.committed_superblock()?.trans_id,
            devices,
        })
    })
    .map_err(|e: uthin_thin::Error| Error::Other(format!("reading the pool's devices: {e}")))
}
