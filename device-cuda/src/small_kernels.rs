//! The kernels cuBLAS and cuSOLVER lack: the `sum` reduction, and the
//! conversion of cuSOLVER's 1-based `int` pivots into the catalogue's 0-based
//! pivots in the tile's own element type. Compiled by NVRTC on first use per
//! device, so starting the plugin never pays for the compiler.

use crate::err;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};
use std::ffi::c_void;
use std::sync::{Arc, Mutex};
use tessera_plugin::abi::dtype_code;
use tessera_plugin::PluginError;

const SOURCE: &str = r#"
template <typename T>
__device__ void sum_impl(const T* x, T* out, long long n) {
    // Accumulated in double whatever T is: a long float sum loses digits.
    __shared__ double part[256];
    double acc = 0;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) acc += (double)x[i];
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int stride = 128; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) part[threadIdx.x] += part[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = (T)part[0];
}
extern "C" __global__ void tessera_sum_f32(const float* x, float* out, long long n) { sum_impl(x, out, n); }
extern "C" __global__ void tessera_sum_f64(const double* x, double* out, long long n) { sum_impl(x, out, n); }

template <typename T>
__device__ void pivots_impl(const int* ipiv, T* out, long long k) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < k) out[i] = (T)(ipiv[i] - 1);
}
extern "C" __global__ void tessera_pivots_f32(const int* ipiv, float* out, long long k) { pivots_impl(ipiv, out, k); }
extern "C" __global__ void tessera_pivots_f64(const int* ipiv, double* out, long long k) { pivots_impl(ipiv, out, k); }
"#;

/// One kernel in both element types.
struct Pair {
    f32: CudaFunction,
    f64: CudaFunction,
}

impl Pair {
    fn load(module: &Arc<CudaModule>, name: &str) -> Result<Pair, PluginError> {
        let load = |suffix: &str| {
            module
                .load_function(&format!("{name}_{suffix}"))
                .map_err(|e| err(&format!("loading the {name} kernel"), e))
        };
        Ok(Pair {
            f32: load("f32")?,
            f64: load("f64")?,
        })
    }

    fn of(&self, dtype: u32, what: &str) -> Result<&CudaFunction, PluginError> {
        match dtype {
            dtype_code::F32 => Ok(&self.f32),
            dtype_code::F64 => Ok(&self.f64),
            other => Err(PluginError::new(format!(
                "{what}: unsupported element type code {other}"
            ))),
        }
    }
}

/// The compiled kernels of one device.
pub(crate) struct SmallKernels {
    _module: Arc<CudaModule>,
    sum: Pair,
    pivots: Pair,
}

/// Compiles the kernels on first use.
pub(crate) fn kernels<'a>(
    slot: &'a Mutex<Option<SmallKernels>>,
    ctx: &Arc<CudaContext>,
) -> Result<std::sync::MutexGuard<'a, Option<SmallKernels>>, PluginError> {
    let mut guard = slot
        .lock()
        .map_err(|_| PluginError::new("small kernel lock poisoned"))?;
    if guard.is_none() {
        let ptx = cudarc::nvrtc::compile_ptx(SOURCE)
            .map_err(|e| err("compiling the plugin's small kernels", e))?;
        let module = ctx
            .load_module(ptx)
            .map_err(|e| err("loading the plugin's small kernels", e))?;
        *guard = Some(SmallKernels {
            sum: Pair::load(&module, "tessera_sum")?,
            pivots: Pair::load(&module, "tessera_pivots")?,
            _module: module,
        });
    }
    Ok(guard)
}

/// Launches `f(a, b, n)` on `stream` with `grid` blocks of `block` threads.
fn launch3(
    f: &CudaFunction,
    stream: &Arc<CudaStream>,
    (grid, block): (u32, u32),
    a: u64,
    b: u64,
    n: u64,
    what: &str,
) -> Result<(), PluginError> {
    let (mut a, mut b, mut n) = (
        a,
        b,
        i64::try_from(n).map_err(|_| PluginError::new(format!("{what}: tile too large")))?,
    );
    let mut params: [*mut c_void; 3] = [
        (&mut a as *mut u64).cast(),
        (&mut b as *mut u64).cast(),
        (&mut n as *mut i64).cast(),
    ];
    // SAFETY: the parameters point at live locals for the duration of the
    // call, which copies them; the buffers are device allocations.
    unsafe {
        cudarc::driver::sys::cuLaunchKernel(
            f.cu_function(),
            grid,
            1,
            1,
            block,
            1,
            1,
            0,
            stream.cu_stream(),
            params.as_mut_ptr(),
            std::ptr::null_mut(),
        )
        .result()
        .map_err(|e| err(&format!("launching the {what} kernel"), e))
    }
}

impl SmallKernels {
    /// Queues `out[0] = sum(x[0..n])` on `stream`, one block of 256 threads.
    pub(crate) fn sum(
        &self,
        stream: &Arc<CudaStream>,
        dtype: u32,
        x: u64,
        out: u64,
        n: u64,
    ) -> Result<(), PluginError> {
        launch3(
            self.sum.of(dtype, "sum")?,
            stream,
            (1, 256),
            x,
            out,
            n,
            "sum",
        )
    }

    /// Queues `out[i] = ipiv[i] - 1` for `i < k`: cuSOLVER's 1-based `int`
    /// pivots as the catalogue's 0-based pivots of the tile's type.
    pub(crate) fn pivots(
        &self,
        stream: &Arc<CudaStream>,
        dtype: u32,
        ipiv: u64,
        out: u64,
        k: u64,
    ) -> Result<(), PluginError> {
        let blocks = u32::try_from(k.div_ceil(256).max(1))
            .map_err(|_| PluginError::new("pivots: too many"))?;
        launch3(
            self.pivots.of(dtype, "pivots")?,
            stream,
            (blocks, 256),
            ipiv,
            out,
            k,
            "pivots",
        )
    }
}
