//! The run recorder: every task, transfer, memory sample and scheduling
//! decision of a run, in an SQLite file that `tessera query`, `tessera
//! trace` and `tessera report` read afterwards.
//!
//! The metrics actor turns the events it already collects into rows and
//! hands them, in batches, to a writer thread that owns the connection and
//! writes one transaction per batch (coalescing what queued up meanwhile).
//! The queue between them is bounded, so a run of millions of tasks holds
//! at most `QUEUE_BATCHES` batches in memory; when the writer cannot keep
//! up, rows are dropped and counted (in `meta.rows_dropped`) rather than
//! slowing the run. Recording never stops a run: a file that cannot be
//! created, a full disk or any other write error prints one warning and the
//! run goes on without it.
//!
//! Times are microseconds since the runtime started. The schema carries a
//! version (`PRAGMA user_version` and `meta.schema_version`); [`RunDb`]
//! refuses files that are not Tessera runs or come from a newer schema.

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OpenFlags};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The schema this build writes and reads.
/// A recorded decision: (µs since the start, mode, tasks, seconds it
/// took, whether it fell back).
pub type DecisionRow = (f64, String, u64, f64, bool);

pub const SCHEMA_VERSION: i64 = 1;
/// `meta.format` of every run file.
const FORMAT: &str = "tessera-run";
/// Batches queued for the writer at most.
const QUEUE_BATCHES: usize = 256;
/// Rows written per transaction at most.
const ROWS_PER_TRANSACTION: usize = 50_000;

const SCHEMA: &str = "
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE processors(
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL,
    space TEXT NOT NULL, gflops_f32 REAL NOT NULL, gflops_f64 REAL NOT NULL,
    bandwidth REAL NOT NULL);
CREATE TABLE tasks(
    id INTEGER PRIMARY KEY, op TEXT NOT NULL, processor INTEGER, stream INTEGER,
    status TEXT NOT NULL, submitted_us REAL, ready_us REAL, scheduled_us REAL,
    started_us REAL, inputs_ready_us REAL, finished_us REAL, flops REAL NOT NULL,
    bytes_read INTEGER NOT NULL, bytes_written INTEGER NOT NULL);
CREATE TABLE transfers(
    id INTEGER PRIMARY KEY, src TEXT NOT NULL, dst TEXT NOT NULL,
    bytes INTEGER NOT NULL, start_us REAL NOT NULL, end_us REAL NOT NULL);
CREATE TABLE memory(
    t_us REAL NOT NULL, space TEXT NOT NULL, used INTEGER NOT NULL,
    budget INTEGER NOT NULL);
CREATE TABLE queues(
    t_us REAL NOT NULL, name TEXT NOT NULL, tasks INTEGER NOT NULL);
CREATE TABLE decisions(
    t_us REAL NOT NULL, mode TEXT NOT NULL, tasks INTEGER NOT NULL,
    seconds REAL NOT NULL, fell_back INTEGER NOT NULL);
";

/// One recorded fact.
#[derive(Debug, Clone)]
pub(crate) enum Row {
    Task(TaskRow),
    Transfer(TransferRow),
    Memory {
        t_us: f64,
        space: String,
        used: u64,
        budget: u64,
    },
    /// Ready tasks (`name` = `ready`) or tasks queued on a processor.
    Queue {
        t_us: f64,
        name: String,
        tasks: usize,
    },
    Decision {
        t_us: f64,
        mode: &'static str,
        tasks: usize,
        seconds: f64,
        fell_back: bool,
    },
}

/// A task's life, as recorded. Times are `None` where the task never got
/// there (cancelled before it ran, say).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TaskRow {
    pub id: u64,
    pub op: String,
    pub processor: Option<usize>,
    /// The processor's stream it ran on (0 on a CPU), if it ran.
    pub stream: Option<u32>,
    /// `done` or `failed`.
    pub status: String,
    pub submitted_us: Option<f64>,
    pub ready_us: Option<f64>,
    pub scheduled_us: Option<f64>,
    pub started_us: Option<f64>,
    /// When its inputs were in place on its processor (after copies in
    /// and reads back from disk); between started and finished.
    pub inputs_ready_us: Option<f64>,
    pub finished_us: Option<f64>,
    pub flops: f64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

/// A copy between memory spaces (`host`, `disk`, a device name).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TransferRow {
    pub src: String,
    pub dst: String,
    pub bytes: u64,
    pub start_us: f64,
    pub end_us: f64,
}

/// A processor as recorded.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProcessorRow {
    pub id: usize,
    pub name: String,
    pub kind: String,
    pub space: String,
    pub gflops_f32: f64,
    pub gflops_f64: f64,
    /// Bytes/s of copies into its memory.
    pub bandwidth: f64,
}

/// The writing side: owned by the metrics actor.
pub(crate) struct Recorder {
    tx: Option<Sender<Vec<Row>>>,
    writer: Option<JoinHandle<()>>,
    dropped: Arc<AtomicU64>,
    path: PathBuf,
}

impl Recorder {
    /// Creates the run file at `path` (replacing an earlier Tessera run
    /// there, refusing any other file) and starts its writer.
    pub fn create(path: &Path, processors: &[ProcessorRow]) -> Result<Recorder, String> {
        if path.exists() {
            RunDb::open(path).map_err(|e| {
                format!(
                    "{} exists and is not a Tessera run file, so it is left alone ({e})",
                    path.display()
                )
            })?;
            std::fs::remove_file(path)
                .map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
        }
        let conn =
            Connection::open(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let setup = || -> rusqlite::Result<()> {
            // The file is scratch until the run ends: no fsync per batch.
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "OFF")?;
            conn.execute_batch(SCHEMA)?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            for (k, v) in [
                ("format", FORMAT.to_string()),
                ("schema_version", SCHEMA_VERSION.to_string()),
                ("tessera_version", env!("CARGO_PKG_VERSION").to_string()),
                ("started_unix_s", now.to_string()),
                ("rows_dropped", "0".to_string()),
            ] {
                conn.execute("INSERT INTO meta VALUES (?1, ?2)", params![k, v])?;
            }
            for p in processors {
                conn.execute(
                    "INSERT INTO processors VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        p.id as i64,
                        p.name,
                        p.kind,
                        p.space,
                        p.gflops_f32,
                        p.gflops_f64,
                        p.bandwidth
                    ],
                )?;
            }
            Ok(())
        };
        setup().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let (tx, rx) = bounded(QUEUE_BATCHES);
        let dropped = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&dropped);
        let shown = path.display().to_string();
        let writer = std::thread::Builder::new()
            .name("tessera-record".into())
            .spawn(move || write_rows(conn, &rx, &counted, &shown))
            .map_err(|e| format!("cannot start the recorder: {e}"))?;
        Ok(Recorder {
            tx: Some(tx),
            writer: Some(writer),
            dropped,
            path: path.to_path_buf(),
        })
    }

    /// Queues `rows` for writing; drops (and counts) them if the writer is
    /// that far behind.
    pub fn send(&self, rows: Vec<Row>) {
        if rows.is_empty() {
            return;
        }
        let Some(tx) = &self.tx else { return };
        match tx.try_send(rows) {
            Ok(()) => {}
            Err(TrySendError::Full(rows) | TrySendError::Disconnected(rows)) => {
                self.dropped.fetch_add(rows.len() as u64, Ordering::Relaxed);
            }
        }
    }

    /// Writes what is queued and closes the file.
    pub fn finish(&mut self) {
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            eprintln!(
                "tessera: warning: the recorder fell behind and dropped {dropped} rows of {}",
                self.path.display()
            );
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The writer thread: one transaction per batch of batches. After the
/// first error it warns once and only drains the queue.
fn write_rows(mut conn: Connection, rx: &Receiver<Vec<Row>>, dropped: &AtomicU64, shown: &str) {
    // The run comes first: on a machine with as many workers as cores,
    // the writer takes what they leave. (On Linux a thread has its own
    // nice value; elsewhere this lowers nothing, which is harmless.)
    // SAFETY: setpriority on the calling thread has no memory effects.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
    let mut failed = false;
    while let Ok(first) = rx.recv() {
        let mut rows = first;
        while rows.len() < ROWS_PER_TRANSACTION {
            match rx.try_recv() {
                Ok(more) => rows.extend(more),
                Err(_) => break,
            }
        }
        if failed {
            dropped.fetch_add(rows.len() as u64, Ordering::Relaxed);
            continue;
        }
        if let Err(e) = insert(&mut conn, &rows) {
            eprintln!("tessera: warning: recording to {shown} stopped, the run goes on: {e}");
            failed = true;
            dropped.fetch_add(rows.len() as u64, Ordering::Relaxed);
        }
    }
    if !failed {
        let total = dropped.load(Ordering::Relaxed).to_string();
        let end = conn
            .execute(
                "UPDATE meta SET value = ?1 WHERE key = 'rows_dropped'",
                params![total],
            )
            .and_then(|_| conn.pragma_update(None, "wal_checkpoint", "TRUNCATE"));
        if let Err(e) = end {
            eprintln!("tessera: warning: finishing {shown}: {e}");
        }
    }
}

fn insert(conn: &mut Connection, rows: &[Row]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut task = tx.prepare_cached(
            "INSERT OR REPLACE INTO tasks VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?;
        let mut transfer = tx.prepare_cached(
            "INSERT INTO transfers(src, dst, bytes, start_us, end_us) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut memory = tx.prepare_cached("INSERT INTO memory VALUES (?1, ?2, ?3, ?4)")?;
        let mut decision =
            tx.prepare_cached("INSERT INTO decisions VALUES (?1, ?2, ?3, ?4, ?5)")?;
        let mut queue = tx.prepare_cached("INSERT INTO queues VALUES (?1, ?2, ?3)")?;
        for row in rows {
            match row {
                Row::Task(t) => {
                    task.execute(params![
                        t.id as i64,
                        t.op,
                        t.processor.map(|p| p as i64),
                        t.stream,
                        t.status,
                        t.submitted_us,
                        t.ready_us,
                        t.scheduled_us,
                        t.started_us,
                        t.inputs_ready_us,
                        t.finished_us,
                        t.flops,
                        t.bytes_read as i64,
                        t.bytes_written as i64
                    ])?;
                }
                Row::Transfer(t) => {
                    transfer.execute(params![
                        t.src,
                        t.dst,
                        t.bytes as i64,
                        t.start_us,
                        t.end_us
                    ])?;
                }
                Row::Memory {
                    t_us,
                    space,
                    used,
                    budget,
                } => {
                    memory.execute(params![
                        t_us,
                        space,
                        i64::try_from(*used).unwrap_or(i64::MAX),
                        i64::try_from(*budget).unwrap_or(i64::MAX)
                    ])?;
                }
                Row::Queue { t_us, name, tasks } => {
                    queue.execute(params![t_us, name, *tasks as i64])?;
                }
                Row::Decision {
                    t_us,
                    mode,
                    tasks,
                    seconds,
                    fell_back,
                } => {
                    decision.execute(params![t_us, mode, *tasks as i64, seconds, fell_back])?;
                }
            }
        }
    }
    tx.commit()
}

/// The result of a query: column names and rows of JSON values.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

impl QueryResult {
    /// An aligned text table.
    pub fn to_table(&self) -> String {
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|v| match v {
                        serde_json::Value::Null => "NULL".to_string(),
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Number(n) => match n.as_f64() {
                            Some(f) if n.is_f64() => format!("{f:.6}")
                                .trim_end_matches('0')
                                .trim_end_matches('.')
                                .to_string(),
                            _ => n.to_string(),
                        },
                        other => other.to_string(),
                    })
                    .collect()
            })
            .collect();
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|c| {
                cells
                    .iter()
                    .map(|r| r[c].chars().count())
                    .chain([self.columns[c].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |vals: &[String]| -> String {
            vals.iter()
                .zip(&widths)
                .map(|(v, w)| format!("{v:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        let mut out = line(&self.columns);
        out.push('\n');
        for r in &cells {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }
}

/// A recorded run, opened read-only.
pub struct RunDb {
    conn: Connection,
}

/// Named queries of `tessera query`.
pub const NAMED_QUERIES: [(&str, &str, &str); 3] = [
    (
        "top-ops",
        "time per op: tasks, total and mean seconds, GFLOP/s",
        "SELECT op, COUNT(*) AS tasks,
                SUM(finished_us - started_us) / 1e6 AS seconds,
                AVG(finished_us - started_us) AS mean_us,
                SUM(flops) / NULLIF(SUM(finished_us - started_us), 0) / 1e3 AS gflops
         FROM tasks WHERE status = 'done' GROUP BY op ORDER BY seconds DESC",
    ),
    (
        "idle",
        "per processor: busy and idle time over the run, utilisation",
        "WITH span AS (SELECT MIN(started_us) AS t0, MAX(finished_us) AS t1
                       FROM tasks WHERE status = 'done')
         SELECT p.name AS processor, COUNT(t.id) AS tasks,
                COALESCE(SUM(t.finished_us - t.started_us), 0) / 1e6 AS busy_s,
                ((span.t1 - span.t0) - COALESCE(SUM(t.finished_us - t.started_us), 0)) / 1e6 AS idle_s,
                COALESCE(SUM(t.finished_us - t.started_us), 0) / NULLIF(span.t1 - span.t0, 0) AS utilisation
         FROM processors p CROSS JOIN span
         LEFT JOIN tasks t ON t.processor = p.id AND t.status = 'done'
         GROUP BY p.id ORDER BY p.id",
    ),
    (
        "transfers",
        "per link: copies, bytes, busy seconds, GB/s",
        "SELECT src, dst, COUNT(*) AS copies, SUM(bytes) AS bytes,
                SUM(end_us - start_us) / 1e6 AS seconds,
                SUM(bytes) / NULLIF(SUM(end_us - start_us), 0) / 1e3 AS gb_per_s
         FROM transfers GROUP BY src, dst ORDER BY bytes DESC",
    ),
];

/// Errors reading a run file.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}")]
    NotARun(String),
    #[error("{path} has schema version {found}; this tessera reads up to {SCHEMA_VERSION}: use a newer tessera")]
    NewerSchema { path: String, found: i64 },
    #[error("query failed: {0}")]
    Query(String),
}

impl RunDb {
    /// Opens a run file, checking that it is one and that this build reads
    /// its schema.
    pub fn open(path: &Path) -> Result<RunDb, RecordError> {
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(RecordError::NotARun(format!("{shown}: no such file")));
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| RecordError::NotARun(format!("{shown}: {e}")))?;
        let format: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| {
                r.get(0)
            })
            .ok();
        if format.as_deref() != Some(FORMAT) {
            return Err(RecordError::NotARun(format!(
                "{shown} is not a Tessera run file (record one with --record)"
            )));
        }
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| RecordError::NotARun(format!("{shown}: {e}")))?;
        if found > SCHEMA_VERSION {
            return Err(RecordError::NewerSchema { path: shown, found });
        }
        Ok(RunDb { conn })
    }

    /// Runs one SQL statement (read-only: the file is opened so).
    pub fn query(&self, sql: &str) -> Result<QueryResult, RecordError> {
        let q = |e: rusqlite::Error| RecordError::Query(e.to_string());
        let mut stmt = self.conn.prepare(sql).map_err(q)?;
        let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        let n = columns.len();
        let rows = stmt
            .query_map([], |r| {
                (0..n)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            ValueRef::Null => serde_json::Value::Null,
                            ValueRef::Integer(v) => v.into(),
                            ValueRef::Real(v) => serde_json::Number::from_f64(v)
                                .map_or(serde_json::Value::Null, serde_json::Value::Number),
                            ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
                            ValueRef::Blob(b) => format!("<{} bytes>", b.len()).into(),
                        })
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(q)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(q)?;
        Ok(QueryResult { columns, rows })
    }

    /// One of [`NAMED_QUERIES`] by name.
    pub fn named(&self, name: &str) -> Result<QueryResult, RecordError> {
        let (_, _, sql) = NAMED_QUERIES
            .iter()
            .find(|(n, _, _)| *n == name)
            .ok_or_else(|| RecordError::Query(format!("no named query `{name}`")))?;
        self.query(sql)
    }

    pub fn processors(&self) -> Result<Vec<ProcessorRow>, RecordError> {
        self.rows(
            "SELECT id, name, kind, space, gflops_f32, gflops_f64, bandwidth FROM processors ORDER BY id",
            |r| {
                Ok(ProcessorRow {
                    id: r.get::<_, i64>(0)? as usize,
                    name: r.get(1)?,
                    kind: r.get(2)?,
                    space: r.get(3)?,
                    gflops_f32: r.get(4)?,
                    gflops_f64: r.get(5)?,
                    bandwidth: r.get(6)?,
                })
            },
        )
    }

    /// Every task, in id order.
    pub fn tasks(&self) -> Result<Vec<TaskRow>, RecordError> {
        self.rows(
            "SELECT id, op, processor, stream, status, submitted_us, ready_us, scheduled_us, started_us,
                    inputs_ready_us, finished_us, flops, bytes_read, bytes_written
             FROM tasks ORDER BY id",
            |r| {
                Ok(TaskRow {
                    id: r.get::<_, i64>(0)? as u64,
                    op: r.get(1)?,
                    processor: r.get::<_, Option<i64>>(2)?.map(|p| p as usize),
                    stream: r.get(3)?,
                    status: r.get(4)?,
                    submitted_us: r.get(5)?,
                    ready_us: r.get(6)?,
                    scheduled_us: r.get(7)?,
                    started_us: r.get(8)?,
                    inputs_ready_us: r.get(9)?,
                    finished_us: r.get(10)?,
                    flops: r.get(11)?,
                    bytes_read: r.get::<_, i64>(12)? as u64,
                    bytes_written: r.get::<_, i64>(13)? as u64,
                })
            },
        )
    }

    pub fn transfers(&self) -> Result<Vec<TransferRow>, RecordError> {
        self.rows(
            "SELECT src, dst, bytes, start_us, end_us FROM transfers ORDER BY start_us",
            |r| {
                Ok(TransferRow {
                    src: r.get(0)?,
                    dst: r.get(1)?,
                    bytes: r.get::<_, i64>(2)? as u64,
                    start_us: r.get(3)?,
                    end_us: r.get(4)?,
                })
            },
        )
    }

    /// Memory samples: (µs, space, bytes used, budget), in time order.
    pub fn memory(&self) -> Result<Vec<(f64, String, u64, u64)>, RecordError> {
        self.rows(
            "SELECT t_us, space, used, budget FROM memory ORDER BY t_us",
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get::<_, i64>(2)? as u64,
                    r.get::<_, i64>(3)? as u64,
                ))
            },
        )
    }

    /// Queue samples: (µs, `ready` or a processor, tasks), in time order.
    pub fn queues(&self) -> Result<Vec<(f64, String, u64)>, RecordError> {
        self.rows("SELECT t_us, name, tasks FROM queues ORDER BY t_us", |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
        })
    }

    /// Decisions, in time order.
    pub fn decisions(&self) -> Result<Vec<DecisionRow>, RecordError> {
        self.rows(
            "SELECT t_us, mode, tasks, seconds, fell_back FROM decisions ORDER BY t_us",
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get::<_, i64>(2)? as u64,
                    r.get(3)?,
                    r.get(4)?,
                ))
            },
        )
    }

    /// A `meta` value.
    pub fn meta(&self, key: &str) -> Option<String> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .ok()
    }

    fn rows<T>(
        &self,
        sql: &str,
        f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, RecordError> {
        let q = |e: rusqlite::Error| RecordError::Query(e.to_string());
        let mut stmt = self.conn.prepare(sql).map_err(q)?;
        let rows = stmt.query_map([], f).map_err(q)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(q)
    }
}

/// Chrome trace events of a run: a track per processor and stream, the
/// copies on a track per link with a flow arrow to the first task that
/// started after each ended on the destination, memory per space as
/// counters, decisions as instants.
pub fn trace_events(db: &RunDb) -> Result<serde_json::Value, RecordError> {
    let processors = db.processors()?;
    let tasks = db.tasks()?;
    let mut events = Vec::new();
    // A track per processor and stream (tid = processor * 100 + stream).
    let mut named: BTreeMap<usize, String> = BTreeMap::new();
    let mut done: Vec<_> = tasks
        .iter()
        .filter_map(|t| Some((t, t.processor?, t.started_us?, t.finished_us?)))
        .collect();
    done.sort_by(|a, b| a.2.total_cmp(&b.2));
    let mut first_task_on: Vec<(String, f64, u64, usize)> = Vec::new();
    for (t, p, start, end) in &done {
        let lane = t.stream.unwrap_or(0) as usize;
        let tid = p * 100 + lane;
        let pname = processors
            .get(*p)
            .map_or_else(|| format!("processor {p}"), |r| r.name.clone());
        named.entry(tid).or_insert_with(|| {
            if lane == 0 {
                pname.clone()
            } else {
                format!("{pname} stream {lane}")
            }
        });
        events.push(serde_json::json!({
            "name": t.op, "ph": "X", "pid": 1, "tid": tid, "ts": start, "dur": end - start,
            "args": {"task": t.id, "submitted_us": t.submitted_us, "ready_us": t.ready_us,
                     "scheduled_us": t.scheduled_us, "inputs_ready_us": t.inputs_ready_us, "bytes_read": t.bytes_read,
                     "bytes_written": t.bytes_written, "flops": t.flops},
        }));
        if let Some(space) = processors.get(*p).map(|r| r.space.clone()) {
            first_task_on.push((space, *start, t.id, tid));
        }
    }
    for (tid, name) in &named {
        events.push(serde_json::json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": name}}));
        events.push(serde_json::json!({"name": "thread_sort_index", "ph": "M", "pid": 1, "tid": tid, "args": {"sort_index": tid}}));
    }
    let mut links: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (i, c) in db.transfers()?.iter().enumerate() {
        let n = links.len();
        let link = *links.entry((c.src.clone(), c.dst.clone())).or_insert(n);
        let tid = 1_000_000 + link;
        events.push(serde_json::json!({
            "name": format!("{} → {}", c.src, c.dst), "ph": "X", "pid": 2, "tid": tid,
            "ts": c.start_us, "dur": (c.end_us - c.start_us).max(0.0),
            "args": {"bytes": c.bytes},
        }));
        // A flow from the copy to the first task on its destination that
        // started after it ended.
        if let Some((_, start, _, task_tid)) = first_task_on
            .iter()
            .filter(|(space, start, _, _)| *space == c.dst && *start >= c.end_us)
            .min_by(|a, b| a.1.total_cmp(&b.1))
        {
            events.push(serde_json::json!({"name": "copy", "cat": "transfer", "ph": "s", "id": i, "pid": 2, "tid": tid, "ts": c.end_us}));
            events.push(serde_json::json!({"name": "copy", "cat": "transfer", "ph": "f", "bp": "e", "id": i, "pid": 1, "tid": task_tid, "ts": start}));
        }
    }
    for ((src, dst), link) in &links {
        events.push(serde_json::json!({"name": "thread_name", "ph": "M", "pid": 2, "tid": 1_000_000 + link, "args": {"name": format!("{src} → {dst}")}}));
    }
    for (t, space, used, budget) in db.memory()? {
        events.push(
            serde_json::json!({"name": format!("memory {space}"), "ph": "C", "pid": 3, "ts": t,
                           "args": {"used": used, "budget": budget}}),
        );
    }
    for (t, mode, n, seconds, fell_back) in db.decisions()? {
        events.push(serde_json::json!({"name": format!("decision {mode}"), "ph": "i", "s": "p", "pid": 1, "tid": 0, "ts": t,
                           "args": {"tasks": n, "seconds": seconds, "fell_back": fell_back}}));
    }
    for (pid, name) in [(1, "processors"), (2, "copies"), (3, "memory")] {
        events.push(serde_json::json!({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": name}}));
    }
    Ok(serde_json::json!({ "traceEvents": events, "displayTimeUnit": "ms" }))
}
