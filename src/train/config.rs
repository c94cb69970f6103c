//! Training configuration: the learning method and its hyper-parameters, learning-rate and
//! momentum schedules, regularisers, seed.
//!
//! Invariant: a `TrainConfig` plus the initial parameters and the data determine a run bit for
//! bit (every random stream is derived from `seed`).

use serde::{Deserialize, Serialize};

/// How the log-likelihood gradient (or a substitute objective) is estimated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Method {
    /// contrastive divergence: `k` Gibbs sweeps from the data (Hinton 2002)
    Cd { k: usize },
    /// contrastive divergence with options (`Cd { k }` is `k_start = k_end = k`, `every = 1`,
    /// both flags off):
    /// - `k` rising during training (Salakhutdinov & Murray's CD25, "k increased gradually
    ///   from 1 to 25"): at 0-based epoch `e`, `k = min(k_end, k_start + e / every)`, the
    ///   schedule of Salakhutdinov's code (`CD = ceil(epoch/20)` with 1-based epochs is
    ///   `k_start = 1, every = 20`); with `lr_over_k` the learning rate is divided by the
    ///   current `k`, as that code does;
    /// - `mean_reconstruction`: the visibles of the last step are their conditional means
    ///   `p(v|h)` instead of a sample, and the hidden statistics are taken at those means, as
    ///   Hinton & Salakhutdinov's `rbm.m` does (needs every hidden group summed out and
    ///   visible groups that do not interact with each other).
    CdSchedule {
        k_start: usize,
        k_end: usize,
        every: usize,
        lr_over_k: bool,
        mean_reconstruction: bool,
    },
    /// persistent CD / stochastic maximum likelihood with `chains` fantasy particles
    Pcd { k: usize, chains: usize },
    /// persistent chains at `temps` inverse temperatures spaced geometrically in
    /// `[min_beta, 1]`, adjacent swaps after every sweep; statistics from `beta = 1`
    Pt {
        k: usize,
        chains: usize,
        temps: usize,
        min_beta: f64,
    },
    /// pseudo-likelihood (Besag 1975) over `sites` random visible sites per example (`None`:
    /// all sites); needs a tractable free energy and binary or spin visibles
    PseudoLikelihood { sites: Option<usize> },
    /// ratio matching (Hyvarinen 2007), same requirements and `sites` as pseudo-likelihood
    RatioMatching { sites: Option<usize> },
}

impl Method {
    /// Gibbs sweeps per update at 0-based `epoch` (CD and PCD-type methods; 0 for the
    /// flip-based objectives, which run no chain).
    pub fn k_at(&self, epoch: usize) -> usize {
        match *self {
            Method::Cd { k } | Method::Pcd { k, .. } | Method::Pt { k, .. } => k,
            Method::CdSchedule {
                k_start,
                k_end,
                every,
                ..
            } => (k_start + epoch / every.max(1)).min(k_end.max(k_start)),
            Method::PseudoLikelihood { .. } | Method::RatioMatching { .. } => 0,
        }
    }

    /// Factor applied to the learning rate at `epoch` (`1 / k` for `CdSchedule` with
    /// `lr_over_k`, else 1).
    pub fn lr_factor(&self, epoch: usize) -> f64 {
        match self {
            Method::CdSchedule {
                lr_over_k: true, ..
            } => 1.0 / self.k_at(epoch).max(1) as f64,
            _ => 1.0,
        }
    }
}

/// A value that switches from `start` to `end` at the start of epoch `at_epoch` (0-based),
/// e.g. momentum `0.5 -> 0.9 at epoch 5`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub start: f64,
    pub end: f64,
    pub at_epoch: usize,
}

impl Step {
    pub fn constant(x: f64) -> Self {
        Step {
            start: x,
            end: x,
            at_epoch: 0,
        }
    }
    pub fn at(&self, epoch: usize) -> f64 {
        if epoch >= self.at_epoch {
            self.end
        } else {
            self.start
        }
    }
}

/// Learning-rate schedule over parameter updates.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum LrSchedule {
    Constant,
    /// decays linearly to zero at the last update of the run (Tieleman 2008)
    LinearToZero,
    /// multiplied by `factor` after every update, never below `floor` (the DBM code's
    /// `lr / 1.000015` per mini-batch, floor 1e-4)
    Exponential {
        factor: f64,
        floor: f64,
    },
}

/// Hinton's sparsity target: pushes each hidden unit's mean activation `q` (an exponential
/// moving average with `decay`) towards `target` with strength `cost`, through the hidden
/// biases.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sparsity {
    pub target: f64,
    pub cost: f64,
    pub decay: f64,
}

/// The centering trick (Montavon & Müller 2012; Melchior, Fischer & Wiskott 2016): the update
/// is taken in coordinates where every binary or spin unit is measured from an offset `mu`,
/// which follows an exponential moving average of the positive-phase means with sliding
/// factor `rate` (0 keeps the initial offsets). The model itself keeps its ordinary
/// parameters; see `train::center`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Centering {
    pub rate: f64,
}

impl Default for Centering {
    fn default() -> Self {
        Centering { rate: 0.01 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub method: Method,
    pub batch: usize,
    pub epochs: usize,
    pub lr: f64,
    pub lr_schedule: LrSchedule,
    pub momentum: Step,
    /// L2 coefficient `lambda` (not applied to biases: parameters whose every term has one
    /// unit factor)
    pub weight_decay: f64,
    pub sparsity: Option<Sparsity>,
    /// centered updates (CD, PCD and PT only)
    pub centering: Option<Centering>,
    pub seed: u64,
    /// a parameter whose magnitude exceeds this is a divergence
    pub max_abs_param: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            method: Method::Cd { k: 1 },
            batch: 100,
            epochs: 10,
            lr: 0.1,
            lr_schedule: LrSchedule::Constant,
            momentum: Step {
                start: 0.5,
                end: 0.9,
                at_epoch: 5,
            },
            weight_decay: 2e-4,
            sparsity: None,
            centering: None,
            seed: 0,
            max_abs_param: 1e4,
        }
    }
}
