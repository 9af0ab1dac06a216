//! The scheduler's inbox: the hot path of every task.
//!
//! Submissions and completions arrive at a rate of millions a second. An
//! actix mailbox boxes every message and wakes the arbiter for each one, so
//! instead they ride one crossbeam channel, and actix carries only a
//! `Drain` wake-up, sent when the scheduler is not
//! already scheduled to drain. One channel keeps one order: a task's
//! submission is always seen before a wait on it.

use crate::error::RuntimeError;
use crate::scheduler::{Drain, Scheduler};
use crate::task::Body;
use crate::tile::Tile;
use actix::Addr;
use crossbeam_channel::Sender;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tessera_core::graph::{Failure, TaskId};
use tessera_core::{Access, DType, Op, OpName, TileId};

/// A task on its way to the scheduler.
pub(crate) struct Submission {
    pub id: TaskId,
    pub op: Op,
    pub args: Vec<(Tile, Access)>,
    pub body: Option<Body>,
    pub priority: i32,
    pub after: Vec<TaskId>,
    pub flops: f64,
    pub dtype: Option<DType>,
}

/// A processor reporting a finished task.
pub(crate) struct Completion {
    pub id: TaskId,
    pub processor: usize,
    pub op: OpName,
    pub est_seconds: f64,
    pub sample: Option<(DType, f64)>,
    pub result: Result<(), String>,
    /// Seconds the kernel or closure ran.
    pub seconds: f64,
    /// When it started.
    pub started: std::time::Instant,
    /// The processor's stream it ran on (0 on a CPU).
    pub stream: u32,
    /// When its inputs were in place, where the processor said
    /// ([`inputs_ready`]).
    pub inputs_ready: Option<std::time::Instant>,
}

thread_local! {
    static INPUTS_READY: std::cell::Cell<Option<std::time::Instant>> =
        const { std::cell::Cell::new(None) };
}

/// Called by a processor thread when the task it runs has every input in
/// place (in RAM, home, or copied to the device), just before its kernel
/// or closure starts.
pub(crate) fn inputs_ready() {
    INPUTS_READY.with(|c| c.set(Some(std::time::Instant::now())));
}

/// Everything the scheduler's inbox carries.
pub(crate) enum Input {
    Submit(Submission),
    Done(Completion),
    Wait {
        task: TaskId,
        reply: Sender<Result<(), Failure>>,
    },
    WaitAll {
        reply: Sender<()>,
    },
    ForgetTile(TileId),
    Shutdown {
        reply: Sender<()>,
    },
}

/// Runs `task` with `run` on processor `processor` (stream `stream`),
/// times it, and posts
/// its completion. Returns false once the scheduler is gone, so the
/// processor's loop can end.
pub(crate) fn run_and_report(
    lane: &Lane,
    processor: usize,
    stream: u32,
    task: crate::cpu_processor::Dispatch,
    run: impl FnOnce(crate::cpu_processor::Dispatch) -> Result<(), String>,
) -> bool {
    let (id, op, est_seconds, sample) = (task.id, task.op.name(), task.est_seconds, task.sample);
    let start = std::time::Instant::now();
    INPUTS_READY.with(|c| c.set(None));
    let result = run(task);
    let done = Completion {
        inputs_ready: INPUTS_READY.with(std::cell::Cell::take),
        stream,
        id,
        processor,
        op,
        est_seconds,
        sample,
        result,
        seconds: start.elapsed().as_secs_f64(),
        started: start,
    };
    lane.post(Input::Done(done)).is_ok()
}

/// The sending side of the scheduler's inbox, shared by submitters and
/// processors.
pub(crate) struct Lane {
    tx: Sender<Input>,
    scheduled: Arc<AtomicBool>,
    scheduler: Addr<Scheduler>,
}

impl Lane {
    pub fn new(tx: Sender<Input>, scheduled: Arc<AtomicBool>, scheduler: Addr<Scheduler>) -> Lane {
        Lane {
            tx,
            scheduled,
            scheduler,
        }
    }

    /// Queues `input` and wakes the scheduler if it is not already due to
    /// drain. Fails once the scheduler is gone.
    pub fn post(&self, input: Input) -> Result<(), RuntimeError> {
        self.tx.send(input).map_err(|_| RuntimeError::ShutDown)?;
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            self.scheduler.do_send(Drain);
        }
        Ok(())
    }
}
