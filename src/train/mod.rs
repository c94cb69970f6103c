//! Learning: mini-batch training of any model the executor runs, driven by the Plan's
//! gradient statistics (CD-k, PCD/SML, parallel tempering, pseudo-likelihood, ratio matching),
//! with schedules, weight decay, sparsity, constraints, divergence checks and exact resume.
//! The centering trick (`center`) is an option of the update for CD, PCD and PT: the model
//! keeps its ordinary parameters, the step is taken in centered coordinates.
//!
//! Invariant: every random draw of update `step` comes from streams derived from
//! `(config.seed, step)` and every epoch's example order from `(config.seed, epoch)`, so a run
//! restored from `TrainState` after any epoch continues bit for bit like an uninterrupted one.

pub mod center;
pub mod config;
mod phases;
mod state;
pub mod update;

pub use config::*;
pub use phases::FlipError;
pub use state::TrainState;

use crate::derive::plan::Plan;
use crate::exec::{Batch, Exec, ExecError, Rng, Rngs};
use crate::ir::eval::Params;
use crate::ir::{Model, Role};
use ndarray::{Array1, Array2};
use phases::groups_with;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum TrainError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Method(#[from] FlipError),
    #[error(transparent)]
    Centering(#[from] center::CenteringError),
    #[error("training diverged at epoch {epoch}, update {step}: parameter `{param}` became {value}; the parameters of the last completed epoch are kept (lower the learning rate)")]
    Diverged {
        epoch: usize,
        step: u64,
        param: String,
        value: f64,
    },
    #[error("data has {got} matrices but the model has {want} visible groups")]
    DataGroups { got: usize, want: usize },
    #[error("data for `{group}` has {got} columns, the group has {want} units")]
    DataWidth {
        group: String,
        got: usize,
        want: usize,
    },
    #[error("{n} examples are fewer than one mini-batch of {batch}")]
    TooFewExamples { n: usize, batch: usize },
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// What one epoch did.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub updates: usize,
    pub lr: f64,
    pub momentum: f64,
    /// Gibbs sweeps per update in this epoch (0 for pseudo-likelihood and ratio matching)
    pub k: usize,
    /// CD: mean squared difference of data and chain visibles; PL/RM: the objective per
    /// example; PCD/PT: NaN (not measured on the way)
    pub train_objective: f64,
    /// PT: mean swap acceptance rate
    pub swap_rate: f64,
    pub seconds: f64,
    pub examples_per_sec: f64,
}

/// Hooks for progress bars, logs and checkpoints.
pub trait Observer {
    fn batch_done(&mut self, _epoch: usize, _batch: usize, _n_batches: usize) {}
    /// Return `false` to stop after this epoch.
    fn epoch_done(&mut self, _trainer: &Trainer<'_>, _metrics: &EpochMetrics) -> bool {
        true
    }
}

/// An observer that does nothing.
pub struct Quiet;
impl Observer for Quiet {}

const EPOCH_STREAM: u64 = 1 << 40;
const CHAIN_STREAM: u64 = 1 << 41;

/// A model being trained.
pub struct Trainer<'m> {
    pub ex: Exec<'m>,
    pub cfg: TrainConfig,
    pub state: TrainState,
    rules: Vec<update::ParamRules>,
    betas: Vec<f64>,
    /// where centering acts, when `cfg.centering` is set
    centering: Option<center::Layout>,
    /// gradient buffers reused by every update (CD and PCD fill them in place)
    grad_buf: Vec<Vec<f64>>,
    /// the last epoch's rollback point, kept for its buffers
    snapshot: Option<TrainState>,
    /// whether the optimiser may run inside the gradient's row loop
    /// (`Exec::energy_grad_pair_step`; off only to compare the two paths)
    fused_step: bool,
    /// updates whose dense weights were stepped in their gradient's row loop
    fused_updates: u64,
}

/// What an update's method produced: the batches the gradient is read from (positive,
/// negative), or the gradient itself (the flip objectives).
enum Statistics {
    Pair(Batch, Batch),
    Gradient(Vec<Vec<f64>>),
}

impl<'m> Trainer<'m> {
    pub fn new(
        model: &'m Model,
        plan: &'m Plan,
        params: &Params,
        cfg: TrainConfig,
    ) -> Result<Self, TrainError> {
        let ex = Exec::new(model, plan, params)?;
        match &cfg.method {
            Method::PseudoLikelihood { .. } => phases::check_flip(&ex, "pseudo-likelihood")?,
            Method::RatioMatching { .. } => phases::check_flip(&ex, "ratio matching")?,
            Method::CdSchedule {
                k_start,
                k_end,
                every,
                ..
            } if *k_start == 0 || k_end < k_start || *every == 0 => {
                return Err(TrainError::Config(format!(
                    "scheduled CD needs 1 <= k_start <= k_end and every >= 1 (got k_start {k_start}, k_end {k_end}, every {every})"
                )))
            }
            Method::CdSchedule {
                mean_reconstruction: true,
                ..
            } if !phases::mean_reconstruction_ok(&ex) => {
                return Err(TrainError::Config(
                    "CD with mean reconstruction needs every hidden group summed out and visible groups that do not interact with each other".into(),
                ))
            }
            Method::Pt { temps, min_beta, .. } if *temps < 2 || !(*min_beta > 0.0 && *min_beta < 1.0) => {
                return Err(TrainError::Config(format!(
                    "parallel tempering needs temps >= 2 and 0 < min_beta < 1 (got {temps}, {min_beta})"
                )))
            }
            _ => {}
        }
        let centering = match (&cfg.centering, &cfg.method) {
            (None, _) => None,
            (Some(_), Method::PseudoLikelihood { .. }) => {
                return Err(center::CenteringError::Method {
                    method: "pseudo-likelihood",
                }
                .into())
            }
            (Some(_), Method::RatioMatching { .. }) => {
                return Err(center::CenteringError::Method {
                    method: "ratio matching",
                }
                .into())
            }
            (Some(c), _) if !(0.0..=1.0).contains(&c.rate) => {
                return Err(TrainError::Config(format!(
                    "the centering rate must lie in [0, 1] (got {})",
                    c.rate
                )))
            }
            (Some(_), _) => Some(center::Layout::new(model, &ex.lowered)?),
        };
        if cfg.batch == 0 {
            return Err(TrainError::Config("batch must be positive".into()));
        }
        let betas = match cfg.method {
            Method::Pt {
                temps, min_beta, ..
            } => (0..temps)
                .map(|t| min_beta.powf(t as f64 / (temps - 1) as f64))
                .collect(),
            _ => vec![1.0],
        };
        let state = TrainState {
            epoch: 0,
            step: 0,
            params: params.clone(),
            velocity: model
                .params
                .iter()
                .map(|p| vec![0.0; p.n_elems()])
                .collect(),
            chains: Vec::new(),
            sparsity_q: None,
            offsets: None,
        };
        Ok(Trainer {
            rules: update::rules(model),
            ex,
            cfg,
            state,
            betas,
            centering,
            grad_buf: Vec::new(),
            snapshot: None,
            fused_step: true,
            fused_updates: 0,
        })
    }

    pub fn params(&self) -> &Params {
        &self.state.params
    }

    /// Whether the optimiser step of dense weights runs inside their gradient's row loop
    /// (the default; the same numbers as the separate update, which `false` selects).
    pub fn set_fused_step(&mut self, on: bool) {
        self.fused_step = on;
    }

    /// How many updates took a dense weight's step in its gradient's row loop.
    pub fn fused_updates(&self) -> u64 {
        self.fused_updates
    }

    /// Continue from a saved state (same model, config and data).
    pub fn restore(&mut self, st: TrainState) {
        self.ex.set_params(&st.params);
        self.state = st;
    }

    fn check_data(&self, data: &[Array2<f32>]) -> Result<usize, TrainError> {
        let vis = groups_with(&self.ex, Role::Visible);
        if vis.len() != data.len() {
            return Err(TrainError::DataGroups {
                got: data.len(),
                want: vis.len(),
            });
        }
        for (g, d) in vis.iter().zip(data) {
            let want = self.ex.model.group(*g).n_elems();
            if d.ncols() != want {
                return Err(TrainError::DataWidth {
                    group: self.ex.model.group(*g).name.clone(),
                    got: d.ncols(),
                    want,
                });
            }
        }
        let n = data[0].nrows();
        if n < self.cfg.batch {
            return Err(TrainError::TooFewExamples {
                n,
                batch: self.cfg.batch,
            });
        }
        Ok(n)
    }

    /// Trains until `cfg.epochs` epochs are done (or the observer stops it).
    pub fn run(&mut self, data: &[Array2<f32>], obs: &mut dyn Observer) -> Result<(), TrainError> {
        while self.state.epoch < self.cfg.epochs {
            let m = self.train_epoch(data, obs)?;
            if !obs.epoch_done(self, &m) {
                break;
            }
        }
        Ok(())
    }

    fn lr_at(&self, step: u64, total: u64) -> f64 {
        match self.cfg.lr_schedule {
            LrSchedule::Constant => self.cfg.lr,
            LrSchedule::LinearToZero => self.cfg.lr * (1.0 - step as f64 / total.max(1) as f64),
            LrSchedule::Exponential { factor, floor } => {
                (self.cfg.lr * factor.powf(step as f64)).max(floor)
            }
        }
    }

    /// One pass over the data in a seeded random order (full mini-batches only).
    pub fn train_epoch(
        &mut self,
        data: &[Array2<f32>],
        obs: &mut dyn Observer,
    ) -> Result<EpochMetrics, TrainError> {
        let n = self.check_data(data)?;
        self.init_offsets(data)?;
        let t0 = std::time::Instant::now();
        let epoch = self.state.epoch;
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = Rng::new(self.cfg.seed, EPOCH_STREAM + epoch as u64);
        for i in (1..n).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let nb = n / self.cfg.batch;
        let total = (nb * self.cfg.epochs) as u64;
        let momentum = self.cfg.momentum.at(epoch);
        let (mut obj, mut swaps) = (0.0, 0.0);
        // the epoch's rollback point, in the previous epoch's buffers
        let snapshot = match self.snapshot.take() {
            Some(mut s) => {
                s.clone_from(&self.state);
                s
            }
            None => self.state.clone(),
        };
        let mut lr = self.cfg.lr;
        for bi in 0..nb {
            let rows = &order[bi * self.cfg.batch..(bi + 1) * self.cfg.batch];
            let vis: Vec<Array2<f32>> = data
                .iter()
                .map(|d| crate::runtime::batch::gather_rows(d.view(), rows))
                .collect();
            lr = self.lr_at(self.state.step, total) * self.cfg.method.lr_factor(epoch);
            match self.update(&vis, lr, momentum) {
                Ok((o, s)) => {
                    obj += o;
                    swaps += s;
                }
                Err(update::Divergence { param, value }) => {
                    let step = self.state.step;
                    self.restore(snapshot);
                    return Err(TrainError::Diverged {
                        epoch,
                        step,
                        param,
                        value,
                    });
                }
            }
            obs.batch_done(epoch, bi, nb);
        }
        self.snapshot = Some(snapshot);
        self.state.epoch += 1;
        let secs = t0.elapsed().as_secs_f64();
        Ok(EpochMetrics {
            epoch,
            updates: nb,
            lr,
            momentum,
            k: self.cfg.method.k_at(epoch),
            train_objective: obj / nb as f64,
            swap_rate: swaps / nb as f64,
            seconds: secs,
            examples_per_sec: (nb * self.cfg.batch) as f64 / secs.max(1e-9),
        })
    }

    /// The centering layout, when the run is centered.
    pub fn centering(&self) -> Option<&center::Layout> {
        self.centering.as_ref()
    }

    /// Sets the centering offsets on the first epoch of a centered run (visible groups: their
    /// data means; hidden groups: their mean under the bias alone), unless a restored state or
    /// the caller already did.
    fn init_offsets(&mut self, data: &[Array2<f32>]) -> Result<(), TrainError> {
        let Some(layout) = &self.centering else {
            return Ok(());
        };
        if self.state.offsets.is_none() {
            let vis = groups_with(&self.ex, Role::Visible);
            let mut means: Vec<Option<Vec<f64>>> = vec![None; self.ex.n_groups()];
            for (g, d) in vis.iter().zip(data) {
                let b = Batch {
                    x: vec![d.clone()],
                    sq: vec![None],
                };
                means[g.idx()] = center::group_means(&b).pop();
            }
            let mu =
                layout.initial_offsets(self.ex.model, &self.ex.lowered, &self.state.params, &means);
            self.state.offsets = Some(mu);
        }
        let mu = self.state.offsets.as_ref().expect("set above");
        layout.check_shared(self.ex.model, &self.ex.lowered, &self.state.params, mu)?;
        Ok(())
    }

    fn init_chains(&mut self, chains: usize, vis: &[Array2<f32>]) {
        let ex = &self.ex;
        let reps = self.betas.len();
        let mut out = Vec::new();
        for t in 0..reps {
            // start from data rows (cycled) with hidden groups drawn given them
            let idx: Vec<usize> = (0..chains).map(|c| c % vis[0].nrows()).collect();
            let v: Vec<Array2<f32>> = vis
                .iter()
                .map(|d| crate::runtime::batch::gather_rows(d.view(), &idx))
                .collect();
            let mut b = ex.batch_from_visible(&v);
            let mut rngs = Rngs::new(self.cfg.seed, CHAIN_STREAM + (t * chains) as u64, chains);
            let clamped = phases::visible_mask(ex);
            ex.gibbs_sweep(&mut b, &mut rngs, &clamped, None);
            out.push(b);
        }
        self.state.chains = out;
    }

    /// One parameter update from one mini-batch; returns (objective, swap rate).
    fn update(
        &mut self,
        vis: &[Array2<f32>],
        lr: f64,
        momentum: f64,
    ) -> Result<(f64, f64), update::Divergence> {
        let step = self.state.step;
        let m = vis[0].nrows();
        let seed = self.cfg.seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rngs = Rngs::new(seed, 0, m);
        let mut data = self.ex.batch_from_visible(vis);
        let (stats, obj, swap) = match self.cfg.method.clone() {
            Method::Cd { .. } | Method::CdSchedule { .. } => {
                let k = self.cfg.method.k_at(self.state.epoch);
                let mean = matches!(
                    self.cfg.method,
                    Method::CdSchedule {
                        mean_reconstruction: true,
                        ..
                    }
                );
                let (e, pos, neg) = if self.centering.is_none() && self.ex.threads() >= 2 && m >= 2
                {
                    phases::cd_halves(&self.ex, &data, k, mean, &mut rngs)
                } else {
                    // one copy fewer: CD takes the batch, unless sparsity reads it later
                    let owned = match self.cfg.sparsity {
                        Some(_) => data.clone(),
                        None => std::mem::replace(
                            &mut data,
                            Batch {
                                x: vec![],
                                sq: vec![],
                            },
                        ),
                    };
                    phases::cd(&self.ex, owned, k, mean, &mut rngs)
                };
                (Statistics::Pair(pos, neg), e, 0.0)
            }
            Method::Pcd { k, chains } | Method::Pt { k, chains, .. } => {
                if self.state.chains.is_empty() {
                    self.init_chains(chains, vis);
                }
                let reps = self.betas.len();
                let mut chain_rngs: Vec<Rngs> = (0..reps)
                    .map(|t| Rngs::new(seed, CHAIN_STREAM + (t * chains) as u64, chains))
                    .collect();
                let mut pos = data.clone();
                phases::positive(&self.ex, &mut pos, &mut rngs, k);
                let (neg, rate) = if reps == 1 {
                    let neg = phases::run_chain(
                        &self.ex,
                        &mut self.state.chains[0],
                        k,
                        &mut chain_rngs[0],
                        None,
                    );
                    (neg, 0.0)
                } else {
                    phases::pt_negative(
                        &self.ex,
                        &mut self.state.chains,
                        &self.betas,
                        k,
                        step,
                        &mut chain_rngs,
                    )
                };
                (Statistics::Pair(pos, neg), f64::NAN, rate)
            }
            Method::PseudoLikelihood { sites } => {
                let (g, o) = phases::flip_objective(&self.ex, &data, sites, false, &mut rngs);
                (Statistics::Gradient(g), o, 0.0)
            }
            Method::RatioMatching { sites } => {
                let (g, o) = phases::flip_objective(&self.ex, &data, sites, true, &mut rngs);
                (Statistics::Gradient(g), o, 0.0)
            }
        };
        let hyper = update::Hyper {
            lr,
            momentum,
            weight_decay: self.cfg.weight_decay,
            max_abs: self.cfg.max_abs_param,
            velocity: self.cfg.momentum.start != 0.0 || self.cfg.momentum.end != 0.0,
        };
        // parameters whose step `energy_grad_pair_step` took while summing their gradient
        let mut stepped = Vec::new();
        let (mut grad, phases) = match stats {
            Statistics::Pair(pos, neg) => {
                let mut grad = std::mem::take(&mut self.grad_buf);
                if self.fused_step && self.centering.is_none() && self.cfg.sparsity.is_none() {
                    let wanted = update::row_steppable(&self.rules);
                    let (rules, h) = (&self.rules, hyper);
                    let row = |k: usize, p: &mut [f64], v: &mut [f64], g: &[f32], s: f64| {
                        update::step_row(&rules[k], h, p, v, g, s)
                    };
                    let (done, bad) = self.ex.energy_grad_pair_step(
                        &pos,
                        -1.0,
                        &neg,
                        1.0,
                        &mut grad,
                        crate::exec::RowStep {
                            wanted: &wanted,
                            params: &mut self.state.params.values,
                            velocity: &mut self.state.velocity,
                            step: &row,
                        },
                    );
                    if bad {
                        self.grad_buf = grad;
                        return Err(update::divergence(
                            self.ex.model,
                            &self.state.params,
                            &done,
                            h,
                        ));
                    }
                    self.fused_updates += done.iter().any(|&d| d) as u64;
                    stepped = done;
                } else {
                    self.ex
                        .energy_grad_pair_into(&pos, -1.0, &neg, 1.0, &mut grad);
                }
                (grad, Some((pos, neg)))
            }
            Statistics::Gradient(g) => (g, None),
        };
        if let (Some(layout), Some(c)) = (&self.centering, self.cfg.centering) {
            // Melchior et al.'s order: move the offsets towards this batch's positive-phase
            // means, then take the centered gradient with the new offsets
            let (pos, neg) = phases.expect("Trainer::new admits centering only with two phases");
            let (mp, mn) = (center::group_means(&pos), center::group_means(&neg));
            let mu = self
                .state
                .offsets
                .as_mut()
                .expect("train_epoch sets the offsets first");
            layout.move_offsets(mu, &mp, c.rate);
            let diff: Vec<Vec<f64>> = mp
                .iter()
                .zip(&mn)
                .map(|(p, n)| p.iter().zip(n).map(|(a, b)| a - b).collect())
                .collect();
            layout.center_grad(&self.ex.lowered, &self.state.params, &mut grad, &diff, mu);
        }
        if let Some(sp) = self.cfg.sparsity {
            self.add_sparsity(&data, sp, &mut grad);
        }
        let applied = match (&self.centering, &self.state.offsets) {
            (Some(layout), Some(mu)) => center::step(
                layout,
                self.ex.model,
                &self.ex.lowered,
                &self.rules,
                &mut self.state.params,
                &mut self.state.velocity,
                &grad,
                mu,
                lr,
                momentum,
                self.cfg.weight_decay,
                self.cfg.max_abs_param,
            ),
            _ => update::apply_threads(
                self.ex.model,
                &self.rules,
                &mut self.state.params,
                &mut self.state.velocity,
                &grad,
                hyper,
                self.ex.threads(),
                &stepped,
            ),
        };
        self.grad_buf = grad;
        applied?;
        self.ex.set_params_except(&self.state.params, &stepped);
        self.state.step += 1;
        Ok((obj, swap))
    }

    /// Hinton's sparsity: `q <- decay q + (1 - decay) mean(p(h|v))` per hidden unit, and the
    /// hidden bias terms get the gradient of `cost * sum_j (q_j - target) * h_j` pushed through
    /// their coefficients.
    fn add_sparsity(&mut self, data: &Batch, sp: Sparsity, grad: &mut [Vec<f64>]) {
        let mut pos = data.clone();
        let hidden = groups_with(&self.ex, Role::Hidden);
        let mut rngs = Rngs::new(self.cfg.seed, u64::MAX - 1, pos.rows());
        phases::positive(&self.ex, &mut pos, &mut rngs, 1);
        let means: Vec<Array1<f32>> = hidden
            .iter()
            .map(|g| {
                pos.x[g.idx()]
                    .mean_axis(ndarray::Axis(0))
                    .expect("non-empty batch")
            })
            .collect();
        let q = match self.state.sparsity_q.take() {
            None => means,
            Some(old) => old
                .iter()
                .zip(&means)
                .map(|(o, m)| o * sp.decay as f32 + m * (1.0 - sp.decay) as f32)
                .collect(),
        };
        for (g, qg) in hidden.iter().zip(&q) {
            for lt in &self.ex.lowered.terms {
                if let crate::lower::TermKind::Bias {
                    group,
                    power: 1,
                    elems,
                } = &lt.kind
                {
                    if group == g {
                        let adj: Vec<f64> = elems
                            .iter()
                            .map(|&e| sp.cost * (qg[e as usize] as f64 - sp.target))
                            .collect();
                        lt.coef.backprop(&self.state.params, &adj, grad);
                    }
                }
            }
        }
        self.state.sparsity_q = Some(q);
    }
}
