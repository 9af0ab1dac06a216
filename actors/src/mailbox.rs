//! A device processor's mailbox: the tasks the scheduler sent it, highest
//! key first (the scheduler gives each its priority, or while the run is
//! memory-bound one key for all, so that they go in the order sent), first
//! come first served among equal keys; and [`Outbox`], the scheduler's end
//! of either kind.
//!
//! Why not a channel: a task that becomes ready late but matters most
//! (the next panel of a factorisation) should not wait behind the bulk
//! queued before it, on a processor any more than in the ready list. A
//! channel runs its queue in the order tasks were sent; StarPU's `dmdas`
//! and our simulator sort each worker's queue by priority. On the
//! simulator's H200-shaped node a Cholesky (n 32768, tile 2048) ended 9%
//! sooner with deep queues than with the runtime's 1 ms, sorted; with a
//! crude first-come first-served model (a worker waits for its head's
//! copies) deeper queues ended it later, and through 1 GiB of device
//! memory it took twice as long as sorted (BENCHMARKS.md, session 11).
//! Sorting is what lets a device queue deeper
//! ([`crate::RuntimeBuilder::device_queue_horizon`]). On the H200 neither
//! changed that Cholesky beyond the runs' spread (through 2 GiB: 0.451 s
//! a run first come first served, 0.450 sorted; deeper queues no better;
//! session 12): the runtime's four streams each take the next task, so a
//! device's order matters less than the simulator's single worker says.
//!
//! CPU processors keep a channel: their tasks are microseconds long and
//! their queues a millisecond deep, and the lock here cost a task of the
//! overhead benchmark 0.4 µs more (about 1.0 → 1.4 µs on dev-2c).

use crate::cpu_processor::Dispatch;
use crossbeam_channel::Sender;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Tasks for one processor, highest key first; closed once the runtime
/// shuts down (its threads then take what is left and stop).
pub(crate) struct Mailbox {
    state: Mutex<State>,
    arrived: Condvar,
}

#[derive(Default)]
struct State {
    queue: BinaryHeap<Entry>,
    sent: u64,
    closed: bool,
}

struct Entry {
    key: i64,
    /// Arrival number: earlier first among equal keys.
    seq: u64,
    task: Dispatch,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// The heap's greatest first: the highest key, then the earliest sent.
    fn cmp(&self, other: &Self) -> Ordering {
        self.key
            .cmp(&other.key)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl Mailbox {
    pub fn new() -> Self {
        Mailbox {
            state: Mutex::new(State::default()),
            arrived: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; recover regardless.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `task` under `key`; a closed mailbox hands it back.
    pub fn send(&self, key: i64, task: Dispatch) -> Result<(), Dispatch> {
        let mut state = self.lock();
        if state.closed {
            return Err(task);
        }
        let seq = state.sent;
        state.sent += 1;
        state.queue.push(Entry { key, seq, task });
        drop(state);
        self.arrived.notify_one();
        Ok(())
    }

    /// The first task, waiting for one; `None` once closed and drained.
    pub fn recv(&self) -> Option<Dispatch> {
        let mut state = self.lock();
        loop {
            if let Some(entry) = state.queue.pop() {
                return Some(entry.task);
            }
            if state.closed {
                return None;
            }
            state = self.arrived.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Refuses further tasks and wakes every waiting thread; those queued
    /// are still taken.
    pub fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_all();
    }
}

/// Where the scheduler sends a processor's tasks: a channel for a CPU
/// processor, a [`Mailbox`] for a device's streams.
pub(crate) enum Outbox {
    Fifo(Sender<Dispatch>),
    Sorted(Arc<Mailbox>),
}

impl Outbox {
    /// Sends `task` under the ready-list key `key` (a channel ignores
    /// it); a closed mailbox or channel hands the task back.
    pub fn send(&self, key: i64, task: Dispatch) -> Result<(), Dispatch> {
        match self {
            Outbox::Fifo(tx) => tx.send(task).map_err(|e| e.into_inner()),
            Outbox::Sorted(m) => m.send(key, task),
        }
    }

    /// Ends the processor's threads once they have run what is queued (a
    /// channel closes when its sender drops).
    pub fn close(&self) {
        if let Outbox::Sorted(m) = self {
            m.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tessera_core::Op;

    fn task(id: u64) -> Dispatch {
        Dispatch {
            id: tessera_core::graph::TaskId(id),
            op: Op::Potrf,
            args: Vec::new(),
            body: None,
            est_seconds: 0.0,
            sample: None,
        }
    }

    #[test]
    fn the_highest_key_goes_first_and_equal_keys_in_the_order_sent() {
        let m = Mailbox::new();
        for (id, key) in [(0, 1), (1, 5), (2, 1), (3, -7), (4, 5), (5, 3)] {
            assert!(m.send(key, task(id)).is_ok());
        }
        m.close();
        let order: Vec<u64> = std::iter::from_fn(|| m.recv()).map(|t| t.id.0).collect();
        assert_eq!(order, [1, 4, 5, 0, 2, 3]);
    }

    #[test]
    fn a_closed_mailbox_refuses_new_tasks_hands_out_the_rest_then_ends() {
        let m = Arc::new(Mailbox::new());
        assert!(m.send(0, task(7)).is_ok());
        // A thread waiting on an empty mailbox wakes at the close.
        let waiting = Arc::new(Mailbox::new());
        let w = Arc::clone(&waiting);
        let sleeper = std::thread::spawn(move || w.recv().map(|t| t.id.0));
        m.close();
        waiting.close();
        assert_eq!(sleeper.join().unwrap(), None);
        assert_eq!(m.send(0, task(8)).err().map(|t| t.id.0), Some(8));
        assert_eq!(m.recv().map(|t| t.id.0), Some(7));
        assert!(m.recv().is_none());
    }

    #[test]
    fn threads_waiting_on_it_share_every_task_once() {
        let m = Arc::new(Mailbox::new());
        let takers: Vec<_> = (0..3)
            .map(|_| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Some(t) = m.recv() {
                        got.push(t.id.0);
                    }
                    got
                })
            })
            .collect();
        for id in 0..1000 {
            assert!(m.send((id % 7) as i64, task(id)).is_ok());
        }
        m.close();
        let mut all: Vec<u64> = takers.into_iter().flat_map(|t| t.join().unwrap()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
    }
}
