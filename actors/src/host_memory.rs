//! The host-memory actor: the budget for tile data in host RAM.
//!
//! Every tile's bytes are reserved here when the tile is created and
//! returned when its last handle drops, so the runtime always knows how much
//! host memory its data holds and refuses a tile that would exceed the
//! budget with a clear error instead of letting the process be killed.
//! Pacing tasks against budgets and spilling to disk build on this (#4).

use crate::error::RuntimeError;
use crate::lane::{Input, Lane};
use crate::metrics::{MemorySample, Metrics};
use actix::{Actor, Addr, Context, Handler, Message};
use crossbeam_channel::Sender;
use std::sync::Weak;
use tessera_core::TileId;

/// Asks for `bytes` of the host budget; the answer comes on `reply`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Reserve {
    pub bytes: u64,
    pub reply: Sender<Result<(), RuntimeError>>,
}

/// Returns `bytes` to the host budget.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Release {
    pub bytes: u64,
}

pub(crate) struct HostMemory {
    budget: u64,
    in_use: u64,
    metrics: Addr<Metrics>,
}

impl HostMemory {
    pub fn new(budget: u64, metrics: Addr<Metrics>) -> Self {
        HostMemory {
            budget,
            in_use: 0,
            metrics,
        }
    }

    fn publish(&self) {
        self.metrics.do_send(MemorySample {
            space: "host".to_string(),
            in_use: self.in_use,
            budget: self.budget,
        });
    }
}

impl Actor for HostMemory {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        self.publish();
    }
}

impl Handler<Reserve> for HostMemory {
    type Result = ();

    fn handle(&mut self, msg: Reserve, _: &mut Context<Self>) {
        let would_be = self.in_use.saturating_add(msg.bytes);
        let answer = if would_be > self.budget {
            Err(RuntimeError::HostBudget {
                needed: msg.bytes,
                would_be,
                budget: self.budget,
            })
        } else {
            self.in_use = would_be;
            self.publish();
            Ok(())
        };
        // The asker may have given up; nothing to do then.
        let _ = msg.reply.send(answer);
    }
}

impl Handler<Release> for HostMemory {
    type Result = ();

    fn handle(&mut self, msg: Release, _: &mut Context<Self>) {
        self.in_use = self.in_use.saturating_sub(msg.bytes);
        self.publish();
    }
}

/// Held by each tile: when the tile dies, its bytes go back to the budget
/// and the scheduler forgets its dependency record.
pub(crate) struct HostAccount {
    pub tile: TileId,
    pub bytes: u64,
    pub host: Addr<HostMemory>,
    pub lane: Weak<Lane>,
}

impl Drop for HostAccount {
    fn drop(&mut self) {
        self.host.do_send(Release { bytes: self.bytes });
        if let Some(lane) = self.lane.upgrade() {
            // After shutdown there is nobody left to forget it: fine.
            let _ = lane.post(Input::ForgetTile(self.tile));
        }
    }
}

/// Reads the machine's physical memory, for the default host budget.
pub(crate) fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
