//! `tessera run cholesky`: the main job.

use super::progress::ProgressLine;
use super::{runtime, CholeskyArgs, CliResult};
use std::sync::Arc;
use std::time::Instant;
use tessera::linalg::{residual, CholeskyOrder, SpdMatrix, TiledMatrix};

pub fn run(args: &CholeskyArgs) -> CliResult {
    let (n, tile) = args.matrix.sizes()?;
    let rt = Arc::new(runtime(&args.common, args.metrics.as_deref())?);
    if let Some(addr) = rt.metrics_addr() {
        eprintln!("metrics: http://{addr}/metrics");
    }
    let entries = SpdMatrix { n, seed: args.seed };
    let a = TiledMatrix::generate(&rt, "A", n, tile, args.matrix.dtype, entries)?;
    rt.wait_all()?;
    let progress = ProgressLine::start(Arc::clone(&rt), "cholesky");
    let start = Instant::now();
    let order = match args.variant.as_str() {
        "left" => CholeskyOrder::LeftLooking,
        "right" => CholeskyOrder::RightLooking,
        _ => CholeskyOrder::for_memory(&rt, &a),
    };
    let tasks = order.submit(&rt, &a)?;
    rt.wait_all()?;
    let seconds = start.elapsed().as_secs_f64();
    // A failed panel cancels the rest: report the cause, not a speed.
    let last =
        rt.submit(tessera::Task::closure("probe", |_| Ok(())).read(a.tile(a.nt - 1, a.nt - 1)))?;
    rt.wait(&last)?;
    let residual = if args.check {
        Some(residual(&rt, &a, entries)?)
    } else {
        None
    };
    drop(progress);
    let gflops = a.cholesky_flops() / seconds / 1e9;
    let host = rt.host_usage();
    if args.common.json {
        let out = serde_json::json!({
            "n": n,
            "tile": tile,
            "dtype": args.matrix.dtype.name(),
            "workers": rt.processors().len(),
            "seconds": seconds,
            "gflops": gflops,
            "residual": residual,
            "tasks": tasks,
            "variant": order.name(),
            "host": host,
        });
        println!("{out}");
    } else {
        println!(
            "{:>7} {:>6} {:>6} {:>7} {:>8} {:>8} {:>10} {:>10}",
            "n", "tile", "dtype", "variant", "tasks", "seconds", "GFLOP/s", "residual"
        );
        let r = residual.map_or("-".to_string(), |r| format!("{r:.2e}"));
        println!(
            "{:>7} {:>6} {:>6} {:>7} {:>8} {:>8.3} {:>10.1} {:>10}",
            n,
            tile,
            args.matrix.dtype.name(),
            order.name(),
            tasks,
            seconds,
            gflops,
            r
        );
        if host.spill_path.is_some() {
            let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
            println!(
                "host tier: budget {:.2} GiB, peak {:.2} GiB in RAM, {:.2} GiB spilled to disk, {:.2} GiB read back",
                gib(host.budget),
                gib(host.peak),
                gib(host.spilled),
                gib(host.loaded)
            );
        }
    }
    if let Some(r) = residual {
        let bound = match args.matrix.dtype {
            tessera::DType::F32 => 1e-5,
            tessera::DType::F64 => 1e-13,
        };
        if r.is_nan() || r >= bound {
            return Err(format!(
                "residual {r:.3e} is above {bound:.0e}: the factorisation is wrong"
            )
            .into());
        }
    }
    Ok(())
}
