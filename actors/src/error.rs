//! Errors of the runtime: what failed, to what, and what to do next.

use tessera_core::graph::{Failure, TaskId};
use tessera_core::{CoreError, DType, OpName};

/// Errors from building, feeding or stopping a [`crate::Runtime`].
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot start the runtime: {0}")]
    Start(String),
    #[error("cannot serve metrics on {addr}: {reason} (is another process using the port? pick another with --metrics ADDR)")]
    MetricsBind { addr: String, reason: String },
    #[error("the runtime is shut down: create a new one to submit more work")]
    ShutDown,
    #[error("task rejected at submission: {0}")]
    Invalid(#[from] CoreError),
    #[error("no processor implements `{op}` on {}: enable a device that does (--devices), or use another op or element type", dtype.map_or("tasks without tiles".to_string(), |d| format!("{d} tiles")))]
    NoProcessor { op: OpName, dtype: Option<DType> },
    #[error("tile `{tile}` is both an input and the output of `{op}`: kernels cannot alias their output")]
    AliasedOutput { op: OpName, tile: String },
    #[error("host memory budget exceeded: a {needed}-byte tile would bring use to {would_be} of {budget} bytes (raise the budget with --host-mem or free tiles)")]
    HostBudget {
        needed: u64,
        would_be: u64,
        budget: u64,
    },
    #[error("kernel `{entry}` on {device}: {message}")]
    KernelCompile {
        entry: String,
        device: String,
        message: String,
    },
    #[error("no device can run kernel `{entry}`: give CUDA C source for cuda devices or WGSL for wgpu, and enable such a device")]
    NoKernelDevice { entry: String },
    #[error("`{op}` needs its {needed} bytes of tiles in host memory at once, more than the host budget of {budget} bytes: raise the budget (--host-mem) or use smaller tiles")]
    WorkingSet {
        op: OpName,
        needed: u64,
        budget: u64,
    },
    #[error("cannot move tile data to disk: {0}")]
    Spill(String),
    #[error(transparent)]
    Task(#[from] TaskFailed),
}

/// A task that did not complete, with the root cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{task} did not complete: {cause}")]
pub struct TaskFailed {
    pub task: TaskId,
    pub cause: Failure,
}

impl TaskFailed {
    /// Whether this task failed itself, rather than being cancelled because
    /// something it depended on failed.
    pub fn is_root(&self) -> bool {
        self.cause.task == self.task
    }
}
