//! The memory of one plugin device: allocation within a budget, eviction
//! when it is full, and the stream on which other threads copy tiles out
//! of it.
//!
//! A device task pins its tiles here for its duration and reserves room for
//! those not here yet, all at once, before it acquires any (no
//! hold-and-wait between tasks, so no deadlock). To make room, unpinned
//! replicas go: clean ones are dropped, the last valid copy of a tile is
//! written back to host memory first. The victim is the tile whose next use
//! comes last in submission order, then the least recently used. When
//! everything else is pinned by running tasks the task waits for them;
//! when its tiles exceed the budget they cannot fit at all, an error that
//! says so; when they fit but the room stays held by replicas nothing can
//! evict (a dropped tile not freed yet), it waits up to [`ROOM_PATIENCE`].
//! Prefetches never evict: they only use room there is.

use crate::eviction::Choice;
use crate::tile::{Tile, TileCell};
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tessera_core::processor::MemorySpaceId;
use tessera_core::TileId;
use tessera_plugin::LoadedPlugin;

/// How long a task whose tiles fit the budget waits for room held by
/// replicas nothing can evict yet, before its pin fails.
const ROOM_PATIENCE: Duration = Duration::from_secs(10);

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
    state: Mutex<DeviceState>,
    /// Signalled when a task unpins or a replica goes.
    room: Condvar,
    /// Tiles to copy in ahead of their tasks; closed at shutdown.
    prefetch: Mutex<Option<Sender<Tile>>>,
    /// Copies into and out of this device, for the recorder.
    pub transfers: Arc<crate::transfers::TransferLog>,
    /// Replicas dropped to make room, so far.
    pub evictions: std::sync::atomic::AtomicU64,
}

impl DeviceMemory {
    /// The memory and the receiving end of its prefetch queue.
    pub fn new(
        plugin: Arc<LoadedPlugin>,
        device: u32,
        space: MemorySpaceId,
        name: String,
        budget: u64,
        transfers: Arc<crate::transfers::TransferLog>,
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
            state: Mutex::new(DeviceState::default()),
            room: Condvar::new(),
            prefetch: Mutex::new(Some(tx)),
            transfers,
            evictions: std::sync::atomic::AtomicU64::new(0),
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

    fn lock(&self) -> MutexGuard<'_, DeviceState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pins `tiles` on this device until the guard drops, reserving room
    /// for those not here yet, all at once: a task never holds part of its
    /// working set while waiting for the rest (no hold-and-wait, so no
    /// deadlock). Evicts unpinned replicas to make room and waits while
    /// other tasks hold the rest; an error if the tiles cannot fit even
    /// alone.
    pub fn pin(self: &Arc<Self>, tiles: &[&Tile]) -> Result<DevicePins, String> {
        let mut ids: Vec<TileId> = tiles.iter().map(|t| t.id()).collect();
        ids.sort_unstable();
        ids.dedup();
        let bytes_of = |id: &TileId| {
            tiles
                .iter()
                .find(|t| t.id() == *id)
                .map_or(0, |t| t.meta().bytes())
        };
        // Handles looked at under the lock are dropped after it (declared
        // first, dropped last): the last handle's drop re-enters here.
        let mut graveyard: Vec<Arc<TileCell>> = Vec::new();
        let mut st = self.lock();
        let mut skipped: Vec<TileId> = Vec::new();
        let held_since = std::time::Instant::now();
        let reserve = loop {
            let missing: Vec<TileId> = ids
                .iter()
                .filter(|id| {
                    (!st.replicas.contains_key(id) || st.evicting.contains(id))
                        && !st.reserved_for.contains_key(id)
                })
                .copied()
                .collect();
            let need: u64 = missing.iter().map(bytes_of).sum();
            if st.used + st.reserved + need <= self.budget {
                break missing;
            }
            match self.victim(&st, &ids, &skipped, &mut graveyard) {
                Some((id, cell)) => {
                    // Nobody else picks it while the lock is down, and a
                    // task that pins it meanwhile reserves its room.
                    *st.pins.entry(id).or_insert(0) += 1;
                    st.evicting.insert(id);
                    drop(st);
                    graveyard.clear();
                    let evicted = Tile(cell).evict_from(self);
                    st = self.lock();
                    st.evicting.remove(&id);
                    unpin(&mut st, id);
                    match evicted {
                        Ok(true) => {
                            self.evictions
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            skipped.clear();
                        }
                        // Busy, or its host copy is on disk: try another.
                        Ok(false) => skipped.push(id),
                        Err(e) => return Err(format!("{}: evicting a replica: {e}", self.name)),
                    }
                }
                None if !graveyard.is_empty() => {
                    // Let tiles seen dying go first: they may free room.
                    drop(st);
                    graveyard.clear();
                    st = self.lock();
                }
                None if st.guards > 0 || !skipped.is_empty() => {
                    // Running tasks hold the rest: wait for one to end.
                    skipped.clear();
                    st = self
                        .room
                        .wait_timeout(st, Duration::from_millis(5))
                        .map_or_else(|e| e.into_inner().0, |(g, _)| g);
                }
                None => {
                    let total: u64 = ids.iter().map(bytes_of).sum();
                    if total > self.budget {
                        return Err(format!(
                            "{}: the task's tiles need {total} bytes on the device at once, more than its budget of {} bytes (raise --gpu-mem or use smaller tiles)",
                            self.name, self.budget
                        ));
                    }
                    // They fit, but the room is held by replicas no one
                    // can evict now and no running task will release (a
                    // dropped tile's memory not freed yet, a copy under
                    // way): that passes. The wait is bounded for a hold
                    // that never ends: a replica lost from the table by a
                    // race in `Tile::evict_from` (fixed) once held its
                    // room for good, and this reported a 16 MiB task as
                    // larger than a 20 MiB budget.
                    if held_since.elapsed() > ROOM_PATIENCE {
                        return Err(format!(
                            "{}: the task's tiles need {total} of the {} bytes of the budget, but {} bytes stayed held by replicas that could not be evicted for {:?}",
                            self.name,
                            self.budget,
                            st.used + st.reserved,
                            ROOM_PATIENCE
                        ));
                    }
                    st = self
                        .room
                        .wait_timeout(st, Duration::from_millis(5))
                        .map_or_else(|e| e.into_inner().0, |(g, _)| g);
                }
            }
        };
        for id in &reserve {
            let b = bytes_of(id);
            st.reserved += b;
            st.reserved_for.insert(*id, b);
        }
        st.clock += 1;
        let clock = st.clock;
        for id in &ids {
            *st.pins.entry(*id).or_insert(0) += 1;
            if let Some(r) = st.replicas.get_mut(id) {
                r.last_use = clock;
            }
        }
        st.guards += 1;
        Ok(DevicePins {
            mem: Arc::clone(self),
            ids,
            reserved: reserve,
        })
    }

    /// The unpinned replica to evict first, not one of `keep` or `skipped`:
    /// next use last in submission order, then least recently used.
    /// Every other handle it looks at goes to `graveyard`, to drop after
    /// the lock.
    fn victim(
        &self,
        st: &DeviceState,
        keep: &[TileId],
        skipped: &[TileId],
        graveyard: &mut Vec<Arc<TileCell>>,
    ) -> Option<(TileId, Arc<TileCell>)> {
        let mut choice = Choice::default();
        for (id, r) in st.replicas.iter() {
            if keep.contains(id) || skipped.contains(id) || st.pins.contains_key(id) {
                continue;
            }
            if let Some(cell) = r.cell.upgrade() {
                choice.offer(cell, r.last_use, graveyard);
            }
        }
        choice.take()
    }

    /// Allocates `bytes` for `tile`'s replica: from the room its task
    /// reserved ([`DeviceMemory::pin`]), else from free room (a prefetch,
    /// or a tile another task reserved and gave up). The caller holds
    /// `tile`'s coherence lock.
    pub fn alloc(self: &Arc<Self>, tile: &Tile, bytes: u64) -> Result<u64, String> {
        let mut st = self.lock();
        if let Some(r) = st.reserved_for.remove(&tile.id()) {
            st.reserved -= r;
        } else if st.used + st.reserved + bytes > self.budget {
            return Err(format!(
                "{}: {bytes} more bytes would exceed the device budget ({} of {} in use, {} reserved)",
                self.name, st.used, self.budget, st.reserved
            ));
        }
        st.used += bytes;
        st.clock += 1;
        let clock = st.clock;
        st.replicas.insert(
            tile.id(),
            Replica {
                cell: Arc::downgrade(&tile.0),
                last_use: clock,
            },
        );
        drop(st);
        self.plugin.alloc(self.device, bytes).map_err(|e| {
            self.release(tile.id(), bytes);
            e.to_string()
        })
    }

    /// Whether a task pinned `tile` besides the one pin its evictor holds
    /// ([`Tile::evict_from`] asks before it frees the buffer).
    pub fn pinned_by_others(&self, tile: TileId) -> bool {
        self.lock().pins.get(&tile).is_some_and(|n| *n > 1)
    }

    /// Bytes of tile replicas allocated on the device.
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    /// Frees `tile`'s replica buffer.
    pub fn free(&self, tile: TileId, buffer: u64, bytes: u64) {
        self.plugin.free(self.device, buffer);
        self.release(tile, bytes);
    }

    fn release(&self, tile: TileId, bytes: u64) {
        let mut st = self.lock();
        st.used = st.used.saturating_sub(bytes);
        st.replicas.remove(&tile);
        drop(st);
        self.room.notify_all();
    }

    /// Compute streams of the device: its processor runs that many tasks at once.
    pub fn compute_streams(&self) -> u32 {
        self.plugin
            .devices()
            .get(self.device as usize)
            .map_or(1, |d| d.compute_streams.max(1))
    }
}

/// What the device holds: bytes, replicas, pins.
#[derive(Default)]
struct DeviceState {
    used: u64,
    replicas: HashMap<TileId, Replica>,
    /// Tiles of running tasks (and victims being evicted), with counts.
    pins: HashMap<TileId, u32>,
    /// Victims being evicted now (outside the lock): a task pinning one
    /// of them counts it as missing and reserves its room, since the
    /// eviction, chosen before the task came, goes ahead.
    evicting: std::collections::HashSet<TileId>,
    /// Room reserved by running tasks for tiles not here yet.
    reserved: u64,
    reserved_for: HashMap<TileId, u64>,
    /// Running tasks holding pins.
    guards: u32,
    clock: u64,
}

struct Replica {
    cell: Weak<TileCell>,
    last_use: u64,
}

fn unpin(st: &mut DeviceState, id: TileId) {
    if let Some(n) = st.pins.get_mut(&id) {
        *n -= 1;
        if *n == 0 {
            st.pins.remove(&id);
        }
    }
}

/// A task's tiles pinned on a device; unpinned on drop, with any room
/// reserved and not used given back.
pub(crate) struct DevicePins {
    mem: Arc<DeviceMemory>,
    ids: Vec<TileId>,
    reserved: Vec<TileId>,
}

impl Drop for DevicePins {
    fn drop(&mut self) {
        let mut st = self.mem.lock();
        for id in &self.ids {
            unpin(&mut st, *id);
        }
        for id in &self.reserved {
            if let Some(b) = st.reserved_for.remove(id) {
                st.reserved -= b;
            }
        }
        st.guards = st.guards.saturating_sub(1);
        drop(st);
        self.mem.room.notify_all();
    }
}
