//! Scoring a placement of a window of ready tasks, shared by the MILP and
//! the metaheuristic so that both optimise, and are compared on, the same
//! thing.
//!
//! A plan puts each task of the window on a processor. Tasks join their
//! processor's queue in window order (the order the caller gives, highest
//! priority first), so a task finishes after the processor's queued work,
//! the window tasks before it there, and its own time (copies included).
//! What matters is not when the window ends but when the graph can: a task
//! that finishes late but has nothing behind it costs nothing, while one
//! on the critical path delays everything after it. So a plan's score is
//! the largest `finish + tail` over its tasks (the earliest the graph could
//! end given this window, `tail` being the work that must follow each
//! task), plus a small weight on the sum of finishes, which prefers, of
//! plans with equal critical ends, the one that frees processors sooner.

use crate::policy::{estimate_seconds, PlacementRequest, ProcessorLoad};

/// Weight of the sum of finishes against the critical end.
const SUM_WEIGHT: f64 = 1e-3;

/// The costs a window's plans are scored with.
#[derive(Debug, Clone)]
pub struct WindowCosts {
    /// `cost[t][p]`: seconds of task `t` on processor `p` (`None`: it cannot run there).
    pub cost: Vec<Vec<Option<f64>>>,
    /// Seconds already queued on each processor.
    pub queue: Vec<f64>,
    /// Each task's tail.
    pub tail: Vec<f64>,
}

impl WindowCosts {
    /// Costs of `tasks` on `procs`, charging missing inputs at each
    /// processor's copy bandwidth (or `default_bandwidth`).
    pub fn new(
        tasks: &[PlacementRequest<'_>],
        procs: &[ProcessorLoad<'_>],
        default_bandwidth: f64,
    ) -> Self {
        let cost = tasks
            .iter()
            .map(|t| {
                procs
                    .iter()
                    .map(|p| {
                        let bw = if p.copy_bandwidth > 0.0 {
                            p.copy_bandwidth
                        } else {
                            default_bandwidth
                        };
                        p.desc
                            .supports(t.op, t.dtype)
                            .then(|| estimate_seconds(t, p.desc, bw))
                    })
                    .collect()
            })
            .collect();
        WindowCosts {
            cost,
            queue: procs.iter().map(|p| p.queued_seconds).collect(),
            tail: tasks.iter().map(|t| t.tail.max(0.0)).collect(),
        }
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

    /// The score of `plan` (processor index per task; lower is better), or
    /// infinity if it puts a task where it cannot run.
    pub fn score(&self, plan: &[usize]) -> f64 {
        let mut free = self.queue.clone();
        let (mut end, mut sum) = (0.0f64, 0.0f64);
        for (t, p) in plan.iter().enumerate() {
            let Some(c) = self.cost[t].get(*p).copied().flatten() else {
                return f64::INFINITY;
            };
            free[*p] += c;
            end = end.max(free[*p] + self.tail[t]);
            sum += free[*p];
        }
        end + SUM_WEIGHT * sum
    }

    /// The list plan: each task in window order on the processor where it
    /// would finish first (HEFT's rule for one decision), or `None` if a
    /// task can run nowhere.
    pub fn list_plan(&self) -> Option<Vec<usize>> {
        let mut free = self.queue.clone();
        self.cost
            .iter()
            .map(|row| {
                let (p, f) = row
                    .iter()
                    .enumerate()
                    .filter_map(|(p, c)| Some((p, free[p] + (*c)?)))
                    .min_by(|a, b| a.1.total_cmp(&b.1))?;
                free[p] = f;
                Some(p)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn costs(cost: Vec<Vec<Option<f64>>>, queue: Vec<f64>, tail: Vec<f64>) -> WindowCosts {
        WindowCosts { cost, queue, tail }
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
}
