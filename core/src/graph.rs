//! The task graph: dependencies inferred from access modes in submission
//! order, plus explicit "after" edges.
//!
//! The graph is incremental: tasks are added as they are submitted and
//! removed as they complete, so a run of millions of tasks keeps only the
//! live ones in memory. A task may only depend on tasks added before it, so
//! the graph cannot contain a cycle by construction.
//!
//! Failure semantics: a task that fails cancels every task that depends on
//! it, transitively, with the same root cause. A tile whose last writer
//! failed or was cancelled is *poisoned*: later tasks that read it are
//! cancelled at submission with that cause, until a task overwrites it
//! without reading it ([`Access::Write`]).

use crate::access::Access;
use crate::error::CoreError;
use crate::tile::TileId;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

/// The identity of a task, increasing in submission order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId(pub u64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task#{}", self.0)
    }
}

/// Why a task did not run: the task that failed first and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The task whose own execution failed.
    pub task: TaskId,
    /// What went wrong, as the failing kernel or closure said it.
    pub message: Arc<str>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.task, self.message)
    }
}

/// The state of a task right after it is added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// No unfinished predecessor: it may run now.
    Ready,
    /// Waits for at least one predecessor.
    Waiting,
    /// A predecessor or an input tile failed: it will never run.
    Cancelled(Failure),
}

/// Where a task stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    /// Added and not finished.
    Pending,
    /// Finished successfully.
    Done,
    /// Failed or was cancelled, with the root cause.
    Failed(Failure),
}

#[derive(Debug)]
struct Node<P> {
    waiting_on: u32,
    successors: Vec<TaskId>,
    writes: Vec<TileId>,
    /// What the runtime needs to run the task, held until it is taken.
    payload: Option<P>,
}

#[derive(Debug, Default)]
struct TileDeps {
    last_writer: Option<TaskId>,
    readers: Vec<TaskId>,
    poisoned: Option<Failure>,
}

/// Readers lists are pruned of finished tasks past this length, so a tile
/// read millions of times without a write does not grow without bound.
const READER_PRUNE_LEN: usize = 64;

/// The live part of a task graph. Each live task carries a payload `P`
/// (what the runtime needs to run it), held until [`TaskGraph::take_payload`].
#[derive(Debug)]
pub struct TaskGraph<P = ()> {
    /// Id of `nodes[0]`.
    base: u64,
    /// Live tasks by id; `None` once finished.
    nodes: VecDeque<Option<Node<P>>>,
    next_id: u64,
    tiles: HashMap<TileId, TileDeps>,
    failed: HashMap<TaskId, Failure>,
    live: usize,
}

impl<P> Default for TaskGraph<P> {
    fn default() -> Self {
        TaskGraph {
            base: 0,
            nodes: VecDeque::new(),
            next_id: 0,
            tiles: HashMap::new(),
            failed: HashMap::new(),
            live: 0,
        }
    }
}

impl<P> TaskGraph<P> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of tasks added and not yet finished.
    pub fn live(&self) -> usize {
        self.live
    }

    /// The id the next added task will get.
    pub fn next_id(&self) -> TaskId {
        TaskId(self.next_id)
    }

    fn node(&self, id: TaskId) -> Option<&Node<P>> {
        let idx = id.0.checked_sub(self.base)?;
        self.nodes.get(usize::try_from(idx).ok()?)?.as_ref()
    }

    fn node_mut(&mut self, id: TaskId) -> Option<&mut Node<P>> {
        let idx = id.0.checked_sub(self.base)?;
        self.nodes.get_mut(usize::try_from(idx).ok()?)?.as_mut()
    }

    fn take_node(&mut self, id: TaskId) -> Option<Node<P>> {
        let idx = usize::try_from(id.0.checked_sub(self.base)?).ok()?;
        let node = self.nodes.get_mut(idx)?.take();
        if node.is_some() {
            self.live -= 1;
        }
        self.drop_finished_front();
        node
    }

    fn drop_finished_front(&mut self) {
        while matches!(self.nodes.front(), Some(None)) {
            self.nodes.pop_front();
            self.base += 1;
        }
    }

    fn is_live(&self, id: TaskId) -> bool {
        self.node(id).is_some()
    }

    /// Where task `id` stands.
    pub fn status(&self, id: TaskId) -> Result<TaskStatus, CoreError> {
        if id.0 >= self.next_id {
            return Err(CoreError::UnknownTask(id));
        }
        if let Some(f) = self.failed.get(&id) {
            return Ok(TaskStatus::Failed(f.clone()));
        }
        Ok(if self.is_live(id) {
            TaskStatus::Pending
        } else {
            TaskStatus::Done
        })
    }

    /// The payload of a live task, if not taken yet.
    pub fn payload(&self, id: TaskId) -> Option<&P> {
        self.node(id)?.payload.as_ref()
    }

    /// Takes the payload of a live task out, to run it; the task stays live
    /// until [`TaskGraph::complete`] or [`TaskGraph::fail`].
    pub fn take_payload(&mut self, id: TaskId) -> Option<P> {
        self.node_mut(id)?.payload.take()
    }

    /// Adds a task that accesses `tiles` and must also run after `after`.
    /// A cancelled task's payload is dropped.
    ///
    /// Returns its id and whether it can run now.
    pub fn add(
        &mut self,
        payload: P,
        tiles: &[(TileId, Access)],
        after: &[TaskId],
    ) -> Result<(TaskId, Submitted), CoreError> {
        self.add_returning(payload, tiles, after)
            .map(|(id, state, _)| (id, state))
    }

    /// [`TaskGraph::add`], handing a cancelled task's payload back (for
    /// callers that must undo what they did on its behalf).
    pub fn add_returning(
        &mut self,
        payload: P,
        tiles: &[(TileId, Access)],
        after: &[TaskId],
    ) -> Result<(TaskId, Submitted, Option<P>), CoreError> {
        let id = TaskId(self.next_id);
        if let Some(bad) = after.iter().find(|a| a.0 >= id.0) {
            return Err(CoreError::UnknownTask(*bad));
        }
        self.next_id += 1;

        if let Some(cause) = self.inherited_failure(tiles, after) {
            for (tile, access) in tiles {
                if access.writes() {
                    self.tiles.entry(*tile).or_default().poisoned = Some(cause.clone());
                }
            }
            self.failed.insert(id, cause.clone());
            // Keep ids aligned with slots: the cancelled task takes an empty one.
            self.nodes.push_back(None);
            self.drop_finished_front();
            return Ok((id, Submitted::Cancelled(cause), Some(payload)));
        }

        let mut preds: Vec<TaskId> = Vec::new();
        for a in after {
            if self.is_live(*a) {
                preds.push(*a);
            }
        }
        let mut writes = Vec::new();
        for &(tile, access) in tiles {
            let deps = self.tiles.entry(tile).or_default();
            if let Some(w) = deps.last_writer {
                preds.push(w);
            }
            if access.writes() {
                preds.extend_from_slice(&deps.readers);
                deps.readers.clear();
                deps.last_writer = Some(id);
                deps.poisoned = None;
                writes.push(tile);
            } else {
                deps.readers.push(id);
            }
        }
        let mut waiting_on = 0u32;
        for p in preds {
            if p == id {
                continue;
            }
            if let Some(pred) = self.node_mut(p) {
                // Edges for one task are added together, so a repeated edge
                // is always the predecessor's last successor.
                if pred.successors.last() != Some(&id) {
                    pred.successors.push(id);
                    waiting_on += 1;
                }
            }
        }
        self.prune_readers(tiles);
        self.nodes.push_back(Some(Node {
            waiting_on,
            successors: Vec::new(),
            writes,
            payload: Some(payload),
        }));
        self.live += 1;
        let state = if waiting_on == 0 {
            Submitted::Ready
        } else {
            Submitted::Waiting
        };
        Ok((id, state, None))
    }

    fn inherited_failure(&self, tiles: &[(TileId, Access)], after: &[TaskId]) -> Option<Failure> {
        for a in after {
            if let Some(f) = self.failed.get(a) {
                return Some(f.clone());
            }
        }
        for (tile, access) in tiles {
            if access.reads() {
                if let Some(f) = self.tiles.get(tile).and_then(|d| d.poisoned.as_ref()) {
                    return Some(f.clone());
                }
            }
        }
        None
    }

    fn prune_readers(&mut self, tiles: &[(TileId, Access)]) {
        for (tile, _) in tiles {
            let Some(deps) = self.tiles.get(tile) else {
                continue;
            };
            if deps.readers.len() <= READER_PRUNE_LEN {
                continue;
            }
            let live: Vec<TaskId> = deps
                .readers
                .iter()
                .copied()
                .filter(|r| self.is_live(*r))
                .collect();
            if let Some(deps) = self.tiles.get_mut(tile) {
                deps.readers = live;
            }
        }
    }

    /// Marks `id` finished and appends the tasks that became ready to `ready`.
    pub fn complete(&mut self, id: TaskId, ready: &mut Vec<TaskId>) {
        let Some(node) = self.take_node(id) else {
            return;
        };
        for s in node.successors {
            if let Some(succ) = self.node_mut(s) {
                succ.waiting_on -= 1;
                if succ.waiting_on == 0 {
                    ready.push(s);
                }
            }
        }
    }

    /// Marks `id` failed with `message`; every task depending on it,
    /// transitively, is cancelled and appended to `cancelled` with its
    /// payload (if not taken). Returns the root cause they all share.
    pub fn fail(
        &mut self,
        id: TaskId,
        message: &str,
        cancelled: &mut Vec<(TaskId, Option<P>)>,
    ) -> Failure {
        let cause = Failure {
            task: id,
            message: Arc::from(message),
        };
        let mut stack = vec![id];
        while let Some(t) = stack.pop() {
            let Some(node) = self.take_node(t) else {
                continue;
            };
            self.failed.insert(t, cause.clone());
            for tile in &node.writes {
                if let Some(deps) = self.tiles.get_mut(tile) {
                    if deps.last_writer == Some(t) {
                        deps.poisoned = Some(cause.clone());
                    }
                }
            }
            stack.extend(node.successors);
            if t != id {
                cancelled.push((t, node.payload));
            }
        }
        cause
    }

    /// Whether a live task will still write `tile`: until then its contents
    /// are not final, and copying them ahead of time would be wasted.
    pub fn has_pending_writer(&self, tile: TileId) -> bool {
        self.tiles
            .get(&tile)
            .and_then(|d| d.last_writer)
            .is_some_and(|w| self.is_live(w))
    }

    /// Forgets what the graph remembers about a tile that no longer exists.
    pub fn forget_tile(&mut self, tile: TileId) {
        self.tiles.remove(&tile);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: TileId = TileId(1);
    const B: TileId = TileId(2);

    #[test]
    fn readers_run_together_and_a_writer_waits_for_all() {
        let mut g = TaskGraph::<()>::new();
        let (w, s) = g.add((), &[(A, Access::Write)], &[]).unwrap();
        assert_eq!(s, Submitted::Ready);
        let (r1, _) = g.add((), &[(A, Access::Read)], &[]).unwrap();
        let (r2, _) = g.add((), &[(A, Access::Read)], &[]).unwrap();
        let (w2, s2) = g.add((), &[(A, Access::ReadWrite)], &[]).unwrap();
        assert_eq!(s2, Submitted::Waiting);
        let mut ready = Vec::new();
        g.complete(w, &mut ready);
        assert_eq!(ready, vec![r1, r2]);
        ready.clear();
        g.complete(r1, &mut ready);
        assert!(ready.is_empty());
        g.complete(r2, &mut ready);
        assert_eq!(ready, vec![w2]);
        assert_eq!(g.live(), 1);
    }

    #[test]
    fn pending_writers_are_known_until_they_complete() {
        let mut g = TaskGraph::<()>::new();
        let (w, _) = g.add((), &[(A, Access::Write)], &[]).unwrap();
        let (r, _) = g.add((), &[(A, Access::Read)], &[]).unwrap();
        assert!(g.has_pending_writer(A));
        assert!(!g.has_pending_writer(B));
        let mut ready = Vec::new();
        g.complete(w, &mut ready);
        assert!(!g.has_pending_writer(A), "readers do not count: {r}");
    }

    #[test]
    fn duplicate_edges_are_counted_once() {
        let mut g = TaskGraph::<()>::new();
        let (w, _) = g
            .add((), &[(A, Access::Write), (B, Access::Write)], &[])
            .unwrap();
        let (r, s) = g
            .add((), &[(A, Access::Read), (B, Access::Read)], &[w])
            .unwrap();
        assert_eq!(s, Submitted::Waiting);
        let mut ready = Vec::new();
        g.complete(w, &mut ready);
        assert_eq!(ready, vec![r]);
    }

    #[test]
    fn explicit_after_edges_and_unknown_tasks() {
        let mut g = TaskGraph::<()>::new();
        let (t0, _) = g.add((), &[], &[]).unwrap();
        let (t1, s) = g.add((), &[], &[t0]).unwrap();
        assert_eq!(s, Submitted::Waiting);
        assert_eq!(
            g.add((), &[], &[TaskId(99)]),
            Err(CoreError::UnknownTask(TaskId(99)))
        );
        let mut ready = Vec::new();
        g.complete(t0, &mut ready);
        assert_eq!(ready, vec![t1]);
        assert_eq!(g.status(t0), Ok(TaskStatus::Done));
        assert_eq!(g.status(t1), Ok(TaskStatus::Pending));
    }

    #[test]
    fn failure_cancels_dependants_and_poisons_written_tiles() {
        let mut g = TaskGraph::<()>::new();
        let (f, _) = g.add((), &[(A, Access::ReadWrite)], &[]).unwrap();
        let (c1, _) = g
            .add((), &[(A, Access::Read), (B, Access::Write)], &[])
            .unwrap();
        let (c2, _) = g.add((), &[(B, Access::Read)], &[]).unwrap();
        let (other, _) = g.add((), &[(TileId(3), Access::Write)], &[]).unwrap();
        let mut cancelled = Vec::new();
        let cause = g.fail(f, "boom", &mut cancelled);
        let mut cancelled: Vec<TaskId> = cancelled.into_iter().map(|(t, _)| t).collect();
        cancelled.sort();
        assert_eq!(cancelled, vec![c1, c2]);
        assert_eq!(g.status(c2), Ok(TaskStatus::Failed(cause.clone())));
        assert_eq!(g.status(other), Ok(TaskStatus::Pending));
        // Later readers of a poisoned tile are cancelled at once ...
        let (late, s) = g.add((), &[(B, Access::Read)], &[]).unwrap();
        assert_eq!(s, Submitted::Cancelled(cause.clone()));
        assert!(matches!(g.status(late), Ok(TaskStatus::Failed(_))));
        // ... until a pure write replaces the tile.
        let (w, s) = g.add((), &[(B, Access::Write)], &[]).unwrap();
        assert_eq!(s, Submitted::Ready);
        let (r, s) = g.add((), &[(B, Access::Read)], &[]).unwrap();
        assert_eq!(s, Submitted::Waiting);
        let mut ready = Vec::new();
        g.complete(w, &mut ready);
        assert_eq!(ready, vec![r]);
    }

    #[test]
    fn finished_tasks_are_released() {
        let mut g = TaskGraph::<()>::new();
        let mut ready = Vec::new();
        for _ in 0..10_000 {
            let (t, _) = g.add((), &[(A, Access::Read)], &[]).unwrap();
            g.complete(t, &mut ready);
        }
        assert_eq!(g.live(), 0);
        assert!(g.nodes.is_empty());
        assert!(g.tiles[&A].readers.len() <= READER_PRUNE_LEN + 1);
    }

    /// A task as the property tests generate it: tiles with modes.
    fn arb_tasks() -> impl Strategy<Value = Vec<Vec<(u64, u8)>>> {
        prop::collection::vec(prop::collection::vec((0u64..6, 0u8..3), 0..4), 1..60)
    }

    fn mode(m: u8) -> Access {
        match m {
            0 => Access::Read,
            1 => Access::Write,
            _ => Access::ReadWrite,
        }
    }

    proptest! {
        /// Any order the graph allows keeps every conflicting pair of tasks
        /// (same tile, at least one writer) in submission order.
        #[test]
        fn every_allowed_order_respects_conflicts(tasks in arb_tasks(), seed in any::<u64>()) {
            let mut g = TaskGraph::<()>::new();
            let mut ready = Vec::new();
            let accesses: Vec<Vec<(TileId, Access)>> = tasks
                .iter()
                .map(|t| t.iter().map(|(tile, m)| (TileId(*tile), mode(*m))).collect())
                .collect();
            for acc in &accesses {
                let (id, s) = g.add((), acc, &[]).unwrap();
                if s == Submitted::Ready { ready.push(id); }
            }
            let mut order = Vec::new();
            let mut rng = seed;
            while !ready.is_empty() {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let pick = (rng >> 33) as usize % ready.len();
                let t = ready.swap_remove(pick);
                order.push(t);
                g.complete(t, &mut ready);
            }
            prop_assert_eq!(order.len(), accesses.len());
            let pos: HashMap<TaskId, usize> = order.iter().enumerate().map(|(i, t)| (*t, i)).collect();
            for i in 0..accesses.len() {
                for j in (i + 1)..accesses.len() {
                    let conflict = accesses[i].iter().any(|(ti, mi)| accesses[j].iter().any(|(tj, mj)| ti == tj && (mi.writes() || mj.writes())));
                    if conflict {
                        prop_assert!(pos[&TaskId(i as u64)] < pos[&TaskId(j as u64)]);
                    }
                }
            }
        }
    }
}
