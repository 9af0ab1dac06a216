//! MILP placement of a window of ready tasks, with a metaheuristic
//! fallback.
//!
//! Tasks that are ready together are independent of each other, so placing
//! them is an assignment: binary `x[t][p]` puts task `t` on processor `p`.
//! Tasks join their processor's queue in window order (highest priority
//! first), and their copies the queues of the links into its memory
//! ([`crate::arrival`]). The objective is [`WindowCosts::score`]'s: the
//! largest `finish + tail` over the window (the earliest the graph could
//! end), linearised with two big-M constraints per (task, processor), each
//! binding only where the task goes (`M` the left side's largest value):
//! the task ends after the work queued ahead of it and its own,
//! `ahead[t][p] + Σ_{t'≤t} exec[t'][p]·x[t'][p] + tail[t] ≤ C + M·(1 − x[t][p])`,
//! and after its inputs arrive behind the window's earlier copies there,
//! `ready[t][p] + Σ_{t'<t} copy[t'][p]·x[t'][p] + exec[t][p] + tail[t] ≤ C + M·(1 − x[t][p])`
//! (`ready`: when they would arrive alone, the links' queues included).
//! These are the two sides of a copy-then-compute pipeline; the score plays
//! the plan out exactly (shared inputs copied once, each copy on its own
//! source's link), and the MILP's plan is kept only if it scores better
//! than the list plan. A small weight on the total time breaks ties.
//! Memory capacity is a constraint: for each bounded memory space (a
//! device's budget, a simulated GPU's capacity), the bytes of inputs the
//! window's tasks there lack, `Σ missing[t][p]·x[t][p]`, must fit in it
//! (a window that sends more would only evict its own data). The score
//! refuses such plans too, and the list plan passes over a full space
//! while another can take the task. HiGHS solves it through good_lp,
//! warm-started with the list plan, under a time limit, on one thread.
//!
//! Which mode decides depends on the load: the caller's time budget for
//! the window ([`Policy::set_window_budget`]; a runtime of short tasks
//! allows little), then the window size:
//! up to [`Milp::milp_window`] tasks the MILP, unless more than
//! [`Milp::max_backlog`] tasks are ready ([`Policy::set_backlog`]); past
//! it, with that backlog, or when the solver fails or finds nothing in
//! time, the metaheuristic ([`crate::metaheuristic`]) within its own
//! budget; past
//! [`Milp::meta_window`] tasks, or for a single task, the list rule (the
//! list plan, each task in turn where it would finish first); and the list
//! plan too when no other processor could finish any of the window's tasks
//! before the list plan ends the window ([`WindowCosts::nothing_to_move`]:
//! a GPU beside CPU workers a hundred times slower), since no search can
//! gain more than it costs there. Every decision records its mode, size,
//! time and whether it fell back.

use crate::metaheuristic::{improve, placements};
use crate::policy::{Decision, Mode, PlacementRequest, Policy, ProcessorLoad};
use crate::window::WindowCosts;
use good_lp::{
    constraint, highs, variable, variables, Expression, IntoAffineExpression, Solution,
    SolverModel, Variable, WithInitialSolution,
};
use std::time::{Duration, Instant};

/// Least time worth giving the solver (HiGHS needs about this much to
/// set up and improve on a warm start).
const MIN_SOLVER_BUDGET: Duration = Duration::from_millis(2);
/// Least time worth giving the metaheuristic.
pub(crate) const MIN_META_BUDGET: Duration = Duration::from_micros(50);

/// Bytes/s charged for a missing input when the processor gives no rate.
const DEFAULT_BANDWIDTH: f64 = 10e9;

/// MILP over windows of ready tasks, the metaheuristic as its fallback,
/// and `list` for single tasks and the largest windows.
pub struct Milp {
    /// Largest window the MILP takes.
    pub milp_window: usize,
    /// Largest window the metaheuristic takes.
    pub meta_window: usize,
    /// Solver time limit per window.
    pub time_limit: Duration,
    /// Metaheuristic time budget per window.
    pub meta_budget: Duration,
    /// What the caller allows for the next window ([`Policy::set_window_budget`]).
    budget: Option<Duration>,
    /// Ready tasks past which the MILP is skipped for the metaheuristic.
    pub max_backlog: usize,
    /// The ready tasks the caller last reported ([`Policy::set_backlog`]).
    backlog: usize,
    list: Box<dyn Policy>,
    decisions: Vec<Decision>,
    seed: u64,
}

impl Milp {
    pub fn new(list: Box<dyn Policy>) -> Self {
        Milp {
            milp_window: 64,
            meta_window: 512,
            time_limit: Duration::from_millis(20),
            meta_budget: Duration::from_millis(2),
            budget: None,
            max_backlog: 1024,
            backlog: 0,
            list,
            decisions: Vec::new(),
            seed: 0,
        }
    }

    /// The MILP's plan, or `None` if the solver has none.
    fn solve(&self, w: &WindowCosts, warm: &[usize], limit: Duration) -> Option<Vec<usize>> {
        let mut vars = variables!();
        let end = vars.add(variable().min(0.0));
        let x: Vec<Vec<Option<Variable>>> = w
            .cost
            .iter()
            .map(|row| {
                row.iter()
                    .map(|c| c.map(|_| vars.add(variable().binary())))
                    .collect()
            })
            .collect();
        let total: Expression = x
            .iter()
            .zip(&w.cost)
            .flat_map(|(xs, cs)| xs.iter().zip(cs))
            .filter_map(|(v, c)| Some((*c)? * v.as_ref()?.into_expression()))
            .sum();
        let mut initial: Vec<(Variable, f64)> = Vec::new();
        for (t, xs) in x.iter().enumerate() {
            for (p, v) in xs.iter().enumerate() {
                if let Some(v) = v {
                    initial.push((*v, if warm[t] == p { 1.0 } else { 0.0 }));
                }
            }
        }
        initial.push((end, linear_end(w, warm)));
        let mut model = vars
            .minimise(end + 1e-3 * total)
            .using(highs)
            .set_time_limit(limit.as_secs_f64())
            .set_threads(1)
            .with_initial_solution(initial);
        for xs in &x {
            let one: Expression = xs.iter().flatten().map(|v| v.into_expression()).sum();
            model = model.with(constraint!(one == 1));
        }
        // A task finishes after the work queued before it on its processor
        // and its own (compute), and after its inputs arrive behind the
        // copies of the window's tasks before it there (links).
        for p in 0..w.processors() {
            // The window's work on `p` so far (the queue ahead of each
            // task is its own: processors may run queues by priority).
            let mut compute = Expression::from(0.0);
            let mut links = Expression::from(0.0);
            let (mut most_compute, mut most_links) = (0.0f64, 0.0f64);
            for t in 0..w.tasks() {
                let (Some(c), Some(v)) = (w.cost[t][p], x[t][p]) else {
                    continue;
                };
                let exec = c - w.copy[t][p];
                compute += exec * v;
                most_compute += exec;
                let after = w.ahead[t][p] + w.tail[t] + w.back[t][p];
                let big_m = most_compute + after;
                model = model.with(constraint!(
                    compute.clone() + after <= end + big_m - big_m * v
                ));
                let own = w.ready[t][p] + exec + after;
                let big_m = most_links + own;
                model = model.with(constraint!(links.clone() + own <= end + big_m - big_m * v));
                links += w.copy[t][p] * v;
                most_links += w.copy[t][p];
            }
        }
        // Memory capacity: the new data the window sends a bounded space
        // must fit in it.
        for (room, ps) in w.bounded_spaces() {
            let room = *room;
            let sent: Expression = (0..w.tasks())
                .flat_map(|t| ps.iter().map(move |p| (t, *p)))
                .filter_map(|(t, p)| {
                    Some(w.missing_bytes(t, p) as f64 * x[t][p]?.into_expression())
                })
                .sum();
            model = model.with(constraint!(sent <= room as f64));
        }
        let solution = model.solve().ok()?;
        x.iter()
            .map(|xs| {
                xs.iter()
                    .enumerate()
                    .filter_map(|(p, v)| v.map(|v| (p, solution.value(v))))
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(p, _)| p)
            })
            .collect()
    }

    fn record(&mut self, mode: Mode, tasks: usize, clock: Instant, fell_back: bool) {
        self.decisions.push(Decision {
            mode,
            tasks,
            seconds: clock.elapsed().as_secs_f64(),
            fell_back,
        });
    }
}

/// The MILP's objective for `plan` (its critical end, before the tie
/// weight): for each task the later of the compute and the link
/// constraint's left side, plus its tail.
fn linear_end(w: &WindowCosts, plan: &[usize]) -> f64 {
    let mut compute = vec![0.0f64; w.processors()];
    let mut links = vec![0.0f64; w.processors()];
    let mut end = 0.0f64;
    for (t, p) in plan.iter().enumerate() {
        let Some(c) = w.cost[t][*p] else {
            continue;
        };
        let exec = c - w.copy[t][*p];
        compute[*p] += exec;
        let by_links = links[*p] + w.ready[t][*p] + exec;
        links[*p] += w.copy[t][*p];
        let by_compute = w.ahead[t][*p] + compute[*p];
        end = end.max(by_compute.max(by_links) + w.back[t][*p] + w.tail[t]);
    }
    end
}

impl Policy for Milp {
    fn name(&self) -> &'static str {
        "milp"
    }

    fn place(&mut self, task: &PlacementRequest<'_>, procs: &[ProcessorLoad<'_>]) -> Option<usize> {
        self.list.place(task, procs)
    }

    fn wants_windows(&self) -> bool {
        true
    }

    fn place_batch(
        &mut self,
        tasks: &[PlacementRequest<'_>],
        procs: &[ProcessorLoad<'_>],
    ) -> Vec<Option<usize>> {
        let clock = Instant::now();
        let w = WindowCosts::new(tasks, procs, DEFAULT_BANDWIDTH);
        let Some(start) = w.list_plan() else {
            // A task no processor can run: the list rule says which.
            let picks = self.list.place_batch(tasks, procs);
            self.record(Mode::List, tasks.len(), clock, false);
            return picks;
        };
        if !(2..=self.meta_window).contains(&tasks.len()) {
            self.record(Mode::List, tasks.len(), clock, tasks.len() > 1);
            return placements(&start, procs);
        }
        if w.nothing_to_move(&start) {
            self.record(Mode::List, tasks.len(), clock, false);
            return placements(&start, procs);
        }
        // Load decides the mode too: a budget below the solver's smallest
        // useful time goes to the metaheuristic, below its own to the list.
        let budget = self.budget.take();
        let (solver_time, meta_time) = match budget {
            None => (self.time_limit, self.meta_budget),
            Some(b) => (self.time_limit.min(b), self.meta_budget.min(b)),
        };
        if meta_time < MIN_META_BUDGET {
            self.record(Mode::List, tasks.len(), clock, false);
            return placements(&start, procs);
        }
        self.seed += 1;
        let busy = self.backlog > self.max_backlog;
        if tasks.len() <= self.milp_window && solver_time >= MIN_SOLVER_BUDGET && !busy {
            if let Some(plan) = self.solve(&w, &start, solver_time) {
                // The solver breaks ties on total work, the score on the
                // sum of finishes: keep whichever plan scores better, and
                // on a tie the list plan (the score is an estimate; a plan
                // no better by it is no reason to leave HEFT's choice).
                let best = if w.score(&plan) < w.score(&start) {
                    plan
                } else {
                    start
                };
                self.record(Mode::Milp, tasks.len(), clock, false);
                return placements(&best, procs);
            }
            let plan = improve(&w, &start, meta_time, self.seed);
            self.record(Mode::Metaheuristic, tasks.len(), clock, true);
            return placements(&plan, procs);
        }
        let plan = improve(&w, &start, meta_time, self.seed);
        self.record(Mode::Metaheuristic, tasks.len(), clock, false);
        placements(&plan, procs)
    }

    fn set_window_budget(&mut self, budget: Duration) {
        self.budget = Some(budget);
    }

    fn set_backlog(&mut self, ready: usize) {
        self.backlog = ready;
    }

    fn take_decisions(&mut self) -> Vec<Decision> {
        std::mem::take(&mut self.decisions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::op::OpName;
    use crate::policy::EarliestFinish;
    use crate::processor::{MemorySpaceId, ProcessorDesc, ProcessorId, ProcessorKind};

    fn proc(id: u32, gflops: f64) -> ProcessorDesc {
        ProcessorDesc {
            id: ProcessorId(id),
            kind: ProcessorKind::Cpu,
            name: format!("p{id}"),
            memory: MemorySpaceId(0),
            gflops_f32: gflops,
            gflops_f64: gflops,
            ops: OpName::ALL.to_vec(),
            dtypes: vec![DType::F64],
        }
    }

    /// Each processor idle, with room.
    fn idle(procs: &[ProcessorDesc]) -> Vec<ProcessorLoad<'_>> {
        procs
            .iter()
            .map(|d| ProcessorLoad {
                desc: d,
                queued_seconds: 0.0,
                queued_tasks: 0,
                has_room: true,
                copy_bandwidth: 0.0,
                memory_bytes: None,
                links: None,
                room_seconds: f64::INFINITY,
            })
            .collect()
    }

    #[test]
    fn the_milp_balances_a_window_better_than_greedy_and_records_its_mode() {
        // Two equal processors; tasks of 3, 3, 2, 2, 2 units: greedy in
        // this order gives 3+2+2 = 7 on one side; the optimum is 6 (3+3 | 2+2+2).
        let procs_desc = [proc(0, 1.0), proc(1, 1.0)];
        let loads = idle(&procs_desc);
        let tasks: Vec<PlacementRequest<'_>> = [3.0, 3.0, 2.0, 2.0, 2.0]
            .iter()
            .map(|g| PlacementRequest::new(OpName::Gemm, Some(DType::F64), g * 1e9, &[]))
            .collect();
        let makespan = |plan: &[Option<usize>]| {
            (0..2)
                .map(|p| {
                    plan.iter()
                        .zip(&tasks)
                        .filter(|(q, _)| **q == Some(p))
                        .map(|(_, t)| t.flops / 1e9)
                        .sum::<f64>()
                })
                .fold(0.0, f64::max)
        };
        let mut greedy = Milp::new(Box::new(EarliestFinish::new(10e9)));
        greedy.meta_window = 0;
        let g = greedy.place_batch(&tasks, &loads);
        let mut milp = Milp::new(Box::new(EarliestFinish::new(10e9)));
        milp.time_limit = Duration::from_secs(5);
        let m = milp.place_batch(&tasks, &loads);
        assert_eq!(makespan(&g), 7.0);
        assert_eq!(makespan(&m), 6.0, "{m:?}");
        let d = milp.take_decisions();
        assert_eq!((d[0].mode, d[0].fell_back), (Mode::Milp, false));
        assert!(milp.take_decisions().is_empty());
        assert_eq!(greedy.take_decisions()[0].mode, Mode::List);
    }

    #[test]
    fn the_critical_task_goes_first_and_large_windows_go_to_the_metaheuristic() {
        // One fast and one slow processor. Task 0 has 10 s of work behind
        // it; with the finish + tail objective it must get the fast one.
        let procs_desc = [proc(0, 1.0), proc(1, 0.5)];
        let loads = idle(&procs_desc);
        let task = |gflop: f64, tail: f64| PlacementRequest {
            op: OpName::Gemm,
            dtype: Some(DType::F64),
            flops: gflop * 1e9,
            inputs: &[],
            input_ids: &[],
            model: None,
            tail,
            output_bytes: 0,
            ahead: &[],
        };
        let tasks = [task(1.0, 10.0), task(1.0, 0.0), task(1.0, 0.0)];
        let mut milp = Milp::new(Box::new(EarliestFinish::new(10e9)));
        milp.time_limit = Duration::from_secs(5);
        let plan = milp.place_batch(&tasks, &loads);
        assert_eq!(plan[0], Some(0), "{plan:?}");
        let w = WindowCosts::new(&tasks, &loads, 10e9);
        let chosen: Vec<usize> = plan.iter().flatten().copied().collect();
        assert!(w.score(&chosen) <= w.score(&w.list_plan().unwrap()) + 1e-9);
        // Past the MILP's window the metaheuristic decides, not as a fallback.
        milp.milp_window = 2;
        let again = milp.place_batch(&tasks, &loads);
        assert!(again.iter().all(Option::is_some));
        let d = milp.take_decisions();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].mode, Mode::Milp);
        assert_eq!((d[1].mode, d[1].fell_back), (Mode::Metaheuristic, false));
        // A long ready queue skips the solver.
        milp.milp_window = 64;
        milp.set_backlog(5000);
        milp.place_batch(&tasks, &loads);
        assert_eq!(milp.take_decisions()[0].mode, Mode::Metaheuristic);
        milp.set_backlog(0);
        // A full processor makes its tasks wait rather than move.
        let mut busy = loads.clone();
        busy[0].has_room = false;
        milp.milp_window = 64;
        let waits = milp.place_batch(&tasks, &busy);
        assert_eq!(waits[0], None);
    }

    #[test]
    fn a_window_sends_a_bounded_memory_no_more_than_it_holds() {
        // GPU a runs a task in 1 s, GPU b in 2 s, the CPU in 100 s. Four
        // tasks, each reading its own 1 GB from host memory. Unbounded,
        // the best plan puts three on a (3 s) and one on b; with 2.5 GB per
        // GPU at most two fit on each.
        let mut descs = vec![proc(0, 1.0), proc(1, 100.0), proc(2, 50.0)];
        for (i, d) in descs.iter_mut().enumerate() {
            d.memory = MemorySpaceId(i as u32);
        }
        let host = [MemorySpaceId(0)];
        let inputs: Vec<[(u64, &[MemorySpaceId]); 1]> =
            (0..4).map(|_| [(1_000_000_000u64, &host[..])]).collect();
        let ids: Vec<[u64; 1]> = (0..4).map(|i| [i]).collect();
        let tasks: Vec<PlacementRequest<'_>> = inputs
            .iter()
            .zip(&ids)
            .map(|(inp, id)| PlacementRequest {
                op: OpName::Gemm,
                dtype: Some(DType::F64),
                flops: 100e9,
                inputs: inp,
                input_ids: id,
                model: None,
                tail: 0.0,
                output_bytes: 0,
                ahead: &[],
            })
            .collect();
        let on = |plan: &[Option<usize>], p: usize| plan.iter().filter(|x| **x == Some(p)).count();
        let mut loads = idle(&descs);
        let mut milp = Milp::new(Box::new(EarliestFinish::new(100e9)));
        milp.time_limit = Duration::from_secs(5);
        let free = milp.place_batch(&tasks, &loads);
        assert_eq!((on(&free, 1), on(&free, 2)), (3, 1), "{free:?}");
        for l in &mut loads[1..] {
            l.memory_bytes = Some(2_500_000_000);
        }
        let bounded = milp.place_batch(&tasks, &loads);
        assert_eq!((on(&bounded, 1), on(&bounded, 2)), (2, 2), "{bounded:?}");
        let modes: Vec<Mode> = milp.take_decisions().iter().map(|d| d.mode).collect();
        assert_eq!(modes, [Mode::Milp, Mode::Milp]);
        // The score refuses a plan that overfills, and the list plan
        // passes over a full space.
        let w = WindowCosts::new(&tasks, &loads, 100e9);
        assert_eq!(w.score(&[1, 1, 1, 2]), f64::INFINITY);
        let list = w.list_plan().unwrap();
        assert!(w.fits(&list), "{list:?}");
    }
}
