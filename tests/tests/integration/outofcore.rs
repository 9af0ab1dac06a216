//! The host tier with a spill directory: data larger than the host budget
//! runs, within the budget, and leaves nothing behind.

use std::sync::mpsc;
use std::time::Duration;
use tessera::linalg::{cholesky, residual, SpdMatrix, TiledMatrix};
use tessera::{DType, Op, Runtime, RuntimeError, Task, TileData, TileShape};

fn spill_parent() -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("tessera-test-{}", std::process::id()));
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn runtime(budget: u64, workers: usize) -> Runtime {
    Runtime::builder()
        .cpu_workers(workers)
        .devices(&["cpu"])
        .host_memory(budget)
        .spill_dir(spill_parent())
        .build()
        .unwrap()
}

/// Runs `f` on a thread and fails the test if it takes longer than a
/// minute: a deadlock must fail, not hang CI.
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("no progress in a minute: deadlock")
}

#[test]
fn cholesky_with_a_quarter_of_the_matrix_in_ram_is_checked_and_cleans_up() {
    let (n, tile) = (384, 32);
    let matrix_bytes = (n * (n + tile) / 2 * 8) as u64; // lower triangle of tiles
    let budget = matrix_bytes / 4;
    let rt = runtime(budget, 2);
    let (r, usage, path) = within_a_minute(move || {
        let gen = SpdMatrix { n, seed: 3 };
        let a = TiledMatrix::generate(&rt, "A", n, tile, DType::F64, gen).unwrap();
        cholesky(&rt, &a).unwrap();
        let r = residual(&rt, &a, gen).unwrap();
        let usage = rt.host_usage();
        let path = usage.spill_path.clone().unwrap();
        // Evictions to disk are counted in the metrics.
        let mut evicted = 0.0;
        for _ in 0..100 {
            use prometheus::Encoder;
            let mut buf = Vec::new();
            prometheus::TextEncoder::new()
                .encode(&rt.registry().gather(), &mut buf)
                .unwrap();
            let e = tessera_tests::parse_exposition(&String::from_utf8(buf).unwrap()).unwrap();
            evicted = e
                .value("tessera_evictions_total", &[("space", "host")])
                .unwrap_or(0.0);
            if evicted > 0.0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(evicted > 0.0, "no host evictions counted");
        assert!(path.is_dir());
        drop(a);
        rt.wait_all().unwrap();
        assert_eq!(
            rt.host_usage().on_disk,
            0,
            "spill files outlived their tiles"
        );
        (r, usage, path)
    });
    assert!(r < 1e-14, "residual {r:e}");
    assert!(usage.peak <= budget, "{usage:?}");
    assert!(usage.spilled > matrix_bytes, "{usage:?}");
    assert!(usage.loaded > 0, "{usage:?}");
    assert!(!path.exists(), "the spill directory outlived the runtime");
}

#[test]
fn the_smallest_feasible_budget_runs_without_deadlock() {
    // Each gemm needs exactly three 4 KiB tiles; two workers compete for
    // a budget that holds one gemm's tiles and no more.
    let shape = TileShape::new(16, 32);
    let bytes: u64 = 16 * 32 * 8;
    let rt = runtime(3 * bytes, 2);
    let sum = within_a_minute(move || {
        let a: Vec<_> = (0..12)
            .map(|i| rt.tile(TileData::F64(vec![i as f64; 512]), shape).unwrap())
            .collect();
        let b = rt
            .tile(TileData::F64(vec![1.0; 32 * 16]), TileShape::new(32, 16))
            .unwrap();
        let c: Vec<_> = (0..12)
            .map(|_| {
                rt.tile(TileData::F64(vec![0.0; 256]), TileShape::new(16, 16))
                    .unwrap()
            })
            .collect();
        for round in 0..3 {
            for (i, ci) in c.iter().enumerate() {
                let j = (i + round) % 12;
                rt.submit(
                    Task::op(Op::gemm(1.0, 1.0))
                        .read(&a[j])
                        .read(&b)
                        .read_write(ci),
                )
                .unwrap();
            }
        }
        rt.wait_all().unwrap();
        assert!(rt.host_usage().peak <= 3 * bytes);
        c.iter()
            .map(|t| rt.fetch(t).unwrap().get(16, 0, 0))
            .sum::<f64>()
    });
    // c_i = 32 · (a_i + a_{i+1} + a_{i+2}), summed over i: 32 · 3 · Σ i.
    assert_eq!(sum, 32.0 * 3.0 * 66.0);
}

#[test]
fn a_task_larger_than_the_budget_is_refused_at_submission() {
    let rt = runtime(10_000, 1);
    let shape = TileShape::new(30, 30); // 7200 bytes each
    let a = rt.tile(TileData::F64(vec![1.0; 900]), shape).unwrap();
    let c = rt.tile(TileData::F64(vec![1.0; 900]), shape).unwrap();
    let err = rt
        .submit(Task::op(Op::Axpy { alpha: 1.0 }).read(&a).read_write(&c))
        .unwrap_err();
    assert!(
        matches!(
            err,
            RuntimeError::WorkingSet {
                needed: 14400,
                budget: 10_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("14400 bytes"), "{err}");
    // Either tile alone still works.
    assert_eq!(rt.fetch(&a).unwrap().get(30, 1, 1), 1.0);
}

#[test]
fn a_corrupted_spill_file_fails_the_task_not_the_runtime() {
    let shape = TileShape::new(32, 32);
    let rt = runtime(3 * 8192, 1);
    let tiles: Vec<_> = (0..6)
        .map(|i| rt.tile(TileData::F64(vec![i as f64; 1024]), shape).unwrap())
        .collect();
    let usage = rt.host_usage();
    assert!(usage.on_disk >= 3 * 8192, "{usage:?}");
    // Flip a byte in every complete spill file (`.bin`); one the
    // background write-ahead is still writing has a `.part` name and
    // belongs to a tile not in this list.
    let spilled: Vec<_> = tiles.iter().filter(|t| t.is_spilled()).collect();
    assert!(!spilled.is_empty());
    let mut flipped = 0;
    for entry in std::fs::read_dir(usage.spill_path.unwrap()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("bin") {
            continue;
        }
        let mut raw = std::fs::read(&path).unwrap();
        assert_eq!(raw.len(), 8192, "a .bin spill file is always whole");
        flipped += 1;
        raw[100] ^= 0xff;
        std::fs::write(&path, raw).unwrap();
    }
    assert!(
        flipped >= spilled.len(),
        "{flipped} files for {} tiles",
        spilled.len()
    );
    let err = rt.fetch(spilled[0]).unwrap_err().to_string();
    assert!(err.contains("corrupted"), "{err}");
    // The runtime runs on: a new tile computes.
    let fresh = rt.tile(TileData::F64(vec![2.0; 1024]), shape).unwrap();
    assert_eq!(rt.fetch(&fresh).unwrap().get(32, 3, 3), 2.0);
}

#[test]
fn an_unusable_spill_directory_is_a_clear_error_at_start() {
    let err = Runtime::builder()
        .cpu_workers(1)
        .spill_dir("/nonexistent/spill")
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("/nonexistent/spill") && err.contains("writable"),
        "{err}"
    );
}

#[test]
fn tiles_are_written_ahead_in_the_background_and_never_read_back_stale() {
    let shape = TileShape::new(32, 32);
    let bytes: u64 = 32 * 32 * 8;
    let rt = runtime(10 * bytes, 1);
    // 9 tiles: 90% of the budget, past the write-ahead mark, no eviction.
    let tiles: Vec<_> = (0..9)
        .map(|i| rt.tile(TileData::F64(vec![i as f64; 1024]), shape).unwrap())
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tiles.iter().filter(|t| t.is_spilled()).count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing written ahead"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let usage = rt.host_usage();
    assert_eq!(
        usage.in_ram,
        9 * bytes,
        "writing ahead must not evict: {usage:?}"
    );
    assert!(usage.spilled >= 2 * bytes);
    // Change every tile: their copies on disk are stale from now on.
    for t in &tiles {
        rt.submit(
            Task::closure("bump", |ctx| {
                if let Some(TileData::F64(v)) = ctx.tile_mut(0) {
                    v.iter_mut().for_each(|x| *x += 100.0);
                }
                Ok(())
            })
            .read_write(t),
        )
        .unwrap();
    }
    rt.wait_all().unwrap();
    // Push them all out and read them back: the new values, never the old.
    let more: Vec<_> = (0..10)
        .map(|_| rt.tile(TileData::F64(vec![-1.0; 1024]), shape).unwrap())
        .collect();
    for (i, t) in tiles.iter().enumerate() {
        assert_eq!(
            rt.fetch(t).unwrap().get(32, 5, 5),
            i as f64 + 100.0,
            "tile {i}"
        );
    }
    drop(more);
}

#[test]
fn a_cholesky_spilling_to_disk_goes_in_submission_order_and_reads_half_as_much() {
    // 16 × 16 tiles of 8 KiB (136 stored) through a host budget of 32
    // tiles. By priority the factorisation read 1,195 – 1,256 tiles back
    // from disk (before this order existed); in submission order 590 –
    // 650.
    let rt = runtime(32 * 8192, 2);
    let (r, usage) = within_a_minute(move || {
        let gen = SpdMatrix { n: 512, seed: 6 };
        let a = TiledMatrix::generate(&rt, "A", 512, 32, DType::F64, gen).unwrap();
        cholesky(&rt, &a).unwrap();
        rt.wait_all().unwrap();
        let usage = rt.host_usage();
        (residual(&rt, &a, gen).unwrap(), usage)
    });
    assert!(r < 1e-14, "residual {r:e}");
    let loaded = usage.loaded / 8192;
    assert!(
        (136..900).contains(&loaded),
        "{loaded} tiles read back: {usage:?}"
    );
}
