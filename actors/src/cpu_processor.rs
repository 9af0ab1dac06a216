//! CPU processors: one thread per core, fed by a crossbeam channel.
//!
//! A CPU processor is an actor in the plain sense (it owns its state, takes
//! messages from its mailbox and answers with messages) but not an actix
//! one: a kernel blocks for milliseconds, and an actix arbiter must never
//! block. It receives `Dispatch`es from the scheduler, runs the kernel or
//! closure with the task's tiles locked, and posts a
//! `Completion` back.

use crate::lane::{run_and_report, Lane};
use crate::task::{Body, Guard, TaskContext};
use crate::tile::Tile;
use crossbeam_channel::{Receiver, TryRecvError};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tessera_core::graph::TaskId;
use tessera_core::kernels::{self, KernelInput};
use tessera_core::{Access, DType, Op};

/// A task placed on a processor.
pub(crate) struct Dispatch {
    pub id: TaskId,
    pub op: Op,
    pub args: Vec<(Tile, Access)>,
    pub body: Option<Body>,
    pub est_seconds: f64,
    /// Element type and flops, when the run time should teach the
    /// performance model (an op whose inputs were all in place).
    pub sample: Option<(DType, f64)>,
}

/// How long an idle processor polls its mailbox before it sleeps: a chain
/// of short dependent tasks then never pays for a thread wake-up, while an
/// idle runtime costs no CPU after this long.
const SPIN: Duration = Duration::from_micros(50);

/// Starts the thread of CPU processor `index`; it exits when its mailbox
/// closes.
pub(crate) fn spawn(
    index: usize,
    mailbox: Receiver<Dispatch>,
    lane: Arc<Lane>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("tessera-cpu{index}"))
        .spawn(move || {
            while let Some(task) = next(&mailbox) {
                if !run_and_report(&lane, index, 0, task, run) {
                    return;
                }
            }
        })
}

fn next(mailbox: &Receiver<Dispatch>) -> Option<Dispatch> {
    let deadline = Instant::now() + SPIN;
    let mut spins = 0u32;
    loop {
        match mailbox.try_recv() {
            Ok(task) => return Some(task),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {}
        }
        spins += 1;
        if spins % 64 == 0 {
            if Instant::now() > deadline {
                return mailbox.recv().ok();
            }
            // Two cores and more threads than cores: let the scheduler run.
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Runs one task with its tiles locked. Panics in closures are caught and
/// become task failures, so the processor survives them. Device processors
/// call it too for closures when the runtime has no CPU processor.
pub(crate) fn run(task: Dispatch) -> Result<(), String> {
    let Dispatch {
        id, op, args, body, ..
    } = task;
    crate::host_memory::with_tiles_in_ram(id.0, &args, || {
        // Bring every tile home first: a device may hold the only valid replica.
        for (tile, access) in &args {
            tile.acquire_on_host(*access)
                .map_err(|e| format!("{} on {}: {e}", op.name(), tile.name()))?;
        }
        crate::lane::inputs_ready();
        match body {
            Some(body) => run_closure(&args, body),
            None => run_kernel(&op, &args),
        }
    })
}

fn run_closure(args: &[(Tile, Access)], body: Body) -> Result<(), String> {
    // Lock each distinct tile once, with the strongest access any argument asks.
    let mut unique: Vec<(&Tile, bool)> = Vec::new();
    let mut slots = Vec::with_capacity(args.len());
    for (tile, access) in args {
        match unique.iter().position(|(t, _)| Arc::ptr_eq(&t.0, &tile.0)) {
            Some(i) => {
                unique[i].1 |= access.writes();
                slots.push(i);
            }
            None => {
                slots.push(unique.len());
                unique.push((tile, access.writes()));
            }
        }
    }
    let guards = unique
        .iter()
        .map(|(t, w)| {
            if *w {
                Guard::Write(t.write())
            } else {
                Guard::Read(t.read())
            }
        })
        .collect();
    let mut ctx = TaskContext { guards, slots };
    let result = match catch_unwind(AssertUnwindSafe(|| body(&mut ctx))) {
        Ok(result) => result,
        Err(panic) => Err(format!("closure panicked: {}", panic_message(&panic))),
    };
    drop(ctx);
    for (tile, writes) in &unique {
        if *writes {
            tile.unpin_if_moved();
        }
    }
    result
}

fn run_kernel(op: &Op, args: &[(Tile, Access)]) -> Result<(), String> {
    let Some(((out_tile, _), inputs)) = args.split_last() else {
        return Err(format!("`{}` has no output tile", op.name()));
    };
    if op.factors_first_argument() {
        return run_factor(op, args);
    }
    // The output is never also an input (rejected at submission), so the
    // write lock below and the read locks never meet.
    let mut unique: Vec<&Tile> = Vec::new();
    for (t, _) in inputs {
        if !unique.iter().any(|u| Arc::ptr_eq(&u.0, &t.0)) {
            unique.push(t);
        }
    }
    let guards: Vec<_> = unique.iter().map(|t| t.read()).collect();
    let views: Vec<KernelInput<'_>> = inputs
        .iter()
        .map(|(t, _)| {
            let slot = unique
                .iter()
                .position(|u| Arc::ptr_eq(&u.0, &t.0))
                .unwrap_or(0);
            KernelInput {
                data: &guards[slot],
                shape: t.shape(),
            }
        })
        .collect();
    let mut out = out_tile.write();
    kernel_result(op, out_tile, || {
        kernels::execute(op, &views, &mut out, out_tile.shape())
    })
}

/// Runs a kernel, turning its error or panic into a task failure that
/// names the op and the tile it wrote.
fn kernel_result(
    op: &Op,
    tile: &Tile,
    kernel: impl FnOnce() -> Result<(), tessera_core::error::KernelError>,
) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(kernel)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{} on {}: {e}", op.name(), tile.name())),
        Err(panic) => Err(format!(
            "{} on {} panicked: {}",
            op.name(),
            tile.name(),
            panic_message(&panic)
        )),
    }
}

/// `getrf`/`geqrf`: both tiles are written (submission rejected them
/// being the same tile).
fn run_factor(op: &Op, args: &[(Tile, Access)]) -> Result<(), String> {
    let [(a_tile, _), (out_tile, _)] = args else {
        return Err(format!("`{}` takes two tiles", op.name()));
    };
    let mut a = a_tile.write();
    let mut out = out_tile.write();
    kernel_result(op, a_tile, || {
        kernels::execute_factor(op, &mut a, a_tile.shape(), &mut out, out_tile.shape())
    })
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}
