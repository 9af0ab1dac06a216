//! The memory of one plugin device: allocation with accounting, and the
//! stream on which other threads copy tiles out of it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
}

impl DeviceMemory {
    pub fn new(plugin: Arc<LoadedPlugin>, device: u32, space: MemorySpaceId, name: String, budget: u64) -> Self {
        let copy_stream = plugin
            .devices()
            .get(device as usize)
            // Streams are numbered compute first, then host-to-device, then
            // device-to-host: pulls use the last copy stream there is.
            .map_or(0, |d| d.compute_streams + d.copy_streams.min(2).saturating_sub(1));
        DeviceMemory {
            plugin,
            device,
            space,
            name,
            copy_stream,
            budget,
            used: AtomicU64::new(0),
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

    pub fn free(&self, buffer: u64, bytes: u64) {
        self.plugin.free(self.device, buffer);
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}
