//! Errors of the model: bad shapes, bad graphs, failed kernels.

use crate::access::Access;
use crate::dtype::DType;
use crate::graph::TaskId;
use crate::op::OpName;
use crate::tile::TileShape;

/// What the model rejects, each variant saying what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoreError {
    #[error("tile data has {got} elements but shape {shape} needs {expected}")]
    DataLength {
        shape: TileShape,
        expected: usize,
        got: usize,
    },
    #[error("`{op}` takes {expected} tile arguments, got {got}")]
    Arity {
        op: OpName,
        expected: usize,
        got: usize,
    },
    #[error("argument {index} of `{op}` must be {expected}, got {got:?}")]
    AccessMode {
        op: OpName,
        index: usize,
        expected: &'static str,
        got: Access,
    },
    #[error("`{op}` mixes element types: argument {index} is {got}, argument 0 is {expected}")]
    DTypeMismatch {
        op: OpName,
        index: usize,
        expected: DType,
        got: DType,
    },
    #[error("`{op}` got mismatched tile shapes: {detail}")]
    Shape { op: OpName, detail: String },
    #[error(
        "task {0} is not known to this graph (tasks can only wait on tasks submitted before them)"
    )]
    UnknownTask(TaskId),
}

/// How a CPU kernel failed on valid-looking input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KernelError {
    #[error("matrix is not positive definite: pivot {pivot} is not positive")]
    NotPositiveDefinite { pivot: usize },
    #[error("{0}")]
    Invalid(String),
}
