//! `tessera bench outofcore`: tiled Cholesky with a host budget a fraction
//! of the matrix, spilling to disk, against the same factorisation in RAM,
//! in the same run; the out-of-core result is checked by its residual.

use super::{runtime, CliResult, CommonArgs, OutOfCoreArgs};
use std::time::Instant;
use tessera::linalg::{residual, CholeskyOrder, SpdMatrix, TiledMatrix};
use tessera::HostUsage;

/// One factorisation's outcome.
struct Factorised {
    seconds: f64,
    residual: Option<f64>,
    usage: HostUsage,
    order: CholeskyOrder,
}

/// Factorises once on a runtime built from `common`, in the order that
/// suits its memory (as `tessera run cholesky` picks); seconds, residual
/// (if asked), the host tier's account and the order.
fn factorise(
    common: &CommonArgs,
    n: usize,
    tile: usize,
    dtype: tessera::DType,
    check: bool,
) -> Result<Factorised, Box<dyn std::error::Error>> {
    let rt = runtime(common, None)?;
    let entries = SpdMatrix { n, seed: 1 };
    let a = TiledMatrix::generate(&rt, "A", n, tile, dtype, entries)?;
    rt.wait_all()?;
    let start = Instant::now();
    let order = CholeskyOrder::for_memory(&rt, &a);
    order.submit(&rt, &a)?;
    rt.wait_all()?;
    let seconds = start.elapsed().as_secs_f64();
    if rt.progress().failed > 0 {
        return Err("a Cholesky task failed".into());
    }
    let usage = rt.host_usage();
    let checked = if check {
        Some(residual(&rt, &a, entries)?)
    } else {
        None
    };
    Ok(Factorised {
        seconds,
        residual: checked,
        usage,
        order,
    })
}

pub fn run(args: &OutOfCoreArgs) -> CliResult {
    let (n, tile) = args.matrix.sizes()?;
    if !(args.fraction > 0.0 && args.fraction <= 1.0) {
        return Err(format!("--fraction {} must be in (0, 1]", args.fraction).into());
    }
    let dtype = args.matrix.dtype;
    let nt = n.div_ceil(tile);
    // The stored lower triangle of tiles.
    let matrix_bytes = (nt * (nt + 1) / 2 * tile * tile * dtype.size_bytes()) as u64;
    let budget = ((matrix_bytes as f64) * args.fraction) as u64;
    let in_core = CommonArgs {
        host_mem: None,
        spill_dir: None,
        ..args.common.clone()
    };
    let out_of_core = CommonArgs {
        host_mem: Some(budget.max(1)),
        spill_dir: Some(
            args.common
                .spill_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir),
        ),
        ..args.common.clone()
    };
    let t_in = factorise(&in_core, n, tile, dtype, false)?.seconds;
    let Factorised {
        seconds: t_out,
        residual: r,
        usage,
        order,
    } = factorise(&out_of_core, n, tile, dtype, true)?;
    let flops = {
        let n = n as f64;
        n * n * n / 3.0 + n * n / 2.0 + n / 6.0
    };
    let ratio = t_in / t_out;
    if args.common.json {
        println!(
            "{}",
            serde_json::json!({
                "n": n, "tile": tile, "dtype": dtype.name(),
                "matrix_bytes": matrix_bytes, "host_budget": budget,
                "in_core_seconds": t_in, "out_of_core_seconds": t_out,
                "in_core_gflops": flops / t_in / 1e9, "out_of_core_gflops": flops / t_out / 1e9,
                "ratio": ratio, "residual": r, "host": usage,
                "out_of_core_variant": order.name(),
            })
        );
    } else {
        let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
        println!("{:<34} {:>9} {:>9}", "run", "seconds", "GFLOP/s");
        println!("{:<34} {:>9.3} {:>9.1}", "in RAM", t_in, flops / t_in / 1e9);
        println!(
            "{:<34} {:>9.3} {:>9.1}",
            format!(
                "host budget {:.0}% of the matrix, {}",
                args.fraction * 100.0,
                order.name()
            ),
            t_out,
            flops / t_out / 1e9
        );
        println!(
            "matrix {:.1} MiB, budget {:.1} MiB, peak in RAM {:.1} MiB, spilled {:.1} MiB, read back {:.1} MiB",
            mib(matrix_bytes),
            mib(budget),
            mib(usage.peak),
            mib(usage.spilled),
            mib(usage.loaded)
        );
        println!(
            "ratio out-of-core/in-RAM speed: {ratio:.3}; residual {:.2e}",
            r.unwrap_or(f64::NAN)
        );
    }
    let bound = match dtype {
        tessera::DType::F32 => 1e-5,
        tessera::DType::F64 => 1e-13,
    };
    match r {
        Some(r) if r < bound && usage.peak <= budget => Ok(()),
        _ => Err(format!(
            "out-of-core run failed its checks: residual {r:?} (bound {bound:.0e}), peak {} of budget {budget}",
            usage.peak
        )
        .into()),
    }
}
