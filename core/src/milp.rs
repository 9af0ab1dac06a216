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
//! source's link), and the MILP's plan is kept only if it scores clearly
//! better than the list plan ([`WindowCosts::beats`]); otherwise the
//! policy has no plan and the caller places the window's tasks one by one
//! with the list rule, exactly as HEFT would. A small weight on the total
//! time breaks ties. The time limit covers building the model too.
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
//! it, or with that backlog, the metaheuristic ([`crate::metaheuristic`])
//! within its own budget. The metaheuristic runs first in MILP mode too:
//! its plan is the solver's warm start and, should the solver fail or not
//! answer by the window's deadline (it runs on a thread of its own, so a
//! late solve never holds the caller), the fallback; past
//! [`Milp::meta_window`] tasks, or for a single task, the list rule (each
//! task in turn where it would finish first); and the list rule too when
//! no other processor could finish any of the window's tasks
//! before the list plan ends the window ([`WindowCosts::nothing_to_move`]:
//! a GPU beside CPU workers a hundred times slower), since no search can
//! gain more than it costs there. Every decision records its mode, size,
//! time and whether it fell back.

use crate::metaheuristic::{improve, placements};
use crate::policy::{Decision, Mode, PlacementRequest, Policy, ProcessorLoad};
use crate::window::WindowCosts;
use good_lp::solvers::highs::HighsProblem;
use good_lp::{
    constraint, highs, variable, variables, Expression, IntoAffineExpression, Solution,
    SolverModel, Variable, WithInitialSolution,
};
use std::time::{Duration, Instant};

/// Least time worth giving the solver (HiGHS needs about this much to
/// set up and improve on a warm start).
const MIN_SOLVER_BUDGET: Duration = Duration::from_millis(2);
/// How much less than the window's time HiGHS is asked for: it stops
/// past its limit, by 3 – 5 ms on 64 × 4 windows here (`tessera bench
/// windows`: with 8 ms, every window's solve answered in time).
const SOLVER_OVERRUN: Duration = Duration::from_millis(8);
/// What a window does after the solver answers (or not): keep the better
/// plan, score it, hand it back.
const WRAP_UP: Duration = Duration::from_micros(500);
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
    /// A solve that ran past its window's deadline, still finishing.
    running: Option<std::thread::JoinHandle<()>>,
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
            running: None,
        }
    }

    /// The MILP's plan, or `None` if the solver has none by `deadline`
    /// (building the model counts against it).
    fn solve(&mut self, w: &WindowCosts, warm: &[usize], deadline: Instant) -> Option<Vec<usize>> {
        // A solve that outran its window is still finishing: no second
        // one beside it (the caller falls back).
        if self.running.as_ref().is_some_and(|h| !h.is_finished()) {
            return None;
        }
        let (model, x) = model(w, warm);
        self.run(model, x, deadline)
    }

    /// Runs `model` until `deadline`; `x` reads its plan.
    fn run(
        &mut self,
        model: HighsProblem,
        x: Vec<Vec<Option<Variable>>>,
        deadline: Instant,
    ) -> Option<Vec<usize>> {
        // HiGHS stops past its limit (it finishes what it is doing and
        // hands back the incumbent): ask for less, and solve on a thread
        // of its own that the window waits for only until its deadline.
        // One that runs past it finishes on its own, its answer unused;
        // the window has the fallback's plan, on time.
        let left = deadline
            .checked_duration_since(Instant::now())?
            .checked_sub(SOLVER_OVERRUN)?;
        // HiGHS's feasibility jump heuristic ignores the time limit at
        // this size (a 10 ms limit took 16 – 26 ms with it, 13 – 15
        // without, for no worse plans).
        let model = model
            .set_time_limit(left.as_secs_f64())
            .set_option("mip_heuristic_run_feasibility_jump", false);
        let (send, answer) = std::sync::mpsc::channel();
        let solver = std::thread::Builder::new()
            .name("tessera-milp".into())
            .spawn(move || {
                let plan = model.solve().ok().map(|solution| {
                    x.iter()
                        .map(|xs| {
                            xs.iter()
                                .enumerate()
                                .filter_map(|(p, v)| v.map(|v| (p, solution.value(v))))
                                .max_by(|a, b| a.1.total_cmp(&b.1))
                                .map(|(p, _)| p)
                        })
                        .collect::<Option<Vec<usize>>>()
                });
                let _ = send.send(plan.flatten());
            })
            .ok()?;
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(WRAP_UP);
        match answer.recv_timeout(wait) {
            Ok(plan) => {
                let _ = solver.join();
                plan
            }
            Err(_) => {
                self.running = Some(solver);
                None
            }
        }
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

/// The window's MILP, warm-started with `warm`, and its assignment
/// variables (`x[t][p]`: task `t` on processor `p`).
fn model(w: &WindowCosts, warm: &[usize]) -> (HighsProblem, Vec<Vec<Option<Variable>>>) {
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
    // Per (task, processor): the window's work on the processor up to
    // and including the task, and its copies there likewise, as
    // continuous variables. Each constraint then holds a few terms
    // rather than the window's whole prefix (a 64-task window had
    // 16,000 nonzeros and HiGHS ran 2 – 5 times past its time limit).
    let sums: Vec<Vec<Option<(Variable, Variable)>>> = x
        .iter()
        .map(|xs| {
            xs.iter()
                .map(|v| v.map(|_| (vars.add(variable().min(0.0)), vars.add(variable().min(0.0)))))
                .collect()
        })
        .collect();
    let mut initial: Vec<(Variable, f64)> = Vec::new();
    let mut so_far = vec![(0.0f64, 0.0f64); w.processors()];
    for (t, xs) in x.iter().enumerate() {
        for (p, v) in xs.iter().enumerate() {
            let (Some(v), Some((work, copies))) = (v, sums[t][p]) else {
                continue;
            };
            let on = warm[t] == p;
            if on {
                let exec = w.cost[t][p].unwrap_or(0.0) - w.copy[t][p];
                so_far[p].0 += exec;
                so_far[p].1 += w.copy[t][p];
            }
            initial.push((*v, if on { 1.0 } else { 0.0 }));
            initial.push((work, so_far[p].0));
            initial.push((copies, so_far[p].1));
        }
    }
    initial.push((end, linear_end(w, warm)));
    let mut model = vars
        .minimise(end + 1e-3 * total)
        .using(highs)
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
        // The running sums before the task (the queue ahead of each
        // task is its own: processors may run queues by priority).
        let mut before: Option<(Variable, Variable)> = None;
        let (mut most_compute, mut most_links) = (0.0f64, 0.0f64);
        for t in 0..w.tasks() {
            let (Some(c), Some(v), Some((work, copies))) = (w.cost[t][p], x[t][p], sums[t][p])
            else {
                continue;
            };
            let (work_before, copies_before) = match before {
                Some((a, b)) => (a.into_expression(), b.into_expression()),
                None => (Expression::from(0.0), Expression::from(0.0)),
            };
            let exec = c - w.copy[t][p];
            model = model.with(constraint!(work == work_before + exec * v));
            model = model.with(constraint!(
                copies == copies_before.clone() + w.copy[t][p] * v
            ));
            most_compute += exec;
            let after = w.ahead[t][p] + w.tail[t] + w.back[t][p];
            let big_m = most_compute + after;
            model = model.with(constraint!(work + after <= end + big_m - big_m * v));
            let own = w.ready[t][p] + exec + after;
            let big_m = most_links + own;
            model = model.with(constraint!(copies_before + own <= end + big_m - big_m * v));
            most_links += w.copy[t][p];
            before = Some((work, copies));
        }
    }
    // Memory capacity: the new data the window sends a bounded space
    // must fit in it.
    for (room, ps) in w.bounded_spaces() {
        let room = *room;
        let sent: Expression = (0..w.tasks())
            .flat_map(|t| ps.iter().map(move |p| (t, *p)))
            .filter_map(|(t, p)| Some(w.missing_bytes(t, p) as f64 * x[t][p]?.into_expression()))
            .sum();
        model = model.with(constraint!(sent <= room as f64));
    }
    (model, x)
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

    fn waits_for(&self) -> Option<usize> {
        self.list.waits_for()
    }

    fn place_batch(
        &mut self,
        tasks: &[PlacementRequest<'_>],
        procs: &[ProcessorLoad<'_>],
    ) -> Option<Vec<Option<usize>>> {
        let clock = Instant::now();
        let mut w = WindowCosts::new(tasks, procs, DEFAULT_BANDWIDTH);
        // No list plan (a task no processor can run), a window of one or
        // past the metaheuristic's size, or one no search could improve:
        // the list rule places the tasks one by one.
        let start = match w.list_plan() {
            Some(start) if (2..=self.meta_window).contains(&tasks.len()) => start,
            Some(_) => {
                self.record(Mode::List, tasks.len(), clock, tasks.len() > 1);
                return None;
            }
            None => {
                self.record(Mode::List, tasks.len(), clock, false);
                return None;
            }
        };
        w.keep_to_nodes(&start);
        if w.nothing_to_move(&start) {
            self.record(Mode::List, tasks.len(), clock, false);
            return None;
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
            return None;
        }
        self.seed += 1;
        let busy = self.backlog > self.max_backlog;
        let use_solver =
            tasks.len() <= self.milp_window && solver_time >= MIN_SOLVER_BUDGET && !busy;
        // The metaheuristic first, within its budget: alone, its plan
        // decides; before the solver, it is the solver's warm start and
        // the fallback should the solver fail. (On random 64 × 4 windows,
        // `tessera bench windows`, two milliseconds of it improved more
        // windows than HiGHS did in fifteen from the list plan.)
        let left = meta_time.saturating_sub(clock.elapsed());
        let searched = improve(&w, &start, left, self.seed);
        let (plan, mode, fell_back) = if use_solver {
            let warm = searched.as_deref().unwrap_or(&start);
            match self.solve(&w, warm, clock + solver_time) {
                Some(solved) => {
                    let best = match searched {
                        Some(s) if w.score(&s) <= w.score(&solved) => s,
                        _ => solved,
                    };
                    (Some(best), Mode::Milp, false)
                }
                None => (searched, Mode::Metaheuristic, true),
            }
        } else {
            (searched, Mode::Metaheuristic, false)
        };
        // Only a plan the score finds clearly better than the list plan
        // replaces the list rule ([`WindowCosts::beats`]; the solver
        // breaks ties on total work, the score on the sum of finishes).
        let plan = plan.filter(|plan| w.beats(plan, &start));
        self.record(mode, tasks.len(), clock, fell_back);
        plan.map(|plan| placements(&plan, procs))
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
    use crate::arrival::{LinkModel, LinkState};
    use crate::dtype::DType;
    use crate::metaheuristic::Metaheuristic;
    use crate::op::OpName;
    use crate::policy::EarliestFinish;
    use crate::processor::{MemorySpaceId, ProcessorDesc, ProcessorId, ProcessorKind};

    /// A processor with a memory of its own: equal ones are not
    /// interchangeable ([`WindowCosts::interchangeable`]), so windows on
    /// them are searched.
    fn proc(id: u32, gflops: f64) -> ProcessorDesc {
        ProcessorDesc {
            id: ProcessorId(id),
            kind: ProcessorKind::Cpu,
            name: format!("p{id}"),
            memory: MemorySpaceId(id),
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

    /// What `milp` places: its plan, or where it has none better, the
    /// list plan (the list rule's placements on these idle loads).
    fn placed(
        milp: &mut Milp,
        tasks: &[PlacementRequest<'_>],
        loads: &[ProcessorLoad<'_>],
        bandwidth: f64,
    ) -> Vec<Option<usize>> {
        milp.place_batch(tasks, loads).unwrap_or_else(|| {
            let list = WindowCosts::new(tasks, loads, bandwidth)
                .list_plan()
                .unwrap();
            placements(&list, loads)
        })
    }

    /// Three independent tasks of 1, 1 and 2 GFLOP: on two equal
    /// processors the list rule ends at 3 units, the best plan at 2 (a
    /// third better, past [`crate::window::MIN_GAIN`]).
    fn balancing_window() -> Vec<PlacementRequest<'static>> {
        [1.0, 1.0, 2.0]
            .iter()
            .map(|g| PlacementRequest::new(OpName::Gemm, Some(DType::F64), g * 1e9, &[]))
            .collect()
    }

    #[test]
    fn the_milp_balances_a_window_better_than_greedy_and_records_its_mode() {
        // Two equal processors; tasks of 1, 1, 2 units: greedy in this
        // order gives 1+2 = 3 on one side; the optimum is 2 (1+1 | 2).
        let procs_desc = [proc(0, 1.0), proc(1, 1.0)];
        let loads = idle(&procs_desc);
        let tasks = balancing_window();
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
        // Past its windows the policy leaves them to the list rule, whose
        // plan ends at 3.
        let mut greedy = Milp::new(Box::new(EarliestFinish::new(10e9)));
        greedy.meta_window = 0;
        assert_eq!(greedy.place_batch(&tasks, &loads), None);
        let list = WindowCosts::new(&tasks, &loads, 10e9).list_plan().unwrap();
        let g: Vec<Option<usize>> = list.into_iter().map(Some).collect();
        let mut milp = Milp::new(Box::new(EarliestFinish::new(10e9)));
        milp.time_limit = Duration::from_secs(5);
        let m = milp.place_batch(&tasks, &loads).expect("a better plan");
        assert_eq!(makespan(&g), 3.0);
        assert_eq!(makespan(&m), 2.0, "{m:?}");
        let d = milp.take_decisions();
        assert_eq!((d[0].mode, d[0].fell_back), (Mode::Milp, false));
        assert!(milp.take_decisions().is_empty());
        assert_eq!(greedy.take_decisions()[0].mode, Mode::List);
    }

    #[test]
    fn windows_move_no_task_between_nodes() {
        // The balancing window on two equal processors, each a node of
        // its own: the better plan moves the last task to the other node,
        // which a window's score cannot price, so the list rule places.
        let procs_desc = [proc(0, 1.0), proc(1, 1.0)];
        let tasks = balancing_window();
        let bandwidth = vec![vec![f64::INFINITY, 1e9], vec![1e9, f64::INFINITY]];
        let two_nodes = LinkModel::new(bandwidth.clone(), 0.0, &[0, 1]);
        let one_node = LinkModel::new(bandwidth, 0.0, &[0, 0]);
        let (apart, together) = (LinkState::idle(&two_nodes), LinkState::idle(&one_node));
        let over = |links| -> Vec<ProcessorLoad<'_>> {
            idle(&procs_desc)
                .into_iter()
                .map(|l| ProcessorLoad {
                    links: Some(links),
                    ..l
                })
                .collect()
        };
        for meta in [false, true] {
            let mut milp = Milp::new(Box::new(EarliestFinish::new(10e9)));
            milp.time_limit = Duration::from_secs(5);
            let mut heuristic = Metaheuristic::new(10e9);
            let policy: &mut dyn Policy = if meta { &mut heuristic } else { &mut milp };
            assert_eq!(
                policy.place_batch(&tasks, &over(&apart)),
                None,
                "meta {meta}"
            );
            // On one node (the same spaces) the window is searched.
            let searched = policy.place_batch(&tasks, &over(&together));
            assert!(searched.is_some(), "meta {meta}");
        }
    }

    #[test]
    fn equal_processors_of_one_memory_leave_windows_to_the_list_rule() {
        // The balancing window on two equal CPU workers sharing RAM: no
        // search (it would only cost the workers' cores); with a memory
        // each, or one faster, the window is searched.
        let mut shared = [proc(0, 1.0), proc(1, 1.0)];
        shared[1].memory = MemorySpaceId(0);
        let tasks = balancing_window();
        let mut milp = Milp::new(Box::new(EarliestFinish::new(10e9)));
        milp.time_limit = Duration::from_secs(5);
        assert_eq!(milp.place_batch(&tasks, &idle(&shared)), None);
        assert_eq!(milp.take_decisions()[0].mode, Mode::List);
        assert!(WindowCosts::new(&tasks, &idle(&shared), 10e9).interchangeable());
        let mut faster = shared.clone();
        faster[1].gflops_f64 = 1.5;
        assert!(!WindowCosts::new(&tasks, &idle(&faster), 10e9).interchangeable());
        let own = [proc(0, 1.0), proc(1, 1.0)];
        assert!(milp.place_batch(&tasks, &idle(&own)).is_some());
        assert_eq!(milp.take_decisions()[0].mode, Mode::Milp);
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
            updates: &[],
        };
        let tasks = [task(1.0, 10.0), task(1.0, 0.0), task(1.0, 0.0)];
        let mut milp = Milp::new(Box::new(EarliestFinish::new(10e9)));
        milp.time_limit = Duration::from_secs(5);
        let plan = placed(&mut milp, &tasks, &loads, 10e9);
        assert_eq!(plan[0], Some(0), "{plan:?}");
        let w = WindowCosts::new(&tasks, &loads, 10e9);
        let chosen: Vec<usize> = plan.iter().flatten().copied().collect();
        assert!(w.score(&chosen) <= w.score(&w.list_plan().unwrap()) + 1e-9);
        // Past the MILP's window the metaheuristic decides, not as a fallback.
        milp.milp_window = 2;
        // (It may find no better plan than the list's: then it has none.)
        if let Some(again) = milp.place_batch(&tasks, &loads) {
            assert!(again.iter().all(Option::is_some));
            assert!(
                w.score(&again.iter().flatten().copied().collect::<Vec<_>>())
                    < w.score(&w.list_plan().unwrap())
            );
        }
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
        let waits = placed(&mut milp, &tasks, &busy, 10e9);
        assert_eq!(waits[0], None);
    }

    #[test]
    fn a_solver_without_time_falls_back_to_the_metaheuristics_plan() {
        // The balancing window of the first test, with less time than the
        // solver is asked to leave for its overrun: the solver is not
        // started, the metaheuristic's plan (found first) stands, and the
        // decision says it fell back.
        let procs_desc = [proc(0, 1.0), proc(1, 1.0)];
        let loads = idle(&procs_desc);
        let tasks = balancing_window();
        let mut milp = Milp::new(Box::new(EarliestFinish::new(10e9)));
        milp.time_limit = SOLVER_OVERRUN;
        milp.meta_budget = Duration::from_millis(500);
        let plan = milp
            .place_batch(&tasks, &loads)
            .expect("the metaheuristic's plan");
        let w = WindowCosts::new(&tasks, &loads, 10e9);
        let chosen: Vec<usize> = plan.iter().flatten().copied().collect();
        assert!(w.beats(&chosen, &w.list_plan().unwrap()), "{plan:?}");
        let d = milp.take_decisions();
        assert_eq!((d[0].mode, d[0].fell_back), (Mode::Metaheuristic, true));
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
                updates: &[],
            })
            .collect();
        let on = |plan: &[Option<usize>], p: usize| plan.iter().filter(|x| **x == Some(p)).count();
        let mut loads = idle(&descs);
        let mut milp = Milp::new(Box::new(EarliestFinish::new(100e9)));
        milp.time_limit = Duration::from_secs(5);
        let free = placed(&mut milp, &tasks, &loads, 100e9);
        assert_eq!((on(&free, 1), on(&free, 2)), (3, 1), "{free:?}");
        for l in &mut loads[1..] {
            l.memory_bytes = Some(2_500_000_000);
        }
        let bounded = placed(&mut milp, &tasks, &loads, 100e9);
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
