//! The wgpu plugin through the runtime, on lavapipe in CI.

use tessera::linalg::{cholesky, residual, SpdMatrix, TiledMatrix};
use tessera::{DType, Runtime};
use tessera_tests::built_plugin;

fn runtime(cpu_gflops: f64) -> Option<Runtime> {
    build(
        Runtime::builder()
            .cpu_workers(2)
            .cpu_gflops(cpu_gflops, cpu_gflops)
            .devices(&["cpu", "wgpu"]),
    )
}

/// The runtime with the wgpu plugin, or `None` (skipped) outside CI when
/// this machine has no adapter.
fn build(b: tessera::RuntimeBuilder) -> Option<Runtime> {
    match b.plugin(built_plugin("tessera-device-wgpu")).build() {
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
    let wgpu = rt
        .processors()
        .iter()
        .find(|p| p.name == "wgpu0")
        .expect("a wgpu processor")
        .clone();
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
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "processor" && l.value() == "wgpu0")
        })
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

const AXPY_WGSL: &str = r#"
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> s: array<vec4<f32>, 1>;
@compute @workgroup_size(64)
fn axpy(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x < arrayLength(&y)) { y[g.x] = y[g.x] + s[0].x * x[g.x]; }
}
"#;

#[test]
fn a_wgsl_user_kernel_runs_as_a_task_and_its_result_comes_back() {
    use tessera::kernel::KernelSource;
    use tessera::{Task, TileData, TileShape};
    let Some(rt) = runtime(60.0) else { return };
    let k = rt
        .kernel(&KernelSource {
            entry: "axpy".into(),
            wgsl: Some(AXPY_WGSL.into()),
            cuda: None,
        })
        .unwrap();
    let n = 1000;
    let x = rt
        .tile(
            TileData::F32((0..n).map(|i| i as f32).collect()),
            TileShape::new(n, 1),
        )
        .unwrap();
    let y = rt
        .tile(TileData::F32(vec![1.0; n]), TileShape::new(n, 1))
        .unwrap();
    // Two launches in a row: the second reads the first's result on the device.
    rt.submit(
        Task::kernel(&k, [n as u32, 1, 64])
            .read(&x)
            .read_write(&y)
            .scalars(&[2.0]),
    )
    .unwrap();
    rt.submit(
        Task::kernel(&k, [n as u32, 1, 64])
            .read(&x)
            .read_write(&y)
            .scalars(&[0.5]),
    )
    .unwrap();
    let TileData::F32(out) = rt.fetch(&y).unwrap() else {
        panic!("f32 expected")
    };
    for (i, v) in out.iter().enumerate() {
        assert_eq!(*v, 1.0 + 2.5 * i as f32, "element {i}");
    }
}

#[test]
fn a_wgsl_kernel_that_does_not_compile_names_the_device() {
    use tessera::kernel::KernelSource;
    let Some(rt) = runtime(60.0) else { return };
    let err = rt
        .kernel(&KernelSource {
            entry: "broken".into(),
            wgsl: Some("fn broken( {".into()),
            cuda: None,
        })
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("broken") && msg.contains("wgpu0") && msg.contains("does not compile"),
        "{msg}"
    );
    // The runtime keeps working.
    let h = rt.spawn(|| {}).unwrap();
    rt.wait(&h).unwrap();
}

#[test]
fn axpy_and_sum_run_on_wgpu_through_the_runtime() {
    use tessera::{Op, Task, TileData, TileShape};
    // A slow-looking CPU so the device takes the work.
    let Some(rt) = runtime(0.001) else { return };
    let shape = TileShape::new(1000, 3);
    let x = rt
        .tile(
            TileData::F32((0..3000).map(|i| (i % 10) as f32).collect()),
            shape,
        )
        .unwrap();
    let y = rt.tile(TileData::F32(vec![1.0; 3000]), shape).unwrap();
    let s = rt
        .tile(TileData::F32(vec![0.0]), TileShape::new(1, 1))
        .unwrap();
    rt.submit(Task::op(Op::Axpy { alpha: 2.0 }).read(&x).read_write(&y))
        .unwrap();
    rt.submit(Task::op(Op::Sum).read(&y).write(&s)).unwrap();
    // sum(2x + 1) = 2 * 300 * 45 + 3000
    assert_eq!(
        rt.fetch(&s).unwrap(),
        TileData::F32(vec![2.0 * 300.0 * 45.0 + 3000.0])
    );
}

#[test]
fn selftest_on_wgpu_alone_passes_every_op_it_offers() {
    let Some(rt) = build(Runtime::builder().devices(&["wgpu"])) else {
        return;
    };
    let checks = tessera::selftest::selftest(&rt, 40).unwrap();
    let ran: Vec<_> = checks.iter().filter(|c| c.ran()).collect();
    // gemm (two variants), syrk, trsm (four), potrf, axpy, sum in f32.
    assert_eq!(ran.len(), 10, "{checks:?}");
    assert!(
        ran.iter().all(|c| c.passed() && c.dtype == DType::F32),
        "{ran:?}"
    );
}
