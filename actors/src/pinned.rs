//! The pinned host tier: host tiles page-locked in place by a device
//! plugin, so copies to and from devices run at DMA speed and truly in the
//! background (from pageable memory the CUDA driver copies through its own
//! staging, several times slower, holding the calling thread).
//!
//! Tiles are pinned at creation, while the pool's budget lasts; small tiles
//! are not worth the registration. A tile whose buffer a closure replaced is
//! unpinned right after the closure, before any copy can see the stale
//! registration.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tessera_core::TileData;
use tessera_plugin::LoadedPlugin;

/// Tiles smaller than this stay pageable: copying them costs less than
/// registering them.
pub const MIN_PINNED_BYTES: u64 = 1 << 20;

/// The pinned host memory of one runtime: a budget and the plugin that pins.
pub(crate) struct PinnedPool {
    plugin: Arc<LoadedPlugin>,
    budget: u64,
    used: AtomicU64,
    /// Cleared when the plugin turns out unable to pin at all.
    works: AtomicBool,
    /// Set once one registration has succeeded.
    proven: AtomicBool,
}

/// One pinned tile buffer; unpinned on drop, which must come before the
/// buffer is freed.
pub(crate) struct Pinned {
    pool: Arc<PinnedPool>,
    pub(crate) ptr: usize,
    bytes: u64,
}

impl PinnedPool {
    pub fn new(plugin: Arc<LoadedPlugin>, budget: u64) -> Arc<PinnedPool> {
        Arc::new(PinnedPool {
            plugin,
            budget,
            used: AtomicU64::new(0),
            works: AtomicBool::new(true),
            proven: AtomicBool::new(false),
        })
    }

    /// Bytes pinned now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Pins `data`'s buffer if the budget allows; `None` leaves it pageable,
    /// which is always correct, only slower to copy.
    pub fn pin(self: &Arc<Self>, data: &mut TileData) -> Option<Pinned> {
        let bytes = data.as_bytes_mut();
        let len = bytes.len() as u64;
        if len < MIN_PINNED_BYTES || !self.works.load(Ordering::Relaxed) {
            return None;
        }
        if self.used.fetch_add(len, Ordering::AcqRel) + len > self.budget {
            self.used.fetch_sub(len, Ordering::AcqRel);
            return None;
        }
        let ptr = bytes.as_mut_ptr();
        // SAFETY: the buffer lives in the tile until the `Pinned` returned
        // here is dropped, which the tile does first (see `TileCell`).
        match unsafe { self.plugin.host_register(ptr, len) } {
            Ok(()) => {
                self.proven.store(true, Ordering::Relaxed);
                Some(Pinned {
                    pool: Arc::clone(self),
                    ptr: ptr as usize,
                    bytes: len,
                })
            }
            Err(e) => {
                self.used.fetch_sub(len, Ordering::AcqRel);
                if !self.proven.load(Ordering::Relaxed) {
                    // The plugin cannot pin at all (it predates ABI 1.1, or
                    // its device has no use for it): stop asking.
                    self.works.store(false, Ordering::Relaxed);
                }
                drop(e);
                None
            }
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        self.pool.plugin.host_unregister(self.ptr);
        self.pool.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}
