//! ebmc: a compiler for energy-based models.
//!
//! Pipeline (one module a stage; arrows point one way):
//! `syntax` (text -> Ast) -> `sema` (Ast -> ir::Model) -> `analysis` (-> Structure)
//! -> `derive` (-> Plan) -> `interp` (reference execution) / `runtime` (learning, AIS, I/O).
//! See ARCHITECTURE.md for the codemap.

pub mod analysis;
pub mod cli;
pub mod derive;
pub mod diag;
pub mod eval;
pub mod exact;
pub mod exec;
pub mod experiment;
pub mod explain;
pub mod front;
pub mod interp;
pub mod ir;
pub mod jit;
pub mod kernel;
pub mod lower;
pub mod mlp;
pub mod runtime;
pub mod sema;
pub mod syntax;
pub mod testgen;
pub mod train;
