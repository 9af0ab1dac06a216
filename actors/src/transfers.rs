//! Copies between memory spaces, logged for the run recorder.
//!
//! Copies happen on processor, prefetch and spill threads, not in actors,
//! so each runtime has one [`TransferLog`] that those threads append to
//! and the metrics actor drains with each event batch (into the transfer
//! counters, and the run file when recording). It holds at most
//! [`MAX_ROWS`] rows between drains (the rest are counted as dropped).
//!
//! A synchronous copy is logged with its measured start and end. A copy a
//! device processor queues for its task is logged when the processor
//! synchronises its stream before the launch (which it does only while
//! recording): start is when it was queued, so with copies queued behind
//! each other the end is exact and the start early. Prefetch threads never
//! synchronise, so their copies end when they were queued (duration 0,
//! which the named queries leave out of bandwidths).

use crate::record::TransferRow;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Rows held between drains at most.
const MAX_ROWS: usize = 1 << 20;

/// One runtime's copies since the last drain.
pub(crate) struct TransferLog {
    /// Whether copies are timed exactly (the run is recorded).
    timed: bool,
    epoch: Instant,
    rows: Mutex<Vec<TransferRow>>,
    pub dropped: AtomicU64,
}

impl TransferLog {
    /// A log whose times count from `epoch`; `timed` when the run is
    /// recorded (device processors then wait for their copies before each
    /// launch, so they end when they did).
    pub fn new(timed: bool, epoch: Instant) -> Arc<Self> {
        Arc::new(TransferLog {
            timed,
            epoch,
            rows: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
        })
    }

    pub fn timed(&self) -> bool {
        self.timed
    }

    fn us(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.epoch).as_secs_f64() * 1e6
    }

    /// Logs a copy of `bytes` from `src` to `dst` between `start` and `end`.
    pub fn record(&self, src: &str, dst: &str, bytes: u64, start: Instant, end: Instant) {
        let row = TransferRow {
            src: src.to_string(),
            dst: dst.to_string(),
            bytes,
            start_us: self.us(start),
            end_us: self.us(end),
        };
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        if rows.len() < MAX_ROWS {
            rows.push(row);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The rows logged since the last call.
    pub fn drain(&self) -> Vec<TransferRow> {
        std::mem::take(&mut *self.rows.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A copy queued on a stream by this thread and not yet known complete.
struct Queued {
    log: Arc<TransferLog>,
    src: String,
    dst: String,
    bytes: u64,
    start: Instant,
}

thread_local! {
    static QUEUED: RefCell<Vec<Queued>> = const { RefCell::new(Vec::new()) };
}

/// Notes a copy this thread queued on a stream.
pub(crate) fn queued(log: &Arc<TransferLog>, src: &str, dst: &str, bytes: u64) {
    QUEUED.with(|q| {
        q.borrow_mut().push(Queued {
            log: Arc::clone(log),
            src: src.to_string(),
            dst: dst.to_string(),
            bytes,
            start: Instant::now(),
        });
    });
}

/// Whether this thread queued copies not yet settled on a timed log.
pub(crate) fn pending_timed() -> bool {
    QUEUED.with(|q| q.borrow().iter().any(|c| c.log.timed()))
}

/// This thread's streams are synchronised: logs the copies it queued as
/// ending now.
pub(crate) fn settle() {
    QUEUED.with(|q| {
        let mut q = q.borrow_mut();
        if q.is_empty() {
            return;
        }
        let end = Instant::now();
        for c in q.drain(..) {
            c.log.record(&c.src, &c.dst, c.bytes, c.start, end);
        }
    });
}
