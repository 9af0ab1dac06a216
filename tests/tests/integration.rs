//! Integration tests across crates, in one binary so CI links once.

mod integration {
    /// A tiled Cholesky submitter: `linalg::cholesky` or
    /// `linalg::cholesky_left_looking`.
    type Factorise = fn(
        &tessera::Runtime,
        &tessera::linalg::TiledMatrix,
    ) -> Result<usize, tessera::RuntimeError>;

    mod cholesky;
    mod datasets;
    mod devices;
    mod faults;
    mod lifecycle;
    mod metrics;
    mod objects;
    mod outofcore;
    mod plugins;
    mod properties;
    mod record;
    mod wgpu;
}
