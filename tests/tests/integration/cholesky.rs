//! The tiled Cholesky end to end, checked by residual.

use super::Factorise;
use tessera::linalg::{cholesky, cholesky_left_looking, residual, SpdMatrix, TiledMatrix};
use tessera::{DType, Runtime};

fn check(n: usize, tile: usize, dtype: DType, bound: f64) {
    check_variant(n, tile, dtype, bound, cholesky);
    check_variant(n, tile, dtype, bound, cholesky_left_looking);
}

/// Both variants submit the same tasks (by count) and factor alike.
fn check_variant(n: usize, tile: usize, dtype: DType, bound: f64, factorise: Factorise) {
    let rt = Runtime::builder().cpu_workers(2).build().unwrap();
    let gen = SpdMatrix { n, seed: 42 };
    let a = TiledMatrix::generate(&rt, "A", n, tile, dtype, gen).unwrap();
    let tasks = factorise(&rt, &a).unwrap();
    let nt = n.div_ceil(tile);
    // potrf + trsm + syrk + gemm counts of the right-looking algorithm.
    let gemms: usize = (0..nt)
        .map(|k| (nt - k - 1) * nt.saturating_sub(k + 2) / 2)
        .sum();
    assert_eq!(tasks, nt + nt * (nt - 1) + gemms);
    let r = residual(&rt, &a, gen).unwrap();
    assert!(r < bound, "n={n} tile={tile} {dtype}: residual {r:e}");
    assert_eq!(rt.progress().failed, 0);
}

#[test]
fn f64_with_ragged_tiles() {
    check(203, 32, DType::F64, 1e-14);
}

#[test]
fn f32_with_ragged_tiles() {
    check(150, 40, DType::F32, 1e-6);
}

#[test]
fn single_tile() {
    check(17, 17, DType::F64, 1e-14);
}

#[test]
fn a_wrong_factor_has_a_large_residual() {
    // The check must be able to fail: perturb one factor entry.
    let rt = Runtime::builder().cpu_workers(2).build().unwrap();
    let gen = SpdMatrix { n: 64, seed: 3 };
    let a = TiledMatrix::generate(&rt, "A", 64, 16, DType::F64, gen).unwrap();
    cholesky(&rt, &a).unwrap();
    rt.submit(
        tessera::Task::closure("perturb", |ctx| {
            if let Some(tessera::TileData::F64(v)) = ctx.tile_mut(0) {
                v[3] += 1.0;
            }
            Ok(())
        })
        .read_write(a.tile(2, 1)),
    )
    .unwrap();
    let r = residual(&rt, &a, gen).unwrap();
    assert!(r > 1e-4, "residual {r:e} should expose the perturbation");
}

#[test]
fn measured_op_times_persist_between_runs_and_bad_model_files_are_refused() {
    let dir = std::env::temp_dir().join(format!("tessera-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.json");
    let run = || {
        let rt = tessera::Runtime::builder()
            .cpu_workers(2)
            .devices(&["cpu"])
            .perf_model(&path)
            .build()
            .unwrap();
        let gen = tessera::linalg::SpdMatrix { n: 256, seed: 2 };
        let a = tessera::linalg::TiledMatrix::generate(&rt, "A", 256, 64, tessera::DType::F64, gen)
            .unwrap();
        tessera::linalg::cholesky(&rt, &a).unwrap();
        rt.shutdown().unwrap();
    };
    run();
    let first = tessera_core::perfmodel::PerfModel::load(&path).unwrap();
    // 4 potrf, 6 trsm, 6 syrk, 4 gemm on 64×64 tiles, all in place on a CPU.
    assert_eq!(first.samples(), 20);
    run();
    let second = tessera_core::perfmodel::PerfModel::load(&path).unwrap();
    assert_eq!(second.samples(), 40, "the second run adds to the first");
    // 8 gemms over two CPUs: one of them holds the 3 a bucket needs.
    let on_cpu = ["cpu0", "cpu1"].iter().any(|p| {
        second
            .estimate(
                tessera::OpName::Gemm,
                tessera::DType::F64,
                p,
                2.0 * 64f64.powi(3),
            )
            .is_some()
    });
    assert!(on_cpu);
    std::fs::write(&path, "{ not json").unwrap();
    let err = tessera::Runtime::builder()
        .cpu_workers(1)
        .perf_model(&path)
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model.json") && err.contains("line 1"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Every policy factors correctly; the window policies record their
/// decisions by mode in the metrics; an unknown one is a start error.
#[test]
fn every_policy_factors_and_window_policies_report_their_modes() {
    for policy in ["heft", "eager", "milp", "metaheuristic"] {
        let rt = Runtime::builder()
            .cpu_workers(2)
            .policy(policy)
            .metrics("127.0.0.1:0")
            .build()
            .unwrap();
        let gen = SpdMatrix { n: 768, seed: 5 };
        let a = TiledMatrix::generate(&rt, "A", 768, 96, DType::F64, gen).unwrap();
        cholesky(&rt, &a).unwrap();
        let r = residual(&rt, &a, gen).unwrap();
        assert!(r < 1e-14, "{policy}: residual {r:e}");
        let addr = rt.metrics_addr().unwrap();
        let mut windows = 0.0;
        for _ in 0..100 {
            let (_, body) = tessera_tests::http_get(addr, "/metrics").unwrap();
            let e = tessera_tests::parse_exposition(&body).unwrap();
            windows = e.sum("tessera_scheduler_decisions_total");
            if windows > 0.0 || !matches!(policy, "milp" | "metaheuristic") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // 8 x 8 tiles: the trailing updates come ready many at once.
        match policy {
            "milp" | "metaheuristic" => assert!(windows > 0.0, "{policy}: no window decisions"),
            _ => assert_eq!(windows, 0.0, "{policy}"),
        }
    }
    match Runtime::builder().policy("fastest").build() {
        Err(e) => assert!(e.to_string().contains("unknown policy `fastest`"), "{e}"),
        Ok(_) => panic!("an unknown policy started"),
    }
}
