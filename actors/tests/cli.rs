//! The `tessera` command as a user runs it.

use std::net::TcpListener;
use std::process::{Command, Output};

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .expect("run tessera")
}

fn stdout_json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `tessera args` run to success (its stderr shown if not), its stdout
/// as JSON.
fn json_of(args: &[&str]) -> serde_json::Value {
    let out = tessera(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout_json(&out)
}

#[test]
fn run_cholesky_json_has_the_documented_fields_and_a_small_residual() {
    // Both orders of updates factor alike; in RAM, auto is right-looking.
    for (variant, runs) in [("right", "right"), ("left", "left"), ("auto", "right")] {
        let out = tessera(&[
            "run",
            "cholesky",
            "--n",
            "96",
            "--tile",
            "32",
            "--check",
            "--json",
            "--workers",
            "2",
            "--variant",
            variant,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = stdout_json(&out);
        for field in [
            "n", "tile", "dtype", "seconds", "gflops", "residual", "tasks",
        ] {
            assert!(v.get(field).is_some(), "missing {field}: {v}");
        }
        assert_eq!(v["n"], 96);
        assert_eq!(v["dtype"], "f64");
        assert_eq!(v["tasks"], 3 + 3 + 3 + 1);
        assert_eq!(v["variant"], runs);
        assert!(v["residual"].as_f64().unwrap() < 1e-14, "{variant}: {v}");
    }
}

#[test]
fn run_cholesky_goes_left_looking_by_itself_when_the_matrix_spills() {
    let dir = std::env::temp_dir().join(format!("tessera-cli-auto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // 36 tiles of 8 KiB through a 64 KiB budget.
    let args = |variant: &'static str| {
        json_of(&[
            "run",
            "cholesky",
            "--n",
            "256",
            "--tile",
            "32",
            "--check",
            "--json",
            "--workers",
            "2",
            "--host-mem",
            "64KiB",
            "--spill-dir",
            dir.to_str().unwrap(),
            "--variant",
            variant,
        ])
    };
    let auto = args("auto");
    assert_eq!(auto["variant"], "left", "{auto}");
    assert!(auto["residual"].as_f64().unwrap() < 1e-14, "{auto}");
    assert!(auto["host"]["spilled"].as_u64().unwrap() > 0, "{auto}");
    // Asked for, right-looking still runs spilling.
    let right = args("right");
    assert_eq!(right["variant"], "right", "{right}");
    assert!(right["residual"].as_f64().unwrap() < 1e-14, "{right}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_cholesky_table_in_f32() {
    let out = tessera(&[
        "run", "cholesky", "--n", "64", "--tile", "16", "--dtype", "f32", "--check",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("GFLOP/s") && text.contains("f32"), "{text}");
}

#[test]
fn bad_sizes_are_usage_errors_not_panics() {
    for args in [
        &["run", "cholesky", "--n", "0"][..],
        &["run", "cholesky", "--n", "64", "--tile", "0"],
        &["run", "cholesky", "--n", "64", "--tile", "128"],
        &["run", "cholesky", "--dtype", "f16"],
        &["bench", "overhead", "--tasks", "0"],
    ] {
        let out = tessera(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Usage") || err.contains("--help"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn a_metrics_port_in_use_fails_with_a_message() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = tessera(&[
        "run",
        "cholesky",
        "--n",
        "32",
        "--tile",
        "16",
        "--metrics",
        &addr,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&addr) && err.contains("metrics"), "{err}");
}

#[test]
fn info_and_bench_overhead_print_json() {
    let out = tessera(&["info", "--json"]);
    assert!(out.status.success());
    let v = stdout_json(&out);
    assert!(!v["processors"].as_array().unwrap().is_empty());
    assert_eq!(v["memory_spaces"][0]["kind"], "Host");

    let out = tessera(&[
        "bench",
        "overhead",
        "--tasks",
        "2000",
        "--chain",
        "500",
        "--json",
        "--workers",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = stdout_json(&out);
    assert!(v["independent_us_per_task"].as_f64().unwrap() > 0.0);
    assert!(v["chain_us_per_task"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_cholesky_reports_a_ratio_against_faer() {
    let out = tessera(&[
        "bench", "cholesky", "--n", "128", "--tile", "32", "--reps", "1", "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = stdout_json(&out);
    let ratio = v["ratio"].as_f64().unwrap();
    let ours = v["tessera_gflops"].as_f64().unwrap();
    let theirs = v["baseline_gflops"].as_f64().unwrap();
    assert!((ratio - ours / theirs).abs() < 1e-9);
}

#[test]
fn bench_windows_times_both_window_policies_against_their_budgets() {
    let v = json_of(&[
        "bench",
        "windows",
        "--windows",
        "6",
        "--tasks",
        "12",
        "--json",
    ]);
    let policies = v["policies"].as_array().unwrap();
    let names: Vec<&str> = policies
        .iter()
        .map(|p| p["policy"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["milp", "metaheuristic"]);
    for p in policies {
        assert_eq!(p["windows"], 6);
        let within = p["within_budget"].as_u64().unwrap();
        assert!(within <= 6);
        // Every window is decided by some mode, and a plan is kept only
        // when it gains at least the margin.
        let modes: u64 = p["modes"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum();
        assert_eq!(modes, 6);
        if p["plans"].as_u64().unwrap() > 0 {
            let gain = p["mean_gain"].as_f64().unwrap();
            assert!(gain >= tessera_core::window::MIN_GAIN, "{p}");
        }
        assert!(p["p50_ms"].as_f64().unwrap() <= p["max_ms"].as_f64().unwrap());
    }
    // A window of one task is no window.
    let out = tessera(&["bench", "windows", "--tasks", "1"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn sim_reports_makespan_bound_and_the_network_of_a_cluster() {
    let v = json_of(&[
        "sim",
        "--graph",
        "cholesky:8",
        "--platform",
        "cluster-16x4",
        "--json",
    ]);
    let makespan = v["makespan"].as_f64().unwrap();
    assert!(makespan >= v["lower_bound"].as_f64().unwrap());
    assert!(v["decision_us_per_task"].as_f64().unwrap() > 0.0);
    // Each node's interfaces: what leaves one node enters another.
    let net = v["network"].as_array().unwrap();
    assert_eq!(net.len(), 16);
    let sum = |k: &str| -> f64 { net.iter().map(|n| n[k].as_f64().unwrap()).sum() };
    assert!(sum("bytes_in") > 0.0);
    assert!((sum("bytes_in") - sum("bytes_out")).abs() < 1.0);
    assert!(net
        .iter()
        .all(|n| n["busy_in_seconds"].as_f64().unwrap() <= makespan));
    // The table says which interface was busiest; one node has none.
    let text = tessera(&["sim", "--graph", "cholesky:8", "--platform", "cluster-16x4"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("between nodes; busiest interface node"),
        "{text}"
    );
    // A line per node, not per processor; the tasks add up.
    let nodes: Vec<&str> = text.lines().filter(|l| l.starts_with("  node ")).collect();
    assert_eq!(nodes.len(), 16, "{text}");
    assert!(!text.contains("n3.gpu2:"), "{text}");
    let tasks: usize = nodes
        .iter()
        .flat_map(|l| l.split(' ').zip(l.split(' ').skip(1)))
        .filter(|(_, unit)| unit.starts_with("tasks"))
        .map(|(n, _)| n.parse::<usize>().unwrap())
        .sum();
    assert_eq!(tasks, v["tasks"].as_u64().unwrap() as usize, "{text}");
    let one = json_of(&["sim", "--graph", "cholesky:8", "--json"]);
    assert_eq!(one["network"].as_array().unwrap().len(), 0);
}

#[test]
fn sim_away_weight_trades_network_bytes_on_a_cluster_and_nothing_on_a_node() {
    let between = |w: &str, platform: &str| {
        let v = json_of(&[
            "sim",
            "--graph",
            "cholesky:16",
            "--platform",
            platform,
            &format!("--away-weight={w}"),
            "--json",
        ]);
        assert_eq!(
            v["away_weight"].as_f64().unwrap(),
            w.parse::<f64>().unwrap()
        );
        let net = v["network"].as_array().unwrap();
        let bytes: f64 = net.iter().map(|n| n["bytes_in"].as_f64().unwrap()).sum();
        (bytes, v["makespan"].as_f64().unwrap())
    };
    // Without the price, work follows idle GPUs across the network and
    // the slow network ends the run later; with it, more of it stays
    // where its data is. (cholesky:12, this test's graph until session
    // 13's ranks, now moves 3% more bytes priced but still ends 7%
    // sooner.)
    let (free, free_end) = between("0", "cluster-16x4");
    let (priced, priced_end) = between("1", "cluster-16x4");
    let (dear, _) = between("4", "cluster-16x4");
    assert!(priced < free && dear <= priced, "{free} {priced} {dear}");
    assert!(priced_end < free_end, "{free_end} {priced_end}");
    // One node has no network to price: the same schedule.
    assert_eq!(
        between("0", "node-1cpu-2gpu").1,
        between("4", "node-1cpu-2gpu").1
    );
    for bad in ["-1", "inf"] {
        let out = tessera(&[
            "sim",
            "--graph",
            "cholesky:4",
            &format!("--away-weight={bad}"),
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("away weight") && err.contains("at least 0"),
            "{err}"
        );
    }
}

#[test]
fn a_printing_command_ends_quietly_when_its_reader_goes() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["sim", "--graph", "cholesky:6"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tessera");
    // The reader is gone before the first line is printed (`| head -0`).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{err}");
}

#[test]
fn a_run_with_bounded_gpu_memory_evicts_and_ends_the_same_every_time() {
    let platform = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/sim/node-1cpu-2gpu-2gb.json"
    );
    let run = || {
        json_of(&[
            "sim",
            "--graph",
            "lu:12",
            "--tile",
            "2048",
            "--platform",
            platform,
            "--json",
        ])
    };
    let first = run();
    assert!(first["evictions"].as_u64().unwrap() > 0, "{first}");
    assert!(first["refetched"].as_u64().unwrap() > 0, "{first}");
    for _ in 0..2 {
        let again = run();
        assert_eq!(again["makespan"], first["makespan"]);
        assert_eq!(again["evictions"], first["evictions"]);
    }
}

#[test]
fn a_memory_bound_simulation_goes_in_submission_order() {
    // The H200 with a 1 GiB budget, as the runtime queues work (1 ms a
    // processor), and a 4.3 GiB Cholesky: by priority throughout it
    // moved 59.6 GB in 0.876 s; in submission order while memory-bound
    // 36.3 GB in 0.484 s (the H200 itself: about half the bytes and the
    // time).
    let platform = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/sim/h200-1gib.json"
    );
    let r = json_of(&[
        "sim",
        "--graph",
        "cholesky:16",
        "--tile",
        "2048",
        "--platform",
        platform,
        "--json",
    ]);
    let moved = r["bytes_moved"].as_f64().unwrap();
    assert!((4.3e9..45e9).contains(&moved), "{r}");
    assert!(r["makespan"].as_f64().unwrap() < 0.65, "{r}");
    assert!(r["memory_bound_placements"].as_u64().unwrap() > 0, "{r}");
}

#[test]
fn bench_outofcore_spills_left_looking_and_checks_its_residual() {
    let dir = std::env::temp_dir().join(format!("tessera-cli-ooc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let v = json_of(&[
        "bench",
        "outofcore",
        "--n",
        "256",
        "--tile",
        "32",
        "--fraction",
        "0.25",
        "--workers",
        "2",
        "--spill-dir",
        dir.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(v["out_of_core_variant"], "left", "{v}");
    assert!(v["residual"].as_f64().unwrap() < 1e-14, "{v}");
    assert!(v["host"]["spilled"].as_u64().unwrap() > 0, "{v}");
    assert!(
        v["host"]["peak"].as_u64() <= v["host_budget"].as_u64(),
        "{v}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_cholesky_refuses_an_unknown_variant() {
    let out = tessera(&["run", "cholesky", "--n", "96", "--variant", "up"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[possible values: auto, right, left]"),
        "{err}"
    );
}

/// The test plugin built beside this binary by `cargo test --workspace`
/// (a dev-dependency of tessera-tests), if it was.
fn fake_plugin() -> Option<std::path::PathBuf> {
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_tessera"));
    let path = exe.parent()?.join("deps").join(format!(
        "{}tessera_test_plugin_fake{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    path.is_file().then_some(path)
}

/// `tessera run cholesky --check --json` of order `n` in 32-tiles on the
/// fake plugin at `fake` alone, started with `options`, then `extra`.
fn cholesky_on_fake(fake: &str, n: &str, options: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        "cholesky",
        "--n",
        n,
        "--tile",
        "32",
        "--check",
        "--json",
        "--devices",
        "fake",
        "--plugin",
        fake,
        "--plugin-options",
        options,
    ];
    args.extend_from_slice(extra);
    tessera(&args)
}

/// [`fake_plugin`]'s path, or `None` after saying the test is skipped
/// (never on CI, which builds it).
fn fake_plugin_or_skip() -> Option<String> {
    let Some(fake) = fake_plugin() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs `cargo test --workspace`, which builds the fake plugin"
        );
        eprintln!("SKIPPED: the fake plugin is built by `cargo test --workspace`");
        return None;
    };
    Some(fake.to_string_lossy().to_string())
}

#[test]
fn plugin_options_reach_the_plugin_and_a_malformed_one_is_refused() {
    let out = tessera(&["info", "--plugin-options", "fake"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`fake` is not NAME:OPTIONS"), "{err}");
    let Some(fake) = fake_plugin_or_skip() else {
        return;
    };
    let run = |options: &str| cholesky_on_fake(&fake, "160", options, &[]);
    // The plugin starts with them: one told to fail its start fails it.
    let out = run("fake:fail-init");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("injected init failure"), "{err}");
    // Room for two 8 KiB tiles on the only device: a gemm (three) fails,
    // saying so; with room for five the factorisation completes.
    let out = run("fake:memory=16384");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("more than its budget of 16384"), "{err}");
    let out = run("fake:memory=40960,copy=2,streams=2");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout_json(&out)["residual"].as_f64().unwrap() < 1e-14);
}

#[test]
fn a_deeper_gpu_queue_factorises_alike_and_a_bad_one_is_refused() {
    for bad in ["0", "-1", "soon"] {
        let flag = format!("--gpu-queue-ms={bad}");
        let out = tessera(&["run", "cholesky", "--n", "64", &flag]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("positive number of milliseconds"),
            "{bad}: {err}"
        );
    }
    let Some(fake) = fake_plugin_or_skip() else {
        return;
    };
    // Queues of 1 ms and 50 ms on two streams of a device with room for
    // eight of the 21 tiles: the same tasks, factorised alike.
    for ms in ["1", "50"] {
        let options = "fake:memory=65536,copy=2,streams=2";
        let out = cholesky_on_fake(&fake, "192", options, &["--gpu-queue-ms", ms]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = stdout_json(&out);
        assert_eq!(v["tasks"], 6 + 15 + 15 + 20, "{ms}: {v}");
        assert!(v["residual"].as_f64().unwrap() < 1e-14, "{ms}: {v}");
    }
}
