//! Loading plugins, good and bad.

use tessera_plugin::{LoadedPlugin, PluginLoadError};
use tessera_tests::built_plugin;

#[test]
fn the_fake_plugin_loads_and_reports_its_devices() {
    let path = built_plugin("tessera-test-plugin-fake");
    let p = LoadedPlugin::load(&path, "devices=2,memory=4096").unwrap();
    assert_eq!(p.name(), "fake");
    assert_eq!(p.devices().len(), 2);
    assert_eq!(p.devices()[1].name, "fake1");
    assert_eq!(p.memory_info(0).unwrap(), (4096, 4096));
    let b = p.alloc(0, 1024).unwrap();
    assert_eq!(p.memory_info(0).unwrap(), (3072, 4096));
    let err = p.alloc(0, 8192).unwrap_err();
    assert!(
        err.to_string().starts_with("fake: out of device memory"),
        "{err}"
    );
    let data: Vec<u8> = (0..=255).collect();
    let mut back = vec![0u8; 256];
    unsafe {
        p.copy_h2d(0, 0, b, data.as_ptr(), 256).unwrap();
        p.copy_d2h(0, 0, back.as_mut_ptr(), b, 256).unwrap();
    }
    p.stream_sync(0, 0).unwrap();
    assert_eq!(back, data);
    p.free(0, b);
    assert_eq!(p.memory_info(0).unwrap(), (4096, 4096));
}

#[test]
fn init_failure_and_no_devices_are_clear_errors() {
    let path = built_plugin("tessera-test-plugin-fake");
    let err = LoadedPlugin::load(&path, "fail-init").unwrap_err();
    assert!(matches!(err, PluginLoadError::InitFailed { .. }), "{err}");
    assert!(err.to_string().contains("injected init failure"), "{err}");
    assert!(err.to_string().contains("fake"), "{err}");
    let err = LoadedPlugin::load(&path, "no-devices").unwrap_err();
    assert!(matches!(err, PluginLoadError::NoDevices { .. }), "{err}");
}

#[test]
fn a_plugin_for_another_abi_is_refused_before_init() {
    let path = built_plugin("tessera-test-plugin-oldabi");
    let err = LoadedPlugin::load(&path, "").unwrap_err();
    assert!(matches!(err, PluginLoadError::Abi { .. }), "{err}");
    assert!(err.to_string().contains("99"), "{err}");
}

#[test]
fn a_panic_inside_a_plugin_becomes_an_error() {
    let path = built_plugin("tessera-test-plugin-fake");
    let p = LoadedPlugin::load(&path, "panic-launch").unwrap();
    let call = tessera_plugin::OpCall {
        op: tessera_plugin::abi::op_code::POTRF,
        dtype: tessera_plugin::abi::dtype_code::F64,
        flags: 0,
        alpha: 1.0,
        beta: 0.0,
        shapes: vec![tessera_plugin::abi::Shape { rows: 1, cols: 1 }],
    };
    let b = p.alloc(0, 8).unwrap();
    let err = p.launch(0, 0, &call, &[b]).unwrap_err();
    assert!(
        err.to_string().contains("plugin panicked: injected panic"),
        "{err}"
    );
}

#[test]
fn the_cuda_plugin_without_a_driver_says_so_instead_of_crashing() {
    let path = built_plugin("tessera-device-cuda");
    match LoadedPlugin::load(&path, "") {
        // A machine with CUDA: the plugin must find devices.
        Ok(p) => assert!(!p.devices().is_empty()),
        Err(e) => {
            assert!(matches!(e, PluginLoadError::InitFailed { .. }), "{e}");
            let msg = e.to_string();
            assert!(
                msg.contains("cuda")
                    && (msg.contains("no CUDA driver") || msg.contains("not found")),
                "{msg}"
            );
        }
    }
}

#[test]
fn explicit_plugin_paths_come_first_in_discovery() {
    let path = built_plugin("tessera-test-plugin-fake");
    let found = tessera_plugin::loader::discover(std::slice::from_ref(&path));
    assert_eq!(found.first(), Some(&path));
}
