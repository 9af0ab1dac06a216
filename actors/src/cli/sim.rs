//! `tessera sim` and `tessera bench sim`: policies on simulated machines.

use super::{CliResult, SimArgs, SimSuiteArgs};
use tessera_core::milp::Milp;
use tessera_core::policy::{Eager, EarliestFinish, Policy};
use tessera_core::sim::{graph, platform, simulate, ReadyOrder, SimResult};

/// A policy by name, with the order it places ready tasks in.
fn policy(name: &str) -> Result<(Box<dyn Policy>, ReadyOrder), String> {
    match name {
        "eager" => Ok((Box::new(Eager), ReadyOrder::Fifo)),
        "heft" => Ok((Box::new(EarliestFinish::new(25e9)), ReadyOrder::Rank)),
        // MILP windows of tasks ready together, HEFT for the rest.
        "milp" => Ok((
            Box::new(Milp::new(Box::new(EarliestFinish::new(25e9)))),
            ReadyOrder::Rank,
        )),
        "metaheuristic" => Err(
            "policy `metaheuristic` is not built yet (issue #5): use eager, heft or milp".into(),
        ),
        other => Err(format!("unknown policy `{other}` (eager, heft, milp)")),
    }
}

fn run_one(
    graph_spec: &str,
    platform_name: &str,
    policy_name: &str,
    tile: usize,
) -> Result<SimResult, String> {
    let g = graph::generate(graph_spec, tile)?;
    let p = platform::builtin(platform_name)?;
    let (mut pol, order) = policy(policy_name)?;
    simulate(&g, &p, pol.as_mut(), order)
}

pub fn run(args: &SimArgs) -> CliResult {
    let tile = usize::try_from(args.tile)?;
    let r = run_one(&args.graph, &args.platform, &args.policy, tile)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "graph": args.graph, "platform": args.platform, "policy": args.policy,
                "tasks": r.tasks, "makespan": r.makespan, "lower_bound": r.lower_bound,
                "ratio": r.makespan / r.lower_bound, "decision_us_per_task": r.decision_us_per_task,
                "bytes_moved": r.bytes_moved,
            })
        );
    } else {
        println!(
            "{} on {} with {}: {} tasks, makespan {:.4} s, lower bound {:.4} s (ratio {:.3}), {:.2} µs per decision, {:.1} GB moved",
            args.graph,
            args.platform,
            args.policy,
            r.tasks,
            r.makespan,
            r.lower_bound,
            r.makespan / r.lower_bound,
            r.decision_us_per_task,
            r.bytes_moved / 1e9
        );
    }
    Ok(())
}

/// The fixed suite of issue #5: Cholesky, LU and QR of 5,000 - 20,000
/// tasks and layered graphs, on a GPU node and a cluster.
const SUITE: [&str; 6] = [
    "cholesky:30",
    "cholesky:48",
    "lu:24",
    "qr:24",
    "layered:5000",
    "layered:20000",
];
const PLATFORMS: [&str; 2] = ["node-1cpu-2gpu", "cluster-16x4"];
const POLICIES: [&str; 3] = ["eager", "heft", "milp"];

pub fn suite(args: &SimSuiteArgs) -> CliResult {
    let tile = usize::try_from(args.tile)?;
    let mut rows = Vec::new();
    if !args.json {
        println!(
            "{:<14} {:<15} {:<7} {:>7} {:>11} {:>11} {:>7} {:>9}",
            "graph", "platform", "policy", "tasks", "makespan s", "bound s", "ratio", "µs/dec"
        );
    }
    for g in SUITE {
        for p in PLATFORMS {
            for pol in POLICIES {
                let r = run_one(g, p, pol, tile)?;
                if !args.json {
                    println!(
                        "{:<14} {:<15} {:<7} {:>7} {:>11.4} {:>11.4} {:>7.3} {:>9.2}",
                        g,
                        p,
                        pol,
                        r.tasks,
                        r.makespan,
                        r.lower_bound,
                        r.makespan / r.lower_bound,
                        r.decision_us_per_task
                    );
                }
                rows.push(serde_json::json!({
                    "graph": g, "platform": p, "policy": pol, "tasks": r.tasks,
                    "makespan": r.makespan, "lower_bound": r.lower_bound,
                    "ratio": r.makespan / r.lower_bound,
                    "decision_us_per_task": r.decision_us_per_task,
                }));
            }
        }
    }
    if args.json {
        println!("{}", serde_json::json!({ "tile": tile, "cases": rows }));
    }
    Ok(())
}
