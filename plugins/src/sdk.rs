//! The plugin author's side: implement [`DevicePlugin`] in ordinary Rust
//! and export it with one line.
//!
//! ```ignore
//! struct MyGpu { /* ... */ }
//! impl tessera_plugin::DevicePlugin for MyGpu { /* ... */ }
//! tessera_plugin::export_plugin!(MyGpu);
//! ```
//!
//! The macro builds the C table from generic shims. Every shim catches
//! panics, so a bug in a plugin becomes an error message for the host,
//! never an unwind across the C boundary.

use crate::abi::{self, DeviceInfo, Error, OpDesc, PluginApi, PluginState, Shape, Str};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// An error a plugin reports: a message the host shows with the plugin's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError(pub String);

impl PluginError {
    pub fn new(message: impl Into<String>) -> Self {
        PluginError(message.into())
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PluginError {}

/// A device as a plugin describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceDesc {
    pub name: String,
    /// 1 = CUDA, 2 = wgpu, 0 = other.
    pub kind: u32,
    pub memory_bytes: u64,
    pub compute_streams: u32,
    pub copy_streams: u32,
    pub gflops_f32: f64,
    pub gflops_f64: f64,
    pub h2d_bandwidth: f64,
}

impl DeviceDesc {
    pub(crate) fn to_abi(&self) -> DeviceInfo {
        let mut name = [0u8; 64];
        let bytes = self.name.as_bytes();
        let n = bytes.len().min(63);
        name[..n].copy_from_slice(&bytes[..n]);
        DeviceInfo {
            struct_size: std::mem::size_of::<DeviceInfo>(),
            name,
            kind: self.kind,
            memory_bytes: self.memory_bytes,
            compute_streams: self.compute_streams,
            copy_streams: self.copy_streams,
            gflops_f32: self.gflops_f32,
            gflops_f64: self.gflops_f64,
            h2d_bandwidth: self.h2d_bandwidth,
        }
    }

    pub(crate) fn from_abi(info: &DeviceInfo) -> DeviceDesc {
        let end = info
            .name
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(info.name.len());
        DeviceDesc {
            name: String::from_utf8_lossy(&info.name[..end]).into_owned(),
            kind: info.kind,
            memory_bytes: info.memory_bytes,
            compute_streams: info.compute_streams,
            copy_streams: info.copy_streams,
            gflops_f32: info.gflops_f32,
            gflops_f64: info.gflops_f64,
            h2d_bandwidth: info.h2d_bandwidth,
        }
    }
}

/// One op call, decoded from the C struct.
#[derive(Debug, Clone, PartialEq)]
pub struct OpCall {
    pub op: u32,
    pub dtype: u32,
    pub flags: u32,
    pub alpha: f64,
    pub beta: f64,
    pub shapes: Vec<Shape>,
}

impl OpCall {
    pub fn trans_a(&self) -> bool {
        self.flags & abi::FLAG_TRANS_A != 0
    }

    pub fn trans_b(&self) -> bool {
        self.flags & abi::FLAG_TRANS_B != 0
    }

    pub fn side_right(&self) -> bool {
        self.flags & abi::FLAG_SIDE_RIGHT != 0
    }

    pub fn to_abi(&self) -> OpDesc {
        let mut shapes = [Shape::default(); abi::MAX_ARGS];
        for (dst, src) in shapes.iter_mut().zip(&self.shapes) {
            *dst = *src;
        }
        OpDesc {
            struct_size: std::mem::size_of::<OpDesc>(),
            op: self.op,
            dtype: self.dtype,
            flags: self.flags,
            nargs: self.shapes.len().min(abi::MAX_ARGS) as u32,
            alpha: self.alpha,
            beta: self.beta,
            shapes,
        }
    }

    fn from_abi(d: &OpDesc) -> OpCall {
        let n = (d.nargs as usize).min(abi::MAX_ARGS);
        OpCall {
            op: d.op,
            dtype: d.dtype,
            flags: d.flags,
            alpha: d.alpha,
            beta: d.beta,
            shapes: d.shapes[..n].to_vec(),
        }
    }
}

/// What a device plugin implements. All methods may be called from several
/// host threads at once.
pub trait DevicePlugin: Send + Sync + Sized + 'static {
    /// Short name: `cuda`, `wgpu`; `--devices` selects plugins by it.
    const NAME: &'static str;

    /// Starts the plugin; `options` is free-form text from the host.
    fn init(options: &str) -> Result<Self, PluginError>;

    fn devices(&self) -> &[DeviceDesc];

    fn supports(&self, device: u32, op: u32, dtype: u32) -> bool;

    fn alloc(&self, device: u32, bytes: u64) -> Result<u64, PluginError>;

    fn free(&self, device: u32, buffer: u64);

    /// Queues a copy of `bytes` from `src` into `dst`.
    ///
    /// # Safety
    /// `src` must be valid for `bytes` until `stream` is synchronised.
    unsafe fn copy_h2d(
        &self,
        device: u32,
        stream: u32,
        dst: u64,
        src: *const u8,
        bytes: u64,
    ) -> Result<(), PluginError>;

    /// Queues a copy of `bytes` from `src` into `dst`.
    ///
    /// # Safety
    /// `dst` must be valid for `bytes` writes until `stream` is synchronised.
    unsafe fn copy_d2h(
        &self,
        device: u32,
        stream: u32,
        dst: *mut u8,
        src: u64,
        bytes: u64,
    ) -> Result<(), PluginError>;

    /// Queues `op` on `args` (buffers in the op's argument order).
    fn launch(
        &self,
        device: u32,
        stream: u32,
        op: &OpCall,
        args: &[u64],
    ) -> Result<(), PluginError>;

    /// Waits for everything queued on `stream`; reports errors of queued work.
    fn stream_sync(&self, device: u32, stream: u32) -> Result<(), PluginError>;

    /// Records an event on `stream`. The defaults below suit a device with
    /// one in-order queue, where every stream is that queue: events need no
    /// identity, and waiting for one is waiting for the queue.
    fn event_record(&self, _device: u32, _stream: u32) -> Result<u64, PluginError> {
        Ok(0)
    }

    /// Makes `stream` wait for `event` without blocking the host.
    fn stream_wait_event(
        &self,
        _device: u32,
        _stream: u32,
        _event: u64,
    ) -> Result<(), PluginError> {
        Ok(())
    }

    /// Blocks until `event` has happened.
    fn event_sync(&self, device: u32, _event: u64) -> Result<(), PluginError> {
        self.stream_sync(device, 0)
    }

    fn event_destroy(&self, _device: u32, _event: u64) {}

    /// Free and total device memory in bytes.
    fn memory_info(&self, device: u32) -> Result<(u64, u64), PluginError>;

    /// Compiles a user kernel from source (CUDA C for CUDA, WGSL for wgpu).
    fn compile_kernel(
        &self,
        _device: u32,
        _source: &str,
        _entry: &str,
    ) -> Result<u64, PluginError> {
        Err(PluginError::new(format!(
            "{} does not compile user kernels",
            Self::NAME
        )))
    }

    /// Pins `bytes` of host memory at `ptr` in place for fast asynchronous
    /// copies (ABI 1.1). The default says the device has no use for it.
    ///
    /// # Safety
    /// `ptr` must be valid for `bytes` until `host_unregister(ptr)`.
    unsafe fn host_register(&self, _ptr: *mut u8, _bytes: u64) -> Result<(), PluginError> {
        Err(PluginError::new(format!(
            "{} does not pin host memory",
            Self::NAME
        )))
    }

    /// Undoes [`DevicePlugin::host_register`].
    fn host_unregister(&self, _ptr: *mut u8) {}

    /// Queues a copy between two buffers of this plugin, on one device or
    /// between two (ABI 1.1), on `stream` of `device` (the destination).
    fn copy_d2d(
        &self,
        _device: u32,
        _stream: u32,
        _dst: u64,
        _src_device: u32,
        _src: u64,
        _bytes: u64,
    ) -> Result<(), PluginError> {
        Err(PluginError::new(format!(
            "{} does not copy between device buffers",
            Self::NAME
        )))
    }

    /// Launches a compiled kernel on `grid` blocks with buffer and scalar arguments.
    fn launch_kernel(
        &self,
        _device: u32,
        _stream: u32,
        _kernel: u64,
        _grid: [u32; 3],
        _args: &[u64],
        _scalars: &[u8],
    ) -> Result<(), PluginError> {
        Err(PluginError::new(format!(
            "{} does not launch user kernels",
            Self::NAME
        )))
    }
}

fn into_error(e: PluginError) -> *mut Error {
    Box::into_raw(Box::new(e)).cast::<Error>()
}

fn guard(f: impl FnOnce() -> Result<(), PluginError>) -> *mut Error {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => std::ptr::null_mut(),
        Ok(Err(e)) => into_error(e),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            into_error(PluginError(format!("plugin panicked: {msg}")))
        }
    }
}

/// # Safety
/// `state` must come from this plugin's `init`.
unsafe fn plugin<'a, P: DevicePlugin>(state: *mut PluginState) -> &'a P {
    &*state.cast::<P>()
}

unsafe extern "C" fn error_message(e: *const Error) -> Str {
    if e.is_null() {
        return Str::from_static("");
    }
    let e = &*e.cast::<PluginError>();
    Str {
        ptr: e.0.as_ptr(),
        len: e.0.len(),
    }
}

unsafe extern "C" fn error_destroy(e: *mut Error) {
    if !e.is_null() {
        drop(Box::from_raw(e.cast::<PluginError>()));
    }
}

unsafe extern "C" fn init<P: DevicePlugin>(options: Str, out: *mut *mut PluginState) -> *mut Error {
    guard(|| {
        let p = P::init(options.as_str())?;
        *out = Box::into_raw(Box::new(p)).cast::<PluginState>();
        Ok(())
    })
}

unsafe extern "C" fn destroy<P: DevicePlugin>(state: *mut PluginState) {
    if !state.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(state.cast::<P>()))));
    }
}

unsafe extern "C" fn device_count<P: DevicePlugin>(state: *mut PluginState) -> u32 {
    catch_unwind(AssertUnwindSafe(|| {
        plugin::<P>(state).devices().len() as u32
    }))
    .unwrap_or(0)
}

unsafe extern "C" fn device_info<P: DevicePlugin>(
    state: *mut PluginState,
    device: u32,
    out: *mut DeviceInfo,
) -> *mut Error {
    guard(|| {
        let d = plugin::<P>(state)
            .devices()
            .get(device as usize)
            .ok_or_else(|| PluginError::new(format!("no device {device}")))?;
        // Write no more than the host said it can hold.
        let info = d.to_abi();
        let room = (*out).struct_size.min(std::mem::size_of::<DeviceInfo>());
        std::ptr::copy_nonoverlapping(
            (&info as *const DeviceInfo).cast::<u8>(),
            out.cast::<u8>(),
            room,
        );
        (*out).struct_size = room;
        Ok(())
    })
}

unsafe extern "C" fn supports<P: DevicePlugin>(
    state: *mut PluginState,
    device: u32,
    op: u32,
    dtype: u32,
) -> u8 {
    catch_unwind(AssertUnwindSafe(|| {
        u8::from(plugin::<P>(state).supports(device, op, dtype))
    }))
    .unwrap_or(0)
}

unsafe extern "C" fn alloc<P: DevicePlugin>(
    state: *mut PluginState,
    device: u32,
    bytes: u64,
    out: *mut u64,
) -> *mut Error {
    guard(|| {
        *out = plugin::<P>(state).alloc(device, bytes)?;
        Ok(())
    })
}

unsafe extern "C" fn free<P: DevicePlugin>(state: *mut PluginState, device: u32, buffer: u64) {
    let _ = catch_unwind(AssertUnwindSafe(|| plugin::<P>(state).free(device, buffer)));
}

unsafe extern "C" fn copy_h2d<P: DevicePlugin>(
    state: *mut PluginState,
    device: u32,
    stream: u32,
    dst: u64,
    src: *const u8,
    bytes: u64,
) -> *mut Error {
    guard(|| plugin::<P>(state).copy_h2d(device, stream, dst, src, bytes))
}

unsafe extern "C" fn copy_d2h<P: DevicePlugin>(
    state: *mut PluginState,
    device: u32,
    stream: u32,
    dst: *mut u8,
    src: u64,
    bytes: u64,
) -> *mut Error {
    guard(|| plugin::<P>(state).copy_d2h(device, stream, dst, src, bytes))
}

unsafe extern "C" fn launch<P: DevicePlugin>(
    state: *mut PluginState,
    device: u32,
    stream: u32,
    op: *const OpDesc,
    args: *const u64,
    nargs: u32,
) -> *mut Error {
    guard(|| {
        if op.is_null() || (args.is_null() && nargs > 0) {
            return Err(PluginError::new("launch: null op or arguments"));
        }
        let call = OpCall::from_abi(&*op);
        let args = if nargs == 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(args, nargs as usize)
        };
        plugin::<P>(state).launch(device, stream, &call, args)
    })
}

unsafe extern "C" fn stream_sync<P: DevicePlugin>(
    state: *mut PluginState,
    device: u32,
    stream: u32,
) -> *mut Error {
    guard(|| plugin::<P>(state).stream_sync(device, stream))
}

unsafe extern "C" fn event_record<P: DevicePlugin>(
    state: *mut PluginState,
    device: u32,
    stream: u32,
    out: *mut u64,
) -> *mut Error {
    guard(|| {
        *out = plugin::<P>(state).event_record(device, stream)?;
        Ok(())
    })
}

unsafe extern "C" fn stream_wait_event<P: DevicePlugin>(
    state: *mut PluginState,
    device: u32,
    stream: u32,
    event: u64,
) -> *mut Error {
    guard(|| plugin::<P>(state).stream_wait_event(device, stream, event))
}

unsafe extern "C" fn event_sync<P: DevicePlugin>(
    state: *mut PluginState,
    device: u32,
    event: u64,
) -> *mut Error {
    guard(|| plugin::<P>(state).event_sync(device, event))
}

unsafe extern "C" fn event_destroy<P: DevicePlugin>(
    state: *mut PluginState,
    device: u32,
    event: u64,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        plugin::<P>(state).event_destroy(device, event)
    }));
}

unsafe extern "C" fn memory_info<P: DevicePlugin>(
    state: *mut PluginState,
    device: u32,
    free: *mut u64,
    total: *mut u64,
) -> *mut Error {
    guard(|| {
        let (f, t) = plugin::<P>(state).memory_info(device)?;
        *free = f;
        *total = t;
        Ok(())
    })
}

unsafe extern "C" fn compile_kernel<P: DevicePlugin>(
    state: *mut PluginState,
    device: u32,
    source: Str,
    entry: Str,
    out: *mut u64,
) -> *mut Error {
    guard(|| {
        *out = plugin::<P>(state).compile_kernel(device, source.as_str(), entry.as_str())?;
        Ok(())
    })
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn launch_kernel<P: DevicePlugin>(
    state: *mut PluginState,
    device: u32,
    stream: u32,
    kernel: u64,
    grid: *const u32,
    args: *const u64,
    nargs: u32,
    scalars: *const u8,
    scalar_bytes: u64,
) -> *mut Error {
    guard(|| {
        if grid.is_null() {
            return Err(PluginError::new("launch_kernel: null grid"));
        }
        let g = std::slice::from_raw_parts(grid, 3);
        let args = if nargs == 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(args, nargs as usize)
        };
        let scalars = if scalar_bytes == 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(scalars, scalar_bytes as usize)
        };
        plugin::<P>(state).launch_kernel(device, stream, kernel, [g[0], g[1], g[2]], args, scalars)
    })
}

unsafe extern "C" fn host_register<P: DevicePlugin>(
    state: *mut PluginState,
    ptr: *mut u8,
    bytes: u64,
) -> *mut Error {
    guard(|| plugin::<P>(state).host_register(ptr, bytes))
}

unsafe extern "C" fn host_unregister<P: DevicePlugin>(state: *mut PluginState, ptr: *mut u8) {
    let _ = catch_unwind(AssertUnwindSafe(|| plugin::<P>(state).host_unregister(ptr)));
}

unsafe extern "C" fn copy_d2d<P: DevicePlugin>(
    state: *mut PluginState,
    device: u32,
    stream: u32,
    dst: u64,
    src_device: u32,
    src: u64,
    bytes: u64,
) -> *mut Error {
    guard(|| plugin::<P>(state).copy_d2d(device, stream, dst, src_device, src, bytes))
}

/// The C table for plugin type `P`; used by [`export_plugin!`](crate::export_plugin).
pub const fn api_table<P: DevicePlugin>() -> PluginApi {
    PluginApi {
        struct_size: std::mem::size_of::<PluginApi>(),
        abi: abi::HOST_ABI,
        name: Str::from_static(P::NAME),
        error_message,
        error_destroy,
        init: init::<P>,
        destroy: destroy::<P>,
        device_count: device_count::<P>,
        device_info: device_info::<P>,
        supports: supports::<P>,
        alloc: alloc::<P>,
        free: free::<P>,
        copy_h2d: copy_h2d::<P>,
        copy_d2h: copy_d2h::<P>,
        launch: launch::<P>,
        stream_sync: stream_sync::<P>,
        event_record: event_record::<P>,
        stream_wait_event: stream_wait_event::<P>,
        event_sync: event_sync::<P>,
        event_destroy: event_destroy::<P>,
        memory_info: memory_info::<P>,
        compile_kernel: compile_kernel::<P>,
        launch_kernel: launch_kernel::<P>,
        host_register: Some(host_register::<P>),
        host_unregister: Some(host_unregister::<P>),
        copy_d2d: Some(copy_d2d::<P>),
    }
}

/// Exports a [`DevicePlugin`] type as this shared library's plugin.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        /// The plugin entry point the Tessera host looks up.
        #[no_mangle]
        pub extern "C" fn tessera_plugin_entry() -> *const $crate::abi::PluginApi {
            static API: $crate::abi::PluginApi = $crate::sdk::api_table::<$plugin>();
            &API
        }
    };
}
