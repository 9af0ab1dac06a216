//! `tessera bench`: benchmarks that print a table, or one JSON object with
//! `--json`. Each compares against a baseline measured in the same run.

use super::progress::ProgressLine;
use super::{check_sizes, runtime, CholeskyBenchArgs, CliResult, OverheadArgs};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
use faer::{Mat, Par};
use std::sync::Arc;
use std::time::Instant;
use tessera::linalg::{cholesky as tiled_cholesky, MatrixEntries, SpdMatrix, TiledMatrix};
use tessera::{DType, Task};

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
        println!("{:<12} {:>10} {:>10} {:>12} {:>8}", "case", "tasks", "seconds", "µs/task", "target");
        println!("{:<12} {:>10} {:>10.3} {:>12.3} {:>8}", "independent", args.tasks, independent, ind_us, "≤ 2");
        println!("{:<12} {:>10} {:>10.3} {:>12.3} {:>8}", "chain", args.chain, chain, chain_us, "≤ 5");
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
    check_sizes(args.n, args.tile);
    let n = usize::try_from(args.n)?;
    let tile = usize::try_from(args.tile)?;
    let rt = Arc::new(runtime(&args.common, None)?);
    let workers = rt.processors().len();
    let entries = SpdMatrix { n, seed: 1 };
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut tasks = 0;
    for rep in 0..args.reps {
        let a = TiledMatrix::generate(&rt, "A", n, tile, args.dtype, entries)?;
        rt.wait_all()?;
        let progress = ProgressLine::start(Arc::clone(&rt), "tessera cholesky");
        let start = Instant::now();
        tasks = tiled_cholesky(&rt, &a)?;
        rt.wait_all()?;
        ours.push(start.elapsed().as_secs_f64());
        drop(progress);
        let probe = rt.submit(Task::closure("probe", |_| Ok(())).read(a.tile(a.nt - 1, a.nt - 1)))?;
        rt.wait(&probe)?;
        drop(a);

        let seconds = match args.dtype {
            DType::F64 => faer_cholesky::<f64>(n, entries, workers, |x| x)?,
            DType::F32 => faer_cholesky::<f32>(n, entries, workers, |x| x as f32)?,
        };
        theirs.push(seconds);
        eprintln!(
            "rep {}/{}: tessera {:.3} s, faer {:.3} s",
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
    if args.common.json {
        let out = serde_json::json!({
            "n": n,
            "tile": tile,
            "dtype": args.dtype.name(),
            "workers": workers,
            "reps": args.reps,
            "tasks": tasks,
            "tessera_seconds": t_ours,
            "tessera_gflops": g_ours,
            "baseline": "faer cholesky_in_place, Par::rayon(workers)",
            "baseline_seconds": t_theirs,
            "baseline_gflops": g_theirs,
            "ratio": ratio,
        });
        println!("{out}");
    } else {
        println!("{:<28} {:>10} {:>10}", "implementation", "seconds", "GFLOP/s");
        println!("{:<28} {:>10.3} {:>10.1}", format!("tessera tiled ({tasks} tasks)"), t_ours, g_ours);
        println!("{:<28} {:>10.3} {:>10.1}", format!("faer parallel ({workers} threads)"), t_theirs, g_theirs);
        println!("ratio tessera/faer: {ratio:.3} (target ≥ 0.9), n={n} tile={tile} {}", args.dtype);
    }
    Ok(())
}

/// faer's blocked parallel Cholesky on the full matrix; returns seconds of
/// the factorisation alone, after checking it succeeded.
fn faer_cholesky<T: tessera_core::kernels::Real>(
    n: usize,
    entries: SpdMatrix,
    threads: usize,
    cast: impl Fn(f64) -> T,
) -> Result<f64, Box<dyn std::error::Error>> {
    let mut m: Mat<T> = Mat::from_fn(n, n, |i, j| if i >= j { cast(entries.entry(i, j)) } else { cast(0.0) });
    let par = Par::rayon(threads);
    let mut buf = MemBuffer::new(cholesky_in_place_scratch::<T>(n, par, Default::default()));
    let stack = MemStack::new(&mut buf);
    let start = Instant::now();
    cholesky_in_place(m.as_mut(), Default::default(), par, stack, Default::default())
        .map_err(|e| format!("faer baseline failed: {e:?}"))?;
    Ok(start.elapsed().as_secs_f64())
}
