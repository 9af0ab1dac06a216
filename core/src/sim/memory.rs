//! Memory capacities in the simulator: which data items each space holds,
//! and eviction when a task needs room.
//!
//! A task placed in a space has its inputs copied there as far as the
//! space has free room ([`Residency::admit_free`]: the runtime's
//! prefetches never evict). When it launches it needs all its items
//! there, pinned ([`Residency::pin`]); when they do not fit, items of
//! that space the task does not need, and not pinned, are evicted in the
//! runtime's order (`actors/src/eviction.rs`): the one whose next use
//! comes last in submission order first (none known: first of all), then
//! the least recently used, then the larger id. A copy valid elsewhere is
//! dropped; the last valid copy is written back to the home space first
//! (the runtime's device eviction does the same). A task whose own items
//! exceed the space is an error. The home space, where data starts, is
//! not bounded.
//!
//! The least recently used item alone is the worst choice for a
//! right-looking factorisation, which sweeps its trailing matrix every
//! step: on GPUs of 2 GB, lu:24 took 0.29 s that way and takes 0.22 s so
//! (docs/simulator.md).

use super::graph::SimGraph;
use crate::processor::MemorySpaceId;
use std::cmp::Ordering;
use std::collections::HashMap;

/// Which task next uses each item: the first unfinished one, in
/// submission order, that reads or writes it (the runtime keeps the same
/// per tile: `Tile::add_use` at submission, `end_use` when a task ends).
pub(crate) struct NextUse {
    /// Per item, the tasks using it in submission order, and how many of
    /// them, from the front, have finished.
    uses: HashMap<u32, (Vec<usize>, usize)>,
    done: Vec<bool>,
    /// Bytes of each item, and of the items some unfinished task uses
    /// (the runtime counts the same in `HostTier::live`).
    bytes: HashMap<u32, u64>,
    live: u64,
}

impl NextUse {
    pub fn new(g: &SimGraph) -> Self {
        let mut uses: HashMap<u32, (Vec<usize>, usize)> = HashMap::new();
        let mut bytes = HashMap::new();
        for (t, task) in g.tasks.iter().enumerate() {
            for (d, b) in task.reads.iter().chain(&task.writes) {
                bytes.insert(*d, *b);
                let list = &mut uses.entry(*d).or_default().0;
                if list.last() != Some(&t) {
                    list.push(t);
                }
            }
        }
        let live = bytes.values().sum();
        NextUse {
            uses,
            done: vec![false; g.tasks.len()],
            bytes,
            live,
        }
    }

    /// Bytes of the items some unfinished task uses.
    pub fn live_bytes(&self) -> u64 {
        self.live
    }

    /// The first unfinished task using `d`, if any.
    pub fn of(&self, d: u32) -> Option<usize> {
        let (list, first) = self.uses.get(&d)?;
        list.get(*first).copied()
    }

    /// Task `t`, which used `items`, has finished.
    pub fn finished(&mut self, t: usize, items: impl Iterator<Item = u32>) {
        if let Some(done) = self.done.get_mut(t) {
            *done = true;
        }
        for d in items {
            if let Some((list, first)) = self.uses.get_mut(&d) {
                let was_live = *first < list.len();
                while list.get(*first).is_some_and(|u| self.done[*u]) {
                    *first += 1;
                }
                if was_live && *first == list.len() {
                    self.live -= self.bytes.get(&d).copied().unwrap_or(0);
                }
            }
        }
    }

    /// Which of two items (with their last uses) goes first: the one used
    /// next later (unused: first), then the one used less recently, then
    /// the larger id.
    fn evict_before(&self, a: (u32, f64), b: (u32, f64)) -> Ordering {
        let next = |d| self.of(d).unwrap_or(usize::MAX);
        next(a.0)
            .cmp(&next(b.0))
            .then(b.1.total_cmp(&a.1))
            .then(a.0.cmp(&b.0))
    }
}

/// What each space holds.
pub(crate) struct Residency {
    capacity: Vec<Option<u64>>,
    used: Vec<u64>,
    /// Per space: item -> (bytes, last use).
    items: Vec<HashMap<u32, (u64, f64)>>,
    /// Per space: items no eviction may take, with how many pins each.
    pinned: Vec<HashMap<u32, usize>>,
    pub evictions: usize,
    pub written_back: u64,
}

impl Residency {
    pub fn new(capacity: &[Option<u64>]) -> Self {
        Residency {
            capacity: capacity.to_vec(),
            used: vec![0; capacity.len()],
            items: vec![HashMap::new(); capacity.len()],
            pinned: vec![HashMap::new(); capacity.len()],
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
        next: &NextUse,
    ) -> Result<u64, String> {
        let s = space.0 as usize;
        let Some(cap) = self.bound(s) else {
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
                .filter(|(d, _)| !self.pinned[s].contains_key(d))
                .max_by(|a, b| next.evict_before((*a.0, a.1 .1), (*b.0, b.1 .1)))
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
            self.take(s, *d, *b, now);
        }
        self.written_back += written;
        Ok(written)
    }

    /// Takes into `space` what fits of `items` without evicting anything
    /// (a prefetch: the runtime's never evicts), and marks those already
    /// there used at `now`: whether `space` holds each item now.
    pub fn admit_free(
        &mut self,
        space: MemorySpaceId,
        items: &[(u32, u64)],
        now: f64,
    ) -> Vec<bool> {
        let s = space.0 as usize;
        let Some(cap) = self.bound(s) else {
            return vec![true; items.len()];
        };
        items
            .iter()
            .map(|(d, b)| {
                if let Some(entry) = self.items[s].get_mut(d) {
                    entry.1 = now;
                    true
                } else if self.used[s] + b <= cap {
                    self.take(s, *d, *b, now);
                    true
                } else {
                    false
                }
            })
            .collect()
    }

    /// Whether `space` can make room for all of `needed` now: they and
    /// the items other fetches have pinned fit in it.
    pub fn can_make_room(&self, space: MemorySpaceId, needed: &[(u32, u64)]) -> bool {
        let s = space.0 as usize;
        let Some(cap) = self.bound(s) else {
            return true;
        };
        let own: u64 = needed.iter().map(|(_, b)| *b).sum();
        let pinned: u64 = self.pinned[s]
            .keys()
            .filter(|d| !needed.iter().any(|(n, _)| n == *d))
            .filter_map(|d| self.items[s].get(d).map(|(b, _)| *b))
            .sum();
        own + pinned <= cap
    }

    /// Pins `items` in `space` (`on`) or lifts one pin of each.
    pub fn pin(&mut self, space: MemorySpaceId, items: &[(u32, u64)], on: bool) {
        let Some(pins) = self.pinned.get_mut(space.0 as usize) else {
            return;
        };
        for (d, _) in items {
            if on {
                *pins.entry(*d).or_default() += 1;
            } else if let Some(n) = pins.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    pins.remove(d);
                }
            }
        }
    }

    /// Space `s`'s capacity, if it is bounded.
    fn bound(&self, s: usize) -> Option<u64> {
        self.capacity.get(s).copied().flatten()
    }

    /// Records item `d` (`bytes`) in space `s`, used at `now`.
    fn take(&mut self, s: usize, d: u32, bytes: u64, now: f64) {
        if self.items[s].insert(d, (bytes, now)).is_none() {
            self.used[s] += bytes;
        }
    }

    /// Whether `space` holds item `d` (an unbounded space is not
    /// tracked: it holds whatever was copied there).
    pub fn holds(&self, space: MemorySpaceId, d: u32) -> bool {
        let s = space.0 as usize;
        match self.bound(s) {
            Some(_) => self.items[s].contains_key(&d),
            None => true,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::op::OpName;
    use crate::sim::graph::Builder;

    /// Tasks 0 – 3 read items 1, 2, 3 and 4 in turn; task 4 reads item 2
    /// again and task 5 item 1.
    fn uses() -> SimGraph {
        let mut b = Builder::new("uses".into(), DType::F64);
        for d in [1, 2, 3, 4, 2, 1] {
            b.access_task(
                OpName::Gemm,
                1.0,
                vec![(d, 10)],
                Vec::new(),
                Vec::new(),
                Vec::new(),
            );
        }
        b.graph
    }

    #[test]
    fn the_item_used_next_last_goes_first_then_the_least_recently_used() {
        let g = uses();
        let mut next = NextUse::new(&g);
        assert_eq!(
            (next.of(1), next.of(2), next.of(9)),
            (Some(0), Some(1), None)
        );
        // Tasks end out of order: an item's next use is its first
        // unfinished task.
        next.finished(1, [2].into_iter());
        assert_eq!(next.of(2), Some(4));
        next.finished(0, [1].into_iter());
        assert_eq!(next.of(1), Some(5));
        let (gpu, home) = (MemorySpaceId(1), MemorySpaceId(0));
        let mut mem = Residency::new(&[None, Some(30)]);
        let mut valid = HashMap::new();
        // Items 1 (next: task 5), 2 (next: task 4) and 9 (no use left),
        // 9 the most recent; 1 and 9 were written there (their only copy).
        for (d, at) in [(1, 0.0), (2, 1.0), (9, 2.0)] {
            mem.admit(gpu, &[(d, 10)], at, &mut valid, home, &next)
                .unwrap();
            valid.insert(d, if d == 2 { vec![home, gpu] } else { vec![gpu] });
        }
        // Room for item 3: item 9 goes though just used (nothing needs
        // it), then item 1 (its use comes after item 2's).
        mem.admit(gpu, &[(3, 10)], 3.0, &mut valid, home, &next)
            .unwrap();
        assert!(!mem.items[1].contains_key(&9));
        mem.admit(gpu, &[(4, 10)], 4.0, &mut valid, home, &next)
            .unwrap();
        assert!(!mem.items[1].contains_key(&1) && mem.items[1].contains_key(&2));
        // Each evicted item was the last copy: written back home.
        assert_eq!((mem.evictions, mem.written_back), (2, 20));
        assert_eq!(valid[&1], vec![home]);
        // Two items with no use left: the less recently used goes.
        let mut mem = Residency::new(&[None, Some(20)]);
        for (d, at) in [(8, 5.0), (9, 1.0)] {
            mem.admit(gpu, &[(d, 10)], at, &mut valid, home, &next)
                .unwrap();
        }
        mem.admit(gpu, &[(3, 10)], 6.0, &mut valid, home, &next)
            .unwrap();
        assert!(mem.items[1].contains_key(&8) && !mem.items[1].contains_key(&9));
    }

    #[test]
    fn a_prefetch_takes_only_free_room_and_a_pin_keeps_an_item() {
        let g = uses();
        let next = NextUse::new(&g);
        let (gpu, home) = (MemorySpaceId(1), MemorySpaceId(0));
        let mut mem = Residency::new(&[None, Some(25)]);
        let mut valid = HashMap::new();
        // Room for two items of 10: the third does not fit and nothing
        // is evicted for it.
        let fits = mem.admit_free(gpu, &[(1, 10), (2, 10), (3, 10)], 0.0);
        assert_eq!(fits, vec![true, true, false]);
        assert_eq!(mem.evictions, 0);
        assert!(mem.holds(gpu, 1) && !mem.holds(gpu, 3));
        // The home space is not tracked: it holds everything.
        assert!(mem.holds(home, 3));
        // Item 2 is used before item 1, so item 1 would go; pinned, it
        // stays and item 2 goes instead.
        mem.pin(gpu, &[(1, 10)], true);
        mem.admit(gpu, &[(3, 10)], 1.0, &mut valid, home, &next)
            .unwrap();
        assert!(mem.holds(gpu, 1) && !mem.holds(gpu, 2));
        // Unpinned, it is a victim again: with item 3 pinned, it goes.
        mem.pin(gpu, &[(1, 10)], false);
        mem.pin(gpu, &[(3, 10)], true);
        mem.admit(gpu, &[(4, 10)], 2.0, &mut valid, home, &next)
            .unwrap();
        assert!(!mem.holds(gpu, 1) && mem.holds(gpu, 3));
    }
}
