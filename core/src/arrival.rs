//! When a task's inputs would arrive in a memory space, with copies queued
//! on links: the copy model every policy shares, and the simulator runs.
//!
//! A copy between two memory spaces holds one or two shared resources
//! ([`LinkModel`]): within a node, the link of its (source, destination)
//! pair (a GPU's PCIe and its NVLink are separate); between nodes, the
//! sending node's network interface and the receiving node's. It starts
//! when they are all free, after what they already carry
//! ([`LinkState`]) and what the same decision queued on them first
//! ([`LinkClock`]). Copies run beside compute (the runtime prefetches a
//! placed task's inputs while earlier tasks run), so a task can start when
//! both its processor and its inputs are ready: its finish is
//! `max(queue, arrival) + work`, not the sum.
//!
//! Where the caller knows no links (the runtime, today), every copy into a
//! space shares one link at the processor's `copy_bandwidth`: a decision's
//! copies then add up, as they did before links had queues.

use crate::processor::MemorySpaceId;

/// "No second resource" in a route.
const NONE: u32 = u32::MAX;

/// A pair of spaces in [`LinkModel`]'s table.
#[derive(Debug, Clone, Copy)]
struct Pair {
    route: [u32; 2],
    per_byte: f64,
}

/// The links of a machine: which resources a copy between two memory
/// spaces holds, and how fast it goes.
#[derive(Debug, Clone)]
pub struct LinkModel {
    /// Per pair of spaces (`src * spaces + dst`, one flat table since
    /// every estimate looks pairs up): the one or two resources a copy
    /// holds (the second [`NONE`] where there is one), and seconds per
    /// byte.
    pairs: Vec<Pair>,
    spaces: usize,
    /// `bandwidth[src][dst]`, bytes/s.
    pub bandwidth: Vec<Vec<f64>>,
    /// Seconds added to every copy.
    pub latency: f64,
    /// How many resources there are: the pair links, then each node's
    /// network interface out, then each node's in.
    pub resources: usize,
    pair_links: usize,
    nodes: usize,
    /// The node of each space.
    pub node: Vec<usize>,
    /// Per space, the fastest rate into it from any other, and from any
    /// on another node: no copy there is faster, which bounds estimates
    /// from below.
    pub fastest_in: Vec<f64>,
    pub fastest_remote_in: Vec<f64>,
}

impl LinkModel {
    /// Links between spaces on the nodes `node` gives (one entry per
    /// space): a resource per ordered pair of spaces on one node, and an
    /// outgoing and an incoming network interface per node.
    pub fn new(bandwidth: Vec<Vec<f64>>, latency: f64, node: &[usize]) -> Self {
        let spaces = bandwidth.len();
        let nodes = node.iter().max().map_or(1, |n| n + 1);
        let mut next = 0u32;
        let mut route = vec![vec![[NONE, NONE]; spaces]; spaces];
        for (src, row) in route.iter_mut().enumerate() {
            for (dst, r) in row.iter_mut().enumerate() {
                if src != dst && node[src] == node[dst] {
                    *r = [next, NONE];
                    next += 1;
                }
            }
        }
        let nic_out = |n: usize| next + n as u32;
        let nic_in = |n: usize| next + (nodes + n) as u32;
        for (src, row) in route.iter_mut().enumerate() {
            for (dst, r) in row.iter_mut().enumerate() {
                if node[src] != node[dst] {
                    *r = [nic_out(node[src]), nic_in(node[dst])];
                }
            }
        }
        let pairs = route
            .iter()
            .zip(&bandwidth)
            .flat_map(|(routes, rates)| {
                routes.iter().zip(rates).map(|(route, rate)| Pair {
                    route: *route,
                    per_byte: 1.0 / rate,
                })
            })
            .collect();
        LinkModel {
            pairs,
            spaces,
            latency,
            resources: next as usize + 2 * nodes,
            pair_links: next as usize,
            nodes,
            node: node.to_vec(),
            fastest_in: (0..spaces)
                .map(|dst| {
                    (0..spaces)
                        .filter(|src| *src != dst)
                        .map(|src| bandwidth[src][dst])
                        .fold(0.0, f64::max)
                })
                .collect(),
            fastest_remote_in: (0..spaces)
                .map(|dst| {
                    (0..spaces)
                        .filter(|src| node[*src] != node[dst])
                        .map(|src| bandwidth[src][dst])
                        .fold(0.0, f64::max)
                })
                .collect(),
            bandwidth,
        }
    }

    /// How many nodes the spaces are on.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// The resource of node `node`'s network interface out.
    pub fn nic_out(&self, node: usize) -> usize {
        self.pair_links + node
    }

    /// The resource of node `node`'s network interface in.
    pub fn nic_in(&self, node: usize) -> usize {
        self.pair_links + self.nodes + node
    }

    /// The resources a copy from `src` to `dst` holds.
    pub fn route(&self, src: usize, dst: usize) -> impl Iterator<Item = usize> + '_ {
        self.pairs[src * self.spaces + dst]
            .route
            .into_iter()
            .filter(|r| *r != NONE)
            .map(|r| r as usize)
    }

    /// When the links a copy from `src` to `dst` holds are all free, given
    /// when each resource is (`free`).
    pub fn free_at(&self, src: usize, dst: usize, free: impl Fn(usize) -> f64) -> f64 {
        self.route(src, dst).map(free).fold(0.0, f64::max)
    }

    /// Seconds a copy of `bytes` from `src` to `dst` holds its links.
    pub fn seconds(&self, src: usize, dst: usize, bytes: f64) -> f64 {
        self.latency + bytes * self.pairs[src * self.spaces + dst].per_byte
    }
}

/// The links' queues at a decision: seconds from now until each resource
/// of `model` is free.
#[derive(Debug, Clone)]
pub struct LinkState<'a> {
    pub model: &'a LinkModel,
    pub free: Vec<f64>,
}

impl<'a> LinkState<'a> {
    /// `model`'s links with nothing queued.
    pub fn idle(model: &'a LinkModel) -> Self {
        LinkState {
            model,
            free: vec![0.0; model.resources],
        }
    }

    /// When a copy of `bytes` from `src` to `dst` would arrive, seconds
    /// from now, were it the only one queued now.
    pub fn arrival(&self, src: usize, dst: usize, bytes: f64) -> f64 {
        let start = self
            .model
            .free_at(src, dst, |r| self.free.get(r).copied().unwrap_or(0.0));
        start + self.model.seconds(src, dst, bytes)
    }
}

/// The links during one decision: the caller's [`LinkState`] (if any) and
/// the copies the decision queued since, per resource.
#[derive(Debug, Clone)]
pub struct LinkClock<'a> {
    state: Option<&'a LinkState<'a>>,
    /// Resource → when it is free again, for those the decision used.
    queued: Vec<(usize, f64)>,
}

impl<'a> LinkClock<'a> {
    pub fn new(state: Option<&'a LinkState<'a>>) -> Self {
        Self::with_scratch(state, Vec::new())
    }

    /// A clock whose queue reuses `scratch`'s allocation (a list policy
    /// estimates a task on every processor: one buffer serves them all).
    pub fn with_scratch(state: Option<&'a LinkState<'a>>, mut scratch: Vec<(usize, f64)>) -> Self {
        scratch.clear();
        LinkClock {
            state,
            queued: scratch,
        }
    }

    /// The buffer back, for [`Self::with_scratch`].
    pub fn into_scratch(self) -> Vec<(usize, f64)> {
        self.queued
    }

    /// When `resource` is free, seconds from now.
    fn free(&self, resource: usize) -> f64 {
        match self.queued.iter().find(|(r, _)| *r == resource) {
            Some((_, at)) => *at,
            None => self
                .state
                .and_then(|s| s.free.get(resource).copied())
                .unwrap_or(0.0),
        }
    }

    fn set(&mut self, resource: usize, at: f64) {
        match self.queued.iter_mut().find(|(r, _)| *r == resource) {
            Some(entry) => entry.1 = at,
            None => self.queued.push((resource, at)),
        }
    }

    /// Seconds from now until a copy from `src` to `dst` could start,
    /// behind what the decision queued too (0 without a link state).
    pub fn wait(&self, src: MemorySpaceId, dst: MemorySpaceId) -> f64 {
        let Some(state) = self.state else {
            return 0.0;
        };
        let (src, dst) = (src.0 as usize, dst.0 as usize);
        let spaces = state.model.bandwidth.len();
        if src >= spaces || dst >= spaces {
            return 0.0;
        }
        state.model.free_at(src, dst, |r| self.free(r))
    }

    /// Queues a copy of `bytes` held in `holders` into `dst` on the links
    /// that deliver it first; returns when it arrives, seconds from now.
    /// Without a link state every copy into `dst` shares one link at
    /// `bandwidth`.
    pub fn copy(
        &mut self,
        bytes: u64,
        holders: &[MemorySpaceId],
        dst: MemorySpaceId,
        bandwidth: f64,
    ) -> f64 {
        self.copy_from(bytes, holders.iter().map(|h| (*h, 0.0)), dst, bandwidth)
    }

    /// [`Self::copy`] from `sources`, each with when it holds the data
    /// (a replica another copy is still bringing sends once it is there).
    pub fn copy_from(
        &mut self,
        bytes: u64,
        sources: impl Iterator<Item = (MemorySpaceId, f64)>,
        dst: MemorySpaceId,
        bandwidth: f64,
    ) -> f64 {
        let bytes = bytes as f64;
        let dst = dst.0 as usize;
        let Some(state) = self.state else {
            // Past the state's resources, one per destination.
            let link = usize::MAX - dst;
            let at = self.free(link) + bytes / bandwidth;
            self.set(link, at);
            return at;
        };
        let model = state.model;
        let spaces = model.bandwidth.len();
        let mut best: Option<(usize, f64)> = None;
        for (h, held) in sources {
            let src = h.0 as usize;
            if src >= spaces || dst >= spaces {
                continue;
            }
            let pair = model.pairs[src * spaces + dst];
            let seconds = model.latency + bytes * pair.per_byte;
            // No queue makes a copy faster than its link alone: past the
            // best so far, the holder needs no queue lookup (replicas
            // spread over a cluster make this the common case).
            if best.is_some_and(|(_, b)| held + seconds >= b) {
                continue;
            }
            let [first, second] = pair.route;
            let mut start = held.max(self.free(first as usize));
            if second != NONE {
                start = start.max(self.free(second as usize));
            }
            let at = start + seconds;
            if best.is_none_or(|(_, b)| at < b) {
                best = Some((src, at));
            }
        }
        let Some((src, at)) = best else {
            // Held nowhere the model knows: charge `bandwidth`, no link.
            return bytes / bandwidth;
        };
        for r in model.route(src, dst) {
            self.set(r, at);
        }
        at
    }

    /// Seconds a copy of `bytes` into `dst` holds the fastest link from
    /// its holders, waits aside: what a later copy on that link waits for
    /// it.
    pub fn occupancy(
        &self,
        bytes: u64,
        holders: &[MemorySpaceId],
        dst: MemorySpaceId,
        bandwidth: f64,
    ) -> f64 {
        let bytes = bytes as f64;
        let Some(state) = self.state else {
            return bytes / bandwidth;
        };
        let model = state.model;
        let dst = dst.0 as usize;
        holders
            .iter()
            .map(|h| h.0 as usize)
            .filter(|src| *src < model.bandwidth.len() && dst < model.bandwidth.len())
            .map(|src| model.seconds(src, dst, bytes))
            .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.min(s))))
            .unwrap_or(bytes / bandwidth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two nodes: host 0, GPU 1 (node 0); host 2, GPU 3 (node 1). PCIe 10
    /// B/s, network 5 B/s, no latency.
    fn model() -> LinkModel {
        let node = [0, 0, 1, 1];
        let bw = (0..4)
            .map(|a| {
                (0..4)
                    .map(|b| if node[a] == node[b] { 10.0 } else { 5.0 })
                    .collect()
            })
            .collect();
        LinkModel::new(bw, 0.0, &node)
    }

    #[test]
    fn routes_hold_a_pair_link_within_a_node_and_two_interfaces_between() {
        let m = model();
        // Pairs: (0,1), (1,0), (2,3), (3,2); then out 0, out 1, in 0, in 1.
        assert_eq!(m.resources, 8);
        assert_eq!(m.route(0, 1).collect::<Vec<_>>(), vec![0]);
        assert_eq!(m.route(0, 3).collect::<Vec<_>>(), vec![4, 7]);
        assert_eq!(m.route(1, 2).collect::<Vec<_>>(), vec![4, 7]);
        assert_eq!(m.route(2, 1).collect::<Vec<_>>(), vec![5, 6]);
        assert_eq!(
            (m.nic_out(0), m.nic_out(1), m.nic_in(0), m.nic_in(1)),
            (4, 5, 6, 7)
        );
    }

    #[test]
    fn copies_queue_behind_the_state_and_each_other_and_pick_the_first_arrival() {
        let m = model();
        let mut free = vec![0.0; m.resources];
        free[0] = 3.0; // host 0 → GPU 1 busy for 3 s
        let state = LinkState { model: &m, free };
        let mut links = LinkClock::new(Some(&state));
        let (h0, gpu1) = (MemorySpaceId(0), MemorySpaceId(1));
        assert_eq!(links.copy(20, &[h0], gpu1, 1.0), 5.0);
        assert_eq!(links.copy(20, &[h0], gpu1, 1.0), 7.0, "behind the first");
        // Held on host 0 and on node 1: the network (idle, 4 s) beats
        // PCIe (free at 7, arriving at 9).
        let h2 = MemorySpaceId(2);
        assert_eq!(links.copy(20, &[h0, h2], gpu1, 1.0), 4.0);
        // Node 1's interface out is now busy: a copy from node 1's GPU to
        // host 0 waits for it, though it is another pair of spaces.
        assert_eq!(links.copy(10, &[MemorySpaceId(3)], h0, 1.0), 6.0);
        assert_eq!(links.occupancy(20, &[h0, h2], gpu1, 1.0), 2.0);
    }

    #[test]
    fn without_a_link_state_every_copy_into_a_space_shares_one_link() {
        let mut links = LinkClock::new(None);
        let (host, other, gpu) = (MemorySpaceId(0), MemorySpaceId(2), MemorySpaceId(1));
        assert_eq!(links.copy(8, &[host], gpu, 4.0), 2.0);
        assert_eq!(links.copy(8, &[other], gpu, 4.0), 4.0);
        assert_eq!(links.copy(8, &[other], MemorySpaceId(3), 4.0), 2.0);
        assert_eq!(links.occupancy(8, &[host], gpu, 4.0), 2.0);
    }
}
