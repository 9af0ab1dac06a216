//! Tile handles: how user code and tasks refer to data.
//!
//! A [`Tile`] is a cheap, clonable handle to one logical tile. Its contents
//! sit behind a lock that tasks take for the duration of a kernel; the task
//! graph orders conflicting accesses, so the lock is never contended and
//! exists to keep the code safe, not to serialise work.

use crate::host_memory::HostAccount;
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tessera_core::{DType, TileData, TileId, TileMeta, TileShape};

pub(crate) struct TileCell {
    pub(crate) meta: TileMeta,
    pub(crate) label: Option<Arc<str>>,
    data: RwLock<TileData>,
    /// Returns the tile's bytes to the host budget when the tile dies.
    _account: HostAccount,
}

/// A handle to a tile of data owned by a runtime.
#[derive(Clone)]
pub struct Tile(pub(crate) Arc<TileCell>);

impl Tile {
    pub(crate) fn new(meta: TileMeta, label: Option<&str>, data: TileData, account: HostAccount) -> Tile {
        Tile(Arc::new(TileCell {
            meta,
            label: label.map(Arc::from),
            data: RwLock::new(data),
            _account: account,
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

    /// A poisoned lock means a closure panicked while writing; the task graph
    /// already treats the tile as failed, so the data is handed out as is.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, TileData> {
        self.0.data.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, TileData> {
        self.0.data.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for Tile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tile({}, {} {})", self.name(), self.shape(), self.dtype())
    }
}
