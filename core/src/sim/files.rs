//! Task graphs and platforms from files.
//!
//! Graphs come in two formats:
//! - the Standard Task Graph Set (STG) text format: a line with the number
//!   of tasks `n`, then one line per task (`n + 2` of them: a dummy entry
//!   task 0 and exit task `n + 1` included) with its id, processing time
//!   and number of predecessors followed by their ids; `#` starts a
//!   comment. A time unit is taken as one GFLOP of gemm-like work, and each
//!   task writes one tile of data that its successors read, so the
//!   simulator charges transfers between spaces.
//! - our JSON format ([`write_json`] writes it): `{"name", "dtype",
//!   "tasks": [{"op", "flops", "reads": [[data, bytes]], "writes": [...],
//!   "after": [task, ...]}]}`; dependencies are inferred from the accesses
//!   in task order, as the runtime does, plus the explicit `after` ones.
//!
//! Platforms are JSON: memory spaces (with an optional capacity in
//! bytes), processors (kind, space, GFLOP/s, optional op list and count),
//! links between spaces (bytes/s, both ways unless `one_way`), a bandwidth
//! for pairs without a link, a copy latency, and `nodes` to repeat the
//! whole description as nodes of a cluster joined by that default
//! bandwidth; optionally `queue_horizon`, the seconds of work a fast
//! processor takes ahead before ready tasks wait (unbounded by default;
//! 1e-3 is the runtime scheduler's).
//!
//! Every error names the file's line (STG, and JSON syntax) or the task or
//! field at fault; a graph with a cycle is refused, naming a task on it.

use super::graph::{Builder, SimGraph, SimTask};
use super::platform::Platform;
use crate::dtype::DType;
use crate::op::OpName;
use crate::processor::{MemorySpaceId, ProcessorDesc, ProcessorId, ProcessorKind};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Flops per STG time unit.
const STG_UNIT_FLOPS: f64 = 1e9;

/// Reads a graph file: STG unless the name ends in `.json`.
pub fn read_graph(path: &Path, nb: usize) -> Result<SimGraph, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read graph file {}: {e}", path.display()))?;
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        parse_json(&text, &name)
    } else {
        parse_stg(&text, &name, nb)
    };
    parsed.map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses STG text; each task writes a tile of order `nb` (f64).
pub fn parse_stg(text: &str, name: &str, nb: usize) -> Result<SimGraph, String> {
    let bytes = (nb * nb * 8) as u64;
    // (line number, fields) of every line with content.
    let mut lines = text.lines().enumerate().filter_map(|(i, l)| {
        let l = l.split('#').next().unwrap_or("").trim();
        (!l.is_empty()).then(|| (i + 1, l.split_whitespace().collect::<Vec<_>>()))
    });
    let (first, header) = lines.next().ok_or("empty STG file")?;
    let n: usize = match header.as_slice() {
        [n] => n
            .parse()
            .map_err(|_| format!("line {first}: the task count `{n}` is not a number"))?,
        _ => return Err(format!("line {first}: expected the task count alone")),
    };
    let total = n + 2;
    let mut tasks: Vec<Option<SimTask>> = vec![None; total];
    let mut last_line = first;
    for (line, fields) in lines.by_ref().take(total) {
        last_line = line;
        let num = |i: usize, what: &str| -> Result<f64, String> {
            let f = fields
                .get(i)
                .ok_or_else(|| format!("line {line}: missing {what}"))?;
            f.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("line {line}: {what} `{f}` is not a non-negative number"))
        };
        let id = num(0, "task id")? as usize;
        let time = num(1, "processing time")?;
        let npreds = num(2, "predecessor count")? as usize;
        if fields.len() != 3 + npreds {
            return Err(format!(
                "line {line}: task {id} says {npreds} predecessors but lists {}",
                fields.len().saturating_sub(3)
            ));
        }
        if id >= total {
            return Err(format!(
                "line {line}: task id {id} is out of range (0..={})",
                total - 1
            ));
        }
        if tasks[id].is_some() {
            return Err(format!("line {line}: task {id} is defined twice"));
        }
        let mut preds = Vec::with_capacity(npreds);
        for k in 0..npreds {
            let p = num(3 + k, "predecessor id")? as usize;
            if p >= total {
                return Err(format!(
                    "line {line}: predecessor {p} of task {id} does not exist"
                ));
            }
            preds.push(p);
        }
        tasks[id] = Some(SimTask {
            op: OpName::Gemm,
            flops: time * STG_UNIT_FLOPS,
            reads: preds.iter().map(|p| (*p as u32, bytes)).collect(),
            writes: vec![(id as u32, bytes)],
            preds,
        });
    }
    let tasks: Vec<SimTask> = tasks
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.ok_or_else(|| {
                format!(
                    "line {last_line}: the file ends before task {i} (expected {total} task lines)"
                )
            })
        })
        .collect::<Result<_, _>>()?;
    topological(SimGraph {
        name: name.to_string(),
        dtype: Some(DType::F64),
        tasks,
        tile_grid: None,
    })
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GraphFile {
    #[serde(default)]
    name: String,
    #[serde(default = "default_dtype")]
    dtype: String,
    /// Tiles per side when the items are a matrix's tiles
    /// ([`SimGraph::tile_grid`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tile_grid: Option<usize>,
    tasks: Vec<TaskFile>,
}

fn default_dtype() -> String {
    "f64".into()
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFile {
    op: String,
    #[serde(default)]
    flops: f64,
    #[serde(default)]
    reads: Vec<(u32, u64)>,
    /// Items updated in place (their old value is read).
    #[serde(default)]
    writes: Vec<(u32, u64)>,
    /// Items written afresh (nothing of them is read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    creates: Vec<(u32, u64)>,
    #[serde(default)]
    after: Vec<usize>,
}

/// Parses our JSON graph format.
pub fn parse_json(text: &str, name: &str) -> Result<SimGraph, String> {
    let file: GraphFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let dtype: DType = file
        .dtype
        .parse()
        .map_err(|e| format!("field dtype: {e}"))?;
    let n = file.tasks.len();
    let name = if file.name.is_empty() {
        name.to_string()
    } else {
        file.name
    };
    let mut b = Builder::new(name, dtype);
    for (i, t) in file.tasks.into_iter().enumerate() {
        let op = OpName::ALL
            .iter()
            .copied()
            .find(|o| o.as_str() == t.op)
            .ok_or_else(|| format!("task {i}: unknown op `{}`", t.op))?;
        if !(t.flops.is_finite() && t.flops >= 0.0) {
            return Err(format!("task {i}: flops must be a non-negative number"));
        }
        if let Some(bad) = t.after.iter().find(|a| **a >= n || **a == i) {
            return Err(format!(
                "task {i}: `after` names task {bad}, which {}",
                if *bad == i {
                    "is itself"
                } else {
                    "does not exist"
                }
            ));
        }
        b.access_task(op, t.flops, t.reads, t.writes, t.creates, t.after);
    }
    b.graph.tile_grid = file.tile_grid;
    topological(b.graph)
}

/// Writes `g` in our JSON format, with every dependency explicit.
pub fn write_json(g: &SimGraph) -> String {
    let file = GraphFile {
        name: g.name.clone(),
        dtype: g.dtype.map_or("f64", DType::name).to_string(),
        tile_grid: g.tile_grid,
        tasks: g
            .tasks
            .iter()
            .map(|t| TaskFile {
                op: t.op.as_str().to_string(),
                flops: t.flops,
                // Updated items are listed as writes only; the reader adds
                // them back to the reads. Items written but not read are
                // created afresh.
                reads: t
                    .reads
                    .iter()
                    .filter(|r| !t.writes.iter().any(|w| w.0 == r.0))
                    .copied()
                    .collect(),
                writes: (t.writes.iter())
                    .filter(|w| t.reads.iter().any(|r| r.0 == w.0))
                    .copied()
                    .collect(),
                creates: (t.writes.iter())
                    .filter(|w| !t.reads.iter().any(|r| r.0 == w.0))
                    .copied()
                    .collect(),
                after: t.preds.clone(),
            })
            .collect(),
    };
    serde_json::to_string(&file).unwrap_or_default()
}

/// Renumbers `g`'s tasks in a topological order (stable: already sorted
/// graphs keep their numbers), or refuses it if it has a cycle.
fn topological(mut g: SimGraph) -> Result<SimGraph, String> {
    let n = g.tasks.len();
    let (succs, mut pending) = g.successors();
    let mut order = Vec::with_capacity(n);
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|t| pending[*t] == 0).collect();
    while let Some(t) = ready.pop_first() {
        order.push(t);
        for s in &succs[t] {
            pending[*s] -= 1;
            if pending[*s] == 0 {
                ready.insert(*s);
            }
        }
    }
    if order.len() < n {
        let stuck = (0..n).find(|t| pending[*t] > 0).unwrap_or(0);
        return Err(format!(
            "the graph has a cycle: {} tasks never become ready (task {stuck} among them)",
            n - order.len()
        ));
    }
    if order.iter().enumerate().all(|(i, t)| i == *t) {
        return Ok(g);
    }
    let mut new_id = vec![0usize; n];
    for (i, t) in order.iter().enumerate() {
        new_id[*t] = i;
    }
    let mut numbered: Vec<(usize, SimTask)> = g
        .tasks
        .drain(..)
        .enumerate()
        .map(|(t, mut task)| {
            for p in &mut task.preds {
                *p = new_id[*p];
            }
            (new_id[t], task)
        })
        .collect();
    numbered.sort_unstable_by_key(|(i, _)| *i);
    g.tasks = numbered.into_iter().map(|(_, t)| t).collect();
    Ok(g)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlatformFile {
    #[serde(default)]
    name: String,
    spaces: Vec<SpaceFile>,
    processors: Vec<ProcessorFile>,
    #[serde(default)]
    links: Vec<LinkFile>,
    /// Bytes/s between spaces with no link (and between nodes).
    default_bandwidth: f64,
    #[serde(default)]
    latency: f64,
    /// Copies of the whole description, as nodes of a cluster.
    #[serde(default = "one")]
    nodes: usize,
    /// Seconds of work a processor takes ahead before tasks wait in the
    /// ready list (`Platform::queue_horizon`; unbounded by default).
    #[serde(default = "horizon")]
    queue_horizon: f64,
}

fn horizon() -> f64 {
    f64::INFINITY
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpaceFile {
    name: String,
    /// Bytes it holds (unlimited when absent).
    capacity: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessorFile {
    name: String,
    kind: String,
    space: String,
    gflops_f64: f64,
    gflops_f32: Option<f64>,
    /// Ops it runs (all when absent).
    ops: Option<Vec<String>>,
    #[serde(default = "one")]
    count: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkFile {
    from: String,
    to: String,
    bandwidth: f64,
    #[serde(default)]
    one_way: bool,
}

/// Reads a platform file (JSON).
pub fn read_platform(path: &Path) -> Result<Platform, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read platform file {}: {e}", path.display()))?;
    parse_platform(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses a platform description.
pub fn parse_platform(text: &str) -> Result<Platform, String> {
    let f: PlatformFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let positive = |v: f64, what: String| -> Result<f64, String> {
        (v.is_finite() && v > 0.0)
            .then_some(v)
            .ok_or_else(|| format!("{what} must be a positive number, not {v}"))
    };
    positive(f.default_bandwidth, "default_bandwidth".into())?;
    if !(f.latency.is_finite() && f.latency >= 0.0) {
        return Err("latency must be a non-negative number of seconds".into());
    }
    if f.queue_horizon.is_nan() || f.queue_horizon <= 0.0 {
        return Err("queue_horizon must be a positive number of seconds".into());
    }
    if f.nodes == 0 || f.spaces.is_empty() || f.processors.is_empty() {
        return Err("a platform needs at least one node, space and processor".into());
    }
    let per_node = f.spaces.len();
    let space_of = |name: &str, what: &str| -> Result<usize, String> {
        f.spaces
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| format!("{what}: no space named `{name}`"))
    };
    for (i, s) in f.spaces.iter().enumerate() {
        if f.spaces[..i].iter().any(|o| o.name == s.name) {
            return Err(format!("space `{}` is defined twice", s.name));
        }
        if let Some(c) = s.capacity {
            positive(c, format!("space `{}`: capacity", s.name))?;
        }
    }
    let mut link = vec![vec![None::<f64>; per_node]; per_node];
    for l in &f.links {
        let what = format!("link {} -> {}", l.from, l.to);
        let (a, b) = (space_of(&l.from, &what)?, space_of(&l.to, &what)?);
        positive(l.bandwidth, format!("{what}: bandwidth"))?;
        link[a][b] = Some(l.bandwidth);
        if !l.one_way {
            link[b][a] = Some(l.bandwidth);
        }
    }
    let mut processors = Vec::new();
    for node in 0..f.nodes {
        for p in &f.processors {
            let what = format!("processor `{}`", p.name);
            let space = space_of(&p.space, &what)? + node * per_node;
            let kind = match p.kind.as_str() {
                "cpu" => ProcessorKind::Cpu,
                "cuda" | "gpu" => ProcessorKind::Cuda,
                "wgpu" => ProcessorKind::Wgpu,
                other => {
                    return Err(format!(
                        "{what}: unknown kind `{other}` (cpu, cuda, gpu, wgpu)"
                    ))
                }
            };
            let ops = match &p.ops {
                None => OpName::ALL.to_vec(),
                Some(names) => names
                    .iter()
                    .map(|n| {
                        OpName::ALL
                            .iter()
                            .copied()
                            .find(|o| o.as_str() == n)
                            .ok_or_else(|| format!("{what}: unknown op `{n}`"))
                    })
                    .collect::<Result<_, _>>()?,
            };
            let f64_rate = positive(p.gflops_f64, format!("{what}: gflops_f64"))?;
            let f32_rate = match p.gflops_f32 {
                Some(r) => positive(r, format!("{what}: gflops_f32"))?,
                None => 2.0 * f64_rate,
            };
            if p.count == 0 {
                return Err(format!("{what}: count must be at least 1"));
            }
            for k in 0..p.count {
                let mut name = p.name.clone();
                if p.count > 1 {
                    name = format!("{name}{k}");
                }
                if f.nodes > 1 {
                    name = format!("n{node}.{name}");
                }
                processors.push(ProcessorDesc {
                    id: ProcessorId(processors.len() as u32),
                    kind,
                    name,
                    memory: MemorySpaceId(space as u32),
                    gflops_f32: f32_rate,
                    gflops_f64: f64_rate,
                    ops: ops.clone(),
                    dtypes: vec![DType::F32, DType::F64],
                });
            }
        }
    }
    let spaces = per_node * f.nodes;
    let bandwidth = (0..spaces)
        .map(|a| {
            (0..spaces)
                .map(|b| match (a == b, a / per_node == b / per_node) {
                    (true, _) => f64::INFINITY,
                    (false, true) => {
                        link[a % per_node][b % per_node].unwrap_or(f.default_bandwidth)
                    }
                    (false, false) => f.default_bandwidth,
                })
                .collect()
        })
        .collect();
    let capacity = (0..spaces)
        .map(|s| f.spaces[s % per_node].capacity.map(|c| c as u64))
        .collect();
    Ok(Platform {
        name: if f.name.is_empty() {
            "platform".into()
        } else {
            f.name
        },
        processors,
        bandwidth,
        latency: f.latency,
        capacity,
        node: (0..spaces).map(|s| s / per_node).collect(),
        queue_horizon: f.queue_horizon,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::EarliestFinish;
    use crate::sim::{graph, platform, simulate, ReadyOrder};

    const STG: &str = "\
# a diamond: 1 and 2 after 0, 3 after both
4
0 0 0
1 5 1 0
2 3 1 0
3 2 2 1 2
4 4 1 3
5 0 1 4
";

    #[test]
    fn reads_stg_and_simulates_it_on_one_processor_as_the_sum_of_its_times() {
        let g = parse_stg(STG, "diamond", 64).unwrap();
        assert_eq!(g.tasks.len(), 6);
        assert_eq!(g.tasks[3].preds, vec![1, 2]);
        let p = platform::builtin("cpu").unwrap();
        let r = simulate(&g, &p, &mut EarliestFinish::new(1e9), ReadyOrder::Rank).unwrap();
        let expected = 14.0 * STG_UNIT_FLOPS / (p.processors[0].gflops_f64 * 1e9);
        assert!((r.makespan / expected - 1.0).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn malformed_stg_files_name_the_line() {
        for (text, wanted) in [
            ("", "empty"),
            ("x\n", "line 1"),
            ("2\n0 0 0\n1 1 1 0\n", "line 3: the file ends before task 2"),
            (
                "2\n0 0 0\n1 1 2 0\n2 1 1 1\n3 0 1 2\n",
                "line 3: task 1 says 2",
            ),
            ("2\n0 0 0\n1 -1 1 0\n", "line 3: processing time `-1`"),
            ("2\n0 0 0\n1 1 1 9\n", "line 3: predecessor 9"),
            ("2\n0 0 0\n0 1 0\n", "line 3: task 0 is defined twice"),
            ("1\n0 0 1 2\n1 1 1 0\n2 0 1 1\n", "cycle"),
        ] {
            let e = parse_stg(text, "bad", 8).unwrap_err();
            assert!(e.contains(wanted), "{text:?}: {e}");
        }
    }

    #[test]
    fn every_example_file_reads_and_simulates() {
        // The files docs/simulator.md and BENCHMARKS.md point to.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/sim");
        let mut read = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.display().to_string();
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => {
                    let p = read_platform(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
                    let g = graph::cholesky(4, 256);
                    let r = simulate(&g, &p, &mut EarliestFinish::new(25e9), ReadyOrder::Rank)
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert!(r.makespan >= r.lower_bound, "{name}");
                }
                Some("stg") => {
                    read_graph(&path, 256).unwrap_or_else(|e| panic!("{name}: {e}"));
                }
                _ => continue,
            }
            read += 1;
        }
        assert!(read >= 7, "{read} files in {}", dir.display());
    }

    #[test]
    fn generated_graphs_survive_a_json_round_trip_with_the_same_makespan() {
        // Where their tiles start (the grid) and which writes are updates
        // and which are new items (layered) come back too: on a cluster
        // both decide where tasks run.
        for g in [graph::cholesky(6, 256), graph::layered(300, 256, 1)] {
            let back = parse_json(&write_json(&g), "x").unwrap();
            assert_eq!(back.tasks.len(), g.tasks.len());
            assert_eq!(back.tile_grid, g.tile_grid);
            for (a, b) in g.tasks.iter().zip(&back.tasks) {
                assert_eq!(a.preds, b.preds);
                assert_eq!(a.op, b.op);
                assert_eq!((&a.reads, &a.writes), (&b.reads, &b.writes));
            }
            for name in ["node-1cpu-2gpu", "cluster-16x4"] {
                let p = platform::builtin(name).unwrap();
                let m = |g: &SimGraph| {
                    simulate(g, &p, &mut EarliestFinish::new(25e9), ReadyOrder::Rank)
                        .unwrap()
                        .makespan
                };
                assert_eq!(m(&g), m(&back), "{} on {name}", g.name);
            }
        }
        // Tasks listed out of order are renumbered; cycles are refused.
        let swapped =
            r#"{"tasks": [{"op": "gemm", "flops": 1, "after": [1]}, {"op": "potrf", "flops": 1}]}"#;
        let s = parse_json(swapped, "s").unwrap();
        assert_eq!(s.tasks[0].op, OpName::Potrf);
        assert_eq!(s.tasks[1].preds, vec![0]);
        let cyclic = r#"{"tasks": [{"op": "gemm", "after": [1]}, {"op": "gemm", "after": [0]}]}"#;
        assert!(parse_json(cyclic, "c").unwrap_err().contains("cycle"));
        let e = parse_json("{\n\"tasks\": [\n{\"op\": \"gemm\",}\n]}", "t").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
        assert!(parse_json(r#"{"tasks": [{"op": "fft"}]}"#, "f")
            .unwrap_err()
            .contains("task 0: unknown op `fft`"));
    }

    const NODE: &str = r#"{
  "name": "two-gpu",
  "spaces": [{"name": "host"}, {"name": "gpu0", "capacity": 8e10}, {"name": "gpu1", "capacity": 8e10}],
  "processors": [
    {"name": "cpu", "kind": "cpu", "space": "host", "gflops_f64": 1500},
    {"name": "gpu0", "kind": "cuda", "space": "gpu0", "gflops_f64": 50000},
    {"name": "gpu1", "kind": "cuda", "space": "gpu1", "gflops_f64": 50000}
  ],
  "links": [
    {"from": "host", "to": "gpu0", "bandwidth": 25e9},
    {"from": "host", "to": "gpu1", "bandwidth": 25e9},
    {"from": "gpu0", "to": "gpu1", "bandwidth": 150e9}
  ],
  "default_bandwidth": 12.5e9,
  "latency": 5e-6
}"#;

    #[test]
    fn a_platform_file_matches_the_built_in_node_and_repeats_as_a_cluster() {
        let file = parse_platform(NODE).unwrap();
        let built = platform::builtin("node-1cpu-2gpu").unwrap();
        assert_eq!(file.bandwidth, built.bandwidth);
        assert_eq!(file.processors.len(), 3);
        assert_eq!(file.capacity[1], Some(80_000_000_000));
        let g = graph::lu(8, 512);
        let m = |p: &Platform| {
            simulate(&g, p, &mut EarliestFinish::new(25e9), ReadyOrder::Rank)
                .unwrap()
                .makespan
        };
        // Capacities far above what 8x8 tiles of 512 need change nothing.
        assert_eq!(m(&file), m(&built));
        let cluster =
            parse_platform(&NODE.replace("\"latency\"", "\"nodes\": 4, \"latency\"")).unwrap();
        assert_eq!(cluster.processors.len(), 12);
        assert_eq!(cluster.processors[4].name, "n1.gpu0");
        assert_eq!(cluster.bandwidth[1][4], 12.5e9);
    }

    #[test]
    fn malformed_platforms_are_refused_clearly() {
        for (text, wanted) in [
            (
                NODE.replace("\"space\": \"host\"", "\"space\": \"disk\""),
                "no space named `disk`",
            ),
            (NODE.replace("25e9}", "-1}"), "bandwidth must be a positive"),
            (NODE.replace("\"cuda\"", "\"tpu\""), "unknown kind `tpu`"),
            (NODE.replace("\"latency\"", "\"latncy\""), "line 15"),
            (NODE.replace("8e10", "0"), "capacity must be a positive"),
            (
                NODE.replace("\"latency\"", "\"queue_horizon\": 0, \"latency\""),
                "queue_horizon must be a positive",
            ),
        ] {
            let e = parse_platform(&text).unwrap_err();
            assert!(e.contains(wanted), "{e}");
        }
    }
}
