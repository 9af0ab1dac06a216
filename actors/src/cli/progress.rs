//! A progress line on stderr while a long run goes on.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tessera::Runtime;

/// Prints `label: done/total tasks` every half second (every 2 s when
/// stderr is not a terminal) until dropped.
pub struct ProgressLine {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ProgressLine {
    pub fn start(rt: Arc<Runtime>, label: &'static str) -> ProgressLine {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let tty = std::io::stderr().is_terminal();
        let period = if tty {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(2)
        };
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut next = start + period;
            let mut printed = false;
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if Instant::now() < next {
                    continue;
                }
                next += period;
                let p = rt.progress();
                let done = p.completed + p.failed;
                let pct = if p.submitted > 0 {
                    100.0 * done as f64 / p.submitted as f64
                } else {
                    0.0
                };
                let line = format!(
                    "{label}: {done}/{} tasks ({pct:.0}%), {} failed, {:.1} s",
                    p.submitted,
                    p.failed,
                    start.elapsed().as_secs_f64()
                );
                if tty {
                    eprint!("\r{line}   ");
                } else {
                    eprintln!("{line}");
                }
                printed = true;
            }
            if printed && tty {
                eprintln!();
            }
        });
        ProgressLine {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
