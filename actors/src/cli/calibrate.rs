//! `tessera calibrate`: op times and copy links into a model file.

use super::{CalibrateArgs, CliResult};
use tessera::calibrate::{calibrate_ops, measure_links};
use tessera_core::perfmodel::PerfModel;

pub fn run(args: &CalibrateArgs) -> CliResult {
    let Some(path) = args.common.perf_model.clone() else {
        return Err("calibrate needs --perf-model FILE to write the measurements to".into());
    };
    if args.orders.is_empty() || args.orders.contains(&0) {
        return Err("--orders takes positive tile orders, e.g. 256,512,1024".into());
    }
    // Every kind asked for, or the CPU and every plugin found.
    let kinds: Vec<String> = match &args.common.devices {
        Some(k) => k.clone(),
        None => {
            let probe = super::runtime(&args.common, None)?;
            let mut k = vec!["cpu".to_string()];
            k.extend(probe.plugins().iter().map(|p| p.name.clone()));
            k
        }
    };
    let mut links = Vec::new();
    for kind in &kinds {
        // One kind per runtime, so every task lands on it.
        let mut common = args.common.clone();
        common.devices = Some(vec![kind.clone()]);
        let mut b = tessera::Runtime::builder();
        if kind != "cpu" {
            b = b.cpu_workers(0);
        }
        let rt = super::build(&common, None, b)?;
        if !rt
            .processors()
            .iter()
            .any(|p| kind == "cpu" || p.name.starts_with(kind.as_str()))
        {
            return Err(format!("no processor of kind `{kind}` here (see `tessera info`)").into());
        }
        eprintln!("calibrating {kind}: {} processors", rt.processors().len());
        let tasks = calibrate_ops(&rt, &args.orders, usize::try_from(args.reps)?)?;
        let measured = measure_links(&rt)?;
        eprintln!("  {tasks} tasks, {} links", measured.len());
        links.extend(measured);
        // The model is written as the runtime shuts down.
        rt.shutdown()?;
    }
    let mut model = PerfModel::load(&path)?;
    for l in &links {
        model.record_link(&l.src, &l.dst, l.bytes_per_second, l.latency_seconds);
    }
    model.save(&path)?;
    let table = model.table();
    if args.common.json {
        let ops: Vec<serde_json::Value> = table
            .iter()
            .map(|(p, op, dt, flops, secs, n)| {
                serde_json::json!({"processor": p, "op": op.as_str(), "dtype": dt.name(),
                    "flops": flops, "seconds": secs, "gflops": flops / secs / 1e9, "samples": n})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "model": path, "ops": ops, "links": links })
        );
        return Ok(());
    }
    println!(
        "{:<10} {:<7} {:<5} {:>12} {:>12} {:>10} {:>7}",
        "processor", "op", "dtype", "GFLOP", "median s", "GFLOP/s", "samples"
    );
    for (p, op, dt, flops, secs, n) in &table {
        println!(
            "{:<10} {:<7} {:<5} {:>12.3} {:>12.6} {:>10.1} {:>7}",
            p,
            op.as_str(),
            dt.name(),
            flops / 1e9,
            secs,
            flops / secs / 1e9,
            n
        );
    }
    for l in &links {
        println!(
            "link {} -> {}: {:.2} GB/s, {:.1} µs latency{}",
            l.src,
            l.dst,
            l.bytes_per_second / 1e9,
            l.latency_seconds * 1e6,
            if l.pinned { " (pinned)" } else { " (pageable)" }
        );
    }
    println!("saved to {}", path.display());
    Ok(())
}
