//! Integration tests across crates, in one binary so CI links once.

mod integration {
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
