//! # tessera-examples: applications on Tessera
//!
//! Each module is a small program written against the public API only, the
//! way a user would write it. The tiled Cholesky lives in
//! [`tessera::linalg`] because the `tessera` command runs it; the apps here
//! show other shapes of work.
//!
//! - [`reduce`]: a tiled dot product as a tree of closure tasks.

pub mod reduce;
