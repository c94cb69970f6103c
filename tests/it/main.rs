//! Integration tests: one binary, one module a feature area.

mod ais;
mod amx;
mod analysis;
mod cd;
mod centering;
mod cli;
mod compose;
mod dbnbound;
mod deep;
mod derive;
mod enumerate;
mod exact;
mod exec;
mod front;
mod fuzz;
mod interp;
mod jit;
mod jitdiff;
mod mlp;
mod pool;
mod pretrain3;
mod props;
mod runtime;
mod train;
mod ui;
