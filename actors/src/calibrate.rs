//! Calibration: measuring what the performance models would otherwise
//! learn slowly or guess.
//!
//! - [`calibrate_ops`] runs each catalogue op a runtime's processors offer,
//!   in both element types, at a few tile orders, several times, with its
//!   inputs already in the processor's memory. The scheduler learns from
//!   exactly those tasks (inputs in place), so the runtime's own model
//!   fills its buckets, and `--perf-model` saves them.
//! - [`measure_links`] times copies between host memory and each device,
//!   large ones for bandwidth and tiny ones for latency, through the
//!   plugin with a pinned host buffer where the plugin can pin (as the
//!   runtime's tiles of a MiB or more are). The runtime uses a measured
//!   host-to-device bandwidth in place of the plugin's figure.
//!
//! `tessera calibrate --perf-model FILE` does both, one runtime per
//! processor kind so every task lands on the kind being measured.

use crate::{Runtime, RuntimeError, Task};
use std::time::Instant;
use tessera_core::processor::ProcessorKind;
use tessera_core::{DType, Op, TileShape};

/// One measured link.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LinkMeasurement {
    pub src: String,
    pub dst: String,
    pub bytes_per_second: f64,
    pub latency_seconds: f64,
    /// Whether the host buffer was pinned.
    pub pinned: bool,
}

/// Bytes of the copies timed for bandwidth.
const LARGE: usize = 64 << 20;
/// Timed repetitions; the fastest counts (the others met interference).
const REPS: usize = 3;

/// The ops calibrated: the selftest's cases, one variant per op (the
/// models key on the op, not its flags).
const OPS: [&str; 6] = ["gemm", "syrk", "trsm left", "potrf", "getrf", "geqrf"];

/// Runs each op at each order in `orders`, `reps` times after one
/// warm-up, on `rt`'s processors, with inputs made resident on a device
/// first where a device will run them. Returns the op tasks run.
pub fn calibrate_ops(rt: &Runtime, orders: &[usize], reps: usize) -> Result<usize, RuntimeError> {
    let mut ran = 0;
    for &n in orders {
        for dtype in [DType::F64, DType::F32] {
            for case in crate::selftest::cases(n.max(1)) {
                if !OPS.contains(&case.name)
                    || !rt
                        .processors()
                        .iter()
                        .any(|p| p.supports(case.op.name(), Some(dtype)))
                {
                    continue;
                }
                for _ in 0..=reps {
                    run_once(rt, &case, dtype)?;
                    ran += 1;
                }
            }
        }
    }
    Ok(ran)
}

/// One run of `case` on fresh tiles (the factorisations destroy theirs).
fn run_once(rt: &Runtime, case: &crate::selftest::Case, dtype: DType) -> Result<(), RuntimeError> {
    let mut tiles = Vec::new();
    let mut task = Task::op(case.op.clone());
    for (v, shape) in &case.inputs {
        let t = rt.tile(crate::selftest::data(dtype, v), *shape)?;
        task = task.read(&t);
        tiles.push(t);
    }
    let (out0, shape) = &case.output;
    let out = rt.tile(crate::selftest::data(dtype, out0), *shape)?;
    tiles.push(out.clone());
    if case.op.factors_first_argument() {
        let k = shape.rows.min(shape.cols);
        let second = rt.tile(
            tessera_core::TileData::zeros(dtype, TileShape::new(k, 1)),
            TileShape::new(k, 1),
        )?;
        task = task.read_write(&out).write(&second);
    } else if case.op.output_is_read() {
        task = task.read_write(&out);
    } else {
        task = task.write(&out);
    }
    // Inputs in place before the task is placed, or it is not learned
    // from: on a device, a gemm that adds nothing reads each tile there
    // first (this works on devices without copy streams, which do not
    // prefetch).
    if rt.processors().iter().any(|p| p.kind != ProcessorKind::Cpu) {
        for t in &tiles {
            let shape = t.shape();
            let scratch = rt.tile(
                tessera_core::TileData::zeros(dtype, TileShape::new(shape.rows, shape.rows)),
                TileShape::new(shape.rows, shape.rows),
            )?;
            let touch = Task::op(Op::Gemm {
                trans_a: false,
                trans_b: true,
                alpha: 0.0,
                beta: 1.0,
            })
            .read(t)
            .read(t)
            .read_write(&scratch);
            let h = rt.submit(touch)?;
            rt.wait(&h)?;
        }
    }
    let handle = rt.submit(task)?;
    rt.wait(&handle)
}

/// Times host-to-device and device-to-host copies of every device of `rt`.
pub fn measure_links(rt: &Runtime) -> Result<Vec<LinkMeasurement>, String> {
    let mut out = Vec::new();
    for mem in rt.device_memories() {
        let plugin = &mem.plugin;
        let (device, stream) = (mem.device, mem.copy_stream);
        let mut host = vec![1u8; LARGE];
        // SAFETY: `host` outlives the registration, removed below.
        let pinned = unsafe { plugin.host_register(host.as_mut_ptr(), LARGE as u64) }.is_ok();
        let buffer = plugin
            .alloc(device, LARGE as u64)
            .map_err(|e| format!("calibration: allocating on {}: {e}", mem.name))?;
        let timed = |f: &dyn Fn() -> Result<(), String>| -> Result<f64, String> {
            f()?;
            let mut best = f64::INFINITY;
            for _ in 0..REPS {
                let t = Instant::now();
                f()?;
                best = best.min(t.elapsed().as_secs_f64());
            }
            Ok(best)
        };
        let err =
            |e: tessera_plugin::PluginError| format!("calibration: copying with {}: {e}", mem.name);
        let host_ptr = host.as_mut_ptr();
        let h2d = |len: usize| -> Result<(), String> {
            // SAFETY: `host` holds `len` bytes and outlives the synchronised copy.
            unsafe { plugin.copy_h2d(device, stream, buffer, host_ptr.cast_const(), len as u64) }
                .map_err(err)?;
            plugin.stream_sync(device, stream).map_err(err)
        };
        let d2h = |len: usize| -> Result<(), String> {
            // SAFETY: as above; nothing else reads `host` meanwhile.
            unsafe { plugin.copy_d2h(device, stream, host_ptr, buffer, len as u64) }
                .map_err(err)?;
            plugin.stream_sync(device, stream).map_err(err)
        };
        let result = (|| -> Result<(), String> {
            let (up_large, up_small) = (timed(&|| h2d(LARGE))?, timed(&|| h2d(8))?);
            let (down_large, down_small) = (timed(&|| d2h(LARGE))?, timed(&|| d2h(8))?);
            for (src, dst, large, small) in [
                ("host", mem.name.as_str(), up_large, up_small),
                (mem.name.as_str(), "host", down_large, down_small),
            ] {
                out.push(LinkMeasurement {
                    src: src.to_string(),
                    dst: dst.to_string(),
                    bytes_per_second: LARGE as f64 / (large - small).max(1e-9),
                    latency_seconds: small,
                    pinned,
                });
            }
            Ok(())
        })();
        plugin.free(device, buffer);
        if pinned {
            plugin.host_unregister(host.as_ptr() as usize);
        }
        result?;
    }
    Ok(out)
}
