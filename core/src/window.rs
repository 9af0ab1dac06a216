//! Scoring a placement of a window of ready tasks, shared by the MILP and
//! the metaheuristic so that both optimise, and are compared on, the same
//! thing.
//!
//! A plan puts each task of the window on a processor. Tasks join their
//! processor's queue in window order (the order the caller gives, highest
//! priority first); their copies queue on the links into its memory
//! ([`crate::arrival`]: behind what each link already carries and the
//! window's earlier copies), beside compute. A task finishes its work after
//! the work queued before it on its processor and after its inputs arrive,
//! whichever is later; the processor's queue grows by its work alone (while
//! it waits for its inputs, later tasks whose data is there may run), as
//! the load a list policy sees after each decision does.
//! What matters is not when the window ends but when the graph can: a task
//! that finishes late but has nothing behind it costs nothing, while one
//! on the critical path delays everything after it. So a plan's score is
//! the largest `finish + tail` over its tasks (the earliest the graph could
//! end given this window, `tail` being the work that must follow each
//! task), plus a small weight on the sum of finishes, which prefers, of
//! plans with equal critical ends, the one that frees processors sooner.
//!
//! Scores stay times: they leave out the price HEFT charges for running a
//! task away from its data's node ([`crate::policy::away_seconds`]), a
//! stand-in for the copies later tasks will make, since a window plays its
//! own copies on the links. With the price in the scores, the MILP ended
//! cholesky:30 on the simulated cluster 5.3% after HEFT (session 7's
//! price); with the final one, no cluster case changed (session 8).
//! Instead the window policies leave the choice of node to the list rule,
//! which charges those prices, and search only within the nodes its plan
//! chose ([`WindowCosts::keep_to_nodes`]).

use crate::arrival::{LinkClock, LinkState};
use crate::policy::{
    can_run, exec_seconds, missing_bytes, node_of, return_paths, return_seconds, PlacementRequest,
    ProcessorLoad,
};
use crate::processor::MemorySpaceId;

/// Weight of the sum of finishes against the critical end.
const SUM_WEIGHT: f64 = 1e-3;

/// Least fraction of the list plan's score a searched plan must save to
/// replace the list rule ([`WindowCosts::beats`]). A score is an estimate
/// of one window's end, not of the graph's, and plans it rated a few
/// percent better often ended the graph later: on the simulation suite,
/// accepting any better plan left the windows 0.05% behind HEFT on a GPU
/// node; accepting 1% better, up to 20% behind on the cluster (lu:24);
/// 5%, within 0.02% of HEFT on every case (BENCHMARKS.md, session 6).
/// Once HEFT priced leaving a task's data node, 5% left them up to 0.10%
/// behind (layered:20000 on the cluster); 10%, at or ahead of HEFT on
/// every case (session 8). With owner computes and a 2D start on the
/// cluster, two plans rated 12% and 15% better ended cholesky:48 1.9%
/// after HEFT (two rated 14% and 15% better ended cholesky:30 0.6%
/// sooner): past 15%, at or ahead of HEFT on every case (session 11). A
/// window's score knows nothing of the network the graph's end waits
/// for; on a tie the list rule's exact one-by-one decisions are the
/// better bet.
pub const MIN_GAIN: f64 = 0.15;

/// One input of a window task: its identity (where known), bytes and the
/// spaces holding a valid copy.
#[derive(Debug, Clone)]
struct Input {
    id: Option<u64>,
    bytes: u64,
    holders: Vec<MemorySpaceId>,
}

/// The costs a window's plans are scored with.
#[derive(Debug, Clone)]
pub struct WindowCosts<'a> {
    /// `cost[t][p]`: seconds of task `t` on processor `p`, its work and its
    /// copies' time on their links (`None`: it cannot run there).
    pub cost: Vec<Vec<Option<f64>>>,
    /// `copy[t][p]`: the copies' part of `cost`.
    pub copy: Vec<Vec<f64>>,
    /// `ready[t][p]`: when task `t`'s inputs would be in `p`'s memory were
    /// it the window's only task there (links' queues included).
    pub ready: Vec<Vec<f64>>,
    /// `back[t][p]`: seconds for task `t`'s outputs to reach a fast
    /// processor from `p` ([`return_seconds`]; 0 on the fast ones), added
    /// to its finish, as the links stand before the window (the score
    /// adds the waits behind the window's own copies too).
    pub back: Vec<Vec<f64>>,
    /// Per task and processor: where its outputs go and at what rate
    /// ([`return_paths`]), and the bytes.
    paths: Vec<Vec<Option<(MemorySpaceId, f64)>>>,
    outputs: Vec<u64>,
    /// Seconds already queued on each processor.
    pub queue: Vec<f64>,
    /// `ahead[t][p]`: seconds of that queue that run before task `t`
    /// ([`PlacementRequest::ahead`]; `queue[p]` where not given).
    pub ahead: Vec<Vec<f64>>,
    /// Each task's tail.
    pub tail: Vec<f64>,
    /// Seconds of work alone, per task and processor.
    exec: Vec<Vec<Option<f64>>>,
    inputs: Vec<Vec<Input>>,
    /// Per processor: its memory space, and the copy rate into it where
    /// there is no link state.
    space: Vec<MemorySpaceId>,
    bandwidth: Vec<f64>,
    /// The links and their queues, where the caller knows them.
    links: Option<&'a LinkState<'a>>,
    /// Per processor: the work a window may give it
    /// ([`ProcessorLoad::room_seconds`]).
    room: Vec<f64>,
    /// The bounded memory spaces: what each holds and the processors in it.
    bounded: Vec<(u64, Vec<usize>)>,
    /// Per processor: its memory space's index in `bounded`, if bounded.
    bounded_of: Vec<Option<usize>>,
    /// `missing[t][p]`: bytes of task `t`'s inputs not in `p`'s memory.
    missing: Vec<Vec<u64>>,
    /// Whether the processors are alike ([`WindowCosts::interchangeable`]).
    alike: bool,
    /// The node each processor is on (0 without link state).
    node: Vec<usize>,
}

/// A plan being played out: the window's work added to each processor
/// (after what was queued ahead of each task), the links, and the inputs
/// copied so far (item, space, arrival).
struct Play<'w> {
    added: Vec<f64>,
    links: LinkClock<'w>,
    copied: Vec<(u64, MemorySpaceId, f64)>,
}

impl<'a> WindowCosts<'a> {
    /// Costs of `tasks` on `procs`, charging missing inputs at each
    /// processor's copy bandwidth (or `default_bandwidth`).
    pub fn new(
        tasks: &[PlacementRequest<'_>],
        procs: &[ProcessorLoad<'a>],
        default_bandwidth: f64,
    ) -> Self {
        let exec: Vec<Vec<Option<f64>>> = tasks
            .iter()
            .map(|t| {
                procs
                    .iter()
                    .map(|p| can_run(t, p).then(|| exec_seconds(t, p.desc)))
                    .collect()
            })
            .collect();
        let bandwidth: Vec<f64> = procs
            .iter()
            .map(|p| p.copy_rate(default_bandwidth))
            .collect();
        let links = procs.iter().find_map(|p| p.links);
        let mut by_dtype: Vec<(Option<crate::dtype::DType>, Vec<_>)> = Vec::new();
        let paths: Vec<Vec<Option<(MemorySpaceId, f64)>>> = tasks
            .iter()
            .map(|t| {
                let i = match by_dtype.iter().position(|(d, _)| *d == t.dtype) {
                    Some(i) => i,
                    None => {
                        by_dtype.push((t.dtype, return_paths(procs, t.dtype, default_bandwidth)));
                        by_dtype.len() - 1
                    }
                };
                by_dtype[i].1.clone()
            })
            .collect();
        let back = tasks
            .iter()
            .zip(&paths)
            .map(|(t, row)| {
                row.iter()
                    .zip(procs)
                    .map(|(path, load)| return_seconds(*path, t.output_bytes, load))
                    .collect()
            })
            .collect();
        // Each task alone on each processor: its copies' link time, and
        // when they would arrive.
        let (mut copy, mut ready) = (Vec::new(), Vec::new());
        for t in tasks {
            let (mut copies, mut readies) = (Vec::new(), Vec::new());
            for (p, load) in procs.iter().enumerate() {
                let mut clock = LinkClock::new(links);
                let (space, bw) = (load.desc.memory, bandwidth[p]);
                let (mut secs, mut at) = (0.0, 0.0f64);
                for (bytes, holders) in t.inputs {
                    if holders.contains(&space) {
                        continue;
                    }
                    secs += clock.occupancy(*bytes, holders, space, bw);
                    at = at.max(clock.copy(*bytes, holders, space, bw));
                }
                copies.push(secs);
                readies.push(at);
            }
            copy.push(copies);
            ready.push(readies);
        }
        // Processors sharing a bounded space share its room.
        let mut bounded: Vec<(u64, Vec<usize>)> = Vec::new();
        let mut bounded_of: Vec<Option<usize>> = vec![None; procs.len()];
        for (p, load) in procs.iter().enumerate() {
            let Some(room) = load.memory_bytes else {
                continue;
            };
            let same = (0..p).find(|q| procs[*q].desc.memory == load.desc.memory);
            match same.and_then(|q| bounded_of[q]) {
                Some(b) => {
                    bounded[b].1.push(p);
                    bounded_of[p] = Some(b);
                }
                None => {
                    bounded_of[p] = Some(bounded.len());
                    bounded.push((room, vec![p]));
                }
            }
        }
        WindowCosts {
            cost: exec
                .iter()
                .zip(&copy)
                .map(|(row, copies)| {
                    row.iter()
                        .zip(copies)
                        .map(|(e, c)| e.map(|e| e + c))
                        .collect()
                })
                .collect(),
            copy,
            ready,
            back,
            paths,
            outputs: tasks.iter().map(|t| t.output_bytes).collect(),
            exec,
            inputs: tasks
                .iter()
                .map(|t| {
                    t.inputs
                        .iter()
                        .enumerate()
                        .map(|(i, (bytes, holders))| Input {
                            id: t.input_ids.get(i).copied(),
                            bytes: *bytes,
                            holders: holders.to_vec(),
                        })
                        .collect()
                })
                .collect(),
            queue: procs.iter().map(|p| p.queued_seconds).collect(),
            ahead: tasks
                .iter()
                .map(|t| {
                    (0..procs.len())
                        .map(|p| crate::policy::queued_ahead(t, &procs[p], p))
                        .collect()
                })
                .collect(),
            tail: tasks.iter().map(|t| t.tail.max(0.0)).collect(),
            space: procs.iter().map(|p| p.desc.memory).collect(),
            alike: procs.split_first().is_some_and(|(first, rest)| {
                let d = first.desc;
                rest.iter().all(|p| {
                    let e = p.desc;
                    (e.memory, e.kind, e.gflops_f32, e.gflops_f64)
                        == (d.memory, d.kind, d.gflops_f32, d.gflops_f64)
                        && (e.ops.as_slice(), e.dtypes.as_slice())
                            == (d.ops.as_slice(), d.dtypes.as_slice())
                })
            }),
            node: procs.iter().map(node_of).collect(),
            bandwidth,
            links,
            room: procs.iter().map(|p| p.room_seconds).collect(),
            bounded,
            bounded_of,
            missing: tasks
                .iter()
                .map(|t| {
                    procs
                        .iter()
                        .map(|p| missing_bytes(t, p.desc.memory))
                        .collect()
                })
                .collect(),
        }
    }

    /// Costs given directly (no inputs), for tests and callers with their
    /// own estimates.
    pub fn from_costs(
        cost: Vec<Vec<Option<f64>>>,
        queue: Vec<f64>,
        tail: Vec<f64>,
    ) -> WindowCosts<'static> {
        let n = queue.len();
        let zeros = vec![vec![0.0; n]; cost.len()];
        WindowCosts {
            exec: cost.clone(),
            inputs: vec![Vec::new(); cost.len()],
            copy: zeros.clone(),
            ready: zeros.clone(),
            back: zeros,
            paths: vec![vec![None; n]; cost.len()],
            outputs: vec![0; cost.len()],
            missing: vec![vec![0; n]; cost.len()],
            ahead: vec![queue.clone(); cost.len()],
            cost,
            queue,
            tail,
            space: (0..n).map(|p| MemorySpaceId(p as u32)).collect(),
            alike: false,
            node: vec![0; n],
            bandwidth: vec![1.0; n],
            links: None,
            room: vec![f64::INFINITY; n],
            bounded: Vec::new(),
            bounded_of: vec![None; n],
        }
    }

    /// The same costs with each processor's room given
    /// ([`ProcessorLoad::room_seconds`]), for callers of [`Self::from_costs`].
    pub fn with_room(mut self, room: Vec<f64>) -> Self {
        self.room = room;
        self
    }

    pub fn tasks(&self) -> usize {
        self.cost.len()
    }

    pub fn processors(&self) -> usize {
        self.queue.len()
    }

    /// Whether every task can run somewhere.
    pub fn feasible(&self) -> bool {
        self.cost.iter().all(|row| row.iter().any(Option::is_some))
    }

    /// A plan's play before its first task.
    fn play(&self) -> Play<'a> {
        Play {
            added: vec![0.0; self.queue.len()],
            links: LinkClock::new(self.links),
            copied: Vec::new(),
        }
    }

    /// When task `t`'s inputs would be in processor `p`'s memory, queuing
    /// its copies on `links` and adding them
    /// to `new`, if given. An input an earlier window task copied to the
    /// same space (`earlier`) arrives with that copy.
    fn arrive(
        &self,
        t: usize,
        p: usize,
        earlier: &[(u64, MemorySpaceId, f64)],
        links: &mut LinkClock<'_>,
        mut new: Option<&mut Vec<(u64, MemorySpaceId, f64)>>,
    ) -> f64 {
        let space = self.space[p];
        let mut ready = 0.0f64;
        for i in &self.inputs[t] {
            if i.holders.contains(&space) {
                continue;
            }
            let before = i.id.and_then(|id| {
                earlier
                    .iter()
                    .find(|(d, s, _)| *d == id && *s == space)
                    .map(|(_, _, at)| *at)
            });
            let at = match before {
                Some(at) => at,
                None => {
                    // From its holders, or where an earlier window task
                    // copies it, once it is there.
                    let moving = i.id.into_iter().flat_map(|id| {
                        earlier
                            .iter()
                            .filter(move |(d, _, _)| *d == id)
                            .map(|(_, s, at)| (*s, *at))
                    });
                    let sources = i.holders.iter().map(|h| (*h, 0.0)).chain(moving);
                    let at = links.copy_from(i.bytes, sources, space, self.bandwidth[p]);
                    if let (Some(id), Some(new)) = (i.id, new.as_deref_mut()) {
                        new.push((id, space, at));
                    }
                    at
                }
            };
            ready = ready.max(at);
        }
        ready
    }

    /// Seconds for task `t`'s outputs to leave processor `p` in `play`:
    /// behind the links' queues, the window's copies included.
    fn back_in(&self, play: &Play<'_>, t: usize, p: usize) -> f64 {
        match self.paths[t][p] {
            None => 0.0,
            Some((to, rate)) => play.links.wait(self.space[p], to) + self.outputs[t] as f64 / rate,
        }
    }

    /// When task `t` would finish on processor `p` in `play`, without
    /// changing it (`None`: it cannot run there, or the window already
    /// gave `p` its room).
    fn trial(&self, play: &Play<'_>, t: usize, p: usize) -> Option<f64> {
        let exec = self.exec[t].get(p).copied().flatten()?;
        if play.added[p] >= self.room[p] {
            return None;
        }
        let mut links = play.links.clone();
        let ready = self.arrive(t, p, &play.copied, &mut links, None);
        Some((self.ahead[t][p] + play.added[p]).max(ready) + exec)
    }

    /// Puts task `t` on processor `p` in `play`; returns when it finishes
    /// (`None`: it cannot run there, or `p` has no room left).
    fn place(&self, play: &mut Play<'_>, t: usize, p: usize) -> Option<f64> {
        let exec = self.exec[t].get(p).copied().flatten()?;
        if play.added[p] >= self.room[p] {
            return None;
        }
        let mut new = Vec::new();
        let ready = self.arrive(t, p, &play.copied, &mut play.links, Some(&mut new));
        play.copied.extend(new);
        let finish = (self.ahead[t][p] + play.added[p]).max(ready) + exec;
        // The processor is busy for the work alone: while this task waits
        // for its inputs, later tasks whose data is there may run (as the
        // runtime's workers and the simulator's processors do). This is
        // the load a list policy sees after each decision.
        play.added[p] += exec;
        Some(finish)
    }

    /// The bounded memory spaces, each with its size and the processors
    /// in it: a window may send each at most that many new bytes.
    pub fn bounded_spaces(&self) -> &[(u64, Vec<usize>)] {
        &self.bounded
    }

    /// Bytes of task `t`'s inputs missing from processor `p`'s memory.
    pub fn missing_bytes(&self, t: usize, p: usize) -> u64 {
        self.missing[t][p]
    }

    /// Whether `plan` sends no bounded space more new bytes than it holds.
    pub fn fits(&self, plan: &[usize]) -> bool {
        let mut sent = vec![0u64; self.bounded.len()];
        plan.iter().enumerate().all(|(t, p)| {
            let room = self.has_room(&sent, t, *p);
            self.send(&mut sent, t, *p);
            room
        })
    }

    /// Whether processor `p`'s memory, with `sent` new bytes per bounded
    /// space already coming, holds task `t`'s too.
    fn has_room(&self, sent: &[u64], t: usize, p: usize) -> bool {
        self.bounded(p)
            .is_none_or(|b| sent[b] + self.missing[t][p] <= self.bounded[b].0)
    }

    /// Adds task `t`'s new bytes on processor `p` to `sent`.
    fn send(&self, sent: &mut [u64], t: usize, p: usize) {
        if let Some(b) = self.bounded(p) {
            sent[b] += self.missing[t][p];
        }
    }

    /// Processor `p`'s bounded space, if it has one (none for an index
    /// past the processors: [`Self::score`] refuses those plans itself).
    fn bounded(&self, p: usize) -> Option<usize> {
        self.bounded_of.get(p).copied().flatten()
    }

    /// Whether `plan` scores at least [`MIN_GAIN`] better than `start`
    /// (the list plan).
    pub fn beats(&self, plan: &[usize], start: &[usize]) -> bool {
        self.score(plan) < (1.0 - MIN_GAIN) * self.score(start)
    }

    /// The score of `plan` (processor index per task; lower is better), or
    /// infinity if it puts a task where it cannot run or sends a bounded
    /// memory more than it holds. An input that two tasks on one memory
    /// space read is copied there once.
    pub fn score(&self, plan: &[usize]) -> f64 {
        if !self.fits(plan) {
            return f64::INFINITY;
        }
        let mut play = self.play();
        let (mut end, mut sum) = (0.0f64, 0.0f64);
        for (t, p) in plan.iter().enumerate() {
            let Some(finish) = self.place(&mut play, t, *p) else {
                return f64::INFINITY;
            };
            let finish = finish + self.back_in(&play, t, *p);
            end = end.max(finish + self.tail[t]);
            sum += finish;
        }
        end + SUM_WEIGHT * sum
    }

    /// Whether no task of the window could finish anywhere but where
    /// `plan` puts it before `plan`'s last task finishes, even on an idle
    /// processor with its data in place. Then moving a task can gain no
    /// more than its own time where it is, less than a search costs: the
    /// window policies keep the list plan (a GPU beside CPU workers that
    /// take a hundred times longer is the common case). So too when the
    /// processors are interchangeable ([`WindowCosts::interchangeable`]).
    pub fn nothing_to_move(&self, plan: &[usize]) -> bool {
        if self.interchangeable() {
            return true;
        }
        let mut play = self.play();
        let mut end = 0.0f64;
        for (t, p) in plan.iter().enumerate() {
            match self.place(&mut play, t, *p) {
                Some(f) => end = end.max(f),
                None => return false,
            }
        }
        plan.iter().enumerate().all(|(t, p)| {
            self.exec[t]
                .iter()
                .enumerate()
                .all(|(q, e)| q == *p || e.is_none_or(|e| e >= end))
        })
    }

    /// Whether the processors are alike: one memory, one kind, the same
    /// peak rates and ops (what each has learned of its own times aside).
    /// A plan can then only share equal work out differently, which the
    /// list rule does a task at a time. Searching
    /// costs the CPU workers themselves here: on dev-2c the MILP planned
    /// 787 windows in 0.83 s of a core the two workers needed, and the
    /// Cholesky (n 8192) ran at 38 – 39 GFLOP/s against HEFT's 47 – 49
    /// (BENCHMARKS.md, session 11).
    pub fn interchangeable(&self) -> bool {
        self.alike
    }

    /// Keeps each task to the node `plan` puts it on: a search may then
    /// move it only between that node's processors.
    ///
    /// A window's score plays its own copies on the links but not the
    /// copies later tasks will make across the network, which HEFT's
    /// prices stand for ([`crate::policy::away_seconds`],
    /// [`crate::policy::exit_seconds`]). Plans that moved tasks between
    /// nodes for a score 15% better than the list plan's ended graphs
    /// later: layered:20000 on `cluster-16x4-fast` 35% after HEFT once
    /// the ranks counted edges' copies (session 13), layered:5000 0.19%
    /// (session 12). Where a task's node is, the list rule decides.
    pub fn keep_to_nodes(&mut self, plan: &[usize]) {
        for (t, p) in plan.iter().enumerate() {
            let node = self.node[*p];
            for q in 0..self.processors() {
                if self.node[q] != node {
                    self.cost[t][q] = None;
                    self.exec[t][q] = None;
                }
            }
        }
    }

    /// The list plan: each task in window order on the processor where it
    /// would finish first, counting the copies earlier tasks made (HEFT's
    /// rule, one decision after another), or `None` if a task can run
    /// nowhere.
    pub fn list_plan(&self) -> Option<Vec<usize>> {
        let mut play = self.play();
        // New bytes sent so far to each bounded space, against its room
        // (a full space is passed over while another can take the task).
        let mut sent = vec![0u64; self.bounded.len()];
        (0..self.tasks())
            .map(|t| {
                let any_fits = (0..self.processors())
                    .any(|p| self.exec[t][p].is_some() && self.has_room(&sent, t, p));
                let (p, _) = (0..self.processors())
                    .filter(|p| !any_fits || self.has_room(&sent, t, *p))
                    .filter_map(|p| Some((p, self.trial(&play, t, p)? + self.back_in(&play, t, p))))
                    .min_by(|a, b| a.1.total_cmp(&b.1))?;
                self.place(&mut play, t, p);
                self.send(&mut sent, t, p);
                Some(p)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn costs(cost: Vec<Vec<Option<f64>>>, queue: Vec<f64>, tail: Vec<f64>) -> WindowCosts<'static> {
        WindowCosts::from_costs(cost, queue, tail)
    }

    #[test]
    fn a_task_with_a_long_tail_decides_the_score() {
        // Task 0 has 10 s of work behind it, task 1 none. On one processor
        // in window order task 0 ends at 1 (score 11); putting task 1 first
        // is not possible (window order), but putting task 0 on the slow
        // processor ends it at 3 (score 13).
        let w = costs(
            vec![vec![Some(1.0), Some(3.0)], vec![Some(1.0), Some(3.0)]],
            vec![0.0, 0.0],
            vec![10.0, 0.0],
        );
        let fast_first = w.score(&[0, 0]);
        let slow_critical = w.score(&[1, 0]);
        assert!((fast_first - (11.0 + SUM_WEIGHT * 3.0)).abs() < 1e-12);
        assert!(fast_first < slow_critical);
        assert_eq!(w.score(&[0, 7]), f64::INFINITY);
        assert_eq!(w.list_plan(), Some(vec![0, 0]));
    }

    #[test]
    fn a_window_no_other_processor_could_finish_sooner_has_nothing_to_move() {
        // A fast processor runs each of three tasks in 1 s; another takes
        // 5 s: the list plan ends at 3 s and nothing could move.
        let slow = costs(
            vec![vec![Some(1.0), Some(5.0)]; 3],
            vec![0.0, 0.0],
            vec![0.0; 3],
        );
        let plan = slow.list_plan().unwrap();
        assert_eq!(plan, vec![0, 0, 0]);
        assert!(slow.nothing_to_move(&plan));
        // At 2 s the other could finish a task before 3 s.
        let near = costs(
            vec![vec![Some(1.0), Some(2.0)]; 3],
            vec![0.0, 0.0],
            vec![0.0; 3],
        );
        let plan = near.list_plan().unwrap();
        assert!(!near.nothing_to_move(&plan));
    }

    #[test]
    fn a_processor_gets_no_more_than_its_room_and_the_rest_goes_elsewhere() {
        // Processor 1 finishes each task first (2 s against 3 s) but takes
        // only 1 s more work now: one task there, the others on 0.
        let w = costs(
            vec![vec![Some(3.0), Some(2.0)]; 3],
            vec![0.0, 0.0],
            vec![0.0; 3],
        )
        .with_room(vec![f64::INFINITY, 1.0]);
        assert_eq!(w.list_plan(), Some(vec![1, 0, 0]));
        assert_eq!(w.score(&[1, 1, 0]), f64::INFINITY);
        assert!(w.score(&[1, 0, 0]).is_finite());
        let free = costs(
            vec![vec![Some(3.0), Some(2.0)]; 3],
            vec![0.0, 0.0],
            vec![0.0; 3],
        );
        assert_eq!(free.list_plan(), Some(vec![1, 0, 1]));
    }

    #[test]
    fn impossible_placements_score_infinite_and_list_plans_avoid_them() {
        let w = costs(
            vec![vec![None, Some(2.0)], vec![Some(1.0), None]],
            vec![5.0, 0.0],
            vec![0.0, 0.0],
        );
        assert!(w.feasible());
        assert_eq!(w.score(&[0, 0]), f64::INFINITY);
        assert_eq!(w.list_plan(), Some(vec![1, 0]));
        let none = costs(vec![vec![None, None]], vec![0.0, 0.0], vec![0.0]);
        assert!(!none.feasible());
        assert_eq!(none.list_plan(), None);
    }

    #[test]
    fn an_input_shared_by_two_tasks_is_copied_once_per_space() {
        use crate::dtype::DType;
        use crate::op::OpName;
        use crate::processor::{ProcessorDesc, ProcessorId, ProcessorKind};
        let desc = |id: u32, memory: u32| ProcessorDesc {
            id: ProcessorId(id),
            kind: ProcessorKind::Cuda,
            name: format!("g{id}"),
            memory: MemorySpaceId(memory),
            gflops_f32: 1.0,
            gflops_f64: 1.0,
            ops: OpName::ALL.to_vec(),
            dtypes: vec![DType::F64],
        };
        let (a, b) = (desc(0, 1), desc(1, 2));
        let load = |d| ProcessorLoad {
            desc: d,
            queued_seconds: 0.0,
            queued_tasks: 0,
            has_room: true,
            copy_bandwidth: 1.0,
            memory_bytes: None,
            links: None,
            room_seconds: f64::INFINITY,
        };
        let procs = [load(&a), load(&b)];
        let host = [MemorySpaceId(0)];
        // 1 s of work each, and a 10 s copy of the same tile 7.
        let inputs = [(10u64, &host[..])];
        let task = PlacementRequest {
            op: OpName::Gemm,
            dtype: Some(DType::F64),
            flops: 1e9,
            inputs: &inputs,
            input_ids: &[7],
            model: None,
            tail: 0.0,
            output_bytes: 0,
            ahead: &[],
            updates: &[],
        };
        let w = WindowCosts::new(&[task.clone(), task.clone()], &procs, 1.0);
        // Together: one copy (arriving at 10), the two tasks after it; the
        // load a list policy sees grows by their work alone, so both are
        // estimated to end at 11, as apart: the copy is charged once.
        assert!((w.score(&[0, 0]) - (11.0 + SUM_WEIGHT * 22.0)).abs() < 1e-9);
        assert!((w.score(&[0, 1]) - (11.0 + SUM_WEIGHT * 22.0)).abs() < 1e-9);
        // Without identities the second copy is charged again: it crosses
        // the link after the first (at 20) and its task ends at 21.
        let anon = PlacementRequest {
            input_ids: &[],
            ..task
        };
        let w2 = WindowCosts::new(&[anon.clone(), anon], &procs, 1.0);
        assert!((w2.score(&[0, 0]) - (21.0 + SUM_WEIGHT * 32.0)).abs() < 1e-9);
    }
}
