//! Simulated platforms: processors, their memory spaces, and the
//! bandwidth between every pair of spaces.

use crate::arrival::LinkModel;
use crate::dtype::DType;
use crate::op::OpName;
use crate::processor::{MemorySpaceId, ProcessorDesc, ProcessorId, ProcessorKind};

/// Processors and links of a simulated machine or cluster.
#[derive(Debug, Clone)]
pub struct Platform {
    pub name: String,
    pub processors: Vec<ProcessorDesc>,
    /// `bandwidth[src][dst]` in bytes/s between memory spaces
    /// (infinite within a space).
    pub bandwidth: Vec<Vec<f64>>,
    /// Seconds added to every copy.
    pub latency: f64,
    /// Bytes each space holds (`None`: unlimited).
    pub capacity: Vec<Option<u64>>,
    /// The node each space is on. Copies between nodes share each node's
    /// network interface (one copy at a time out of a node and into it);
    /// copies within a node each have their own link.
    pub node: Vec<usize>,
    /// Seconds of work a fast processor takes ahead of now: past it,
    /// ready tasks wait in the ready list, highest priority first, as the
    /// runtime's scheduler keeps them. Infinite by default: every ready
    /// task is placed at once and its copies start (StarPU's `dmdas`
    /// pushes to worker queues so); processors less than half the
    /// fastest's speed take at most [`QUEUE_HORIZON`] ahead, so a CPU
    /// beside GPUs does not hoard work the GPUs will finish sooner.
    pub queue_horizon: f64,
}

pub use crate::policy::QUEUE_HORIZON;

impl Platform {
    /// The first space of `space`'s node: its host memory, where
    /// evictions write back.
    pub fn host_of(&self, space: MemorySpaceId) -> MemorySpaceId {
        self.first_space(self.node[space.0 as usize])
    }

    /// Where data item `d` starts: a host memory. On a cluster the items
    /// of a tile grid (`grid`: tiles per side, tile (i, j) the item
    /// i·grid + j; see [`crate::sim::SimGraph::tile_grid`]) start 2D block-cyclic
    /// over a p × q grid of nodes (p the largest divisor of the node
    /// count at most its square root), as ScaLAPACK and SLATE distribute
    /// a matrix; other items on node `d mod nodes`. On one node, its host
    /// memory.
    pub fn start_space(&self, d: u32, grid: Option<usize>) -> MemorySpaceId {
        let nodes = self.nodes();
        let d = d as usize;
        let node = match grid {
            Some(nt) if d < nt * nt => {
                let p = (1..=nodes)
                    .filter(|p| nodes % p == 0 && p * p <= nodes)
                    .max()
                    .unwrap_or(1);
                let q = nodes / p;
                (d / nt % p) * q + d % nt % q
            }
            _ => d % nodes,
        };
        self.first_space(node)
    }

    /// How many nodes the spaces are on.
    pub fn nodes(&self) -> usize {
        self.node.iter().max().map_or(1, |n| n + 1)
    }

    /// The platform's links as policies and the simulator see them.
    pub fn link_model(&self) -> LinkModel {
        LinkModel::new(self.bandwidth.clone(), self.latency, &self.node)
    }

    /// The first space of node `node` (its host memory).
    fn first_space(&self, node: usize) -> MemorySpaceId {
        let first = self.node.iter().position(|n| *n == node).unwrap_or(0);
        MemorySpaceId(first as u32)
    }
}

/// Sustained rates assumed for the built-in platforms, GFLOP/s in f64: a
/// 32-core CPU socket taken as one processor, and an H100-class GPU.
const CPU_GFLOPS: f64 = 1_500.0;
const GPU_GFLOPS: f64 = 50_000.0;
const PCIE: f64 = 25e9;
const NVLINK: f64 = 150e9;
const NETWORK: f64 = 12.5e9;
/// Between nodes of `cluster-16x4-fast`: a node of four GPUs with a
/// 400 Gb/s NIC per GPU. There a 1024 tile crosses in about the time of a
/// GEMM on it, so the processors, not only the network, set a
/// factorisation's pace (session 12).
const FAST_NETWORK: f64 = 200e9;

fn processor(
    id: usize,
    kind: ProcessorKind,
    name: String,
    memory: usize,
    gflops: f64,
) -> ProcessorDesc {
    ProcessorDesc {
        id: ProcessorId(id as u32),
        kind,
        name,
        memory: MemorySpaceId(memory as u32),
        gflops_f32: gflops * 2.0,
        gflops_f64: gflops,
        ops: OpName::ALL.to_vec(),
        dtypes: vec![DType::F32, DType::F64],
    }
}

/// `nodes` nodes of one CPU and `gpus` GPUs each: a host space and a space
/// per GPU; PCIe between host and GPU, NVLink between GPUs of a node, the
/// network between nodes.
pub fn nodes(nodes: usize, gpus: usize) -> Platform {
    nodes_over(nodes, gpus, NETWORK)
}

/// [`nodes`] with `network` bytes/s between nodes.
pub fn nodes_over(nodes: usize, gpus: usize, network: f64) -> Platform {
    let per_node = 1 + gpus;
    let spaces = nodes * per_node;
    let mut processors = Vec::new();
    for n in 0..nodes {
        let host = n * per_node;
        processors.push(processor(
            processors.len(),
            ProcessorKind::Cpu,
            format!("n{n}.cpu"),
            host,
            CPU_GFLOPS,
        ));
        for g in 0..gpus {
            processors.push(processor(
                processors.len(),
                ProcessorKind::Cuda,
                format!("n{n}.gpu{g}"),
                host + 1 + g,
                GPU_GFLOPS,
            ));
        }
    }
    let bandwidth = (0..spaces)
        .map(|a| {
            (0..spaces)
                .map(|b| {
                    let (na, nb) = (a / per_node, b / per_node);
                    let (ha, hb) = (a % per_node == 0, b % per_node == 0);
                    if a == b {
                        f64::INFINITY
                    } else if na != nb {
                        network
                    } else if ha || hb {
                        PCIE
                    } else {
                        NVLINK
                    }
                })
                .collect()
        })
        .collect();
    Platform {
        name: format!("{nodes}x(1cpu+{gpus}gpu)"),
        processors,
        bandwidth,
        latency: 5e-6,
        capacity: vec![None; spaces],
        node: (0..spaces).map(|s| s / per_node).collect(),
        queue_horizon: f64::INFINITY,
    }
}

/// A built-in platform by name: `node-1cpu-2gpu`, `node-1cpu-4gpu`,
/// `cluster-16x4` (16 nodes of 4 GPUs and a CPU, 12.5 GB/s between
/// nodes), `cluster-16x4-fast` (the same at 200 GB/s), or `cpu` (one
/// node, no GPU).
pub fn builtin(name: &str) -> Result<Platform, String> {
    let mut p = match name {
        "node-1cpu-2gpu" => nodes(1, 2),
        "node-1cpu-4gpu" => nodes(1, 4),
        "cluster-16x4" => nodes(16, 4),
        "cluster-16x4-fast" => nodes_over(16, 4, FAST_NETWORK),
        "cpu" => nodes(1, 0),
        other => {
            return Err(format!(
                "unknown platform `{other}` (node-1cpu-2gpu, node-1cpu-4gpu, cluster-16x4, \
                 cluster-16x4-fast, cpu)"
            ))
        }
    };
    p.name = name.to_string();
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_starts_spread_over_the_nodes_hosts_and_evictions_go_to_the_local_host() {
        let cluster = builtin("cluster-16x4").unwrap();
        // Five spaces a node: the host, then four GPUs.
        assert_eq!(cluster.start_space(0, None), MemorySpaceId(0));
        assert_eq!(cluster.start_space(17, None), MemorySpaceId(5));
        assert_eq!(cluster.start_space(15, None), MemorySpaceId(75));
        // Tiles of a 10 × 10 grid go 2D block-cyclic over 4 × 4 nodes:
        // tile (i, j) to node (i mod 4)·4 + j mod 4; items past the grid
        // as any other.
        let node_of = |d: u32| cluster.start_space(d, Some(10)).0 / 5;
        assert_eq!(node_of(0), 0);
        assert_eq!(node_of(3), 3);
        assert_eq!(node_of(4), 0);
        assert_eq!(node_of(10), 4);
        assert_eq!(node_of(5 * 10 + 7), 4 + 3);
        assert_eq!(node_of(3 * 10 + 2), 12 + 2);
        assert_eq!(node_of(100), 100 % 16);
        let per_node = (0..100).fold([0; 16], |mut n, d| {
            n[node_of(d) as usize] += 1;
            n
        });
        assert!(per_node.iter().all(|n| (4..=9).contains(n)), "{per_node:?}");
        assert_eq!(cluster.host_of(MemorySpaceId(8)), MemorySpaceId(5));
        assert_eq!(cluster.host_of(MemorySpaceId(5)), MemorySpaceId(5));
        // The fast cluster differs only between nodes.
        let fast = builtin("cluster-16x4-fast").unwrap();
        for a in 0..80 {
            for b in 0..80 {
                let (x, y) = (cluster.bandwidth[a][b], fast.bandwidth[a][b]);
                let across = cluster.node[a] != cluster.node[b];
                assert_eq!((x, y) == (12.5e9, 200e9), across, "{a} -> {b}");
                assert!(across || x == y);
            }
        }
        let node = builtin("node-1cpu-2gpu").unwrap();
        assert!((0..100).all(|d| node.start_space(d, Some(10)) == MemorySpaceId(0)));
        assert_eq!(node.host_of(MemorySpaceId(2)), MemorySpaceId(0));
    }
}
