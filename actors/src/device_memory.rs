//! The memory of one plugin device: allocation with accounting, and the
//! stream on which other threads copy tiles out of it.

use crate::tile::Tile;
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tessera_core::processor::MemorySpaceId;
use tessera_plugin::LoadedPlugin;

/// One device's memory space.
pub(crate) struct DeviceMemory {
    pub plugin: Arc<LoadedPlugin>,
    pub device: u32,
    pub space: MemorySpaceId,
    pub name: String,
    /// Stream for copies that threads other than the device's own
    /// processor start: a copy stream where the device has one.
    pub copy_stream: u32,
    pub budget: u64,
    used: AtomicU64,
    /// Tiles to copy in ahead of their tasks; closed at shutdown.
    prefetch: Mutex<Option<Sender<Tile>>>,
}

impl DeviceMemory {
    /// The memory and the receiving end of its prefetch queue.
    pub fn new(
        plugin: Arc<LoadedPlugin>,
        device: u32,
        space: MemorySpaceId,
        name: String,
        budget: u64,
    ) -> (Self, Receiver<Tile>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let copy_stream = plugin
            .devices()
            .get(device as usize)
            // Streams are numbered compute first, then host-to-device, then
            // one device-to-host: pulls use the last copy stream there is.
            .map_or(0, |d| d.compute_streams + d.copy_streams.saturating_sub(1));
        let mem = DeviceMemory {
            plugin,
            device,
            space,
            name,
            copy_stream,
            budget,
            used: AtomicU64::new(0),
            prefetch: Mutex::new(Some(tx)),
        };
        (mem, rx)
    }

    /// Host-to-device copy streams, for prefetching: every copy stream but
    /// the last, which carries device-to-host pulls.
    pub fn prefetch_streams(&self) -> std::ops::Range<u32> {
        let (compute, copy) = self
            .plugin
            .devices()
            .get(self.device as usize)
            .map_or((0, 0), |d| (d.compute_streams, d.copy_streams));
        compute..compute + copy.saturating_sub(1)
    }

    /// Asks for `tile` to be copied in ahead of time (best effort).
    pub fn prefetch(&self, tile: &Tile) {
        if let Ok(q) = self.prefetch.lock() {
            if let Some(tx) = q.as_ref() {
                let _ = tx.send(tile.clone());
            }
        }
    }

    /// Closes the prefetch queue so its threads end.
    pub fn close_prefetch(&self) {
        if let Ok(mut q) = self.prefetch.lock() {
            q.take();
        }
    }

    /// Allocates `bytes` for a tile replica, within the budget.
    pub fn alloc(&self, bytes: u64) -> Result<u64, String> {
        let before = self.used.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > self.budget {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            return Err(format!(
                "{}: {bytes} more bytes would exceed the device budget ({before} of {} in use)",
                self.name, self.budget
            ));
        }
        self.plugin.alloc(self.device, bytes).map_err(|e| {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            e.to_string()
        })
    }

    /// Compute streams of the device: its processor runs that many tasks at once.
    pub fn compute_streams(&self) -> u32 {
        self.plugin
            .devices()
            .get(self.device as usize)
            .map_or(1, |d| d.compute_streams.max(1))
    }

    /// Bytes of tile replicas allocated on the device.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    pub fn free(&self, buffer: u64, bytes: u64) {
        self.plugin.free(self.device, buffer);
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}
