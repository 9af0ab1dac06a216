//! Describing tasks: an op or a closure over tiles with access modes.
//!
//! ```
//! use tessera::{Runtime, Task, Op};
//! use tessera_core::{TileData, TileShape};
//!
//! let rt = Runtime::builder().cpu_workers(2).build().unwrap();
//! let shape = TileShape::new(2, 2);
//! let a = rt.tile(TileData::F64(vec![1.0, 0.0, 0.0, 1.0]), shape).unwrap();
//! let c = rt.tile(TileData::F64(vec![0.0; 4]), shape).unwrap();
//! // c = 2·a·a + c, as a named op any processor implementing gemm can run.
//! rt.submit(Task::op(Op::gemm(2.0, 1.0)).read(&a).read(&a).read_write(&c)).unwrap();
//! // A closure task reading c.
//! let h = rt.submit(Task::closure("check", |ctx| {
//!     let c = ctx.tile(0);
//!     if c.get(2, 0, 0) == 2.0 { Ok(()) } else { Err("wrong".into()) }
//! }).read(&c)).unwrap();
//! rt.wait(&h).unwrap();
//! ```

use crate::tile::Tile;
use std::sync::{RwLockReadGuard, RwLockWriteGuard};
use tessera_core::graph::TaskId;
use tessera_core::{Access, Op, TileData};

/// The body of a closure task.
pub type Body = Box<dyn FnOnce(&mut TaskContext<'_>) -> Result<(), String> + Send>;

/// A task before submission: what to run and on which tiles.
pub struct Task {
    pub(crate) op: Op,
    pub(crate) args: Vec<(Tile, Access)>,
    pub(crate) body: Option<Body>,
    pub(crate) priority: i32,
    pub(crate) after: Vec<TaskId>,
}

impl Task {
    /// A task running a catalogue op; add its tiles in the op's argument order.
    pub fn op(op: Op) -> Task {
        Task {
            op,
            args: Vec::new(),
            body: None,
            priority: 0,
            after: Vec::new(),
        }
    }

    /// A task running `body` on a CPU processor; its tiles are available in
    /// the [`TaskContext`] in the order they were added. An `Err` fails the
    /// task and cancels its dependants with that message.
    pub fn closure<F>(label: impl Into<std::borrow::Cow<'static, str>>, body: F) -> Task
    where
        F: FnOnce(&mut TaskContext<'_>) -> Result<(), String> + Send + 'static,
    {
        Task {
            op: Op::closure(label),
            args: Vec::new(),
            body: Some(Box::new(body)),
            priority: 0,
            after: Vec::new(),
        }
    }

    /// A task running user kernel `kernel` over `grid` (global size in x
    /// and y, threads per block in x) on a device that compiled it; its
    /// tiles are the kernel's buffer arguments in the order added.
    pub fn kernel(kernel: &crate::kernel::Kernel, grid: [u32; 3]) -> Task {
        Task::op(Op::Kernel(Box::new(tessera_core::KernelCall {
            kernel: kernel.id,
            label: kernel.entry.clone().into(),
            grid,
            scalars: Vec::new(),
            flops: 0.0,
        })))
    }

    /// Scalar arguments of a kernel task, after its buffers.
    pub fn scalars(mut self, values: &[f64]) -> Task {
        if let Op::Kernel(k) = &mut self.op {
            k.scalars.extend_from_slice(values);
        }
        self
    }

    /// Adds a tile the task reads.
    pub fn read(mut self, tile: &Tile) -> Task {
        self.args.push((tile.clone(), Access::Read));
        self
    }

    /// Adds a tile the task overwrites without reading.
    pub fn write(mut self, tile: &Tile) -> Task {
        self.args.push((tile.clone(), Access::Write));
        self
    }

    /// Adds a tile the task reads and updates.
    pub fn read_write(mut self, tile: &Tile) -> Task {
        self.args.push((tile.clone(), Access::ReadWrite));
        self
    }

    /// Higher runs first among ready tasks (default 0). Use it for the
    /// critical path, as the tiled Cholesky does for its panel.
    pub fn priority(mut self, priority: i32) -> Task {
        self.priority = priority;
        self
    }

    /// Runs only after `task` has completed, whatever tiles either touches.
    pub fn after(mut self, task: &TaskHandle) -> Task {
        self.after.push(task.id);
        self
    }

    /// Sets the flop estimate of a closure or kernel, for scheduling and metrics.
    pub fn flops(mut self, flops: f64) -> Task {
        match &mut self.op {
            Op::Closure { flops: f, .. } => *f = flops,
            Op::Kernel(k) => k.flops = flops,
            _ => {}
        }
        self
    }
}

/// A submitted task; wait on it with [`crate::Runtime::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskHandle {
    pub(crate) id: TaskId,
}

impl TaskHandle {
    pub fn id(&self) -> TaskId {
        self.id
    }
}

pub(crate) enum Guard<'a> {
    Read(RwLockReadGuard<'a, TileData>),
    Write(RwLockWriteGuard<'a, TileData>),
}

/// A closure task's view of its tiles, locked for the task's duration.
pub struct TaskContext<'a> {
    pub(crate) guards: Vec<Guard<'a>>,
    /// For each argument, the index of its guard (a tile passed twice is
    /// locked once).
    pub(crate) slots: Vec<usize>,
}

impl TaskContext<'_> {
    /// Number of tile arguments.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Argument `i`, for reading.
    ///
    /// # Panics
    /// If `i` is out of range: the closure and its argument list are written
    /// together, so this is a bug in the closure (the task then fails).
    pub fn tile(&self, i: usize) -> &TileData {
        match &self.guards[self.slots[i]] {
            Guard::Read(g) => g,
            Guard::Write(g) => g,
        }
    }

    /// Argument `i`, for writing; `None` if it was added as read-only.
    pub fn tile_mut(&mut self, i: usize) -> Option<&mut TileData> {
        match &mut self.guards[self.slots[i]] {
            Guard::Read(_) => None,
            Guard::Write(g) => Some(g),
        }
    }
}
