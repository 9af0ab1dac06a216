//! The runtime handle: start Tessera, create tiles, submit tasks, wait.
//!
//! [`Runtime::builder`] starts the actor system on threads of its own, so
//! Tessera never owns `main`: it works from a plain `fn main`, from tests,
//! and from inside a tokio application alike. The handle is `Send + Sync`;
//! submit from any thread. Dropping it finishes the submitted work, stops
//! every actor and joins every thread.
//!
//! From `submit` to the kernel: [`Runtime::submit`] checks the task against
//! the op catalogue and posts it on the scheduler's [`lane`](crate::lane);
//! the `Scheduler` actor adds it to the task graph and, once its inputs are
//! final, places it with the policy on a processor: a CPU core, whose thread
//! ([`cpu_processor`]) runs the faer kernel, or a
//! device, whose threads ([`device_processor`])
//! bring the tiles into device memory and launch the op through the
//! plugin. Either posts the completion back on the lane.
//!
//! ```
//! use tessera::Runtime;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! let rt = Runtime::builder().cpu_workers(2).build()?;
//! let count = Arc::new(AtomicUsize::new(0));
//! for _ in 0..100 {
//!     let c = Arc::clone(&count);
//!     rt.spawn(move || { c.fetch_add(1, Ordering::Relaxed); })?;
//! }
//! rt.wait_all()?;
//! assert_eq!(count.load(Ordering::Relaxed), 100);
//! # Ok::<(), tessera::RuntimeError>(())
//! ```

use crate::cpu_processor;
use crate::cpu_processor::Dispatch;
use crate::device_memory::DeviceMemory;
use crate::device_processor;
use crate::error::{RuntimeError, TaskFailed};
use crate::host_memory::{physical_memory, HostAccount, HostTier};
use crate::kernel::{Kernel, KernelRegistry, KernelSource};
use crate::lane::{Input, Lane, Submission};
use crate::mailbox::{Mailbox, Outbox};
use crate::metrics::Metrics;
use crate::metrics_server::MetricsServer;
use crate::pinned::PinnedPool;
use crate::record::{ProcessorRow, Recorder};
use crate::scheduler::{ProcessorSlot, Progress, Scheduler};
use crate::spill::SpillDir;
use crate::task::{Task, TaskHandle};
use crate::tile::Tile;
use crate::trace::TraceBuffer;
use crate::transfers::TransferLog;
use actix::{Actor, Addr, Arbiter, System};
use crossbeam_channel::{bounded, unbounded};
use prometheus::Registry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use tessera_core::graph::TaskId;
use tessera_core::op::OpName;
use tessera_core::perfmodel::PerfModel;
use tessera_core::processor::{
    MemoryKind, MemorySpaceDesc, MemorySpaceId, ProcessorDesc, ProcessorId, ProcessorKind,
};
use tessera_core::{Access, DType, Op, TileData, TileId, TileMeta, TileShape};
use tessera_plugin::loader::discover;
use tessera_plugin::LoadedPlugin;

/// The host memory space's id.
pub const HOST_MEMORY: MemorySpaceId = MemorySpaceId(0);

/// Configures and starts a [`Runtime`].
#[derive(Debug, Clone, Default)]
pub struct RuntimeBuilder {
    cpu_workers: Option<usize>,
    host_memory: Option<u64>,
    metrics_addr: Option<String>,
    cpu_gflops: Option<(f64, f64)>,
    devices: Option<Vec<String>>,
    plugin_paths: Vec<PathBuf>,
    plugin_options: HashMap<String, String>,
    pinned_memory: Option<u64>,
    spill_dir: Option<PathBuf>,
    spill_store: Option<(Arc<crate::objects::ObjectSource>, String)>,
    device_memory: Option<u64>,
    device_queue_horizon: Option<f64>,
    perf_model: Option<PathBuf>,
    trace: Option<PathBuf>,
    policy: Option<String>,
    record: Option<PathBuf>,
}

/// A loaded plugin as `tessera info` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginSummary {
    pub name: String,
    pub path: PathBuf,
    pub devices: Vec<String>,
}

impl RuntimeBuilder {
    /// Budget of pinned (page-locked) host memory for tiles, when a device
    /// plugin can pin (default: a quarter of the host budget; 0 turns the
    /// pinned tier off).
    pub fn pinned_memory(mut self, bytes: u64) -> Self {
        self.pinned_memory = Some(bytes);
        self
    }

    /// Lets host tiles spill to disk, in a directory of the runtime's own
    /// under `dir` (removed at shutdown), so data larger than the host
    /// budget runs: tasks wait for their tiles to fit instead of failing.
    pub fn spill_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spill_dir = Some(dir.into());
        self
    }

    /// Learns op times into this file: read at start if it exists (a
    /// malformed one is an error), written at shutdown. Without it the
    /// runtime still learns, for its own lifetime.
    pub fn perf_model(mut self, path: impl Into<PathBuf>) -> Self {
        self.perf_model = Some(path.into());
        self
    }

    /// Records the run (every task's timestamps, copies, memory samples and
    /// scheduling decisions) to this SQLite file for `tessera query`,
    /// `tessera trace` and `tessera report` (`tessera::record::RunDb`
    /// reads it). An earlier run file there is replaced; any other file is
    /// left alone. Recording never stops the run: if the file cannot be
    /// written the runtime warns and goes on without it.
    pub fn record(mut self, path: impl Into<PathBuf>) -> Self {
        self.record = Some(path.into());
        self
    }

    /// The scheduling policy by name: `heft` (the default: each ready task
    /// where it would finish first), `eager`, `milp` (windows of ready
    /// tasks as a mixed-integer program, with the metaheuristic as its
    /// fallback) or `metaheuristic`. An unknown name fails `build`.
    pub fn policy(mut self, name: impl Into<String>) -> Self {
        self.policy = Some(name.into());
        self
    }

    /// Writes every completed task, as a span on its processor, to this
    /// Chrome-trace JSON file at shutdown (open it in ui.perfetto.dev).
    pub fn trace(mut self, path: impl Into<PathBuf>) -> Self {
        self.trace = Some(path.into());
        self
    }

    /// Lets host tiles spill to an S3-compatible bucket instead of a local
    /// directory, as objects under `prefix` (one prefix of the run's own,
    /// each object deleted as its tile goes).
    pub fn spill_to_store(
        mut self,
        store: Arc<crate::objects::ObjectSource>,
        prefix: &str,
    ) -> Self {
        self.spill_store = Some((store, prefix.to_string()));
        self
    }

    /// Caps each device's memory budget (default: the device's memory).
    pub fn device_memory(mut self, bytes: u64) -> Self {
        self.device_memory = Some(bytes);
        self
    }

    /// Seconds of estimated work a device may have queued before ready
    /// tasks wait in the scheduler's ready list instead (default 1 ms,
    /// [`tessera_core::policy::QUEUE_HORIZON`]). Deeper queues start
    /// copies earlier and keep the device fed; a device runs its queue in
    /// the ready list's order, so a late urgent task still goes first. The
    /// simulator's H200-shaped node ends a Cholesky (n 32768, tile 2048)
    /// 5% sooner at 5 ms and 9% with no limit; on the H200 itself 5 and
    /// 20 ms gained nothing over 1 ms, with the whole GPU or through 1 – 2
    /// GiB of it (BENCHMARKS.md, session 12).
    pub fn device_queue_horizon(mut self, seconds: f64) -> Self {
        self.device_queue_horizon = Some(seconds);
        self
    }

    /// Number of CPU processors (default: one per core).
    pub fn cpu_workers(mut self, n: usize) -> Self {
        self.cpu_workers = Some(n);
        self
    }

    /// Host memory budget for tile data in bytes (default: three quarters
    /// of physical memory).
    pub fn host_memory(mut self, bytes: u64) -> Self {
        self.host_memory = Some(bytes);
        self
    }

    /// Serve Prometheus metrics on `addr` (for example `127.0.0.1:9464`;
    /// port 0 picks a free one, see [`Runtime::metrics_addr`]).
    pub fn metrics(mut self, addr: &str) -> Self {
        self.metrics_addr = Some(addr.to_string());
        self
    }

    /// Estimated GFLOP/s of one CPU core in f32 and f64, which the policy
    /// uses until performance models have measured better.
    pub fn cpu_gflops(mut self, f32: f64, f64_: f64) -> Self {
        self.cpu_gflops = Some((f32, f64_));
        self
    }

    /// Which kinds of processor to use: `cpu` and plugin names (`wgpu`,
    /// `cuda`, ...). Default: the CPU and every plugin found. Naming a kind
    /// no plugin provides is an error at [`RuntimeBuilder::build`].
    pub fn devices<S: AsRef<str>>(mut self, kinds: &[S]) -> Self {
        self.devices = Some(kinds.iter().map(|k| k.as_ref().to_string()).collect());
        self
    }

    /// Loads the plugin at `path`, besides those found next to the
    /// executable and in `TESSERA_PLUGIN_PATH`.
    pub fn plugin(mut self, path: impl Into<PathBuf>) -> Self {
        self.plugin_paths.push(path.into());
        self
    }

    /// Options passed to the plugin named `name` when it starts.
    pub fn plugin_options(mut self, name: &str, options: &str) -> Self {
        self.plugin_options
            .insert(name.to_string(), options.to_string());
        self
    }

    fn wants(&self, kind: &str) -> bool {
        self.devices
            .as_ref()
            .is_none_or(|d| d.iter().any(|k| k == kind))
    }

    /// Loads the plugins that `devices` asks for; failures are kept as
    /// messages and the plugin is skipped.
    fn load_plugins(&self) -> (Vec<Arc<LoadedPlugin>>, Vec<String>) {
        let mut loaded: Vec<Arc<LoadedPlugin>> = Vec::new();
        let mut skipped = Vec::new();
        for path in discover(&self.plugin_paths) {
            let explicit = self.plugin_paths.contains(&path);
            let kind = plugin_kind_from_file(&path);
            if !explicit && !kind.as_deref().is_some_and(|k| self.wants(k)) {
                continue;
            }
            let options_for =
                |name: &str| self.plugin_options.get(name).cloned().unwrap_or_default();
            match LoadedPlugin::load_with(&path, options_for) {
                Ok(p) if self.wants(p.name()) && !loaded.iter().any(|l| l.name() == p.name()) => {
                    loaded.push(Arc::new(p));
                }
                Ok(_) => {}
                Err(e) => skipped.push(e.to_string()),
            }
        }
        (loaded, skipped)
    }

    /// Starts the actors and processor threads.
    pub fn build(self) -> Result<Runtime, RuntimeError> {
        let workers = match self.cpu_workers {
            _ if !self.wants("cpu") => 0,
            Some(0) => {
                return Err(RuntimeError::Start(
                    "at least one CPU worker is needed".into(),
                ))
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let (plugins, skipped) = self.load_plugins();
        if let Some(kinds) = &self.devices {
            for k in kinds {
                if k != "cpu" && !plugins.iter().any(|p| p.name() == k) {
                    let why = if skipped.is_empty() {
                        "no plugin by that name was found next to the executable or in TESSERA_PLUGIN_PATH".to_string()
                    } else {
                        skipped.join("; ")
                    };
                    return Err(RuntimeError::Start(format!(
                        "device kind `{k}` is not available: {why}"
                    )));
                }
            }
        }
        let device_horizon = match self.device_queue_horizon {
            Some(h) if !(h.is_finite() && h > 0.0) => {
                return Err(RuntimeError::Start(format!(
                    "the device queue horizon must be a positive number of seconds (got {h})"
                )))
            }
            Some(h) => h,
            None => crate::scheduler::QUEUE_HORIZON_SECONDS,
        };
        let host_budget = match self.host_memory {
            Some(0) => {
                return Err(RuntimeError::Start(
                    "the host memory budget must be above zero".into(),
                ))
            }
            Some(b) => b,
            None => physical_memory().map_or(u64::MAX, |m| m / 4 * 3),
        };
        let policy = tessera_core::policy::by_name(self.policy.as_deref().unwrap_or("heft"), 10e9)
            .map_err(RuntimeError::Start)?;
        let model = match &self.perf_model {
            Some(p) if p.exists() => PerfModel::load(p).map_err(RuntimeError::Start)?,
            _ => PerfModel::new(),
        };
        let spill = match (&self.spill_dir, &self.spill_store) {
            (Some(dir), _) => Some(SpillDir::create(dir).map_err(RuntimeError::Start)?),
            (None, Some((store, prefix))) => {
                Some(SpillDir::create_in_store(Arc::clone(store), prefix))
            }
            (None, None) => None,
        };
        let registry = Registry::new();
        let server = match &self.metrics_addr {
            Some(addr) => Some(MetricsServer::start(addr, registry.clone())?),
            None => None,
        };
        let (gflops_f32, gflops_f64) = self.cpu_gflops.unwrap_or((60.0, 30.0));
        let mut memory = vec![MemorySpaceDesc {
            id: HOST_MEMORY,
            kind: MemoryKind::Host,
            name: "host".into(),
            capacity: host_budget,
            bandwidth: 10e9,
        }];
        let mut processors: Vec<ProcessorDesc> = (0..workers)
            .map(|i| ProcessorDesc {
                id: ProcessorId(i as u32),
                kind: ProcessorKind::Cpu,
                name: format!("cpu{i}"),
                memory: HOST_MEMORY,
                gflops_f32,
                gflops_f64,
                ops: OpName::ALL.to_vec(),
                dtypes: vec![DType::F32, DType::F64],
            })
            .collect();
        let epoch = std::time::Instant::now();
        let transfers = TransferLog::new(self.record.is_some(), epoch);
        let (device_memories, prefetch_queues): (Vec<Arc<DeviceMemory>>, Vec<_>) =
            describe_devices(
                &plugins,
                &mut processors,
                &mut memory,
                self.device_memory,
                &transfers,
            )
            .into_iter()
            .unzip();
        if workers == 0 {
            // No CPU processor: closures (fetch among them) run on the
            // device processors' host threads instead.
            for p in processors.iter_mut() {
                p.ops.push(OpName::Closure);
            }
        }
        if processors.is_empty() {
            return Err(RuntimeError::Start(
                "no processor: enable `cpu` or a device plugin".into(),
            ));
        }
        let names: Vec<String> = processors.iter().map(|p| p.name.clone()).collect();
        let mut metrics = Metrics::new(&registry, names.clone())
            .map_err(|e| RuntimeError::Start(e.to_string()))?;
        if let Some(path) = &self.trace {
            metrics = metrics.with_trace(TraceBuffer::new(path.clone(), names));
        }
        let recorder = self.record.as_ref().and_then(|path| {
            let rows = processor_rows(&processors, &memory);
            Recorder::create(path, &rows)
                .map_err(|e| eprintln!("tessera: warning: not recording: {e}"))
                .ok()
        });
        let recording = recorder.is_some();
        metrics = metrics.with_transfers(Arc::clone(&transfers));
        if let Some(r) = recorder {
            metrics = metrics.with_recorder(r, epoch);
        }
        if let Some(dir) = &spill {
            dir.set_transfers(Arc::clone(&transfers));
        }

        let (inbox_tx, inbox_rx) = unbounded();
        let mut slots = Vec::new();
        let mut mailboxes = Vec::new();
        for p in &processors {
            // A measured link (`tessera calibrate`) over the plugin's figure.
            let bandwidth = memory.iter().find(|m| m.id == p.memory).map_or(10e9, |m| {
                model.link("host", &m.name).map_or(m.bandwidth, |l| l.0)
            });
            let device =
                p.id.0
                    .checked_sub(workers as u32)
                    .map(|d| Arc::clone(&device_memories[d as usize]));
            // CPU processors take a channel; a device's streams, a mailbox
            // in the ready list's order (`mailbox.rs` says why).
            let (outbox, inbox, horizon) = match &device {
                None => {
                    let (tx, rx) = unbounded();
                    let cpu = crate::scheduler::QUEUE_HORIZON_SECONDS;
                    (Outbox::Fifo(tx), Inbox::Fifo(rx), cpu)
                }
                Some(mem) => {
                    let m = Arc::new(Mailbox::new());
                    let inbox = Inbox::Sorted(Arc::clone(&m), Arc::clone(mem));
                    (Outbox::Sorted(m), inbox, device_horizon)
                }
            };
            slots.push(ProcessorSlot::new(
                p.clone(),
                outbox,
                bandwidth,
                device,
                horizon,
            ));
            mailboxes.push(inbox);
        }
        let scheduled = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Progress::default());
        let kernels = Arc::new(KernelRegistry::default());
        let live = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let started = start_actors(ActorSetup {
            live: Arc::clone(&live),
            // RAM bounds the data only when tiles can spill past it.
            host_capacity: spill.is_some().then_some(host_budget),
            model,
            model_path: self.perf_model.clone(),
            policy,
            epoch,
            recording,
            inbox: inbox_rx,
            scheduled: Arc::clone(&scheduled),
            slots,
            metrics,
            progress: Arc::clone(&progress),
            kernels: Arc::clone(&kernels),
        })?;
        let lane = Arc::new(Lane::new(inbox_tx, scheduled, started.scheduler));
        let host = HostTier::new(host_budget, spill, started.metrics.clone(), live);
        let mut threads = Threads {
            system: started.system,
            actors: Some(started.thread),
            workers: Vec::new(),
            spiller: None,
            metrics: started.metrics.clone(),
            devices: device_memories.clone(),
        };
        match host.start_spiller() {
            Ok(t) => threads.spiller = t.map(|t| (Arc::clone(&host), t)),
            Err(e) => {
                threads.stop(&lane);
                return Err(RuntimeError::Start(format!(
                    "cannot start the spill thread: {e}"
                )));
            }
        }
        for (mem, queue) in device_memories.iter().zip(prefetch_queues) {
            match device_processor::spawn_prefetchers(mem, queue) {
                Ok(t) => threads.workers.extend(t),
                Err(e) => {
                    threads.stop(&lane);
                    return Err(RuntimeError::Start(format!(
                        "cannot start prefetching for {}: {e}",
                        mem.name
                    )));
                }
            }
        }
        for (i, inbox) in mailboxes.into_iter().enumerate() {
            let spawned = match inbox {
                Inbox::Fifo(mailbox) => {
                    cpu_processor::spawn(i, mailbox, Arc::clone(&lane)).map(|t| vec![t])
                }
                Inbox::Sorted(mailbox, mem) => {
                    let streams = mem.compute_streams();
                    device_processor::spawn(
                        i,
                        mem,
                        mailbox,
                        Arc::clone(&lane),
                        streams,
                        Arc::clone(&kernels),
                    )
                }
            };
            match spawned {
                Ok(t) => threads.workers.extend(t),
                Err(e) => {
                    threads.stop(&lane);
                    return Err(RuntimeError::Start(format!(
                        "cannot start processor {}: {e}",
                        processors[i].name
                    )));
                }
            }
        }
        let plugin_summaries = plugins
            .iter()
            .map(|p| PluginSummary {
                name: p.name().to_string(),
                path: p.path().to_path_buf(),
                devices: p.devices().iter().map(|d| d.name.clone()).collect(),
            })
            .collect();
        // The pinned tier goes through the first device with copy engines
        // of its own: those are the copies pinning speeds up.
        let pinned_budget = self.pinned_memory.unwrap_or(host_budget / 4);
        let pinned = device_memories
            .iter()
            .find(|m| !m.prefetch_streams().is_empty())
            .filter(|_| pinned_budget > 0)
            .map(|m| PinnedPool::new(Arc::clone(&m.plugin), pinned_budget));
        Ok(Runtime {
            lane,
            submit: Mutex::new(SubmitState {
                next: 0,
                closed: false,
            }),
            host,
            next_tile: AtomicU64::new(0),
            processors,
            memory,
            progress,
            registry,
            metrics_addr: server.as_ref().map(MetricsServer::addr),
            threads: Mutex::new(Some(threads)),
            server: Mutex::new(server),
            plugins: plugin_summaries,
            skipped_plugins: skipped,
            devices: device_memories,
            kernels,
            next_kernel: AtomicU64::new(1),
            pinned,
        })
    }
}

/// `libtessera_device_wgpu.so` → `wgpu`.
fn plugin_kind_from_file(path: &std::path::Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = name
        .strip_prefix(std::env::consts::DLL_PREFIX)?
        .strip_suffix(std::env::consts::DLL_SUFFIX)?;
    Some(stem.strip_prefix("tessera_device_")?.to_string())
}

/// Adds a processor and a memory space for every device of every plugin.
/// A device runs the catalogue ops it supports for at least one element
/// type, on the element types it supports for all of them.
/// The processors as the run file describes them.
fn processor_rows(processors: &[ProcessorDesc], memory: &[MemorySpaceDesc]) -> Vec<ProcessorRow> {
    processors
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let space = memory.iter().find(|m| m.id == p.memory);
            ProcessorRow {
                id: i,
                name: p.name.clone(),
                kind: p.kind.as_str().to_string(),
                space: space.map_or_else(|| "host".to_string(), |m| m.name.clone()),
                gflops_f32: p.gflops_f32,
                gflops_f64: p.gflops_f64,
                bandwidth: space.map_or(0.0, |m| m.bandwidth),
            }
        })
        .collect()
}

fn describe_devices(
    plugins: &[Arc<LoadedPlugin>],
    processors: &mut Vec<ProcessorDesc>,
    memory: &mut Vec<MemorySpaceDesc>,
    cap: Option<u64>,
    transfers: &Arc<TransferLog>,
) -> Vec<(Arc<DeviceMemory>, crossbeam_channel::Receiver<Tile>)> {
    let mut mems = Vec::new();
    for plugin in plugins {
        for (d, dev) in plugin.devices().iter().enumerate() {
            let d = d as u32;
            let budget = cap.map_or(dev.memory_bytes, |c| c.min(dev.memory_bytes));
            let supports = |op: OpName, dt: DType| {
                device_processor::op_code_of(op)
                    .is_some_and(|c| plugin.supports(d, c, device_processor::dtype_code_of(dt)))
            };
            let all = [DType::F32, DType::F64];
            let ops: Vec<OpName> = OpName::ALL
                .iter()
                .copied()
                .filter(|o| all.iter().any(|t| supports(*o, *t)))
                .collect();
            let mut ops = ops;
            let dtypes: Vec<DType> = all
                .iter()
                .copied()
                .filter(|t| !ops.is_empty() && ops.iter().all(|o| supports(*o, *t)))
                .collect();
            // Any device may run user kernels it compiled; the scheduler
            // checks which did.
            ops.push(OpName::Kernel);
            let space = MemorySpaceId(memory.len() as u32);
            let name = format!("{}{}", plugin.name(), d);
            memory.push(MemorySpaceDesc {
                id: space,
                kind: MemoryKind::Device,
                name: name.clone(),
                capacity: budget,
                bandwidth: dev.h2d_bandwidth,
            });
            processors.push(ProcessorDesc {
                id: ProcessorId(processors.len() as u32),
                kind: match dev.kind {
                    1 => ProcessorKind::Cuda,
                    2 => ProcessorKind::Wgpu,
                    _ => ProcessorKind::Other,
                },
                name: name.clone(),
                memory: space,
                gflops_f32: dev.gflops_f32,
                gflops_f64: dev.gflops_f64,
                ops,
                dtypes,
            });
            let (mem, queue) = DeviceMemory::new(
                Arc::clone(plugin),
                d,
                space,
                name,
                budget,
                Arc::clone(transfers),
            );
            mems.push((Arc::new(mem), queue));
        }
    }
    mems
}

struct ActorSetup {
    model: PerfModel,
    model_path: Option<PathBuf>,
    policy: Box<dyn tessera_core::policy::Policy>,
    epoch: std::time::Instant,
    recording: bool,
    inbox: crossbeam_channel::Receiver<Input>,
    scheduled: Arc<AtomicBool>,
    slots: Vec<ProcessorSlot>,
    metrics: Metrics,
    progress: Arc<Progress>,
    kernels: Arc<KernelRegistry>,
    live: Arc<std::sync::atomic::AtomicU64>,
    host_capacity: Option<u64>,
}

struct Started {
    system: System,
    scheduler: Addr<Scheduler>,
    metrics: Addr<Metrics>,
    thread: JoinHandle<()>,
}

/// Runs the actix system on a thread of its own: the scheduler on the
/// system arbiter, metrics and host memory on a second arbiter so that
/// bookkeeping never delays placement.
fn start_actors(setup: ActorSetup) -> Result<Started, RuntimeError> {
    let (ready_tx, ready_rx) = bounded(1);
    let thread = std::thread::Builder::new()
        .name("tessera-actors".into())
        .spawn(move || {
            let runner = System::new();
            let side = Arbiter::new();
            let side_handle = side.handle();
            let started = runner.block_on(async move {
                let ActorSetup {
                    model,
                    model_path,
                    policy,
                    epoch,
                    recording,
                    inbox,
                    scheduled,
                    slots,
                    metrics,
                    progress,
                    kernels,
                    live,
                    host_capacity,
                } = setup;
                let metrics = Metrics::start_in_arbiter(&side_handle, move |_| metrics);
                let for_tier = metrics.clone();
                let scheduler =
                    Scheduler::new(inbox, scheduled, slots, policy, metrics, progress, kernels)
                        .with_model(model, model_path)
                        .with_clock(epoch, recording)
                        .with_live_bytes(live, host_capacity)
                        .start();
                (System::current(), scheduler, for_tier)
            });
            if ready_tx.send(started).is_ok() {
                let _ = runner.run();
            }
            side.stop();
            let _ = side.join();
        })
        .map_err(|e| RuntimeError::Start(format!("cannot start the actor thread: {e}")))?;
    let (system, scheduler, metrics) = ready_rx
        .recv()
        .map_err(|_| RuntimeError::Start("the actor system stopped during start-up".into()))?;
    Ok(Started {
        system,
        scheduler,
        metrics,
        thread,
    })
}

struct Threads {
    system: System,
    actors: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    /// The host tier's background spiller, stopped before it is joined.
    spiller: Option<(Arc<HostTier>, JoinHandle<()>)>,
    /// Settled before the system stops, so the last events are counted.
    metrics: actix::Addr<Metrics>,
    /// Their prefetch queues must be closed for their threads to end.
    devices: Vec<Arc<DeviceMemory>>,
}

impl Threads {
    /// Closes the processor mailboxes, joins the processors, stops the
    /// actor system and joins it.
    fn stop(&mut self, lane: &Lane) {
        let (tx, rx) = bounded(1);
        if lane.post(Input::Shutdown { reply: tx }).is_ok() {
            let _ = rx.recv();
        }
        for d in &self.devices {
            d.close_prefetch();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some((tier, t)) = self.spiller.take() {
            tier.stop_spiller();
            let _ = t.join();
        }
        let (tx, rx) = bounded(1);
        self.metrics.do_send(crate::metrics::Settle { reply: tx });
        let _ = rx.recv_timeout(std::time::Duration::from_secs(10));
        self.system.stop();
        if let Some(t) = self.actors.take() {
            let _ = t.join();
        }
    }
}

struct SubmitState {
    next: u64,
    closed: bool,
}

/// A running Tessera instance. See the [module docs](self).
pub struct Runtime {
    lane: Arc<Lane>,
    /// Ids are handed out and tasks posted under one lock, so submission
    /// order, id order and the scheduler's order are the same.
    submit: Mutex<SubmitState>,
    host: Arc<HostTier>,
    next_tile: AtomicU64,
    processors: Vec<ProcessorDesc>,
    memory: Vec<MemorySpaceDesc>,
    progress: Arc<Progress>,
    registry: Registry,
    metrics_addr: Option<SocketAddr>,
    threads: Mutex<Option<Threads>>,
    server: Mutex<Option<MetricsServer>>,
    plugins: Vec<PluginSummary>,
    skipped_plugins: Vec<String>,
    devices: Vec<Arc<DeviceMemory>>,
    kernels: Arc<KernelRegistry>,
    next_kernel: AtomicU64,
    pinned: Option<Arc<PinnedPool>>,
}

/// See [`Runtime::host_usage`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostUsage {
    pub budget: u64,
    pub in_ram: u64,
    pub peak: u64,
    pub spilled: u64,
    pub loaded: u64,
    pub on_disk: u64,
    /// The runtime's own spill directory, removed at shutdown.
    pub spill_path: Option<PathBuf>,
}

/// Counts of tasks so far, for progress lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressSnapshot {
    pub submitted: u64,
    pub completed: u64,
    pub failed: u64,
}

/// A processor's end of its [`Outbox`]; a device's, with the device's
/// memory its streams drive.
enum Inbox {
    Fifo(crossbeam_channel::Receiver<Dispatch>),
    Sorted(Arc<Mailbox>, Arc<DeviceMemory>),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing holding these locks can panic midway; recover regardless.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Runtime {
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// The processors tasks can run on.
    pub fn processors(&self) -> &[ProcessorDesc] {
        &self.processors
    }

    /// The device memories, for calibration.
    pub(crate) fn device_memories(&self) -> &[Arc<DeviceMemory>] {
        &self.devices
    }

    /// Bytes of host tiles pinned for fast device copies now (see
    /// [`RuntimeBuilder::pinned_memory`]).
    pub fn pinned_bytes(&self) -> u64 {
        self.pinned.as_ref().map_or(0, |p| p.used())
    }

    /// The host tier's state: tile bytes in RAM now and at most so far
    /// (after each admission and task start), bytes written to and read
    /// from disk, and bytes in spill files now.
    pub fn host_usage(&self) -> HostUsage {
        let (in_ram, peak) = self.host.used_and_peak();
        let dir = self.host.spill_dir();
        let load = |f: fn(&SpillDir) -> &AtomicU64| dir.map_or(0, |d| f(d).load(Ordering::Relaxed));
        HostUsage {
            budget: self.host.budget(),
            in_ram,
            peak,
            spilled: load(|d| &d.written),
            loaded: load(|d| &d.read),
            on_disk: load(|d| &d.on_disk),
            spill_path: dir.map(|d| d.path().to_path_buf()),
        }
    }

    /// Whether host tiles beyond the budget spill (to disk or a bucket)
    /// rather than being refused.
    pub fn host_spills(&self) -> bool {
        self.host.spills()
    }

    /// The memory spaces tiles can live in.
    pub fn memory_spaces(&self) -> &[MemorySpaceDesc] {
        &self.memory
    }

    /// The plugins in use.
    pub fn plugins(&self) -> &[PluginSummary] {
        &self.plugins
    }

    /// Plugins that were found but not loaded, each with the reason.
    pub fn skipped_plugins(&self) -> &[String] {
        &self.skipped_plugins
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The Prometheus registry behind `/metrics`, to gather in-process.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Tasks submitted, completed and failed so far.
    pub fn progress(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            submitted: lock(&self.submit).next,
            completed: self.progress.completed.load(Ordering::Relaxed),
            failed: self.progress.failed.load(Ordering::Relaxed),
        }
    }

    /// A new tile holding `data`, counted against the host memory budget.
    pub fn tile(&self, data: TileData, shape: TileShape) -> Result<Tile, RuntimeError> {
        self.make_tile(None, data, shape)
    }

    /// Like [`Runtime::tile`], with a label that errors and traces show.
    pub fn tile_named(
        &self,
        label: &str,
        data: TileData,
        shape: TileShape,
    ) -> Result<Tile, RuntimeError> {
        self.make_tile(Some(label), data, shape)
    }

    fn make_tile(
        &self,
        label: Option<&str>,
        data: TileData,
        shape: TileShape,
    ) -> Result<Tile, RuntimeError> {
        data.check_shape(shape)?;
        let id = TileId(self.next_tile.fetch_add(1, Ordering::Relaxed));
        let meta = TileMeta {
            id,
            shape,
            dtype: data.dtype(),
        };
        let account = HostAccount {
            tile: id,
            tier: Arc::clone(&self.host),
            lane: Arc::downgrade(&self.lane),
        };
        let mut data = data;
        let pinned = self.pinned.as_ref().and_then(|p| p.pin(&mut data));
        let tile = Tile::new(meta, label, data, account, pinned);
        self.host.admit(&tile)?;
        Ok(tile)
    }

    /// Submits a task. Shapes, element types and access modes are checked
    /// here; the task then runs once every earlier conflicting task is done.
    pub fn submit(&self, task: Task) -> Result<TaskHandle, RuntimeError> {
        let Task {
            op,
            args,
            body,
            priority,
            after,
        } = task;
        let metas: Vec<(Access, TileMeta)> = args.iter().map(|(t, a)| (*a, t.meta())).collect();
        op.check(&metas)?;
        let name = op.name();
        let dtype = metas.first().map(|(_, m)| m.dtype);
        if !self.processors.iter().any(|p| p.supports(name, dtype)) {
            return Err(RuntimeError::NoProcessor { op: name, dtype });
        }
        check_body(&op, &args, body.is_some())?;
        let spills = self.host.spills();
        if spills {
            // A task must fit in RAM whole: refuse now one that never will.
            let mut seen: Vec<TileId> = Vec::new();
            let mut needed = 0;
            for (t, _) in &args {
                if !seen.contains(&t.id()) {
                    seen.push(t.id());
                    needed += t.meta().bytes();
                }
            }
            if needed > self.host.budget() {
                return Err(RuntimeError::WorkingSet {
                    op: name,
                    needed,
                    budget: self.host.budget(),
                });
            }
        }
        let flops = op.flops(&metas);
        let mut state = lock(&self.submit);
        if state.closed {
            return Err(RuntimeError::ShutDown);
        }
        let id = TaskId(state.next);
        if spills || !self.devices.is_empty() {
            // Eviction order, host and device: next use first.
            for (t, _) in &args {
                t.add_use(id.0);
            }
        }
        self.lane.post(Input::Submit(Submission {
            id,
            op,
            args,
            body,
            priority,
            after,
            flops,
            dtype,
        }))?;
        state.next += 1;
        Ok(TaskHandle { id })
    }

    /// Registers a user kernel and compiles it on every device whose
    /// language `source` covers. See [`crate::kernel`].
    pub fn kernel(&self, source: &KernelSource) -> Result<Kernel, RuntimeError> {
        let id = self.next_kernel.fetch_add(1, Ordering::Relaxed);
        let mut compiled = 0;
        for mem in &self.devices {
            let Some(code) = source.for_plugin(mem.plugin.name()) else {
                continue;
            };
            let handle = mem
                .plugin
                .compile_kernel(mem.device, code, &source.entry)
                .map_err(|e| RuntimeError::KernelCompile {
                    entry: source.entry.clone(),
                    device: mem.name.clone(),
                    message: e.to_string(),
                })?;
            self.kernels.insert(id, mem.space, handle);
            compiled += 1;
        }
        if compiled == 0 {
            return Err(RuntimeError::NoKernelDevice {
                entry: source.entry.clone(),
            });
        }
        Ok(Kernel {
            id,
            entry: source.entry.clone(),
        })
    }

    /// Starts copying `tile` to the fastest device for its element type, in
    /// the background (StarPU's `starpu_data_prefetch_on_node`). Returns the
    /// device's memory space, or `None` when no device takes that type.
    /// Tasks that read the tile on that device wait for the copy, not for
    /// this call; [`Tile::valid_spaces`] shows when the replica exists.
    pub fn prefetch(&self, tile: &Tile) -> Option<MemorySpaceId> {
        let dtype = tile.dtype();
        let best = self
            .processors
            .iter()
            .filter(|p| p.kind != ProcessorKind::Cpu && p.dtypes.contains(&dtype))
            .max_by(|a, b| {
                a.flops_per_second(dtype)
                    .total_cmp(&b.flops_per_second(dtype))
            })?;
        let mem = self.devices.iter().find(|m| m.space == best.memory)?;
        mem.prefetch(tile);
        Some(mem.space)
    }

    /// Runs `f` on a CPU processor, with no tiles.
    pub fn spawn<F>(&self, f: F) -> Result<TaskHandle, RuntimeError>
    where
        F: FnOnce() + Send + 'static,
    {
        self.submit(Task::closure("spawn", move |_| {
            f();
            Ok(())
        }))
    }

    /// Waits for one task; an error says why it did not complete.
    pub fn wait(&self, task: &TaskHandle) -> Result<(), RuntimeError> {
        let (tx, rx) = bounded(1);
        self.lane.post(Input::Wait {
            task: task.id,
            reply: tx,
        })?;
        match rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(cause)) => Err(TaskFailed {
                task: task.id,
                cause,
            }
            .into()),
            Err(_) => Err(RuntimeError::ShutDown),
        }
    }

    /// Waits until every task submitted so far has completed, failed or
    /// been cancelled.
    pub fn wait_all(&self) -> Result<(), RuntimeError> {
        let (tx, rx) = bounded(1);
        self.lane.post(Input::WaitAll { reply: tx })?;
        rx.recv().map_err(|_| RuntimeError::ShutDown)
    }

    /// A copy of a tile's contents once every task submitted before writing
    /// it has run (sequential consistency).
    pub fn fetch(&self, tile: &Tile) -> Result<TileData, RuntimeError> {
        let (tx, rx) = bounded(1);
        let task = Task::closure("fetch", move |ctx| {
            let _ = tx.send(ctx.tile(0).clone());
            Ok(())
        })
        .read(tile);
        let handle = self.submit(task)?;
        self.wait(&handle)?;
        rx.try_recv().map_err(|_| RuntimeError::ShutDown)
    }

    /// Finishes the submitted work, then stops every actor and joins every
    /// thread. Calling it again does nothing; later submissions fail with
    /// [`RuntimeError::ShutDown`].
    pub fn shutdown(&self) -> Result<(), RuntimeError> {
        let Some(mut threads) = lock(&self.threads).take() else {
            return Ok(());
        };
        let drained = self.wait_all();
        lock(&self.submit).closed = true;
        threads.stop(&self.lane);
        drop(lock(&self.server).take());
        // Tiles may outlive the runtime, but no task can read them now:
        // their spill files go with the directory.
        if let Some(dir) = self.host.spill_dir() {
            dir.remove_now();
        }
        drained
    }
}

/// Closures need a body; catalogue ops must not alias their output.
fn check_body(op: &Op, args: &[(Tile, Access)], has_body: bool) -> Result<(), RuntimeError> {
    if op.name() == OpName::Kernel {
        return Ok(());
    }
    if op.name() == OpName::Closure {
        if !has_body {
            return Err(RuntimeError::Start(
                "a closure task needs a body: use Task::closure".into(),
            ));
        }
        return Ok(());
    }
    if let Some(((out, _), inputs)) = args.split_last() {
        if inputs.iter().any(|(t, _)| t.id() == out.id()) {
            return Err(RuntimeError::AliasedOutput {
                op: op.name(),
                tile: out.name(),
            });
        }
    }
    Ok(())
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("tessera: while shutting down: {e}");
        }
    }
}
