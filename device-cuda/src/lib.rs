//! # tessera-device-cuda: the CUDA device plugin
//!
//! Built on cudarc with dynamic loading, so it builds on machines without
//! CUDA and, loaded there, reports "no CUDA driver" instead of failing
//! (cudarc panics on a missing library, so every library is checked with
//! `is_culib_present` before its first call).
//!
//! Per device: a pool of compute streams (option `streams=N`, default 4),
//! each with its own cuBLAS and cuSOLVER handles and workspace, then
//! host-to-device copy streams (option `copy=N`, default 4) and one
//! device-to-host stream, and for every stream a
//! pair of pinned staging buffers for copies from pageable memory. Ops: cuBLAS `gemm`,
//! `syrk`, `trsm` and cuSOLVER `potrf`, `getrf`, `geqrf` on f32 and f64
//! tiles; a failed
//! factorisation (cuSOLVER's `devInfo`) is reported at `stream_sync`.
//! User kernels are CUDA C compiled by NVRTC.

mod blas;
mod small_kernels;
mod staging;

use cudarc::driver::sys::{CUdeviceptr, CUevent, CUevent_flags, CUevent_wait_flags};
use cudarc::driver::{result, CudaContext, CudaFunction, CudaModule, CudaStream};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tessera_plugin::abi::{dtype_code, op_code};
use tessera_plugin::{DeviceDesc, DevicePlugin, OpCall, PluginError};

pub(crate) fn err(context: &str, e: impl std::fmt::Debug) -> PluginError {
    PluginError::new(format!("{context}: {e:?}"))
}

/// The math library state of one compute stream.
pub(crate) struct Handles {
    pub blas: cudarc::cublas::sys::cublasHandle_t,
    pub solver: cudarc::cusolver::sys::cusolverDnHandle_t,
    pub work: CUdeviceptr,
    pub work_bytes: usize,
    /// cuSOLVER's `int` pivots of the last getrf, converted into the
    /// pivot tile by a small kernel.
    pub ipiv: CUdeviceptr,
    pub ipiv_len: usize,
    /// cuSOLVER's `devInfo` for this stream.
    pub info: CUdeviceptr,
    /// Order of the last potrf whose `devInfo` is unchecked.
    pub pending_potrf: Option<u64>,
}

// SAFETY: handles are used only under their stream's mutex, with the
// device's context bound on the calling thread.
unsafe impl Send for Handles {}

struct Device {
    ctx: Arc<CudaContext>,
    streams: Vec<Arc<CudaStream>>,
    /// Where tile buffers are allocated and freed, in stream order from the
    /// device's memory pool: `cuMemAlloc` per tile costs tens of
    /// microseconds and may synchronise the device, stalling the copies and
    /// kernels it should overlap. Nothing else is queued on this stream, so
    /// waiting for an allocation waits for nothing else. `None` where the
    /// device has no memory pools.
    alloc_stream: Option<Arc<CudaStream>>,
    compute: usize,
    handles: Vec<Mutex<Handles>>,
    /// Pinned staging per stream, made on first use.
    staging: Vec<Mutex<Option<staging::Staging>>>,
    /// The `sum` and pivot kernels, compiled on first use.
    small: Mutex<Option<small_kernels::SmallKernels>>,
}

pub struct CudaPlugin {
    devices: Vec<Device>,
    /// Whether NVRTC is there, for user kernels and `sum`.
    nvrtc: bool,
    desc: Vec<DeviceDesc>,
    events: Mutex<HashMap<u64, usize>>,
    kernels: Mutex<HashMap<u64, (Arc<CudaModule>, CudaFunction)>>,
    next: AtomicU64,
    /// Host ranges pinned by `host_register`, start → length: copies from
    /// and to them skip the staging buffers.
    pinned: Mutex<std::collections::BTreeMap<usize, usize>>,
}

impl CudaPlugin {
    fn device(&self, d: u32) -> Result<&Device, PluginError> {
        let dev = self
            .devices
            .get(d as usize)
            .ok_or_else(|| PluginError::new(format!("no CUDA device {d}")))?;
        dev.ctx
            .bind_to_thread()
            .map_err(|e| err("binding the CUDA context", e))?;
        Ok(dev)
    }

    /// Whether `[ptr, ptr + len)` lies in one pinned range.
    fn is_pinned(&self, ptr: *const u8, len: usize) -> bool {
        let start = ptr as usize;
        self.pinned.lock().is_ok_and(|p| {
            p.range(..=start)
                .next_back()
                .is_some_and(|(s, l)| start + len <= s + l)
        })
    }

    fn stream<'a>(&self, dev: &'a Device, s: u32) -> Result<&'a Arc<CudaStream>, PluginError> {
        dev.streams.get(s as usize).ok_or_else(|| {
            PluginError::new(format!(
                "no stream {s} (this device has {})",
                dev.streams.len()
            ))
        })
    }
}

fn check_libraries() -> Result<(), PluginError> {
    // SAFETY: these only try to load the libraries.
    unsafe {
        if !cudarc::driver::sys::is_culib_present() {
            return Err(PluginError::new("no CUDA driver: libcuda.so was not found"));
        }
        if !cudarc::cublas::sys::is_culib_present() {
            return Err(PluginError::new(
                "cuBLAS not found: add the CUDA libraries to LD_LIBRARY_PATH",
            ));
        }
        if !cudarc::cusolver::sys::is_culib_present() {
            return Err(PluginError::new(
                "cuSOLVER not found: add the CUDA libraries to LD_LIBRARY_PATH",
            ));
        }
    }
    Ok(())
}

/// Whether the device allocates from memory pools; if so, its default pool
/// keeps freed memory for reuse instead of returning it to the driver.
fn pooled_allocation(ctx: &Arc<CudaContext>) -> bool {
    use cudarc::driver::sys;
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut keep = u64::MAX;
    // SAFETY: out-pointers are valid; the device is the context's own.
    unsafe {
        sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device())
            .result()
            .is_ok()
            && sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut keep as *mut u64).cast(),
            )
            .result()
            .is_ok()
    }
}

impl DevicePlugin for CudaPlugin {
    const NAME: &'static str = "cuda";

    fn init(options: &str) -> Result<Self, PluginError> {
        check_libraries()?;
        let compute = options
            .split(',')
            .find_map(|kv| kv.trim().strip_prefix("streams="))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(4)
            .max(1);
        let copy = options
            .split(',')
            .find_map(|kv| kv.trim().strip_prefix("copy="))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(4)
            .max(1);
        let count = CudaContext::device_count().map_err(|e| err("counting CUDA devices", e))?;
        let mut devices = Vec::new();
        let mut desc = Vec::new();
        for ordinal in 0..usize::try_from(count).unwrap_or(0) {
            let ctx = CudaContext::new(ordinal).map_err(|e| err("creating a CUDA context", e))?;
            let mut streams = Vec::new();
            for _ in 0..compute + copy + 1 {
                streams.push(ctx.new_stream().map_err(|e| err("creating a stream", e))?);
            }
            let mut handles = Vec::new();
            for s in streams.iter().take(compute) {
                handles.push(Mutex::new(blas::create_handles(s)?));
            }
            let name = ctx
                .name()
                .unwrap_or_else(|_| format!("CUDA device {ordinal}"));
            let (_, total) = result::mem_get_info().map_err(|e| err("reading device memory", e))?;
            desc.push(DeviceDesc {
                name,
                kind: 1,
                memory_bytes: total as u64,
                compute_streams: compute as u32,
                copy_streams: (copy + 1) as u32,
                // Sustained cuBLAS rates measured on an H100 (DGEMM ~58 TFLOP/s,
                // SGEMM ~52); performance models refine them per device.
                gflops_f32: 50_000.0,
                gflops_f64: 50_000.0,
                // Pageable tiles through pinned staging, per stream.
                h2d_bandwidth: 12e9,
            });
            let staging = streams.iter().map(|_| Mutex::new(None)).collect();
            let alloc_stream = pooled_allocation(&ctx)
                .then(|| ctx.new_stream())
                .transpose()
                .map_err(|e| err("creating a stream", e))?;
            devices.push(Device {
                ctx,
                streams,
                alloc_stream,
                compute,
                handles,
                staging,
                small: Mutex::new(None),
            });
        }
        Ok(CudaPlugin {
            devices,
            // SAFETY: only tries to load the library.
            nvrtc: unsafe { cudarc::nvrtc::sys::is_culib_present() },
            desc,
            events: Mutex::new(HashMap::new()),
            kernels: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            pinned: Mutex::new(std::collections::BTreeMap::new()),
        })
    }

    fn devices(&self) -> &[DeviceDesc] {
        &self.desc
    }

    fn supports(&self, device: u32, op: u32, dtype: u32) -> bool {
        (device as usize) < self.devices.len()
            && (matches!(
                op,
                op_code::GEMM
                    | op_code::SYRK
                    | op_code::TRSM
                    | op_code::POTRF
                    | op_code::AXPY
                    | op_code::GEQRF
            ) || (matches!(op, op_code::SUM | op_code::GETRF) && self.nvrtc))
            && matches!(dtype, dtype_code::F32 | dtype_code::F64)
    }

    fn alloc(&self, device: u32, bytes: u64) -> Result<u64, PluginError> {
        let dev = self.device(device)?;
        let n =
            usize::try_from(bytes.max(1)).map_err(|_| PluginError::new("allocation too large"))?;
        let what = |e| err(&format!("allocating {bytes} bytes"), e);
        // SAFETY: the device's context is bound to this thread.
        unsafe {
            match &dev.alloc_stream {
                Some(s) => {
                    let ptr = result::malloc_async(s.cu_stream(), n).map_err(what)?;
                    // Usable on every stream once the allocation has happened.
                    result::stream::synchronize(s.cu_stream()).map_err(what)?;
                    Ok(ptr)
                }
                None => result::malloc_sync(n).map_err(what),
            }
        }
    }

    fn free(&self, device: u32, buffer: u64) {
        if let Ok(dev) = self.device(device) {
            // SAFETY: `buffer` came from `alloc` on this device; no queued work
            // uses it once the runtime frees a tile.
            let _ = unsafe {
                match &dev.alloc_stream {
                    Some(s) => result::free_async(buffer, s.cu_stream()),
                    None => result::free_sync(buffer),
                }
            };
        }
    }

    unsafe fn copy_h2d(
        &self,
        device: u32,
        stream: u32,
        dst: u64,
        src: *const u8,
        bytes: u64,
    ) -> Result<(), PluginError> {
        let dev = self.device(device)?;
        let s = self.stream(dev, stream)?;
        let src = std::slice::from_raw_parts(src, bytes as usize);
        if src.len() < staging::DIRECT_BELOW || self.is_pinned(src.as_ptr(), src.len()) {
            return result::memcpy_htod_async(dst, src, s.cu_stream())
                .map_err(|e| err("copy to device", e));
        }
        let mut slot = dev.staging[stream as usize]
            .lock()
            .map_err(|_| PluginError::new("staging lock poisoned"))?;
        if slot.is_none() {
            *slot = Some(staging::Staging::new()?);
        }
        match slot.as_mut() {
            Some(st) => st.copy_h2d(dst, src, s.cu_stream()),
            None => Err(PluginError::new("no staging buffers")),
        }
    }

    unsafe fn copy_d2h(
        &self,
        device: u32,
        stream: u32,
        dst: *mut u8,
        src: u64,
        bytes: u64,
    ) -> Result<(), PluginError> {
        let dev = self.device(device)?;
        let s = self.stream(dev, stream)?;
        let dst = std::slice::from_raw_parts_mut(dst, bytes as usize);
        result::memcpy_dtoh_async(dst, src, s.cu_stream()).map_err(|e| err("copy from device", e))
    }

    unsafe fn host_register(&self, ptr: *mut u8, bytes: u64) -> Result<(), PluginError> {
        self.device(0)?;
        let len = usize::try_from(bytes).map_err(|_| PluginError::new("range too large"))?;
        // Portable: pinned for every device's context, not only the bound one.
        cudarc::driver::sys::cuMemHostRegister_v2(
            ptr.cast(),
            len,
            cudarc::driver::sys::CU_MEMHOSTREGISTER_PORTABLE,
        )
        .result()
        .map_err(|e| err(&format!("pinning {bytes} bytes of host memory"), e))?;
        self.pinned
            .lock()
            .map_err(|_| PluginError::new("pinned lock poisoned"))?
            .insert(ptr as usize, len);
        Ok(())
    }

    fn host_unregister(&self, ptr: *mut u8) {
        let known = self
            .pinned
            .lock()
            .is_ok_and(|mut p| p.remove(&(ptr as usize)).is_some());
        if known && self.device(0).is_ok() {
            // SAFETY: a range this plugin registered; no queued copy uses it
            // once the runtime lets go of the tile.
            let _ = unsafe { cudarc::driver::sys::cuMemHostUnregister(ptr.cast()) };
        }
    }

    fn copy_d2d(
        &self,
        device: u32,
        stream: u32,
        dst: u64,
        src_device: u32,
        src: u64,
        bytes: u64,
    ) -> Result<(), PluginError> {
        let from = self.device(src_device)?.ctx.cu_ctx();
        let dev = self.device(device)?;
        let s = self.stream(dev, stream)?;
        let len = usize::try_from(bytes).map_err(|_| PluginError::new("copy too large"))?;
        // SAFETY: both buffers are allocations of this plugin of at least
        // `bytes`; the destination's context is bound.
        unsafe {
            if src_device == device {
                cudarc::driver::sys::cuMemcpyDtoDAsync_v2(dst, src, len, s.cu_stream())
            } else {
                cudarc::driver::sys::cuMemcpyPeerAsync(
                    dst,
                    dev.ctx.cu_ctx(),
                    src,
                    from,
                    len,
                    s.cu_stream(),
                )
            }
            .result()
            .map_err(|e| err("copy between device buffers", e))
        }
    }

    fn launch(
        &self,
        device: u32,
        stream: u32,
        call: &OpCall,
        args: &[u64],
    ) -> Result<(), PluginError> {
        let dev = self.device(device)?;
        if stream as usize >= dev.compute {
            return Err(PluginError::new(format!(
                "stream {stream} is a copy stream; ops run on streams 0..{}",
                dev.compute
            )));
        }
        let s = self.stream(dev, stream)?;
        if call.op == op_code::SUM {
            let (Some(x), Some(out), Some(shape)) =
                (args.first(), args.get(1), call.shapes.first())
            else {
                return Err(PluginError::new("sum takes a tile and a 1x1 result"));
            };
            let small = small_kernels::kernels(&dev.small, &dev.ctx)?;
            let k = small
                .as_ref()
                .ok_or_else(|| PluginError::new("sum kernel missing"))?;
            return k.sum(s, call.dtype, *x, *out, shape.rows * shape.cols);
        }
        let mut h = dev.handles[stream as usize]
            .lock()
            .map_err(|_| PluginError::new("handle lock poisoned"))?;
        blas::launch(&mut h, s, call, args)?;
        if call.op == op_code::GETRF {
            // cuSOLVER left `int` pivots in the stream's buffer: convert them
            // into the pivot tile, in order on the same stream.
            let (Some(out), Some(shape)) = (args.get(1), call.shapes.first()) else {
                return Err(PluginError::new("getrf takes a tile and a pivot tile"));
            };
            let small = small_kernels::kernels(&dev.small, &dev.ctx)?;
            let k = small
                .as_ref()
                .ok_or_else(|| PluginError::new("pivot kernel missing"))?;
            k.pivots(s, call.dtype, h.ipiv, *out, shape.rows.min(shape.cols))?;
        }
        Ok(())
    }

    fn stream_sync(&self, device: u32, stream: u32) -> Result<(), PluginError> {
        let dev = self.device(device)?;
        let s = self.stream(dev, stream)?;
        // SAFETY: a live stream of the bound context.
        unsafe { result::stream::synchronize(s.cu_stream()) }
            .map_err(|e| err("synchronising", e))?;
        if let Some(h) = dev.handles.get(stream as usize) {
            let mut h = h
                .lock()
                .map_err(|_| PluginError::new("handle lock poisoned"))?;
            blas::check_potrf(&mut h)?;
        }
        Ok(())
    }

    fn event_record(&self, device: u32, stream: u32) -> Result<u64, PluginError> {
        let dev = self.device(device)?;
        let s = self.stream(dev, stream)?;
        let ev = result::event::create(CUevent_flags::CU_EVENT_DISABLE_TIMING)
            .map_err(|e| err("creating an event", e))?;
        // SAFETY: fresh event, live stream.
        unsafe { result::event::record(ev, s.cu_stream()) }
            .map_err(|e| err("recording an event", e))?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.events
            .lock()
            .map_err(|_| PluginError::new("event lock poisoned"))?
            .insert(id, ev as usize);
        Ok(id)
    }

    fn stream_wait_event(&self, device: u32, stream: u32, event: u64) -> Result<(), PluginError> {
        let dev = self.device(device)?;
        let s = self.stream(dev, stream)?;
        let ev = self.event(event)?;
        // SAFETY: live event and stream.
        unsafe {
            result::stream::wait_event(s.cu_stream(), ev, CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT)
        }
        .map_err(|e| err("waiting on an event", e))
    }

    fn event_sync(&self, device: u32, event: u64) -> Result<(), PluginError> {
        self.device(device)?;
        let ev = self.event(event)?;
        // SAFETY: live event.
        unsafe { result::event::synchronize(ev) }.map_err(|e| err("waiting for an event", e))
    }

    fn event_destroy(&self, device: u32, event: u64) {
        if self.device(device).is_err() {
            return;
        }
        if let Some(ev) = self.events.lock().ok().and_then(|mut m| m.remove(&event)) {
            // SAFETY: the event is ours and forgotten from the table first.
            let _ = unsafe { result::event::destroy(ev as CUevent) };
        }
    }

    fn memory_info(&self, device: u32) -> Result<(u64, u64), PluginError> {
        self.device(device)?;
        let (free, total) = result::mem_get_info().map_err(|e| err("reading device memory", e))?;
        Ok((free as u64, total as u64))
    }

    fn compile_kernel(&self, device: u32, source: &str, entry: &str) -> Result<u64, PluginError> {
        // SAFETY: only tries to load the library.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(PluginError::new(
                "NVRTC not found: add the CUDA libraries to LD_LIBRARY_PATH",
            ));
        }
        let dev = self.device(device)?;
        let ptx = cudarc::nvrtc::compile_ptx(source).map_err(|e| {
            let why = match e {
                cudarc::nvrtc::CompileError::CompileError { log, .. } => {
                    log.to_string_lossy().trim().to_string()
                }
                other => format!("{other:?}"),
            };
            PluginError::new(format!("kernel `{entry}` does not compile:\n{why}"))
        })?;
        let module = dev
            .ctx
            .load_module(ptx)
            .map_err(|e| err("loading the kernel module", e))?;
        let function = module.load_function(entry).map_err(|e| {
            PluginError::new(format!("kernel `{entry}` not found in the source: {e:?}"))
        })?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.kernels
            .lock()
            .map_err(|_| PluginError::new("kernel lock poisoned"))?
            .insert(id, (module, function));
        Ok(id)
    }

    fn launch_kernel(
        &self,
        device: u32,
        stream: u32,
        kernel: u64,
        grid: [u32; 3],
        args: &[u64],
        scalars: &[u8],
    ) -> Result<(), PluginError> {
        let dev = self.device(device)?;
        let s = self.stream(dev, stream)?;
        let kernels = self
            .kernels
            .lock()
            .map_err(|_| PluginError::new("kernel lock poisoned"))?;
        let (_, f) = kernels
            .get(&kernel)
            .ok_or_else(|| PluginError::new(format!("unknown kernel {kernel}")))?;
        blas::launch_user_kernel(f, s, grid, args, scalars)
    }
}

impl CudaPlugin {
    fn event(&self, id: u64) -> Result<CUevent, PluginError> {
        self.events
            .lock()
            .map_err(|_| PluginError::new("event lock poisoned"))?
            .get(&id)
            .map(|e| *e as CUevent)
            .ok_or_else(|| PluginError::new(format!("unknown event {id}")))
    }
}

impl Drop for CudaPlugin {
    fn drop(&mut self) {
        for dev in &self.devices {
            if dev.ctx.bind_to_thread().is_err() {
                continue;
            }
            for st in &dev.staging {
                if let Ok(mut st) = st.lock() {
                    drop(st.take());
                }
            }
            for h in &dev.handles {
                if let Ok(h) = h.lock() {
                    blas::destroy_handles(&h);
                }
            }
        }
    }
}

tessera_plugin::export_plugin!(CudaPlugin);
