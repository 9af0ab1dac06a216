//! The eviction order shared by the memory tiers: the tile whose next use
//! comes last in submission order goes first (no known use: last of all),
//! then the least recently used.
//!
//! Tiers look at tiles under their own lock, through weak handles upgraded
//! for the moment; a handle dropped there could be a dying tile's last,
//! whose drop re-enters the tier. So every handle looked at and not chosen
//! goes to a graveyard that the caller drops after the lock.

use crate::tile::{next_use_of, TileCell};
use std::cmp::Reverse;
use std::sync::Arc;
use tessera_core::TileId;

/// Larger goes first.
type Key = (u64, Reverse<u64>, TileId);

/// The best victim among those offered.
#[derive(Default)]
pub(crate) struct Choice {
    best: Option<(Key, Arc<TileCell>)>,
}

impl Choice {
    /// Considers `cell`, last used at `last_use` (a tier's clock).
    pub fn offer(
        &mut self,
        cell: Arc<TileCell>,
        last_use: u64,
        graveyard: &mut Vec<Arc<TileCell>>,
    ) {
        let key = (
            next_use_of(&cell).unwrap_or(u64::MAX),
            Reverse(last_use),
            cell.meta.id,
        );
        match &self.best {
            Some((b, _)) if key <= *b => graveyard.push(cell),
            _ => {
                if let Some((_, old)) = self.best.replace((key, cell)) {
                    graveyard.push(old);
                }
            }
        }
    }

    pub fn take(self) -> Option<(TileId, Arc<TileCell>)> {
        self.best.map(|((_, _, id), cell)| (id, cell))
    }
}
