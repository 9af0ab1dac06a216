//! # tessera-core: the model of work, with no threads and no actors
//!
//! Everything Tessera knows about a computation lives here as plain data and
//! pure functions, so that the runtime (`tessera`, in `actors/`) and the
//! simulator run the very same code:
//!
//! - [`tile`]: dense tiles of data, their logical identity and their replicas
//!   in memory spaces with MSI coherence states;
//! - [`access`] and [`graph`]: tasks name tiles with access modes, and the
//!   [`graph::TaskGraph`] infers dependencies from those modes in submission
//!   order (sequential consistency, as StarPU and Dagger's datadeps do);
//! - [`op`]: the op catalogue, each op with its signature and cost function;
//! - [`kernels`]: the CPU implementations of the tile ops, on faer;
//! - [`processor`]: processors and memory spaces as descriptors;
//! - [`perfmodel`]: op times learned from measurements, robust to outliers;
//! - [`policy`]: scheduling policies as pure code behind one trait, sharing
//!   one copy model ([`arrival`]: copies queue on links beside compute), with
//!   window policies in [`milp`] (HiGHS) and [`metaheuristic`]
//!   (differential evolution), both scoring plans by [`window`];
//! - [`verify`]: factorisations checked by reconstruction;
//! - [`seeded`]: the one small seeded generator for repeatable data;
//! - [`sim`]: a discrete-event simulator driven by the same policies.
//!
//! Vocabulary for StarPU and Dagger.jl users: an *op* is a codelet, a *tile* is
//! a data handle (a Dagger chunk), a *replica* is a copy of a handle in one
//! memory node, a *processor* is a worker (a Dagger processor).
//!
//! ```
//! use tessera_core::access::Access;
//! use tessera_core::graph::{TaskGraph, Submitted};
//! use tessera_core::tile::TileId;
//!
//! let mut graph: TaskGraph<()> = TaskGraph::new();
//! let a = TileId(1);
//! let writer = graph.add((), &[(a, Access::Write)], &[]).unwrap();
//! let reader = graph.add((), &[(a, Access::Read)], &[]).unwrap();
//! assert!(matches!(writer.1, Submitted::Ready));
//! assert!(matches!(reader.1, Submitted::Waiting));
//! // The reader becomes ready once the writer completes.
//! let mut ready = Vec::new();
//! graph.complete(writer.0, &mut ready);
//! assert_eq!(ready, vec![reader.0]);
//! ```

pub mod access;
pub mod arrival;
pub mod dtype;
pub mod error;
pub mod graph;
pub mod kernels;
pub mod metaheuristic;
pub mod milp;
pub mod op;
pub mod perfmodel;
pub mod policy;
pub mod processor;
pub mod seeded;
pub mod sim;
pub mod tile;
pub mod verify;
pub mod window;

pub use access::Access;
pub use dtype::DType;
pub use error::CoreError;
pub use graph::{TaskGraph, TaskId};
pub use op::{KernelCall, Op, OpName};
pub use tile::{TileData, TileId, TileMeta, TileShape};
