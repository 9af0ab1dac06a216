//! Starting, embedding and stopping the runtime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tessera::{Runtime, RuntimeError, Task};

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
    assert_eq!(
        count.load(Ordering::Relaxed),
        1000,
        "submitted work finishes before shutdown"
    );
    rt.shutdown().unwrap();
    assert!(matches!(rt.spawn(|| {}), Err(RuntimeError::ShutDown)));
}

#[test]
fn works_inside_a_tokio_application() {
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
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
        tokio::task::spawn_blocking(move || waiter.wait_all())
            .await
            .unwrap()
            .unwrap();
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
