//! The host tier: the budget for tile data in host RAM, with the disk below
//! it.
//!
//! Every tile's bytes are counted here from creation until its last handle
//! drops. Without a spill directory the budget is a hard limit: a tile that
//! would exceed it is refused with a clear error. With one, the tier keeps
//! RAM within the budget by evicting tiles to disk (`spill.rs`) and
//! paces tasks: before a task runs, its tiles are made resident and pinned
//! (never evicted while it runs); when they do not fit, the task waits for
//! running tasks to unpin theirs. A task waits only while other tasks hold
//! pins and takes its whole working set at once, so tasks never hold part
//! of a working set while waiting for the rest: no deadlock at any budget
//! that fits the largest single task, which is checked.
//!
//! Spilling starts early: past [`SPILL_EARLY`] of the budget a background
//! thread writes the tiles that would be evicted first to disk while they
//! stay in RAM, one whole tile per write, so that when room is needed an
//! eviction only drops memory instead of writing under the tier's lock.
//!
//! Which tile goes: one no submitted task will touch first, then the one
//! whose next use comes last in submission order (the task graph's order,
//! Belady's choice with the program as the oracle), then the least recently
//! used. A victim whose host copy is stale (a device holds the valid one) is
//! dropped without a write.
//!
//! The tier is a monitor (a lock and a condition variable), not an actor:
//! processor threads block on it until their tiles fit, which a mailbox
//! cannot express without parking replies. Its use is still published
//! through the metrics actor.

use crate::error::RuntimeError;
use crate::eviction::Choice;
use crate::lane::{Input, Lane};
use crate::metrics::{MemorySample, Metrics};
use crate::spill::SpillDir;
use crate::tile::{is_spilled_cell, Tile, TileCell};
use actix::Addr;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use tessera_core::TileId;

/// Fraction of the budget past which the background spiller writes ahead.
pub const SPILL_EARLY: f64 = 0.8;

pub(crate) struct HostTier {
    budget: u64,
    /// Tells the background spiller to end.
    stop: AtomicBool,
    spill: Option<Arc<SpillDir>>,
    state: Mutex<TierState>,
    unpinned: Condvar,
    metrics: Addr<Metrics>,
    /// Tiles dropped from RAM to make room, so far.
    evictions: std::sync::atomic::AtomicU64,
    /// Bytes of the tiles some submitted, unfinished task uses (kept by
    /// [`crate::tile::Tile::add_use`] and `end_use`; shared with the
    /// scheduler, which orders ready tasks by it).
    pub live: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Default)]
struct TierState {
    used: u64,
    /// The most `used` has been: never above the budget when spilling.
    peak: u64,
    /// Tiles whose data is in RAM.
    resident: HashMap<TileId, Resident>,
    clock: u64,
}

struct Resident {
    cell: Weak<TileCell>,
    bytes: u64,
    /// Running tasks using the tile.
    pins: u32,
    last_use: u64,
}

/// The tiles of one running task, pinned in RAM until this drops.
pub(crate) struct PinGuard {
    tier: Option<Arc<HostTier>>,
    tiles: Vec<TileId>,
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Some(tier) = self.tier.take() {
            let mut st = tier.lock();
            for id in &self.tiles {
                if let Some(r) = st.resident.get_mut(id) {
                    r.pins = r.pins.saturating_sub(1);
                }
            }
            drop(st);
            tier.unpinned.notify_all();
        }
    }
}

impl HostTier {
    /// `live` counts the bytes of tiles unfinished tasks use.
    pub fn new(
        budget: u64,
        spill: Option<Arc<SpillDir>>,
        metrics: Addr<Metrics>,
        live: Arc<std::sync::atomic::AtomicU64>,
    ) -> Arc<Self> {
        let tier = Arc::new(HostTier {
            live,
            budget,
            stop: AtomicBool::new(false),
            spill,
            state: Mutex::new(TierState::default()),
            unpinned: Condvar::new(),
            metrics,
            evictions: std::sync::atomic::AtomicU64::new(0),
        });
        tier.publish(0);
        tier
    }

    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Starts the background spiller (with a spill directory); the caller
    /// joins it after [`HostTier::stop_spiller`].
    pub fn start_spiller(self: &Arc<Self>) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
        let Some(dir) = self.spill.clone() else {
            return Ok(None);
        };
        let tier = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("tessera-spiller".into())
            .spawn(move || spill_ahead(&tier, &dir))
            .map(Some)
    }

    pub fn stop_spiller(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// A resident, unpinned tile not on disk yet, the first to be evicted,
    /// pinned for the caller; `None` below [`SPILL_EARLY`].
    fn next_to_write(&self, graveyard: &mut Vec<Arc<TileCell>>) -> Option<Arc<TileCell>> {
        let mut st = self.lock();
        if (st.used as f64) < SPILL_EARLY * self.budget as f64 {
            return None;
        }
        let mut choice = Choice::default();
        for r in st.resident.values() {
            if r.pins > 0 {
                continue;
            }
            match r.cell.upgrade() {
                Some(cell) if is_spilled_cell(&cell) => graveyard.push(cell),
                Some(cell) => choice.offer(cell, r.last_use, graveyard),
                None => {}
            }
        }
        let (id, cell) = choice.take()?;
        if let Some(r) = st.resident.get_mut(&id) {
            r.pins += 1;
        }
        Some(cell)
    }

    fn unpin_one(&self, id: TileId) {
        let mut st = self.lock();
        if let Some(r) = st.resident.get_mut(&id) {
            r.pins = r.pins.saturating_sub(1);
        }
        drop(st);
        self.unpinned.notify_all();
    }

    /// Whether tiles can go to disk (and tasks are paced).
    pub fn spills(&self) -> bool {
        self.spill.is_some()
    }

    pub fn spill_dir(&self) -> Option<&Arc<SpillDir>> {
        self.spill.as_ref()
    }

    /// Bytes of tile data in RAM now, and the most there has been.
    pub fn used_and_peak(&self) -> (u64, u64) {
        let st = self.lock();
        (st.used, st.peak)
    }

    fn lock(&self) -> MutexGuard<'_, TierState> {
        // Nothing panics while holding it; recover regardless.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, used: u64) {
        self.metrics.do_send(MemorySample {
            space: "host".to_string(),
            in_use: used,
            budget: self.budget,
            evictions: self.evictions.load(Ordering::Relaxed),
        });
        if let Some(dir) = &self.spill {
            self.metrics.do_send(MemorySample {
                space: "disk".to_string(),
                in_use: dir.on_disk.load(Ordering::Relaxed),
                budget: 0,
                evictions: 0,
            });
        }
    }

    /// Counts a new tile, whose data is in RAM. Past the budget, other
    /// tiles go to disk, or this one does; without a spill directory it is
    /// refused.
    pub fn admit(&self, tile: &Tile) -> Result<(), RuntimeError> {
        let bytes = tile.meta().bytes();
        // Tiles looked at under the lock are dropped after it (declared
        // first, dropped last): the last handle's drop re-enters the tier.
        let mut graveyard: Vec<Arc<TileCell>> = Vec::new();
        let mut st = self.lock();
        let would_be = st.used.saturating_add(bytes);
        if would_be > self.budget && self.spill.is_none() {
            return Err(RuntimeError::HostBudget {
                needed: bytes,
                would_be,
                budget: self.budget,
            });
        }
        st.used = would_be;
        st.clock += 1;
        let clock = st.clock;
        st.resident.insert(
            tile.id(),
            Resident {
                cell: Arc::downgrade(&tile.0),
                bytes,
                pins: 0,
                last_use: clock,
            },
        );
        while st.used > self.budget {
            let victim = self.victim(&st, &[], &mut graveyard).unwrap_or(tile.id());
            self.evict(&mut st, victim, &mut graveyard)
                .map_err(RuntimeError::Spill)?;
            if victim == tile.id() {
                break;
            }
        }
        st.peak = st.peak.max(st.used);
        let used = st.used;
        drop(st);
        self.publish(used);
        Ok(())
    }

    /// Forgets a dying tile.
    pub fn forget(&self, id: TileId) {
        let mut st = self.lock();
        if let Some(r) = st.resident.remove(&id) {
            st.used = st.used.saturating_sub(r.bytes);
        }
        let used = st.used;
        drop(st);
        self.publish(used);
        self.unpinned.notify_all();
    }

    /// Makes `tiles` resident and pins them for a task; blocks while they
    /// do not fit and other tasks hold pins.
    pub fn pin(self: &Arc<Self>, tiles: &[&Tile]) -> Result<PinGuard, String> {
        if self.spill.is_none() {
            // Nothing ever leaves RAM: nothing to wait for.
            return Ok(PinGuard {
                tier: None,
                tiles: Vec::new(),
            });
        }
        let mut ids: Vec<TileId> = tiles.iter().map(|t| t.id()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut graveyard: Vec<Arc<TileCell>> = Vec::new();
        let mut st = self.lock();
        let total: u64 = ids
            .iter()
            .filter_map(|id| tiles.iter().find(|t| t.id() == *id))
            .map(|t| t.meta().bytes())
            .sum();
        if total > self.budget {
            return Err(format!(
                "the task's tiles need {total} bytes of host memory at once, more than the host budget of {} bytes: raise --host-mem or use smaller tiles",
                self.budget
            ));
        }
        loop {
            let missing: u64 = ids
                .iter()
                .filter(|id| !st.resident.contains_key(id))
                .filter_map(|id| tiles.iter().find(|t| t.id() == *id))
                .map(|t| t.meta().bytes())
                .sum();
            if st.used + missing <= self.budget {
                break;
            }
            match self.victim(&st, &ids, &mut graveyard) {
                Some(v) => self.evict(&mut st, v, &mut graveyard)?,
                None if !graveyard.is_empty() => {
                    // Let tiles seen dying go first: they may free room.
                    drop(st);
                    graveyard.clear();
                    st = self.lock();
                }
                None => {
                    // Everything else is pinned by running tasks: they end.
                    st = self.unpinned.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
        st.clock += 1;
        let clock = st.clock;
        for id in &ids {
            let Some(tile) = tiles.iter().find(|t| t.id() == *id) else {
                continue;
            };
            if !st.resident.contains_key(id) {
                // Reading under the lock keeps the bookkeeping simple; the
                // spiller's large sequential reads make it short.
                tile.load_from_disk()?;
                st.used += tile.meta().bytes();
                st.resident.insert(
                    *id,
                    Resident {
                        cell: Arc::downgrade(&tile.0),
                        bytes: tile.meta().bytes(),
                        pins: 0,
                        last_use: clock,
                    },
                );
            }
            if let Some(r) = st.resident.get_mut(id) {
                r.pins += 1;
                r.last_use = clock;
            }
        }
        st.peak = st.peak.max(st.used);
        let used = st.used;
        drop(st);
        self.publish(used);
        Ok(PinGuard {
            tier: Some(Arc::clone(self)),
            tiles: ids,
        })
    }

    /// Pins `tile` only if it is in RAM now: for prefetching, which must
    /// not load tiles from disk.
    pub fn try_pin(self: &Arc<Self>, tile: &Tile) -> Option<PinGuard> {
        if self.spill.is_none() {
            return Some(PinGuard {
                tier: None,
                tiles: Vec::new(),
            });
        }
        let mut st = self.lock();
        let r = st.resident.get_mut(&tile.id())?;
        r.pins += 1;
        Some(PinGuard {
            tier: Some(Arc::clone(self)),
            tiles: vec![tile.id()],
        })
    }

    /// The resident, unpinned tile to evict first, not one of `keep`. The
    /// handles it looks at go to `graveyard`, to drop after the lock.
    fn victim(
        &self,
        st: &TierState,
        keep: &[TileId],
        graveyard: &mut Vec<Arc<TileCell>>,
    ) -> Option<TileId> {
        let mut choice = Choice::default();
        for (id, r) in st.resident.iter() {
            if r.pins > 0 || keep.contains(id) {
                continue;
            }
            if let Some(cell) = r.cell.upgrade() {
                choice.offer(cell, r.last_use, graveyard);
            }
        }
        let (id, cell) = choice.take()?;
        graveyard.push(cell);
        Some(id)
    }

    /// Moves `id` out of RAM (to disk if its host copy is the valid one).
    fn evict(
        &self,
        st: &mut TierState,
        id: TileId,
        graveyard: &mut Vec<Arc<TileCell>>,
    ) -> Result<(), String> {
        let Some(r) = st.resident.get(&id) else {
            return Ok(());
        };
        if let (Some(cell), Some(dir)) = (r.cell.upgrade(), &self.spill) {
            let tile = Tile(cell);
            let spilled = tile.spill_to(dir);
            graveyard.push(tile.0);
            spilled?;
        }
        if let Some(r) = st.resident.remove(&id) {
            st.used = st.used.saturating_sub(r.bytes);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The background spiller's loop: write ahead while past [`SPILL_EARLY`],
/// else look again shortly; end when the tier stops or goes.
fn spill_ahead(tier: &Weak<HostTier>, dir: &Arc<SpillDir>) {
    let mut idle = std::time::Duration::from_millis(10);
    loop {
        let Some(t) = tier.upgrade() else {
            return;
        };
        if t.stop.load(Ordering::Relaxed) {
            return;
        }
        let mut graveyard = Vec::new();
        let picked = t.next_to_write(&mut graveyard);
        drop(graveyard);
        match picked {
            Some(cell) => {
                let id = cell.meta.id;
                let tile = Tile(cell);
                // A failed write (a full disk) is for the eviction that
                // needs room to report; here it only slows down.
                idle = match tile.pre_spill(dir) {
                    Ok(_) => std::time::Duration::from_millis(10),
                    Err(_) => std::time::Duration::from_secs(1),
                };
                t.unpin_one(id);
                drop(tile);
                drop(t);
                if idle.as_secs() > 0 {
                    std::thread::sleep(idle);
                }
            }
            None => {
                drop(t);
                std::thread::sleep(idle);
            }
        }
    }
}

/// Runs `f` with the tiles of task `task` resident and pinned in RAM (no
/// pinning when nothing spills), then records the task done with them
/// (their eviction order, kept whenever a tier can evict).
pub(crate) fn with_tiles_in_ram<R>(
    task: u64,
    args: &[(Tile, tessera_core::Access)],
    f: impl FnOnce() -> Result<R, String>,
) -> Result<R, String> {
    let Some((first, _)) = args.first() else {
        return f();
    };
    let tier = Arc::clone(first.host_tier());
    let result = if tier.spills() {
        let tiles: Vec<&Tile> = args.iter().map(|(t, _)| t).collect();
        tier.pin(&tiles).and_then(|pins| {
            let r = f();
            drop(pins);
            r
        })
    } else {
        f()
    };
    for (t, _) in args {
        t.end_use(task);
    }
    result
}

/// Held by each tile: when the tile dies, its bytes go back to the budget
/// and the scheduler forgets its dependency record.
pub(crate) struct HostAccount {
    pub tile: TileId,
    pub tier: Arc<HostTier>,
    pub lane: Weak<Lane>,
}

impl Drop for HostAccount {
    fn drop(&mut self) {
        self.tier.forget(self.tile);
        if let Some(lane) = self.lane.upgrade() {
            // After shutdown there is nobody left to forget it: fine.
            let _ = lane.post(Input::ForgetTile(self.tile));
        }
    }
}

/// Reads the machine's physical memory, for the default host budget.
pub(crate) fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
