//! What crosses the plugin boundary: only `#[repr(C)]` types, opaque
//! handles and function pointers.
//!
//! Rules that keep old plugins loading: fields and functions are only ever
//! appended; every struct that grows starts with `struct_size`, which the
//! writer sets to the size it knows, so a reader never reads past it; a
//! major version change means an incompatible table.
//!
//! Memory: buffers are device allocations named by opaque `u64` handles.
//! Host pointers given to the asynchronous copies must stay valid and
//! unmodified until the stream they were queued on is synchronised (or an
//! event recorded after them has completed).

/// A plugin ABI version: plugins with the same major version interoperate;
/// a newer minor version only appends fields and functions.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbiVersion {
    pub major: u32,
    pub minor: u32,
}

/// The ABI version this host and this SDK speak.
pub const HOST_ABI: AbiVersion = AbiVersion { major: 1, minor: 1 };

/// The symbol every plugin exports: `extern "C" fn() -> *const PluginApi`.
pub const ENTRY_SYMBOL: &str = "tessera_plugin_entry";

/// The entry point's type.
pub type EntryFn = unsafe extern "C" fn() -> *const PluginApi;

/// A borrowed UTF-8 string: pointer and length, not NUL-terminated.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Str {
    pub ptr: *const u8,
    pub len: usize,
}

impl Str {
    pub const fn from_static(s: &'static str) -> Str {
        Str {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// # Safety
    /// `ptr` must point to `len` bytes that outlive `'a`.
    pub unsafe fn as_str<'a>(&self) -> &'a str {
        if self.ptr.is_null() || self.len == 0 {
            return "";
        }
        let bytes = std::slice::from_raw_parts(self.ptr, self.len);
        std::str::from_utf8(bytes).unwrap_or("<invalid UTF-8 from plugin>")
    }
}

/// An error owned by the plugin; the host reads its message, then destroys it.
#[repr(C)]
pub struct Error {
    _opaque: [u8; 0],
}

/// The plugin's state, created by `init`.
#[repr(C)]
pub struct PluginState {
    _opaque: [u8; 0],
}

/// What a device is.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DeviceInfo {
    pub struct_size: usize,
    /// NUL-padded UTF-8.
    pub name: [u8; 64],
    /// 1 = CUDA, 2 = wgpu, 0 = other.
    pub kind: u32,
    pub memory_bytes: u64,
    /// Streams are numbered: compute streams first, then copy streams, the
    /// last of which carries device-to-host copies and the others
    /// host-to-device ones.
    pub compute_streams: u32,
    pub copy_streams: u32,
    pub gflops_f32: f64,
    pub gflops_f64: f64,
    /// Host-to-device bytes per second.
    pub h2d_bandwidth: f64,
}

/// Dimensions of one tile argument.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    pub rows: u64,
    pub cols: u64,
}

/// Op codes of the catalogue (see `tessera_core::op`).
pub mod op_code {
    pub const GEMM: u32 = 1;
    pub const SYRK: u32 = 2;
    pub const TRSM: u32 = 3;
    pub const POTRF: u32 = 4;
    pub const AXPY: u32 = 5;
    pub const SUM: u32 = 6;
    /// Arguments A (read-write), P (write): see `tessera_core::Op::Getrf`.
    pub const GETRF: u32 = 7;
    /// Arguments A (read-write), T (write): see `tessera_core::Op::Geqrf`.
    pub const GEQRF: u32 = 8;
}

/// Element type codes.
pub mod dtype_code {
    pub const F32: u32 = 1;
    pub const F64: u32 = 2;
}

/// Most tile arguments of one op.
pub const MAX_ARGS: usize = 4;

/// One op call: which op, its parameters, and its arguments' shapes (the
/// buffers go alongside). Flags: bit 0 transposes A, bit 1 transposes B
/// (gemm) or L (trsm); bit 2 puts L on the right (trsm).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct OpDesc {
    pub struct_size: usize,
    pub op: u32,
    pub dtype: u32,
    pub flags: u32,
    pub nargs: u32,
    pub alpha: f64,
    pub beta: f64,
    pub shapes: [Shape; MAX_ARGS],
}

pub const FLAG_TRANS_A: u32 = 1;
pub const FLAG_TRANS_B: u32 = 2;
pub const FLAG_SIDE_RIGHT: u32 = 4;

/// The table a plugin returns. Every function returns a null `*mut Error`
/// on success; the host destroys any error it gets with `error_destroy`.
/// Functions appended after 1.0 are `Option`s: a plugin built against an
/// older minor version has a shorter table, and the host reads them as
/// absent.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PluginApi {
    pub struct_size: usize,
    pub abi: AbiVersion,
    pub name: Str,
    pub error_message: unsafe extern "C" fn(*const Error) -> Str,
    pub error_destroy: unsafe extern "C" fn(*mut Error),
    pub init: unsafe extern "C" fn(options: Str, out: *mut *mut PluginState) -> *mut Error,
    pub destroy: unsafe extern "C" fn(*mut PluginState),
    pub device_count: unsafe extern "C" fn(*mut PluginState) -> u32,
    pub device_info:
        unsafe extern "C" fn(*mut PluginState, device: u32, out: *mut DeviceInfo) -> *mut Error,
    pub supports: unsafe extern "C" fn(*mut PluginState, device: u32, op: u32, dtype: u32) -> u8,
    pub alloc: unsafe extern "C" fn(
        *mut PluginState,
        device: u32,
        bytes: u64,
        out: *mut u64,
    ) -> *mut Error,
    pub free: unsafe extern "C" fn(*mut PluginState, device: u32, buffer: u64),
    pub copy_h2d: unsafe extern "C" fn(
        *mut PluginState,
        device: u32,
        stream: u32,
        dst: u64,
        src: *const u8,
        bytes: u64,
    ) -> *mut Error,
    pub copy_d2h: unsafe extern "C" fn(
        *mut PluginState,
        device: u32,
        stream: u32,
        dst: *mut u8,
        src: u64,
        bytes: u64,
    ) -> *mut Error,
    pub launch: unsafe extern "C" fn(
        *mut PluginState,
        device: u32,
        stream: u32,
        op: *const OpDesc,
        args: *const u64,
        nargs: u32,
    ) -> *mut Error,
    pub stream_sync: unsafe extern "C" fn(*mut PluginState, device: u32, stream: u32) -> *mut Error,
    pub event_record: unsafe extern "C" fn(
        *mut PluginState,
        device: u32,
        stream: u32,
        out: *mut u64,
    ) -> *mut Error,
    pub stream_wait_event:
        unsafe extern "C" fn(*mut PluginState, device: u32, stream: u32, event: u64) -> *mut Error,
    pub event_sync: unsafe extern "C" fn(*mut PluginState, device: u32, event: u64) -> *mut Error,
    pub event_destroy: unsafe extern "C" fn(*mut PluginState, device: u32, event: u64),
    pub memory_info: unsafe extern "C" fn(
        *mut PluginState,
        device: u32,
        free: *mut u64,
        total: *mut u64,
    ) -> *mut Error,
    pub compile_kernel: unsafe extern "C" fn(
        *mut PluginState,
        device: u32,
        source: Str,
        entry: Str,
        out: *mut u64,
    ) -> *mut Error,
    /// `grid`: global size in x and y, threads per block (workgroup) in x.
    /// `scalars`: f64 values, 8 bytes each, after the buffer arguments.
    pub launch_kernel: unsafe extern "C" fn(
        *mut PluginState,
        device: u32,
        stream: u32,
        kernel: u64,
        grid: *const u32,
        args: *const u64,
        nargs: u32,
        scalars: *const u8,
        scalar_bytes: u64,
    ) -> *mut Error,
    // ---- ABI 1.1: optional, absent (null) in 1.0 tables. ----
    /// Pins (page-locks) `bytes` of host memory at `ptr` in place, so
    /// copies from and to it run at full DMA speed and truly asynchronously.
    /// Every later copy involving that range may rely on it staying valid
    /// until `host_unregister`.
    pub host_register:
        Option<unsafe extern "C" fn(*mut PluginState, ptr: *mut u8, bytes: u64) -> *mut Error>,
    /// Undoes `host_register` of the range starting at `ptr`.
    pub host_unregister: Option<unsafe extern "C" fn(*mut PluginState, ptr: *mut u8)>,
    /// Queues a copy of `bytes` from buffer `src` of `src_device` into
    /// buffer `dst` of `device` on `stream` of `device`: within one device,
    /// or between two (peer), without passing through the host.
    pub copy_d2d: Option<
        unsafe extern "C" fn(
            *mut PluginState,
            device: u32,
            stream: u32,
            dst: u64,
            src_device: u32,
            src: u64,
            bytes: u64,
        ) -> *mut Error,
    >,
}

/// Size of an ABI 1.0 table: the functions every plugin of major 1 has.
pub const TABLE_1_0_SIZE: usize = std::mem::offset_of!(PluginApi, host_register);

// The table is immutable and only holds function pointers and a static
// string, so one instance may be shared by every thread of the host.
unsafe impl Sync for PluginApi {}
