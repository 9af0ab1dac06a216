//! `tessera info`: what this machine offers.

use super::{runtime, CliResult, CommonArgs};

pub fn run(args: &CommonArgs) -> CliResult {
    let rt = runtime(args, None)?;
    if args.json {
        let out = serde_json::json!({
            "processors": rt.processors(),
            "memory_spaces": rt.memory_spaces(),
            "plugins": rt.plugins(),
            "skipped_plugins": rt.skipped_plugins(),
        });
        println!("{out}");
        return Ok(());
    }
    println!("processors:");
    println!(
        "  {:<8} {:<6} {:<8} {:>12} {:>12}  ops",
        "name", "kind", "memory", "GFLOP/s f32", "GFLOP/s f64"
    );
    for p in rt.processors() {
        let ops: Vec<&str> = p.ops.iter().map(|o| o.as_str()).collect();
        let mem = rt
            .memory_spaces()
            .iter()
            .find(|m| m.id == p.memory)
            .map_or("?", |m| m.name.as_str());
        println!(
            "  {:<8} {:<6} {:<8} {:>12.1} {:>12.1}  {}",
            p.name,
            p.kind.as_str(),
            mem,
            p.gflops_f32,
            p.gflops_f64,
            ops.join(",")
        );
    }
    println!("memory spaces:");
    for m in rt.memory_spaces() {
        println!(
            "  {:<8} {:<6} budget {:.2} GiB",
            m.name,
            m.kind.as_str(),
            m.capacity as f64 / (1u64 << 30) as f64
        );
    }
    if rt.plugins().is_empty() {
        println!("plugins: none found (put libtessera_device_*.so next to tessera or in TESSERA_PLUGIN_PATH)");
    } else {
        println!("plugins:");
        for p in rt.plugins() {
            println!(
                "  {:<8} {} devices [{}]  {}",
                p.name,
                p.devices.len(),
                p.devices.join(", "),
                p.path.display()
            );
        }
    }
    for why in rt.skipped_plugins() {
        println!("  skipped: {why}");
    }
    Ok(())
}
