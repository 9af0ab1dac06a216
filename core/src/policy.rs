//! Scheduling policies: pure code that places a ready task on a processor.
//!
//! The runtime's scheduler actor and the simulator call the same
//! [`Policy`] implementations, which see only descriptors, load estimates
//! and where each input tile has a valid replica.
//!
//! [`EarliestFinish`] is the default: for each processor that implements the
//! op it estimates when the task would finish there (once the work already
//! queued is done and the inputs not yet in that processor's memory have
//! arrived, the op's cost at the processor's speed: [`finish_seconds`])
//! and picks the earliest. This is the HEFT / StarPU `dmda` rule for one
//! decision.

use crate::arrival::{LinkClock, LinkState};
use crate::dtype::DType;
use crate::op::OpName;
use crate::perfmodel::PerfModel;
use crate::processor::{MemorySpaceId, ProcessorDesc};

/// Seconds of estimated work a processor may have queued and still take
/// another task: the runtime's scheduler and the simulator both keep the
/// rest in a ready list, highest priority first, so a task that becomes
/// ready late but matters most does not wait behind a long queue.
pub const QUEUE_HORIZON: f64 = 1e-3;

/// A ready task as a policy sees it.
#[derive(Debug, Clone)]
pub struct PlacementRequest<'a> {
    pub op: OpName,
    pub dtype: Option<DType>,
    pub flops: f64,
    /// For each input tile: its size in bytes and the spaces holding a valid copy.
    pub inputs: &'a [(u64, &'a [MemorySpaceId])],
    /// The identity of each input (a tile), where the caller knows it:
    /// window policies then charge an input two tasks copy to one space
    /// once. Empty, or as long as `inputs`.
    pub input_ids: &'a [u64],
    /// Learned op times, where there are any (else the processor's peak).
    pub model: Option<&'a PerfModel>,
    /// Bytes the task writes (0 where unknown): what must travel to where
    /// its successors run.
    pub output_bytes: u64,
    /// Where the caller runs each processor's queue in priority order: per
    /// processor, the seconds of work that would run there before this
    /// task. Empty: each load's `queued_seconds` (a first-come queue).
    pub ahead: &'a [f64],
    /// Estimated seconds of the longest chain of work that must follow
    /// this task (its upward rank less its own time; 0 when unknown).
    /// Window policies weigh a task's finish by it.
    pub tail: f64,
    /// Indices into `inputs` of the tiles the task also writes (updates
    /// in place), its own tile last. On a cluster the task's data node is
    /// the node holding that tile: owner computes, as ScaLAPACK and
    /// StarPU-MPI place distributed factorisations. Empty where there is
    /// none (or one node): the node holding most input bytes instead.
    pub updates: &'a [usize],
}

impl<'a> PlacementRequest<'a> {
    /// A task of `op` on `dtype` doing `flops`, reading `inputs`, with
    /// nothing else known (no identities, model, tail, outputs or
    /// priority-ordered queues).
    pub fn new(
        op: OpName,
        dtype: Option<DType>,
        flops: f64,
        inputs: &'a [(u64, &'a [MemorySpaceId])],
    ) -> Self {
        PlacementRequest {
            op,
            dtype,
            flops,
            inputs,
            input_ids: &[],
            model: None,
            tail: 0.0,
            output_bytes: 0,
            ahead: &[],
            updates: &[],
        }
    }
}

/// A processor as a policy sees it at decision time.
#[derive(Debug, Clone)]
pub struct ProcessorLoad<'a> {
    pub desc: &'a ProcessorDesc,
    /// Estimated seconds of work already queued there.
    pub queued_seconds: f64,
    /// Tasks queued or running there.
    pub queued_tasks: usize,
    /// Whether it may take another task now.
    pub has_room: bool,
    /// Bytes/s for copying a missing input into its memory (0: use the
    /// policy's default).
    pub copy_bandwidth: f64,
    /// Bytes its memory space holds (a device's budget), where bounded:
    /// window policies keep the new data one window sends to a space
    /// within it. `None`: unbounded (host memory, which spills).
    pub memory_bytes: Option<u64>,
    /// Where the caller knows them: the links between memory spaces and
    /// their queues (the same for every processor of a decision), so a
    /// copy is charged from its best source, behind copies already under
    /// way. `None`: each copy into this processor's memory at
    /// `copy_bandwidth`, one after another.
    pub links: Option<&'a LinkState<'a>>,
    /// Seconds of work it takes now before it is full, where the caller
    /// bounds it (a slow processor the simulator lets hold 1 ms): a
    /// window gives it tasks only while the work it gave it is below
    /// this, and sends the rest elsewhere. Infinite: assignments past its
    /// room wait for it, as a single decision's do.
    pub room_seconds: f64,
}

impl ProcessorLoad<'_> {
    /// Bytes/s of copies into its memory: its `copy_bandwidth`, or
    /// `default` where it gives none.
    pub fn copy_rate(&self, default: f64) -> f64 {
        if self.copy_bandwidth > 0.0 {
            self.copy_bandwidth
        } else {
            default
        }
    }
}

/// Which kind of decision placed tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One task at a time by a list rule (earliest finish, or eager).
    List,
    /// A window solved as a mixed-integer program.
    Milp,
    /// A window searched by a metaheuristic.
    Metaheuristic,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::List => "list",
            Mode::Milp => "milp",
            Mode::Metaheuristic => "metaheuristic",
        }
    }
}

/// One placement decision, for metrics and reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub mode: Mode,
    /// Tasks it placed.
    pub tasks: usize,
    /// Time it took.
    pub seconds: f64,
    /// Whether the preferred mode failed (timed out, found nothing, or
    /// found worse) and this one stood in.
    pub fell_back: bool,
}

/// Places ready tasks on processors.
pub trait Policy: Send {
    /// A short name for metrics and reports.
    fn name(&self) -> &'static str;

    /// Index into `procs` of the processor to run `task` now, or `None` if
    /// it should wait (the processor it belongs on is full, or none can run it).
    fn place(&mut self, task: &PlacementRequest<'_>, procs: &[ProcessorLoad<'_>]) -> Option<usize>;

    /// Whether it places tasks that are ready together better as a window
    /// ([`Policy::place_batch`]) than one by one.
    fn wants_windows(&self) -> bool {
        false
    }

    /// Places tasks that are ready together (independent of each other)
    /// as one plan: for each, the processor (`None`: it waits). `None`
    /// instead of a plan says the policy found none better than placing
    /// them one by one: the caller then asks [`Policy::place`] for each in
    /// turn, each seeing the loads the one before it left, which is
    /// exactly the list rule (a window's own list plan only estimates it
    /// from one snapshot). The default has no plan.
    fn place_batch(
        &mut self,
        _tasks: &[PlacementRequest<'_>],
        _procs: &[ProcessorLoad<'_>],
    ) -> Option<Vec<Option<usize>>> {
        None
    }

    /// The processor (index into the last call's `procs`) the last
    /// [`Policy::place`] that answered `None` wanted but found full, if it
    /// knows: the caller need not ask about that task again before that
    /// processor has room.
    fn waits_for(&self) -> Option<usize> {
        None
    }

    /// How long the next window may take to place: the caller's measure
    /// of load (a runtime whose tasks are short cannot afford a long
    /// solve). Window policies pick their mode by it; others ignore it.
    fn set_window_budget(&mut self, _budget: std::time::Duration) {}

    /// How many tasks are ready now, the window's among them: the other
    /// measure of load. A long ready queue means windows keep coming, so
    /// window policies take their faster mode.
    fn set_backlog(&mut self, _ready: usize) {}

    /// The window decisions made since the last call (list policies,
    /// whose decisions are the tasks themselves, keep none).
    fn take_decisions(&mut self) -> Vec<Decision> {
        Vec::new()
    }
}

/// The policies by name, as `--policy` and `RuntimeBuilder::policy` take
/// them: `heft` (earliest finish, the default), `eager`, `milp` (MILP
/// windows with the metaheuristic as fallback) and `metaheuristic`.
/// `bandwidth` is the copy rate assumed where a processor gives none.
pub fn by_name(name: &str, bandwidth: f64) -> Result<Box<dyn Policy>, String> {
    by_name_with(name, bandwidth, AWAY_WEIGHT)
}

/// [`by_name`], with `away_weight` as the weight of the price earliest
/// finish charges for leaving a task's data node ([`away_seconds`]; 0:
/// none), in `heft` and in the list rule the window policies place single
/// tasks with. Only a cluster (spaces on several nodes) has a price to
/// weigh: a network much faster than [`away_seconds`] assumes may want
/// less of it, a slower one more.
pub fn by_name_with(
    name: &str,
    bandwidth: f64,
    away_weight: f64,
) -> Result<Box<dyn Policy>, String> {
    if !(away_weight.is_finite() && away_weight >= 0.0) {
        return Err(format!(
            "away weight {away_weight}: it must be a number at least 0"
        ));
    }
    let list = || EarliestFinish {
        away_weight,
        ..EarliestFinish::new(bandwidth)
    };
    match name {
        "heft" | "eft" => Ok(Box::new(list())),
        "eager" => Ok(Box::new(Eager)),
        "milp" => Ok(Box::new(crate::milp::Milp::new(Box::new(list())))),
        "metaheuristic" => Ok(Box::new(crate::metaheuristic::Metaheuristic::with_list(
            list(),
        ))),
        other => Err(format!(
            "unknown policy `{other}` (heft, eager, milp, metaheuristic)"
        )),
    }
}

/// Estimated seconds to run `task` on `proc`, copies included: the
/// learned time where the model has one, else the op's flops at the
/// processor's peak.
pub fn estimate_seconds(task: &PlacementRequest<'_>, proc: &ProcessorDesc, bandwidth: f64) -> f64 {
    let (copy, exec) = estimate_parts(task, proc, bandwidth);
    exec + copy
}

/// [`estimate_seconds`] in two parts: seconds of copies in, seconds of
/// work.
pub fn estimate_parts(
    task: &PlacementRequest<'_>,
    proc: &ProcessorDesc,
    bandwidth: f64,
) -> (f64, f64) {
    let exec = exec_seconds(task, proc);
    let missing = missing_bytes(task, proc.memory);
    let copy = if missing > 0 && bandwidth > 0.0 {
        missing as f64 / bandwidth
    } else {
        0.0
    };
    (copy, exec)
}

/// Whether `load`'s processor can run `task`: it has the op for the
/// element type, and its memory, where bounded, holds the task's inputs
/// at once (a device pins a task's tiles while it runs: a task larger
/// than its budget fails there however long it waits, where a CPU beside
/// it could run it).
pub fn can_run(task: &PlacementRequest<'_>, load: &ProcessorLoad<'_>) -> bool {
    load.desc.supports(task.op, task.dtype)
        && load
            .memory_bytes
            .is_none_or(|cap| task.inputs.iter().map(|(b, _)| *b).sum::<u64>() <= cap)
}

/// Seconds of work of `task` on `proc`: the learned time where the model
/// has one, else the op's flops at the processor's peak.
pub fn exec_seconds(task: &PlacementRequest<'_>, proc: &ProcessorDesc) -> f64 {
    match task.dtype {
        Some(dt) if task.flops > 0.0 => task
            .model
            .and_then(|m| m.estimate(task.op, dt, &proc.name, task.flops))
            .unwrap_or_else(|| task.flops / proc.flops_per_second(dt)),
        _ => 0.0,
    }
}

/// When `task` would finish on processor `p` of `procs`, seconds from
/// now: after the work queued there ahead of it and the arrival of its
/// missing inputs, each on the link that delivers it first behind that
/// link's queue ([`crate::arrival`]), whichever is later, plus its own
/// work. `bandwidth` is the copy rate where the load gives none.
pub fn finish_seconds(
    task: &PlacementRequest<'_>,
    procs: &[ProcessorLoad<'_>],
    p: usize,
    bandwidth: f64,
) -> f64 {
    let exec = exec_seconds(task, procs[p].desc);
    let queue = queued_ahead(task, &procs[p], p);
    finish_after(
        task,
        &procs[p],
        bandwidth,
        exec,
        queue,
        &mut Vec::new(),
        &Held::default(),
    )
}

/// [`finish_seconds`] given the task's work there and the work ahead of
/// it, with `scratch` for the link queues.
fn finish_after(
    task: &PlacementRequest<'_>,
    load: &ProcessorLoad<'_>,
    bandwidth: f64,
    exec: f64,
    queue: f64,
    scratch: &mut Vec<(usize, f64)>,
    held: &Held,
) -> f64 {
    let bandwidth = load.copy_rate(bandwidth);
    let mut links = LinkClock::with_scratch(load.links, std::mem::take(scratch));
    let space = load.desc.memory;
    let ready = held
        .missing(task, space)
        .map(|(_, (bytes, holders))| links.copy(*bytes, holders, space, bandwidth))
        .fold(0.0, f64::max);
    *scratch = links.into_scratch();
    queue.max(ready) + exec
}

/// When a task's inputs could all be in `load`'s memory at the earliest,
/// seconds from now: with the queue and the work, a lower bound of
/// [`finish_after`], cheap enough to compute for every processor of a
/// cluster so that only the promising ones are priced.
/// Exact where copies do not wait for each other: each input from its
/// own node's holders over their pair links as they stand; from another
/// node, once the receiving node's interface in and the first free
/// interface out of a holding node are free. Copies that must cross the
/// network pass the one interface in one after another, so they also end
/// no sooner than its queue plus all their times; without link state all
/// copies share one link, so their times add up.
fn ready_bound(
    task: &PlacementRequest<'_>,
    load: &ProcessorLoad<'_>,
    bandwidth: f64,
    held: &Held,
) -> f64 {
    let space = load.desc.memory;
    let missing = held
        .missing(task, space)
        .map(|(i, (bytes, _))| (i, *bytes as f64));
    let Some(l) = load.links else {
        let rate = load.copy_rate(bandwidth);
        return missing.map(|(_, bytes)| bytes / rate).sum();
    };
    let s = space.0 as usize;
    let node = l.model.node.get(s).copied().unwrap_or(0);
    let rate = |rates: &[f64]| {
        rates
            .get(s)
            .copied()
            .filter(|r| *r > 0.0)
            .unwrap_or(bandwidth)
    };
    let (local_rate, remote_rate) = (rate(&l.model.fastest_in), rate(&l.model.fastest_remote_in));
    let nic_in = l.free.get(l.model.nic_in(node)).copied().unwrap_or(0.0);
    let mut ready = 0.0f64;
    let mut through_nic: Option<f64> = None;
    // Inputs one other node alone holds leave through its interface one
    // after another: per such node, when its interface is free and the
    // time of their crossings (a task reads a few inputs: a short list).
    let mut through_out: [(usize, f64); 4] = [(usize::MAX, 0.0); 4];
    for (i, bytes) in missing {
        let crossing = l.model.latency + bytes / remote_rate;
        let remote = held.out_free(i).max(nic_in) + crossing;
        let at = if !held.on_node(i, node) {
            through_nic = Some(through_nic.unwrap_or(nic_in) + crossing);
            if let Some(src) = held.sole(i) {
                let slot = through_out
                    .iter()
                    .position(|(n, _)| *n == src || *n == usize::MAX);
                if let Some(k) = slot {
                    if through_out[k].0 == usize::MAX {
                        through_out[k] = (src, held.out_free(i));
                    }
                    through_out[k].1 += crossing;
                    ready = ready.max(through_out[k].1);
                }
            }
            remote
        } else {
            // Held on this node: each local holder's own pair link, or
            // the network if a remote copy could be sooner.
            let local = held.on(i, node);
            if local.is_empty() {
                bytes / local_rate
            } else {
                local
                    .iter()
                    .map(|h| l.arrival(*h as usize, s, bytes))
                    .fold(remote, f64::min)
            }
        };
        ready = ready.max(at);
    }
    ready.max(through_nic.unwrap_or(0.0))
}

/// Which spaces hold each input of one task, as a table when the holder
/// lists are long or there is link state (a cluster's replicas, dozens of
/// processors): an estimate on every processor asks once per input, and
/// scanning the holders each time costs more than the rest of the
/// decision (cholesky:48 on the simulated cluster: 5.3 → 3.7 µs per
/// decision). Its tables are flat and
/// kept between decisions ([`Held::fill`]), so a decision allocates none.
#[derive(Debug, Default, Clone)]
struct Held {
    /// Input `i`, space `s` at `i * spaces + s`: whether it holds the
    /// input (empty: scan the holder list).
    table: Vec<bool>,
    spaces: usize,
    /// How many nodes the link state has.
    nodes: usize,
    /// Per input: seconds until the first holding node's network
    /// interface out is free (empty: unknown, taken as now).
    out_free: Vec<f64>,
    /// Per input: the one node holding it, if only one does (its copies
    /// to other nodes then all leave through that node's interface).
    sole: Vec<Option<usize>>,
    /// The holders grouped by node: input `i`'s on node `n` are
    /// `by_node[starts[i * nodes + n]..starts[i * nodes + n + 1]]`
    /// (`starts` empty: no link state, nodes unknown).
    by_node: Vec<u32>,
    starts: Vec<usize>,
    cursor: Vec<usize>,
}

impl Held {
    /// Holder lists longer than this get a table.
    const LONG: usize = 8;

    /// Fills the tables for `task`.
    fn fill(&mut self, task: &PlacementRequest<'_>, spaces: usize, links: Option<&LinkState<'_>>) {
        self.table.clear();
        self.out_free.clear();
        self.sole.clear();
        self.by_node.clear();
        self.starts.clear();
        if let Some(l) = links {
            self.nodes = l.model.nodes();
            for (k, (_, holders)) in task.inputs.iter().enumerate() {
                let row = k * self.nodes;
                let mut out = f64::INFINITY;
                let mut sole: Option<usize> = None;
                let mut nodes_holding = 0usize;
                // Count per node, then place (a counting sort).
                self.starts.resize(row + self.nodes + 1, 0);
                for h in *holders {
                    if let Some(n) = l.model.node.get(h.0 as usize) {
                        self.starts[row + n + 1] += 1;
                        // The node's first holder of this input.
                        if self.starts[row + n + 1] == 1 {
                            let free = l.free.get(l.model.nic_out(*n)).copied().unwrap_or(0.0);
                            out = out.min(free);
                            nodes_holding += 1;
                            sole = Some(*n);
                        }
                    }
                }
                self.out_free.push(if out.is_finite() { out } else { 0.0 });
                self.sole.push(sole.filter(|_| nodes_holding == 1));
                let base = self.by_node.len();
                self.starts[row] = base;
                for n in 0..self.nodes {
                    self.starts[row + n + 1] += self.starts[row + n];
                }
                self.by_node.resize(self.starts[row + self.nodes], 0);
                self.cursor.clear();
                self.cursor
                    .extend_from_slice(&self.starts[row..row + self.nodes]);
                for h in *holders {
                    if let Some(n) = l.model.node.get(h.0 as usize) {
                        self.by_node[self.cursor[*n]] = h.0;
                        self.cursor[*n] += 1;
                    }
                }
                // The next input's row starts where this one ends.
                self.starts.truncate(row + self.nodes);
            }
            self.starts.push(self.by_node.len());
        }
        if links.is_none() && task.inputs.iter().all(|(_, h)| h.len() <= Self::LONG) {
            return;
        }
        self.spaces = spaces;
        for (_, holders) in task.inputs {
            let row = self.table.len();
            self.table.resize(row + spaces, false);
            for h in *holders {
                if let Some(cell) = self.table.get_mut(row + h.0 as usize) {
                    *cell = true;
                }
            }
        }
    }

    /// The only node holding input `i`, if one alone does.
    fn sole(&self, i: usize) -> Option<usize> {
        self.sole.get(i).copied().flatten()
    }

    /// `task`'s data node: the node holding the tile it updates (its
    /// owner; see [`PlacementRequest::updates`]), else the node holding
    /// most of its input bytes (the first on a tie); `None` with one node,
    /// no inputs or no link state.
    ///
    /// Why the owner: on cluster-16x4 a right-looking Cholesky whose tiles
    /// start 2D block-cyclic ran in 0.48 s owner-computes against 0.76 s
    /// by input bytes (cholesky:48; LU 0.15 against 0.37): each update
    /// stays where its tile is and only the panels cross the network,
    /// where by input bytes the work drifts to whichever node gathered
    /// the most tiles and every tile crosses into it.
    fn data_node(&self, task: &PlacementRequest<'_>) -> Option<Home> {
        if self.starts.is_empty() || self.nodes < 2 {
            return None;
        }
        if let Some(owner) = task.updates.last().and_then(|i| self.sole(*i)) {
            return Some(Home {
                node: owner,
                owns: true,
            });
        }
        let mut best: (u64, Option<usize>) = (0, None);
        for n in 0..self.nodes {
            let bytes: u64 = task
                .inputs
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.on(*i, n).is_empty())
                .map(|(_, (bytes, _))| bytes)
                .sum();
            if bytes > best.0 {
                best = (bytes, Some(n));
            }
        }
        best.1.map(|node| Home { node, owns: false })
    }

    /// Seconds until a node holding input `i` can send it (0 when unknown).
    fn out_free(&self, i: usize) -> f64 {
        self.out_free.get(i).copied().unwrap_or(0.0)
    }

    /// The spaces on `node` holding input `i` (none when unknown).
    fn on(&self, i: usize, node: usize) -> &[u32] {
        let row = i * self.nodes + node;
        match (self.starts.get(row), self.starts.get(row + 1)) {
            (Some(a), Some(b)) if node < self.nodes => &self.by_node[*a..*b],
            _ => &[],
        }
    }

    /// Whether a space on `node` holds input `i` (yes when unknown).
    fn on_node(&self, i: usize, node: usize) -> bool {
        let row = i * self.nodes + node;
        match (self.starts.get(row), self.starts.get(row + 1)) {
            (Some(a), Some(b)) if node < self.nodes => a != b,
            _ => true,
        }
    }

    /// `task`'s inputs `space` lacks, with their indices.
    fn missing<'t>(
        &'t self,
        task: &'t PlacementRequest<'_>,
        space: MemorySpaceId,
    ) -> impl Iterator<Item = (usize, &'t (u64, &'t [MemorySpaceId]))> + 't {
        task.inputs
            .iter()
            .enumerate()
            .filter(move |(i, (_, holders))| !self.holds(*i, holders, space))
    }

    /// Whether `space` holds input `i` (whose holders are `holders`).
    fn holds(&self, i: usize, holders: &[MemorySpaceId], space: MemorySpaceId) -> bool {
        let s = space.0 as usize;
        if self.table.is_empty() || s >= self.spaces {
            return holders.contains(&space);
        }
        self.table
            .get(i * self.spaces + s)
            .copied()
            .unwrap_or_else(|| holders.contains(&space))
    }
}

/// Seconds of work `load`'s processor (index `p` among the decision's
/// processors) runs before `task`.
pub fn queued_ahead(task: &PlacementRequest<'_>, load: &ProcessorLoad<'_>, p: usize) -> f64 {
    task.ahead.get(p).copied().unwrap_or(load.queued_seconds)
}

/// Where a processor's outputs go for its successors: the memory of the
/// nearest fast processor (one at least half the fastest's speed for the
/// element type) and the rate to it; `None` for the fast processors
/// themselves.
///
/// Successors mostly run on the fast processors, so a task put on a slow
/// one (a CPU beside GPUs) is not done when it finishes: its outputs must
/// first cross to them, behind what that link already carries. Policies
/// add that crossing to its finish ([`return_seconds`]), so the slow
/// processor takes a task only where it still wins after it.
pub fn return_paths(
    procs: &[ProcessorLoad<'_>],
    dtype: Option<DType>,
    bandwidth: f64,
) -> Vec<Option<(MemorySpaceId, f64)>> {
    let speed = |p: &ProcessorLoad<'_>| dtype.map_or(0.0, |d| p.desc.flops_per_second(d));
    let fastest = procs.iter().map(speed).fold(0.0, f64::max);
    let fast: Vec<&ProcessorLoad<'_>> =
        procs.iter().filter(|p| speed(p) >= 0.5 * fastest).collect();
    procs
        .iter()
        .map(|p| {
            if speed(p) >= 0.5 * fastest {
                return None;
            }
            let src = p.desc.memory.0 as usize;
            fast.iter()
                .map(|q| {
                    let rate = match p.links {
                        Some(l) => l
                            .model
                            .bandwidth
                            .get(src)
                            .and_then(|row| row.get(q.desc.memory.0 as usize))
                            .copied()
                            .unwrap_or(bandwidth),
                        None => q.copy_rate(bandwidth),
                    };
                    (q.desc.memory, rate)
                })
                .max_by(|a, b| a.1.total_cmp(&b.1))
        })
        .collect()
}

/// Seconds for `bytes` of outputs to leave `load`'s processor along
/// `path` ([`return_paths`]): the wait behind what the link carries, then
/// the bytes at its rate; 0 on a fast processor.
pub fn return_seconds(
    path: Option<(MemorySpaceId, f64)>,
    bytes: u64,
    load: &ProcessorLoad<'_>,
) -> f64 {
    let Some((to, rate)) = path else {
        return 0.0;
    };
    LinkClock::new(load.links).wait(load.desc.memory, to) + bytes as f64 / rate
}

/// Bytes of `task`'s inputs with no valid copy in `space`.
pub fn missing_bytes(task: &PlacementRequest<'_>, space: MemorySpaceId) -> u64 {
    task.inputs
        .iter()
        .filter(|(_, valid)| !valid.contains(&space))
        .map(|(bytes, _)| *bytes)
        .sum()
}

/// Weight of [`away_seconds`] (see there). 2 since the simulator's links
/// backfill and tiles start 2D block-cyclic (session 11): on cluster-16x4
/// and copies of it with 50 and 200 GB/s networks, 2 was within 1% of 1
/// or better on 16 of 18 graphs, and at 1 layered:5000 on the slow
/// network took 0.20 s against 0.13 (work went back and forth between two
/// nodes); on the fast network cholesky:30 lost 10% (0.0302 → 0.0331 s)
/// and layered:5000 1.4%.
pub const AWAY_WEIGHT: f64 = 2.0;
/// How many times its work a task's output may take to cross the network
/// before [`away_seconds`] charges for leaving its data's node (not its
/// tile's owner: see [`AWAY_OWNER_FACTOR`]).
const AWAY_FREE_RATIO: f64 = 2.0;
/// How many times more [`away_seconds`] charges for leaving the node that
/// alone holds the tile a task updates (its owner), charged from a ratio
/// of 0: owner computes, unless the owner's wait is far longer than the
/// crossing.
///
/// Why: a tile updated away from its owner moves with its update, and the
/// 2D block-cyclic start that shared the work out evenly drifts to
/// whichever nodes took work early (the first node, on a tie); their
/// network interfaces then send most tiles. The plain price is 0 where a
/// tile crosses in under twice a GEMM on it, as on a fast network, and
/// there earliest finish gave node 0 of the simulated 16 × 4 cluster at
/// 200 GB/s half of cholesky:30 (its interface out 96% busy). Charged
/// so, cholesky:30 there took 0.0199 s against 0.0331, cholesky:48 0.0434
/// against 0.0926 and lu:24 0.0142 against 0.0275; at 50 GB/s 1 – 27%
/// less; at 12.5 GB/s no change (BENCHMARKS.md, session 12). Graphs
/// that update nothing (layered) keep the plain price.
const AWAY_OWNER_FACTOR: f64 = 32.0;
/// The share of the away weight that [`exit_seconds`] charges of a
/// node's backlog out (¼: half the backlog at the default weight).
///
/// Why: on a network fast beside the tasks' work, where the away price is
/// 0, earliest finish sees only a task's own inputs, so a graph with no
/// owners (layered) gathered on the node holding its data, whose network
/// interface then carried every output out while the other nodes idled:
/// layered:20000 on the simulated 16 × 4 cluster at 200 GB/s ran 13,452 of
/// its 20,000 tasks on node 0, its interface out 100% busy, 0.279 s against
/// 0.063 with an infinitely fast network. Charging half the backlog:
/// 0.110 s, layered:5000 0.063 → 0.027; at 50 GB/s −2% to +0.5%; at 12.5
/// GB/s nothing (no task qualifies there). Twice the backlog spread the
/// 50 GB/s case too far (layered:5000 0.100 → 0.207 s); the whole one
/// gained less at 200 GB/s (0.032), a quarter of it less still (0.050)
/// (BENCHMARKS.md, session 12).
const EXIT_SHARE: f64 = 0.25;
/// Most that the ratio of an output's crossing to the task's work counts
/// for in [`away_seconds`], so a task with next to no work still has a
/// finite price.
const AWAY_RATIO_CAP: f64 = 64.0;

/// Seconds charged to running `task` on `load`'s processor when that is
/// on another node than `home`, its data's node (the owner of the tile it
/// updates, else the one holding most of its input bytes, the first on a
/// tie: where its successors will most likely find their data too): the
/// crossing its output makes back to where its successors will look for
/// it, times `weight` ([`AWAY_WEIGHT`] by default) and by how much that
/// crossing exceeds twice the task's `work` (its time on the fastest
/// processor that runs it, the same for every processor: a slow one must
/// not get it cheaper for being slow); 0 on its data's node, without link
/// state, or where the crossing takes under twice the work. Leaving a
/// tile's owner costs [`AWAY_OWNER_FACTOR`] times more, by the whole
/// ratio of crossing to work.
///
/// Earliest finish alone sees only the task's own copies. On a cluster
/// whose network is slow beside its GPUs, a task sent away from its data
/// because the GPUs there are busy finishes a little sooner, but its
/// output then crosses back, and every crossing holds two nodes' network
/// interfaces that other tasks' copies wait for. The ratio of crossing
/// to work makes the price large where the network is the bottleneck and
/// nothing where it is not. On the simulated 16 × 4 GPU cluster (12.5
/// GB/s between nodes, 1024 tiles) it shortened the suite's cluster cases
/// by 20 – 37%; with a 50 GB/s network, by 3 – 24%; with 200 GB/s, they
/// moved between -4% and +0.3% (BENCHMARKS.md, session 8). Charging twice
/// the price, or from a ratio of 0, gained a little more on the slow
/// network and lost up to 9% on the fast one; a fixed multiple of the
/// crossing lost up to 5 times there.
pub fn away_seconds(
    task: &PlacementRequest<'_>,
    load: &ProcessorLoad<'_>,
    home: Option<Home>,
    work: f64,
    weight: f64,
) -> f64 {
    match away_rate(load, home) {
        Some(rate) if task.output_bytes > 0 && weight > 0.0 => {
            let owns = home.is_some_and(|h| h.owns);
            away_price(task.output_bytes, rate, load, work, weight, owns)
        }
        _ => 0.0,
    }
}

/// Seconds charged to running `task` on `load`'s processor:
/// [`EXIT_SHARE`] × `weight` times the backlog of the network interface
/// out of that processor's node, where the task's output would cross the
/// network in under [`AWAY_FREE_RATIO`] times its `work` (on a network
/// that fast, [`away_seconds`] charges nothing); 0 otherwise, where it
/// updates a tile one node alone holds (`owns`: the owner's price rules
/// that), on one node, or without link state. Its successors on other nodes will pull its output through
/// that interface: a node whose way out is already queued is a worse
/// place for work that others will read, however soon it could run it.
pub fn exit_seconds(
    task: &PlacementRequest<'_>,
    load: &ProcessorLoad<'_>,
    owns: bool,
    work: f64,
    weight: f64,
) -> f64 {
    let Some(l) = load.links else {
        return 0.0;
    };
    if owns || task.output_bytes == 0 || l.model.nodes() < 2 {
        return 0.0;
    }
    let (Some(node), Some(rate)) = (
        l.model.node.get(load.desc.memory.0 as usize),
        remote_rate(load),
    ) else {
        return 0.0;
    };
    if !exits_fast(task.output_bytes, rate, l, work) {
        return 0.0;
    }
    let backlog = l.free.get(l.model.nic_out(*node)).copied().unwrap_or(0.0);
    weight * EXIT_SHARE * backlog
}

/// Whether `bytes` of output cross the network at `rate` in under
/// [`AWAY_FREE_RATIO`] times `work`: where [`exit_seconds`] charges.
fn exits_fast(bytes: u64, rate: f64, l: &LinkState<'_>, work: f64) -> bool {
    rate > 0.0 && l.model.latency + bytes as f64 / rate < AWAY_FREE_RATIO * work
}

/// Where a task's data are, for [`away_seconds`]: its data node, and
/// whether that is the owner of the tile it updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Home {
    pub node: usize,
    /// The task updates a tile that this node alone holds.
    pub owns: bool,
}

/// The rate at which an output would cross back from `load`'s memory,
/// if that is on another node than `home`.
fn away_rate(load: &ProcessorLoad<'_>, home: Option<Home>) -> Option<f64> {
    let (home, l) = (home?.node, load.links?);
    let space = load.desc.memory.0 as usize;
    if l.model.node.get(space).is_none_or(|n| *n == home) {
        return None;
    }
    remote_rate(load).filter(|r| *r > 0.0)
}

/// The fastest rate into `load`'s memory from another node (`None`
/// without link state).
fn remote_rate(load: &ProcessorLoad<'_>) -> Option<f64> {
    let l = load.links?;
    l.model
        .fastest_remote_in
        .get(load.desc.memory.0 as usize)
        .copied()
}

/// [`away_seconds`] of `bytes` of outputs crossing at `rate`, for a task
/// whose work takes `work` seconds at best; `owns`: leaving the owner of
/// the tile it updates.
fn away_price(
    bytes: u64,
    rate: f64,
    load: &ProcessorLoad<'_>,
    work: f64,
    weight: f64,
    owns: bool,
) -> f64 {
    let (weight, free) = if owns {
        (weight * AWAY_OWNER_FACTOR, 0.0)
    } else {
        (weight, AWAY_FREE_RATIO)
    };
    let latency = load.links.map_or(0.0, |l| l.model.latency);
    let crossing = latency + bytes as f64 / rate;
    let ratio = if work > 0.0 {
        (crossing / work - free).clamp(0.0, AWAY_RATIO_CAP)
    } else {
        AWAY_RATIO_CAP
    };
    weight * crossing * ratio
}

/// Each processor's [`return_paths`] entry.
type ReturnPaths = Vec<Option<(MemorySpaceId, f64)>>;

/// Data-aware earliest finish time (HEFT / dmda class).
#[derive(Debug, Clone)]
pub struct EarliestFinish {
    /// Bytes/s assumed for copying a missing input.
    pub bandwidth: f64,
    /// The link queues' buffer, reused between estimates.
    scratch: Vec<(usize, f64)>,
    /// The processors to price, in the order they are priced.
    order: Vec<Candidate>,
    /// [`return_paths`] for the processors last seen (how many, and the
    /// element type), which stay the same from one decision to the next.
    returns: Option<(usize, Option<DType>, ReturnPaths)>,
    /// Where the task's inputs are, as tables.
    held: Held,
    /// The processor the last decision chose (full or not).
    wanted: Option<usize>,
    /// Per decision and node holding none of the task's inputs, the
    /// input bound of its spaces: (rate in from other nodes, bound; a NaN
    /// rate: none yet).
    remote_ready: Vec<(f64, f64)>,
    /// Weight of the price of running a task away from its data's node
    /// ([`away_seconds`]; [`AWAY_WEIGHT`] by default, 0: none).
    pub away_weight: f64,
}

impl EarliestFinish {
    pub fn new(bandwidth: f64) -> Self {
        EarliestFinish {
            bandwidth,
            scratch: Vec::new(),
            order: Vec::new(),
            returns: None,
            held: Held::default(),
            wanted: None,
            remote_ready: Vec::new(),
            away_weight: AWAY_WEIGHT,
        }
    }
}

impl Default for EarliestFinish {
    fn default() -> Self {
        EarliestFinish::new(0.0)
    }
}

impl Policy for EarliestFinish {
    fn name(&self) -> &'static str {
        "eft"
    }

    fn place(&mut self, task: &PlacementRequest<'_>, procs: &[ProcessorLoad<'_>]) -> Option<usize> {
        // The best finish over every capable processor, full or not: if the
        // best one is full, the task waits for it rather than running later
        // somewhere slow.
        let stale =
            !matches!(&self.returns, Some((n, d, _)) if *n == procs.len() && *d == task.dtype);
        if stale {
            let paths = return_paths(procs, task.dtype, self.bandwidth);
            self.returns = Some((procs.len(), task.dtype, paths));
        }
        let paths = self
            .returns
            .as_ref()
            .map(|(_, _, r)| r.as_slice())
            .unwrap_or(&[]);
        // Processors rank by [`Rank`]: the earliest finish; on a tie, the
        // processor that pulls fewer bytes over the network (the network
        // stays free for others), then the first node, then the shorter
        // queue, then the first processor. Ties are common on a cluster
        // of idle GPUs, and breaking them towards the shorter queue first,
        // as this did before, spread the work over every node: on the
        // simulated 16 × 4 GPU cluster, cholesky:30 moved 86 GB instead of
        // 70 and took 1.16 times longer; on one node the rule is the old
        // one. Lower bounds of each one's rank order the pricing: the
        // lowest first; then, of those whose bound (queue and work, no
        // copies) still beats its rank, a tighter bound counting the
        // copies; then only those whose tighter bound beats the best rank
        // so far (on the simulated cluster 1.3 a decision of 80, 3 µs a
        // task where one bound alone priced 21 and took 5 – 6 µs). The
        // choice is the one pricing every processor would make.
        self.order.clear();
        let spaces = procs
            .iter()
            .map(|p| p.desc.memory.0 as usize + 1)
            .max()
            .unwrap_or(0);
        let mut held = std::mem::take(&mut self.held);
        let links = procs.iter().find_map(|p| p.links);
        held.fill(task, spaces, links);
        let home = (self.away_weight > 0.0 && task.output_bytes > 0)
            .then(|| held.data_node(task))
            .flatten();
        let mut work = f64::INFINITY;
        for (i, p) in procs.iter().enumerate() {
            if !can_run(task, p) {
                continue;
            }
            let exec = exec_seconds(task, p.desc);
            work = work.min(exec);
            let back = return_seconds(paths.get(i).copied().flatten(), task.output_bytes, p);
            let queue = queued_ahead(task, p, i);
            // Its bound at first leaves out the copies (and, below the
            // finish, counts no bytes from other nodes): most processors
            // are ruled out by it, the rest are bounded tighter below.
            self.order.push(Candidate {
                rank: Rank {
                    finish: queue + exec + back,
                    remote: 0,
                    node: node_of(p),
                    queued: p.queued_tasks,
                    index: i,
                },
                exec,
                back,
                queue,
            });
        }
        // The price of leaving the data's node weighs the crossing against
        // the task's work where it runs fastest ([`away_seconds`]), so it
        // depends only on the network rate (the same for a cluster's
        // spaces): the last two are kept.
        if let Some(Home { owns, .. }) = home {
            let mut prices = [(f64::NAN, 0.0); 2];
            for c in &mut self.order {
                let p = &procs[c.rank.index];
                let Some(rate) = away_rate(p, home) else {
                    continue;
                };
                let away = match prices.iter().find(|(r, _)| *r == rate) {
                    Some((_, price)) => *price,
                    None => {
                        let price =
                            away_price(task.output_bytes, rate, p, work, self.away_weight, owns);
                        prices.swap(0, 1);
                        prices[0] = (rate, price);
                        price
                    }
                };
                c.back += away;
                c.rank.finish += away;
            }
        }
        // The price of a queued way out ([`exit_seconds`]).
        if self.away_weight > 0.0 && links.is_some_and(|l| l.model.nodes() > 1) {
            let owns = home.is_some_and(|h| h.owns);
            for c in &mut self.order {
                let exit = exit_seconds(task, &procs[c.rank.index], owns, work, self.away_weight);
                c.back += exit;
                c.rank.finish += exit;
            }
        }
        let price = |c: &Candidate, scratch: &mut Vec<(usize, f64)>| {
            let load = &procs[c.rank.index];
            let finish = finish_after(task, load, self.bandwidth, c.exec, c.queue, scratch, &held);
            Rank {
                finish: finish + c.back,
                remote: remote_bytes(task, load, &held),
                ..c.rank
            }
        };
        let mut best: Option<Rank> = None;
        if let Some(first) = self.order.iter().min_by(|a, b| a.rank.order(&b.rank)) {
            let rank = price(first, &mut self.scratch);
            self.order
                .retain(|c| c.rank.index != rank.index && c.rank.order(&rank).is_lt());
            // A node holding none of the inputs gives each of its spaces
            // the same bound from the same rate (its GPUs, say): computed
            // once a node (layered:20000 on a 200 GB/s cluster: about 60
            // bounds a decision, 16 nodes).
            let all_bytes: u64 = task.inputs.iter().map(|(b, _)| b).sum();
            self.remote_ready.clear();
            if let Some(l) = links {
                self.remote_ready.resize(l.model.nodes(), (f64::NAN, 0.0));
            }
            for c in &mut self.order {
                let load = &procs[c.rank.index];
                let node = c.rank.node;
                let far =
                    load.links.is_some() && (0..task.inputs.len()).all(|i| !held.on_node(i, node));
                let ready = if far {
                    let rate = remote_rate(load).unwrap_or(0.0);
                    match self.remote_ready.get_mut(node) {
                        Some((r, ready)) if *r == rate => *ready,
                        Some(slot) => {
                            let ready = ready_bound(task, load, self.bandwidth, &held);
                            *slot = (rate, ready);
                            ready
                        }
                        None => ready_bound(task, load, self.bandwidth, &held),
                    }
                } else {
                    ready_bound(task, load, self.bandwidth, &held)
                };
                c.rank.finish = c.queue.max(ready) + c.exec + c.back;
                c.rank.remote = if far {
                    all_bytes
                } else {
                    remote_bytes(task, load, &held)
                };
            }
            self.order.retain(|c| c.rank.order(&rank).is_lt());
            best = Some(rank);
        }
        // Lowest bound first, taken one at a time: pricing usually stops
        // after one or two, where sorting every survivor cost more (on a
        // cluster of idle GPUs dozens tie on their bound).
        while let Some(k) =
            (0..self.order.len()).min_by(|a, b| self.order[*a].rank.order(&self.order[*b].rank))
        {
            let c = self.order.swap_remove(k);
            if best.is_some_and(|b| c.rank.order(&b).is_ge()) {
                break;
            }
            let rank = price(&c, &mut self.scratch);
            if best.is_none_or(|b| rank.order(&b).is_lt()) {
                best = Some(rank);
            }
        }
        self.held = held;
        self.wanted = best.map(|b| b.index);
        best.and_then(|b| procs[b.index].has_room.then_some(b.index))
    }

    fn waits_for(&self) -> Option<usize> {
        self.wanted
    }
}

/// A processor's rank for a task, compared field by field in this order
/// ([`Rank::order`]); lower is better.
#[derive(Debug, Clone, Copy)]
struct Rank {
    /// When the task would finish there (its outputs back, from a slow
    /// processor; the price of running away from its data's node,
    /// [`away_seconds`]).
    finish: f64,
    /// Bytes it would pull across the network.
    remote: u64,
    /// The processor's node: a tie between nodes goes to the first, so
    /// work packs onto the nodes its data went to before.
    node: usize,
    /// Tasks queued there: a tie within a node goes to the shorter queue.
    queued: usize,
    index: usize,
}

impl Rank {
    fn order(&self, other: &Rank) -> std::cmp::Ordering {
        self.finish
            .total_cmp(&other.finish)
            .then(self.remote.cmp(&other.remote))
            .then(self.node.cmp(&other.node))
            .then(self.queued.cmp(&other.queued))
            .then(self.index.cmp(&other.index))
    }
}

/// The node of `load`'s memory (0 without link state).
pub(crate) fn node_of(load: &ProcessorLoad<'_>) -> usize {
    load.links
        .and_then(|l| l.model.node.get(load.desc.memory.0 as usize).copied())
        .unwrap_or(0)
}

/// Bytes of `task`'s inputs that no space on `load`'s node holds: what
/// running it there pulls across the network (0 without link state).
fn remote_bytes(task: &PlacementRequest<'_>, load: &ProcessorLoad<'_>, held: &Held) -> u64 {
    if load.links.is_none() {
        return 0;
    }
    let node = node_of(load);
    task.inputs
        .iter()
        .enumerate()
        .filter(|(i, _)| !held.on_node(*i, node))
        .map(|(_, (bytes, _))| *bytes)
        .sum()
}

/// A processor [`EarliestFinish`] may price: a lower bound of its rank,
/// and the task's work there, the return of its outputs and the work
/// queued ahead of it.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    rank: Rank,
    exec: f64,
    back: f64,
    queue: f64,
}

/// A shared queue: the task goes to the capable processor that is free
/// soonest, whatever its speed or where the data is (StarPU's `eager`).
#[derive(Debug, Default, Clone)]
pub struct Eager;

impl Policy for Eager {
    fn name(&self) -> &'static str {
        "eager"
    }

    fn place(&mut self, task: &PlacementRequest<'_>, procs: &[ProcessorLoad<'_>]) -> Option<usize> {
        procs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.has_room && can_run(task, p))
            .min_by(|(_, a), (_, b)| {
                a.queued_seconds
                    .total_cmp(&b.queued_seconds)
                    .then(a.queued_tasks.cmp(&b.queued_tasks))
            })
            .map(|(i, _)| i)
    }
}

/// Data that tasks still use over the devices' memory at which ready tasks
/// go in submission order rather than by priority; and the share of it
/// below which they go by priority again.
pub const MEMORY_BOUND_ENTER: f64 = 1.4;
pub const MEMORY_BOUND_LEAVE: f64 = 1.25;

/// Whether a run is memory-bound: the bytes of the data that unfinished
/// tasks use (`live`) exceed what the devices' memories hold together
/// (`capacity`) by [`MEMORY_BOUND_ENTER`], until they fall under
/// [`MEMORY_BOUND_LEAVE`] of it (`now`: whether the run is memory-bound),
/// so that a run near the line does not flap.
///
/// Just over the line, few tiles are evicted and priority order's
/// parallelism is worth more. On an H200, submission order took 4% and
/// 9% longer with data 1.24 and 1.25 times the budget, 26 – 29% less
/// time at 2.1 times. The simulator with the runtime's queue horizon
/// (`examples/sim/h200-1gib.json`), which agrees with those runs, puts
/// the crossing between 1.4 and 1.5 times (Cholesky of 16 and 24 tiles
/// a side: +6 – 8% up to 1.25 times, +4.5% at 1.3, +3.0% and −3.2% at
/// 1.5, −10 – −17% at 1.75, −26% at 2; BENCHMARKS.md, session 10).
///
/// Memory-bound, the order in which tasks run sets how many bytes cross
/// PCIe: by priority (critical path first) a right-looking factorisation
/// runs ahead into later steps and sweeps more tiles than the memory
/// holds; in submission order each step's tiles are reused before the
/// next step's come in. Measured: a Cholesky of 16 × 16 tiles with room
/// for 32 copied 1,280 tiles in by priority and 555 in submission order
/// (BENCHMARKS.md, session 10).
pub fn memory_bound(live: u64, capacity: u64, now: bool) -> bool {
    let share = if now {
        MEMORY_BOUND_LEAVE
    } else {
        MEMORY_BOUND_ENTER
    };
    live as f64 > share * capacity as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::{ProcessorId, ProcessorKind};

    fn proc(id: u32, memory: u32, gflops: f64, ops: Vec<OpName>) -> ProcessorDesc {
        ProcessorDesc {
            id: ProcessorId(id),
            kind: ProcessorKind::Cpu,
            name: format!("p{id}"),
            memory: MemorySpaceId(memory),
            gflops_f32: gflops,
            gflops_f64: gflops,
            ops,
            dtypes: vec![DType::F32, DType::F64],
        }
    }

    fn load(desc: &ProcessorDesc, queued_seconds: f64, queued_tasks: usize) -> ProcessorLoad<'_> {
        ProcessorLoad {
            desc,
            queued_seconds,
            queued_tasks,
            has_room: true,
            copy_bandwidth: 0.0,
            memory_bytes: None,
            links: None,
            room_seconds: f64::INFINITY,
        }
    }

    #[test]
    fn a_processor_whose_memory_cannot_hold_the_inputs_is_passed_over() {
        // A fast device with a 2 MB budget and a slow CPU; a gemm reading
        // three 1 MB tiles from host memory.
        let ops = OpName::ALL.to_vec();
        let (cpu, gpu) = (proc(0, 0, 100.0, ops.clone()), proc(1, 1, 10_000.0, ops));
        let host = [MemorySpaceId(0)];
        let inputs = [(1u64 << 20, &host[..]); 3];
        let task = PlacementRequest::new(OpName::Gemm, Some(DType::F64), 1e9, &inputs);
        let bounded = |cap: u64| {
            let mut l = load(&gpu, 0.0, 0);
            l.memory_bytes = Some(cap);
            l
        };
        for policy in ["heft", "eager", "milp", "metaheuristic"] {
            let mut pol = by_name(policy, 10e9).unwrap();
            // The CPU is busy: every policy prefers the device it can use.
            let roomy = [load(&cpu, 1.0, 1), bounded(4 << 20)];
            let tight = [load(&cpu, 1.0, 1), bounded(2 << 20)];
            assert_eq!(pol.place(&task, &roomy), Some(1), "{policy}");
            assert_eq!(pol.place(&task, &tight), Some(0), "{policy}");
            assert!(can_run(&task, &roomy[1]) && !can_run(&task, &tight[1]));
            // Nothing else: nowhere to go.
            assert_eq!(pol.place(&task, &tight[1..]), None, "{policy}");
        }
        // A window's costs leave it out there too.
        let both = [task.clone(), task.clone()];
        let tight = [load(&cpu, 0.0, 0), bounded(2 << 20)];
        let costs = crate::window::WindowCosts::new(&both, &tight, 10e9);
        assert!(costs
            .cost
            .iter()
            .all(|row| row[0].is_some() && row[1].is_none()));
    }

    #[test]
    fn pricing_from_the_lowest_bound_chooses_what_pricing_every_processor_would() {
        // Four nodes of a CPU and three GPUs, links with random queues,
        // inputs held in random places (some on many spaces, as replicas
        // spread over a cluster), queues from a few values so that ties
        // happen: the pruned search must pick exactly the processor a
        // full scan of (finish + return + the price of leaving the data's
        // node, bytes from other nodes, index) picks.
        let platform = crate::sim::platform::nodes(4, 3);
        let model = platform.link_model();
        let spaces = platform.bandwidth.len() as u64;
        let mut random = crate::seeded::Seeded::from_state(0x2545_f491_4f6c_dd1d);
        let mut next = move |n: u64| random.below(n);
        let mut eft = EarliestFinish::new(10e9);
        for round in 0..400 {
            let free: Vec<f64> = (0..model.resources)
                .map(|_| next(4) as f64 * 1e-3)
                .collect();
            let links = LinkState {
                model: &model,
                free,
            };
            let holders: Vec<Vec<MemorySpaceId>> = (0..1 + next(4))
                .map(|_| {
                    let most = if next(3) == 0 { spaces } else { 3 };
                    let count = 1 + next(most);
                    (0..count)
                        .map(|_| MemorySpaceId(next(spaces) as u32))
                        .collect()
                })
                .collect();
            let inputs: Vec<(u64, &[MemorySpaceId])> = holders
                .iter()
                .map(|h| ((1 + next(8)) << 20, h.as_slice()))
                .collect();
            let task = PlacementRequest {
                output_bytes: (1 + next(8)) << 20,
                ..PlacementRequest::new(
                    OpName::Gemm,
                    Some(DType::F64),
                    1e9 * next(50) as f64,
                    &inputs,
                )
            };
            let loads: Vec<ProcessorLoad<'_>> = platform
                .processors
                .iter()
                .map(|desc| ProcessorLoad {
                    links: Some(&links),
                    ..load(desc, next(3) as f64 * 1e-3, next(3) as usize)
                })
                .collect();
            let paths = return_paths(&loads, task.dtype, 10e9);
            let home = data_node(&task, &links);
            let work = loads
                .iter()
                .filter(|l| can_run(&task, l))
                .map(|l| exec_seconds(&task, l.desc))
                .fold(f64::INFINITY, f64::min);
            let full_scan = (0..loads.len())
                .map(|p| {
                    let finish = finish_seconds(&task, &loads, p, 10e9)
                        + return_seconds(paths[p], task.output_bytes, &loads[p])
                        + away_seconds(&task, &loads[p], home, work, AWAY_WEIGHT)
                        + exit_seconds(&task, &loads[p], owns(home), work, AWAY_WEIGHT);
                    let node = platform.node[loads[p].desc.memory.0 as usize];
                    let remote: u64 = inputs
                        .iter()
                        .filter(|(_, holders)| {
                            !holders.iter().any(|h| platform.node[h.0 as usize] == node)
                        })
                        .map(|(bytes, _)| *bytes)
                        .sum();
                    Rank {
                        finish,
                        remote,
                        node,
                        queued: loads[p].queued_tasks,
                        index: p,
                    }
                })
                .min_by(|a, b| a.order(b))
                .map(|r| r.index);
            assert_eq!(eft.place(&task, &loads), full_scan, "round {round}");
        }
    }

    #[test]
    fn picks_the_faster_processor_unless_it_is_busy() {
        let slow = proc(0, 0, 10.0, vec![OpName::Gemm]);
        let fast = proc(1, 0, 100.0, vec![OpName::Gemm]);
        let task = PlacementRequest {
            op: OpName::Gemm,
            dtype: Some(DType::F64),
            flops: 1e9,
            inputs: &[],
            input_ids: &[],
            model: None,
            tail: 0.0,
            output_bytes: 0,
            ahead: &[],
            updates: &[],
        };
        let mut eft = EarliestFinish::new(1e10);
        assert_eq!(
            eft.place(&task, &[load(&slow, 0.0, 0), load(&fast, 0.0, 0)]),
            Some(1)
        );
        // 0.01 s on the fast one after 0.5 s of queue loses to 0.1 s on the idle slow one.
        assert_eq!(
            eft.place(&task, &[load(&slow, 0.0, 0), load(&fast, 0.5, 3)]),
            Some(0)
        );
    }

    #[test]
    fn counts_copies_of_missing_inputs() {
        let host = proc(0, 0, 10.0, vec![OpName::Gemm]);
        let gpu = proc(1, 1, 1000.0, vec![OpName::Gemm]);
        let spaces = [MemorySpaceId(0)];
        // 1 GB to copy at 1 GB/s outweighs the faster kernel.
        let inputs = [(1_000_000_000u64, &spaces[..])];
        let task = PlacementRequest {
            op: OpName::Gemm,
            dtype: Some(DType::F64),
            flops: 1e9,
            inputs: &inputs,
            input_ids: &[],
            model: None,
            tail: 0.0,
            output_bytes: 0,
            ahead: &[],
            updates: &[],
        };
        let mut eft = EarliestFinish::new(1e9);
        assert_eq!(
            eft.place(&task, &[load(&host, 0.0, 0), load(&gpu, 0.0, 0)]),
            Some(0)
        );
    }

    #[test]
    fn skips_processors_without_the_op_or_room_and_balances_ties() {
        let a = proc(0, 0, 10.0, vec![OpName::Closure]);
        let b = proc(1, 0, 10.0, vec![OpName::Gemm, OpName::Closure]);
        let task = PlacementRequest {
            op: OpName::Gemm,
            dtype: None,
            flops: 0.0,
            inputs: &[],
            input_ids: &[],
            model: None,
            tail: 0.0,
            output_bytes: 0,
            ahead: &[],
            updates: &[],
        };
        let mut eft = EarliestFinish::new(1e9);
        assert_eq!(
            eft.place(&task, &[load(&a, 0.0, 0), load(&b, 0.0, 5)]),
            Some(1)
        );
        let closure = PlacementRequest {
            op: OpName::Closure,
            ..task.clone()
        };
        assert_eq!(
            eft.place(&closure, &[load(&a, 0.0, 2), load(&b, 0.0, 1)]),
            Some(1)
        );
        let full = ProcessorLoad {
            has_room: false,
            ..load(&b, 0.0, 0)
        };
        assert_eq!(eft.place(&task, &[load(&a, 0.0, 0), full]), None);
    }

    #[test]
    fn ties_go_to_fewer_network_bytes_then_the_first_node_then_the_shorter_queue() {
        // Two nodes of a CPU and two GPUs. A task with nothing to copy
        // finishes as soon on every idle GPU: node 0's, the shorter queue.
        let platform = crate::sim::platform::nodes(2, 2);
        let model = platform.link_model();
        let links = LinkState::idle(&model);
        let loads = |seconds: f64, queued: [usize; 6]| -> Vec<ProcessorLoad<'_>> {
            platform
                .processors
                .iter()
                .zip(queued)
                .map(|(desc, tasks)| ProcessorLoad {
                    links: Some(&links),
                    ..load(desc, seconds, tasks)
                })
                .collect()
        };
        let mut eft = EarliestFinish::new(10e9);
        let task = PlacementRequest::new(OpName::Gemm, Some(DType::F64), 1e9, &[]);
        // Processors: n0.cpu, n0.gpu0, n0.gpu1, n1.cpu, n1.gpu0, n1.gpu1.
        assert_eq!(eft.place(&task, &loads(0.0, [0, 3, 1, 0, 0, 0])), Some(2));
        assert_eq!(eft.place(&task, &loads(0.0, [0, 3, 3, 0, 0, 0])), Some(1));
        // An input in node 1's host memory, and 10 ms queued everywhere:
        // every GPU's copy arrives before its queue ends, so all finish
        // together; node 1's GPUs pull nothing over the network.
        let held = [MemorySpaceId(3)];
        let inputs = [(8u64 << 20, &held[..])];
        let reads = PlacementRequest::new(OpName::Gemm, Some(DType::F64), 1e9, &inputs);
        assert_eq!(eft.place(&reads, &loads(0.01, [0; 6])), Some(4));
        assert_eq!(eft.place(&reads, &loads(0.01, [0, 0, 0, 0, 2, 1])), Some(5));
    }

    #[test]
    fn waits_for_a_full_processor_that_still_finishes_first() {
        let slow = proc(0, 0, 1.0, vec![OpName::Gemm]);
        let fast = proc(1, 0, 1000.0, vec![OpName::Gemm]);
        let task = PlacementRequest {
            op: OpName::Gemm,
            dtype: Some(DType::F64),
            flops: 1e9,
            inputs: &[],
            input_ids: &[],
            model: None,
            tail: 0.0,
            output_bytes: 0,
            ahead: &[],
            updates: &[],
        };
        let mut eft = EarliestFinish::new(1e9);
        let full_fast = ProcessorLoad {
            has_room: false,
            ..load(&fast, 0.01, 4)
        };
        // 1 s on the slow one against 0.011 s after the fast one's queue: wait.
        assert_eq!(eft.place(&task, &[load(&slow, 0.0, 0), full_fast]), None);
    }

    #[test]
    fn routes_around_a_busy_link_and_overlaps_copies_with_queued_work() {
        use crate::arrival::{LinkModel, LinkState};
        let a = proc(0, 1, 1000.0, vec![OpName::Gemm]);
        let b = proc(1, 2, 1000.0, vec![OpName::Gemm]);
        // Host 0 and two GPUs on one node, 1 GB/s everywhere.
        let model = LinkModel::new(vec![vec![1e9; 3]; 3], 0.0, &[0, 0, 0]);
        let host = [MemorySpaceId(0)];
        let inputs = [(1_000_000_000u64, &host[..])];
        let task = PlacementRequest::new(OpName::Gemm, Some(DType::F64), 1e9, &inputs);
        let mut free = vec![0.0; model.resources];
        let to_a = model.route(0, 1).next().unwrap();
        free[to_a] = 2.0;
        let state = LinkState {
            model: &model,
            free,
        };
        let with = |d, q: f64| ProcessorLoad {
            links: Some(&state),
            ..load(d, q, 0)
        };
        // a's link is busy for 2 s: b, with 1.5 s of work queued, still
        // finishes first (its copy runs beside that work: 1.5 + 0.001 s).
        let mut eft = EarliestFinish::new(1e9);
        assert_eq!(eft.place(&task, &[with(&a, 0.0), with(&b, 1.5)]), Some(1));
        let loads = [with(&a, 0.0), with(&b, 1.5)];
        assert!((finish_seconds(&task, &loads, 1, 1e9) - 1.501).abs() < 1e-9);
        assert!((finish_seconds(&task, &loads, 0, 1e9) - 3.001).abs() < 1e-9);
        // Run in priority order, b would run it after 0.2 s of its 1.5.
        let ahead = [0.0, 0.2];
        let first = PlacementRequest {
            ahead: &ahead,
            ..task.clone()
        };
        assert!((finish_seconds(&first, &loads, 1, 1e9) - 1.001).abs() < 1e-9);
    }

    #[test]
    fn a_slow_processor_pays_for_sending_its_outputs_back() {
        let cpu = proc(0, 0, 10.0, vec![OpName::Gemm]);
        let gpu = proc(1, 1, 1000.0, vec![OpName::Gemm]);
        let mut task = PlacementRequest::new(OpName::Gemm, Some(DType::F64), 1e9, &[]);
        // The GPU has 0.5 s queued; the CPU runs the task in 0.1 s.
        let mut eft = EarliestFinish::new(1e9);
        let loads = [load(&cpu, 0.0, 0), load(&gpu, 0.5, 1)];
        assert_eq!(eft.place(&task, &loads), Some(0));
        // With 1 GB to send to the GPU at 1 GB/s, the CPU is done at 1.1 s.
        task.output_bytes = 1_000_000_000;
        assert_eq!(eft.place(&task, &loads), Some(1));
        assert_eq!(
            return_paths(&loads, task.dtype, 1e9),
            vec![Some((MemorySpaceId(1), 1e9)), None]
        );
    }

    /// A GEMM of f64 1024 tiles (8 MiB out) reading `inputs`.
    fn gemm_1024<'a>(inputs: &'a [(u64, &'a [MemorySpaceId])]) -> PlacementRequest<'a> {
        PlacementRequest {
            output_bytes: 8 << 20,
            ..PlacementRequest::new(
                OpName::Gemm,
                Some(DType::F64),
                2.0 * 1024f64.powi(3),
                inputs,
            )
        }
    }

    /// Every processor of `platform` idle but node 0's, which have
    /// `queued` seconds of work.
    fn node_0_busy<'a>(
        platform: &'a crate::sim::platform::Platform,
        links: &'a LinkState<'a>,
        queued: f64,
    ) -> Vec<ProcessorLoad<'a>> {
        platform
            .processors
            .iter()
            .map(|desc| {
                let on_0 = platform.node[desc.memory.0 as usize] == 0;
                ProcessorLoad {
                    links: Some(links),
                    ..load(desc, if on_0 { queued } else { 0.0 }, 0)
                }
            })
            .collect()
    }

    /// `task`'s data node as HEFT finds it.
    fn owns(home: Option<Home>) -> bool {
        home.is_some_and(|h| h.owns)
    }

    fn data_node(task: &PlacementRequest<'_>, links: &LinkState<'_>) -> Option<Home> {
        let mut held = Held::default();
        held.fill(task, links.model.bandwidth.len(), Some(links));
        held.data_node(task)
    }

    #[test]
    fn leaves_its_data_node_only_when_the_wait_there_outweighs_the_network() {
        // Two nodes of a CPU and a GPU; both inputs (8 MiB each) on node
        // 0's GPU; the task's work is 43 µs on a GPU, its inputs take
        // 1.3 ms to cross to node 1 and its output 0.7 ms back.
        let platform = crate::sim::platform::nodes(2, 1);
        let model = platform.link_model();
        let links = LinkState::idle(&model);
        let on_gpu0 = [MemorySpaceId(1)];
        let inputs = [(8u64 << 20, &on_gpu0[..]), (8u64 << 20, &on_gpu0[..])];
        let task = gemm_1024(&inputs);
        let node = |p: usize| platform.node[platform.processors[p].memory.0 as usize];
        let loads = |queued: f64| node_0_busy(&platform, &links, queued);
        let home = data_node(&task, &links);
        assert_eq!(
            home,
            Some(Home {
                node: 0,
                owns: false
            })
        );
        // Node 0 busy for 2 ms: node 1's GPU finishes first, yet the task
        // stays, since its output must cross back and the crossings are
        // 15 times its work.
        let busy = loads(2e-3);
        assert!(finish_seconds(&task, &busy, 3, 1e9) < finish_seconds(&task, &busy, 1, 1e9));
        let mut eft = EarliestFinish::new(1e9);
        assert_eq!(eft.place(&task, &busy).map(node), Some(0));
        let mut no_price = EarliestFinish {
            away_weight: 0.0,
            ..EarliestFinish::new(1e9)
        };
        assert_eq!(no_price.place(&task, &busy).map(node), Some(1));
        // Busy for 50 ms: waiting costs more than the network; it goes.
        assert_eq!(eft.place(&task, &loads(50e-3)).map(node), Some(1));
        // The price: none on the data's node or on one node; the same on
        // a slow processor as on a fast one (the task's work is its best
        // time); less, the more work the task does for its crossing, and
        // none once the crossing takes under twice the work.
        let idle = loads(0.0);
        let work = exec_seconds(&task, &platform.processors[3]);
        assert_eq!(away_seconds(&task, &idle[1], home, work, AWAY_WEIGHT), 0.0);
        let price = away_seconds(&task, &idle[3], home, work, AWAY_WEIGHT);
        let crossing = model.latency + (8u64 << 20) as f64 / 12.5e9;
        let expected = AWAY_WEIGHT * crossing * (crossing / work - 2.0);
        assert!((price - expected).abs() < 1e-12 && price > 5e-3, "{price}");
        assert_eq!(
            away_seconds(&task, &idle[2], home, work, AWAY_WEIGHT),
            price
        );
        assert!(away_seconds(&task, &idle[3], home, 3.0 * work, AWAY_WEIGHT) < price / 4.0);
        assert_eq!(
            away_seconds(&task, &idle[3], home, 10.0 * work, AWAY_WEIGHT),
            0.0
        );
        let one = crate::sim::platform::nodes(1, 2).link_model();
        assert_eq!(data_node(&task, &LinkState::idle(&one)), None);
    }

    #[test]
    fn a_task_updating_a_tile_belongs_to_the_node_holding_it() {
        // Two nodes of a CPU and a GPU (spaces 0, 1 on node 0; 2, 3 on 1).
        // The task reads two tiles on node 0 and updates one on node 1.
        let platform = crate::sim::platform::nodes(2, 1);
        let model = platform.link_model();
        let links = LinkState::idle(&model);
        let (on_0, on_1, on_both) = (
            [MemorySpaceId(1)],
            [MemorySpaceId(3)],
            [MemorySpaceId(1), MemorySpaceId(2)],
        );
        let inputs = [
            (8u64 << 20, &on_0[..]),
            (8u64 << 20, &on_0[..]),
            (8u64 << 20, &on_1[..]),
        ];
        let reads_only = PlacementRequest::new(OpName::Gemm, Some(DType::F64), 1e9, &inputs);
        let node = |t: &PlacementRequest<'_>| data_node(t, &links).map(|h| (h.node, h.owns));
        assert_eq!(node(&reads_only), Some((0, false)));
        let update = PlacementRequest {
            updates: &[2],
            ..reads_only.clone()
        };
        assert_eq!(node(&update), Some((1, true)));
        // Held on both nodes, the tile names no owner: input bytes decide.
        let shared = [
            (8u64 << 20, &on_0[..]),
            (8u64 << 20, &on_0[..]),
            (8u64 << 20, &on_both[..]),
        ];
        let update_shared = PlacementRequest {
            updates: &[2],
            ..PlacementRequest::new(OpName::Gemm, Some(DType::F64), 1e9, &shared)
        };
        assert_eq!(node(&update_shared), Some((0, false)));
    }

    #[test]
    fn on_a_fast_network_an_update_stays_with_its_tiles_owner() {
        // Two nodes of a CPU and a GPU, 200 GB/s between them: an 8 MiB
        // tile crosses in about the time of a GEMM on it, so leaving the
        // node of the task's inputs is free, but leaving the owner of the
        // tile it updates is not.
        let platform = crate::sim::platform::nodes_over(2, 1, 200e9);
        let model = platform.link_model();
        let links = LinkState::idle(&model);
        let on_gpu0 = [MemorySpaceId(1)];
        let inputs = [
            (8u64 << 20, &on_gpu0[..]),
            (8u64 << 20, &on_gpu0[..]),
            (8u64 << 20, &on_gpu0[..]),
        ];
        let reads = gemm_1024(&inputs);
        let updates = PlacementRequest {
            updates: &[2],
            ..reads.clone()
        };
        let node = |p: usize| platform.node[platform.processors[p].memory.0 as usize];
        // Node 0's GPU busy for 1 ms, node 1's idle.
        let loads: Vec<ProcessorLoad<'_>> = platform
            .processors
            .iter()
            .map(|desc| ProcessorLoad {
                links: Some(&links),
                ..load(desc, if desc.id.0 == 1 { 1e-3 } else { 0.0 }, 0)
            })
            .collect();
        let mut eft = EarliestFinish::new(1e9);
        assert_eq!(eft.place(&reads, &loads).map(node), Some(1));
        assert_eq!(eft.place(&updates, &loads).map(node), Some(0));
        let work = exec_seconds(&updates, &platform.processors[3]);
        let (owner, reader) = (data_node(&updates, &links), data_node(&reads, &links));
        assert_eq!(
            away_seconds(&reads, &loads[3], reader, work, AWAY_WEIGHT),
            0.0
        );
        let price = away_seconds(&updates, &loads[3], owner, work, AWAY_WEIGHT);
        let crossing = model.latency + (8u64 << 20) as f64 / 200e9;
        let expected = AWAY_WEIGHT * AWAY_OWNER_FACTOR * crossing * crossing / work;
        assert!((price - expected).abs() < 1e-12 && price > 1e-3, "{price}");
        // The weight scales both prices; 0 turns both off.
        assert_eq!(away_seconds(&updates, &loads[3], owner, work, 0.0), 0.0);
        // Waiting 50 ms at the owner costs more than leaving: it goes.
        let long = node_0_busy(&platform, &links, 50e-3);
        assert_eq!(eft.place(&updates, &long).map(node), Some(1));
    }

    #[test]
    fn on_a_fast_network_work_others_read_avoids_a_node_whose_way_out_is_queued() {
        // Three nodes of a CPU and a GPU (spaces 0, 1 on node 0; 2, 3 on
        // 1; 4, 5 on 2), 200 GB/s between nodes. The task reads a tile
        // held on node 0's and node 2's GPUs and updates nothing; node 0's
        // GPU could start it soonest, but its interface out has 2 ms of
        // copies queued.
        let platform = crate::sim::platform::nodes_over(3, 1, 200e9);
        let model = platform.link_model();
        let mut links = LinkState::idle(&model);
        links.free[model.nic_out(0)] = 2e-3;
        let held = [MemorySpaceId(1), MemorySpaceId(5)];
        let inputs = [(8u64 << 20, &held[..])];
        let task = gemm_1024(&inputs);
        let queued = [0.0, 0.1e-3, 0.0, 0.5e-3, 0.0, 5e-3];
        let loads: Vec<ProcessorLoad<'_>> = platform
            .processors
            .iter()
            .map(|desc| ProcessorLoad {
                links: Some(&links),
                ..load(desc, queued[desc.memory.0 as usize], 0)
            })
            .collect();
        let space = |p: Option<usize>| p.map(|p| platform.processors[p].memory.0);
        let mut eft = EarliestFinish::new(1e9);
        assert_eq!(space(eft.place(&task, &loads)), Some(3), "node 1's GPU");
        let mut no_price = EarliestFinish {
            away_weight: 0.0,
            ..EarliestFinish::new(1e9)
        };
        assert_eq!(
            space(no_price.place(&task, &loads)),
            Some(1),
            "node 0's GPU"
        );
        // The price: a quarter of the weight times the backlog out, on
        // every processor of the node; none elsewhere, none for a task
        // updating an owned tile, none on a network slow beside the work.
        let home = data_node(&task, &links);
        let work = exec_seconds(&task, &platform.processors[1]);
        let exit = |p: usize, h: Option<Home>, w: f64| {
            exit_seconds(&task, &loads[p], owns(h), w, AWAY_WEIGHT)
        };
        assert!((exit(1, home, work) - AWAY_WEIGHT * 0.25 * 2e-3).abs() < 1e-15);
        assert_eq!(exit(0, home, work), exit(1, home, work));
        assert_eq!(exit(3, home, work), 0.0);
        let owner = Some(Home {
            node: 0,
            owns: true,
        });
        assert_eq!(exit(1, owner, work), 0.0);
        assert_eq!(exit(1, home, work / 10.0), 0.0);
    }

    #[test]
    fn respects_element_types() {
        let mut f32_only = proc(0, 1, 1000.0, vec![OpName::Gemm]);
        f32_only.dtypes = vec![DType::F32];
        let cpu = proc(1, 0, 10.0, vec![OpName::Gemm]);
        let mut eft = EarliestFinish::new(1e9);
        let f64_task = PlacementRequest {
            op: OpName::Gemm,
            dtype: Some(DType::F64),
            flops: 1e9,
            inputs: &[],
            input_ids: &[],
            model: None,
            tail: 0.0,
            output_bytes: 0,
            ahead: &[],
            updates: &[],
        };
        assert_eq!(
            eft.place(&f64_task, &[load(&f32_only, 0.0, 0), load(&cpu, 0.0, 0)]),
            Some(1)
        );
        let f32_task = PlacementRequest {
            dtype: Some(DType::F32),
            ..f64_task
        };
        assert_eq!(
            eft.place(&f32_task, &[load(&f32_only, 0.0, 0), load(&cpu, 0.0, 0)]),
            Some(0)
        );
    }

    #[test]
    fn a_run_is_memory_bound_past_a_margin_and_leaves_below_a_lower_one() {
        let gb = 1u64 << 30;
        // 1.3 times the devices' memory: not yet; 1.5 times: yes.
        assert!(!memory_bound(13 * gb / 10, gb, false));
        assert!(memory_bound(15 * gb / 10, gb, false));
        // Once in, it stays down to 1.25 times, and leaves below.
        assert!(memory_bound(13 * gb / 10, gb, true));
        assert!(!memory_bound(12 * gb / 10, gb, true));
    }
}
