//! Processors and memory spaces as descriptors.
//!
//! A processor runs tasks and is attached to one memory space, where the
//! tiles its tasks touch must be. The runtime builds these descriptors for
//! what it finds (CPU cores now; GPUs through plugins later) and policies and
//! the simulator read them.

use crate::dtype::DType;
use crate::op::OpName;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Index of a processor within one runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProcessorId(pub u32);

impl fmt::Display for ProcessorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "proc#{}", self.0)
    }
}

/// Index of a memory space within one runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemorySpaceId(pub u32);

/// What kind of hardware a processor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProcessorKind {
    Cpu,
    Cuda,
    Wgpu,
    /// A device from a plugin of another kind.
    Other,
}

impl ProcessorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessorKind::Cpu => "cpu",
            ProcessorKind::Cuda => "cuda",
            ProcessorKind::Wgpu => "wgpu",
            ProcessorKind::Other => "other",
        }
    }
}

/// What kind of memory a space is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MemoryKind {
    Host,
    PinnedHost,
    Device,
    Disk,
    ObjectStore,
}

impl MemoryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MemoryKind::Host => "host",
            MemoryKind::PinnedHost => "pinned",
            MemoryKind::Device => "device",
            MemoryKind::Disk => "disk",
            MemoryKind::ObjectStore => "object-store",
        }
    }
}

/// One processor: where tasks run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessorDesc {
    pub id: ProcessorId,
    pub kind: ProcessorKind,
    pub name: String,
    /// The memory space its tasks read and write.
    pub memory: MemorySpaceId,
    /// Estimated sustained speed in GFLOP/s, per element type. Used until a
    /// performance model has measured better.
    pub gflops_f32: f64,
    pub gflops_f64: f64,
    /// Ops it implements...
    pub ops: Vec<OpName>,
    /// ... on tiles of these element types.
    pub dtypes: Vec<DType>,
}

impl ProcessorDesc {
    /// Whether it can run `op` on tiles of `dtype` (`None`: a task without tiles).
    pub fn supports(&self, op: OpName, dtype: Option<DType>) -> bool {
        self.ops.contains(&op) && dtype.is_none_or(|d| self.dtypes.contains(&d))
    }

    /// Estimated speed for `dtype`, in FLOP/s.
    pub fn flops_per_second(&self, dtype: DType) -> f64 {
        match dtype {
            DType::F32 => self.gflops_f32 * 1e9,
            DType::F64 => self.gflops_f64 * 1e9,
        }
    }
}

/// One memory space: where tile replicas live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemorySpaceDesc {
    pub id: MemorySpaceId,
    pub kind: MemoryKind,
    pub name: String,
    /// Budget in bytes that the runtime keeps to.
    pub capacity: u64,
    /// Bandwidth in bytes/s for copies into this space.
    pub bandwidth: f64,
}
