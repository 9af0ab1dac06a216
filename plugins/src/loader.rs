//! The host side: find plugin libraries, check them, and call them safely.
//!
//! A plugin that is not a shared library, lacks the entry symbol, speaks
//! another ABI, fails to initialise or finds no device is refused with a
//! [`PluginLoadError`] naming the file and the cause; the caller skips it and
//! carries on with the processors it has.

use crate::abi::{self, DeviceInfo, EntryFn, OpDesc, PluginApi, PluginState, Str};
use crate::sdk::{DeviceDesc, OpCall, PluginError};
use crate::{check_abi, AbiError};
use std::path::{Path, PathBuf};

/// Why a plugin file was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum PluginLoadError {
    #[error("{path}: not a loadable shared library: {reason}")]
    NotALibrary { path: PathBuf, reason: String },
    #[error(
        "{path}: not a Tessera plugin: symbol `{}` is missing",
        abi::ENTRY_SYMBOL
    )]
    MissingEntry { path: PathBuf },
    #[error("{path}: {source}")]
    Abi { path: PathBuf, source: AbiError },
    #[error("{path}: plugin `{name}` failed to start: {message}")]
    InitFailed {
        path: PathBuf,
        name: String,
        message: String,
    },
    #[error("{path}: plugin `{name}` found no device")]
    NoDevices { path: PathBuf, name: String },
}

/// A loaded, initialised plugin. Plugins are thread-safe by contract, so
/// one handle serves every processor thread.
pub struct LoadedPlugin {
    /// A copy of the plugin's table, padded with absent functions past its
    /// `struct_size` (a table of an older minor version).
    api: PluginApi,
    state: *mut PluginState,
    name: String,
    path: PathBuf,
    devices: Vec<DeviceDesc>,
    // Dropped last: the table and the state live in the library.
    _lib: libloading::Library,
}

// SAFETY: the ABI requires every plugin function to be callable from any
// thread concurrently; the state pointer is only passed back to them.
unsafe impl Send for LoadedPlugin {}
unsafe impl Sync for LoadedPlugin {}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("devices", &self.devices)
            .finish()
    }
}

impl LoadedPlugin {
    /// Loads the plugin at `path` and starts it with `options`.
    pub fn load(path: &Path, options: &str) -> Result<LoadedPlugin, PluginLoadError> {
        Self::load_with(path, |_| options.to_string())
    }

    /// Loads the plugin at `path` and starts it with the options
    /// `options_for` gives for its name (known from its table before init).
    pub fn load_with(
        path: &Path,
        options_for: impl Fn(&str) -> String,
    ) -> Result<LoadedPlugin, PluginLoadError> {
        let path_buf = path.to_path_buf();
        // SAFETY: loading a library runs its initialisers; that is what
        // loading a plugin means, and the user chose the file.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| {
            PluginLoadError::NotALibrary {
                path: path_buf.clone(),
                reason: e.to_string(),
            }
        })?;
        // SAFETY: the symbol's type is fixed by the ABI.
        let entry: EntryFn = unsafe {
            *lib.get::<EntryFn>(abi::ENTRY_SYMBOL.as_bytes())
                .map_err(|_| PluginLoadError::MissingEntry {
                    path: path_buf.clone(),
                })?
        };
        // SAFETY: the entry returns a pointer to a static table.
        let api_ptr = unsafe { entry() };
        if api_ptr.is_null() {
            return Err(PluginLoadError::MissingEntry { path: path_buf });
        }
        // Read the two leading fields first: every version has them.
        // SAFETY: `struct_size` and `abi` start every table version.
        let (size, version) = unsafe { ((*api_ptr).struct_size, (*api_ptr).abi) };
        check_abi(version, size, abi::TABLE_1_0_SIZE).map_err(|source| PluginLoadError::Abi {
            path: path_buf.clone(),
            source,
        })?;
        // Copy what the plugin has into a zeroed table: fields past its size
        // are `Option`s of function pointers, for which zero is `None`.
        let mut table = std::mem::MaybeUninit::<PluginApi>::zeroed();
        // SAFETY: the plugin's table is at least `TABLE_1_0_SIZE` bytes
        // (checked), the copy is no longer than either table, and every
        // field past the copied bytes is valid when zeroed.
        let api: PluginApi = unsafe {
            std::ptr::copy_nonoverlapping(
                api_ptr.cast::<u8>(),
                table.as_mut_ptr().cast::<u8>(),
                size.min(std::mem::size_of::<PluginApi>()),
            );
            table.assume_init()
        };
        // SAFETY: `name` is a static string in the library.
        let name = unsafe { api.name.as_str() }.to_string();
        let mut state: *mut PluginState = std::ptr::null_mut();
        let options = options_for(&name);
        let options_str = Str {
            ptr: options.as_ptr(),
            len: options.len(),
        };
        // SAFETY: arguments match the ABI; `options` outlives the call.
        let err = unsafe { (api.init)(options_str, &mut state) };
        if let Some(message) = take_error(&api, err) {
            return Err(PluginLoadError::InitFailed {
                path: path_buf,
                name,
                message,
            });
        }
        let mut plugin = LoadedPlugin {
            api,
            state,
            name,
            path: path_buf,
            devices: Vec::new(),
            _lib: lib,
        };
        // SAFETY: `state` came from `init`.
        let count = unsafe { (api.device_count)(plugin.state) };
        for d in 0..count {
            // SAFETY: zeroed is a valid DeviceInfo; the plugin fills at most struct_size.
            let mut info: DeviceInfo = unsafe { std::mem::zeroed() };
            info.struct_size = std::mem::size_of::<DeviceInfo>();
            // SAFETY: as above.
            let err = unsafe { (api.device_info)(plugin.state, d, &mut info) };
            if take_error(&api, err).is_none() {
                plugin.devices.push(DeviceDesc::from_abi(&info));
            }
        }
        if plugin.devices.is_empty() {
            return Err(PluginLoadError::NoDevices {
                path: plugin.path.clone(),
                name: plugin.name.clone(),
            });
        }
        Ok(plugin)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn devices(&self) -> &[DeviceDesc] {
        &self.devices
    }

    fn check(&self, err: *mut abi::Error) -> Result<(), PluginError> {
        match take_error(&self.api, err) {
            None => Ok(()),
            Some(m) => Err(PluginError(format!("{}: {m}", self.name))),
        }
    }

    pub fn supports(&self, device: u32, op: u32, dtype: u32) -> bool {
        // SAFETY: state from init; plain values.
        unsafe { (self.api.supports)(self.state, device, op, dtype) != 0 }
    }

    pub fn alloc(&self, device: u32, bytes: u64) -> Result<u64, PluginError> {
        let mut out = 0;
        // SAFETY: state from init; `out` is a valid pointer.
        self.check(unsafe { (self.api.alloc)(self.state, device, bytes, &mut out) })?;
        Ok(out)
    }

    pub fn free(&self, device: u32, buffer: u64) {
        // SAFETY: state from init.
        unsafe { (self.api.free)(self.state, device, buffer) }
    }

    /// # Safety
    /// `src` must be valid for `bytes` reads until `stream` is synchronised.
    pub unsafe fn copy_h2d(
        &self,
        device: u32,
        stream: u32,
        dst: u64,
        src: *const u8,
        bytes: u64,
    ) -> Result<(), PluginError> {
        self.check((self.api.copy_h2d)(
            self.state, device, stream, dst, src, bytes,
        ))
    }

    /// # Safety
    /// `dst` must be valid for `bytes` writes until `stream` is synchronised.
    pub unsafe fn copy_d2h(
        &self,
        device: u32,
        stream: u32,
        dst: *mut u8,
        src: u64,
        bytes: u64,
    ) -> Result<(), PluginError> {
        self.check((self.api.copy_d2h)(
            self.state, device, stream, dst, src, bytes,
        ))
    }

    pub fn launch(
        &self,
        device: u32,
        stream: u32,
        op: &OpCall,
        args: &[u64],
    ) -> Result<(), PluginError> {
        let desc: OpDesc = op.to_abi();
        // SAFETY: `desc` and `args` outlive the call.
        self.check(unsafe {
            (self.api.launch)(
                self.state,
                device,
                stream,
                &desc,
                args.as_ptr(),
                args.len() as u32,
            )
        })
    }

    pub fn stream_sync(&self, device: u32, stream: u32) -> Result<(), PluginError> {
        // SAFETY: state from init.
        self.check(unsafe { (self.api.stream_sync)(self.state, device, stream) })
    }

    pub fn event_record(&self, device: u32, stream: u32) -> Result<u64, PluginError> {
        let mut out = 0;
        // SAFETY: state from init; `out` is valid.
        self.check(unsafe { (self.api.event_record)(self.state, device, stream, &mut out) })?;
        Ok(out)
    }

    pub fn stream_wait_event(
        &self,
        device: u32,
        stream: u32,
        event: u64,
    ) -> Result<(), PluginError> {
        // SAFETY: state from init.
        self.check(unsafe { (self.api.stream_wait_event)(self.state, device, stream, event) })
    }

    pub fn event_sync(&self, device: u32, event: u64) -> Result<(), PluginError> {
        // SAFETY: state from init.
        self.check(unsafe { (self.api.event_sync)(self.state, device, event) })
    }

    pub fn event_destroy(&self, device: u32, event: u64) {
        // SAFETY: state from init.
        unsafe { (self.api.event_destroy)(self.state, device, event) }
    }

    pub fn memory_info(&self, device: u32) -> Result<(u64, u64), PluginError> {
        let (mut free, mut total) = (0, 0);
        // SAFETY: state from init; pointers valid.
        self.check(unsafe { (self.api.memory_info)(self.state, device, &mut free, &mut total) })?;
        Ok((free, total))
    }

    pub fn compile_kernel(
        &self,
        device: u32,
        source: &str,
        entry: &str,
    ) -> Result<u64, PluginError> {
        let mut out = 0;
        let s = Str {
            ptr: source.as_ptr(),
            len: source.len(),
        };
        let e = Str {
            ptr: entry.as_ptr(),
            len: entry.len(),
        };
        // SAFETY: strings outlive the call; `out` valid.
        self.check(unsafe { (self.api.compile_kernel)(self.state, device, s, e, &mut out) })?;
        Ok(out)
    }

    pub fn launch_kernel(
        &self,
        device: u32,
        stream: u32,
        kernel: u64,
        grid: [u32; 3],
        args: &[u64],
        scalars: &[u8],
    ) -> Result<(), PluginError> {
        // SAFETY: all slices outlive the call.
        self.check(unsafe {
            (self.api.launch_kernel)(
                self.state,
                device,
                stream,
                kernel,
                grid.as_ptr(),
                args.as_ptr(),
                args.len() as u32,
                scalars.as_ptr(),
                scalars.len() as u64,
            )
        })
    }
}

impl LoadedPlugin {
    /// Pins host memory for this plugin's copies (see
    /// [`crate::abi::PluginApi::host_register`]); an error where the plugin
    /// cannot (or predates ABI 1.1).
    ///
    /// # Safety
    /// `ptr` must be valid for `bytes` until [`LoadedPlugin::host_unregister`].
    pub unsafe fn host_register(&self, ptr: *mut u8, bytes: u64) -> Result<(), PluginError> {
        match self.api.host_register {
            Some(f) => self.check(f(self.state, ptr, bytes)),
            None => Err(PluginError::new(format!(
                "{} predates ABI 1.1 and does not pin host memory",
                self.name
            ))),
        }
    }

    /// Undoes [`LoadedPlugin::host_register`] of the range starting at
    /// address `addr` (an address, not dereferenced here).
    pub fn host_unregister(&self, addr: usize) {
        if let Some(f) = self.api.host_unregister {
            // SAFETY: state from init; the plugin ignores unknown addresses.
            unsafe { f(self.state, addr as *mut u8) }
        }
    }

    /// Queues a device-to-device copy on `stream` of `device` (see
    /// [`crate::abi::PluginApi::copy_d2d`]).
    pub fn copy_d2d(
        &self,
        device: u32,
        stream: u32,
        dst: u64,
        src_device: u32,
        src: u64,
        bytes: u64,
    ) -> Result<(), PluginError> {
        match self.api.copy_d2d {
            // SAFETY: buffers are handles of this plugin; no host memory.
            Some(f) => {
                self.check(unsafe { f(self.state, device, stream, dst, src_device, src, bytes) })
            }
            None => Err(PluginError::new(format!(
                "{} predates ABI 1.1 and does not copy between device buffers",
                self.name
            ))),
        }
    }
}

impl Drop for LoadedPlugin {
    fn drop(&mut self) {
        // SAFETY: state from init, destroyed once, before the library unloads.
        unsafe { (self.api.destroy)(self.state) }
    }
}

fn take_error(api: &PluginApi, err: *mut abi::Error) -> Option<String> {
    if err.is_null() {
        return None;
    }
    // SAFETY: a non-null error from this plugin; read, then destroyed once.
    unsafe {
        let msg = (api.error_message)(err).as_str().to_string();
        (api.error_destroy)(err);
        Some(msg)
    }
}

/// File names that look like plugins on this platform: `libtessera_device_*.so`
/// (`.dylib` on macOS, `tessera_device_*.dll` on Windows).
pub fn is_plugin_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let (prefix, suffix) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    name.starts_with(&format!("{prefix}tessera_device_")) && name.ends_with(suffix)
}

/// Plugin files to try, most specific first: the `explicit` paths, then each
/// entry of `TESSERA_PLUGIN_PATH` (directories or files, separated like
/// `PATH`), then the running executable's directory. A host that keeps the
/// first plugin of each name so lets the user override what is installed.
/// Duplicates are dropped.
pub fn discover(explicit: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs_and_files: Vec<PathBuf> = Vec::new();
    if let Some(paths) = std::env::var_os("TESSERA_PLUGIN_PATH") {
        dirs_and_files.extend(std::env::split_paths(&paths));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs_and_files.push(dir);
    }
    let mut found: Vec<PathBuf> = explicit.to_vec();
    for entry in dirs_and_files {
        if entry.is_dir() {
            let Ok(read) = std::fs::read_dir(&entry) else {
                continue;
            };
            let mut files: Vec<PathBuf> = read
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_plugin_file(p))
                .collect();
            files.sort();
            found.extend(files);
        } else if entry.is_file() {
            found.push(entry);
        }
    }
    let mut seen = std::collections::HashSet::new();
    found.retain(|p| seen.insert(p.canonicalize().unwrap_or_else(|_| p.clone())));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_a_library_is_refused_with_its_path() {
        let dir = std::env::temp_dir().join(format!("tessera-plugin-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("libtessera_device_garbage.so");
        std::fs::write(&path, b"this is not an ELF file").unwrap();
        let err = LoadedPlugin::load(&path, "").unwrap_err();
        assert!(matches!(err, PluginLoadError::NotALibrary { .. }), "{err}");
        assert!(
            err.to_string().contains("libtessera_device_garbage.so"),
            "{err}"
        );
        assert!(is_plugin_file(&path));
        assert!(!is_plugin_file(&dir.join("libother.so")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_library_without_the_entry_symbol_is_refused() {
        // libc is a real shared library with no Tessera entry point.
        let candidates = [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/lib64/libc.so.6",
        ];
        let Some(libc) = candidates.iter().map(Path::new).find(|p| p.exists()) else {
            return;
        };
        let err = LoadedPlugin::load(libc, "").unwrap_err();
        assert!(matches!(err, PluginLoadError::MissingEntry { .. }), "{err}");
    }
}
