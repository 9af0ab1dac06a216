//! # tessera-plugin: the device-plugin boundary
//!
//! Device backends (CUDA, wgpu, and whatever a plugin author ships) load at
//! run time as shared libraries behind a C ABI. This crate will hold that ABI
//! (versioned `#[repr(C)]` tables that carry their own size, as the PJRT C API
//! does), the safe SDK with `export_plugin!`, and the host-side loader; see
//! issue #3.
//!
//! For now it holds the version handshake every later piece rests on: a
//! plugin states the ABI version it was built for and the size of its
//! function table, and the host accepts it only when the major versions agree
//! and the table is at least as large as the host needs.
//!
//! ```
//! use tessera_plugin::{AbiVersion, check_abi, HOST_ABI};
//! assert!(check_abi(HOST_ABI, 64, 64).is_ok());
//! let newer_major = AbiVersion { major: HOST_ABI.major + 1, minor: 0 };
//! assert!(check_abi(newer_major, 64, 64).is_err());
//! ```

/// A plugin ABI version: plugins with the same major version interoperate;
/// a newer minor version only appends fields and functions.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbiVersion {
    pub major: u32,
    pub minor: u32,
}

/// The ABI version this host speaks.
pub const HOST_ABI: AbiVersion = AbiVersion { major: 0, minor: 1 };

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
        let older = AbiVersion { major: HOST_ABI.major, minor: 0 };
        assert!(check_abi(older, 128, 64).is_ok());
        assert_eq!(
            check_abi(older, 32, 64),
            Err(AbiError::TableTooSmall { got: 32, needed: 64 })
        );
    }
}
