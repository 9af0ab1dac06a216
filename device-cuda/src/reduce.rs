//! The `sum` op: a reduction cuBLAS does not offer, as a small kernel
//! compiled by NVRTC on first use per device (so starting the plugin never
//! pays for the compiler).

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
"#;

/// The two compiled kernels of one device.
pub(crate) struct SumKernels {
    _module: Arc<CudaModule>,
    f32: CudaFunction,
    f64: CudaFunction,
}

/// Compiles the kernels on first use.
pub(crate) fn kernels<'a>(
    slot: &'a Mutex<Option<SumKernels>>,
    ctx: &Arc<CudaContext>,
) -> Result<std::sync::MutexGuard<'a, Option<SumKernels>>, PluginError> {
    let mut guard = slot
        .lock()
        .map_err(|_| PluginError::new("sum kernel lock poisoned"))?;
    if guard.is_none() {
        let ptx =
            cudarc::nvrtc::compile_ptx(SOURCE).map_err(|e| err("compiling the sum kernel", e))?;
        let module = ctx
            .load_module(ptx)
            .map_err(|e| err("loading the sum kernel", e))?;
        let f32 = module
            .load_function("tessera_sum_f32")
            .map_err(|e| err("loading the sum kernel", e))?;
        let f64 = module
            .load_function("tessera_sum_f64")
            .map_err(|e| err("loading the sum kernel", e))?;
        *guard = Some(SumKernels {
            _module: module,
            f32,
            f64,
        });
    }
    Ok(guard)
}

/// Queues `out[0] = sum(x[0..n])` on `stream`, one block of 256 threads.
pub(crate) fn launch(
    k: &SumKernels,
    stream: &Arc<CudaStream>,
    dtype: u32,
    x: u64,
    out: u64,
    n: u64,
) -> Result<(), PluginError> {
    let f = match dtype {
        dtype_code::F32 => &k.f32,
        dtype_code::F64 => &k.f64,
        other => {
            return Err(PluginError::new(format!(
                "sum: unsupported element type code {other}"
            )))
        }
    };
    let (mut x, mut out, mut n) = (
        x,
        out,
        i64::try_from(n).map_err(|_| PluginError::new("sum: tile too large"))?,
    );
    let mut params: [*mut c_void; 3] = [
        (&mut x as *mut u64).cast(),
        (&mut out as *mut u64).cast(),
        (&mut n as *mut i64).cast(),
    ];
    // SAFETY: the parameters point at live locals for the duration of the
    // call, which copies them; the buffers are device allocations.
    unsafe {
        cudarc::driver::sys::cuLaunchKernel(
            f.cu_function(),
            1,
            1,
            1,
            256,
            1,
            1,
            0,
            stream.cu_stream(),
            params.as_mut_ptr(),
            std::ptr::null_mut(),
        )
        .result()
        .map_err(|e| err("launching the sum kernel", e))
    }
}
