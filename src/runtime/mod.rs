//! Runtime I/O: data sets in, images, checkpoints and metrics out, progress on the terminal.
//! Invariant: this is the only part of the library that touches the disk or prints; every file
//! it writes goes through [`checkpoint::atomic_write`], and every print through [`progress`].
//!
//! - [`data`]: IDX / npy / npz / CSV loaders into a [`data::Dataset`] (rows = examples).
//! - [`batch`]: scaling, binarization, splits, seeded shuffles and mini-batches.
//! - [`image`]: PNG grids of samples and filters.
//! - [`checkpoint`]: named arrays + metadata as `.npz`; `atomic_write`.
//! - [`metrics`]: JSON-lines metrics log and its PNG plot.
//! - [`progress`]: progress bar, status lines, the "wrote: ..." summary.

pub mod batch;
pub mod checkpoint;
pub mod data;
mod font;
pub mod image;
pub mod metrics;
pub mod progress;

pub use checkpoint::{atomic_write, atomic_write_with};
