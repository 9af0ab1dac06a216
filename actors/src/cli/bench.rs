//! `tessera bench`: benchmarks that print a table, or one JSON object with
//! `--json`. Each compares against a baseline measured in the same run.

use super::progress::ProgressLine;
use super::{runtime, CholeskyBenchArgs, CliResult, OverheadArgs};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
use faer::{Mat, Par};
use std::sync::Arc;
use std::time::Instant;
use tessera::linalg::{cholesky as tiled_cholesky, MatrixEntries, SpdMatrix, TiledMatrix};
use tessera::{DType, Runtime, Task};

/// Per-task overhead, end to end: submission, dependency tracking,
/// placement, execution of an empty closure, completion.
pub fn overhead(args: &OverheadArgs) -> CliResult {
    let rt = runtime(&args.common, None)?;
    // Warm up threads, allocator and channels.
    for _ in 0..10_000 {
        rt.spawn(|| {})?;
    }
    rt.wait_all()?;

    let start = Instant::now();
    for _ in 0..args.tasks {
        rt.spawn(|| {})?;
    }
    rt.wait_all()?;
    let independent = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut prev = rt.spawn(|| {})?;
    for _ in 1..args.chain {
        prev = rt.submit(Task::closure("chain", |_| Ok(())).after(&prev))?;
    }
    rt.wait_all()?;
    let chain = start.elapsed().as_secs_f64();
    let p = rt.progress();
    if p.failed > 0 {
        return Err(format!("{} tasks failed during the benchmark", p.failed).into());
    }

    let ind_us = independent * 1e6 / args.tasks as f64;
    let chain_us = chain * 1e6 / args.chain as f64;
    let workers = rt.processors().len();
    if args.common.json {
        let out = serde_json::json!({
            "workers": workers,
            "independent_tasks": args.tasks,
            "independent_seconds": independent,
            "independent_us_per_task": ind_us,
            "chain_tasks": args.chain,
            "chain_seconds": chain,
            "chain_us_per_task": chain_us,
        });
        println!("{out}");
    } else {
        println!(
            "{:<12} {:>10} {:>10} {:>12} {:>8}",
            "case", "tasks", "seconds", "µs/task", "target"
        );
        println!(
            "{:<12} {:>10} {:>10.3} {:>12.3} {:>8}",
            "independent", args.tasks, independent, ind_us, "≤ 2"
        );
        println!(
            "{:<12} {:>10} {:>10.3} {:>12.3} {:>8}",
            "chain", args.chain, chain, chain_us, "≤ 5"
        );
        println!("({workers} CPU processors)");
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Tiled Cholesky on Tessera against faer's parallel blocked Cholesky on
/// the same matrix, alternating the two so drift hits both alike.
pub fn cholesky(args: &CholeskyBenchArgs) -> CliResult {
    let (n, tile) = args.matrix.sizes()?;
    let rt = Arc::new(runtime(&args.common, None)?);
    let workers = rt.processors().len();
    let entries = SpdMatrix { n, seed: 1 };
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut baseline_compute = Vec::new();
    let mut tasks = 0;
    // With a CUDA device the baseline is cuSOLVER's own potrf on the whole
    // matrix, through a second handle on the same plugin.
    let device_baseline = match rt.plugins().iter().find(|p| p.name == "cuda") {
        Some(p) => Some(tessera_plugin::LoadedPlugin::load(&p.path, "streams=1")?),
        None => None,
    };
    let baseline_name = if device_baseline.is_some() {
        if args.resident {
            "cuSOLVER potrf on the full matrix already on the device"
        } else {
            "cuSOLVER potrf on the full matrix, host to device copy included"
        }
    } else {
        "faer cholesky_in_place, Par::rayon(workers)"
    };
    for rep in 0..args.reps {
        let a = TiledMatrix::generate(&rt, "A", n, tile, args.matrix.dtype, entries)?;
        rt.wait_all()?;
        if args.resident {
            make_resident(&rt, &a)?;
        }
        let progress = ProgressLine::start(Arc::clone(&rt), "tessera cholesky");
        let start = Instant::now();
        tasks = tiled_cholesky(&rt, &a)?;
        rt.wait_all()?;
        ours.push(start.elapsed().as_secs_f64());
        drop(progress);
        let probe =
            rt.submit(Task::closure("probe", |_| Ok(())).read(a.tile(a.nt - 1, a.nt - 1)))?;
        rt.wait(&probe)?;
        drop(a);

        let seconds = match &device_baseline {
            Some(plugin) => {
                let (with_copy, compute) =
                    cusolver_cholesky(plugin, n, entries, args.matrix.dtype)?;
                baseline_compute.push(compute);
                if args.resident {
                    compute
                } else {
                    with_copy
                }
            }
            None => match args.matrix.dtype {
                DType::F64 => faer_cholesky::<f64>(n, entries, workers, |x| x)?,
                DType::F32 => faer_cholesky::<f32>(n, entries, workers, |x| x as f32)?,
            },
        };
        theirs.push(seconds);
        eprintln!(
            "rep {}/{}: tessera {:.3} s, baseline {:.3} s",
            rep + 1,
            args.reps,
            ours[ours.len() - 1],
            seconds
        );
    }
    let flops = {
        let nf = n as f64;
        nf * nf * nf / 3.0 + nf * nf / 2.0 + nf / 6.0
    };
    let t_ours = median(ours);
    let t_theirs = median(theirs);
    let g_ours = flops / t_ours / 1e9;
    let g_theirs = flops / t_theirs / 1e9;
    let ratio = g_ours / g_theirs;
    let compute_only = (!baseline_compute.is_empty()).then(|| median(baseline_compute));
    let g_compute = compute_only.map(|t| flops / t / 1e9);
    if args.common.json {
        let out = serde_json::json!({
            "n": n,
            "tile": tile,
            "dtype": args.matrix.dtype.name(),
            "workers": workers,
            "reps": args.reps,
            "tasks": tasks,
            "tessera_seconds": t_ours,
            "tessera_gflops": g_ours,
            "processors": rt.processors().iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
            "baseline": baseline_name,
            "baseline_seconds": t_theirs,
            "baseline_gflops": g_theirs,
            "ratio": ratio,
            "baseline_compute_only_gflops": g_compute,
            "ratio_vs_compute_only": g_compute.map(|g| g_ours / g),
            "resident": args.resident,
        });
        println!("{out}");
    } else {
        println!(
            "{:<28} {:>10} {:>10}",
            "implementation", "seconds", "GFLOP/s"
        );
        println!(
            "{:<28} {:>10.3} {:>10.1}",
            format!("tessera tiled ({tasks} tasks)"),
            t_ours,
            g_ours
        );
        println!("{:<28} {:>10.3} {:>10.1}", "baseline", t_theirs, g_theirs);
        if let (Some(t), Some(g)) = (compute_only, g_compute) {
            println!("{:<28} {:>10.3} {:>10.1}", "baseline, compute only", t, g);
        }
        println!("baseline: {baseline_name}");
        println!(
            "ratio tessera/baseline: {ratio:.3} (target ≥ 0.9), n={n} tile={tile} {}",
            args.matrix.dtype
        );
    }
    Ok(())
}

/// Prefetches every tile of `a` to the device and waits until each has a
/// replica there and the copies have had time to land.
fn make_resident(rt: &tessera::Runtime, a: &TiledMatrix) -> Result<(), Box<dyn std::error::Error>> {
    let mut tiles = Vec::new();
    for i in 0..a.nt {
        for j in 0..=i {
            tiles.push(a.tile(i, j));
        }
    }
    let Some(space) = tiles.first().and_then(|t| rt.prefetch(t)) else {
        return Err("--resident needs a device for this element type".into());
    };
    for t in &tiles[1..] {
        rt.prefetch(t);
    }
    let deadline = Instant::now() + std::time::Duration::from_secs(300);
    while !tiles.iter().all(|t| t.valid_spaces().contains(&space)) {
        if Instant::now() > deadline {
            return Err("prefetching the matrix did not finish in 300 s".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // Replicas count as valid once their copy is queued: let the last land.
    std::thread::sleep(std::time::Duration::from_millis(200));
    Ok(())
}

/// The full matrix, column-major, built on every core (it can be tens of GB).
fn full_matrix<T: Copy + Send + Default>(
    n: usize,
    entries: SpdMatrix,
    cast: impl Fn(f64) -> T + Sync,
) -> Vec<T> {
    let mut m = vec![T::default(); n * n];
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let cols_per = n.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (chunk, cols) in m.chunks_mut(cols_per * n).enumerate() {
            let cast = &cast;
            s.spawn(move || {
                for (k, x) in cols.iter_mut().enumerate() {
                    let (i, j) = (k % n, chunk * cols_per + k / n);
                    *x = if i >= j {
                        cast(entries.entry(i, j))
                    } else {
                        cast(0.0)
                    };
                }
            });
        }
    });
    m
}

/// cuSOLVER's potrf on the whole matrix through the plugin: returns the
/// seconds from host memory (copy in + factorisation) and of the
/// factorisation alone, after checking it succeeded.
fn cusolver_cholesky(
    plugin: &tessera_plugin::LoadedPlugin,
    n: usize,
    entries: SpdMatrix,
    dtype: DType,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    use tessera_plugin::abi::{dtype_code, op_code, Shape};
    let (bytes, code, host): (usize, u32, Vec<u8>) = match dtype {
        DType::F64 => {
            let m = full_matrix::<f64>(n, entries, |x| x);
            (
                n * n * 8,
                dtype_code::F64,
                m.iter().flat_map(|x| x.to_ne_bytes()).collect(),
            )
        }
        DType::F32 => {
            let m = full_matrix::<f32>(n, entries, |x| x as f32);
            (
                n * n * 4,
                dtype_code::F32,
                m.iter().flat_map(|x| x.to_ne_bytes()).collect(),
            )
        }
    };
    let buffer = plugin.alloc(0, bytes as u64)?;
    let call = tessera_plugin::OpCall {
        op: op_code::POTRF,
        dtype: code,
        flags: 0,
        alpha: 1.0,
        beta: 0.0,
        shapes: vec![Shape {
            rows: n as u64,
            cols: n as u64,
        }],
    };
    let start = Instant::now();
    // SAFETY: `host` lives until the stream is synchronised below.
    unsafe { plugin.copy_h2d(0, 0, buffer, host.as_ptr(), bytes as u64)? };
    plugin.stream_sync(0, 0)?;
    let copied = Instant::now();
    let run = plugin
        .launch(0, 0, &call, &[buffer])
        .and_then(|()| plugin.stream_sync(0, 0));
    let done = Instant::now();
    plugin.free(0, buffer);
    run?;
    Ok(((done - start).as_secs_f64(), (done - copied).as_secs_f64()))
}

/// Streaming GEMM over tiles that start in host memory: the time with the
/// device's stream pool beside copies alone and kernels alone, measured on
/// the plugin directly in the same run, and beside one stream.
pub fn multistream(args: &super::MultistreamArgs) -> CliResult {
    use tessera::{Op, TileData, TileShape};
    use tessera_plugin::abi::{dtype_code, op_code, Shape};
    let tile = usize::try_from(args.tile)?;
    let count = usize::try_from(args.tiles)?;
    let run = |streams: u32| -> Result<(f64, String), Box<dyn std::error::Error>> {
        let mut common = args.common.clone();
        common.devices = Some(vec!["cpu".into(), args.device.clone()]);
        let rt = super::runtime_with_options(&common, &args.device, &format!("streams={streams}"))?;
        let proc_name = rt
            .processors()
            .iter()
            .find(|p| p.name.starts_with(args.device.as_str()))
            .map(|p| p.name.clone())
            .ok_or("no such device")?;
        let shape = TileShape::new(tile, tile);
        let make = |seed: f64| {
            TileData::F64(
                (0..tile * tile)
                    .map(|k| ((k % 97) as f64 + seed) * 1e-3)
                    .collect(),
            )
        };
        // Untimed warm-up: the first GEMM loads cuBLAS's kernels, which the
        // baselines below, run later in this process, find loaded.
        {
            let w: Vec<_> = (0..3)
                .map(|i| rt.tile(make(f64::from(i)), shape))
                .collect::<Result<_, _>>()?;
            rt.submit(
                Task::op(Op::gemm(1.0, 1.0))
                    .read(&w[0])
                    .read(&w[1])
                    .read_write(&w[2]),
            )?;
            rt.wait_all()?;
        }
        let mut tiles = Vec::new();
        for i in 0..count {
            tiles.push((
                rt.tile(make(i as f64), shape)?,
                rt.tile(make(1.0), shape)?,
                rt.tile(make(2.0), shape)?,
            ));
        }
        let start = Instant::now();
        for (a, b, c) in &tiles {
            rt.submit(Task::op(Op::gemm(1.0, 1.0)).read(a).read(b).read_write(c))?;
        }
        rt.wait_all()?;
        let t = start.elapsed().as_secs_f64();
        if rt.progress().failed > 0 {
            return Err("a streaming gemm failed".into());
        }
        Ok((t, proc_name))
    };
    let (pooled, device_name) = run(args.streams)?;
    let (single, _) = run(1)?;
    // Baselines on the plugin itself: the same copies alone, the same kernels alone.
    let path = {
        let rt = runtime(&args.common, None)?;
        rt.plugins()
            .iter()
            .find(|p| p.name == args.device)
            .map(|p| p.path.clone())
            .ok_or("plugin not loaded")?
    };
    // Copies alone use as many host-to-device streams, one thread each, as
    // the runtime's prefetching does: the fastest the copies can go.
    let copy_threads = args.streams.max(1);
    let plugin =
        tessera_plugin::LoadedPlugin::load(&path, &format!("streams=1,copy={copy_threads}"))?;
    let bytes = (tile * tile * 8) as u64;
    let mut host: Vec<u8> = vec![1u8; tile * tile * 8];
    // The runtime copies from pinned tiles where the plugin can pin; the
    // baseline copies from the same kind of memory.
    // SAFETY: `host` outlives the registration, undone below.
    let pinned = unsafe { plugin.host_register(host.as_mut_ptr(), bytes) }.is_ok();
    let bufs: Vec<u64> = (0..3)
        .map(|_| plugin.alloc(0, bytes))
        .collect::<Result<_, _>>()?;
    let start = Instant::now();
    std::thread::scope(|s| -> Result<(), tessera_plugin::PluginError> {
        let workers: Vec<_> = (0..copy_threads)
            .map(|t| {
                let (plugin, host, dst) = (&plugin, &host, bufs[0]);
                s.spawn(move || -> Result<(), tessera_plugin::PluginError> {
                    let stream = 1 + t;
                    for _ in (t as usize..count * 3).step_by(copy_threads as usize) {
                        // SAFETY: `host` outlives the synchronisation below.
                        unsafe { plugin.copy_h2d(0, stream, dst, host.as_ptr(), bytes)? };
                    }
                    plugin.stream_sync(0, stream)
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| tessera_plugin::PluginError::new("copy thread panicked"))??;
        }
        Ok(())
    })?;
    let copy_alone = start.elapsed().as_secs_f64();
    if pinned {
        plugin.host_unregister(host.as_ptr() as usize);
    }
    let shape = Shape {
        rows: tile as u64,
        cols: tile as u64,
    };
    let call = tessera_plugin::OpCall {
        op: op_code::GEMM,
        dtype: dtype_code::F64,
        flags: 0,
        alpha: 1.0,
        beta: 1.0,
        shapes: vec![shape; 3],
    };
    let start = Instant::now();
    for _ in 0..count {
        plugin.launch(0, 0, &call, &bufs)?;
    }
    plugin.stream_sync(0, 0)?;
    let compute_alone = start.elapsed().as_secs_f64();
    for b in bufs {
        plugin.free(0, b);
    }
    // What the runtime pays that the baselines above do not: one device
    // allocation per tile.
    let start = Instant::now();
    let many: Vec<u64> = (0..count * 3)
        .map(|_| plugin.alloc(0, bytes))
        .collect::<Result<_, _>>()?;
    let alloc_alone = start.elapsed().as_secs_f64();
    for b in many {
        plugin.free(0, b);
    }
    let efficiency = copy_alone.max(compute_alone) / pooled;
    let small = small_kernels(args)?;
    if args.common.json {
        println!(
            "{}",
            serde_json::json!({
                "device": device_name, "tile": tile, "tiles": count, "streams": args.streams,
                "pooled_seconds": pooled, "single_stream_seconds": single,
                "copy_alone_seconds": copy_alone, "compute_alone_seconds": compute_alone,
                "overlap_efficiency": efficiency, "pinned_host": pinned,
                "allocations_alone_seconds": alloc_alone,
                "small_kernels": small.iter().map(|(st, n, t)| serde_json::json!({"streams": st, "tasks": n, "seconds": t, "tasks_per_second": *n as f64 / t})).collect::<Vec<_>>(),
            })
        );
    } else {
        println!("{:<26} {:>10}", "case", "seconds");
        println!(
            "{:<26} {:>10.4}",
            format!("{} streams", args.streams),
            pooled
        );
        println!("{:<26} {:>10.4}", "1 stream", single);
        println!(
            "{:<26} {:>10.4}",
            if pinned {
                "copies alone (pinned)"
            } else {
                "copies alone"
            },
            copy_alone
        );
        println!("{:<26} {:>10.4}", "kernels alone", compute_alone);
        println!("{:<26} {:>10.4}", "allocations alone", alloc_alone);
        println!("overlap efficiency max(copy, compute)/total: {efficiency:.3} (target ≥ 0.9)");
        println!(
            "{:<26} {:>10} {:>12}",
            "small kernels", "seconds", "tasks/s"
        );
        for (st, n, t) in &small {
            println!(
                "{:<26} {:>10.4} {:>12.0}",
                format!("{st} streams, {n} tasks"),
                t,
                *n as f64 / t
            );
        }
    }
    Ok(())
}

/// (streams, tasks, seconds) of one small-kernel run.
type SmallRun = (u32, usize, f64);

/// Many small independent GEMMs on tiles already on the device, with 1, 2,
/// 4 and 8 compute streams.
fn small_kernels(
    args: &super::MultistreamArgs,
) -> Result<Vec<SmallRun>, Box<dyn std::error::Error>> {
    use tessera::{Op, TileData, TileShape};
    const SIZE: usize = 128;
    const TASKS: usize = 2048;
    const SETS: usize = 64;
    let mut out = Vec::new();
    for streams in [1u32, 2, 4, 8] {
        let mut common = args.common.clone();
        common.devices = Some(vec![args.device.clone()]);
        let rt = super::runtime_with_options(&common, &args.device, &format!("streams={streams}"))?;
        let shape = TileShape::new(SIZE, SIZE);
        let data = || TileData::F64((0..SIZE * SIZE).map(|k| (k % 13) as f64 * 1e-3).collect());
        let sets: Vec<_> = (0..SETS)
            .map(|_| {
                Ok((
                    rt.tile(data(), shape)?,
                    rt.tile(data(), shape)?,
                    rt.tile(data(), shape)?,
                ))
            })
            .collect::<Result<_, tessera::RuntimeError>>()?;
        // Round one brings every tile to the device; round two is timed.
        let round = |n: usize| -> Result<(), tessera::RuntimeError> {
            for i in 0..n {
                let (a, b, c) = &sets[i % SETS];
                // beta = 0 writes C without reading it: no chain through C.
                rt.submit(Task::op(Op::gemm(1.0, 0.0)).read(a).read(b).write(c))?;
            }
            rt.wait_all()
        };
        round(SETS)?;
        let start = Instant::now();
        round(TASKS)?;
        let t = start.elapsed().as_secs_f64();
        if rt.progress().failed > 0 {
            return Err("a small kernel failed".into());
        }
        out.push((streams, TASKS, t));
    }
    Ok(out)
}

/// faer's blocked parallel Cholesky on the full matrix; returns seconds of
/// the factorisation alone, after checking it succeeded.
fn faer_cholesky<T: tessera_core::kernels::Real>(
    n: usize,
    entries: SpdMatrix,
    threads: usize,
    cast: impl Fn(f64) -> T,
) -> Result<f64, Box<dyn std::error::Error>> {
    let mut m: Mat<T> = Mat::from_fn(n, n, |i, j| {
        if i >= j {
            cast(entries.entry(i, j))
        } else {
            cast(0.0)
        }
    });
    let par = Par::rayon(threads);
    let mut buf = MemBuffer::new(cholesky_in_place_scratch::<T>(n, par, Default::default()));
    let stack = MemStack::new(&mut buf);
    let start = Instant::now();
    cholesky_in_place(
        m.as_mut(),
        Default::default(),
        par,
        stack,
        Default::default(),
    )
    .map_err(|e| format!("faer baseline failed: {e:?}"))?;
    Ok(start.elapsed().as_secs_f64())
}

/// The cost of observing: the same Cholesky with the metrics endpoint, a
/// run file and a trace on, against all of them off, alternating which
/// goes first. Each side gets a fresh runtime per repetition; the factor
/// is timed, shutdown (where the run file and trace are finished) apart.
pub fn observe(args: &CholeskyBenchArgs) -> CliResult {
    let (n, tile) = args.matrix.sizes()?;
    let entries = SpdMatrix { n, seed: 1 };
    let dir = std::env::temp_dir().join(format!("tessera-observe-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (mut off, mut on, mut on_shutdown, mut off_shutdown) = (vec![], vec![], vec![], vec![]);
    let mut tasks = 0;
    for rep in 0..args.reps {
        let order = if rep % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for observed in order {
            let mut b = Runtime::builder();
            if observed {
                b = b
                    .metrics("127.0.0.1:0")
                    .record(dir.join("run.db"))
                    .trace(dir.join("run.json"));
            }
            let rt = super::build(&args.common, None, b)?;
            let a = TiledMatrix::generate(&rt, "A", n, tile, args.matrix.dtype, entries)?;
            rt.wait_all()?;
            let start = Instant::now();
            tasks = tiled_cholesky(&rt, &a)?;
            rt.wait_all()?;
            let seconds = start.elapsed().as_secs_f64();
            drop(a);
            let stop = Instant::now();
            rt.shutdown()?;
            let stop = stop.elapsed().as_secs_f64();
            if observed {
                on.push(seconds);
                on_shutdown.push(stop);
            } else {
                off.push(seconds);
                off_shutdown.push(stop);
            }
            eprintln!(
                "rep {}/{} {}: {seconds:.3} s (shutdown {stop:.3} s)",
                rep + 1,
                args.reps,
                if observed { "observed" } else { "plain" }
            );
        }
    }
    let recorded = tessera::record::RunDb::open(&dir.join("run.db"))
        .and_then(|db| db.query("SELECT COUNT(*) FROM tasks"))
        .ok()
        .and_then(|q| {
            q.rows
                .first()
                .and_then(|r| r.first())
                .and_then(serde_json::Value::as_i64)
        })
        .unwrap_or(0);
    let _ = std::fs::remove_dir_all(&dir);
    let (off_m, on_m) = (median(off), median(on));
    let (off_s, on_s) = (median(off_shutdown), median(on_shutdown));
    let ratio = on_m / off_m;
    if args.common.json {
        println!(
            "{}",
            serde_json::json!({
                "n": n, "tile": tile, "tasks": tasks, "reps": args.reps,
                "plain_seconds": off_m, "observed_seconds": on_m,
                "overhead": ratio - 1.0, "ratio": ratio,
                "plain_shutdown_seconds": off_s, "observed_shutdown_seconds": on_s,
                "tasks_recorded": recorded,
            })
        );
    } else {
        println!("{:<26} {:>10} {:>12}", "", "factor s", "shutdown s");
        println!("{:<26} {off_m:>10.4} {off_s:>12.4}", "plain");
        println!(
            "{:<26} {on_m:>10.4} {on_s:>12.4}",
            "metrics + record + trace"
        );
        println!(
            "overhead {:+.2}% over {tasks} tasks ({recorded} recorded in the last run file)",
            (ratio - 1.0) * 100.0
        );
    }
    Ok(())
}
