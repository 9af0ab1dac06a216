//! Tile handles: how user code and tasks refer to data, and where the
//! replicas of each tile are.
//!
//! A [`Tile`] is a cheap, clonable handle to one logical tile. Its host copy
//! sits behind a lock that tasks take for the duration of a kernel; the task
//! graph orders conflicting accesses, so that lock is never contended.
//!
//! Each tile also tracks its replicas (host memory and any device memories)
//! with MSI states. A processor makes the tile valid in its own memory
//! before a task (`Tile::acquire_on_host`, `Tile::acquire_on_device`),
//! which copies it from wherever a valid replica is, and records the access:
//! a write invalidates every other replica. Replicas stay where they are
//! after a task (write-back, not write-through), so a chain of device tasks
//! on one tile never round-trips through the host.

use crate::device_memory::DeviceMemory;
use crate::host_memory::HostAccount;
use crate::pinned::Pinned;
use crate::runtime::HOST_MEMORY;
use crate::spill::{SpillDir, SpillFile};
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tessera_core::processor::MemorySpaceId;
use tessera_core::tile::Replicas;
use tessera_core::{Access, DType, TileData, TileId, TileMeta, TileShape};

/// A tile's buffer in one device memory.
struct DeviceReplica {
    mem: Arc<DeviceMemory>,
    buffer: u64,
    /// Recorded after the copy that filled the buffer, while other streams
    /// of the device may still need to wait for it.
    filled: Option<u64>,
}

impl DeviceReplica {
    fn forget_event(&mut self) {
        if let Some(ev) = self.filled.take() {
            self.mem.plugin.event_destroy(self.mem.device, ev);
        }
    }
}

/// Replica states and the device buffers holding them.
struct Coherence {
    replicas: Replicas,
    buffers: Vec<DeviceReplica>,
    bytes: u64,
    tile: TileId,
}

impl Coherence {
    fn replica(&mut self, space: MemorySpaceId) -> Option<&mut DeviceReplica> {
        self.buffers.iter_mut().find(|r| r.mem.space == space)
    }
}

impl Drop for Coherence {
    fn drop(&mut self) {
        for mut r in self.buffers.drain(..) {
            // A prefetch may still be copying: the buffer is not free, nor
            // the host memory it reads, until it is done.
            if let Some(ev) = r.filled {
                let _ = r.mem.plugin.event_sync(r.mem.device, ev);
            }
            r.forget_event();
            r.mem.free(self.tile, r.buffer, self.bytes);
        }
    }
}

pub(crate) struct TileCell {
    pub(crate) meta: TileMeta,
    pub(crate) label: Option<Arc<str>>,
    /// Fields drop in declaration order, and this one is first: dropping it
    /// waits for copies still reading the host buffer.
    coherence: Mutex<Coherence>,
    /// The host buffer's registration, if pinned; dropped before `data`,
    /// since a buffer must be unpinned before it is freed.
    pinned: Mutex<Option<Pinned>>,
    data: RwLock<TileData>,
    /// The host copy on disk, while it is current (see [`crate::host_memory`]).
    /// Lock order: `data` before `spilled`.
    spilled: Mutex<SpillState>,
    /// Ids of submitted, unfinished tasks that use the tile, in submission
    /// order, when the host tier spills: its eviction order.
    uses: Mutex<VecDeque<u64>>,
    /// Returns the tile's bytes to the host budget when the tile dies.
    account: HostAccount,
}

/// A handle to a tile of data owned by a runtime.
#[derive(Clone)]
pub struct Tile(pub(crate) Arc<TileCell>);

impl Tile {
    pub(crate) fn new(
        meta: TileMeta,
        label: Option<&str>,
        data: TileData,
        account: HostAccount,
        pinned: Option<Pinned>,
    ) -> Tile {
        Tile(Arc::new(TileCell {
            meta,
            label: label.map(Arc::from),
            coherence: Mutex::new(Coherence {
                replicas: Replicas::new(HOST_MEMORY),
                buffers: Vec::new(),
                bytes: meta.bytes(),
                tile: meta.id,
            }),
            pinned: Mutex::new(pinned),
            data: RwLock::new(data),
            spilled: Mutex::new(SpillState::default()),
            uses: Mutex::new(VecDeque::new()),
            account,
        }))
    }

    pub fn id(&self) -> TileId {
        self.0.meta.id
    }

    pub fn shape(&self) -> TileShape {
        self.0.meta.shape
    }

    pub fn dtype(&self) -> DType {
        self.0.meta.dtype
    }

    pub fn meta(&self) -> TileMeta {
        self.0.meta
    }

    /// The label given at creation, or the tile id.
    pub fn name(&self) -> String {
        match &self.0.label {
            Some(l) => format!("{l} ({})", self.0.meta.id),
            None => self.0.meta.id.to_string(),
        }
    }

    /// Memory spaces holding a valid replica now.
    pub fn valid_spaces(&self) -> Vec<MemorySpaceId> {
        self.coherence().replicas.valid_spaces().collect()
    }

    /// A poisoned lock means a closure panicked while writing; the task graph
    /// already treats the tile as failed, so the data is handed out as is.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, TileData> {
        self.0.data.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, TileData> {
        self.0.data.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn host_tier(&self) -> &Arc<crate::host_memory::HostTier> {
        &self.0.account.tier
    }

    /// Records that task `task` (just submitted) uses the tile.
    /// A tile gaining its first pending use becomes live data (counted in
    /// [`crate::host_memory::HostTier::live`]).
    pub(crate) fn add_use(&self, task: u64) {
        let mut uses = lock(&self.0.uses);
        if uses.is_empty() {
            self.host_tier()
                .live
                .fetch_add(self.meta().bytes(), std::sync::atomic::Ordering::Relaxed);
        }
        uses.push_back(task);
    }

    /// Records that task `task` is done with the tile; with no use left,
    /// it is no longer live data.
    pub(crate) fn end_use(&self, task: u64) {
        let mut uses = lock(&self.0.uses);
        if let Some(i) = uses.iter().position(|t| *t == task) {
            uses.remove(i);
            if uses.is_empty() {
                self.host_tier()
                    .live
                    .fetch_sub(self.meta().bytes(), std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Submitted tasks using the tile that have not finished, as the
    /// memory tiers' eviction order counts them.
    pub fn pending_uses(&self) -> usize {
        lock(&self.0.uses).len()
    }

    /// Whether the tile's host copy is on disk now.
    pub fn is_spilled(&self) -> bool {
        is_spilled_cell(&self.0)
    }

    /// The host copy changed or went stale: a copy on disk no longer is one.
    fn invalidate_spill(&self) {
        let mut s = lock(&self.0.spilled);
        s.file = None;
        s.version += 1;
    }

    /// Writes the host copy to a spill file ahead of need, keeping it in
    /// RAM, so a later eviction only drops it. Writers wait for the read
    /// lock held meanwhile; one that invalidated the copy since (the
    /// version moved) makes the new file count for nothing. `Ok(false)`
    /// when there was nothing to write.
    pub(crate) fn pre_spill(&self, dir: &Arc<SpillDir>) -> Result<bool, String> {
        let version = {
            let s = lock(&self.0.spilled);
            if s.file.is_some() {
                return Ok(false);
            }
            s.version
        };
        if !self.coherence().replicas.is_valid_in(HOST_MEMORY) {
            return Ok(false);
        }
        let data = self.read();
        if data.len() != self.shape().len() {
            return Ok(false);
        }
        let file = dir.write(self.id(), data.as_bytes())?;
        let mut s = lock(&self.0.spilled);
        if s.version == version && s.file.is_none() {
            s.file = Some(file);
            return Ok(true);
        }
        Ok(false)
    }

    /// Takes the tile's data out of RAM: written to a spill file in `dir`
    /// first if the host copy is valid and not already on disk; dropped if
    /// a device holds the only valid copy. Waits for copies still reading
    /// the host buffer.
    pub(crate) fn spill_to(&self, dir: &Arc<SpillDir>) -> Result<(), String> {
        let host_valid = {
            let mut c = self.coherence();
            for r in &mut c.buffers {
                if let Some(ev) = r.filled {
                    r.mem
                        .plugin
                        .event_sync(r.mem.device, ev)
                        .map_err(|e| format!("waiting for a copy of {}: {e}", self.name()))?;
                    r.forget_event();
                }
            }
            c.replicas.is_valid_in(HOST_MEMORY)
        };
        let mut data = self.write();
        let mut spilled = lock(&self.0.spilled);
        if host_valid && spilled.file.is_none() {
            spilled.file = Some(dir.write(self.id(), data.as_bytes())?);
        }
        // Unpin before the buffer goes.
        lock(&self.0.pinned).take();
        *data = match self.dtype() {
            DType::F32 => TileData::F32(Vec::new()),
            DType::F64 => TileData::F64(Vec::new()),
        };
        Ok(())
    }

    /// Brings the data back into RAM: from its spill file if there is one
    /// (checked), else as zeros, to be overwritten from a device or by a
    /// writer.
    pub(crate) fn load_from_disk(&self) -> Result<(), String> {
        let mut data = self.write();
        let spilled = lock(&self.0.spilled);
        let mut fresh = TileData::zeros(self.dtype(), self.shape());
        if let Some(file) = spilled.file.as_ref() {
            file.read_into(self.id(), fresh.as_bytes_mut())?;
        }
        *data = fresh;
        Ok(())
    }

    /// Drops the tile's replica in `mem` to make room, writing it back to
    /// host memory first if it is the only valid copy. `Ok(false)` when it
    /// cannot go now: its lock is held (a task is acquiring it) or its host
    /// copy is on disk (writing back would need host room).
    pub(crate) fn evict_from(&self, mem: &Arc<DeviceMemory>) -> Result<bool, String> {
        let Ok(mut c) = self.0.coherence.try_lock() else {
            return Ok(false);
        };
        // A task pinned it after it was chosen, and may have taken its
        // buffer already: it stays (under this lock, no task can take the
        // buffer until it is gone, and one pinning it from now on
        // reserves room for a new one).
        if mem.pinned_by_others(self.id()) {
            return Ok(false);
        }
        let Some(at) = c.buffers.iter().position(|r| r.mem.space == mem.space) else {
            return Ok(true);
        };
        if let Some(ev) = c.buffers[at].filled {
            mem.plugin
                .event_sync(mem.device, ev)
                .map_err(|e| format!("waiting for a copy of {}: {e}", self.name()))?;
            c.buffers[at].forget_event();
        }
        if !c.replicas.evict(mem.space) {
            if self.read().len() != self.meta().shape.len() {
                return Ok(false);
            }
            self.pull_to_host(&mut c)?;
            c.replicas.evict(mem.space);
        }
        let r = c.buffers.remove(at);
        let bytes = c.bytes;
        // Freed before the tile is let go: a task acquiring it here right
        // after allocates a new replica, which a free landing after that
        // would have dropped from the memory's table (its bytes counted,
        // nothing left to evict: on a tight device, tasks then waited for
        // room no one could free).
        mem.free(self.id(), r.buffer, bytes);
        drop(c);
        Ok(true)
    }

    /// The tile's host data, if this is its last handle: for reusing large
    /// buffers (a fresh 64 MiB buffer costs more in page faults than
    /// reading it from disk). Copies still reading it finish first.
    pub(crate) fn into_data(self) -> Option<TileData> {
        let cell = Arc::try_unwrap(self.0).ok()?;
        let TileCell {
            coherence,
            pinned,
            data,
            ..
        } = cell;
        // In this order: device copies done, then unpinned, then handed out.
        drop(coherence);
        drop(pinned);
        Some(data.into_inner().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether the host buffer is pinned (see `pinned.rs`).
    pub fn is_pinned(&self) -> bool {
        self.0.pinned.lock().is_ok_and(|p| p.is_some())
    }

    /// Unpins the tile if a closure replaced its host buffer: the old
    /// registration must not outlive the old buffer.
    pub(crate) fn unpin_if_moved(&self) {
        let mut pinned = self.0.pinned.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = pinned.as_ref() {
            let now = self.write().as_bytes_mut().as_mut_ptr() as usize;
            if now != p.ptr {
                pinned.take();
            }
        }
    }

    fn coherence(&self) -> MutexGuard<'_, Coherence> {
        self.0.coherence.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Copies the tile from a device holding the only valid replicas into
    /// host memory. Called with the coherence lock held.
    fn pull_to_host(&self, c: &mut Coherence) -> Result<(), String> {
        let Some(src) = c.replicas.valid_spaces().next() else {
            return Err(format!("{} has no valid replica anywhere", self.name()));
        };
        let name = self.name();
        let replica = c
            .replica(src)
            .ok_or_else(|| format!("{name}: replica in space {} has no buffer", src.0))?;
        let (mem, buffer) = (&replica.mem, replica.buffer);
        let mut data = self.write();
        let bytes = data.as_bytes_mut();
        let started = std::time::Instant::now();
        // SAFETY: `bytes` is the tile's host buffer, exactly the tile's size,
        // held under the write lock until the stream is synchronised below.
        unsafe {
            mem.plugin
                .copy_d2h(
                    mem.device,
                    mem.copy_stream,
                    bytes.as_mut_ptr(),
                    buffer,
                    bytes.len() as u64,
                )
                .map_err(|e| format!("copying {} from {}: {e}", self.name(), mem.name))?;
        }
        mem.plugin
            .stream_sync(mem.device, mem.copy_stream)
            .map_err(|e| format!("copying {} from {}: {e}", self.name(), mem.name))?;
        mem.transfers.record(
            &mem.name,
            "host",
            bytes.len() as u64,
            started,
            std::time::Instant::now(),
        );
        c.replicas.acquire(HOST_MEMORY, Access::Read);
        // The host copy changed: a copy on disk is stale.
        self.invalidate_spill();
        Ok(())
    }

    /// Copies the tile into `mem`'s replica from a valid replica on another
    /// device of the same plugin (peer or same-device copy), recording the
    /// fill event. Returns false, changing nothing, where there is none or
    /// the plugin cannot: the caller then goes through host memory.
    fn copy_from_peer(&self, c: &mut Coherence, mem: &Arc<DeviceMemory>, stream: u32) -> bool {
        let Some((src_device, src, filled, src_name)) = c
            .buffers
            .iter()
            .find(|r| {
                r.mem.space != mem.space
                    && Arc::ptr_eq(&r.mem.plugin, &mem.plugin)
                    && c.replicas.is_valid_in(r.mem.space)
            })
            .map(|r| (r.mem.device, r.buffer, r.filled, r.mem.name.clone()))
        else {
            return false;
        };
        // A source still being filled is waited for on the host: events of
        // one device need not be visible to another's streams.
        if let Some(ev) = filled {
            if mem.plugin.event_sync(src_device, ev).is_err() {
                return false;
            }
        }
        let bytes = c.bytes;
        let Some(dst) = c.replica(mem.space) else {
            return false;
        };
        if mem
            .plugin
            .copy_d2d(mem.device, stream, dst.buffer, src_device, src, bytes)
            .is_err()
        {
            return false;
        }
        crate::transfers::queued(&mem.transfers, &src_name, &mem.name, bytes);
        dst.forget_event();
        dst.filled = mem.plugin.event_record(mem.device, stream).ok();
        if dst.filled.is_none() {
            // Without an event, make the copy complete before anyone reads.
            return mem.plugin.stream_sync(mem.device, stream).is_ok();
        }
        true
    }

    /// Makes the host replica valid for `access` (copying it back from a
    /// device if needed) and records the access.
    pub(crate) fn acquire_on_host(&self, access: Access) -> Result<(), String> {
        let mut c = self.coherence();
        if access.reads() && !c.replicas.is_valid_in(HOST_MEMORY) {
            self.pull_to_host(&mut c)?;
        }
        if access.writes() {
            // The copy on disk is stale from now on.
            self.invalidate_spill();
            // A copy to a device may still be reading the host replica.
            for r in &mut c.buffers {
                if let Some(ev) = r.filled {
                    r.mem.plugin.event_sync(r.mem.device, ev).map_err(|e| {
                        format!(
                            "waiting for a copy of {} to {}: {e}",
                            self.name(),
                            r.mem.name
                        )
                    })?;
                    r.forget_event();
                }
            }
        }
        c.replicas.acquire(HOST_MEMORY, access);
        Ok(())
    }

    /// Makes a replica in `mem` valid for `access`, allocating it and
    /// queueing the copy on `stream` if needed, records the access and
    /// returns the device buffer.
    ///
    /// The copy reads the host replica asynchronously; its event says when
    /// it is done. A task that writes the host replica waits for that event
    /// first ([`Tile::acquire_on_host`]), so no caller needs to synchronise
    /// `stream` for the host's sake.
    /// A task on another stream of the same device that reads the replica
    /// meanwhile waits for the copy's event on its own stream.
    pub(crate) fn acquire_on_device(
        &self,
        mem: &Arc<DeviceMemory>,
        stream: u32,
        access: Access,
    ) -> Result<u64, String> {
        let mut c = self.coherence();
        if c.replica(mem.space).is_none() {
            let buffer = mem.alloc(self, c.bytes)?;
            c.buffers.push(DeviceReplica {
                mem: Arc::clone(mem),
                buffer,
                filled: None,
            });
        }
        let copy_error = |e: tessera_plugin::PluginError| {
            format!("copying {} to {}: {e}", self.name(), mem.name)
        };
        if access.reads()
            && !c.replicas.is_valid_in(mem.space)
            && !c.replicas.is_valid_in(HOST_MEMORY)
            && self.copy_from_peer(&mut c, mem, stream)
        {
            // Copied from another device of the same plugin, not via host.
        } else if access.reads() && !c.replicas.is_valid_in(mem.space) {
            if !c.replicas.is_valid_in(HOST_MEMORY) {
                self.pull_to_host(&mut c)?;
            }
            let data = self.read();
            let bytes = data.as_bytes();
            let replica = c.replica(mem.space).ok_or("replica vanished")?;
            // SAFETY: see the doc comment: the host buffer outlives the copy.
            unsafe {
                mem.plugin
                    .copy_h2d(
                        mem.device,
                        stream,
                        replica.buffer,
                        bytes.as_ptr(),
                        bytes.len() as u64,
                    )
                    .map_err(copy_error)?;
            }
            crate::transfers::queued(&mem.transfers, "host", &mem.name, bytes.len() as u64);
            replica.forget_event();
            replica.filled = Some(
                mem.plugin
                    .event_record(mem.device, stream)
                    .map_err(copy_error)?,
            );
        } else if let Some(ev) = c.replica(mem.space).and_then(|r| r.filled) {
            mem.plugin
                .stream_wait_event(mem.device, stream, ev)
                .map_err(copy_error)?;
        }
        let replica = c.replica(mem.space).ok_or("replica vanished")?;
        let buffer = replica.buffer;
        if access.writes() {
            // Whoever reads this replica next runs after this task ends.
            replica.forget_event();
            // The host copy, and any copy of it on disk, is stale now.
            self.invalidate_spill();
        }
        c.replicas.acquire(mem.space, access);
        Ok(buffer)
    }
}

impl Tile {
    /// Copies the tile into `mem` ahead of the task that will need it, if
    /// its host replica is valid and the device has none. Returns whether a
    /// copy was queued on `stream`.
    pub(crate) fn prefetch_to(&self, mem: &Arc<DeviceMemory>, stream: u32) -> Result<bool, String> {
        {
            let c = self.coherence();
            if c.replicas.is_valid_in(mem.space) || !c.replicas.is_valid_in(HOST_MEMORY) {
                return Ok(false);
            }
        }
        self.acquire_on_device(mem, stream, Access::Read)?;
        Ok(true)
    }
}

/// A tile's copy on disk, and how many times its host copy changed (so a
/// background write that raced with a change is not taken for current).
#[derive(Default)]
pub(crate) struct SpillState {
    file: Option<SpillFile>,
    version: u64,
}

/// Whether the tile's host copy is on disk now (see [`next_use_of`] for why
/// a cell).
pub(crate) fn is_spilled_cell(cell: &TileCell) -> bool {
    lock(&cell.spilled).file.is_some()
}

/// The first unfinished task that uses the tile, if any is known. Takes
/// the cell, not a handle: memory tiers look at tiles under their own lock,
/// where dropping a handle could free the tile and re-enter them.
pub(crate) fn next_use_of(cell: &TileCell) -> Option<u64> {
    lock(&cell.uses).front().copied()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl fmt::Debug for Tile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tile({}, {} {})",
            self.name(),
            self.shape(),
            self.dtype()
        )
    }
}
