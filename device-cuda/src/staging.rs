//! Pinned staging for copies from pageable host memory.
//!
//! A copy from pageable memory runs at a fraction of the link's speed (6.6
//! GB/s against 46 GB/s pinned, measured on an H100). Tiles live in ordinary
//! host memory, so each stream owns two pinned buffers: a large copy is cut
//! into chunks, each copied into one buffer while the DMA engine drains the
//! other. An event per buffer says when its last DMA finished, so a buffer
//! is never overwritten early. The caller's memory is free once the call
//! returns, which is stronger than the ABI asks.

use crate::err;
use cudarc::driver::result;
use cudarc::driver::sys::{CUdeviceptr, CUevent, CUevent_flags, CUstream};
use tessera_plugin::PluginError;

/// Size of one staging buffer.
pub(crate) const CHUNK: usize = 16 << 20;
/// Copies smaller than this go straight from pageable memory.
pub(crate) const DIRECT_BELOW: usize = 1 << 20;

pub(crate) struct Staging {
    buffers: [(*mut u8, CUevent); 2],
    next: usize,
}

// SAFETY: used only under its stream's mutex, with the device's context bound.
unsafe impl Send for Staging {}

impl Staging {
    pub fn new() -> Result<Staging, PluginError> {
        let make = || -> Result<(*mut u8, CUevent), PluginError> {
            // SAFETY: the device's context is bound by the caller.
            let ptr = unsafe { result::malloc_host(CHUNK, 0) }
                .map_err(|e| err("allocating pinned staging", e))?;
            let ev = result::event::create(CUevent_flags::CU_EVENT_DISABLE_TIMING)
                .map_err(|e| err("creating an event", e))?;
            Ok((ptr.cast::<u8>(), ev))
        };
        Ok(Staging {
            buffers: [make()?, make()?],
            next: 0,
        })
    }

    /// Copies `src` to device memory at `dst` through the pinned buffers,
    /// queueing the DMA on `stream`.
    ///
    /// # Safety
    /// `dst` must hold `src.len()` bytes; `stream` must be live.
    pub unsafe fn copy_h2d(
        &mut self,
        dst: CUdeviceptr,
        src: &[u8],
        stream: CUstream,
    ) -> Result<(), PluginError> {
        for (i, chunk) in src.chunks(CHUNK).enumerate() {
            let (buf, ev) = self.buffers[self.next];
            self.next ^= 1;
            // The buffer's previous DMA must be done before it is refilled.
            result::event::synchronize(ev).map_err(|e| err("waiting for a staging buffer", e))?;
            std::ptr::copy_nonoverlapping(chunk.as_ptr(), buf, chunk.len());
            let staged = std::slice::from_raw_parts(buf, chunk.len());
            result::memcpy_htod_async(dst + (i * CHUNK) as u64, staged, stream)
                .map_err(|e| err("copy to device", e))?;
            result::event::record(ev, stream).map_err(|e| err("recording a staging event", e))?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        for (buf, ev) in self.buffers {
            // SAFETY: created in `new`, released once; a pending DMA is
            // waited for first.
            unsafe {
                let _ = result::event::synchronize(ev);
                let _ = result::free_host(buf.cast());
                let _ = result::event::destroy(ev);
            }
        }
    }
}
