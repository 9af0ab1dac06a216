//! Dropping a runtime joins every thread it started. This test counts the
//! process's threads by name, so it runs alone in its own binary.

use tessera::Runtime;

fn tessera_threads() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .filter(|name| name.starts_with("tessera-"))
        .count()
}

#[test]
fn dropping_the_runtime_joins_its_threads() {
    if std::fs::read_dir("/proc/self/task").is_err() {
        eprintln!("no /proc: cannot count threads here");
        return;
    }
    assert_eq!(tessera_threads(), 0);
    let rt = Runtime::builder()
        .cpu_workers(3)
        .metrics("127.0.0.1:0")
        .build()
        .unwrap();
    let h = rt.spawn(|| {}).unwrap();
    rt.wait(&h).unwrap();
    // 3 processors, the actor thread and the metrics HTTP thread at least.
    assert!(tessera_threads() >= 5, "{}", tessera_threads());
    drop(rt);
    assert_eq!(tessera_threads(), 0, "threads left after drop");
}
