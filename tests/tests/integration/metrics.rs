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
    // Busy time per processor adds up the task durations.
    let busy = e.sum("tessera_processor_busy_seconds_total");
    let durations = e.sum("tessera_task_duration_seconds_sum");
    assert!(
        busy > 0.0 && (busy - durations).abs() < 1e-9,
        "{busy} vs {durations}"
    );
    // Per stream too: each processor's streams add up to its busy time
    // (a CPU worker has one, stream 0).
    let streams: Vec<_> = e
        .samples
        .iter()
        .filter(|s| s.name == "tessera_stream_busy_seconds_total")
        .collect();
    assert!(!streams.is_empty());
    for s in &streams {
        assert_eq!(s.labels.get("stream").map(String::as_str), Some("0"));
        let proc = s.labels["processor"].as_str();
        let whole = e
            .value(
                "tessera_processor_busy_seconds_total",
                &[("processor", proc)],
            )
            .unwrap();
        assert!(
            (s.value - whole).abs() < 1e-9,
            "{proc}: {} vs {whole}",
            s.value
        );
    }
    assert_eq!(
        e.types
            .get("tessera_scheduler_dispatch_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    assert!(e.sum("tessera_scheduler_dispatch_seconds_count") >= 1.0);
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

#[test]
fn a_trace_file_has_one_span_per_completed_task_and_no_overlap_on_a_processor() {
    let path = std::env::temp_dir().join(format!("tessera-trace-{}.json", std::process::id()));
    let completed = {
        let rt = tessera::Runtime::builder()
            .cpu_workers(2)
            .devices(&["cpu"])
            .trace(&path)
            .build()
            .unwrap();
        let gen = tessera::linalg::SpdMatrix { n: 256, seed: 5 };
        let a = tessera::linalg::TiledMatrix::generate(&rt, "A", 256, 64, tessera::DType::F64, gen)
            .unwrap();
        tessera::linalg::cholesky(&rt, &a).unwrap();
        rt.wait_all().unwrap();
        let done = rt.progress().completed;
        rt.shutdown().unwrap();
        done
    };
    let text = std::fs::read_to_string(&path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let events = json["traceEvents"].as_array().unwrap();
    let spans: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(spans.len() as u64, completed);
    let names: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "M")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["cpu0", "cpu1"]);
    assert_eq!(spans.iter().filter(|s| s["name"] == "potrf").count(), 4);
    // A CPU processor runs one task at a time: its spans never overlap.
    for tid in 0..2 {
        let mut mine: Vec<(f64, f64)> = spans
            .iter()
            .filter(|s| s["tid"] == tid)
            .map(|s| (s["ts"].as_f64().unwrap(), s["dur"].as_f64().unwrap()))
            .collect();
        mine.sort_by(|a, b| a.0.total_cmp(&b.0));
        for w in mine.windows(2) {
            assert!(
                w[0].0 + w[0].1 <= w[1].0 + 1.0,
                "overlap on cpu{tid}: {w:?}"
            );
        }
    }
    // The last potrf starts after the first one ends (a dependency chain).
    let potrf: Vec<(f64, f64)> = spans
        .iter()
        .filter(|s| s["name"] == "potrf")
        .map(|s| (s["ts"].as_f64().unwrap(), s["dur"].as_f64().unwrap()))
        .collect();
    let first_end = potrf
        .iter()
        .map(|p| p.0 + p.1)
        .fold(f64::INFINITY, f64::min);
    let last_start = potrf.iter().map(|p| p.0).fold(0.0, f64::max);
    assert!(last_start >= first_end);
    std::fs::remove_file(path).unwrap();
}

/// A real Prometheus server scrapes a running runtime; its query API
/// then has our series, with the values the runtime reports.
#[test]
fn a_real_prometheus_scrapes_the_series() {
    let rt = Runtime::builder()
        .cpu_workers(2)
        .devices(&["cpu"])
        .policy("metaheuristic")
        .metrics("127.0.0.1:0")
        .build()
        .unwrap();
    let target = rt.metrics_addr().expect("serving");
    let Some(prom) = tessera_tests::PrometheusServer::start(target) else {
        return;
    };
    for _ in 0..40 {
        rt.spawn(|| {}).unwrap();
    }
    rt.wait_all().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let completed = loop {
        let answer = prom.query("sum(tessera_tasks_completed_total)");
        assert_eq!(answer["status"], "success", "{answer}");
        let value = answer["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok());
        match value {
            Some(v) if v >= 40.0 => break v,
            _ => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "prometheus never saw the tasks: {answer}"
                );
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        }
    };
    assert_eq!(completed, 40.0);
    // A histogram's buckets and the scrape target's health arrived too.
    let buckets = prom.query("tessera_task_duration_seconds_bucket");
    assert!(
        buckets["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{buckets}"
    );
    let up = prom.query("up{job=\"tessera\"}");
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
}
