//! `tessera sim` and `tessera bench sim`: policies on simulated machines.

use super::{CliResult, SimArgs, SimSuiteArgs};
use std::path::Path;
use tessera_core::policy::{by_name_with, Policy, AWAY_WEIGHT};
use tessera_core::sim::graph::SimGraph;
use tessera_core::sim::platform::Platform;
use tessera_core::sim::{files, graph, platform, simulate, ReadyOrder, SimResult};

/// A policy by name, with the order it places ready tasks in: eager
/// takes them as they come, the others by upward rank.
fn policy(name: &str, away_weight: f64) -> Result<(Box<dyn Policy>, ReadyOrder), String> {
    let order = if name == "eager" {
        ReadyOrder::Fifo
    } else {
        ReadyOrder::Rank
    };
    Ok((by_name_with(name, 25e9, away_weight)?, order))
}

/// A graph file if `spec` names one, else a generator.
fn load_graph(spec: &str, tile: usize) -> Result<SimGraph, String> {
    let path = Path::new(spec);
    if path.exists() {
        files::read_graph(path, tile)
    } else {
        graph::generate(spec, tile)
    }
}

/// A platform file if `spec` names one, else a built-in platform.
fn load_platform(spec: &str) -> Result<Platform, String> {
    let path = Path::new(spec);
    if path.exists() {
        files::read_platform(path)
    } else {
        platform::builtin(spec)
    }
}

fn run_one(
    g: &SimGraph,
    p: &Platform,
    policy_name: &str,
    away_weight: f64,
) -> Result<SimResult, String> {
    let (mut pol, order) = policy(policy_name, away_weight)?;
    simulate(g, p, pol.as_mut(), order)
}

/// A memory space by the processors in it (`cpu`, `gpu0`), or its index.
fn space_name(p: &Platform, space: u32) -> String {
    let names: Vec<&str> = p
        .processors
        .iter()
        .filter(|q| q.memory.0 == space)
        .map(|q| q.name.as_str())
        .collect();
    if names.is_empty() {
        format!("space {space}")
    } else {
        names.join("+")
    }
}

pub fn run(args: &SimArgs) -> CliResult {
    let tile = usize::try_from(args.tile)?;
    let g = load_graph(&args.graph, tile)?;
    if let Some(out) = &args.save_graph {
        std::fs::write(out, files::write_json(&g))
            .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    }
    let p = load_platform(&args.platform)?;
    let r = run_one(&g, &p, &args.policy, args.away_weight)?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "graph": args.graph, "platform": args.platform, "policy": args.policy,
                "away_weight": args.away_weight,
                "tasks": r.tasks, "makespan": r.makespan, "lower_bound": r.lower_bound,
                "ratio": r.makespan / r.lower_bound, "decision_us_per_task": r.decision_us_per_task,
                "bytes_moved": r.bytes_moved, "evictions": r.evictions,
                "bytes_written_back": r.bytes_written_back, "refetched": r.refetched,
                "memory_bound_placements": r.memory_bound_placements,
                "modes": r.modes,
                "links": r.links, "network": r.network, "processors": r.processors,
            })
        );
    } else {
        println!(
            "{} on {} with {}{}: {} tasks, makespan {:.4} s, lower bound {:.4} s (ratio {:.3}), {:.2} µs per decision, {:.1} GB moved",
            args.graph,
            args.platform,
            args.policy,
            if args.away_weight == AWAY_WEIGHT {
                String::new()
            } else {
                format!(" (away weight {})", args.away_weight)
            },
            r.tasks,
            r.makespan,
            r.lower_bound,
            r.makespan / r.lower_bound,
            r.decision_us_per_task,
            r.bytes_moved / 1e9
        );
        if p.nodes() > 1 {
            print_nodes(&p, &r);
        } else {
            for q in &r.processors {
                println!(
                    "  {}: {} tasks, busy {:.4} s ({:.0}% of the makespan)",
                    q.name,
                    q.tasks,
                    q.busy_seconds,
                    100.0 * q.busy_seconds / r.makespan
                );
            }
        }
        let space = |s: u32| space_name(&p, s);
        for l in r.links.iter().take(6) {
            println!(
                "  link {} -> {}: {:.2} GB, busy {:.4} s ({:.0}% of the makespan)",
                space(l.from),
                space(l.to),
                l.bytes / 1e9,
                l.busy_seconds,
                100.0 * l.busy_seconds / r.makespan
            );
        }
        let busiest = r
            .network
            .iter()
            .max_by(|a, b| a.busiest_seconds().total_cmp(&b.busiest_seconds()));
        if let Some(n) = busiest {
            let across: f64 = r.network.iter().map(|n| n.bytes_out).sum();
            let (dir, bytes, busy) = if n.busy_in_seconds >= n.busy_out_seconds {
                ("in", n.bytes_in, n.busy_in_seconds)
            } else {
                ("out", n.bytes_out, n.busy_out_seconds)
            };
            println!(
                "  network: {:.2} GB between nodes; busiest interface node {} {dir}: {:.2} GB, busy {:.4} s ({:.0}% of the makespan)",
                across / 1e9,
                n.node,
                bytes / 1e9,
                busy,
                100.0 * busy / r.makespan
            );
        }
        if r.evictions > 0 {
            println!(
                "  memory: {} evictions, {:.2} GB written back; {} tasks had inputs copied in at launch (not prefetched for want of room, or evicted since)",
                r.evictions,
                r.bytes_written_back / 1e9,
                r.refetched
            );
        }
        if r.memory_bound_placements > 0 {
            println!(
                "  memory-bound: {} of {} tasks placed in submission order (their data over {} times the devices' memory)",
                r.memory_bound_placements,
                r.tasks,
                tessera_core::policy::MEMORY_BOUND_ENTER
            );
        }
        for (mode, m) in &r.modes {
            println!(
                "  {mode}: {} windows, {} tasks, {:.3} ms per window, {} as fallback",
                m.windows,
                m.tasks,
                m.seconds * 1e3 / m.windows.max(1) as f64,
                m.fell_back
            );
        }
    }
    Ok(())
}

/// The fixed suite of issue #5: Cholesky, LU and QR of 5,000 - 20,000
/// tasks and layered graphs, on a GPU node and a cluster, the cluster
/// with a 12.5 GB/s network (where the network sets the pace) and with a
/// 200 GB/s one (where the processors do too).
const SUITE: [&str; 6] = [
    "cholesky:30",
    "cholesky:48",
    "lu:24",
    "qr:24",
    "layered:5000",
    "layered:20000",
];
const PLATFORMS: [&str; 3] = ["node-1cpu-2gpu", "cluster-16x4", "cluster-16x4-fast"];
const POLICIES: [&str; 4] = ["eager", "heft", "milp", "metaheuristic"];

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
        let graph = graph::generate(g, tile)?;
        for p in PLATFORMS {
            let platform = platform::builtin(p)?;
            for pol in POLICIES {
                let r = run_one(&graph, &platform, pol, AWAY_WEIGHT)?;
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
                    "decision_us_per_task": r.decision_us_per_task, "modes": r.modes,
                }));
            }
        }
    }
    if args.json {
        println!("{}", serde_json::json!({ "tile": tile, "cases": rows }));
    }
    Ok(())
}

/// A cluster's processors a line per node (each processor is in `--json`):
/// tasks and mean busy share of its CPUs and of its GPUs.
fn print_nodes(p: &Platform, r: &SimResult) {
    let mut nodes = vec![[(0usize, 0.0f64, 0usize); 2]; p.nodes()];
    for (desc, q) in p.processors.iter().zip(&r.processors) {
        let kind = usize::from(desc.kind != tessera_core::processor::ProcessorKind::Cpu);
        let n = &mut nodes[p.node[desc.memory.0 as usize]][kind];
        n.0 += q.tasks;
        n.1 += q.busy_seconds;
        n.2 += 1;
    }
    for (i, [cpu, dev]) in nodes.iter().enumerate() {
        let share = |(_, busy, count): &(usize, f64, usize)| {
            100.0 * busy / (*count).max(1) as f64 / r.makespan
        };
        println!(
            "  node {i}: CPUs {} tasks, {:.0}% busy; devices {} tasks, {:.0}% busy ({} of them)",
            cpu.0,
            share(cpu),
            dev.0,
            share(dev),
            dev.2
        );
    }
}
