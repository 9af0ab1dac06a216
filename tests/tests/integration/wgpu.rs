//! The wgpu plugin through the runtime, on lavapipe in CI.

use tessera::linalg::{cholesky, residual, SpdMatrix, TiledMatrix};
use tessera::{DType, Runtime};
use tessera_tests::built_plugin;

fn runtime(cpu_gflops: f64) -> Option<Runtime> {
    let built = Runtime::builder()
        .cpu_workers(2)
        .cpu_gflops(cpu_gflops, cpu_gflops)
        .devices(&["cpu", "wgpu"])
        .plugin(built_plugin("tessera-device-wgpu"))
        .build();
    match built {
        Ok(rt) => Some(rt),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED wgpu runtime tests: {e}");
            None
        }
        Err(e) => panic!("CI must run the wgpu tests for real: {e}"),
    }
}

#[test]
fn cholesky_f32_on_cpu_and_wgpu_is_checked_by_residual() {
    // A CPU made to look slow, so the device takes real work.
    let Some(rt) = runtime(0.5) else { return };
    let wgpu = rt.processors().iter().find(|p| p.name == "wgpu0").expect("a wgpu processor").clone();
    assert_eq!(wgpu.dtypes, vec![DType::F32]);
    let gen = SpdMatrix { n: 200, seed: 5 };
    let a = TiledMatrix::generate(&rt, "A", 200, 48, DType::F32, gen).unwrap();
    cholesky(&rt, &a).unwrap();
    let r = residual(&rt, &a, gen).unwrap();
    assert!(r < 1e-6, "residual {r:e}");
    assert_eq!(rt.progress().failed, 0);
    let ran_on_wgpu = rt
        .registry()
        .gather()
        .iter()
        .filter(|f| f.name() == "tessera_tasks_completed_total")
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| m.get_label().iter().any(|l| l.name() == "processor" && l.value() == "wgpu0"))
        .count();
    // Metrics arrive asynchronously; the residual's own tasks ran after the
    // factorisation, so by now the factorisation's events have landed.
    assert!(ran_on_wgpu > 0, "no op ran on wgpu0");
}

#[test]
fn f64_work_stays_on_the_cpu_when_wgpu_is_f32_only() {
    let Some(rt) = runtime(0.5) else { return };
    let gen = SpdMatrix { n: 64, seed: 2 };
    let a = TiledMatrix::generate(&rt, "A", 64, 16, DType::F64, gen).unwrap();
    cholesky(&rt, &a).unwrap();
    assert!(residual(&rt, &a, gen).unwrap() < 1e-14);
}
