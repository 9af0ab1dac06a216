//! Memory capacities in the simulator: which data items each space holds,
//! and eviction when a task needs room.
//!
//! A task placed in a space needs all its items there. When they do not
//! fit, the least recently used items of that space that the task does not
//! need are evicted: a copy valid elsewhere is dropped; the last valid copy
//! is written back to the home space first (the runtime's device eviction
//! does the same). A task whose own items exceed the space is an error.
//! The home space, where data starts, is not bounded.

use crate::processor::MemorySpaceId;
use std::collections::HashMap;

/// What each space holds.
pub(crate) struct Residency {
    capacity: Vec<Option<u64>>,
    used: Vec<u64>,
    /// Per space: item -> (bytes, last use).
    items: Vec<HashMap<u32, (u64, f64)>>,
    pub evictions: usize,
    pub written_back: u64,
}

impl Residency {
    pub fn new(capacity: &[Option<u64>]) -> Self {
        Residency {
            capacity: capacity.to_vec(),
            used: vec![0; capacity.len()],
            items: vec![HashMap::new(); capacity.len()],
            evictions: 0,
            written_back: 0,
        }
    }

    /// Makes room in `space` for `needed` (item, bytes) and records them
    /// as used at `now`. Returns the bytes written back home to make room.
    pub fn admit(
        &mut self,
        space: MemorySpaceId,
        needed: &[(u32, u64)],
        now: f64,
        valid: &mut HashMap<u32, Vec<MemorySpaceId>>,
        home: MemorySpaceId,
    ) -> Result<u64, String> {
        let s = space.0 as usize;
        let Some(cap) = self.capacity.get(s).copied().flatten() else {
            return Ok(0);
        };
        if space == home {
            return Ok(0);
        }
        let missing: u64 = needed
            .iter()
            .filter(|(d, _)| !self.items[s].contains_key(d))
            .map(|(_, b)| *b)
            .sum();
        let own: u64 = needed.iter().map(|(_, b)| *b).sum();
        if own > cap {
            return Err(format!(
                "a task needs {own} bytes in space {s}, more than its capacity of {cap}"
            ));
        }
        let mut written = 0u64;
        while self.used[s] + missing > cap {
            let victim = self.items[s]
                .iter()
                .filter(|(d, _)| !needed.iter().any(|(n, _)| n == *d))
                .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
                .map(|(d, (b, _))| (*d, *b));
            let Some((d, bytes)) = victim else {
                return Err(format!("space {s} cannot make room for a task"));
            };
            self.items[s].remove(&d);
            self.used[s] -= bytes;
            self.evictions += 1;
            let holders = valid.entry(d).or_insert_with(|| vec![home]);
            holders.retain(|h| *h != space);
            if holders.is_empty() {
                holders.push(home);
                written += bytes;
            }
        }
        for (d, b) in needed {
            if self.items[s].insert(*d, (*b, now)).is_none() {
                self.used[s] += b;
            }
        }
        self.written_back += written;
        Ok(written)
    }

    /// Drops every copy of `d` outside `space` (it was just written there).
    pub fn invalidate_others(&mut self, d: u32, space: MemorySpaceId) {
        for (s, items) in self.items.iter_mut().enumerate() {
            if s != space.0 as usize {
                if let Some((b, _)) = items.remove(&d) {
                    self.used[s] -= b;
                }
            }
        }
    }
}
