//! Mini-batch SGD with momentum and weight decay for an [`Mlp`], with a learning-rate and
//! momentum schedule, seeded per-epoch shuffling, per-batch progress callbacks and a
//! checkpointable state.
//!
//! Update (models.md §0.4, written for a loss `L` to minimise): for each weight matrix
//! `v ← κ v − η (∂L/∂W + λ W)`, `W ← W + v`; biases the same with `λ = 0`. `L` is the mean
//! cross-entropy of the mini-batch.
//!
//! Invariant: training is a pure function of (initial net, config, data, number of epochs):
//! the permutation of epoch `e` depends only on `(seed, e)`, and one thread does the math in a
//! fixed order, so a run resumed from [`Trainer::state`] at an epoch boundary continues
//! bit-identically to an uninterrupted one.

use std::collections::BTreeMap;

use ndarray::{s, Array2, ArrayD, ArrayView2, Axis, Zip};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::gemm::sgemm;
use super::net::{scalar_array, Layer, Mlp, Work};
use super::MlpError;

/// How the learning rate changes with the epoch (the schedule every epoch starts from).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    Constant,
    /// `lr * factor^epoch`
    Exponential {
        factor: f32,
    },
    /// `lr * factor^(epoch / every)` (integer division)
    Step {
        every: usize,
        factor: f32,
    },
    /// `lr / (1 + epoch / epochs)`
    InverseTime {
        epochs: f32,
    },
}

/// Hyper-parameters of [`Trainer`].
#[derive(Clone, Debug, PartialEq)]
pub struct SgdConfig {
    pub batch_size: usize,
    /// learning rate at epoch 0
    pub lr: f32,
    pub lr_schedule: LrSchedule,
    /// momentum from epoch `momentum_warmup` on
    pub momentum: f32,
    /// momentum of the first `momentum_warmup` epochs (Hinton's recipe: 0.5, then 0.9)
    pub initial_momentum: f32,
    pub momentum_warmup: usize,
    /// L2 weight decay `λ` on weight matrices (never on biases)
    pub weight_decay: f32,
    /// seeds the per-epoch shuffles
    pub seed: u64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            batch_size: 100,
            lr: 0.1,
            lr_schedule: LrSchedule::Constant,
            momentum: 0.9,
            initial_momentum: 0.5,
            momentum_warmup: 5,
            weight_decay: 0.0,
            seed: 0,
        }
    }
}

/// Learning rate and momentum for one epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rates {
    pub lr: f32,
    pub momentum: f32,
}

impl SgdConfig {
    /// Rejects settings that cannot train (non-positive batch, negative or non-finite rates).
    pub fn validate(&self) -> Result<(), MlpError> {
        let bad = |what: &str, why: String| {
            Err(MlpError::BadConfig {
                setting: what.to_string(),
                why,
            })
        };
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", format!("must be positive, got {}", self.lr));
        }
        for (name, m) in [
            ("momentum", self.momentum),
            ("initial_momentum", self.initial_momentum),
        ] {
            if !(0.0..1.0).contains(&m) {
                return bad(name, format!("must be in [0, 1), got {m}"));
            }
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "weight_decay",
                format!("must be >= 0, got {}", self.weight_decay),
            );
        }
        match self.lr_schedule {
            LrSchedule::Constant => {}
            LrSchedule::Exponential { factor } | LrSchedule::Step { factor, .. }
                if !(factor.is_finite() && factor > 0.0) =>
            {
                return bad(
                    "lr_schedule",
                    format!("factor must be positive, got {factor}"),
                );
            }
            LrSchedule::Step { every: 0, .. } => {
                return bad("lr_schedule", "step `every` must be at least 1".into());
            }
            LrSchedule::InverseTime { epochs } if !(epochs.is_finite() && epochs > 0.0) => {
                return bad(
                    "lr_schedule",
                    format!("epochs must be positive, got {epochs}"),
                );
            }
            _ => {}
        }
        Ok(())
    }

    /// The scheduled rates of `epoch` (0-based).
    pub fn rates(&self, epoch: usize) -> Rates {
        let e = epoch as f32;
        let lr = match self.lr_schedule {
            LrSchedule::Constant => self.lr,
            LrSchedule::Exponential { factor } => self.lr * factor.powf(e),
            LrSchedule::Step { every, factor } => {
                self.lr * factor.powi((epoch / every.max(1)) as i32)
            }
            LrSchedule::InverseTime { epochs } => self.lr / (1.0 + e / epochs),
        };
        let momentum = if epoch < self.momentum_warmup {
            self.initial_momentum
        } else {
            self.momentum
        };
        Rates { lr, momentum }
    }
}

/// Reported after every mini-batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchProgress {
    /// 0-based epoch being trained
    pub epoch: usize,
    /// 0-based batch within the epoch
    pub batch: usize,
    pub n_batches: usize,
    /// examples seen so far in this epoch, this batch included
    pub examples: usize,
    /// mean cross-entropy of this batch before its update
    pub loss: f32,
    /// misclassified examples of this batch before its update
    pub errors: usize,
    pub rates: Rates,
}

/// Summary of one trained epoch. `loss` and `error` are running averages over the epoch's
/// batches, each measured before that batch's update (a cheap, slightly stale training score).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochReport {
    pub epoch: usize,
    pub n_batches: usize,
    pub examples: usize,
    pub loss: f64,
    pub error: f64,
    pub rates: Rates,
}

/// The optimiser state of one training run: the network, the momentum buffers, the number
/// of finished epochs and the shuffle seed.
pub struct Trainer {
    net: Mlp,
    velocity: Vec<Layer>,
    epoch: usize,
    config: SgdConfig,
    work: Work,
    batch_x: Array2<f32>,
    batch_y: Vec<u8>,
}

/// Key of the finished-epoch counter in [`Trainer::state`].
pub const EPOCH_KEY: &str = "epoch";
/// Key of the shuffle seed in [`Trainer::state`], as four exact 16-bit limbs (low first).
pub const SEED_KEY: &str = "seed";
/// Prefix of the momentum buffers in [`Trainer::state`].
pub const VELOCITY_PREFIX: &str = "velocity.";

fn mix(mut z: u64) -> u64 {
    // splitmix64 finaliser: decorrelates (seed, epoch) pairs before seeding the shuffle rng
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The order in which epoch `epoch` visits `n` examples.
pub fn epoch_permutation(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = StdRng::seed_from_u64(mix(mix(seed) ^ epoch as u64));
    idx.shuffle(&mut rng);
    idx
}

impl Trainer {
    /// A fresh run at epoch 0 with zero momentum.
    pub fn new(net: Mlp, config: SgdConfig) -> Result<Trainer, MlpError> {
        config.validate()?;
        let velocity = net.layers().iter().map(Layer::zeros_like).collect();
        Ok(Trainer::assemble(net, velocity, 0, config))
    }

    fn assemble(net: Mlp, velocity: Vec<Layer>, epoch: usize, config: SgdConfig) -> Trainer {
        let work = Work::new(&net, config.batch_size);
        let batch_x = Array2::zeros((config.batch_size, net.n_inputs()));
        Trainer {
            net,
            velocity,
            epoch,
            batch_y: Vec::with_capacity(config.batch_size),
            batch_x,
            work,
            config,
        }
    }

    pub fn net(&self) -> &Mlp {
        &self.net
    }
    pub fn into_net(self) -> Mlp {
        self.net
    }
    /// Number of finished epochs (the next epoch to train).
    pub fn epoch(&self) -> usize {
        self.epoch
    }
    pub fn config(&self) -> &SgdConfig {
        &self.config
    }

    /// Trains one epoch at the scheduled rates of [`Trainer::epoch`].
    pub fn train_epoch(
        &mut self,
        x: ArrayView2<f32>,
        y: &[u8],
        on_batch: &mut dyn FnMut(&BatchProgress),
    ) -> Result<EpochReport, MlpError> {
        let rates = self.config.rates(self.epoch);
        self.train_epoch_with(x, y, rates, on_batch)
    }

    /// Trains one epoch at caller-chosen rates: the schedule hook. Shuffles with the
    /// permutation of `(seed, epoch)`, visits every example once (the last batch may be
    /// smaller), and advances the epoch counter. If a batch's loss is not finite the epoch
    /// stops with [`MlpError::Diverged`] before that batch's update; the counter does not
    /// advance, so the caller should restore the last checkpoint.
    pub fn train_epoch_with(
        &mut self,
        x: ArrayView2<f32>,
        y: &[u8],
        rates: Rates,
        on_batch: &mut dyn FnMut(&BatchProgress),
    ) -> Result<EpochReport, MlpError> {
        self.net.check_data(&x, Some(y))?;
        let n = x.nrows();
        if n == 0 {
            return Err(MlpError::NoData);
        }
        if !(rates.lr.is_finite() && rates.lr >= 0.0 && (0.0..1.0).contains(&rates.momentum)) {
            return Err(MlpError::BadConfig {
                setting: "rates".into(),
                why: format!(
                    "learning rate {} and momentum {} out of range",
                    rates.lr, rates.momentum
                ),
            });
        }
        let bs = self.config.batch_size;
        let perm = epoch_permutation(self.config.seed, self.epoch, n);
        let n_batches = n.div_ceil(bs);
        let (mut loss_sum, mut err_sum) = (0f64, 0usize);
        for (bi, rows) in perm.chunks(bs).enumerate() {
            let m = rows.len();
            // gather the batch into contiguous rows: GEMM on a packed copy beats strided reads
            self.batch_y.clear();
            for (r, &i) in rows.iter().enumerate() {
                self.batch_x.row_mut(r).assign(&x.row(i));
                self.batch_y.push(y[i]);
            }
            let xb = self.batch_x.slice(s![..m, ..]);
            self.work.forward(&self.net, &xb);
            let (errors, loss) = self.work.score(&self.batch_y);
            if !loss.is_finite() {
                return Err(MlpError::Diverged {
                    epoch: self.epoch,
                    batch: bi,
                });
            }
            loss_sum += loss;
            err_sum += errors;
            self.work.output_delta(&self.batch_y);
            let eta = rates.lr;
            let kappa = rates.momentum;
            let lambda = self.config.weight_decay;
            for l in (0..self.net.layers().len()).rev() {
                // deltas of the layer below use W_l before its update
                self.work.backprop_delta(&self.net, l);
                let input = self.work.input(&xb, l);
                let delta = self.work.deltas[l].slice(s![..m, ..]);
                let v = &mut self.velocity[l];
                // v_W ← κ v_W − (η/m) inputᵀ δ   (δ holds per-row, unaveraged derivatives)
                sgemm(-eta / m as f32, &input.t(), &delta, kappa, &mut v.w);
                let layer = &mut self.net.layers_mut()[l];
                let decay = eta * lambda;
                match (v.w.as_slice_mut(), layer.w.as_slice_mut()) {
                    (Some(vs), Some(ws)) => super::gemm::decay_and_step(vs, ws, decay),
                    _ => unreachable!("owned weight matrices are standard layout"),
                }
                let gb = delta.sum_axis(Axis(0));
                Zip::from(&mut v.b)
                    .and(&mut layer.b)
                    .and(&gb)
                    .for_each(|v, b, &g| {
                        *v = kappa * *v - eta / m as f32 * g;
                        *b += *v;
                    });
            }
            on_batch(&BatchProgress {
                epoch: self.epoch,
                batch: bi,
                n_batches,
                examples: (bi * bs + m).min(n),
                loss: (loss / m as f64) as f32,
                errors,
                rates,
            });
        }
        let report = EpochReport {
            epoch: self.epoch,
            n_batches,
            examples: n,
            loss: loss_sum / n as f64,
            error: err_sum as f64 / n as f64,
            rates,
        };
        self.epoch += 1;
        Ok(report)
    }

    /// Everything needed to resume at this epoch boundary, as named f32 arrays: the net
    /// (`w.L`, `b.L`), the momentum (`velocity.w.L`, `velocity.b.L`), `epoch` (`[1]`) and
    /// `seed` (`[4]`, 16-bit limbs, exact in f32). Write them with an atomic `.npz` writer.
    pub fn state(&self) -> BTreeMap<String, ArrayD<f32>> {
        let mut out = BTreeMap::new();
        self.net.to_arrays("", &mut out);
        for (l, v) in self.velocity.iter().enumerate() {
            out.insert(format!("{VELOCITY_PREFIX}w.{l}"), v.w.clone().into_dyn());
            out.insert(format!("{VELOCITY_PREFIX}b.{l}"), v.b.clone().into_dyn());
        }
        out.insert(EPOCH_KEY.into(), scalar_array(self.epoch as f32));
        let s = self.config.seed;
        let limbs: Vec<f32> = (0..4).map(|k| ((s >> (16 * k)) & 0xffff) as f32).collect();
        out.insert(
            SEED_KEY.into(),
            ArrayD::from_shape_vec(vec![4], limbs).expect("4 limbs"),
        );
        out
    }

    /// Resumes from [`Trainer::state`]. The stored seed wins over `config.seed`, so the
    /// resumed run keeps its shuffle stream; other settings come from `config`.
    pub fn from_state(
        state: &BTreeMap<String, ArrayD<f32>>,
        mut config: SgdConfig,
    ) -> Result<Trainer, MlpError> {
        config.validate()?;
        let net = Mlp::from_arrays("", state)?;
        let vnet = Mlp::from_arrays(VELOCITY_PREFIX, state).map_err(|e| MlpError::BadState {
            why: format!("momentum buffers: {e}"),
        })?;
        if vnet.sizes() != net.sizes() {
            return Err(MlpError::BadState {
                why: format!(
                    "momentum buffers have sizes {:?} but the net has {:?}",
                    vnet.sizes(),
                    net.sizes()
                ),
            });
        }
        let get = |k: &str, len: usize| -> Result<Vec<f32>, MlpError> {
            let a = state.get(k).ok_or_else(|| MlpError::BadState {
                why: format!("`{k}` is missing"),
            })?;
            if a.len() != len
                || a.iter()
                    .any(|x| !(x.is_finite() && *x >= 0.0 && x.fract() == 0.0))
            {
                return Err(MlpError::BadState {
                    why: format!("`{k}` must hold {len} non-negative integers"),
                });
            }
            Ok(a.iter().cloned().collect())
        };
        let epoch = get(EPOCH_KEY, 1)?[0] as usize;
        let limbs = get(SEED_KEY, 4)?;
        if limbs.iter().any(|&x| x > 65535.0) {
            return Err(MlpError::BadState {
                why: format!("`{SEED_KEY}` limbs must be below 65536"),
            });
        }
        config.seed = limbs
            .iter()
            .enumerate()
            .fold(0u64, |s, (k, &x)| s | ((x as u64) << (16 * k)));
        Ok(Trainer::assemble(net, vnet.into_layers(), epoch, config))
    }
}
