//! The tile ops on cuBLAS and cuSOLVER, and user kernel launches, at the
//! level of raw device pointers: tiles are column-major with the leading
//! dimension equal to their row count.

use crate::{err, Handles};
use cudarc::cublas::sys as cb;
use cudarc::cusolver::sys as cs;
use cudarc::driver::{result, CudaFunction, CudaStream};
use std::ffi::{c_int, c_void};
use std::sync::Arc;
use tessera_plugin::abi::{dtype_code, op_code};
use tessera_plugin::{OpCall, PluginError};

fn blas_ok(s: cb::cublasStatus_t, what: &str) -> Result<(), PluginError> {
    if s == cb::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(PluginError::new(format!("cuBLAS {what} failed: {s:?}")))
    }
}

fn solver_ok(s: cs::cusolverStatus_t, what: &str) -> Result<(), PluginError> {
    if s == cs::cusolverStatus_t::CUSOLVER_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(PluginError::new(format!("cuSOLVER {what} failed: {s:?}")))
    }
}

/// cuBLAS and cuSOLVER handles bound to `stream`, with a `devInfo` word.
pub(crate) fn create_handles(stream: &Arc<CudaStream>) -> Result<Handles, PluginError> {
    let mut blas: cb::cublasHandle_t = std::ptr::null_mut();
    let mut solver: cs::cusolverDnHandle_t = std::ptr::null_mut();
    // SAFETY: out-pointers are valid; the stream's context is bound.
    unsafe {
        blas_ok(cb::cublasCreate_v2(&mut blas), "create")?;
        blas_ok(
            cb::cublasSetStream_v2(blas, stream.cu_stream() as cb::cudaStream_t),
            "set stream",
        )?;
        solver_ok(cs::cusolverDnCreate(&mut solver), "create")?;
        solver_ok(
            cs::cusolverDnSetStream(solver, stream.cu_stream() as cs::cudaStream_t),
            "set stream",
        )?;
        let info = result::malloc_sync(std::mem::size_of::<c_int>())
            .map_err(|e| err("allocating devInfo", e))?;
        Ok(Handles {
            blas,
            solver,
            work: 0,
            work_bytes: 0,
            ipiv: 0,
            ipiv_len: 0,
            info,
            pending_potrf: None,
        })
    }
}

pub(crate) fn destroy_handles(h: &Handles) {
    // SAFETY: handles and buffers created by `create_handles`, destroyed once
    // when the plugin is dropped.
    unsafe {
        cb::cublasDestroy_v2(h.blas);
        cs::cusolverDnDestroy(h.solver);
        let _ = result::free_sync(h.info);
        if h.work != 0 {
            let _ = result::free_sync(h.work);
        }
        if h.ipiv != 0 {
            let _ = result::free_sync(h.ipiv);
        }
    }
}

/// Reads `devInfo` after a potrf once its stream is synchronised.
pub(crate) fn check_potrf(h: &mut Handles) -> Result<(), PluginError> {
    let Some(n) = h.pending_potrf.take() else {
        return Ok(());
    };
    let mut info = [0 as c_int];
    // SAFETY: `info` is a device int written by the synchronised potrf.
    unsafe { result::memcpy_dtoh_sync(&mut info, h.info) }
        .map_err(|e| err("reading devInfo", e))?;
    match info[0] {
        0 => Ok(()),
        i if i > 0 => Err(PluginError::new(format!(
            "matrix is not positive definite: pivot {} of {n} is not positive",
            i - 1
        ))),
        i => Err(PluginError::new(format!(
            "cuSOLVER potrf: argument {} is invalid",
            -i
        ))),
    }
}

fn dim(x: u64) -> Result<c_int, PluginError> {
    c_int::try_from(x)
        .map_err(|_| PluginError::new(format!("dimension {x} exceeds cuBLAS's 32-bit range")))
}

fn op(trans: bool) -> cb::cublasOperation_t {
    if trans {
        cb::cublasOperation_t::CUBLAS_OP_T
    } else {
        cb::cublasOperation_t::CUBLAS_OP_N
    }
}

/// Queues one catalogue op on `stream`.
pub(crate) fn launch(
    h: &mut Handles,
    stream: &Arc<CudaStream>,
    call: &OpCall,
    args: &[u64],
) -> Result<(), PluginError> {
    let needed = match call.op {
        op_code::GEMM => 3,
        op_code::SYRK | op_code::TRSM | op_code::AXPY | op_code::GETRF | op_code::GEQRF => 2,
        op_code::POTRF => 1,
        other => return Err(PluginError::new(format!("unsupported op code {other}"))),
    };
    if args.len() != needed || call.shapes.len() != needed {
        return Err(PluginError::new(format!(
            "op {} takes {needed} tiles, got {}",
            call.op,
            args.len()
        )));
    }
    match call.dtype {
        dtype_code::F64 => launch_typed::<f64>(h, stream, call, args),
        dtype_code::F32 => launch_typed::<f32>(h, stream, call, args),
        other => Err(PluginError::new(format!(
            "unsupported element type code {other}"
        ))),
    }
}

/// The cuBLAS/cuSOLVER entry points of one element type, with their
/// C signatures' many arguments.
#[allow(clippy::too_many_arguments)]
trait Scalar: Copy + 'static {
    fn of(x: f64) -> Self;
    unsafe fn gemm(
        h: cb::cublasHandle_t,
        ta: cb::cublasOperation_t,
        tb: cb::cublasOperation_t,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: *const Self,
        a: *const Self,
        lda: c_int,
        b: *const Self,
        ldb: c_int,
        beta: *const Self,
        c: *mut Self,
        ldc: c_int,
    ) -> cb::cublasStatus_t;
    unsafe fn syrk(
        h: cb::cublasHandle_t,
        n: c_int,
        k: c_int,
        alpha: *const Self,
        a: *const Self,
        lda: c_int,
        beta: *const Self,
        c: *mut Self,
        ldc: c_int,
    ) -> cb::cublasStatus_t;
    unsafe fn trsm(
        h: cb::cublasHandle_t,
        side: cb::cublasSideMode_t,
        trans: cb::cublasOperation_t,
        m: c_int,
        n: c_int,
        alpha: *const Self,
        a: *const Self,
        lda: c_int,
        b: *mut Self,
        ldb: c_int,
    ) -> cb::cublasStatus_t;
    unsafe fn axpy(
        h: cb::cublasHandle_t,
        n: c_int,
        alpha: *const Self,
        x: *const Self,
        y: *mut Self,
    ) -> cb::cublasStatus_t;
    unsafe fn potrf_work(
        h: cs::cusolverDnHandle_t,
        n: c_int,
        a: *mut Self,
        lda: c_int,
        lwork: *mut c_int,
    ) -> cs::cusolverStatus_t;
    unsafe fn potrf(
        h: cs::cusolverDnHandle_t,
        n: c_int,
        a: *mut Self,
        lda: c_int,
        work: *mut Self,
        lwork: c_int,
        info: *mut c_int,
    ) -> cs::cusolverStatus_t;
    unsafe fn getrf_work(
        h: cs::cusolverDnHandle_t,
        m: c_int,
        n: c_int,
        a: *mut Self,
        lwork: *mut c_int,
    ) -> cs::cusolverStatus_t;
    unsafe fn getrf(
        h: cs::cusolverDnHandle_t,
        m: c_int,
        n: c_int,
        a: *mut Self,
        work: *mut Self,
        ipiv: *mut c_int,
        info: *mut c_int,
    ) -> cs::cusolverStatus_t;
    unsafe fn geqrf_work(
        h: cs::cusolverDnHandle_t,
        m: c_int,
        n: c_int,
        a: *mut Self,
        lwork: *mut c_int,
    ) -> cs::cusolverStatus_t;
    unsafe fn geqrf(
        h: cs::cusolverDnHandle_t,
        m: c_int,
        n: c_int,
        a: *mut Self,
        tau: *mut Self,
        work: *mut Self,
        lwork: c_int,
        info: *mut c_int,
    ) -> cs::cusolverStatus_t;
}

const LOWER: cb::cublasFillMode_t = cb::cublasFillMode_t::CUBLAS_FILL_MODE_LOWER;
const S_LOWER: cs::cublasFillMode_t = cs::cublasFillMode_t::CUBLAS_FILL_MODE_LOWER;

macro_rules! scalar {
    ($t:ty, $gemm:ident, $syrk:ident, $trsm:ident, $axpy:ident, $pw:ident, $potrf:ident, $gw:ident, $getrf:ident, $qw:ident, $geqrf:ident) => {
        impl Scalar for $t {
            fn of(x: f64) -> Self {
                x as $t
            }
            unsafe fn gemm(
                h: cb::cublasHandle_t,
                ta: cb::cublasOperation_t,
                tb: cb::cublasOperation_t,
                m: c_int,
                n: c_int,
                k: c_int,
                alpha: *const Self,
                a: *const Self,
                lda: c_int,
                b: *const Self,
                ldb: c_int,
                beta: *const Self,
                c: *mut Self,
                ldc: c_int,
            ) -> cb::cublasStatus_t {
                cb::$gemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            }
            unsafe fn syrk(
                h: cb::cublasHandle_t,
                n: c_int,
                k: c_int,
                alpha: *const Self,
                a: *const Self,
                lda: c_int,
                beta: *const Self,
                c: *mut Self,
                ldc: c_int,
            ) -> cb::cublasStatus_t {
                cb::$syrk(
                    h,
                    LOWER,
                    cb::cublasOperation_t::CUBLAS_OP_N,
                    n,
                    k,
                    alpha,
                    a,
                    lda,
                    beta,
                    c,
                    ldc,
                )
            }
            unsafe fn trsm(
                h: cb::cublasHandle_t,
                side: cb::cublasSideMode_t,
                trans: cb::cublasOperation_t,
                m: c_int,
                n: c_int,
                alpha: *const Self,
                a: *const Self,
                lda: c_int,
                b: *mut Self,
                ldb: c_int,
            ) -> cb::cublasStatus_t {
                cb::$trsm(
                    h,
                    side,
                    LOWER,
                    trans,
                    cb::cublasDiagType_t::CUBLAS_DIAG_NON_UNIT,
                    m,
                    n,
                    alpha,
                    a,
                    lda,
                    b,
                    ldb,
                )
            }
            unsafe fn axpy(
                h: cb::cublasHandle_t,
                n: c_int,
                alpha: *const Self,
                x: *const Self,
                y: *mut Self,
            ) -> cb::cublasStatus_t {
                cb::$axpy(h, n, alpha, x, 1, y, 1)
            }
            unsafe fn potrf_work(
                h: cs::cusolverDnHandle_t,
                n: c_int,
                a: *mut Self,
                lda: c_int,
                lwork: *mut c_int,
            ) -> cs::cusolverStatus_t {
                cs::$pw(h, S_LOWER, n, a, lda, lwork)
            }
            unsafe fn potrf(
                h: cs::cusolverDnHandle_t,
                n: c_int,
                a: *mut Self,
                lda: c_int,
                work: *mut Self,
                lwork: c_int,
                info: *mut c_int,
            ) -> cs::cusolverStatus_t {
                cs::$potrf(h, S_LOWER, n, a, lda, work, lwork, info)
            }
            unsafe fn getrf_work(
                h: cs::cusolverDnHandle_t,
                m: c_int,
                n: c_int,
                a: *mut Self,
                lwork: *mut c_int,
            ) -> cs::cusolverStatus_t {
                cs::$gw(h, m, n, a, m, lwork)
            }
            unsafe fn getrf(
                h: cs::cusolverDnHandle_t,
                m: c_int,
                n: c_int,
                a: *mut Self,
                work: *mut Self,
                ipiv: *mut c_int,
                info: *mut c_int,
            ) -> cs::cusolverStatus_t {
                cs::$getrf(h, m, n, a, m, work, ipiv, info)
            }
            unsafe fn geqrf_work(
                h: cs::cusolverDnHandle_t,
                m: c_int,
                n: c_int,
                a: *mut Self,
                lwork: *mut c_int,
            ) -> cs::cusolverStatus_t {
                cs::$qw(h, m, n, a, m, lwork)
            }
            unsafe fn geqrf(
                h: cs::cusolverDnHandle_t,
                m: c_int,
                n: c_int,
                a: *mut Self,
                tau: *mut Self,
                work: *mut Self,
                lwork: c_int,
                info: *mut c_int,
            ) -> cs::cusolverStatus_t {
                cs::$geqrf(h, m, n, a, m, tau, work, lwork, info)
            }
        }
    };
}

scalar!(
    f64,
    cublasDgemm_v2,
    cublasDsyrk_v2,
    cublasDtrsm_v2,
    cublasDaxpy_v2,
    cusolverDnDpotrf_bufferSize,
    cusolverDnDpotrf,
    cusolverDnDgetrf_bufferSize,
    cusolverDnDgetrf,
    cusolverDnDgeqrf_bufferSize,
    cusolverDnDgeqrf
);
scalar!(
    f32,
    cublasSgemm_v2,
    cublasSsyrk_v2,
    cublasStrsm_v2,
    cublasSaxpy_v2,
    cusolverDnSpotrf_bufferSize,
    cusolverDnSpotrf,
    cusolverDnSgetrf_bufferSize,
    cusolverDnSgetrf,
    cusolverDnSgeqrf_bufferSize,
    cusolverDnSgeqrf
);

/// Grows the stream's solver workspace to `lwork` elements of `T`. The old
/// workspace may still be in use by queued work, so growing synchronises.
fn ensure_work<T>(
    h: &mut Handles,
    stream: &Arc<CudaStream>,
    lwork: c_int,
) -> Result<(), PluginError> {
    let bytes = usize::try_from(lwork.max(1)).unwrap_or(1) * std::mem::size_of::<T>();
    if bytes <= h.work_bytes {
        return Ok(());
    }
    // SAFETY: a live stream of the bound context; the buffers are ours.
    unsafe {
        result::stream::synchronize(stream.cu_stream()).map_err(|e| err("synchronising", e))?;
        if h.work != 0 {
            let _ = result::free_sync(h.work);
            h.work = 0;
            h.work_bytes = 0;
        }
        h.work =
            result::malloc_sync(bytes).map_err(|e| err("allocating the solver workspace", e))?;
    }
    h.work_bytes = bytes;
    Ok(())
}

/// Grows the stream's `int` pivot buffer to `k` entries, as [`ensure_work`].
fn ensure_pivots(h: &mut Handles, stream: &Arc<CudaStream>, k: c_int) -> Result<(), PluginError> {
    let len = usize::try_from(k.max(1)).unwrap_or(1);
    if len <= h.ipiv_len {
        return Ok(());
    }
    // SAFETY: as in `ensure_work`.
    unsafe {
        result::stream::synchronize(stream.cu_stream()).map_err(|e| err("synchronising", e))?;
        if h.ipiv != 0 {
            let _ = result::free_sync(h.ipiv);
            h.ipiv = 0;
            h.ipiv_len = 0;
        }
        h.ipiv = result::malloc_sync(len * std::mem::size_of::<c_int>())
            .map_err(|e| err("allocating the pivot buffer", e))?;
    }
    h.ipiv_len = len;
    Ok(())
}

fn launch_typed<T: Scalar>(
    h: &mut Handles,
    stream: &Arc<CudaStream>,
    call: &OpCall,
    args: &[u64],
) -> Result<(), PluginError> {
    let s = &call.shapes;
    let (alpha, beta) = (T::of(call.alpha), T::of(call.beta));
    let ptr = |i: usize| args[i] as *mut T;
    // SAFETY: buffers are device allocations of the runtime holding tiles of
    // the given shapes (checked at submission); scalars live across the call.
    unsafe {
        match call.op {
            op_code::GEMM => {
                let (m, n) = (dim(s[2].rows)?, dim(s[2].cols)?);
                let k = dim(if call.trans_a() { s[0].rows } else { s[0].cols })?;
                blas_ok(
                    T::gemm(
                        h.blas,
                        op(call.trans_a()),
                        op(call.trans_b()),
                        m,
                        n,
                        k,
                        &alpha,
                        ptr(0),
                        dim(s[0].rows)?,
                        ptr(1),
                        dim(s[1].rows)?,
                        &beta,
                        ptr(2),
                        m,
                    ),
                    "gemm",
                )
            }
            op_code::SYRK => {
                let (n, k) = (dim(s[0].rows)?, dim(s[0].cols)?);
                blas_ok(
                    T::syrk(
                        h.blas,
                        n,
                        k,
                        &alpha,
                        ptr(0),
                        n,
                        &beta,
                        ptr(1),
                        dim(s[1].rows)?,
                    ),
                    "syrk",
                )
            }
            op_code::TRSM => {
                let side = if call.side_right() {
                    cb::cublasSideMode_t::CUBLAS_SIDE_RIGHT
                } else {
                    cb::cublasSideMode_t::CUBLAS_SIDE_LEFT
                };
                let (m, n) = (dim(s[1].rows)?, dim(s[1].cols)?);
                blas_ok(
                    T::trsm(
                        h.blas,
                        side,
                        op(call.trans_b()),
                        m,
                        n,
                        &alpha,
                        ptr(0),
                        dim(s[0].rows)?,
                        ptr(1),
                        m,
                    ),
                    "trsm",
                )
            }
            op_code::AXPY => {
                let n = dim(s[0].rows * s[0].cols)?;
                blas_ok(T::axpy(h.blas, n, &alpha, ptr(0), ptr(1)), "axpy")
            }
            op_code::POTRF => {
                let n = dim(s[0].rows)?;
                let mut lwork: c_int = 0;
                solver_ok(
                    T::potrf_work(h.solver, n, ptr(0), n, &mut lwork),
                    "potrf workspace query",
                )?;
                ensure_work::<T>(h, stream, lwork)?;
                solver_ok(
                    T::potrf(
                        h.solver,
                        n,
                        ptr(0),
                        n,
                        h.work as *mut T,
                        lwork,
                        h.info as *mut c_int,
                    ),
                    "potrf",
                )?;
                h.pending_potrf = Some(s[0].rows);
                Ok(())
            }
            op_code::GETRF => {
                let (m, n) = (dim(s[0].rows)?, dim(s[0].cols)?);
                let mut lwork: c_int = 0;
                solver_ok(
                    T::getrf_work(h.solver, m, n, ptr(0), &mut lwork),
                    "getrf workspace query",
                )?;
                ensure_work::<T>(h, stream, lwork)?;
                ensure_pivots(h, stream, m.min(n))?;
                // devInfo > 0 flags an exactly singular U; the factors are
                // still LAPACK's, as on the CPU, so it is not an error.
                solver_ok(
                    T::getrf(
                        h.solver,
                        m,
                        n,
                        ptr(0),
                        h.work as *mut T,
                        h.ipiv as *mut c_int,
                        h.info as *mut c_int,
                    ),
                    "getrf",
                )
            }
            op_code::GEQRF => {
                let (m, n) = (dim(s[0].rows)?, dim(s[0].cols)?);
                let mut lwork: c_int = 0;
                solver_ok(
                    T::geqrf_work(h.solver, m, n, ptr(0), &mut lwork),
                    "geqrf workspace query",
                )?;
                ensure_work::<T>(h, stream, lwork)?;
                solver_ok(
                    T::geqrf(
                        h.solver,
                        m,
                        n,
                        ptr(0),
                        ptr(1),
                        h.work as *mut T,
                        lwork,
                        h.info as *mut c_int,
                    ),
                    "geqrf",
                )
            }
            other => Err(PluginError::new(format!("unsupported op code {other}"))),
        }
    }
}

/// Launches an NVRTC kernel: `grid` is the global size in x and y and the
/// threads per block in x (blocks: ceil(x / block) by y); the kernel's
/// parameters are the buffers (device pointers) then the scalars, each a
/// `double`.
pub(crate) fn launch_user_kernel(
    f: &CudaFunction,
    stream: &Arc<CudaStream>,
    grid: [u32; 3],
    args: &[u64],
    scalars: &[u8],
) -> Result<(), PluginError> {
    if scalars.len() % 8 != 0 {
        return Err(PluginError::new("user kernel scalars must be 8 bytes each"));
    }
    let mut values: Vec<u64> = args.to_vec();
    values.extend(
        scalars
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])),
    );
    let mut params: Vec<*mut c_void> = values
        .iter_mut()
        .map(|v| (v as *mut u64).cast::<c_void>())
        .collect();
    let block = grid[2].max(1);
    let blocks_x = grid[0].div_ceil(block).max(1);
    // SAFETY: `params` points at live values for the duration of the call;
    // the launch copies them.
    unsafe {
        cudarc::driver::sys::cuLaunchKernel(
            f.cu_function(),
            blocks_x,
            grid[1].max(1),
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
        .map_err(|e| err("launching the user kernel", e))
    }
}
