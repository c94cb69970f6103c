//! Derivation: turns an analysed model into a Plan: conditionals, free energy, mean-field
//! updates and gradient statistics (semantics in `plan`).
//!
//! Invariant: never panics on a model `sema` accepted; what cannot be derived is a diagnostic
//! (E041x) naming the blocking term.

pub mod coef;
pub mod plan;

pub use coef::*;
pub use plan::*;
