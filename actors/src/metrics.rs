//! The metrics actor: the one place where events become Prometheus series.
//!
//! Other actors never touch the registry: the scheduler sends batches of
//! `TaskEvent`s and queue samples, memory tiers send `MemorySample`s.
//! The actor runs on its own arbiter thread so that turning a million
//! events into series never delays scheduling.
//!
//! | series | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `tessera_tasks_submitted_total` | counter | `op` | tasks accepted by the scheduler |
//! | `tessera_tasks_completed_total` | counter | `op`, `processor` | tasks that ran to success |
//! | `tessera_tasks_failed_total` | counter | `op`, `processor` | tasks that failed (`processor="none"`: cancelled before running) |
//! | `tessera_task_duration_seconds` | histogram | `op`, `processor` | kernel or closure run time |
//! | `tessera_ready_tasks` | gauge | | ready tasks waiting for a processor |
//! | `tessera_processor_queued_tasks` | gauge | `processor` | tasks placed on a processor and not finished |
//! | `tessera_memory_used_bytes` | gauge | `space` | bytes of tile data held in a memory space |
//! | `tessera_memory_budget_bytes` | gauge | `space` | that space's budget |

use crate::record::{Recorder, Row, TaskRow};
use crate::trace::TraceBuffer;
use crate::transfers::TransferLog;
use actix::{Actor, Context, Handler, Message};
use prometheus::{
    Counter, CounterVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tessera_core::policy::Decision;
use tessera_core::OpName;

/// One thing that happened to a task.
#[derive(Debug, Clone)]
pub(crate) enum TaskEvent {
    Submitted {
        op: OpName,
    },
    Completed {
        op: OpName,
        processor: usize,
        seconds: f64,
        /// For traces: the task and when it started, µs since the runtime did.
        task: u64,
        start_us: f64,
        /// The processor's stream it ran on (0 on a CPU).
        stream: u32,
    },
    /// `processor` is `None` for a task cancelled before it ran.
    Failed {
        op: OpName,
        processor: Option<usize>,
    },
    /// A window placed by a window policy.
    Decision(Decision),
    /// A task's whole life, for the run file (only while recording).
    Recorded(TaskRow),
    /// A placement round that placed tasks one by one took `seconds`.
    Dispatch {
        seconds: f64,
    },
    /// The data unfinished tasks use now exceeds the devices' memory or
    /// the host budget of a spilling run (`true`: ready tasks go in
    /// submission order), or no longer does.
    MemoryBound(bool),
}

/// Events since the last batch, and the queues as they stand now.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct EventBatch {
    pub events: Vec<TaskEvent>,
    pub ready: usize,
    pub queued: Vec<usize>,
}

/// Use of one memory space.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct MemorySample {
    pub space: String,
    pub in_use: u64,
    pub budget: u64,
    /// Evictions from the space so far (cumulative).
    pub evictions: u64,
}

struct Series {
    submitted: IntCounterVec,
    completed: IntCounterVec,
    failed: IntCounterVec,
    duration: HistogramVec,
    ready: IntGauge,
    queued: IntGaugeVec,
    memory_used: IntGaugeVec,
    memory_budget: IntGaugeVec,
    decisions: IntCounterVec,
    evictions: IntCounterVec,
    dispatch_seconds: Histogram,
    busy: CounterVec,
    stream_busy: CounterVec,
    transfers: IntCounterVec,
    transfer_bytes: IntCounterVec,
    decision_tasks: IntCounterVec,
    decision_seconds: HistogramVec,
    fallbacks: IntCounterVec,
    memory_bound: IntGauge,
}

/// Per-(op, processor) handles, so a hot event costs no label hashing in
/// the registry.
struct Cached {
    completed: IntCounter,
    duration: Histogram,
    busy: Counter,
}

/// Processor `index`'s name, for labels.
fn processor_name(names: &[String], index: usize) -> &str {
    names.get(index).map_or("unknown", String::as_str)
}

pub(crate) struct Metrics {
    series: Series,
    processor_names: Vec<String>,
    cached: HashMap<(OpName, usize), Cached>,
    /// Per-(processor, stream) busy counters, for the same reason.
    stream_busy: HashMap<(usize, u32), Counter>,
    trace: Option<TraceBuffer>,
    record: Option<Recording>,
    /// The runtime's copies, drained with each batch.
    transfers: Option<Arc<TransferLog>>,
    /// Evictions per space counted so far (samples carry running totals).
    evictions_seen: HashMap<String, u64>,
}

/// The run file being written, with what feeds it besides events.
struct Recording {
    recorder: Recorder,
    epoch: Instant,
    rows: Vec<Row>,
}

impl Metrics {
    /// Registers every series in `registry`.
    pub fn new(registry: &Registry, processor_names: Vec<String>) -> prometheus::Result<Metrics> {
        let op_proc = &["op", "processor"];
        let series = Series {
            submitted: IntCounterVec::new(
                Opts::new(
                    "tessera_tasks_submitted_total",
                    "Tasks accepted by the scheduler.",
                ),
                &["op"],
            )?,
            completed: IntCounterVec::new(
                Opts::new(
                    "tessera_tasks_completed_total",
                    "Tasks that ran to success.",
                ),
                op_proc,
            )?,
            failed: IntCounterVec::new(
                Opts::new(
                    "tessera_tasks_failed_total",
                    "Tasks that failed; processor=\"none\" for tasks cancelled before running.",
                ),
                op_proc,
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "tessera_task_duration_seconds",
                    "Kernel or closure run time.",
                )
                .buckets(prometheus::exponential_buckets(1e-6, 4.0, 13)?),
                op_proc,
            )?,
            ready: IntGauge::new(
                "tessera_ready_tasks",
                "Ready tasks waiting for a processor.",
            )?,
            queued: IntGaugeVec::new(
                Opts::new(
                    "tessera_processor_queued_tasks",
                    "Tasks placed on a processor and not finished.",
                ),
                &["processor"],
            )?,
            memory_used: IntGaugeVec::new(
                Opts::new(
                    "tessera_memory_used_bytes",
                    "Bytes of tile data held in a memory space.",
                ),
                &["space"],
            )?,
            memory_budget: IntGaugeVec::new(
                Opts::new("tessera_memory_budget_bytes", "Budget of a memory space."),
                &["space"],
            )?,
            decisions: IntCounterVec::new(
                Opts::new(
                    "tessera_scheduler_decisions_total",
                    "Windows of ready tasks placed together, by the mode that placed them.",
                ),
                &["mode"],
            )?,
            evictions: IntCounterVec::new(
                Opts::new(
                    "tessera_evictions_total",
                    "Tiles dropped from a memory space to make room (host: to disk; devices: replicas, written back first when they were the last valid copy).",
                ),
                &["space"],
            )?,
            dispatch_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "tessera_scheduler_dispatch_seconds",
                    "Time of one placement round that placed tasks one by one (the list rule), including the policy's decisions.",
                )
                .buckets(prometheus::exponential_buckets(1e-7, 4.0, 12)?),
            )?,
            busy: CounterVec::new(
                Opts::new(
                    "tessera_processor_busy_seconds_total",
                    "Seconds a processor spent running tasks (rate() of it is its utilisation; a device's streams add up, so it can exceed 1).",
                ),
                &["processor"],
            )?,
            stream_busy: CounterVec::new(
                Opts::new(
                    "tessera_stream_busy_seconds_total",
                    "Seconds a processor's stream spent running tasks (rate() of it is the stream's utilisation; CPU workers have one stream, 0).",
                ),
                &["processor", "stream"],
            )?,
            transfers: IntCounterVec::new(
                Opts::new(
                    "tessera_transfers_total",
                    "Copies between memory spaces (host, disk, store, devices).",
                ),
                &["src", "dst"],
            )?,
            transfer_bytes: IntCounterVec::new(
                Opts::new(
                    "tessera_transfer_bytes_total",
                    "Bytes copied between memory spaces.",
                ),
                &["src", "dst"],
            )?,
            decision_tasks: IntCounterVec::new(
                Opts::new(
                    "tessera_scheduler_decision_tasks_total",
                    "Tasks placed by window decisions, by mode.",
                ),
                &["mode"],
            )?,
            decision_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "tessera_scheduler_decision_seconds",
                    "Time to place one window, by mode.",
                )
                .buckets(prometheus::exponential_buckets(1e-6, 4.0, 12)?),
                &["mode"],
            )?,
            fallbacks: IntCounterVec::new(
                Opts::new(
                    "tessera_scheduler_fallbacks_total",
                    "Windows the preferred mode could not place (solver failed or ran out of time), by the mode that stood in.",
                ),
                &["mode"],
            )?,
            memory_bound: IntGauge::new(
                "tessera_scheduler_memory_bound",
                "1 while the tiles unfinished tasks use exceed the devices' memory, or the host budget when tiles spill to disk (by a margin), and ready tasks go in submission order, to reuse tiles before evicting them; 0 while they go by priority.",
            )?,
        };
        registry.register(Box::new(series.memory_bound.clone()))?;
        registry.register(Box::new(series.decisions.clone()))?;
        registry.register(Box::new(series.dispatch_seconds.clone()))?;
        registry.register(Box::new(series.evictions.clone()))?;
        registry.register(Box::new(series.busy.clone()))?;
        registry.register(Box::new(series.stream_busy.clone()))?;
        registry.register(Box::new(series.transfers.clone()))?;
        registry.register(Box::new(series.transfer_bytes.clone()))?;
        registry.register(Box::new(series.decision_tasks.clone()))?;
        registry.register(Box::new(series.decision_seconds.clone()))?;
        registry.register(Box::new(series.fallbacks.clone()))?;
        registry.register(Box::new(series.submitted.clone()))?;
        registry.register(Box::new(series.completed.clone()))?;
        registry.register(Box::new(series.failed.clone()))?;
        registry.register(Box::new(series.duration.clone()))?;
        registry.register(Box::new(series.ready.clone()))?;
        registry.register(Box::new(series.queued.clone()))?;
        registry.register(Box::new(series.memory_used.clone()))?;
        registry.register(Box::new(series.memory_budget.clone()))?;
        for name in &processor_names {
            series.queued.with_label_values(&[name.as_str()]).set(0);
        }
        Ok(Metrics {
            series,
            processor_names,
            cached: HashMap::new(),
            stream_busy: HashMap::new(),
            trace: None,
            record: None,
            transfers: None,
            evictions_seen: HashMap::new(),
        })
    }

    fn processor(&self, index: usize) -> &str {
        processor_name(&self.processor_names, index)
    }

    fn record(&mut self, event: TaskEvent) {
        match event {
            TaskEvent::Submitted { op } => self
                .series
                .submitted
                .with_label_values(&[op.as_str()])
                .inc(),
            TaskEvent::Completed {
                op,
                processor,
                seconds,
                task,
                start_us,
                stream,
            } => {
                if let Some(trace) = &mut self.trace {
                    trace.record(task, op, processor, start_us, seconds * 1e6);
                }
                if !self.cached.contains_key(&(op, processor)) {
                    let labels = [op.as_str(), self.processor(processor)];
                    let handles = Cached {
                        completed: self.series.completed.with_label_values(&labels),
                        duration: self.series.duration.with_label_values(&labels),
                        busy: self.series.busy.with_label_values(&[labels[1]]),
                    };
                    self.cached.insert((op, processor), handles);
                }
                if let Some(c) = self.cached.get(&(op, processor)) {
                    c.completed.inc();
                    c.duration.observe(seconds);
                    c.busy.inc_by(seconds);
                }
                let (series, names) = (&self.series, &self.processor_names);
                self.stream_busy
                    .entry((processor, stream))
                    .or_insert_with(|| {
                        let name = processor_name(names, processor);
                        series
                            .stream_busy
                            .with_label_values(&[name, stream.to_string().as_str()])
                    })
                    .inc_by(seconds);
            }
            TaskEvent::Failed { op, processor } => {
                let proc = processor.map_or("none", |p| self.processor(p)).to_string();
                self.series
                    .failed
                    .with_label_values(&[op.as_str(), proc.as_str()])
                    .inc();
            }
            TaskEvent::Dispatch { seconds } => self.series.dispatch_seconds.observe(seconds),
            TaskEvent::MemoryBound(on) => self.series.memory_bound.set(i64::from(on)),
            TaskEvent::Recorded(row) => {
                if let Some(r) = &mut self.record {
                    r.rows.push(Row::Task(row));
                }
            }
            TaskEvent::Decision(d) => {
                if let Some(r) = &mut self.record {
                    r.rows.push(Row::Decision {
                        t_us: r.epoch.elapsed().as_secs_f64() * 1e6,
                        mode: d.mode.as_str(),
                        tasks: d.tasks,
                        seconds: d.seconds,
                        fell_back: d.fell_back,
                    });
                }
                let mode = [d.mode.as_str()];
                self.series.decisions.with_label_values(&mode).inc();
                self.series
                    .decision_tasks
                    .with_label_values(&mode)
                    .inc_by(d.tasks as u64);
                self.series
                    .decision_seconds
                    .with_label_values(&mode)
                    .observe(d.seconds);
                if d.fell_back {
                    self.series.fallbacks.with_label_values(&mode).inc();
                }
            }
        }
    }
}

/// Answered once every message sent to the metrics actor before it has
/// been handled: shutdown waits for it, so no event is lost.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Settle {
    pub reply: crossbeam_channel::Sender<()>,
}

impl Handler<Settle> for Metrics {
    type Result = ();

    fn handle(&mut self, msg: Settle, _: &mut Context<Self>) {
        let _ = msg.reply.send(());
    }
}

impl Metrics {
    /// Writes the run to `recorder`: the events this actor hears, the
    /// copies in `transfers`, times from `epoch`.
    pub(crate) fn with_recorder(mut self, recorder: Recorder, epoch: Instant) -> Self {
        self.record = Some(Recording {
            recorder,
            epoch,
            rows: Vec::new(),
        });
        self
    }

    /// Counts the copies in `log` (and records them, when recording).
    pub(crate) fn with_transfers(mut self, log: Arc<TransferLog>) -> Self {
        self.transfers = Some(log);
        self
    }

    /// Counts the copies since the last call, and sends the rows gathered
    /// since then to the recorder.
    fn flush_rows(&mut self) {
        let copies = self
            .transfers
            .as_ref()
            .map(|t| t.drain())
            .unwrap_or_default();
        for c in &copies {
            let link = [c.src.as_str(), c.dst.as_str()];
            self.series.transfers.with_label_values(&link).inc();
            self.series
                .transfer_bytes
                .with_label_values(&link)
                .inc_by(c.bytes);
        }
        if let Some(r) = &mut self.record {
            r.rows.extend(copies.into_iter().map(Row::Transfer));
            r.recorder.send(std::mem::take(&mut r.rows));
        }
    }

    /// Records every completed task into a trace file written at shutdown.
    pub fn with_trace(mut self, trace: TraceBuffer) -> Self {
        self.trace = Some(trace);
        self
    }
}

impl Actor for Metrics {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.flush_rows();
        if let Some(r) = &mut self.record {
            r.recorder.finish();
        }
        if let Some(trace) = &self.trace {
            if let Err(e) = trace.write() {
                eprintln!("tessera: {e}");
            }
        }
    }
}

impl Handler<EventBatch> for Metrics {
    type Result = ();

    fn handle(&mut self, batch: EventBatch, _: &mut Context<Self>) {
        // Submissions come in runs of the same op: count runs, not events.
        let mut run: Option<(OpName, u64)> = None;
        for event in batch.events {
            if let TaskEvent::Submitted { op } = event {
                match &mut run {
                    Some((o, n)) if *o == op => *n += 1,
                    _ => {
                        if let Some((o, n)) = run.take() {
                            self.series
                                .submitted
                                .with_label_values(&[o.as_str()])
                                .inc_by(n);
                        }
                        run = Some((op, 1));
                    }
                }
            } else {
                self.record(event);
            }
        }
        if let Some((o, n)) = run {
            self.series
                .submitted
                .with_label_values(&[o.as_str()])
                .inc_by(n);
        }
        self.series
            .ready
            .set(i64::try_from(batch.ready).unwrap_or(i64::MAX));
        if let Some(r) = &mut self.record {
            let t_us = r.epoch.elapsed().as_secs_f64() * 1e6;
            r.rows.push(Row::Queue {
                t_us,
                name: "ready".into(),
                tasks: batch.ready,
            });
            for (i, q) in batch.queued.iter().enumerate() {
                let name = self
                    .processor_names
                    .get(i)
                    .map_or_else(|| format!("processor {i}"), Clone::clone);
                r.rows.push(Row::Queue {
                    t_us,
                    name,
                    tasks: *q,
                });
            }
        }
        for (i, q) in batch.queued.iter().enumerate() {
            let name = self.processor(i).to_string();
            self.series
                .queued
                .with_label_values(&[name.as_str()])
                .set(i64::try_from(*q).unwrap_or(i64::MAX));
        }
        self.flush_rows();
    }
}

impl Handler<MemorySample> for Metrics {
    type Result = ();

    fn handle(&mut self, s: MemorySample, _: &mut Context<Self>) {
        let seen = self.evictions_seen.entry(s.space.clone()).or_insert(0);
        if s.evictions > *seen {
            self.series
                .evictions
                .with_label_values(&[s.space.as_str()])
                .inc_by(s.evictions - *seen);
            *seen = s.evictions;
        }
        if let Some(r) = &mut self.record {
            r.rows.push(Row::Memory {
                t_us: r.epoch.elapsed().as_secs_f64() * 1e6,
                space: s.space.clone(),
                used: s.in_use,
                budget: s.budget,
            });
        }
        // Budget first: a scrape between the two sets must never see a
        // space's usage without its budget.
        self.series
            .memory_budget
            .with_label_values(&[s.space.as_str()])
            .set(i64::try_from(s.budget).unwrap_or(i64::MAX));
        self.series
            .memory_used
            .with_label_values(&[s.space.as_str()])
            .set(i64::try_from(s.in_use).unwrap_or(i64::MAX));
    }
}
