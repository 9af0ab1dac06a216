//! Run files: recording, queries, traces, reports and bad input.

use std::path::{Path, PathBuf};
use tessera::linalg::{cholesky, residual, SpdMatrix, TiledMatrix};
use tessera::record::{RecordError, RunDb, SCHEMA_VERSION};
use tessera::report::{render, CHARTS};
use tessera::{DType, Runtime};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessera-record-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A spilling Cholesky under the MILP policy, recorded to `db`; returns
/// the bytes the host tier says it spilled and read back.
fn recorded_cholesky(db: &Path, spill: &Path) -> (u64, u64) {
    let rt = Runtime::builder()
        .cpu_workers(2)
        .devices(&["cpu"])
        .host_memory(300_000)
        .spill_dir(spill)
        .policy("milp")
        .record(db)
        .build()
        .unwrap();
    let gen = SpdMatrix { n: 384, seed: 3 };
    let a = TiledMatrix::generate(&rt, "A", 384, 64, DType::F64, gen).unwrap();
    cholesky(&rt, &a).unwrap();
    let r = residual(&rt, &a, gen).unwrap();
    assert!(r < 1e-14, "residual {r:e}");
    // After shutdown: a spill still under way when the last task ended
    // is in the record, so it must be in the count too.
    rt.shutdown().unwrap();
    let usage = rt.host_usage();
    (usage.spilled, usage.loaded)
}

#[test]
fn a_recorded_run_has_every_task_in_order_and_conserves_spilled_bytes() {
    let dir = scratch("run");
    let db_path = dir.join("run.db");
    let (spilled, loaded) = recorded_cholesky(&db_path, &dir);
    assert!(
        spilled > 0 && loaded > 0,
        "the budget should force spilling"
    );
    let db = RunDb::open(&db_path).unwrap();
    let tasks = db.tasks().unwrap();
    assert!(tasks.len() > 50, "{}", tasks.len());
    for t in &tasks {
        assert_eq!(t.status, "done", "{t:?}");
        assert_eq!(t.stream, Some(0), "a CPU runs one stream: {t:?}");
        assert!(t.processor.is_some_and(|p| p < 2), "{t:?}");
        let stamps = [
            t.submitted_us,
            t.ready_us,
            t.scheduled_us,
            t.started_us,
            t.finished_us,
        ];
        let stamps: Vec<f64> = stamps.iter().map(|s| s.expect("every stamp")).collect();
        // Started comes from the processor's clock, scheduled from the
        // scheduler's: allow a microsecond between them.
        assert!(stamps.windows(2).all(|w| w[0] <= w[1] + 1.0), "{t:?}");
        // Inputs are in place after the start (reads back from disk
        // included) and before the end.
        let inputs = t.inputs_ready_us.expect("inputs ready");
        assert!(stamps[3] <= inputs && inputs <= stamps[4], "{t:?}");
    }
    // Each gemm reads two tiles and writes one of 64 x 64 f64.
    let tile = 64 * 64 * 8;
    let gemm = tasks.iter().find(|t| t.op == "gemm").unwrap();
    assert_eq!((gemm.bytes_read, gemm.bytes_written), (3 * tile, tile));
    // Every byte the tier spilled or read back is a recorded copy.
    let moved = |src: &str, dst: &str| -> u64 {
        db.transfers()
            .unwrap()
            .iter()
            .filter(|c| c.src == src && c.dst == dst)
            .map(|c| c.bytes)
            .sum()
    };
    assert_eq!(moved("host", "disk"), spilled);
    assert_eq!(moved("disk", "host"), loaded);
    assert!(!db.memory().unwrap().is_empty());
    assert!(!db.decisions().unwrap().is_empty());
    let procs = db.processors().unwrap();
    assert_eq!(procs.len(), 2);
    // Named queries agree with the rows.
    let top = db.named("top-ops").unwrap();
    let total: i64 = top.rows.iter().map(|r| r[1].as_i64().unwrap()).sum();
    assert_eq!(total as usize, tasks.len());
    let idle = db.named("idle").unwrap();
    assert_eq!(idle.rows.len(), 2);
    for r in &idle.rows {
        let u = r[4].as_f64().unwrap();
        assert!(u > 0.0 && u <= 1.0 + 1e-9, "{r:?}");
    }
    let links = db.named("transfers").unwrap();
    assert!(links.rows.iter().any(|r| r[0] == "host" && r[1] == "disk"));
    let q = db
        .query("SELECT COUNT(*) FROM tasks WHERE op = 'potrf'")
        .unwrap();
    assert_eq!(q.rows[0][0].as_i64(), Some(6));
    assert_eq!(db.meta("rows_dropped").as_deref(), Some("0"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn traces_and_reports_come_from_the_run_file() {
    let dir = scratch("views");
    let db_path = dir.join("run.db");
    recorded_cholesky(&db_path, &dir);
    let db = RunDb::open(&db_path).unwrap();
    let done = db.tasks().unwrap().len();
    let trace = tessera::record::trace_events(&db).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let count = |ph: &str| events.iter().filter(|e| e["ph"] == ph).count();
    // One span per task, plus one per copy.
    assert_eq!(count("X"), done + db.transfers().unwrap().len());
    assert!(count("C") > 0, "memory counters");
    assert_eq!(count("s"), count("f"), "flows start and finish in pairs");
    let html = render(&db).unwrap();
    for id in CHARTS {
        assert!(
            html.contains(&format!("<section id=\"{id}\"")),
            "{id} missing"
        );
    }
    // All but the decision chart's absence text carry SVG.
    assert!(html.matches("<svg").count() >= 6);
    // Self-contained: nothing to fetch (the SVG namespace is a name, not a fetch).
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert!(!html.contains("<script"), "the report needs no scripts");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_report_renders_in_headless_chromium() {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|c| which(c))
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing in CI (.ci/run installs it)"
        );
        eprintln!("skipped: no chromium");
        return;
    };
    let dir = scratch("chromium");
    let db_path = dir.join("run.db");
    recorded_cholesky(&db_path, &dir);
    let html_path = dir.join("report.html");
    std::fs::write(&html_path, render(&RunDb::open(&db_path).unwrap()).unwrap()).unwrap();
    let url = format!("file://{}", html_path.display());
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    // The browser parsed every chart: sections with SVG that has shapes.
    for id in CHARTS {
        assert!(dom.contains(&format!("id=\"{id}\"")), "{id} not in the DOM");
    }
    assert!(dom.matches("<svg").count() >= 6, "{}", dom.len());
    assert!(dom.matches("<rect").count() > 100);
    let png = dir.join("report.png");
    let shot = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1100,3000",
            &format!("--screenshot={}", png.display()),
            &url,
        ])
        .output()
        .unwrap();
    assert!(shot.status.success());
    assert!(
        std::fs::metadata(&png).unwrap().len() > 20_000,
        "a blank page"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn which(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn foreign_newer_and_empty_run_files_are_refused_clearly() {
    let dir = scratch("bad");
    // Not a database at all.
    let text = dir.join("notes.db");
    std::fs::write(
        &text,
        "just text, long enough to not be a database header at all",
    )
    .unwrap();
    let e = RunDb::open(&text).err().unwrap();
    assert!(
        e.to_string().contains("not a Tessera run file") || e.to_string().contains("notes.db"),
        "{e}"
    );
    // A database that is not ours.
    let other = dir.join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t(x)")
        .unwrap();
    assert!(matches!(RunDb::open(&other), Err(RecordError::NotARun(_))));
    assert!(matches!(
        RunDb::open(&dir.join("missing.db")),
        Err(RecordError::NotARun(_))
    ));
    // A run from a newer schema.
    let db_path = dir.join("run.db");
    {
        let rt = Runtime::builder()
            .cpu_workers(1)
            .record(&db_path)
            .build()
            .unwrap();
        rt.spawn(|| {}).unwrap();
        rt.wait_all().unwrap();
    }
    let db = RunDb::open(&db_path).unwrap();
    assert_eq!(db.tasks().unwrap().len(), 1);
    let e = db.query("SELECT nothing FROM nowhere").err().unwrap();
    assert!(matches!(e, RecordError::Query(_)), "{e}");
    // The file is opened read-only: queries cannot change it.
    assert!(db.query("DELETE FROM tasks").is_err());
    drop(db);
    rusqlite::Connection::open(&db_path)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    match RunDb::open(&db_path) {
        Err(RecordError::NewerSchema { found, .. }) => assert_eq!(found, SCHEMA_VERSION + 1),
        other => panic!("{:?}", other.err()),
    }
    // A run with no task has nothing to report.
    let empty = dir.join("empty.db");
    drop(
        Runtime::builder()
            .cpu_workers(1)
            .record(&empty)
            .build()
            .unwrap(),
    );
    let e = render(&RunDb::open(&empty).unwrap()).err().unwrap();
    assert!(e.to_string().contains("no completed tasks"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_run_goes_on_when_its_record_cannot_be_written() {
    let dir = scratch("unwritable");
    // Another program's file at the path is left alone.
    let mine = dir.join("precious.db");
    std::fs::write(&mine, "not yours").unwrap();
    for path in [mine.clone(), dir.join("no/such/dir/run.db")] {
        let rt = Runtime::builder()
            .cpu_workers(1)
            .record(&path)
            .build()
            .unwrap();
        let h = rt.spawn(|| {}).unwrap();
        rt.wait(&h).unwrap();
    }
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "not yours");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run by the test below in a child process whose files may not grow past
/// 128 KiB, as on a full disk.
#[test]
#[ignore]
fn full_disk_child() {
    let db = PathBuf::from(std::env::var("TESSERA_RECORD_PATH").unwrap());
    let rt = Runtime::builder()
        .cpu_workers(2)
        .record(&db)
        .build()
        .unwrap();
    let gen = SpdMatrix { n: 1536, seed: 9 };
    let a = TiledMatrix::generate(&rt, "A", 1536, 64, DType::F64, gen).unwrap();
    cholesky(&rt, &a).unwrap();
    let r = residual(&rt, &a, gen).unwrap();
    assert!(r < 1e-14);
    assert_eq!(rt.progress().failed, 0);
}

#[test]
fn a_full_disk_stops_the_recording_not_the_run() {
    use std::os::unix::process::CommandExt;
    let dir = scratch("full");
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "integration::record::full_disk_child",
        "--ignored",
        "--nocapture",
    ])
    .env("TESSERA_RECORD_PATH", dir.join("run.db"));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 128 << 10,
                rlim_max: 128 << 10,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    assert!(
        stderr.contains("recording to") && stderr.contains("the run goes on"),
        "no warning: {stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
