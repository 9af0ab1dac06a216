//! The scheduler actor: owns the task graph, places ready tasks, hears
//! completions.
//!
//! Everything arrives through one [`lane`](crate::lane) in order: a
//! `Drain` message tells the actor to empty it. Each drain applies every
//! input (adding tasks to the graph, completing or failing them, answering
//! waits), then places ready tasks, highest priority first, with the
//! [`Policy`] on processors that have room (a task whose best processor is
//! full waits, and those behind it get their turn), and sends the metrics
//! actor events in batches (by size, or every 10 ms).
//!
//! "Room" keeps each processor's queue short in *time* (about a millisecond
//! of estimated work, and at least as many tasks as it runs at once: one
//! for a CPU core, one per compute stream for a device): enough that a
//! processor never idles waiting for the scheduler, little enough that a
//! critical task arriving later is not stuck behind a long queue.
//!
//! At submission the scheduler also starts copying a task's final inputs to
//! the device it will most likely run on (prefetch).
//!
//! While the tiles unfinished tasks use exceed the devices' memory (or
//! the host budget, when tiles spill to disk) by a margin, ready tasks go
//! in submission order instead of by priority
//! ([`tessera_core::policy::memory_bound`]): priority order runs ahead into
//! later steps of a factorisation and sweeps more tiles through the
//! devices than they hold, submission order reuses each before evicting it.

use crate::cpu_processor::Dispatch;
use crate::device_memory::DeviceMemory;
use crate::kernel::KernelRegistry;
use crate::lane::{Completion, Input, Submission};
use crate::mailbox::Outbox;
use crate::metrics::{EventBatch, MemorySample, Metrics, TaskEvent};
use crate::record::TaskRow;
use crate::task::Body;
use crate::tile::Tile;
use actix::{Actor, Addr, AsyncContext, Context, Handler, Message};
use crossbeam_channel::{Receiver, Sender};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_core::graph::{Failure, Submitted, TaskGraph, TaskId, TaskStatus};
use tessera_core::perfmodel::PerfModel;
use tessera_core::policy::{can_run, memory_bound, PlacementRequest, Policy, ProcessorLoad};
use tessera_core::processor::{MemorySpaceId, ProcessorDesc};
use tessera_core::{Access, DType, Op, OpName, TileId};

/// What became of a ready task at a placement attempt.
enum Placement {
    Sent,
    /// Its processor is busy: it stays ready.
    Wait,
    /// Cancelled meanwhile: drop it from the ready queue.
    Gone,
}

/// Ready tasks examined past ones that must wait, per dispatch.
const LOOKAHEAD: usize = 64;

/// Most ready tasks a window policy places together.
const WINDOW: usize = 64;
/// Share of a window's run time its placement may take.
const WINDOW_BUDGET_SHARE: f64 = 0.1;

/// The estimated seconds of `request` on `load`'s processor, and the
/// sample it will teach the performance model: only tasks whose inputs
/// are in place, since copies are charged separately.
fn estimate(
    request: &PlacementRequest<'_>,
    load: &ProcessorLoad<'_>,
) -> (f64, Option<(DType, f64)>) {
    let est = tessera_core::policy::estimate_seconds(request, load.desc, load.copy_bandwidth);
    let in_place = request
        .inputs
        .iter()
        .all(|(_, spaces)| spaces.contains(&load.desc.memory));
    let sample = match (request.dtype, in_place && request.flops > 0.0) {
        (Some(dt), true) => Some((dt, request.flops)),
        _ => None,
    };
    (est, sample)
}

/// A window's pick: the task's ready key and id, the processor, its
/// estimated seconds there, and what it teaches the performance model.
type WindowPick = (i64, TaskId, usize, f64, Option<(DType, f64)>);

/// Wake-up: empty the inbox.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Drain;

/// Estimated work a processor may have queued before it counts as full,
/// unless the runtime was built with another for devices
/// ([`crate::RuntimeBuilder::device_queue_horizon`]).
pub(crate) const QUEUE_HORIZON_SECONDS: f64 = tessera_core::policy::QUEUE_HORIZON;
/// Most tasks queued on one processor, however short.
const MAX_QUEUED: usize = 256;

/// Counters the runtime handle reads for progress lines.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub completed: AtomicU64,
    pub failed: AtomicU64,
}

/// What the graph holds for a task until it runs.
struct Pending {
    op: Op,
    args: Vec<(Tile, Access)>,
    body: Option<Body>,
    priority: i32,
    flops: f64,
    dtype: Option<DType>,
}

impl Pending {
    /// The tiles it reads.
    fn reads(&self) -> impl Iterator<Item = &Tile> {
        self.args.iter().filter(|(_, a)| a.reads()).map(|(t, _)| t)
    }

    /// Where each tile it reads has a valid replica, so a policy can charge
    /// for copies into processors that lack one. (Empty for tasks without
    /// tiles: no allocation on that path.)
    fn read_spaces(&self) -> Vec<Vec<MemorySpaceId>> {
        self.reads().map(Tile::valid_spaces).collect()
    }

    /// Bytes of the tiles it writes.
    fn output_bytes(&self) -> u64 {
        self.args
            .iter()
            .filter(|(_, a)| a.writes())
            .map(|(t, _)| t.meta().bytes())
            .sum()
    }

    /// Each tile it reads as a policy sees it: bytes, and `spaces` from
    /// [`Pending::read_spaces`].
    fn inputs<'a>(&self, spaces: &'a [Vec<MemorySpaceId>]) -> Vec<(u64, &'a [MemorySpaceId])> {
        self.reads()
            .zip(spaces)
            .map(|(t, s)| (t.meta().bytes(), s.as_slice()))
            .collect()
    }
}

/// A processor as the scheduler tracks it.
pub(crate) struct ProcessorSlot {
    pub desc: ProcessorDesc,
    pub mailbox: Outbox,
    /// Bytes/s of copies into this processor's memory.
    copy_bandwidth: f64,
    /// Tasks it runs at once (a device's compute streams): it always has
    /// room for that many.
    concurrency: usize,
    /// A device's memory, to prefetch into; `None` for CPU processors.
    device: Option<Arc<DeviceMemory>>,
    /// Seconds of estimated work it may have queued and still take more
    /// (past its `concurrency`).
    horizon: f64,
    queued_seconds: f64,
    queued_tasks: usize,
}

/// Dropping a slot (at shutdown) closes its mailbox: the processor's
/// threads run what it holds and stop.
impl Drop for ProcessorSlot {
    fn drop(&mut self) {
        self.mailbox.close();
    }
}

impl ProcessorSlot {
    pub fn new(
        desc: ProcessorDesc,
        mailbox: Outbox,
        copy_bandwidth: f64,
        device: Option<Arc<DeviceMemory>>,
        horizon: f64,
    ) -> Self {
        let concurrency = device.as_ref().map_or(1, |d| d.compute_streams() as usize);
        ProcessorSlot {
            desc,
            mailbox,
            copy_bandwidth,
            concurrency,
            device,
            horizon,
            queued_seconds: 0.0,
            queued_tasks: 0,
        }
    }

    fn load(&self) -> ProcessorLoad<'_> {
        ProcessorLoad {
            desc: &self.desc,
            // Queued work drains `concurrency` tasks at a time.
            queued_seconds: self.queued_seconds / self.concurrency as f64,
            queued_tasks: self.queued_tasks,
            has_room: self.queued_tasks < self.concurrency
                || (self.queued_tasks < MAX_QUEUED && self.queued_seconds < self.horizon),
            copy_bandwidth: self.copy_bandwidth,
            memory_bytes: self.device.as_ref().map(|d| d.budget),
            // Copies into a device share its one copy stream at
            // `copy_bandwidth`, whose queue is not tracked here yet.
            links: None,
            room_seconds: f64::INFINITY,
        }
    }
}

pub(crate) struct Scheduler {
    inbox: Receiver<Input>,
    scheduled: Arc<AtomicBool>,
    graph: TaskGraph<Pending>,
    /// Ready tasks by [`Scheduler::ready_key`], highest first,
    /// first-come first-served within one key.
    ready: BTreeMap<i64, VecDeque<TaskId>>,
    ready_len: usize,
    slots: Vec<ProcessorSlot>,
    policy: Box<dyn Policy>,
    waiters: HashMap<TaskId, Vec<Sender<Result<(), Failure>>>>,
    idle_waiters: Vec<Sender<()>>,
    metrics: Addr<Metrics>,
    events: Vec<TaskEvent>,
    progress: Arc<Progress>,
    /// Which devices compiled which user kernels.
    kernels: Arc<KernelRegistry>,
    /// Running average of task run times (seconds), and whether it is short.
    mean_task_seconds: f64,
    short_tasks: bool,
    /// Whether a timer will flush the pending events.
    flush_pending: bool,
    // Reused buffers, so the hot path does not allocate.
    newly_ready: Vec<TaskId>,
    tile_access: Vec<(TileId, Access)>,
    /// Learned op times, and the file they are saved to at shutdown.
    model: PerfModel,
    model_path: Option<PathBuf>,
    /// Time zero of traces and the run file.
    epoch: Instant,
    /// Each live task's timestamps, while the run is recorded.
    stamps: Option<HashMap<TaskId, TaskRow>>,
    /// Bytes of the tiles unfinished tasks use (the host tier's count).
    live: Arc<AtomicU64>,
    /// What the devices' memories hold together (`None`: no devices),
    /// the host budget when tiles spill past it, and whether `live`
    /// exceeds either ([`Scheduler::update_order`]).
    device_capacity: Option<u64>,
    host_capacity: Option<u64>,
    memory_bound: bool,
}

impl Scheduler {
    /// Uses and teaches `model`, saved to `path` (if any) at shutdown.
    pub fn with_model(mut self, model: PerfModel, path: Option<PathBuf>) -> Self {
        self.model = model;
        self.model_path = path;
        self
    }

    pub fn new(
        inbox: Receiver<Input>,
        scheduled: Arc<AtomicBool>,
        slots: Vec<ProcessorSlot>,
        policy: Box<dyn Policy>,
        metrics: Addr<Metrics>,
        progress: Arc<Progress>,
        kernels: Arc<KernelRegistry>,
    ) -> Self {
        Scheduler {
            inbox,
            scheduled,
            graph: TaskGraph::new(),
            ready: BTreeMap::new(),
            ready_len: 0,
            slots,
            policy,
            waiters: HashMap::new(),
            idle_waiters: Vec::new(),
            metrics,
            events: Vec::new(),
            progress,
            kernels,
            mean_task_seconds: 0.0,
            short_tasks: false,
            flush_pending: false,
            newly_ready: Vec::new(),
            tile_access: Vec::new(),
            model: PerfModel::new(),
            model_path: None,
            epoch: Instant::now(),
            stamps: None,
            live: Arc::new(AtomicU64::new(0)),
            device_capacity: None,
            host_capacity: None,
            memory_bound: false,
        }
    }

    /// Orders ready tasks by submission while `live` (bytes of tiles
    /// unfinished tasks use) exceeds what the devices hold together, or
    /// `host_capacity` (the host budget, when tiles spill past it).
    pub fn with_live_bytes(mut self, live: Arc<AtomicU64>, host_capacity: Option<u64>) -> Self {
        let mut budgets: Vec<(MemorySpaceId, u64)> = self
            .slots
            .iter()
            .filter_map(|s| s.device.as_ref().map(|d| (d.space, d.budget)))
            .collect();
        budgets.sort_unstable_by_key(|(s, _)| s.0);
        budgets.dedup_by_key(|(s, _)| *s);
        self.device_capacity = (!budgets.is_empty()).then(|| budgets.iter().map(|(_, b)| *b).sum());
        self.host_capacity = host_capacity;
        self.live = live;
        self
    }

    /// Counts time from `epoch`; when `recording`, keeps every task's
    /// timestamps and sends its [`TaskRow`] when it ends.
    pub fn with_clock(mut self, epoch: Instant, recording: bool) -> Self {
        self.epoch = epoch;
        self.stamps = recording.then(HashMap::new);
        self
    }

    fn now_us(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64() * 1e6
    }

    /// Records the end of task `id` (when recording): `run` is its start,
    /// end and inputs-ready times if it ran.
    fn record_end(
        &mut self,
        id: TaskId,
        op: OpName,
        processor: Option<usize>,
        run: Option<(f64, f64, Option<f64>, u32)>,
    ) {
        let Some(stamps) = &mut self.stamps else {
            return;
        };
        let mut row = stamps.remove(&id).unwrap_or_default();
        row.id = id.0;
        row.op = op.as_str().to_string();
        row.processor = processor;
        row.status = if run.is_some() { "done" } else { "failed" }.to_string();
        if let Some((start, end, inputs, stream)) = run {
            row.stream = Some(stream);
            row.started_us = Some(start);
            row.inputs_ready_us = inputs;
            row.finished_us = Some(end);
        }
        self.events.push(TaskEvent::Recorded(row));
    }

    fn apply(&mut self, input: Input) {
        match input {
            Input::Submit(s) => self.submit(s),
            Input::Done(c) => self.done(c),
            Input::Wait { task, reply } => match self.graph.status(task) {
                Ok(TaskStatus::Pending) => self.waiters.entry(task).or_default().push(reply),
                Ok(TaskStatus::Done) => {
                    let _ = reply.send(Ok(()));
                }
                Ok(TaskStatus::Failed(f)) => {
                    let _ = reply.send(Err(f));
                }
                Err(e) => {
                    let _ = reply.send(Err(Failure {
                        task,
                        message: Arc::from(e.to_string()),
                    }));
                }
            },
            Input::WaitAll { reply } => self.idle_waiters.push(reply),
            Input::ForgetTile(tile) => self.graph.forget_tile(tile),
            Input::Shutdown { reply } => {
                // Everything that happened reaches the metrics actor (and
                // the trace) before the system stops.
                self.flush_metrics();
                if let Some(path) = &self.model_path {
                    if let Err(e) = self.model.save(path) {
                        eprintln!("tessera: {e}");
                    }
                }
                // Closing the mailboxes ends the processor threads.
                self.slots.clear();
                let _ = reply.send(());
            }
        }
    }

    fn submit(&mut self, s: Submission) {
        let Submission {
            id,
            op,
            args,
            body,
            priority,
            after,
            flops,
            dtype,
        } = s;
        let name = op.name();
        self.events.push(TaskEvent::Submitted { op: name });
        if self.stamps.is_some() {
            let row = TaskRow {
                submitted_us: Some(self.now_us()),
                flops,
                ..TaskRow::default()
            };
            if let Some(st) = &mut self.stamps {
                st.insert(id, row);
            }
        }
        self.tile_access.clear();
        self.tile_access
            .extend(args.iter().map(|(t, a)| (t.id(), *a)));
        // Handles only come from earlier submissions, so `after` is always
        // known; filtering keeps ids aligned with the submitter's even if not.
        let next = self.graph.next_id();
        let after: Vec<TaskId> = after.into_iter().filter(|a| *a < next).collect();
        self.prefetch(&op, dtype, &args);
        let pending = Pending {
            op,
            args,
            body,
            priority,
            flops,
            dtype,
        };
        let Ok((gid, state, cancelled)) =
            self.graph.add_returning(pending, &self.tile_access, &after)
        else {
            return;
        };
        debug_assert_eq!(gid, id, "submission order and graph order must agree");
        match state {
            Submitted::Ready => self.push_ready(gid, priority),
            Submitted::Waiting => {}
            Submitted::Cancelled(_) => {
                self.events.push(TaskEvent::Failed {
                    op: name,
                    processor: None,
                });
                self.record_end(id, name, None, None);
                self.progress.failed.fetch_add(1, Ordering::Relaxed);
                // It will never run: its tiles' eviction order forgets it.
                for (t, _) in cancelled.iter().flat_map(|p| &p.args) {
                    t.end_use(id.0);
                }
            }
        }
    }

    /// Starts copying a new task's inputs to the device it will most
    /// likely run on, while earlier tasks compute. Only tiles whose contents
    /// are final (no pending writer) are worth copying; this runs before the
    /// task joins the graph, when its own writes are not pending yet.
    fn prefetch(&self, op: &Op, dtype: Option<DType>, args: &[(Tile, Access)]) {
        let name = op.name();
        let Some(dtype) = dtype else {
            return;
        };
        let speed = |s: &&ProcessorSlot| s.desc.flops_per_second(dtype);
        let capable = || {
            self.slots
                .iter()
                .filter(|s| s.desc.supports(name, Some(dtype)))
        };
        let best = capable().max_by(|a, b| speed(a).total_cmp(&speed(b)));
        // Only when a device is the fastest choice: a CPU would run it in place.
        let Some(device) = best.and_then(|s| s.device.as_ref()) else {
            return;
        };
        for (tile, access) in args {
            if access.reads() && !self.graph.has_pending_writer(tile.id()) {
                device.prefetch(tile);
            }
        }
    }

    /// Where a ready task goes in the ready list: by its priority; while
    /// the run is memory-bound, by submission (the first submitted first).
    fn ready_key(&self, id: TaskId, priority: i32) -> i64 {
        if self.memory_bound {
            -i64::try_from(id.0).unwrap_or(i64::MAX)
        } else {
            i64::from(priority)
        }
    }

    fn push_ready(&mut self, id: TaskId, priority: i32) {
        self.enqueue(id, priority);
        if self.stamps.is_some() {
            let now = self.now_us();
            if let Some(row) = self.stamps.as_mut().and_then(|s| s.get_mut(&id)) {
                row.ready_us = Some(now);
            }
        }
    }

    fn enqueue(&mut self, id: TaskId, priority: i32) {
        let key = self.ready_key(id, priority);
        self.ready.entry(key).or_default().push_back(id);
        self.ready_len += 1;
    }

    /// Whether the data unfinished tasks use exceeds the devices' memory
    /// or the host budget of a spilling run ([`memory_bound`]); if that
    /// changed, the ready list in its new order. Memory-bound, tasks run
    /// in submission order, which reuses each tile before later steps'
    /// tiles push it out: on an H200 with 1 GiB for a 4.3 GiB Cholesky,
    /// half the bytes over PCIe and half the time of priority order;
    /// spilling to disk, 40% of the reads back (BENCHMARKS.md, session 10).
    fn update_order(&mut self) {
        if self.device_capacity.is_none() && self.host_capacity.is_none() {
            return;
        }
        let live = self.live.load(Ordering::Relaxed);
        let bound = [self.device_capacity, self.host_capacity]
            .into_iter()
            .flatten()
            .any(|capacity| memory_bound(live, capacity, self.memory_bound));
        if bound == self.memory_bound {
            return;
        }
        self.memory_bound = bound;
        let ready = std::mem::take(&mut self.ready);
        self.ready_len = 0;
        for id in ready.into_values().flatten() {
            let priority = self.graph.payload(id).map_or(0, |p| p.priority);
            self.enqueue(id, priority);
        }
        self.events.push(TaskEvent::MemoryBound(bound));
    }

    fn done(&mut self, c: Completion) {
        if let Some(slot) = self.slots.get_mut(c.processor) {
            slot.queued_tasks = slot.queued_tasks.saturating_sub(1);
            slot.queued_seconds = (slot.queued_seconds - c.est_seconds).max(0.0);
            if let (Some((dtype, flops)), Ok(())) = (c.sample, &c.result) {
                self.model
                    .record(c.op, dtype, &slot.desc.name, flops, c.seconds);
            }
        }
        self.mean_task_seconds = 0.9 * self.mean_task_seconds + 0.1 * c.seconds;
        self.short_tasks = self.mean_task_seconds < SHORT_TASK_SECONDS;
        let start_us = c
            .started
            .saturating_duration_since(self.epoch)
            .as_secs_f64()
            * 1e6;
        match c.result {
            Ok(()) => {
                let inputs_us = c
                    .inputs_ready
                    .map(|t| t.saturating_duration_since(self.epoch).as_secs_f64() * 1e6);
                self.record_end(
                    c.id,
                    c.op,
                    Some(c.processor),
                    Some((start_us, start_us + c.seconds * 1e6, inputs_us, c.stream)),
                );
                self.events.push(TaskEvent::Completed {
                    op: c.op,
                    processor: c.processor,
                    seconds: c.seconds,
                    task: c.id.0,
                    start_us,
                    stream: c.stream,
                });
                self.progress.completed.fetch_add(1, Ordering::Relaxed);
                let mut ready = std::mem::take(&mut self.newly_ready);
                self.graph.complete(c.id, &mut ready);
                for id in ready.drain(..) {
                    let priority = self.graph.payload(id).map_or(0, |p| p.priority);
                    self.push_ready(id, priority);
                }
                self.newly_ready = ready;
                self.answer(c.id, Ok(()));
            }
            Err(message) => {
                self.events.push(TaskEvent::Failed {
                    op: c.op,
                    processor: Some(c.processor),
                });
                self.record_end(c.id, c.op, Some(c.processor), None);
                let mut cancelled = Vec::new();
                let cause = self.graph.fail(c.id, &message, &mut cancelled);
                self.progress
                    .failed
                    .fetch_add(1 + cancelled.len() as u64, Ordering::Relaxed);
                self.answer(c.id, Err(cause.clone()));
                for (id, pending) in cancelled {
                    if let Some(p) = pending {
                        self.events.push(TaskEvent::Failed {
                            op: p.op.name(),
                            processor: None,
                        });
                        self.record_end(id, p.op.name(), None, None);
                        // It will never run: its tiles' eviction order
                        // forgets it.
                        for (t, _) in &p.args {
                            t.end_use(id.0);
                        }
                    }
                    self.answer(id, Err(cause.clone()));
                }
            }
        }
    }

    fn answer(&mut self, id: TaskId, result: Result<(), Failure>) {
        if self.waiters.is_empty() {
            return;
        }
        if let Some(list) = self.waiters.remove(&id) {
            for w in list {
                let _ = w.send(result.clone());
            }
        }
    }

    /// Places ready tasks, highest priority first, while processors have
    /// room. A task that should wait for a busy processor stays queued and
    /// the tasks behind it get their turn, up to [`LOOKAHEAD`] of them.
    fn dispatch(&mut self) {
        self.update_order();
        if self.policy.wants_windows() && self.ready_len > 1 {
            // A window first; what it left waiting goes one by one below.
            self.place_window();
        }
        if self.ready_len > 0 {
            let clock = Instant::now();
            let before = self.ready_len;
            self.dispatch_each();
            // Rounds that placed nothing (every processor full) say nothing
            // about decision latency.
            if self.ready_len < before {
                self.events.push(TaskEvent::Dispatch {
                    seconds: clock.elapsed().as_secs_f64(),
                });
            }
        }
        self.record_decisions();
    }

    fn dispatch_each(&mut self) {
        let mut waiting = 0usize;
        // Keys one at a time, highest first: while memory-bound each ready
        // task is a key of its own, and a round visits only the first few.
        let mut below: Option<i64> = None;
        'classes: loop {
            let next = match below {
                None => self.ready.keys().next_back(),
                Some(b) => self.ready.range(..b).next_back().map(|(k, _)| k),
            };
            let Some(&prio) = next else {
                break;
            };
            below = Some(prio);
            let mut idx = 0;
            loop {
                if self.slots.iter().all(|s| !s.load().has_room) {
                    break 'classes;
                }
                let Some(&id) = self.ready.get(&prio).and_then(|q| q.get(idx)) else {
                    break;
                };
                match self.place(id) {
                    Placement::Gone | Placement::Sent => {
                        if let Some(q) = self.ready.get_mut(&prio) {
                            q.remove(idx);
                        }
                        self.ready_len -= 1;
                    }
                    Placement::Wait => {
                        idx += 1;
                        waiting += 1;
                        if waiting >= LOOKAHEAD {
                            break 'classes;
                        }
                    }
                }
            }
            if self.ready.get(&prio).is_some_and(VecDeque::is_empty) {
                self.ready.remove(&prio);
            }
        }
    }

    /// Asks the policy where ready task `id` goes and sends it there.
    fn place(&mut self, id: TaskId) -> Placement {
        let Some(p) = self.graph.payload(id) else {
            // Cancelled while it waited.
            return Placement::Gone;
        };
        let spaces = p.read_spaces();
        let inputs = p.inputs(&spaces);
        let request = PlacementRequest {
            op: p.op.name(),
            dtype: p.dtype,
            flops: p.flops,
            inputs: &inputs,
            input_ids: &[],
            model: Some(&self.model),
            tail: 0.0,
            output_bytes: p.output_bytes(),
            ahead: &[],
            // One node: no data node, so no owner to name.
            updates: &[],
        };
        // A user kernel can only go where it was compiled; any other task
        // considers every processor (and allocates no index map).
        let eligible: Option<Vec<usize>> = match &p.op {
            Op::Kernel(call) => Some(
                (0..self.slots.len())
                    .filter(|i| {
                        self.slots[*i]
                            .device
                            .as_ref()
                            .is_some_and(|d| self.kernels.get(call.kernel, d.space).is_some())
                    })
                    .collect(),
            ),
            _ => None,
        };
        let mut loads: Vec<ProcessorLoad<'_>> = match &eligible {
            Some(idx) => idx.iter().map(|i| self.slots[*i].load()).collect(),
            None => self.slots.iter().map(ProcessorSlot::load).collect(),
        };
        // Policies pass over a device whose budget cannot hold the task's
        // tiles. Where no processor can, it goes where it would have gone
        // regardless, and fails there with the device's clear error rather
        // than waiting in the ready list forever (checked only when the
        // policy found no place: off the path of every placement).
        let mut pick = self.policy.place(&request, &loads);
        if pick.is_none() && !loads.iter().any(|l| can_run(&request, l)) {
            for l in &mut loads {
                l.memory_bytes = None;
            }
            pick = self.policy.place(&request, &loads);
        }
        let Some(pick) = pick else {
            return Placement::Wait;
        };
        let choice = eligible.as_ref().map_or(pick, |idx| idx[pick]);
        let (est_seconds, sample) = estimate(&request, &loads[pick]);
        drop(loads);
        self.send(id, choice, est_seconds, sample)
    }

    /// Places a window of ready tasks together (for policies that want
    /// windows): up to [`WINDOW`] of the highest priority, user kernels
    /// excepted (they go one by one, to the devices that compiled them).
    fn place_window(&mut self) {
        // Only tasks that can go now are worth planning: about two per
        // processor with room.
        let room = self.slots.iter().filter(|s| s.load().has_room).count();
        let window = WINDOW.min(2 * room);
        let mut ids: Vec<(i64, TaskId)> = Vec::new();
        'collect: for (prio, queue) in self.ready.iter().rev() {
            for id in queue {
                if ids.len() == window {
                    break 'collect;
                }
                if self
                    .graph
                    .payload(*id)
                    .is_some_and(|p| !matches!(p.op, Op::Kernel(_)))
                {
                    ids.push((*prio, *id));
                }
            }
        }
        if ids.len() < 2 {
            return;
        }
        let picks: Vec<WindowPick> = {
            let payloads: Vec<&Pending> = ids
                .iter()
                .filter_map(|(_, id)| self.graph.payload(*id))
                .collect();
            let spaces: Vec<Vec<Vec<MemorySpaceId>>> =
                payloads.iter().map(|p| p.read_spaces()).collect();
            let inputs: Vec<Vec<(u64, &[MemorySpaceId])>> = payloads
                .iter()
                .zip(&spaces)
                .map(|(p, sp)| p.inputs(sp))
                .collect();
            let tile_ids: Vec<Vec<u64>> = payloads
                .iter()
                .map(|p| p.reads().map(|t| t.id().0).collect())
                .collect();
            let requests: Vec<PlacementRequest<'_>> = payloads
                .iter()
                .zip(&inputs)
                .zip(&tile_ids)
                .map(|((p, inp), ids)| PlacementRequest {
                    op: p.op.name(),
                    dtype: p.dtype,
                    flops: p.flops,
                    inputs: inp,
                    input_ids: ids,
                    model: Some(&self.model),
                    tail: 0.0,
                    output_bytes: p.output_bytes(),
                    ahead: &[],
                    updates: &[],
                })
                .collect();
            let loads: Vec<ProcessorLoad<'_>> =
                self.slots.iter().map(ProcessorSlot::load).collect();
            // Load picks the mode: deciding may cost a tenth of the time
            // the window's tasks take to run side by side.
            let budget = WINDOW_BUDGET_SHARE * self.mean_task_seconds * requests.len() as f64
                / self.slots.len().max(1) as f64;
            self.policy
                .set_window_budget(Duration::from_secs_f64(budget.clamp(0.0, 1.0)));
            self.policy.set_backlog(self.ready_len);
            // No plan better than the list rule's: `dispatch_each` places
            // them one by one.
            let Some(plan) = self.policy.place_batch(&requests, &loads) else {
                return;
            };
            ids.iter()
                .zip(&requests)
                .zip(plan)
                .filter_map(|(((prio, id), r), pick)| {
                    let p = pick?;
                    let (est, sample) = estimate(r, &loads[p]);
                    Some((*prio, *id, p, est, sample))
                })
                .collect()
        };
        for (prio, id, p, est, sample) in picks {
            // The plan fills queues past their room only up to it: the
            // rest waits for the next window.
            if !self.slots[p].load().has_room {
                continue;
            }
            if let Some(q) = self.ready.get_mut(&prio) {
                if let Some(i) = q.iter().position(|t| *t == id) {
                    q.remove(i);
                    self.ready_len -= 1;
                }
                if q.is_empty() {
                    self.ready.remove(&prio);
                }
            }
            self.send(id, p, est, sample);
        }
    }

    /// Sends task `id` to processor `choice`.
    fn send(
        &mut self,
        id: TaskId,
        choice: usize,
        est_seconds: f64,
        sample: Option<(DType, f64)>,
    ) -> Placement {
        let Some(task) = self.graph.take_payload(id) else {
            return Placement::Gone;
        };
        // A device runs its queue by priority. While memory-bound, in the
        // order sent (one key for all): the scheduler sends in submission
        // order already, and the tiles were prefetched in that order; by
        // submission id in the mailbox too, the fake device with room
        // for 32 of 136 tiles copied about 1% more (BENCHMARKS.md,
        // session 11).
        let key = if self.memory_bound {
            i64::MIN
        } else {
            i64::from(task.priority)
        };
        if self.stamps.is_some() {
            let now = self.now_us();
            if let Some(row) = self.stamps.as_mut().and_then(|s| s.get_mut(&id)) {
                row.scheduled_us = Some(now);
                for (t, a) in &task.args {
                    let bytes = t.meta().bytes();
                    if a.reads() {
                        row.bytes_read += bytes;
                    }
                    if a.writes() {
                        row.bytes_written += bytes;
                    }
                }
            }
        }
        let slot = &mut self.slots[choice];
        let sent = slot.mailbox.send(
            key,
            Dispatch {
                id,
                op: task.op,
                args: task.args,
                body: task.body,
                est_seconds,
                sample,
            },
        );
        if sent.is_ok() {
            slot.queued_tasks += 1;
            slot.queued_seconds += est_seconds;
        }
        Placement::Sent
    }

    /// Moves the policy's window decisions into the metrics events.
    fn record_decisions(&mut self) {
        for d in self.policy.take_decisions() {
            self.events.push(TaskEvent::Decision(d));
        }
    }

    fn answer_idle_waiters(&mut self) {
        if self.graph.live() == 0 {
            for w in self.idle_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    /// Sends the metrics actor what happened since the last batch. Batches
    /// go out by size or on a timer, never per drain: on a chain of tiny
    /// tasks a message per drain would wake the metrics thread for every
    /// task.
    fn flush_metrics(&mut self) {
        self.flush_pending = false;
        if self.events.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.events);
        for mem in self.slots.iter().filter_map(|s| s.device.as_ref()) {
            self.metrics.do_send(MemorySample {
                space: mem.name.clone(),
                in_use: mem.used(),
                budget: mem.budget,
                evictions: mem.evictions.load(Ordering::Relaxed),
            });
        }
        self.metrics.do_send(EventBatch {
            events,
            ready: self.ready_len,
            queued: self.slots.iter().map(|s| s.queued_tasks).collect(),
        });
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;
}

impl Scheduler {
    fn drain_once(&mut self, ctx: &mut Context<Self>) {
        let mut applied = 0u32;
        while let Ok(input) = self.inbox.try_recv() {
            self.apply(input);
            applied += 1;
            // Keep processors fed during a long burst of submissions.
            if applied % 1024 == 0 {
                self.dispatch();
            }
        }
        self.dispatch();
        self.answer_idle_waiters();
        if self.events.len() >= METRICS_BATCH || (self.graph.live() == 0 && !self.events.is_empty())
        {
            self.flush_metrics();
        } else if !self.events.is_empty() && !self.flush_pending {
            self.flush_pending = true;
            ctx.run_later(METRICS_PERIOD, |act, _| act.flush_metrics());
        }
    }

    /// Whether to stay hot after a drain: tasks are in flight and recent
    /// ones were short, so a completion is due within microseconds and
    /// waking the arbiter for it would cost more than the task.
    fn worth_polling(&self) -> bool {
        self.short_tasks && self.slots.iter().any(|s| s.queued_tasks > 0)
    }

    /// Polls the inbox for up to [`POLL`] holding the wake flag, so that
    /// posters need not wake the arbiter. Returns whether input arrived.
    fn poll_inbox(&self) -> bool {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            // A Drain is already on its way: it will run us again.
            return false;
        }
        let deadline = Instant::now() + POLL;
        let mut spins = 0u32;
        loop {
            if !self.inbox.is_empty() {
                return true;
            }
            spins += 1;
            if spins % 64 == 0 {
                if Instant::now() > deadline {
                    self.scheduled.store(false, Ordering::Release);
                    // Anything posted before the store above sent no Drain.
                    return !self.inbox.is_empty();
                }
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// Events sent to the metrics actor in one batch at most...
const METRICS_BATCH: usize = 4096;
/// ... and at least this often while events are pending.
const METRICS_PERIOD: Duration = Duration::from_millis(10);

/// How long the scheduler polls for completions of short tasks.
const POLL: Duration = Duration::from_micros(30);
/// Tasks shorter than this on average keep the scheduler polling.
const SHORT_TASK_SECONDS: f64 = 50e-6;

impl Handler<Drain> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) {
        loop {
            // Clear the flag first: anything posted from now on sends a new Drain.
            self.scheduled.store(false, Ordering::Release);
            self.drain_once(ctx);
            if !(self.worth_polling() && self.poll_inbox()) {
                return;
            }
        }
    }
}
