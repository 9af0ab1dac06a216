//! Tiles: the unit of data that tasks read and write.
//!
//! A tile has one logical identity ([`TileId`]) and may have replicas in
//! several memory spaces. [`Replicas`] tracks them with MSI states: one space
//! may hold a `Modified` replica, or several may hold `Shared` ones; a write
//! invalidates every other replica. Moving data is a decision the runtime
//! makes from these states, never a side effect hidden inside a kernel.
//!
//! Tile contents are dense and column-major, as BLAS and LAPACK expect.

use crate::access::Access;
use crate::dtype::DType;
use crate::error::CoreError;
use crate::processor::MemorySpaceId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The logical identity of a tile, unique within one runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TileId(pub u64);

impl fmt::Display for TileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tile#{}", self.0)
    }
}

/// Rows and columns of a tile; a vector is a tile with one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TileShape {
    pub rows: usize,
    pub cols: usize,
}

impl TileShape {
    pub fn new(rows: usize, cols: usize) -> Self {
        TileShape { rows, cols }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Whether the tile holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_square(&self) -> bool {
        self.rows == self.cols
    }
}

impl fmt::Display for TileShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.rows, self.cols)
    }
}

/// What the runtime knows about a tile without touching its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileMeta {
    pub id: TileId,
    pub shape: TileShape,
    pub dtype: DType,
}

impl TileMeta {
    /// Size of the tile's contents in bytes.
    pub fn bytes(&self) -> u64 {
        (self.shape.len() * self.dtype.size_bytes()) as u64
    }
}

/// The contents of a tile, column-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TileData {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl TileData {
    /// A tile of zeros.
    pub fn zeros(dtype: DType, shape: TileShape) -> Self {
        match dtype {
            DType::F32 => TileData::F32(vec![0.0; shape.len()]),
            DType::F64 => TileData::F64(vec![0.0; shape.len()]),
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            TileData::F32(_) => DType::F32,
            TileData::F64(_) => DType::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TileData::F32(v) => v.len(),
            TileData::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that the contents fill `shape` exactly.
    pub fn check_shape(&self, shape: TileShape) -> Result<(), CoreError> {
        if self.len() != shape.len() {
            return Err(CoreError::DataLength {
                shape,
                expected: shape.len(),
                got: self.len(),
            });
        }
        Ok(())
    }

    /// The contents as raw bytes, for copies to and from devices.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            TileData::F32(v) => bytemuck::cast_slice(v),
            TileData::F64(v) => bytemuck::cast_slice(v),
        }
    }

    /// The contents as raw bytes, to be overwritten by a copy from a device.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        match self {
            TileData::F32(v) => bytemuck::cast_slice_mut(v),
            TileData::F64(v) => bytemuck::cast_slice_mut(v),
        }
    }

    /// Element `(i, j)` widened to f64, for checks and printing.
    pub fn get(&self, rows: usize, i: usize, j: usize) -> f64 {
        match self {
            TileData::F32(v) => f64::from(v[i + j * rows]),
            TileData::F64(v) => v[i + j * rows],
        }
    }
}

/// The coherence state of one replica (MSI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaState {
    /// The only valid copy, newer than any other.
    Modified,
    /// A valid copy that other spaces may share.
    Shared,
    /// Stale: must be refreshed before use.
    Invalid,
}

/// What the runtime must do before a task can use a tile in a memory space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaAction {
    /// The replica there is valid already.
    None,
    /// Copy the tile from this space first.
    CopyFrom(MemorySpaceId),
    /// Nothing valid to copy (a pure write): allocate only.
    Allocate,
}

/// Replicas of one tile across memory spaces, with MSI states.
///
/// ```
/// use tessera_core::tile::{Replicas, ReplicaAction, ReplicaState};
/// use tessera_core::processor::MemorySpaceId;
/// use tessera_core::Access;
///
/// let (host, gpu) = (MemorySpaceId(0), MemorySpaceId(1));
/// let mut r = Replicas::new(host);
/// // Reading on the GPU needs a copy; both copies are then shared.
/// assert_eq!(r.acquire(gpu, Access::Read), ReplicaAction::CopyFrom(host));
/// assert_eq!(r.state(host), ReplicaState::Shared);
/// // Writing on the GPU invalidates the host copy.
/// assert_eq!(r.acquire(gpu, Access::ReadWrite), ReplicaAction::None);
/// assert_eq!(r.state(host), ReplicaState::Invalid);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replicas {
    states: Vec<(MemorySpaceId, ReplicaState)>,
}

impl Replicas {
    /// A tile whose only valid copy is in `home`.
    pub fn new(home: MemorySpaceId) -> Self {
        Replicas {
            states: vec![(home, ReplicaState::Modified)],
        }
    }

    /// The state of the replica in `space` (`Invalid` where there is none).
    pub fn state(&self, space: MemorySpaceId) -> ReplicaState {
        self.states
            .iter()
            .find(|(s, _)| *s == space)
            .map_or(ReplicaState::Invalid, |(_, st)| *st)
    }

    /// Whether `space` holds a valid copy.
    pub fn is_valid_in(&self, space: MemorySpaceId) -> bool {
        self.state(space) != ReplicaState::Invalid
    }

    /// Spaces holding a valid copy.
    pub fn valid_spaces(&self) -> impl Iterator<Item = MemorySpaceId> + '_ {
        self.states
            .iter()
            .filter(|(_, st)| *st != ReplicaState::Invalid)
            .map(|(s, _)| *s)
    }

    fn set(&mut self, space: MemorySpaceId, state: ReplicaState) {
        match self.states.iter_mut().find(|(s, _)| *s == space) {
            Some(entry) => entry.1 = state,
            None => self.states.push((space, state)),
        }
    }

    /// Brings the tile into `space` for an access, updating every state, and
    /// says which transfer that needs.
    pub fn acquire(&mut self, space: MemorySpaceId, access: Access) -> ReplicaAction {
        let here_valid = self.is_valid_in(space);
        let source = self.valid_spaces().find(|s| *s != space);
        let action = if here_valid {
            ReplicaAction::None
        } else if access.reads() {
            match source {
                Some(src) => ReplicaAction::CopyFrom(src),
                None => ReplicaAction::Allocate,
            }
        } else {
            ReplicaAction::Allocate
        };
        if access.writes() {
            for entry in &mut self.states {
                entry.1 = ReplicaState::Invalid;
            }
            self.set(space, ReplicaState::Modified);
        } else {
            for entry in &mut self.states {
                if entry.1 == ReplicaState::Modified {
                    entry.1 = ReplicaState::Shared;
                }
            }
            self.set(space, ReplicaState::Shared);
        }
        action
    }

    /// Drops the replica in `space`. A modified one must be written back
    /// first: this returns `false` and changes nothing if it is the last
    /// valid copy.
    pub fn evict(&mut self, space: MemorySpaceId) -> bool {
        let valid_elsewhere = self.valid_spaces().any(|s| s != space);
        if !valid_elsewhere && self.is_valid_in(space) {
            return false;
        }
        self.states.retain(|(s, _)| *s != space);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: MemorySpaceId = MemorySpaceId(0);
    const GPU0: MemorySpaceId = MemorySpaceId(1);
    const GPU1: MemorySpaceId = MemorySpaceId(2);

    #[test]
    fn write_invalidates_every_other_replica() {
        let mut r = Replicas::new(HOST);
        r.acquire(GPU0, Access::Read);
        r.acquire(GPU1, Access::Read);
        assert_eq!(r.valid_spaces().count(), 3);
        assert_eq!(r.acquire(GPU1, Access::ReadWrite), ReplicaAction::None);
        assert_eq!(r.valid_spaces().collect::<Vec<_>>(), vec![GPU1]);
        assert_eq!(r.state(GPU1), ReplicaState::Modified);
    }

    #[test]
    fn pure_write_needs_no_copy() {
        let mut r = Replicas::new(HOST);
        assert_eq!(r.acquire(GPU0, Access::Write), ReplicaAction::Allocate);
        assert_eq!(r.acquire(HOST, Access::Read), ReplicaAction::CopyFrom(GPU0));
        assert_eq!(r.state(GPU0), ReplicaState::Shared);
    }

    #[test]
    fn last_valid_copy_cannot_be_evicted() {
        let mut r = Replicas::new(HOST);
        assert!(!r.evict(HOST));
        r.acquire(GPU0, Access::Read);
        assert!(r.evict(HOST));
        assert_eq!(r.valid_spaces().collect::<Vec<_>>(), vec![GPU0]);
    }

    #[test]
    fn data_length_must_match_shape() {
        let d = TileData::zeros(DType::F64, TileShape::new(3, 2));
        assert!(d.check_shape(TileShape::new(2, 3)).is_ok());
        assert!(d.check_shape(TileShape::new(4, 2)).is_err());
    }
}
