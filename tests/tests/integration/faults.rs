//! Bad input gets a clear error, loses nothing, and leaves the runtime usable.

use tessera::linalg::{cholesky, MatrixEntries, TiledMatrix};
use tessera::{Op, Runtime, RuntimeError, Task, TileData, TileShape};
use tessera_core::op::Side;
use tessera_core::CoreError;

/// Symmetric but indefinite: the diagonal turns negative from row `bad` on.
#[derive(Clone, Copy)]
struct Indefinite {
    bad: usize,
}

impl MatrixEntries for Indefinite {
    fn entry(&self, i: usize, j: usize) -> f64 {
        if i == j {
            if i >= self.bad {
                -1.0
            } else {
                100.0
            }
        } else {
            0.01
        }
    }
}

#[test]
fn non_spd_matrix_fails_potrf_naming_the_tile_and_cancels_dependants() {
    let rt = Runtime::builder().cpu_workers(2).build().unwrap();
    // n=40 in tiles of 10: the first negative pivot is in tile (2,2).
    let a = TiledMatrix::generate(
        &rt,
        "A",
        40,
        10,
        tessera::DType::F64,
        Indefinite { bad: 25 },
    )
    .unwrap();
    cholesky(&rt, &a).unwrap();
    rt.wait_all().unwrap();
    let probe = rt
        .submit(Task::closure("probe", |_| Ok(())).read(a.tile(3, 3)))
        .unwrap();
    let err = rt.wait(&probe).unwrap_err();
    let RuntimeError::Task(failed) = err else {
        panic!("expected a task failure, got {err}");
    };
    assert!(
        !failed.is_root(),
        "the probe was cancelled, not failed itself"
    );
    let msg = failed.cause.message.to_string();
    assert!(msg.contains("potrf"), "{msg}");
    assert!(msg.contains("A[2,2]"), "message names the tile: {msg}");
    assert!(msg.contains("not positive definite"), "{msg}");
    // Tiles before the failure were factorised and are intact.
    let l00 = rt.fetch(a.tile(0, 0)).unwrap();
    assert!((l00.get(10, 0, 0) - 10.0).abs() < 1e-12);
    // Failed and cancelled tasks are counted.
    let p = rt.progress();
    assert!(p.failed >= 3, "{p:?}");
    // The runtime accepts and runs new work afterwards.
    let t = rt
        .tile(TileData::F64(vec![4.0]), TileShape::new(1, 1))
        .unwrap();
    rt.submit(Task::op(Op::Potrf).read_write(&t)).unwrap();
    assert_eq!(rt.fetch(&t).unwrap(), TileData::F64(vec![2.0]));
}

#[test]
fn mismatched_shapes_and_modes_are_rejected_at_submission() {
    let rt = Runtime::builder().cpu_workers(1).build().unwrap();
    let sq = |n| {
        rt.tile(TileData::F64(vec![0.0; n * n]), TileShape::new(n, n))
            .unwrap()
    };
    let (a, b, c) = (sq(4), sq(5), sq(4));
    let err = rt
        .submit(
            Task::op(Op::gemm(1.0, 1.0))
                .read(&a)
                .read(&b)
                .read_write(&c),
        )
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::Invalid(CoreError::Shape { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("gemm"), "{err}");
    let err = rt.submit(Task::op(Op::Potrf).read(&a)).unwrap_err();
    assert!(
        matches!(err, RuntimeError::Invalid(CoreError::AccessMode { .. })),
        "{err}"
    );
    let f32_tile = rt
        .tile(TileData::F32(vec![0.0; 16]), TileShape::new(4, 4))
        .unwrap();
    let trsm = Op::Trsm {
        side: Side::Left,
        trans: false,
        alpha: 1.0,
    };
    let err = rt
        .submit(Task::op(trsm).read(&a).read_write(&f32_tile))
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::Invalid(CoreError::DTypeMismatch { .. })),
        "{err}"
    );
    let err = rt
        .submit(
            Task::op(Op::gemm(1.0, 1.0))
                .read(&a)
                .read(&c)
                .read_write(&a),
        )
        .unwrap_err();
    assert!(matches!(err, RuntimeError::AliasedOutput { .. }), "{err}");
    let err = rt
        .tile(TileData::F64(vec![0.0; 3]), TileShape::new(2, 2))
        .unwrap_err();
    assert!(err.to_string().contains("needs 4"), "{err}");
    // Nothing was submitted by the rejected calls.
    assert_eq!(rt.progress().submitted, 0);
}

#[test]
fn panicking_and_failing_closures_fail_their_task_only() {
    let rt = Runtime::builder().cpu_workers(2).build().unwrap();
    let t = rt
        .tile(TileData::F64(vec![1.0]), TileShape::new(1, 1))
        .unwrap();
    let boom = rt
        .submit(Task::closure("boom", |_| panic!("kaboom")).read_write(&t))
        .unwrap();
    let err = rt.wait(&boom).unwrap_err();
    assert!(err.to_string().contains("kaboom"), "{err}");
    let after = rt
        .submit(Task::closure("reader", |_| Ok(())).read(&t))
        .unwrap();
    assert!(
        rt.wait(&after).is_err(),
        "a reader of the failed tile is cancelled"
    );
    // A pure write replaces the poisoned tile and work continues.
    rt.submit(
        Task::closure("reset", |ctx| {
            *ctx.tile_mut(0).ok_or("ro")? = TileData::F64(vec![7.0]);
            Ok(())
        })
        .write(&t),
    )
    .unwrap();
    assert_eq!(rt.fetch(&t).unwrap(), TileData::F64(vec![7.0]));
    let err_task = rt
        .submit(Task::closure("err", |_| Err("bad input row 3".into())))
        .unwrap();
    assert!(rt
        .wait(&err_task)
        .unwrap_err()
        .to_string()
        .contains("bad input row 3"));
    let ok = rt.spawn(|| {}).unwrap();
    rt.wait(&ok).unwrap();
}

#[test]
fn host_budget_is_enforced_and_released_when_tiles_drop() {
    let rt = Runtime::builder()
        .cpu_workers(1)
        .host_memory(1000)
        .build()
        .unwrap();
    let shape = TileShape::new(10, 10); // 800 bytes in f64
    let t = rt.tile(TileData::F64(vec![0.0; 100]), shape).unwrap();
    let err = rt.tile(TileData::F64(vec![0.0; 100]), shape).unwrap_err();
    assert!(
        matches!(
            err,
            RuntimeError::HostBudget {
                needed: 800,
                budget: 1000,
                ..
            }
        ),
        "{err}"
    );
    drop(t);
    // The release is a message; the next reservation is queued behind it.
    let again = rt.tile(TileData::F64(vec![0.0; 100]), shape);
    assert!(again.is_ok(), "{:?}", again.err());
}

#[test]
fn zero_workers_zero_budget_and_no_queue_are_errors() {
    assert!(matches!(
        Runtime::builder().cpu_workers(0).build(),
        Err(RuntimeError::Start(_))
    ));
    assert!(matches!(
        Runtime::builder().host_memory(0).build(),
        Err(RuntimeError::Start(_))
    ));
    for bad in [0.0, -1e-3, f64::NAN, f64::INFINITY] {
        match Runtime::builder().device_queue_horizon(bad).build() {
            Err(RuntimeError::Start(m)) => assert!(m.contains("queue horizon"), "{m}"),
            other => panic!("{bad}: {:?}", other.err()),
        }
    }
}

#[test]
fn axpy_and_sum_on_the_cpu_and_their_shape_checks() {
    let rt = Runtime::builder()
        .cpu_workers(2)
        .devices(&["cpu"])
        .build()
        .unwrap();
    let shape = TileShape::new(4, 2);
    let x = rt
        .tile(
            TileData::F64(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]),
            shape,
        )
        .unwrap();
    let y = rt.tile(TileData::F64(vec![0.5; 8]), shape).unwrap();
    let s = rt
        .tile(TileData::F64(vec![0.0]), TileShape::new(1, 1))
        .unwrap();
    rt.submit(Task::op(Op::Axpy { alpha: -1.0 }).read(&x).read_write(&y))
        .unwrap();
    rt.submit(Task::op(Op::Sum).read(&y).write(&s)).unwrap();
    assert_eq!(rt.fetch(&s).unwrap(), TileData::F64(vec![4.0 - 36.0]));
    let wrong = rt
        .tile(TileData::F64(vec![0.0; 9]), TileShape::new(3, 3))
        .unwrap();
    let err = rt
        .submit(
            Task::op(Op::Axpy { alpha: 1.0 })
                .read(&x)
                .read_write(&wrong),
        )
        .unwrap_err();
    assert!(err.to_string().contains("must match"), "{err}");
    let err = rt.submit(Task::op(Op::Sum).read(&x).write(&y)).unwrap_err();
    assert!(err.to_string().contains("1x1"), "{err}");
}

#[test]
fn getrf_and_geqrf_run_as_tasks_and_bad_modes_are_rejected() {
    let rt = Runtime::builder()
        .cpu_workers(2)
        .devices(&["cpu"])
        .build()
        .unwrap();
    // A 3x3 whose first pivot must come from row 2.
    let a = rt
        .tile(
            TileData::F64(vec![1.0, 2.0, 4.0, 0.0, 1.0, 1.0, 3.0, 0.0, 2.0]),
            TileShape::new(3, 3),
        )
        .unwrap();
    let p = rt
        .tile(TileData::F64(vec![-1.0; 3]), TileShape::new(3, 1))
        .unwrap();
    rt.submit(Task::op(Op::Getrf).read_write(&a).write(&p))
        .unwrap();
    let TileData::F64(piv) = rt.fetch(&p).unwrap() else {
        panic!("f64")
    };
    assert_eq!(
        piv[0], 2.0,
        "the largest first-column entry is in row 2: {piv:?}"
    );
    let q = rt
        .tile(TileData::F64(vec![3.0, 4.0]), TileShape::new(2, 1))
        .unwrap();
    let t = rt
        .tile(TileData::F64(vec![0.0]), TileShape::new(1, 1))
        .unwrap();
    rt.submit(Task::op(Op::Geqrf).read_write(&q).write(&t))
        .unwrap();
    let TileData::F64(r) = rt.fetch(&q).unwrap() else {
        panic!("f64")
    };
    assert!(
        (r[0].abs() - 5.0).abs() < 1e-12,
        "|R[0,0]| = ‖(3,4)‖: {r:?}"
    );
    let err = rt
        .submit(Task::op(Op::Getrf).read(&a).write(&p))
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::Invalid(CoreError::AccessMode { .. })),
        "{err}"
    );
    let wrong = rt
        .tile(TileData::F64(vec![0.0; 2]), TileShape::new(2, 1))
        .unwrap();
    let err = rt
        .submit(Task::op(Op::Getrf).read_write(&a).write(&wrong))
        .unwrap_err();
    assert!(err.to_string().contains("3x1"), "{err}");
}
