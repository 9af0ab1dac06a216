//! Property: on random task graphs with random access modes, parallel
//! execution gives exactly the result of running the tasks one by one in
//! submission order.

use proptest::prelude::*;
use tessera::{Access, Runtime, Task, TileData, TileShape};

/// A task: the tiles it touches with modes, and a salt for what it writes.
#[derive(Debug, Clone)]
struct Spec {
    args: Vec<(usize, Access)>,
    salt: u64,
}

fn arb_access() -> impl Strategy<Value = Access> {
    prop_oneof![
        Just(Access::Read),
        Just(Access::Write),
        Just(Access::ReadWrite)
    ]
}

fn arb_specs(tiles: usize) -> impl Strategy<Value = Vec<Spec>> {
    let spec = (
        prop::collection::vec((0..tiles, arb_access()), 0..4),
        any::<u64>(),
    )
        .prop_map(|(mut args, salt)| {
            // One mode per tile per task, as a real task would declare it.
            args.sort_by_key(|(t, _)| *t);
            args.dedup_by_key(|(t, _)| *t);
            Spec { args, salt }
        });
    prop::collection::vec(spec, 1..120)
}

/// What a task does, written once and used by both executions: it mixes
/// the values of every tile it reads into a digest, then writes each tile
/// it writes from that digest (and its old value, for read-write).
fn apply(spec: &Spec, values: &mut [&mut Vec<f64>]) {
    let mut digest = spec.salt as f64 / u64::MAX as f64;
    for ((_, access), v) in spec.args.iter().zip(values.iter()) {
        if access.reads() {
            digest = digest * 1.000_001 + v.iter().sum::<f64>();
        }
    }
    for (k, ((_, access), v)) in spec.args.iter().zip(values.iter_mut()).enumerate() {
        match access {
            Access::Read => {}
            Access::Write => v
                .iter_mut()
                .enumerate()
                .for_each(|(i, x)| *x = digest + (k + i) as f64),
            Access::ReadWrite => v.iter_mut().for_each(|x| *x = 0.5 * *x + digest),
        }
    }
}

const TILES: usize = 6;
const LEN: usize = 3;

fn sequential(specs: &[Spec]) -> Vec<Vec<f64>> {
    let mut tiles: Vec<Vec<f64>> = (0..TILES).map(|t| vec![t as f64; LEN]).collect();
    for spec in specs {
        let mut copies: Vec<Vec<f64>> = spec.args.iter().map(|(t, _)| tiles[*t].clone()).collect();
        let mut refs: Vec<&mut Vec<f64>> = copies.iter_mut().collect();
        apply(spec, &mut refs);
        for ((t, access), v) in spec.args.iter().zip(copies) {
            if access.writes() {
                tiles[*t] = v;
            }
        }
    }
    tiles
}

fn parallel(rt: &Runtime, specs: &[Spec]) -> Vec<Vec<f64>> {
    let shape = TileShape::new(LEN, 1);
    let tiles: Vec<_> = (0..TILES)
        .map(|t| {
            rt.tile(TileData::F64(vec![t as f64; LEN]), shape)
                .expect("tile")
        })
        .collect();
    for spec in specs {
        let s = spec.clone();
        let mut task = Task::closure("prop", move |ctx| {
            let mut copies: Vec<Vec<f64>> = (0..ctx.len())
                .map(|i| match ctx.tile(i) {
                    TileData::F64(v) => v.clone(),
                    TileData::F32(_) => Vec::new(),
                })
                .collect();
            let mut refs: Vec<&mut Vec<f64>> = copies.iter_mut().collect();
            apply(&s, &mut refs);
            for (i, ((_, access), v)) in s.args.iter().zip(copies).enumerate() {
                if access.writes() {
                    *ctx.tile_mut(i).ok_or("not writable")? = TileData::F64(v);
                }
            }
            Ok(())
        });
        for (t, access) in &spec.args {
            task = match access {
                Access::Read => task.read(&tiles[*t]),
                Access::Write => task.write(&tiles[*t]),
                Access::ReadWrite => task.read_write(&tiles[*t]),
            };
        }
        rt.submit(task).expect("submit");
    }
    tiles
        .iter()
        .map(|t| match rt.fetch(t).expect("fetch") {
            TileData::F64(v) => v,
            TileData::F32(_) => Vec::new(),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn parallel_equals_sequential(specs in arb_specs(TILES)) {
        let rt = Runtime::builder().cpu_workers(3).build().expect("runtime");
        let got = parallel(&rt, &specs);
        let want = sequential(&specs);
        prop_assert_eq!(got, want);
        prop_assert_eq!(rt.progress().failed, 0);
    }
}

/// The same property with explicit `after` edges between tasks that share
/// no tile: the later task must observe the earlier one's side effect.
#[test]
fn after_edges_order_tasks_without_shared_tiles() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let rt = Runtime::builder().cpu_workers(2).build().expect("runtime");
    for _ in 0..200 {
        let flag = Arc::new(AtomicU64::new(0));
        let f1 = Arc::clone(&flag);
        let first = rt
            .spawn(move || {
                std::thread::sleep(std::time::Duration::from_micros(50));
                f1.store(1, Ordering::SeqCst);
            })
            .expect("spawn");
        let f2 = Arc::clone(&flag);
        let second = rt
            .submit(
                Task::closure("second", move |_| {
                    if f2.load(Ordering::SeqCst) == 1 {
                        Ok(())
                    } else {
                        Err("ran before its predecessor".into())
                    }
                })
                .after(&first),
            )
            .expect("submit");
        rt.wait(&second).expect("ordered");
    }
}
