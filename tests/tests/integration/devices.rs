//! The device path end to end, on the fake plugin: placement, copies both
//! ways, replica coherence, and device failures.

use super::Factorise;
use tessera::linalg::{
    cholesky, cholesky_left_looking, residual, CholeskyOrder, SpdMatrix, TiledMatrix,
};
use tessera::{DType, Op, Runtime, RuntimeError, Task, TileData, TileShape};
use tessera_tests::{built_plugin, parse_exposition};

fn runtime(options: &str, cpus: usize) -> Runtime {
    Runtime::builder()
        .cpu_workers(cpus)
        .devices(&["cpu", "fake"])
        .plugin(built_plugin("tessera-test-plugin-fake"))
        .plugin_options("fake", options)
        .build()
        .unwrap()
}

/// The runtime's metrics registry, parsed.
fn scrape(rt: &Runtime) -> tessera_tests::Exposition {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&rt.registry().gather(), &mut buf)
        .unwrap();
    parse_exposition(&String::from_utf8(buf).unwrap()).unwrap()
}

/// Completed tasks per processor, from the metrics registry, once every
/// task event has reached the metrics actor.
fn completed_on(rt: &Runtime, processor: &str, expected_total: f64) -> f64 {
    for _ in 0..200 {
        let e = scrape(rt);
        if e.sum("tessera_tasks_completed_total") >= expected_total {
            return e
                .samples
                .iter()
                .filter(|s| {
                    s.name == "tessera_tasks_completed_total"
                        && s.labels.get("processor").map(String::as_str) == Some(processor)
                })
                .map(|s| s.value)
                .sum();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("metrics never showed {expected_total} completions");
}

#[test]
fn cholesky_on_cpu_and_device_has_a_small_residual() {
    let rt = runtime("", 2);
    assert!(rt.processors().iter().any(|p| p.name == "fake0"));
    let gen = SpdMatrix { n: 160, seed: 9 };
    let a = TiledMatrix::generate(&rt, "A", 160, 32, DType::F64, gen).unwrap();
    let tasks = cholesky(&rt, &a).unwrap();
    let r = residual(&rt, &a, gen).unwrap();
    assert!(r < 1e-14, "residual {r:e}");
    let p = rt.progress();
    assert_eq!(p.failed, 0);
    let on_device = completed_on(&rt, "fake0", p.submitted as f64);
    assert!(
        on_device > 0.0,
        "the fast fake device took none of {tasks} tasks"
    );
}

#[test]
fn prefetching_into_the_device_keeps_results_exact() {
    // Three copy streams: two prefetch threads and one for pulls back.
    let rt = runtime("copy=3", 2);
    let gen = SpdMatrix { n: 192, seed: 4 };
    let a = TiledMatrix::generate(&rt, "A", 192, 32, DType::F64, gen).unwrap();
    rt.wait_all().unwrap();
    cholesky(&rt, &a).unwrap();
    let r = residual(&rt, &a, gen).unwrap();
    assert!(r < 1e-14, "residual {r:e}");
    assert_eq!(rt.progress().failed, 0);
    // Dropping joins the prefetch threads too (a hang here is the failure).
    drop(rt);
}

#[test]
fn device_memory_in_use_shows_in_the_metrics() {
    use prometheus::Encoder;
    let rt = runtime("", 1);
    let shape = TileShape::new(8, 8);
    let a = rt.tile(TileData::F64(vec![0.0; 64]), shape).unwrap();
    let c = rt.tile(TileData::F64(vec![0.0; 64]), shape).unwrap();
    rt.submit(Task::op(Op::gemm(1.0, 0.0)).read(&a).read(&a).write(&c))
        .unwrap();
    rt.wait_all().unwrap();
    for _ in 0..200 {
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&rt.registry().gather(), &mut buf)
            .unwrap();
        let e = parse_exposition(&String::from_utf8(buf).unwrap()).unwrap();
        // Two 8x8 f64 tiles (512 bytes each) end up with replicas on the
        // device; samples taken mid-task may show fewer.
        if e.value("tessera_memory_used_bytes", &[("space", "fake0")]) == Some(1024.0) {
            assert_eq!(
                e.value("tessera_memory_budget_bytes", &[("space", "fake0")]),
                Some(f64::from(1u32 << 30))
            );
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("device memory never showed the two replicas");
}

#[test]
fn a_dropped_tile_frees_its_device_replica() {
    // One 8x8 f64 replica (512 bytes) fits in 600 bytes, two do not: the
    // loop passes only if each dropped tile gives its device memory back.
    let rt = runtime("memory=600", 1);
    for _ in 0..5 {
        let diag: Vec<f64> = (0..64)
            .map(|k| if k % 9 == 0 { 4.0 } else { 0.0 })
            .collect();
        let t = rt.tile(TileData::F64(diag), TileShape::new(8, 8)).unwrap();
        let h = rt.submit(Task::op(Op::Potrf).read_write(&t)).unwrap();
        rt.wait(&h).unwrap();
        drop(t);
    }
    assert!(completed_on(&rt, "fake0", 5.0) >= 5.0);
}

#[test]
fn a_tile_written_on_the_device_is_copied_back_for_the_cpu() {
    let rt = runtime("", 1);
    let t = rt
        .tile(TileData::F64(vec![9.0]), TileShape::new(1, 1))
        .unwrap();
    // With a device 30x faster and idle, potrf goes there.
    rt.submit(Task::op(Op::Potrf).read_write(&t)).unwrap();
    // fetch runs on the CPU: the only valid replica is on the device.
    assert_eq!(rt.fetch(&t).unwrap(), TileData::F64(vec![3.0]));
    // A CPU write invalidates the device replica; the next device task must
    // see the new value, not its stale copy.
    rt.submit(
        Task::closure("set", |ctx| {
            *ctx.tile_mut(0).ok_or("ro")? = TileData::F64(vec![16.0]);
            Ok(())
        })
        .write(&t),
    )
    .unwrap();
    rt.submit(Task::op(Op::Potrf).read_write(&t)).unwrap();
    assert_eq!(rt.fetch(&t).unwrap(), TileData::F64(vec![4.0]));
    assert!(completed_on(&rt, "fake0", 5.0) >= 2.0);
}

#[test]
fn a_failing_device_fails_its_task_with_the_plugin_named_and_work_goes_on() {
    let rt = runtime("fail-launch", 1);
    let t = rt
        .tile(TileData::F64(vec![4.0]), TileShape::new(1, 1))
        .unwrap();
    let h = rt.submit(Task::op(Op::Potrf).read_write(&t)).unwrap();
    let err = rt.wait(&h).unwrap_err().to_string();
    assert!(
        err.contains("fake") && err.contains("injected launch failure"),
        "{err}"
    );
    assert!(err.contains("potrf"), "{err}");
    let ok = rt.spawn(|| {}).unwrap();
    rt.wait(&ok).unwrap();
}

#[test]
fn a_task_too_large_for_the_device_memory_runs_on_the_cpu() {
    // 64 bytes of device memory cannot hold a 10x10 f64 tile: the task
    // goes to the CPU beside it instead of failing on the device.
    let rt = runtime("memory=64", 1);
    let t = rt
        .tile(TileData::F64(vec![1.0; 100]), TileShape::new(10, 10))
        .unwrap();
    let c = rt
        .tile(TileData::F64(vec![0.0; 100]), TileShape::new(10, 10))
        .unwrap();
    let h = rt
        .submit(
            Task::op(Op::gemm(1.0, 1.0))
                .read(&t)
                .read(&t)
                .read_write(&c),
        )
        .unwrap();
    rt.wait(&h).unwrap();
    // c = t * t + c: every element is 10.
    let out = rt.fetch(&c).unwrap();
    assert!((0..10).all(|i| (0..10).all(|j| out.get(10, i, j) == 10.0)));
    assert_eq!(
        completed_on(&rt, "fake0", 1.0),
        0.0,
        "the device ran nothing"
    );
}

#[test]
fn asking_for_a_missing_device_kind_is_an_error() {
    let err = Runtime::builder()
        .devices(&["cpu", "nosuchdevice"])
        .build()
        .err()
        .expect("must fail");
    assert!(matches!(err, RuntimeError::Start(_)), "{err}");
    assert!(err.to_string().contains("nosuchdevice"), "{err}");
}

#[test]
fn a_broken_plugin_is_skipped_and_the_runtime_runs() {
    let rt = Runtime::builder()
        .cpu_workers(1)
        .plugin(built_plugin("tessera-test-plugin-oldabi"))
        .build()
        .unwrap();
    assert!(
        rt.skipped_plugins().iter().any(|s| s.contains("ABI")),
        "{:?}",
        rt.skipped_plugins()
    );
    let h = rt.spawn(|| {}).unwrap();
    rt.wait(&h).unwrap();
}

#[test]
fn a_kernel_without_a_device_for_its_language_is_refused() {
    use tessera::kernel::KernelSource;
    let rt = runtime("", 1);
    let err = rt
        .kernel(&KernelSource {
            entry: "k".into(),
            cuda: None,
            wgsl: None,
        })
        .unwrap_err();
    assert!(matches!(err, RuntimeError::NoKernelDevice { .. }), "{err}");
}

#[test]
fn explicit_prefetch_puts_a_replica_on_the_device_and_results_stay_exact() {
    let rt = runtime("copy=2", 1);
    let t = rt
        .tile(TileData::F64(vec![25.0]), TileShape::new(1, 1))
        .unwrap();
    let space = rt.prefetch(&t).expect("the fake device takes f64");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !t.valid_spaces().contains(&space) {
        assert!(
            std::time::Instant::now() < deadline,
            "prefetch never landed"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // Host and device both hold it now; a device potrf then a CPU fetch.
    assert!(t.valid_spaces().contains(&tessera::HOST_MEMORY));
    rt.submit(Task::op(Op::Potrf).read_write(&t)).unwrap();
    assert_eq!(rt.fetch(&t).unwrap(), TileData::F64(vec![5.0]));
    // Without a device for the type there is nothing to prefetch to.
    let cpu_only = Runtime::builder()
        .cpu_workers(1)
        .devices(&["cpu"])
        .build()
        .unwrap();
    let u = cpu_only
        .tile(TileData::F64(vec![1.0]), TileShape::new(1, 1))
        .unwrap();
    assert_eq!(cpu_only.prefetch(&u), None);
}

#[test]
fn a_runtime_without_cpu_processors_still_fetches_and_runs_closures() {
    let rt = Runtime::builder()
        .devices(&["fake"])
        .plugin(built_plugin("tessera-test-plugin-fake"))
        .build()
        .unwrap();
    assert!(rt.processors().iter().all(|p| p.name.starts_with("fake")));
    let t = rt
        .tile(TileData::F64(vec![9.0]), TileShape::new(1, 1))
        .unwrap();
    rt.submit(Task::op(Op::Potrf).read_write(&t)).unwrap();
    assert_eq!(rt.fetch(&t).unwrap(), TileData::F64(vec![3.0]));
    let h = rt.spawn(|| {}).unwrap();
    rt.wait(&h).unwrap();
}

/// The fake device alone, so every case of the selftest runs on it.
fn device_only(options: &str) -> Runtime {
    Runtime::builder()
        .devices(&["fake"])
        .plugin(built_plugin("tessera-test-plugin-fake"))
        .plugin_options("fake", options)
        .build()
        .unwrap()
}

#[test]
fn selftest_passes_a_correct_device_and_catches_a_wrong_one() {
    use tessera::selftest::selftest;
    let rt = device_only("");
    let checks = selftest(&rt, 16).unwrap();
    let ran: Vec<_> = checks.iter().filter(|c| c.ran()).collect();
    // The fake device offers gemm, syrk, trsm and potrf in both types.
    assert_eq!(ran.len(), 2 * 8, "{checks:?}");
    assert!(ran.iter().all(|c| c.passed()), "{checks:?}");

    let rt = device_only("wrong-results");
    let checks = selftest(&rt, 16).unwrap();
    let failed: Vec<_> = checks.iter().filter(|c| !c.passed()).collect();
    assert_eq!(failed.len(), 2 * 2, "only the gemm cases fail: {failed:?}");
    assert!(failed.iter().all(|c| c.case.starts_with("gemm")));
    assert!(failed[0].failure.as_deref().unwrap().contains("above"));

    // Failed launches are reported per case, and the runtime runs on.
    let rt = device_only("fail-launch");
    let checks = selftest(&rt, 8).unwrap();
    assert!(checks.iter().filter(|c| c.ran()).all(|c| c
        .failure
        .as_deref()
        .unwrap()
        .contains("injected launch failure")));
    assert!(selftest(&rt, 8).is_ok());
}

#[test]
fn large_host_tiles_are_pinned_within_the_budget_and_unpinned_when_they_go() {
    const MIB: usize = 1 << 20;
    let rt = Runtime::builder()
        .cpu_workers(1)
        .devices(&["cpu", "fake"])
        .plugin(built_plugin("tessera-test-plugin-fake"))
        .plugin_options("fake", "copy=2")
        .pinned_memory(3 * MIB as u64)
        .build()
        .unwrap();
    let shape = TileShape::new(MIB / 8, 1);
    let big = |v: f64| rt.tile(TileData::F64(vec![v; MIB / 8]), shape).unwrap();
    let tiles: Vec<_> = (0..4).map(|i| big(i as f64)).collect();
    let small = rt
        .tile(TileData::F64(vec![0.0; 16]), TileShape::new(4, 4))
        .unwrap();
    // Three fit the 3 MiB budget; small tiles are never worth pinning.
    let pinned: Vec<bool> = tiles.iter().map(|t| t.is_pinned()).collect();
    assert_eq!(pinned, vec![true, true, true, false]);
    assert!(!small.is_pinned());
    assert_eq!(rt.pinned_bytes(), 3 * MIB as u64);
    // Pinned tiles compute and copy like any other.
    rt.submit(
        Task::op(Op::Axpy { alpha: 2.0 })
            .read(&tiles[1])
            .read_write(&tiles[2]),
    )
    .unwrap();
    assert_eq!(rt.fetch(&tiles[2]).unwrap().get(MIB / 8, 5, 0), 4.0);
    // A closure that replaces the buffer unpins the tile.
    let replaced = Task::closure("replace", |ctx| {
        *ctx.tile_mut(0).unwrap() = TileData::F64(vec![7.0; MIB / 8]);
        Ok(())
    })
    .read_write(&tiles[0]);
    rt.wait(&rt.submit(replaced).unwrap()).unwrap();
    assert!(!tiles[0].is_pinned());
    assert_eq!(rt.pinned_bytes(), 2 * MIB as u64);
    assert_eq!(rt.fetch(&tiles[0]).unwrap().get(MIB / 8, 0, 0), 7.0);
    // The budget freed by dropped tiles pins new ones.
    drop(tiles);
    assert_eq!(rt.pinned_bytes(), 0);
    assert!(big(1.0).is_pinned());

    // A plugin that cannot pin leaves every tile pageable, and works.
    let rt = runtime("copy=2,no-pin", 1);
    let t = rt.tile(TileData::F64(vec![1.0; MIB / 8]), shape).unwrap();
    assert!(!t.is_pinned());
    assert_eq!(rt.pinned_bytes(), 0);
}

#[test]
fn a_tile_written_on_one_device_reaches_another_without_the_host() {
    let rt = Runtime::builder()
        .devices(&["fake"])
        .plugin(built_plugin("tessera-test-plugin-fake"))
        .plugin_options("fake", "devices=2")
        .build()
        .unwrap();
    let shape = TileShape::new(64, 64);
    let identity: Vec<f64> = (0..64 * 64)
        .map(|k| if k % 65 == 0 { 1.0 } else { 0.0 })
        .collect();
    let i = rt.tile(TileData::F64(identity), shape).unwrap();
    let x = rt.tile(TileData::F64(vec![1.0; 64 * 64]), shape).unwrap();
    let t = rt.tile(TileData::F64(vec![2.0; 64 * 64]), shape).unwrap();
    // T = I·X + T = 3 everywhere, on one device.
    rt.submit(
        Task::op(Op::gemm(1.0, 1.0))
            .read(&i)
            .read(&x)
            .read_write(&t),
    )
    .unwrap();
    let outs: Vec<_> = (0..16)
        .map(|_| rt.tile(TileData::F64(vec![0.0; 64 * 64]), shape).unwrap())
        .collect();
    // Y = 2·T·I, on either device.
    for y in &outs {
        rt.submit(Task::op(Op::gemm(2.0, 0.0)).read(&t).read(&i).write(y))
            .unwrap();
    }
    rt.wait_all().unwrap();
    let spaces = t.valid_spaces();
    // Readers ran on both devices, and the second got the tile from the
    // first: the host replica, stale since the write, was never refreshed.
    assert_eq!(spaces.len(), 2, "valid in {spaces:?}");
    assert!(!spaces.contains(&tessera::HOST_MEMORY), "{spaces:?}");
    for y in &outs {
        assert_eq!(rt.fetch(y).unwrap().get(64, 7, 3), 6.0);
    }
    assert_eq!(rt.fetch(&t).unwrap().get(64, 1, 1), 3.0);
}

#[test]
fn cholesky_runs_on_a_device_with_room_for_a_fraction_of_the_matrix() {
    // 15 stored tiles of 8 KiB (plus 15 more for the residual) through a
    // device budget of 5 tiles; the device is the only processor. The MILP
    // policy keeps each window within the budget where it can.
    for policy in ["heft", "milp"] {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = Runtime::builder()
                .devices(&["fake"])
                .plugin(built_plugin("tessera-test-plugin-fake"))
                .plugin_options("fake", "copy=2")
                .device_memory(5 * 8192)
                .policy(policy)
                .build()
                .unwrap();
            let gen = SpdMatrix { n: 160, seed: 4 };
            let a = TiledMatrix::generate(&rt, "A", 160, 32, DType::F64, gen).unwrap();
            cholesky(&rt, &a).unwrap();
            let r = residual(&rt, &a, gen).unwrap();
            let _ = tx.send((r, rt.progress(), evictions(&rt, "fake0")));
        });
        let (r, progress, evicted) = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("no progress in a minute: deadlock");
        assert!(r < 1e-14, "{policy}: residual {r:e}");
        assert_eq!(progress.failed, 0, "{policy}");
        // 30 tiles through room for 5: replicas were dropped to make room.
        assert!(evicted >= 25.0, "{policy}: {evicted} evictions counted");
    }
}

/// `tessera_evictions_total` of `space`, once the metrics actor has the
/// latest memory sample (polled).
fn evictions(rt: &Runtime, space: &str) -> f64 {
    settled(rt, "tessera_evictions_total", &[("space", space)])
}

/// Counter `name` with `labels`, once it is above 0 and has stopped
/// changing (the metrics actor hears of things in batches).
fn settled(rt: &Runtime, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut last = 0.0;
    for _ in 0..50 {
        let now = scrape(rt).value(name, labels).unwrap_or(0.0);
        if now > 0.0 && now == last {
            return now;
        }
        last = now;
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    last
}

#[test]
fn a_task_that_cannot_fit_on_the_device_fails_clearly_and_the_runtime_runs_on() {
    let rt = Runtime::builder()
        .devices(&["fake"])
        .plugin(built_plugin("tessera-test-plugin-fake"))
        .device_memory(2 * 8192)
        .build()
        .unwrap();
    let t = |v: f64| {
        rt.tile(TileData::F64(vec![v; 1024]), TileShape::new(32, 32))
            .unwrap()
    };
    let (a, b, c) = (t(1.0), t(1.0), t(0.0));
    let err = rt
        .wait(
            &rt.submit(Task::op(Op::gemm(1.0, 0.0)).read(&a).read(&b).write(&c))
                .unwrap(),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("need 24576 bytes on the device at once, more than its budget of 16384"),
        "{err}"
    );
    // Two tiles fit: a smaller task still runs.
    rt.wait(&rt.submit(Task::op(Op::Potrf).read_write(&t(4.0))).unwrap())
        .map(|_| ())
        .unwrap_or_else(|e| assert!(e.to_string().contains("positive definite"), "{e}"));
}

#[test]
fn finished_tasks_leave_no_trace_in_the_eviction_order() {
    // With a device (eviction possible) and no spill directory.
    let rt = runtime("", 1);
    let t = rt
        .tile(TileData::F64(vec![4.0; 16]), TileShape::new(4, 4))
        .unwrap();
    for _ in 0..50 {
        rt.submit(Task::closure("touch", |_| Ok(())).read(&t))
            .unwrap();
    }
    rt.wait_all().unwrap();
    assert_eq!(t.pending_uses(), 0);
}

/// A failing task, then ten that read its tile: cancelled while they wait
/// or, if the failure is waited for first, as they are submitted. Either
/// way they leave nothing in the tile's use list.
fn cancelled_tasks_leave_no_trace(failure_first: bool) {
    let rt = runtime("", 1);
    let t = rt
        .tile(TileData::F64(vec![4.0; 16]), TileShape::new(4, 4))
        .unwrap();
    let failing = Task::closure("fail", |_| Err("on purpose".into())).read_write(&t);
    let h = rt.submit(failing).unwrap();
    if failure_first {
        assert!(rt.wait(&h).is_err());
    }
    for _ in 0..10 {
        rt.submit(Task::closure("after", |_| Ok(())).read(&t))
            .unwrap();
    }
    rt.wait_all().unwrap();
    assert_eq!(rt.progress().failed, 11);
    assert_eq!(t.pending_uses(), 0);
}

#[test]
fn cancelled_tasks_leave_no_trace_in_the_eviction_order() {
    cancelled_tasks_leave_no_trace(false);
}

#[test]
fn tasks_cancelled_at_submission_leave_no_trace_in_the_eviction_order() {
    cancelled_tasks_leave_no_trace(true);
}

/// Calibration on the fake device: its ops land in the model with their
/// inputs in place (so they are learned), and both copy directions are
/// measured and saved with the model.
#[test]
fn calibration_fills_the_model_and_measures_links() {
    let dir = std::env::temp_dir().join(format!("tessera-calib-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.json");
    let rt = Runtime::builder()
        .cpu_workers(0)
        .devices(&["fake"])
        .plugin(built_plugin("tessera-test-plugin-fake"))
        .perf_model(&path)
        .build()
        .unwrap();
    let ran = tessera::calibrate::calibrate_ops(&rt, &[32, 64], 3).unwrap();
    assert!(ran >= 2 * 2 * 4, "{ran}");
    let links = tessera::calibrate::measure_links(&rt).unwrap();
    assert_eq!(links.len(), 2);
    assert!(links.iter().all(|l| l.bytes_per_second.is_finite()
        && l.bytes_per_second > 0.0
        && l.latency_seconds >= 0.0));
    assert!(links.iter().any(|l| l.src == "host" && l.dst == "fake0"));
    rt.shutdown().unwrap();
    let mut model = tessera_core::perfmodel::PerfModel::load(&path).unwrap();
    // Four runs per op, order and type, all on the one device, all learned.
    let gemm = model
        .table()
        .into_iter()
        .filter(|r| r.0 == "fake0" && r.1 == tessera::OpName::Gemm)
        .collect::<Vec<_>>();
    assert!(gemm.len() >= 2, "{gemm:?}");
    assert!(gemm.iter().all(|r| r.5 >= 4), "{gemm:?}");
    for l in &links {
        model.record_link(&l.src, &l.dst, l.bytes_per_second, l.latency_seconds);
    }
    model.save(&path).unwrap();
    let back = tessera_core::perfmodel::PerfModel::load(&path).unwrap();
    assert!(back.link("host", "fake0").is_some());
    // A runtime reading the model starts with it.
    let rt = Runtime::builder()
        .cpu_workers(1)
        .devices(&["cpu", "fake"])
        .plugin(built_plugin("tessera-test-plugin-fake"))
        .perf_model(&path)
        .build()
        .unwrap();
    rt.shutdown().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// Copies to and from a device are counted per link in the metrics, with
/// the bytes of the tiles that moved.
#[test]
fn copies_are_counted_per_link() {
    let rt = runtime("", 1);
    let shape = TileShape::new(16, 16);
    let a = rt.tile(TileData::F64(vec![1.0; 256]), shape).unwrap();
    let b = rt.tile(TileData::F64(vec![2.0; 256]), shape).unwrap();
    let c = rt.tile(TileData::F64(vec![0.0; 256]), shape).unwrap();
    let h = rt
        .submit(
            Task::op(Op::Gemm {
                trans_a: false,
                trans_b: false,
                alpha: 1.0,
                beta: 0.0,
            })
            .read(&a)
            .read(&b)
            .read_write(&c),
        )
        .unwrap();
    rt.wait(&h).unwrap();
    assert_eq!(rt.fetch(&c).unwrap(), TileData::F64(vec![32.0; 256]));
    // The three tiles went up, the result came back (metrics arrive
    // asynchronously: poll).
    let mut up = 0.0;
    let mut down = 0.0;
    for _ in 0..200 {
        let e = scrape(&rt);
        up = e
            .value(
                "tessera_transfer_bytes_total",
                &[("src", "host"), ("dst", "fake0")],
            )
            .unwrap_or(0.0);
        down = e
            .value(
                "tessera_transfer_bytes_total",
                &[("src", "fake0"), ("dst", "host")],
            )
            .unwrap_or(0.0);
        if up >= 3.0 * 2048.0 && down >= 2048.0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!((up, down), (3.0 * 2048.0, 2048.0));
}

/// The residual of a Cholesky of a 160 × 160 SPD matrix in 32 × 32 f64
/// tiles (8 KiB each) on `rt`.
fn factorised_residual(rt: &Runtime) -> Result<f64, RuntimeError> {
    let gen = SpdMatrix { n: 160, seed: 3 };
    let a = TiledMatrix::generate(rt, "A", 160, 32, DType::F64, gen)?;
    cholesky(rt, &a)?;
    residual(rt, &a, gen)
}

#[test]
fn cholesky_with_gemms_too_large_for_the_device_runs_them_on_the_cpu() {
    // 20,000 bytes of device memory: a potrf (one 8 KiB tile) and a trsm
    // (two) fit, a gemm (three) does not.
    let rt = runtime("memory=20000,copy=3", 2);
    let r = factorised_residual(&rt).unwrap();
    assert!(r < 1e-14, "residual {r:e}");
    assert_eq!(rt.progress().failed, 0);
}

#[test]
fn a_tight_device_shared_by_four_streams_never_loses_a_pinned_tile() {
    // Four compute streams pin tasks' tiles concurrently on a device with
    // room for four tiles. A tile pinned while another stream was
    // evicting it used to vanish under its task, whose allocation then
    // failed ("8192 more bytes would exceed the device budget"): 9 runs
    // in 10 of this factorisation and its residual, before the fix.
    for _ in 0..6 {
        let rt = runtime("memory=34000,copy=3,streams=4", 3);
        let r = factorised_residual(&rt).unwrap();
        assert!(r < 1e-14, "residual {r:e}");
    }
}

#[test]
#[ignore = "a wider sweep of a_tight_device_shared_by_four_streams_never_loses_a_pinned_tile, by hand"]
fn tight_device_budgets_sweep() {
    for mem in [25_000, 30_000, 34_000, 41_000, 49_000, 57_000] {
        for _ in 0..5 {
            let rt = runtime(&format!("memory={mem},copy=3,streams=4"), 3);
            let r = factorised_residual(&rt).unwrap_or_else(|e| panic!("budget {mem}: {e}"));
            assert!(r < 1e-14, "budget {mem}: residual {r:e}");
        }
    }
}

/// A 512 × 512 SPD matrix in 16 × 16 tiles of 8 KiB (136 stored,
/// 1.1 MiB), factorised by `factorise` on a fake device with room for 32
/// tiles and four streams, the only processor.
fn factorised_through_room_for_32_tiles(factorise: Factorise) -> (Runtime, TiledMatrix, SpdMatrix) {
    let rt = Runtime::builder()
        .devices(&["fake"])
        .plugin(built_plugin("tessera-test-plugin-fake"))
        .plugin_options("fake", "memory=262144,copy=5,streams=4")
        .build()
        .unwrap();
    let gen = SpdMatrix { n: 512, seed: 5 };
    let a = TiledMatrix::generate(&rt, "A", 512, 32, DType::F64, gen).unwrap();
    factorise(&rt, &a).unwrap();
    rt.wait_all().unwrap();
    (rt, a, gen)
}

#[test]
fn a_memory_bound_cholesky_goes_in_submission_order_and_copies_half_as_much() {
    // 136 tiles through room for 32. By priority the factorisation
    // copied about 1,280 tiles in (the same shape in 32 KiB tiles, before
    // this order existed); in submission order about 560, as with each
    // task run one after another in that order.
    let (rt, a, gen) = factorised_through_room_for_32_tiles(cholesky);
    let copied_in = settled(
        &rt,
        "tessera_transfers_total",
        &[("src", "host"), ("dst", "fake0")],
    );
    assert!(
        (136.0..800.0).contains(&copied_in),
        "{copied_in} tiles copied in"
    );
    // Back under the devices' memory at the end: ordered by priority again.
    let gauge = scrape(&rt).value("tessera_scheduler_memory_bound", &[]);
    assert_eq!(gauge, Some(0.0));
    let r = residual(&rt, &a, gen).unwrap();
    assert!(r < 1e-14, "residual {r:e}");
    assert_eq!(rt.progress().failed, 0);
}

#[test]
fn a_matrix_larger_than_the_devices_memory_is_factorised_left_looking() {
    // 136 tiles of 8 KiB (1.1 MiB): through room for 32 of them the run
    // is memory-bound and left-looking copies less; with room for all,
    // right-looking (the more parallel) stays.
    let order_with = |memory: u64| {
        let rt = Runtime::builder()
            .devices(&["fake"])
            .plugin(built_plugin("tessera-test-plugin-fake"))
            .plugin_options("fake", &format!("memory={memory}"))
            .build()
            .unwrap();
        let gen = SpdMatrix { n: 512, seed: 5 };
        let a = TiledMatrix::generate(&rt, "A", 512, 32, DType::F64, gen).unwrap();
        CholeskyOrder::for_memory(&rt, &a)
    };
    assert_eq!(order_with(262_144), CholeskyOrder::LeftLooking);
    assert_eq!(order_with(4 << 20), CholeskyOrder::RightLooking);
}

#[test]
fn a_memory_bound_left_looking_cholesky_writes_back_fewer_tiles() {
    // As above, both orders of updates: in submission order the
    // left-looking one finishes each tile before moving on, so it writes
    // fewer back from the device (measured: about 225 against 530).
    let written_back = |factorise: Factorise| {
        let (rt, a, gen) = factorised_through_room_for_32_tiles(factorise);
        let back = settled(
            &rt,
            "tessera_transfers_total",
            &[("src", "fake0"), ("dst", "host")],
        );
        let r = residual(&rt, &a, gen).unwrap();
        assert!(r < 1e-14, "residual {r:e}");
        back
    };
    let (right, left) = (written_back(cholesky), written_back(cholesky_left_looking));
    assert!(
        left < 0.6 * right,
        "written back: left-looking {left}, right-looking {right}"
    );
}
