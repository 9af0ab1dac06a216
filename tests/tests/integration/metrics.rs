//! The `/metrics` endpoint, scraped over HTTP and parsed.

use std::net::TcpListener;
use tessera::{Op, Runtime, RuntimeError, Task, TileData, TileShape};
use tessera_tests::{http_get, parse_exposition};

#[test]
fn scrape_shows_task_counts_durations_and_memory() {
    let rt = Runtime::builder()
        .cpu_workers(2)
        .metrics("127.0.0.1:0")
        .build()
        .unwrap();
    let addr = rt.metrics_addr().expect("serving");
    let t = rt
        .tile(TileData::F64(vec![4.0]), TileShape::new(1, 1))
        .unwrap();
    rt.submit(Task::op(Op::Potrf).read_write(&t)).unwrap();
    for _ in 0..50 {
        rt.spawn(|| {}).unwrap();
    }
    let bad = rt
        .submit(Task::closure("bad", |_| Err("no".into())))
        .unwrap();
    rt.wait_all().unwrap();
    assert!(rt.wait(&bad).is_err());
    // Events reach the metrics actor asynchronously: poll briefly.
    let mut text = String::new();
    for _ in 0..100 {
        let (status, body) = http_get(addr, "/metrics").unwrap();
        assert_eq!(status, 200);
        text = body;
        let e = parse_exposition(&text).unwrap();
        if e.sum("tessera_tasks_completed_total") >= 51.0
            && e.sum("tessera_tasks_failed_total") >= 1.0
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let e = parse_exposition(&text).unwrap();
    assert_eq!(
        e.types
            .get("tessera_tasks_completed_total")
            .map(String::as_str),
        Some("counter")
    );
    assert_eq!(
        e.types
            .get("tessera_task_duration_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    assert_eq!(
        e.types.get("tessera_memory_used_bytes").map(String::as_str),
        Some("gauge")
    );
    assert_eq!(e.sum("tessera_tasks_submitted_total"), 52.0);
    assert_eq!(
        e.value("tessera_tasks_submitted_total", &[("op", "potrf")]),
        Some(1.0)
    );
    assert_eq!(e.sum("tessera_tasks_completed_total"), 51.0);
    assert_eq!(
        e.value("tessera_tasks_failed_total", &[("op", "closure")]),
        Some(1.0)
    );
    let potrf_count = e.value("tessera_task_duration_seconds_count", &[("op", "potrf")]);
    assert_eq!(potrf_count, Some(1.0));
    assert_eq!(
        e.value("tessera_memory_used_bytes", &[("space", "host")]),
        Some(8.0)
    );
    assert!(e
        .value("tessera_processor_queued_tasks", &[("processor", "cpu1")])
        .is_some());
    let (status, _) = http_get(addr, "/other").unwrap();
    assert_eq!(status, 404);
}

#[test]
fn a_metrics_port_in_use_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = Runtime::builder()
        .metrics(&addr)
        .build()
        .err()
        .expect("must fail");
    assert!(matches!(err, RuntimeError::MetricsBind { .. }), "{err}");
    assert!(err.to_string().contains(&addr), "{err}");
}

#[test]
fn the_endpoint_stops_with_the_runtime() {
    let rt = Runtime::builder()
        .cpu_workers(1)
        .metrics("127.0.0.1:0")
        .build()
        .unwrap();
    let addr = rt.metrics_addr().unwrap();
    drop(rt);
    // The HTTP server's accept thread closes its socket just after the
    // runtime is gone; the port must be free again within moments.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match TcpListener::bind(addr) {
            Ok(_) => break,
            Err(e) if std::time::Instant::now() > deadline => panic!("port still in use: {e}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
}
