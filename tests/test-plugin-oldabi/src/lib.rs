//! Exports a plugin table that claims ABI major version 99: the host must
//! refuse it at the handshake, before calling anything else.

use tessera_plugin::abi::PluginApi;
use tessera_plugin::{DeviceDesc, DevicePlugin, OpCall, PluginError};

struct Never;

impl DevicePlugin for Never {
    const NAME: &'static str = "oldabi";
    fn init(_: &str) -> Result<Self, PluginError> {
        Err(PluginError::new("must never be called"))
    }
    fn devices(&self) -> &[DeviceDesc] {
        &[]
    }
    fn supports(&self, _: u32, _: u32, _: u32) -> bool {
        false
    }
    fn alloc(&self, _: u32, _: u64) -> Result<u64, PluginError> {
        Err(PluginError::new("no"))
    }
    fn free(&self, _: u32, _: u64) {}
    unsafe fn copy_h2d(
        &self,
        _: u32,
        _: u32,
        _: u64,
        _: *const u8,
        _: u64,
    ) -> Result<(), PluginError> {
        Err(PluginError::new("no"))
    }
    unsafe fn copy_d2h(
        &self,
        _: u32,
        _: u32,
        _: *mut u8,
        _: u64,
        _: u64,
    ) -> Result<(), PluginError> {
        Err(PluginError::new("no"))
    }
    fn launch(&self, _: u32, _: u32, _: &OpCall, _: &[u64]) -> Result<(), PluginError> {
        Err(PluginError::new("no"))
    }
    fn stream_sync(&self, _: u32, _: u32) -> Result<(), PluginError> {
        Ok(())
    }

    fn memory_info(&self, _: u32) -> Result<(u64, u64), PluginError> {
        Ok((0, 0))
    }
}

/// The entry point, with the version bumped past what the host speaks.
#[no_mangle]
pub extern "C" fn tessera_plugin_entry() -> *const PluginApi {
    static API: PluginApi = {
        let mut t = tessera_plugin::sdk::api_table::<Never>();
        t.abi.major = 99;
        t
    };
    &API
}
