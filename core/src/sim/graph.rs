//! Task graphs for the simulator: tasks with an op, flops, the data they
//! read and write, and the dependencies those accesses imply (read after
//! write, write after read, write after write, in submission order, as the
//! runtime infers them), with generators for tiled Cholesky, LU and QR and
//! for random layered graphs.

use crate::dtype::DType;
use crate::op::OpName;
use std::collections::HashMap;

/// One task of a simulated graph.
#[derive(Debug, Clone)]
pub struct SimTask {
    pub op: OpName,
    pub flops: f64,
    /// Data items read (id, bytes).
    pub reads: Vec<(u32, u64)>,
    /// Data items written (id, bytes).
    pub writes: Vec<(u32, u64)>,
    /// Tasks this one waits for.
    pub preds: Vec<usize>,
}

/// A task graph in submission order.
#[derive(Debug, Clone, Default)]
pub struct SimGraph {
    pub name: String,
    pub dtype: Option<DType>,
    pub tasks: Vec<SimTask>,
    /// Tiles per side when the items are the tiles of a square matrix,
    /// tile (i, j) the item i·grid + j (the tiled generators): on a
    /// cluster they start 2D block-cyclic
    /// ([`crate::sim::Platform::start_space`]).
    pub tile_grid: Option<usize>,
}

impl SimGraph {
    /// Each task's successors, and how many predecessors each waits for.
    pub fn successors(&self) -> (Vec<Vec<usize>>, Vec<usize>) {
        let n = self.tasks.len();
        let mut succs: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut pending: Vec<usize> = vec![0; n];
        for (t, task) in self.tasks.iter().enumerate() {
            pending[t] = task.preds.len();
            for p in &task.preds {
                succs[*p].push(t);
            }
        }
        (succs, pending)
    }
}

/// Builds a graph from accesses, inferring dependencies (the generators
/// and the JSON reader both go through it).
pub(crate) struct Builder {
    pub graph: SimGraph,
    last_writer: HashMap<u32, usize>,
    readers: HashMap<u32, Vec<usize>>,
}

impl Builder {
    pub fn new(name: String, dtype: DType) -> Self {
        Builder {
            graph: SimGraph {
                name,
                dtype: Some(dtype),
                tasks: Vec::new(),
                tile_grid: None,
            },
            last_writer: HashMap::new(),
            readers: HashMap::new(),
        }
    }

    /// The items are the tiles of an `nt × nt` grid ([`SimGraph::tile_grid`]).
    pub fn tiles(mut self, nt: usize) -> Self {
        self.graph.tile_grid = Some(nt);
        self
    }

    /// Adds a task reading `reads` and writing (reading too) `writes`,
    /// every item of `bytes`.
    fn task(&mut self, op: OpName, flops: f64, reads: &[u32], writes: &[u32], bytes: u64) {
        let sized = |ids: &[u32]| ids.iter().map(|d| (*d, bytes)).collect();
        self.access_task(
            op,
            flops,
            sized(reads),
            sized(writes),
            Vec::new(),
            Vec::new(),
        );
    }

    /// Adds a task reading `reads`, updating `writes` (read too: the old
    /// value is in place) and writing `creates` afresh (item, bytes),
    /// after the tasks in `preds` as well as those its accesses imply.
    pub fn access_task(
        &mut self,
        op: OpName,
        flops: f64,
        mut reads: Vec<(u32, u64)>,
        writes: Vec<(u32, u64)>,
        creates: Vec<(u32, u64)>,
        preds: Vec<usize>,
    ) {
        for w in &writes {
            if !reads.iter().any(|r| r.0 == w.0) {
                reads.push(*w);
            }
        }
        let mut all = writes;
        all.extend(creates);
        self.push(op, flops, reads, all, preds);
    }

    /// Adds a task reading `reads` and writing `writes` (an update's item
    /// is in both).
    fn push(
        &mut self,
        op: OpName,
        flops: f64,
        reads: Vec<(u32, u64)>,
        writes: Vec<(u32, u64)>,
        mut preds: Vec<usize>,
    ) {
        let id = self.graph.tasks.len();
        for (d, _) in reads.iter().chain(&writes) {
            if let Some(w) = self.last_writer.get(d) {
                preds.push(*w);
            }
        }
        for (d, _) in &writes {
            if let Some(rs) = self.readers.remove(d) {
                preds.extend(rs.into_iter().filter(|r| *r != id));
            }
            self.last_writer.insert(*d, id);
        }
        for (d, _) in &reads {
            self.readers.entry(*d).or_default().push(id);
        }
        preds.sort_unstable();
        preds.dedup();
        self.graph.tasks.push(SimTask {
            op,
            flops,
            reads,
            writes,
            preds,
        });
    }
}

/// Tile (i, j) of an `nt × nt` grid as a data id.
fn tile(nt: usize, i: usize, j: usize) -> u32 {
    (i * nt + j) as u32
}

/// The four kinds of task of a tiled Cholesky on `nt × nt` tiles of order
/// `nb` (f64), as the runtime's `linalg::CholeskyTasks` submits them: the
/// two orders below differ only in when they add them.
struct CholeskyTasks {
    b: Builder,
    nt: usize,
    /// The tile's order, as flops per task are cubes of it.
    n: f64,
    bytes: u64,
}

impl CholeskyTasks {
    fn new(name: String, nt: usize, nb: usize) -> Self {
        CholeskyTasks {
            b: Builder::new(name, DType::F64).tiles(nt),
            nt,
            n: nb as f64,
            bytes: (nb * nb * 8) as u64,
        }
    }

    /// potrf of tile (k, k).
    fn factor(&mut self, k: usize) {
        let t = tile(self.nt, k, k);
        let flops = self.n * self.n * self.n / 3.0;
        self.b.task(OpName::Potrf, flops, &[], &[t], self.bytes);
    }

    /// trsm of tile (i, k) by (k, k).
    fn solve(&mut self, i: usize, k: usize) {
        let (diag, t) = (tile(self.nt, k, k), tile(self.nt, i, k));
        let flops = self.n * self.n * self.n;
        self.b.task(OpName::Trsm, flops, &[diag], &[t], self.bytes);
    }

    /// syrk of tile (i, i) by (i, k).
    fn update_diagonal(&mut self, i: usize, k: usize) {
        let (l, t) = (tile(self.nt, i, k), tile(self.nt, i, i));
        let flops = self.n * self.n * self.n;
        self.b.task(OpName::Syrk, flops, &[l], &[t], self.bytes);
    }

    /// gemm of tile (i, j) by (i, k) and (j, k).
    fn update(&mut self, i: usize, j: usize, k: usize) {
        let reads = [tile(self.nt, i, k), tile(self.nt, j, k)];
        let flops = 2.0 * self.n * self.n * self.n;
        let t = tile(self.nt, i, j);
        self.b.task(OpName::Gemm, flops, &reads, &[t], self.bytes);
    }
}

/// Right-looking tiled Cholesky on `nt × nt` tiles of order `nb` (f64).
pub fn cholesky(nt: usize, nb: usize) -> SimGraph {
    let mut c = CholeskyTasks::new(format!("cholesky:{nt}"), nt, nb);
    for k in 0..nt {
        c.factor(k);
        for i in k + 1..nt {
            c.solve(i, k);
        }
        for i in k + 1..nt {
            c.update_diagonal(i, k);
            for j in k + 1..i {
                c.update(i, j, k);
            }
        }
    }
    c.b.graph
}

/// The same tasks as [`cholesky`] in left-looking order (the runtime's
/// `linalg::cholesky_left_looking`): column by column, each tile's
/// updates from the left, then its solve. Only the submission order
/// differs, which matters while a run is memory-bound.
pub fn cholesky_left(nt: usize, nb: usize) -> SimGraph {
    let mut c = CholeskyTasks::new(format!("cholesky-left:{nt}"), nt, nb);
    for j in 0..nt {
        for k in 0..j {
            c.update_diagonal(j, k);
        }
        c.factor(j);
        for i in j + 1..nt {
            for k in 0..j {
                c.update(i, j, k);
            }
            c.solve(i, j);
        }
    }
    c.b.graph
}

/// Tiled LU without pivoting across tiles (getrf, two trsm sweeps, gemm).
pub fn lu(nt: usize, nb: usize) -> SimGraph {
    let n = nb as f64;
    let bytes = (nb * nb * 8) as u64;
    let mut b = Builder::new(format!("lu:{nt}"), DType::F64).tiles(nt);
    for k in 0..nt {
        b.task(
            OpName::Getrf,
            2.0 * n * n * n / 3.0,
            &[],
            &[tile(nt, k, k)],
            bytes,
        );
        for j in k + 1..nt {
            b.task(
                OpName::Trsm,
                n * n * n,
                &[tile(nt, k, k)],
                &[tile(nt, k, j)],
                bytes,
            );
            b.task(
                OpName::Trsm,
                n * n * n,
                &[tile(nt, k, k)],
                &[tile(nt, j, k)],
                bytes,
            );
        }
        for i in k + 1..nt {
            for j in k + 1..nt {
                b.task(
                    OpName::Gemm,
                    2.0 * n * n * n,
                    &[tile(nt, i, k), tile(nt, k, j)],
                    &[tile(nt, i, j)],
                    bytes,
                );
            }
        }
    }
    b.graph
}

/// Tiled QR (flat tree): geqrt on the diagonal, its update along the row,
/// tsqrt down the column and their updates on the trailing tiles. The
/// catalogue's `geqrf` stands for geqrt/tsqrt, `gemm` for the updates.
pub fn qr(nt: usize, nb: usize) -> SimGraph {
    let n = nb as f64;
    let bytes = (nb * nb * 8) as u64;
    let mut b = Builder::new(format!("qr:{nt}"), DType::F64).tiles(nt);
    for k in 0..nt {
        b.task(
            OpName::Geqrf,
            4.0 * n * n * n / 3.0,
            &[],
            &[tile(nt, k, k)],
            bytes,
        );
        for j in k + 1..nt {
            b.task(
                OpName::Gemm,
                2.0 * n * n * n,
                &[tile(nt, k, k)],
                &[tile(nt, k, j)],
                bytes,
            );
        }
        for i in k + 1..nt {
            b.task(
                OpName::Geqrf,
                2.0 * n * n * n,
                &[],
                &[tile(nt, k, k), tile(nt, i, k)],
                bytes,
            );
            for j in k + 1..nt {
                b.task(
                    OpName::Gemm,
                    4.0 * n * n * n,
                    &[tile(nt, i, k)],
                    &[tile(nt, k, j), tile(nt, i, j)],
                    bytes,
                );
            }
        }
    }
    b.graph
}

/// A random layered graph of `tasks` gemm-like tasks in layers of 50, each
/// reading two outputs of the layer above and writing a new one (seeded:
/// the same every time).
pub fn layered(tasks: usize, nb: usize, seed: u64) -> SimGraph {
    let n = nb as f64;
    let bytes = (nb * nb * 8) as u64;
    let width = 50usize;
    let mut rng = crate::seeded::Seeded::new(seed);
    let mut next = move || rng.next_u64();
    let mut b = Builder::new(format!("layered:{tasks}"), DType::F64);
    for t in 0..tasks {
        let layer = t / width;
        let out = t as u32;
        let reads: Vec<u32> = if layer == 0 {
            Vec::new()
        } else {
            let base = (layer - 1) * width;
            (0..2)
                .map(|_| (base + (next() as usize % width)) as u32)
                .collect()
        };
        // Sizes vary: some tasks 8 times the work of others.
        let scale = [0.5, 1.0, 2.0, 4.0][next() as usize % 4];
        // Each output is new: nothing of it needs loading first.
        let reads = reads.iter().map(|d| (*d, bytes)).collect();
        let flops = scale * 2.0 * n * n * n;
        b.access_task(
            OpName::Gemm,
            flops,
            reads,
            Vec::new(),
            vec![(out, bytes)],
            Vec::new(),
        );
    }
    b.graph
}

/// A graph by name: `cholesky:N`, `cholesky-left:N`, `lu:N`, `qr:N`
/// (tiles per side) or
/// `layered:N` (tasks), on tiles of order `nb`.
pub fn generate(spec: &str, nb: usize) -> Result<SimGraph, String> {
    let (kind, size) = spec
        .split_once(':')
        .ok_or_else(|| format!("`{spec}`: expected kind:size, e.g. cholesky:16"))?;
    let size: usize = size
        .parse()
        .ok()
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("`{spec}`: the size must be a positive integer"))?;
    match kind {
        "cholesky" => Ok(cholesky(size, nb)),
        "cholesky-left" => Ok(cholesky_left(size, nb)),
        "lu" => Ok(lu(size, nb)),
        "qr" => Ok(qr(size, nb)),
        "layered" => Ok(layered(size, nb, 1)),
        other => Err(format!(
            "unknown graph generator `{other}` (cholesky, cholesky-left, lu, qr, layered)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layered_tasks_write_new_outputs_without_reading_them() {
        let g = layered(200, 64, 1);
        for (t, task) in g.tasks.iter().enumerate() {
            assert_eq!(task.writes.len(), 1);
            assert!(
                !task.reads.iter().any(|r| r.0 == task.writes[0].0),
                "task {t}"
            );
            assert_eq!(task.reads.len(), if t < 50 { 0 } else { 2 });
        }
    }

    #[test]
    fn generated_graphs_have_the_textbook_task_counts_and_sound_edges() {
        let nt = 6;
        let c = cholesky(nt, 64);
        // nt potrf + nt(nt-1)/2 trsm + the same syrk + C(nt,3) gemm.
        assert_eq!(c.tasks.len(), 6 + 15 + 15 + 20);
        let l = lu(nt, 64);
        assert_eq!(l.tasks.len(), 6 + 2 * 15 + (25 + 16 + 9 + 4 + 1));
        for g in [&c, &l, &qr(nt, 64), &layered(500, 64, 3)] {
            for (i, t) in g.tasks.iter().enumerate() {
                assert!(
                    t.preds.iter().all(|p| *p < i),
                    "{}: edge to a later task",
                    g.name
                );
            }
        }
        // The second potrf waits, through its syrk, for the first.
        let second = c
            .tasks
            .iter()
            .position(|t| t.op == OpName::Potrf && !t.preds.is_empty())
            .unwrap();
        assert!(c.tasks[second]
            .preds
            .iter()
            .any(|p| c.tasks[*p].op == OpName::Syrk));
        assert!(generate("cholesky:0", 64).is_err());
        assert!(generate("fft:8", 64).unwrap_err().contains("unknown"));
    }

    #[test]
    fn both_cholesky_orders_have_the_same_tasks_and_work() {
        let (right, left) = (cholesky(7, 64), cholesky_left(7, 64));
        assert_eq!(right.tasks.len(), left.tasks.len());
        let work = |g: &SimGraph| g.tasks.iter().map(|t| t.flops).sum::<f64>();
        assert!((work(&right) - work(&left)).abs() < 1e-6 * work(&right));
        let count = |g: &SimGraph, op| g.tasks.iter().filter(|t| t.op == op).count();
        for op in [OpName::Potrf, OpName::Trsm, OpName::Syrk, OpName::Gemm] {
            assert_eq!(count(&right, op), count(&left, op), "{op:?}");
        }
        // Left-looking: column 0 is factorised and solved before any
        // update, and the last task factorises the last diagonal tile.
        assert_eq!(left.tasks[0].op, OpName::Potrf);
        assert_eq!(left.tasks[left.tasks.len() - 1].op, OpName::Potrf);
    }
}
