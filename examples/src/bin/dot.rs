//! `cargo run --release -p tessera-examples --bin dot -- [LEN] [TILE]`:
//! a tiled dot product, checked against a sequential sum.

use std::time::Instant;
use tessera::Runtime;
use tessera_examples::reduce::dot;

fn main() {
    let mut args = std::env::args().skip(1);
    let parse = |a: Option<String>, default: usize| a.map_or(Ok(default), |s| s.parse::<usize>());
    let (len, tile) = match (parse(args.next(), 10_000_000), parse(args.next(), 100_000)) {
        (Ok(l), Ok(t)) if l > 0 && t > 0 => (l, t),
        _ => {
            eprintln!("usage: dot [LEN > 0] [TILE > 0]");
            std::process::exit(2);
        }
    };
    let run = || -> Result<(), tessera::RuntimeError> {
        let rt = Runtime::builder().build()?;
        let x: Vec<f64> = (0..len).map(|i| (i % 1000) as f64 * 1e-3).collect();
        let y: Vec<f64> = (0..len).map(|i| ((i * 7) % 13) as f64).collect();
        let start = Instant::now();
        let got = dot(&rt, &x, &y, tile)?;
        let t = start.elapsed().as_secs_f64();
        let want: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        println!("dot of {len} elements in tiles of {tile}: {got} (sequential {want}), {t:.3} s");
        if (got - want).abs() > 1e-9 * want.abs() {
            eprintln!("mismatch");
            std::process::exit(1);
        }
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("dot: error: {e}");
        std::process::exit(1);
    }
}
