//! Events for the embedder: the kernel raises a device-mapper event (a
//! uevent that `dmeventd` or LVM acts on) when a low water mark is crossed
//! or the pool changes mode; here the embedder registers a callback.
//!
//! Events are queued where they happen (often under the metadata lock) and
//! delivered by the thread that finishes the operation, with no lock held,
//! so a handler may call back into the pool (for instance to grow it).

use crate::mode::PoolMode;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Something the embedder may want to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolEvent {
    /// Free data blocks dropped to the low water mark (once per arming:
    /// [`crate::Pool::resize_data`] re-arms it, as a resume does).
    DataLowWater { free: u64 },
    /// Free metadata blocks dropped to `min(1024, total / 4)`.
    MetadataLowWater { free: u64 },
    /// The pool changed mode.
    ModeChanged { old: PoolMode, new: PoolMode },
}

/// The callback type.
pub type EventHandler = Arc<dyn Fn(PoolEvent) + Send + Sync>;

/// Events not yet delivered are kept up to this many (oldest dropped).
const MAX_PENDING: usize = 1024;

/// The event queue.
#[derive(Default)]
pub(crate) struct Events {
    pending: Mutex<VecDeque<PoolEvent>>,
    /// Whether `pending` may be non-empty (checked without a lock on every
    /// request).
    any: AtomicBool,
    handler: Mutex<Option<EventHandler>>,
    /// Held while delivering, so events reach the handler in order.
    delivering: Mutex<()>,
}

impl Events {
    /// Queues an event.
    pub(crate) fn push(&self, ev: PoolEvent) {
        log::info!("pool event: {ev:?}");
        let mut p = self.pending.lock();
        if p.len() >= MAX_PENDING {
            p.pop_front();
        }
        p.push_back(ev);
        self.any.store(true, Ordering::Release);
    }

    pub(crate) fn set_handler(&self, h: Option<EventHandler>) {
        *self.handler.lock() = h;
    }

    /// Delivers queued events (none are lost if another thread is already
    /// delivering: it picks them up; a handler calling back into the pool
    /// does not recurse).
    pub(crate) fn deliver(&self) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let Some(h) = self.handler.lock().clone() else {
            return;
        };
        let Some(_d) = self.delivering.try_lock() else {
            return;
        };
        loop {
            let ev = {
                let mut p = self.pending.lock();
                let ev = p.pop_front();
                if p.is_empty() {
                    self.any.store(false, Ordering::Release);
                }
                ev
            };
            let Some(ev) = ev else {
                break;
            };
            h(ev);
        }
    }
}
