//! `tessera bench windows`: how long the window policies take on windows
//! of the size the scheduler hands them, against their budgets (issue #5:
//! a 64-task × 4-processor MILP window within 20 ms, the fallback within
//! 2 ms), and what their plans gain over the list plan.
//!
//! Windows are random but repeatable (a seed): tasks of a tiled
//! Cholesky's four kernels at tile 1024, each reading one to three 8 MB
//! tiles held in host memory or on a GPU, with work behind them (tails)
//! and work already queued on each processor, on one CPU and three GPUs
//! whose links carry random queues. Each window goes to the MILP policy
//! (its metaheuristic as fallback) and to the metaheuristic alone; the
//! time is each policy's own record of the decision, the costs' set-up
//! and the solve together.

use super::{CliResult, WindowsArgs};
use std::time::Duration;
use tessera_core::arrival::LinkState;
use tessera_core::dtype::DType;
use tessera_core::metaheuristic::Metaheuristic;
use tessera_core::milp::Milp;
use tessera_core::op::OpName;
use tessera_core::policy::{Decision, EarliestFinish, PlacementRequest, Policy, ProcessorLoad};
use tessera_core::processor::MemorySpaceId;
use tessera_core::seeded::Seeded;
use tessera_core::sim::platform;
use tessera_core::window::WindowCosts;

/// Bytes of a 1024 × 1024 f64 tile.
const TILE_BYTES: u64 = 1024 * 1024 * 8;

/// One window's inputs: per task its op, flops, tail and inputs.
struct Window {
    tasks: Vec<(OpName, f64, f64, Vec<Vec<MemorySpaceId>>)>,
    /// Seconds queued on each processor, tasks queued there.
    queued: Vec<(f64, usize)>,
    /// Seconds until each link resource is free.
    free: Vec<f64>,
}

/// A value in `[0, 1)` in steps of 2⁻²⁰.
fn unit(draw: &mut Seeded) -> f64 {
    draw.below(1 << 20) as f64 / (1u64 << 20) as f64
}

fn window(draw: &mut Seeded, tasks: usize, spaces: u64, procs: usize, resources: usize) -> Window {
    let n = 1024.0f64;
    let kinds = [
        (OpName::Gemm, 2.0 * n * n * n, 3),
        (OpName::Syrk, n * n * n, 2),
        (OpName::Trsm, n * n * n, 2),
        (OpName::Potrf, n * n * n / 3.0, 1),
    ];
    let tasks = (0..tasks)
        .map(|_| {
            let (op, flops, reads) = kinds[draw.below(4) as usize];
            // Work behind the task: up to 2 ms, the critical few more.
            let tail = unit(draw) * if draw.below(8) == 0 { 10e-3 } else { 2e-3 };
            let inputs = (0..reads)
                .map(|_| vec![MemorySpaceId(draw.below(spaces) as u32)])
                .collect();
            (op, flops, tail, inputs)
        })
        .collect();
    Window {
        tasks,
        queued: (0..procs)
            .map(|_| (unit(draw) * 1e-3, draw.below(4) as usize))
            .collect(),
        free: (0..resources).map(|_| unit(draw) * 1e-3).collect(),
    }
}

/// Percentile `q` (0–1) of `v`, in milliseconds.
fn percentile_ms(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 - 1.0) * q).round() as usize)
        .map_or(0.0, |s| s * 1e3)
}

/// One policy's decisions over the windows.
#[derive(Default)]
struct Tally {
    seconds: Vec<f64>,
    /// Per mode name: windows.
    modes: std::collections::BTreeMap<&'static str, usize>,
    fell_back: usize,
    /// Plans returned (better than the list plan), and their gains.
    plans: usize,
    gains: Vec<f64>,
}

impl Tally {
    fn add(&mut self, decisions: Vec<Decision>, gain: Option<f64>) {
        let seconds: f64 = decisions.iter().map(|d| d.seconds).sum();
        self.seconds.push(seconds);
        for d in decisions {
            *self.modes.entry(d.mode.as_str()).or_default() += 1;
            self.fell_back += usize::from(d.fell_back);
        }
        if let Some(g) = gain {
            self.plans += 1;
            self.gains.push(g);
        }
    }

    fn within(&self, budget: f64) -> usize {
        self.seconds.iter().filter(|s| **s <= budget).count()
    }
}

pub fn run(args: &WindowsArgs) -> CliResult {
    let platform = platform::nodes(1, 3);
    let model = platform.link_model();
    let spaces = platform.bandwidth.len() as u64;
    let procs = platform.processors.len();
    let mut draw = Seeded::from_state(args.seed);
    let mut milp = Milp::new(Box::new(EarliestFinish::new(25e9)));
    let mut meta = Metaheuristic::new(25e9);
    let (milp_budget, meta_budget) = (milp.time_limit, meta.budget);
    let (mut by_milp, mut by_meta) = (Tally::default(), Tally::default());
    for _ in 0..args.windows {
        let w = window(
            &mut draw,
            args.tasks as usize,
            spaces,
            procs,
            model.resources,
        );
        let state = LinkState {
            model: &model,
            free: w.free.clone(),
        };
        let inputs: Vec<Vec<(u64, &[MemorySpaceId])>> = w
            .tasks
            .iter()
            .map(|(_, _, _, held)| held.iter().map(|h| (TILE_BYTES, h.as_slice())).collect())
            .collect();
        let requests: Vec<PlacementRequest<'_>> = w
            .tasks
            .iter()
            .zip(&inputs)
            .map(|((op, flops, tail, _), inp)| PlacementRequest {
                tail: *tail,
                output_bytes: TILE_BYTES,
                ..PlacementRequest::new(*op, Some(DType::F64), *flops, inp)
            })
            .collect();
        let loads: Vec<ProcessorLoad<'_>> = platform
            .processors
            .iter()
            .zip(&w.queued)
            .map(|(desc, (seconds, tasks))| ProcessorLoad {
                desc,
                queued_seconds: *seconds,
                queued_tasks: *tasks,
                has_room: true,
                copy_bandwidth: 0.0,
                memory_bytes: None,
                links: Some(&state),
                room_seconds: f64::INFINITY,
            })
            .collect();
        let costs = WindowCosts::new(&requests, &loads, 25e9);
        let list = costs
            .list_plan()
            .ok_or("a window task no processor can run")?;
        let gain = |plan: Option<Vec<Option<usize>>>| {
            let plan: Vec<usize> = plan?.into_iter().collect::<Option<_>>()?;
            Some(1.0 - costs.score(&plan) / costs.score(&list))
        };
        let plan = milp.place_batch(&requests, &loads);
        by_milp.add(milp.take_decisions(), gain(plan));
        let plan = meta.place_batch(&requests, &loads);
        by_meta.add(meta.take_decisions(), gain(plan));
    }
    let rows = [
        ("milp", &by_milp, milp_budget),
        ("metaheuristic", &by_meta, meta_budget),
    ];
    if args.json {
        let cases: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, t, budget)| {
                serde_json::json!({
                    "policy": name,
                    "windows": t.seconds.len(),
                    "budget_ms": ms(*budget),
                    "p50_ms": percentile_ms(&t.seconds, 0.5),
                    "p95_ms": percentile_ms(&t.seconds, 0.95),
                    "max_ms": percentile_ms(&t.seconds, 1.0),
                    "within_budget": t.within(budget.as_secs_f64()),
                    "modes": t.modes,
                    "fell_back": t.fell_back,
                    "plans": t.plans,
                    "mean_gain": mean(&t.gains),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "tasks": args.tasks, "processors": procs, "seed": args.seed,
                "policies": cases,
            })
        );
        return Ok(());
    }
    println!(
        "{} windows of {} tasks on {} processors ({}), seed {}",
        args.windows, args.tasks, procs, platform.name, args.seed
    );
    println!(
        "{:<14} {:>9} {:>8} {:>8} {:>8} {:>13} {:>10} {:>6} {:>10}",
        "policy",
        "budget ms",
        "p50 ms",
        "p95 ms",
        "max ms",
        "within budget",
        "fell back",
        "plans",
        "mean gain"
    );
    for (name, t, budget) in rows {
        println!(
            "{:<14} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>13} {:>10} {:>6} {:>9.1}%",
            name,
            ms(budget),
            percentile_ms(&t.seconds, 0.5),
            percentile_ms(&t.seconds, 0.95),
            percentile_ms(&t.seconds, 1.0),
            format!("{}/{}", t.within(budget.as_secs_f64()), t.seconds.len()),
            t.fell_back,
            t.plans,
            100.0 * mean(&t.gains)
        );
        let modes: Vec<String> = t.modes.iter().map(|(m, n)| format!("{m} {n}")).collect();
        println!("  modes: {}", modes.join(", "));
    }
    Ok(())
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Milliseconds of `d`.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
