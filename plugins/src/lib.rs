//! # tessera-plugin: the device-plugin boundary
//!
//! Device backends (CUDA, wgpu, and whatever a plugin author ships) load at
//! run time as shared libraries behind a C ABI, so a plugin built by another
//! compiler, or against an older Tessera, still loads. The model is the
//! PJRT C API: one exported entry point returns a table of `extern "C"`
//! functions over `#[repr(C)]` structs, each carrying its own size, and
//! errors are opaque handles with messages.
//!
//! - [`abi`]: the table and the structs that cross the boundary;
//! - [`sdk`]: the safe side for plugin authors, the [`DevicePlugin`] trait
//!   and the [`export_plugin!`] macro;
//! - [`loader`]: the host side, which finds, checks and wraps plugins.
//!
//! ```
//! use tessera_plugin::abi::{AbiVersion, HOST_ABI};
//! use tessera_plugin::check_abi;
//! assert!(check_abi(HOST_ABI, 64, 64).is_ok());
//! let newer_major = AbiVersion { major: HOST_ABI.major + 1, minor: 0 };
//! assert!(check_abi(newer_major, 64, 64).is_err());
//! ```

pub mod abi;
pub mod loader;
pub mod sdk;

pub use abi::{AbiVersion, HOST_ABI};
pub use loader::{LoadedPlugin, PluginLoadError};
pub use sdk::{DeviceDesc, DevicePlugin, OpCall, PluginError};

/// Why the host refuses a plugin at the handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AbiError {
    #[error("plugin speaks ABI {plugin_major}.{plugin_minor}, this host speaks {host_major}.x: rebuild the plugin against this version of tessera-plugin")]
    MajorMismatch {
        plugin_major: u32,
        plugin_minor: u32,
        host_major: u32,
    },
    #[error("plugin function table is {got} bytes, the host needs at least {needed}: the plugin is truncated or was built for an older ABI")]
    TableTooSmall { got: usize, needed: usize },
}

/// Checks a plugin's declared version and table size against this host.
pub fn check_abi(plugin: AbiVersion, table_size: usize, needed: usize) -> Result<(), AbiError> {
    if plugin.major != HOST_ABI.major {
        return Err(AbiError::MajorMismatch {
            plugin_major: plugin.major,
            plugin_minor: plugin.minor,
            host_major: HOST_ABI.major,
        });
    }
    if table_size < needed {
        return Err(AbiError::TableTooSmall {
            got: table_size,
            needed,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_minor_versions_with_a_large_enough_table_are_accepted() {
        let older = AbiVersion {
            major: HOST_ABI.major,
            minor: 0,
        };
        assert!(check_abi(older, 128, 64).is_ok());
        assert_eq!(
            check_abi(older, 32, 64),
            Err(AbiError::TableTooSmall {
                got: 32,
                needed: 64
            })
        );
    }
}
