//! Datasets in an S3-compatible object store, against a real server
//! (s3s-fs) on 127.0.0.1: reads, a streaming reduction, and the failures a
//! network store has.

use std::time::Duration;
use tessera::dataset::{npy_header, Dataset, Order};
use tessera::objects::ObjectStoreConfig;
use tessera::{DType, Runtime, Task};
use tessera_tests::{free_port, S3Server, S3_ACCESS_KEY, S3_SECRET_KEY};

fn config(endpoint: &str) -> ObjectStoreConfig {
    let mut c = ObjectStoreConfig::new(endpoint, "data", S3_ACCESS_KEY, S3_SECRET_KEY);
    c.retries = 1;
    c.timeout = Duration::from_secs(5);
    c
}

fn value(i: usize, j: usize) -> f64 {
    (i % 5) as f64 - 0.25 * j as f64
}

/// A row-major f64 `.npy` of `rows × cols` test values.
fn npy_bytes(rows: usize, cols: usize) -> Vec<u8> {
    let mut bytes = npy_header(DType::F64, rows, cols, Order::RowMajor);
    for i in 0..rows {
        for j in 0..cols {
            bytes.extend_from_slice(&value(i, j).to_le_bytes());
        }
    }
    bytes
}

#[test]
fn column_sums_over_an_object_match_and_stay_in_budget() {
    let Some(server) = S3Server::start("data") else {
        return;
    };
    let store = config(&server.endpoint).connect().unwrap();
    let (rows, cols) = (300, 40);
    store.put("arrays/a.npy", npy_bytes(rows, cols)).unwrap();
    let ds = Dataset::npy_object(&store, "arrays/a.npy").unwrap();
    assert_eq!((ds.rows, ds.cols, ds.order), (rows, cols, Order::RowMajor));
    let block_bytes = (cols * 32 * 8) as u64;
    let rt = Runtime::builder()
        .cpu_workers(2)
        .devices(&["cpu"])
        .host_memory(8 * block_bytes)
        .build()
        .unwrap();
    let sums = ds.line_sums(&rt, 32, 2).unwrap();
    // The result goes back to the bucket the same way and reads back whole.
    tessera::dataset::write_npy_object(&store, "results/sums.npy", &sums, cols, 1).unwrap();
    let back = Dataset::npy_object(&store, "results/sums.npy").unwrap();
    assert_eq!((back.rows, back.cols), (cols, 1));
    assert_eq!(back.read_block(0, 1).unwrap(), sums);
    for j in 0..cols {
        let want: f64 = (0..rows).map(|i| value(i, j)).sum();
        assert!((sums.get(cols, j, 0) - want).abs() < 1e-9, "column {j}");
    }
    assert!(rt.host_usage().peak <= 8 * block_bytes);
}

#[test]
fn a_store_that_is_down_is_a_clear_error() {
    let port = free_port();
    let store = config(&format!("http://127.0.0.1:{port}"))
        .connect()
        .unwrap();
    let start = std::time::Instant::now();
    let err = Dataset::npy_object(&store, "a.npy")
        .unwrap_err()
        .to_string();
    assert!(err.contains("s3://data/a.npy"), "{err}");
    // Retries are bounded: an error, not a hang.
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_server_dying_mid_read_fails_the_stream_without_a_partial_result() {
    let Some(mut server) = S3Server::start("data") else {
        return;
    };
    let store = config(&server.endpoint).connect().unwrap();
    store.put("b.npy", npy_bytes(200, 16)).unwrap();
    let ds = Dataset::npy_object(&store, "b.npy").unwrap();
    let rt = Runtime::builder()
        .cpu_workers(1)
        .devices(&["cpu"])
        .build()
        .unwrap();
    let mut seen = 0;
    let result = ds.for_each_block(&rt, 10, 1, |b, block| {
        if b == 3 {
            server.kill();
        }
        seen += 1;
        rt.submit(Task::closure("use", |_| Ok(())).read(&block))
    });
    let err = result.unwrap_err().to_string();
    assert!(err.contains("s3://data/b.npy"), "{err}");
    assert!(seen < 20, "the stream ran to the end on a dead server");
}

#[test]
fn wrong_credentials_and_short_objects_are_refused() {
    let Some(server) = S3Server::start("data") else {
        return;
    };
    let store = config(&server.endpoint).connect().unwrap();
    store.put("c.bin", vec![0u8; 100]).unwrap();
    let err = Dataset::raw_object(&store, "c.bin", DType::F64, 4, 4, Order::RowMajor)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("truncated") && err.contains("s3://data/c.bin"),
        "{err}"
    );
    let mut bad = config(&server.endpoint);
    bad.secret_key = "not-the-key".into();
    let err = Dataset::npy_object(&bad.connect().unwrap(), "c.bin")
        .unwrap_err()
        .to_string();
    assert!(err.contains("s3://data/c.bin"), "{err}");
}

#[test]
fn host_tiles_spill_to_a_bucket_and_their_objects_go_with_them() {
    let Some(server) = S3Server::start("data") else {
        return;
    };
    let store = config(&server.endpoint).connect().unwrap();
    let (n, tile) = (192, 32);
    let matrix_bytes = (n * (n + tile) / 2 * 8) as u64;
    let rt = Runtime::builder()
        .cpu_workers(2)
        .devices(&["cpu"])
        .host_memory(matrix_bytes / 4)
        .spill_to_store(store, "spill")
        .build()
        .unwrap();
    let gen = tessera::linalg::SpdMatrix { n, seed: 8 };
    let a = tessera::linalg::TiledMatrix::generate(&rt, "A", n, tile, DType::F64, gen).unwrap();
    tessera::linalg::cholesky(&rt, &a).unwrap();
    let r = tessera::linalg::residual(&rt, &a, gen).unwrap();
    assert!(r < 1e-14, "residual {r:e}");
    let usage = rt.host_usage();
    assert!(usage.spilled > 0 && usage.loaded > 0, "{usage:?}");
    assert!(usage.peak <= matrix_bytes / 4);
    assert!(usage.spill_path.unwrap().starts_with("s3://data/spill/"));
    // Objects exist while their tiles are out of RAM...
    let objects = |root: &std::path::Path| -> usize {
        fn walk(p: &std::path::Path) -> usize {
            std::fs::read_dir(p).map_or(0, |d| {
                d.filter_map(Result::ok)
                    .map(|e| {
                        let path = e.path();
                        if path.is_dir() {
                            walk(&path)
                        } else {
                            usize::from(path.extension().is_some_and(|x| x == "bin"))
                        }
                    })
                    .sum()
            })
        }
        walk(&root.join("data"))
    };
    assert!(objects(&server.root) > 0);
    // ... and go with them.
    drop(a);
    rt.shutdown().unwrap();
    assert_eq!(objects(&server.root), 0);
}
