//! How a task touches a tile. Dependencies are inferred from these modes in
//! submission order: a read waits for the last write, a write waits for the
//! last write and every read since.

use serde::{Deserialize, Serialize};

/// The access mode of one tile argument of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Access {
    /// The task only reads the tile.
    Read,
    /// The task overwrites the tile without reading it first.
    Write,
    /// The task reads the tile and writes it back.
    ReadWrite,
}

impl Access {
    /// Whether the task needs the tile's current contents.
    pub fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }

    /// Whether the task changes the tile.
    pub fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}
