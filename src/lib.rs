//! ebmc: a compiler for energy-based models.
//!
//! Pipeline (one module a stage; arrows point one way):
//! `syntax` (text -> Ast) -> `sema` (Ast -> ir::Model) -> `analysis` (-> Structure)
//! -> `derive` (-> Plan) -> `interp` (reference execution) / `runtime` (learning, AIS, I/O).
//! See ARCHITECTURE.md for the codemap.

pub mod diag;
pub mod front;
pub mod ir;
pub mod sema;
pub mod syntax;
