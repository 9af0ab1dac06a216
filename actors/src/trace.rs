//! Trace files: every completed task as a span on its processor, in the
//! Chrome trace event format, which Perfetto (ui.perfetto.dev) and
//! chrome://tracing open. The metrics actor collects the spans and writes
//! the file when the runtime shuts down.

use std::path::PathBuf;
use tessera_core::OpName;

/// One completed task.
struct Span {
    task: u64,
    op: OpName,
    processor: usize,
    start_us: f64,
    dur_us: f64,
}

/// The spans of one run, and where they go.
pub(crate) struct TraceBuffer {
    path: PathBuf,
    processors: Vec<String>,
    spans: Vec<Span>,
}

impl TraceBuffer {
    pub fn new(path: PathBuf, processors: Vec<String>) -> Self {
        TraceBuffer {
            path,
            processors,
            spans: Vec::new(),
        }
    }

    pub fn record(&mut self, task: u64, op: OpName, processor: usize, start_us: f64, dur_us: f64) {
        self.spans.push(Span {
            task,
            op,
            processor,
            start_us,
            dur_us,
        });
    }

    /// Writes the file: one thread per processor, named, then the spans.
    pub fn write(&self) -> Result<(), String> {
        let mut events: Vec<serde_json::Value> = self
            .processors
            .iter()
            .enumerate()
            .map(|(i, name)| {
                serde_json::json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": i,
                                   "args": {"name": name}})
            })
            .collect();
        events.extend(self.spans.iter().map(|s| {
            serde_json::json!({"name": s.op.as_str(), "cat": "task", "ph": "X", "pid": 1,
                               "tid": s.processor, "ts": s.start_us, "dur": s.dur_us,
                               "args": {"task": s.task}})
        }));
        let text = serde_json::json!({"traceEvents": events, "displayTimeUnit": "ms"}).to_string();
        let tmp = self.path.with_extension("partial");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| format!("writing the trace {}: {e}", self.path.display()))
    }
}
