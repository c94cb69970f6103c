//! Discriminative fine-tuning (issue 6): a sigmoid MLP with a softmax output, trained by
//! mini-batch back-propagation of the cross-entropy with SGD, momentum and weight decay, and
//! its initialisation from trained energy models read generically off the IR.
//!
//! Invariant: nothing here prints, touches the disk or panics on user input; every user
//! mistake (shapes, labels, settings, a model that is not a chain of sigmoid layers, a corrupt
//! checkpoint) is an [`MlpError`] or [`ExtractLayersError`]. Training is deterministic given
//! the seed, single-threaded, f32. GEMMs go through [`gemm::sgemm`]: a packed AVX-512 kernel
//! where the CPU has AVX-512F, else ndarray's `general_mat_mul` (matrixmultiply);
//! `EBMC_GEMM=matrixmultiply` forces the latter, [`gemm::backend`] says which is in use.
//!
//! # API for the experiment runner
//!
//! ```text
//! // 1. a network: random, or from trained energy models
//! Mlp::random(&[784, 500, 500, 2000, 10], seed) -> Result<Mlp, MlpError>
//! Chain::from_model(&model, &params, &["v", "h1", "h2"]) -> Result<Chain, ExtractLayersError>
//! Chain::from_stack(&[(&rbm1, &p1, "v", "h"), (&rbm2, &p2, "v", "h"), ..])   // greedy DBN
//! Chain::from_model_removing(&m, &p, &["v", "h1", "h2"], &["y"])   // labels dropped first
//! Chain::from_stack_removing(&stack, &["y"])
//! chain.dbn_mlp(n_classes, seed) -> Result<Mlp, MlpError>      // up-pass layers + new softmax
//! chain.dbm_mlp(n_classes, seed) -> Result<Mlp, MlpError>      // input [v, q(h2|v)], W = [W1; W2ᵀ]
//! chain.dbm_input(v, &MeanFieldConfig::default()) -> Result<Array2<f32>, MlpError>  // [v, q(h2|v)]
//! chain.mean_field(v, &cfg) / chain.up_pass(v)                  // features, if wanted
//!
//! // 2. training (labels are u8 class indices, as in runtime::data::Dataset)
//! let mut tr = Trainer::new(net, SgdConfig { batch_size: 100, lr: 0.1, .. })?;
//! //    or Trainer::from_state(&arrays, config)? to resume a checkpoint
//! while tr.epoch() < epochs {
//!     let rep: EpochReport = tr.train_epoch(x.view(), &y, &mut |b: &BatchProgress| bar.set(..))?;
//!     //  (train_epoch_with(x, y, Rates { lr, momentum }, ..) is the schedule hook)
//!     let m: Metrics = tr.net().evaluate(x_test.view(), &y_test)?;   // error, cross_entropy
//!     write_npz_atomically(tr.state());        // BTreeMap<String, ArrayD<f32>>, epoch boundary
//! }
//! ```
//!
//! Settings a `train` item could expose map one to one onto [`SgdConfig`] (`batch_size`, `lr`,
//! `lr_schedule` = constant | exponential(factor) | step(every, factor) | inverse_time(epochs),
//! `momentum`, `initial_momentum`, `momentum_warmup` epochs, `weight_decay`, `seed`) and
//! [`MeanFieldConfig`] (`iters`, `tol`, `double_init`). A final net alone saves with
//! [`Mlp::to_arrays`] / [`Mlp::from_arrays`].
//!
//! Checkpoint arrays ([`Trainer::state`]): `w.L`, `b.L` (layer `L`, 0 = first),
//! `velocity.w.L`, `velocity.b.L`, `epoch` (`[1]`, finished epochs), `seed` (`[4]`, 16-bit
//! limbs). A resumed run is bit-identical to an uninterrupted one (tested). For a DBM-initialised
//! net the caller stores the augmented inputs' recipe (chain + mean-field settings), not `q`.

mod extract;
pub mod gemm;
mod net;
mod sgd;

pub use extract::{Chain, ExtractLayersError, MeanFieldConfig, MeanFieldOutput};
pub use net::{Layer, Metrics, Mlp, SIGMOID_GAIN};
pub use sgd::{
    epoch_permutation, BatchProgress, EpochReport, LrSchedule, Rates, SgdConfig, Trainer,
    EPOCH_KEY, SEED_KEY, VELOCITY_PREFIX,
};

use thiserror::Error;

/// Why a network could not be built, trained, evaluated or restored.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum MlpError {
    #[error("an MLP needs at least one layer")]
    NoLayers,
    #[error("layer {layer}: {why}")]
    BadLayer { layer: usize, why: String },
    #[error("the data have {got} features but the network takes {expected} inputs")]
    InputWidth { expected: usize, got: usize },
    #[error("input value at row {row}, column {col} is not finite")]
    NonFiniteInput { row: usize, col: usize },
    #[error("{rows} examples but {labels} labels")]
    LabelCount { rows: usize, labels: usize },
    #[error("label {label} of example {index} is out of range for {n_classes} classes")]
    LabelRange {
        index: usize,
        label: u8,
        n_classes: usize,
    },
    #[error("no examples to train on")]
    NoData,
    #[error("bad setting `{setting}`: {why}")]
    BadConfig { setting: String, why: String },
    #[error("training diverged at epoch {epoch}, batch {batch} (loss is not finite); lower the learning rate")]
    Diverged { epoch: usize, batch: usize },
    #[error("checkpoint does not hold an MLP training state: {why}")]
    BadState { why: String },
    #[error("a DBM-initialised MLP needs at least two hidden layers in the chain, got {n_hidden}")]
    DbmDepth { n_hidden: usize },
}
