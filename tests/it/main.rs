//! Integration tests: one binary, one module a feature area.

mod analysis;
mod derive;
mod exact;
mod exec;
mod jit;
mod runtime;
