//! # tessera: the task runtime for heterogeneous machines
//!
//! Describe work as tasks over tiles of data; Tessera runs them on every
//! processor of the machine in an order that respects their data
//! dependencies, and reports what it did as Prometheus metrics.
//!
//! ```
//! use tessera::{Runtime, Task, Op};
//! use tessera_core::{TileData, TileShape};
//!
//! let rt = Runtime::builder().build()?;
//! let a = rt.tile(TileData::F64(vec![4.0, 2.0, 2.0, 3.0]), TileShape::new(2, 2))?;
//! rt.submit(Task::op(Op::Potrf).read_write(&a))?;
//! let l = rt.fetch(&a)?;
//! assert_eq!(l.get(2, 0, 0), 2.0); // sqrt(4)
//! # Ok::<(), tessera::RuntimeError>(())
//! ```
//!
//! The pieces, in the order a task meets them: [`runtime`] (the handle you
//! embed), [`task`] (what a task is), [`lane`] and [`scheduler`] (placement),
//! [`cpu_processor`] and [`device_processor`] (execution, the latter through
//! device plugins), [`tile`] (replicas and copies between memories),
//! [`kernel`] (user kernels), [`host_memory`] and [`metrics`] (bookkeeping),
//! [`linalg`] (tiled algorithms built on the above).

pub mod calibrate;
pub mod cpu_processor;
pub mod dataset;
mod device_memory;
pub mod device_processor;
pub mod error;
mod eviction;
pub mod host_memory;
pub mod kernel;
pub mod lane;
pub mod linalg;
mod mailbox;
pub mod metrics;
mod metrics_server;
pub mod objects;
mod pinned;
pub mod record;
pub mod report;
pub mod runtime;
pub mod scheduler;
pub mod selftest;
mod spill;
pub mod task;
pub mod tile;
mod trace;
mod transfers;

pub use error::{RuntimeError, TaskFailed};
pub use runtime::{
    HostUsage, PluginSummary, ProgressSnapshot, Runtime, RuntimeBuilder, HOST_MEMORY,
};
pub use task::{Task, TaskContext, TaskHandle};
pub use tessera_core::{Access, DType, Op, OpName, TileData, TileShape};
pub use tile::Tile;
