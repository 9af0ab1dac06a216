//! Starting, embedding and stopping the runtime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tessera::{Runtime, RuntimeError, Task};

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
fn shutdown_is_idempotent_finishes_work_and_refuses_more() {
    let rt = Runtime::builder().cpu_workers(2).build().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    for _ in 0..1000 {
        let c = Arc::clone(&count);
        rt.spawn(move || {
            c.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    }
    rt.shutdown().unwrap();
    assert_eq!(count.load(Ordering::Relaxed), 1000, "submitted work finishes before shutdown");
    rt.shutdown().unwrap();
    assert!(matches!(rt.spawn(|| {}), Err(RuntimeError::ShutDown)));
}

#[test]
fn dropping_the_runtime_joins_its_threads() {
    // Other tests run runtimes in parallel threads of this process, so count
    // by thread name prefix inside one serialised section.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let rt = Runtime::builder().cpu_workers(3).build().unwrap();
    let h = rt.spawn(|| {}).unwrap();
    rt.wait(&h).unwrap();
    let during = tessera_threads();
    assert!(during >= 4, "3 processors and the actor threads: {during}");
    let before_drop = during;
    drop(rt);
    let after = tessera_threads();
    assert!(after + 4 <= before_drop, "threads left after drop: {after} (were {before_drop})");
}

#[test]
fn works_inside_a_tokio_application() {
    let tokio_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let total = tokio_rt.block_on(async {
        let rt = Runtime::builder().cpu_workers(2).build().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        for _ in 0..100 {
            let c = Arc::clone(&count);
            rt.spawn(move || {
                c.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
        }
        // Waiting blocks, so do it off the async workers.
        let rt = Arc::new(rt);
        let waiter = Arc::clone(&rt);
        tokio::task::spawn_blocking(move || waiter.wait_all()).await.unwrap().unwrap();
        count.load(Ordering::Relaxed)
    });
    assert_eq!(total, 100);
}

#[test]
fn handles_wait_for_tasks_that_already_finished() {
    let rt = Runtime::builder().cpu_workers(1).build().unwrap();
    let h = rt.submit(Task::closure("quick", |_| Ok(()))).unwrap();
    rt.wait_all().unwrap();
    rt.wait(&h).unwrap();
    rt.wait(&h).unwrap();
}
