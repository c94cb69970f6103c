//! Integration tests: one binary, one module a feature area.

mod analysis;
mod exact;
mod props;
