//! Placement of a window of ready tasks by differential evolution
//! (metaheuristics-nature), for windows too large for the MILP, for when
//! the solver misses its budget, and as a policy of its own.
//!
//! Encoding: one real in `[0, 1)` per task, read as an index into the
//! processors that can run it, so every point of the search space is a
//! feasible plan and the search never wastes time on impossible ones. The
//! fitness is [`WindowCosts::score`], the same the MILP minimises. The
//! first population holds the list plan, and a plan replaces the list
//! rule only where it beats it clearly ([`WindowCosts::beats`]); the
//! search stops at its time budget, which counts from the window's start.

use crate::policy::{Decision, EarliestFinish, Mode, PlacementRequest, Policy, ProcessorLoad};
use crate::seeded::Seeded;
use crate::window::WindowCosts;
use metaheuristics_nature::{Bounded, De, ObjFunc, Pool, Solver};
use std::time::{Duration, Instant};

/// The window's placement problem as metaheuristics-nature sees it.
struct Problem<'a> {
    costs: &'a WindowCosts<'a>,
    /// For each task, the processors that can run it.
    allowed: Vec<Vec<usize>>,
    bound: Vec<[f64; 2]>,
}

impl<'a> Problem<'a> {
    fn new(costs: &'a WindowCosts) -> Self {
        let allowed: Vec<Vec<usize>> = costs
            .cost
            .iter()
            .map(|row| (0..row.len()).filter(|p| row[*p].is_some()).collect())
            .collect();
        Problem {
            bound: vec![[0.0, 1.0]; allowed.len()],
            costs,
            allowed,
        }
    }

    fn decode(&self, xs: &[f64]) -> Vec<usize> {
        xs.iter()
            .zip(&self.allowed)
            .map(|(x, ps)| {
                let i = (x.clamp(0.0, 1.0) * ps.len() as f64) as usize;
                ps[i.min(ps.len() - 1)]
            })
            .collect()
    }

    /// The point in the middle of `plan`'s cell.
    fn encode(&self, plan: &[usize]) -> Vec<f64> {
        plan.iter()
            .zip(&self.allowed)
            .map(|(p, ps)| {
                let i = ps.iter().position(|q| q == p).unwrap_or(0);
                (i as f64 + 0.5) / ps.len() as f64
            })
            .collect()
    }
}

impl Bounded for Problem<'_> {
    fn bound(&self) -> &[[f64; 2]] {
        &self.bound
    }
}

impl ObjFunc for Problem<'_> {
    type Ys = f64;

    fn fitness(&self, xs: &[f64]) -> f64 {
        self.costs.score(&self.decode(xs))
    }
}

/// Searches for a plan better than `start` within `budget`: the plan, or
/// `None` where it found none clearly better ([`WindowCosts::beats`]). `seed` makes the search
/// repeatable.
pub fn improve(
    costs: &WindowCosts,
    start: &[usize],
    budget: Duration,
    seed: u64,
) -> Option<Vec<usize>> {
    let clock = Instant::now();
    let problem = Problem::new(costs);
    if problem.allowed.iter().any(Vec::is_empty) || start.is_empty() {
        return None;
    }
    let population = 24usize;
    // The start plan, then random plans (seeded alike).
    let mut random = Seeded::new(seed);
    let mut pool = vec![problem.encode(start)];
    while pool.len() < population {
        pool.push((0..start.len()).map(|_| random.unit()).collect());
    }
    let pool_y: Vec<f64> = pool.iter().map(|xs| problem.fitness(xs)).collect();
    // A generation scores as many plans as the first pool did: stop when
    // another (with room for a slow one) would end past the budget, not
    // once it has.
    let generation = 2 * clock.elapsed();
    let solver = Solver::build(De::default(), problem)
        .seed(seed)
        .pop_num(population)
        .init_pool(Pool::Ready { pool, pool_y })
        .task(|ctx| ctx.gen >= 400 || clock.elapsed() + generation >= budget)
        .solve();
    let best = solver.func().decode(solver.as_best_xs());
    // Only a clearly better plan replaces the list rule.
    costs.beats(&best, start).then_some(best)
}

/// Ready windows placed by differential evolution from the list plan;
/// single tasks by earliest finish.
pub struct Metaheuristic {
    /// Time allowed per window.
    pub budget: Duration,
    list: EarliestFinish,
    decisions: Vec<Decision>,
    seed: u64,
    next_budget: Option<Duration>,
}

impl Metaheuristic {
    pub fn new(bandwidth: f64) -> Self {
        Self::with_list(EarliestFinish::new(bandwidth))
    }

    /// Single tasks (and the plan each window starts from) by `list`.
    pub fn with_list(list: EarliestFinish) -> Self {
        Metaheuristic {
            budget: Duration::from_millis(2),
            list,
            decisions: Vec::new(),
            seed: 1,
            next_budget: None,
        }
    }
}

/// Turns a window plan into placements: a task whose processor has no room
/// now waits.
pub(crate) fn placements(plan: &[usize], procs: &[ProcessorLoad<'_>]) -> Vec<Option<usize>> {
    plan.iter()
        .map(|p| procs[*p].has_room.then_some(*p))
        .collect()
}

impl Policy for Metaheuristic {
    fn name(&self) -> &'static str {
        "metaheuristic"
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
        let mut costs = WindowCosts::new(tasks, procs, self.list.bandwidth);
        let start = costs.list_plan()?;
        costs.keep_to_nodes(&start);
        let budget = self
            .next_budget
            .take()
            .map_or(self.budget, |b| b.min(self.budget));
        if budget < crate::milp::MIN_META_BUDGET || costs.nothing_to_move(&start) {
            self.decisions.push(Decision {
                mode: Mode::List,
                tasks: tasks.len(),
                seconds: clock.elapsed().as_secs_f64(),
                fell_back: false,
            });
            return None;
        }
        self.seed += 1;
        let left = budget.saturating_sub(clock.elapsed());
        let plan = improve(&costs, &start, left, self.seed);
        self.decisions.push(Decision {
            mode: Mode::Metaheuristic,
            tasks: tasks.len(),
            seconds: clock.elapsed().as_secs_f64(),
            fell_back: false,
        });
        plan.map(|plan| placements(&plan, procs))
    }

    fn set_window_budget(&mut self, budget: Duration) {
        self.next_budget = Some(budget);
    }

    fn take_decisions(&mut self) -> Vec<Decision> {
        std::mem::take(&mut self.decisions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_balanced_plan_the_list_rule_misses_and_never_does_worse() {
        // Two equal processors, tasks of 1, 1, 2 s, no tails: the list
        // rule ends at 3, the best plan at 2 (1+1 | 2).
        let w = WindowCosts::from_costs(
            [1.0, 1.0, 2.0]
                .iter()
                .map(|c| vec![Some(*c), Some(*c)])
                .collect(),
            vec![0.0, 0.0],
            vec![0.0; 3],
        );
        let start = w.list_plan().unwrap();
        let best = improve(&w, &start, Duration::from_secs(2), 7).expect("a better plan");
        assert!(w.score(&start) >= 3.0);
        assert!(w.score(&best) < 2.1, "{best:?}: {}", w.score(&best));
        // A task only one processor can run stays there.
        let pinned = WindowCosts::from_costs(
            vec![vec![None, Some(1.0)], vec![Some(1.0), Some(1.0)]],
            vec![0.0, 0.0],
            vec![0.0; 2],
        );
        for seed in 0..20 {
            if let Some(plan) = improve(&pinned, &[1, 0], Duration::from_millis(5), seed) {
                assert_eq!(plan[0], 1);
                assert!(pinned.beats(&plan, &[1, 0]));
            }
        }
    }
}
