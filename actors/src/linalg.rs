//! Tiled dense linear algebra on the runtime: a symmetric matrix cut into
//! tiles, the right-looking tiled Cholesky, and its residual check.
//!
//! Every step is an ordinary task: the runtime infers the dependencies from
//! the access modes, so the code reads like the textbook loop nest, and
//! runs in parallel as far as the data allows (the DAG of PLASMA/DPLASMA).
//!
//! ```
//! use tessera::Runtime;
//! use tessera::linalg::{cholesky, residual, SpdMatrix, TiledMatrix};
//! use tessera_core::DType;
//!
//! let rt = Runtime::builder().cpu_workers(2).build()?;
//! let gen = SpdMatrix { n: 100, seed: 7 };
//! let a = TiledMatrix::generate(&rt, "A", gen.n, 32, DType::F64, gen)?;
//! cholesky(&rt, &a)?;
//! let r = residual(&rt, &a, gen)?;
//! assert!(r < 1e-14, "residual {r}");
//! # Ok::<(), tessera::RuntimeError>(())
//! ```

use crate::error::RuntimeError;
use crate::runtime::Runtime;
use crate::task::Task;
use crate::tile::Tile;
use crossbeam_channel::unbounded;
use tessera_core::op::Side;
use tessera_core::processor::MemoryKind;
use tessera_core::{DType, Op, TileData, TileShape};

/// Entries of a matrix, computed on demand so it need not be stored twice.
pub trait MatrixEntries: Send + Sync + Copy + 'static {
    fn entry(&self, i: usize, j: usize) -> f64;
}

/// A random symmetric, strictly diagonally dominant (hence positive
/// definite) matrix: off-diagonal entries uniform in [-1, 1), diagonal
/// entries `n` plus that. Entry (i, j) depends only on the seed and on
/// (min(i,j), max(i,j)), so any tile can be generated independently.
#[derive(Debug, Clone, Copy)]
pub struct SpdMatrix {
    pub n: usize,
    pub seed: u64,
}

impl MatrixEntries for SpdMatrix {
    fn entry(&self, i: usize, j: usize) -> f64 {
        let (lo, hi) = if i < j { (i, j) } else { (j, i) };
        let key = (lo as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (hi as u64)
            ^ self.seed.rotate_left(17);
        let unit = (splitmix64(key) >> 11) as f64 / (1u64 << 53) as f64;
        let v = 2.0 * unit - 1.0;
        if i == j {
            self.n as f64 + v
        } else {
            v
        }
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The lower triangle of a symmetric `n × n` matrix in `tile × tile` tiles
/// (the last row and column of tiles may be smaller).
pub struct TiledMatrix {
    pub n: usize,
    pub tile: usize,
    pub nt: usize,
    pub dtype: DType,
    /// Lower-triangle tiles, row `i`, column `j <= i`, at `i * (i + 1) / 2 + j`.
    tiles: Vec<Tile>,
}

impl TiledMatrix {
    /// Allocates the lower tiles and fills them with `entries`, one task per
    /// tile, in parallel. Tiles are labelled `name[i,j]` in errors.
    pub fn generate<E: MatrixEntries>(
        rt: &Runtime,
        name: &str,
        n: usize,
        tile: usize,
        dtype: DType,
        entries: E,
    ) -> Result<TiledMatrix, RuntimeError> {
        if n == 0 || tile == 0 {
            return Err(RuntimeError::Start(format!(
                "matrix size and tile size must be positive (got n={n}, tile={tile})"
            )));
        }
        let nt = n.div_ceil(tile);
        let mut tiles = Vec::with_capacity(nt * (nt + 1) / 2);
        for i in 0..nt {
            for j in 0..=i {
                let shape = TileShape::new(tile.min(n - i * tile), tile.min(n - j * tile));
                let t = rt.tile_named(
                    &format!("{name}[{i},{j}]"),
                    TileData::zeros(dtype, shape),
                    shape,
                )?;
                let (r0, c0) = (i * tile, j * tile);
                rt.submit(
                    Task::closure("generate", move |ctx| {
                        let data = ctx.tile_mut(0).ok_or("generate needs a writable tile")?;
                        fill(data, shape, |r, c| entries.entry(r0 + r, c0 + c));
                        Ok(())
                    })
                    .write(&t),
                )?;
                tiles.push(t);
            }
        }
        Ok(TiledMatrix {
            n,
            tile,
            nt,
            dtype,
            tiles,
        })
    }

    /// Tile (i, j) of the lower triangle, `j <= i < nt`.
    pub fn tile(&self, i: usize, j: usize) -> &Tile {
        debug_assert!(j <= i && i < self.nt);
        &self.tiles[i * (i + 1) / 2 + j]
    }

    /// Bytes of the lower tiles' contents.
    pub fn bytes(&self) -> u64 {
        self.tiles.iter().map(|t| t.meta().bytes()).sum()
    }

    /// Floating-point operations of a Cholesky factorisation of this size.
    pub fn cholesky_flops(&self) -> f64 {
        let n = self.n as f64;
        n * n * n / 3.0 + n * n / 2.0 + n / 6.0
    }
}

fn fill(data: &mut TileData, shape: TileShape, f: impl Fn(usize, usize) -> f64) {
    let rows = shape.rows;
    match data {
        TileData::F64(v) => {
            for (k, x) in v.iter_mut().enumerate() {
                *x = f(k % rows, k / rows);
            }
        }
        TileData::F32(v) => {
            for (k, x) in v.iter_mut().enumerate() {
                *x = f(k % rows, k / rows) as f32;
            }
        }
    }
}

/// `L(i,k) = A(i,k)·L(k,k)⁻ᵀ`, the solve below a factorised diagonal tile.
fn panel_solve() -> Op {
    Op::Trsm {
        side: Side::Right,
        trans: true,
        alpha: 1.0,
    }
}

/// `A(i,i) −= L(i,k)·L(i,k)ᵀ`, a diagonal tile's update.
fn diagonal_update() -> Op {
    Op::Syrk {
        alpha: -1.0,
        beta: 1.0,
    }
}

/// The four kinds of task of a tiled Cholesky of `a`, submitted at
/// `priority`: the two orders below differ only in when they submit them.
struct CholeskyTasks<'a> {
    rt: &'a Runtime,
    a: &'a TiledMatrix,
    submitted: usize,
}

impl<'a> CholeskyTasks<'a> {
    fn new(rt: &'a Runtime, a: &'a TiledMatrix) -> Self {
        CholeskyTasks {
            rt,
            a,
            submitted: 0,
        }
    }

    /// The priority of step (column) `k`'s panel: both orders rank the
    /// tasks of a step alike, earlier steps higher.
    fn step_priority(&self, k: usize) -> i32 {
        3 * (self.a.nt - k) as i32
    }

    /// `L(k,k) = chol(A(k,k))`.
    fn factor(&mut self, k: usize, priority: i32) -> Result<(), RuntimeError> {
        self.submit(Task::op(Op::Potrf).read_write(self.a.tile(k, k)), priority)
    }

    /// [`panel_solve`] of `A(i,k)` by `L(k,k)`.
    fn solve(&mut self, i: usize, k: usize, priority: i32) -> Result<(), RuntimeError> {
        let task = Task::op(panel_solve())
            .read(self.a.tile(k, k))
            .read_write(self.a.tile(i, k));
        self.submit(task, priority)
    }

    /// [`diagonal_update`] of `A(i,i)` by `L(i,k)`.
    fn update_diagonal(&mut self, i: usize, k: usize, priority: i32) -> Result<(), RuntimeError> {
        let task = Task::op(diagonal_update())
            .read(self.a.tile(i, k))
            .read_write(self.a.tile(i, i));
        self.submit(task, priority)
    }

    /// `A(i,j) −= L(i,k)·L(j,k)ᵀ`.
    fn update(&mut self, i: usize, j: usize, k: usize, priority: i32) -> Result<(), RuntimeError> {
        let task = Task::op(Op::gemm_nt(-1.0, 1.0))
            .read(self.a.tile(i, k))
            .read(self.a.tile(j, k))
            .read_write(self.a.tile(i, j));
        self.submit(task, priority)
    }

    fn submit(&mut self, task: Task, priority: i32) -> Result<(), RuntimeError> {
        self.rt.submit(task.priority(priority))?;
        self.submitted += 1;
        Ok(())
    }
}

/// Submits the right-looking tiled Cholesky `A = L·Lᵀ` in place on the
/// lower tiles and returns the number of tasks. Priorities follow the
/// critical path (panel first, then the updates that feed the next panel),
/// as StarPU's Cholesky does. Wait with [`Runtime::wait_all`].
pub fn cholesky(rt: &Runtime, a: &TiledMatrix) -> Result<usize, RuntimeError> {
    let nt = a.nt;
    let mut t = CholeskyTasks::new(rt, a);
    for k in 0..nt {
        let pk = t.step_priority(k);
        t.factor(k, pk)?;
        for i in k + 1..nt {
            t.solve(i, k, pk - (i - k) as i32)?;
        }
        for i in k + 1..nt {
            t.update_diagonal(i, k, pk - 2 * (i - k) as i32)?;
            for j in k + 1..i {
                t.update(i, j, k, pk - (i - k) as i32 - (j - k) as i32)?;
            }
        }
    }
    Ok(t.submitted)
}

/// Submits the left-looking tiled Cholesky `A = L·Lᵀ` in place on the
/// lower tiles and returns the number of tasks: column by column, each
/// tile takes every update from the columns left of it, then its own
/// solve, so it is written once and done. Same tasks and flops as
/// [`cholesky`]; in submission order (a memory-bound run, see
/// `tessera_core::policy::memory_bound`) it writes far fewer tiles back:
/// replayed with room for 32 of 136 tiles, 124 write-backs against the
/// right-looking order's 526, and 476 tiles copied in against 558.
pub fn cholesky_left_looking(rt: &Runtime, a: &TiledMatrix) -> Result<usize, RuntimeError> {
    let nt = a.nt;
    let mut t = CholeskyTasks::new(rt, a);
    for j in 0..nt {
        let pj = t.step_priority(j);
        for k in 0..j {
            t.update_diagonal(j, k, pj)?;
        }
        t.factor(j, pj)?;
        for i in j + 1..nt {
            let prio = pj - (i - j) as i32;
            for k in 0..j {
                t.update(i, j, k, prio)?;
            }
            t.solve(i, j, prio)?;
        }
    }
    Ok(t.submitted)
}

/// The two orders of the tiled Cholesky, and which suits a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CholeskyOrder {
    /// [`cholesky`]: the most parallel.
    RightLooking,
    /// [`cholesky_left_looking`]: each tile finished before the next.
    LeftLooking,
}

impl CholeskyOrder {
    /// The order for `a` on `rt`: left-looking when the matrix's tiles
    /// exceed the host budget and spill, or exceed the devices' memory
    /// together; right-looking otherwise.
    ///
    /// Either way the run is memory-bound and goes in submission order, so
    /// the order of submission sets the traffic. Spilling, on two cores
    /// with the page cache held to 320 MiB (n 8192, tile 512, 64 MiB of
    /// host budget) left-looking wrote 0.8 GB to disk against 2.2 GB and
    /// took 4.0 – 4.3 s against 4.9 – 5.1 s (BENCHMARKS.md, session 11).
    /// On the H200 (n 32768, tile 2048: 4.25 GiB of tiles), through 2 GiB
    /// of device memory 0.384 – 0.393 s against 0.476 – 0.487, through
    /// 1 GiB 0.435 – 0.484 against 0.541 – 0.587; with the whole GPU
    /// the two tie (0.404 – 0.425 s; session 12).
    pub fn for_memory(rt: &Runtime, a: &TiledMatrix) -> Self {
        let devices: u64 = rt
            .memory_spaces()
            .iter()
            .filter(|m| m.kind == MemoryKind::Device)
            .map(|m| m.capacity)
            .sum();
        let spills = rt.host_spills() && a.bytes() > rt.host_usage().budget;
        if spills || (devices > 0 && a.bytes() > devices) {
            CholeskyOrder::LeftLooking
        } else {
            CholeskyOrder::RightLooking
        }
    }

    /// Submits the factorisation of `a` in this order; see [`cholesky`].
    pub fn submit(self, rt: &Runtime, a: &TiledMatrix) -> Result<usize, RuntimeError> {
        match self {
            CholeskyOrder::RightLooking => cholesky(rt, a),
            CholeskyOrder::LeftLooking => cholesky_left_looking(rt, a),
        }
    }

    /// `right` or `left`, as `tessera run cholesky --variant` names them.
    pub fn name(self) -> &'static str {
        match self {
            CholeskyOrder::RightLooking => "right",
            CholeskyOrder::LeftLooking => "left",
        }
    }
}

/// ‖A − L·Lᵀ‖_F / ‖A‖_F for a factorised `l` (its lower tiles hold `L`)
/// against the original `entries`, computed with runtime tasks: the check
/// costs about as much as the factorisation and runs just as parallel.
/// The strict upper triangles of `l`'s diagonal tiles are zeroed.
pub fn residual<E: MatrixEntries>(
    rt: &Runtime,
    l: &TiledMatrix,
    entries: E,
) -> Result<f64, RuntimeError> {
    let nt = l.nt;
    for k in 0..nt {
        let rows = l.tile(k, k).shape().rows;
        rt.submit(
            Task::closure("tril", move |ctx| {
                let data = ctx.tile_mut(0).ok_or("tril needs a writable tile")?;
                zero_strict_upper(data, rows);
                Ok(())
            })
            .read_write(l.tile(k, k)),
        )?;
    }
    // R = A, then R -= L_ik·L_jkᵀ for every k <= j; R_jj by syrk (lower only).
    let r = TiledMatrix::generate(rt, "R", l.n, l.tile, l.dtype, entries)?;
    for i in 0..nt {
        for j in 0..=i {
            for k in 0..=j {
                if i == j {
                    rt.submit(
                        Task::op(diagonal_update())
                            .read(l.tile(i, k))
                            .read_write(r.tile(i, i)),
                    )?;
                } else {
                    rt.submit(
                        Task::op(Op::gemm_nt(-1.0, 1.0))
                            .read(l.tile(i, k))
                            .read(l.tile(j, k))
                            .read_write(r.tile(i, j)),
                    )?;
                }
            }
        }
    }
    let (tx, rx) = unbounded();
    let mut norms = Vec::with_capacity(nt * (nt + 1) / 2);
    for i in 0..nt {
        for j in 0..=i {
            let tx = tx.clone();
            let tile = r.tile(i, j);
            let shape = tile.shape();
            let (r0, c0, diag) = (i * l.tile, j * l.tile, i == j);
            let task = Task::closure("norm", move |ctx| {
                let data = ctx.tile(0);
                let (mut rr, mut aa) = (0.0f64, 0.0f64);
                for c in 0..shape.cols {
                    for rw in if diag { c } else { 0 }..shape.rows {
                        let x = data.get(shape.rows, rw, c);
                        let a = entries.entry(r0 + rw, c0 + c);
                        // Entries off the diagonal stand for their mirror too.
                        let w = if diag && rw == c { 1.0 } else { 2.0 };
                        rr += w * x * x;
                        aa += w * a * a;
                    }
                }
                let _ = tx.send((rr, aa));
                Ok(())
            });
            norms.push(rt.submit(task.read(tile))?);
        }
    }
    drop(tx);
    // A failed step anywhere cancels the norms that depend on it: report
    // that cause instead of a residual over part of the matrix.
    for h in &norms {
        rt.wait(h)?;
    }
    let (mut rr, mut aa) = (0.0, 0.0);
    for (x, y) in rx.iter() {
        rr += x;
        aa += y;
    }
    Ok((rr / aa).sqrt())
}

fn zero_strict_upper(data: &mut TileData, rows: usize) {
    match data {
        TileData::F64(v) => {
            for j in 0..rows {
                for i in 0..j {
                    v[i + j * rows] = 0.0;
                }
            }
        }
        TileData::F32(v) => {
            for j in 0..rows {
                for i in 0..j {
                    v[i + j * rows] = 0.0;
                }
            }
        }
    }
}
