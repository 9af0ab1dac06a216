//! A tiled dot product `x·y`, as a map over tiles and a binary tree of
//! combine tasks.
//!
//! Each leaf task reads a tile of `x` and of `y` and writes a 1×1 partial
//! tile; each combine task reads two partials and writes one. No task names
//! another: the dependencies all come from the access modes, so the tree
//! runs as parallel as the machine allows.
//!
//! ```
//! use tessera::Runtime;
//! use tessera_examples::reduce::dot;
//!
//! let rt = Runtime::builder().cpu_workers(2).build()?;
//! let x: Vec<f64> = (0..1000).map(|i| i as f64).collect();
//! let y = vec![2.0; 1000];
//! assert_eq!(dot(&rt, &x, &y, 64)?, 999.0 * 1000.0);
//! # Ok::<(), tessera::RuntimeError>(())
//! ```

use tessera::{Runtime, RuntimeError, Task, Tile, TileData, TileShape};

/// `x·y` computed in tiles of `tile` elements.
pub fn dot(rt: &Runtime, x: &[f64], y: &[f64], tile: usize) -> Result<f64, RuntimeError> {
    if x.len() != y.len() || tile == 0 || x.is_empty() {
        return Err(RuntimeError::Start(format!(
            "dot needs two non-empty vectors of one length and a positive tile (got {}, {}, tile {tile})",
            x.len(),
            y.len()
        )));
    }
    let one = TileShape::new(1, 1);
    let mut partials: Vec<Tile> = Vec::new();
    for (xs, ys) in x.chunks(tile).zip(y.chunks(tile)) {
        let shape = TileShape::new(xs.len(), 1);
        let tx = rt.tile(TileData::F64(xs.to_vec()), shape)?;
        let ty = rt.tile(TileData::F64(ys.to_vec()), shape)?;
        let p = rt.tile(TileData::F64(vec![0.0]), one)?;
        rt.submit(
            Task::closure("dot-leaf", |ctx| {
                let s = match (ctx.tile(0), ctx.tile(1)) {
                    (TileData::F64(a), TileData::F64(b)) => {
                        a.iter().zip(b).map(|(a, b)| a * b).sum()
                    }
                    _ => return Err("dot-leaf expects f64 tiles".into()),
                };
                *ctx.tile_mut(2).ok_or("partial not writable")? = TileData::F64(vec![s]);
                Ok(())
            })
            .read(&tx)
            .read(&ty)
            .write(&p),
        )?;
        partials.push(p);
    }
    while partials.len() > 1 {
        let mut next = Vec::with_capacity(partials.len().div_ceil(2));
        for pair in partials.chunks(2) {
            match pair {
                [a, b] => {
                    rt.submit(
                        Task::closure("dot-combine", |ctx| {
                            let s = ctx.tile(0).get(1, 0, 0) + ctx.tile(1).get(1, 0, 0);
                            *ctx.tile_mut(1).ok_or("partial not writable")? =
                                TileData::F64(vec![s]);
                            Ok(())
                        })
                        .read(a)
                        .read_write(b),
                    )?;
                    next.push(b.clone());
                }
                [a] => next.push(a.clone()),
                _ => {}
            }
        }
        partials = next;
    }
    let result = rt.fetch(&partials[0])?;
    Ok(result.get(1, 0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_sequential_sum_for_ragged_tiles() {
        let rt = Runtime::builder().cpu_workers(2).build().unwrap();
        let x: Vec<f64> = (0..10_007).map(|i| ((i * 37) % 101) as f64 / 7.0).collect();
        let y: Vec<f64> = (0..10_007).map(|i| ((i * 13) % 17) as f64 - 8.0).collect();
        let want: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        for tile in [1, 100, 333, 20_000] {
            let got = dot(&rt, &x, &y, tile).unwrap();
            assert!(
                (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                "tile {tile}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn rejects_mismatched_lengths() {
        let rt = Runtime::builder().cpu_workers(1).build().unwrap();
        assert!(dot(&rt, &[1.0, 2.0], &[1.0], 1).is_err());
        assert!(dot(&rt, &[1.0], &[1.0], 0).is_err());
    }
}
