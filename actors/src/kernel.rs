//! User kernels: source code the device plugins compile, run as tasks.
//!
//! A kernel is registered once with [`Runtime::kernel`](crate::Runtime::kernel)
//! and compiled right away on every device whose language the source covers
//! (CUDA C for `cuda` through NVRTC, WGSL for `wgpu`), so a source that does
//! not compile is an error naming the plugin before any task is submitted.
//! Its tasks run only on devices that compiled it.
//!
//! ```no_run
//! use tessera::{Runtime, Task, TileData, TileShape};
//! use tessera::kernel::KernelSource;
//!
//! let rt = Runtime::builder().build()?;
//! let axpy = rt.kernel(&KernelSource {
//!     entry: "axpy".into(),
//!     cuda: Some(r#"extern "C" __global__ void axpy(const float* x, float* y, double a) {
//!         int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < 1024) y[i] += (float)a * x[i]; }"#.into()),
//!     wgsl: None,
//! })?;
//! let x = rt.tile(TileData::F32(vec![1.0; 1024]), TileShape::new(1024, 1))?;
//! let y = rt.tile(TileData::F32(vec![0.0; 1024]), TileShape::new(1024, 1))?;
//! rt.submit(Task::kernel(&axpy, [1024, 1, 256]).read(&x).read_write(&y).scalars(&[2.0]))?;
//! # Ok::<(), tessera::RuntimeError>(())
//! ```

use std::collections::HashMap;
use std::sync::RwLock;
use tessera_core::processor::MemorySpaceId;

/// A kernel's source, per language, and its entry point.
#[derive(Debug, Clone, Default)]
pub struct KernelSource {
    pub entry: String,
    /// CUDA C for NVRTC; the entry must be `extern "C" __global__`. Buffers
    /// come first in argument order, then the scalars as `double`s.
    pub cuda: Option<String>,
    /// WGSL; buffers at `@group(0) @binding(0..)`, scalars as a uniform
    /// `array<vec4<f32>, N>` at the next binding.
    pub wgsl: Option<String>,
}

impl KernelSource {
    /// The source for a plugin, by its name.
    pub(crate) fn for_plugin(&self, plugin: &str) -> Option<&str> {
        match plugin {
            "cuda" => self.cuda.as_deref(),
            "wgpu" => self.wgsl.as_deref(),
            _ => None,
        }
    }
}

/// A registered kernel.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub(crate) id: u64,
    pub(crate) entry: String,
}

impl Kernel {
    pub fn entry(&self) -> &str {
        &self.entry
    }
}

/// Compiled kernel handles by kernel and device memory space.
#[derive(Debug, Default)]
pub(crate) struct KernelRegistry {
    compiled: RwLock<HashMap<(u64, MemorySpaceId), u64>>,
}

impl KernelRegistry {
    pub fn insert(&self, kernel: u64, space: MemorySpaceId, handle: u64) {
        if let Ok(mut m) = self.compiled.write() {
            m.insert((kernel, space), handle);
        }
    }

    /// The plugin's handle for `kernel` on the device owning `space`.
    pub fn get(&self, kernel: u64, space: MemorySpaceId) -> Option<u64> {
        self.compiled.read().ok()?.get(&(kernel, space)).copied()
    }
}
