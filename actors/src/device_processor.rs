//! Device processors: one thread per plugin device, fed like a CPU
//! processor, running catalogue ops through the plugin.
//!
//! For each task the thread makes every tile valid in the device's memory
//! (copying from host or from another device as the replica states say),
//! launches the op on a compute stream, synchronises, and posts the
//! completion. Replicas stay on the device afterwards, so dependent tasks on
//! the same device find their inputs there.

use crate::cpu_processor::Dispatch;
use crate::device_memory::DeviceMemory;
use crate::kernel::KernelRegistry;
use crate::lane::{run_and_report, Lane};
use crate::mailbox::Mailbox;
use crossbeam_channel::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use tessera_core::op::Side;
use tessera_core::{DType, Op};
use tessera_plugin::abi::{self, dtype_code, op_code, Shape};
use tessera_plugin::OpCall;

/// Starts the threads of processor `index`, which drives `mem`'s device:
/// one per compute stream, all taking tasks from the processor's mailbox,
/// so independent tasks run concurrently on different streams.
pub(crate) fn spawn(
    index: usize,
    mem: Arc<DeviceMemory>,
    mailbox: Arc<Mailbox>,
    lane: Arc<Lane>,
    streams: u32,
    kernels: Arc<KernelRegistry>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::new();
    for stream in 0..streams.max(1) {
        let (mem, mailbox, lane, kernels) = (
            Arc::clone(&mem),
            Arc::clone(&mailbox),
            Arc::clone(&lane),
            Arc::clone(&kernels),
        );
        threads.push(
            std::thread::Builder::new()
                .name(format!("tessera-{}s{stream}", mem.name))
                .spawn(move || serve(index, &mem, &mailbox, &lane, stream, &kernels))?,
        );
    }
    Ok(threads)
}

/// Starts one prefetch thread per host-to-device copy stream of `mem`.
/// Prefetching is best effort: a failed copy (the device full, say) is
/// skipped, and the task that needs the tile copies it itself.
pub(crate) fn spawn_prefetchers(
    mem: &Arc<DeviceMemory>,
    queue: Receiver<crate::tile::Tile>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::new();
    for stream in mem.prefetch_streams() {
        let (mem, queue) = (Arc::clone(mem), queue.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("tessera-{}p{stream}", mem.name))
                .spawn(move || {
                    while let Ok(tile) = queue.recv() {
                        // Only tiles in RAM: a prefetch never loads from
                        // disk. The copy's event guards the host replica
                        // (eviction waits for it): no sync here, so the
                        // staging pipeline never drains.
                        let Some(_pin) = tile.host_tier().try_pin(&tile) else {
                            continue;
                        };
                        let _ = tile.prefetch_to(&mem, stream);
                        // Never synchronised: logged as queued.
                        crate::transfers::settle();
                    }
                })?,
        );
    }
    Ok(threads)
}

fn serve(
    index: usize,
    mem: &Arc<DeviceMemory>,
    mailbox: &Mailbox,
    lane: &Lane,
    stream: u32,
    kernels: &KernelRegistry,
) {
    while let Some(task) = mailbox.recv() {
        if !run_and_report(lane, index, stream, task, |t| run(mem, stream, t, kernels)) {
            return;
        }
    }
}

fn run(
    mem: &Arc<DeviceMemory>,
    stream: u32,
    task: Dispatch,
    kernels: &KernelRegistry,
) -> Result<(), String> {
    if task.body.is_some() {
        // A closure: the runtime has no CPU processor, and this thread is a
        // host thread like any other.
        return crate::cpu_processor::run(task);
    }
    // Copies to the device read the host copies: they must be in RAM.
    let (id, args) = (task.id.0, task.args.clone());
    crate::host_memory::with_tiles_in_ram(id, &args, || run_op(mem, stream, task, kernels))
}

fn run_op(
    mem: &Arc<DeviceMemory>,
    stream: u32,
    task: Dispatch,
    kernels: &KernelRegistry,
) -> Result<(), String> {
    let out_name = task
        .args
        .last()
        .map_or_else(|| "no tile".to_string(), |(t, _)| t.name());
    let context = |e: String| format!("{} on {out_name} on {}: {e}", task.op.name(), mem.name);
    // Held until the task's work is synchronised below, so none of its
    // replicas is evicted under it.
    let _pins = mem
        .pin(&task.args.iter().map(|(t, _)| t).collect::<Vec<_>>())
        .map_err(context)?;
    let mut buffers = Vec::with_capacity(task.args.len());
    let launched = if let Op::Kernel(call) = &task.op {
        let (kernel, label, grid, scalars) = (&call.kernel, &call.label, &call.grid, &call.scalars);
        let handle = kernels
            .get(*kernel, mem.space)
            .ok_or_else(|| context(format!("kernel `{label}` was not compiled for this device")))?;
        for (tile, access) in &task.args {
            buffers.push(
                tile.acquire_on_device(mem, stream, *access)
                    .map_err(context)?,
            );
        }
        let bytes: Vec<u8> = scalars.iter().flat_map(|v| v.to_ne_bytes()).collect();
        time_copies(mem, stream);
        mem.plugin
            .launch_kernel(mem.device, stream, handle, *grid, &buffers, &bytes)
    } else {
        let call = op_call(
            &task.op,
            &task
                .args
                .iter()
                .map(|(t, _)| (t.dtype(), t.shape()))
                .collect::<Vec<_>>(),
        )
        .map_err(context)?;
        for (tile, access) in &task.args {
            buffers.push(
                tile.acquire_on_device(mem, stream, *access)
                    .map_err(context)?,
            );
        }
        time_copies(mem, stream);
        mem.plugin.launch(mem.device, stream, &call, &buffers)
    };
    // Synchronise even after a failed launch: queued copies read host memory.
    let synced = mem.plugin.stream_sync(mem.device, stream);
    // Copies not timed before the launch end by now.
    crate::transfers::settle();
    launched.map_err(|e| context(e.to_string()))?;
    synced.map_err(|e| context(e.to_string()))
}

/// When the run is recorded and this task queued copies, waits for them
/// before the launch so they are logged with their true end. The kernel
/// would wait for them on the stream anyway; only its launch latency is
/// no longer hidden.
fn time_copies(mem: &DeviceMemory, stream: u32) {
    if crate::transfers::pending_timed() {
        let _ = mem.plugin.stream_sync(mem.device, stream);
        crate::transfers::settle();
    }
    // Exact while recording (the copies are done); otherwise when they
    // were queued.
    crate::lane::inputs_ready();
}

/// The ABI form of a catalogue op on tiles of these types and shapes.
pub(crate) fn op_call(
    op: &Op,
    args: &[(DType, tessera_core::TileShape)],
) -> Result<OpCall, String> {
    let (code, flags, alpha, beta) = match op {
        Op::Gemm {
            trans_a,
            trans_b,
            alpha,
            beta,
        } => {
            let mut f = 0;
            if *trans_a {
                f |= abi::FLAG_TRANS_A;
            }
            if *trans_b {
                f |= abi::FLAG_TRANS_B;
            }
            (op_code::GEMM, f, *alpha, *beta)
        }
        Op::Syrk { alpha, beta } => (op_code::SYRK, 0, *alpha, *beta),
        Op::Trsm { side, trans, alpha } => {
            let mut f = 0;
            if *trans {
                f |= abi::FLAG_TRANS_B;
            }
            if *side == Side::Right {
                f |= abi::FLAG_SIDE_RIGHT;
            }
            (op_code::TRSM, f, *alpha, 0.0)
        }
        Op::Potrf => (op_code::POTRF, 0, 1.0, 0.0),
        Op::Axpy { alpha } => (op_code::AXPY, 0, *alpha, 0.0),
        Op::Sum => (op_code::SUM, 0, 1.0, 0.0),
        Op::Getrf => (op_code::GETRF, 0, 1.0, 0.0),
        Op::Geqrf => (op_code::GEQRF, 0, 1.0, 0.0),
        Op::Closure { .. } => return Err("closures run on CPU processors only".into()),
        Op::Kernel(_) => return Err("user kernels launch through launch_kernel".into()),
    };
    if args.len() > abi::MAX_ARGS {
        return Err(format!(
            "{} arguments, the plugin ABI takes at most {}",
            args.len(),
            abi::MAX_ARGS
        ));
    }
    let dtype = match args.first().map(|(d, _)| *d) {
        Some(DType::F32) => dtype_code::F32,
        Some(DType::F64) => dtype_code::F64,
        None => return Err("an op without tiles".into()),
    };
    Ok(OpCall {
        op: code,
        dtype,
        flags,
        alpha,
        beta,
        shapes: args
            .iter()
            .map(|(_, s)| Shape {
                rows: s.rows as u64,
                cols: s.cols as u64,
            })
            .collect(),
    })
}

/// ABI codes of an op name, for support queries.
pub(crate) fn op_code_of(name: tessera_core::OpName) -> Option<u32> {
    use tessera_core::OpName;
    match name {
        OpName::Gemm => Some(op_code::GEMM),
        OpName::Syrk => Some(op_code::SYRK),
        OpName::Trsm => Some(op_code::TRSM),
        OpName::Potrf => Some(op_code::POTRF),
        OpName::Axpy => Some(op_code::AXPY),
        OpName::Sum => Some(op_code::SUM),
        OpName::Getrf => Some(op_code::GETRF),
        OpName::Geqrf => Some(op_code::GEQRF),
        OpName::Closure | OpName::Kernel => None,
    }
}

pub(crate) fn dtype_code_of(d: DType) -> u32 {
    match d {
        DType::F32 => dtype_code::F32,
        DType::F64 => dtype_code::F64,
    }
}
