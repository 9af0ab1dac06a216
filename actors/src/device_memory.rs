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
            .map_or(0, |d| if d.copy_streams > 0 { d.compute_streams } else { 0 });
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

    pub fn free(&self, buffer: u64, bytes: u64) {
        self.plugin.free(self.device, buffer);
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}
