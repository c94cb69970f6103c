//! Likelihood-type scores of data under a model, in batches of at most `CHUNK` rows.
//!
//! Invariant: `log_likelihood` is exact given `log Z` when every hidden group is summed out
//! (RBM-like); otherwise it is the mean-field lower bound `E_Q[-E] + H(Q) - log Z`, and says so.

use super::EvalError;
use crate::derive::plan::Family;
use crate::exec::{Batch, Exec, Rngs};
use crate::ir::Role;
use ndarray::{s, Array2};

const CHUNK: usize = 1000;

/// Average log-likelihood of data and what kind of number it is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LogLik {
    /// `-mean F(v) - log Z`: exact given `Z`
    Exact(f64),
    /// the mean-field variational lower bound given `Z`
    LowerBound(f64),
}

impl LogLik {
    pub fn value(self) -> f64 {
        match self {
            LogLik::Exact(x) | LogLik::LowerBound(x) => x,
        }
    }
}

fn chunks(data: &[Array2<f32>]) -> impl Iterator<Item = Vec<Array2<f32>>> + '_ {
    let n = data.first().map_or(0, |d| d.nrows());
    (0..n).step_by(CHUNK).map(move |r0| {
        let r1 = (r0 + CHUNK).min(n);
        data.iter()
            .map(|d| d.slice(s![r0..r1, ..]).to_owned())
            .collect()
    })
}

fn all_hidden_summed(ex: &Exec) -> bool {
    ex.model
        .group_ids()
        .filter(|&g| ex.model.group(g).role == Role::Hidden)
        .all(|g| ex.plan.free_energy.summed.contains(&g))
}

/// Entropy of the factorised `Q` held in `b` (hidden groups), per row.
fn entropy(ex: &Exec, b: &Batch) -> ndarray::Array1<f64> {
    let mut h = ndarray::Array1::zeros(b.rows());
    let xlogx = |p: f64| if p > 0.0 { p * p.ln() } else { 0.0 };
    for g in ex
        .model
        .group_ids()
        .filter(|&g| ex.model.group(g).role == Role::Hidden)
    {
        let x = &b.x[g.idx()];
        for (r, row) in x.rows().into_iter().enumerate() {
            h[r] -= match ex.family(g) {
                Family::Bernoulli => row
                    .iter()
                    .map(|&p| xlogx(p as f64) + xlogx(1.0 - p as f64))
                    .sum::<f64>(),
                Family::Spin => row
                    .iter()
                    .map(|&m| xlogx(0.5 * (1.0 + m as f64)) + xlogx(0.5 * (1.0 - m as f64)))
                    .sum::<f64>(),
                Family::Softmax => row.iter().map(|&p| xlogx(p as f64)).sum::<f64>(),
                _ => 0.0,
            };
        }
    }
    h
}

/// Average `log p(v)` over data given `log Z`.
pub fn log_likelihood(ex: &Exec, data: &[Array2<f32>], log_z: f64) -> LogLik {
    let exact = all_hidden_summed(ex);
    let (mut total, mut n) = (0.0, 0usize);
    for c in chunks(data) {
        let mut b = ex.batch_from_visible(&c);
        n += b.rows();
        if exact {
            total -= ex.free_energy(&b, None).sum();
        } else {
            ex.mean_field(&mut b);
            total += (-ex.energy(&b) + entropy(ex, &b)).sum();
        }
    }
    let v = total / n.max(1) as f64 - log_z;
    if exact {
        LogLik::Exact(v)
    } else {
        LogLik::LowerBound(v)
    }
}

/// Mean squared error per example between the data and its mean-field reconstruction
/// (hidden moments given the data, then visible means given those).
pub fn reconstruction_error(ex: &Exec, data: &[Array2<f32>]) -> f64 {
    let (mut total, mut n) = (0.0, 0usize);
    for c in chunks(data) {
        let mut b = ex.batch_from_visible(&c);
        n += b.rows();
        if all_hidden_summed(ex) {
            let hidden: Vec<_> = ex
                .model
                .group_ids()
                .filter(|&g| ex.model.group(g).role == Role::Hidden)
                .collect();
            ex.rao_blackwellize(&mut b, &hidden, None);
        } else {
            ex.mean_field(&mut b);
        }
        let vis: Vec<_> = ex
            .model
            .group_ids()
            .filter(|&g| ex.model.group(g).role == Role::Visible)
            .collect();
        let orig = b.clone();
        ex.rao_blackwellize(&mut b, &vis, None);
        for g in vis {
            let d = &orig.x[g.idx()] - &b.x[g.idx()];
            total += d.iter().map(|&x| (x * x) as f64).sum::<f64>();
        }
    }
    total / n.max(1) as f64
}

/// Stochastic pseudo-likelihood (one random site per example, scaled by the number of
/// sites, as scikit-learn's `score_samples`): average of `D log sigma(F(x) - F(flip_j x))`.
pub fn pseudo_likelihood(ex: &Exec, data: &[Array2<f32>], seed: u64) -> Result<f64, EvalError> {
    let vis: Vec<_> = ex
        .model
        .group_ids()
        .filter(|&g| ex.model.group(g).role == Role::Visible)
        .collect();
    if !all_hidden_summed(ex)
        || vis
            .iter()
            .any(|&g| !matches!(ex.family(g), Family::Bernoulli | Family::Spin))
    {
        return Err(EvalError::PseudoLikelihood);
    }
    let sites: Vec<(usize, usize)> = vis
        .iter()
        .flat_map(|g| (0..ex.model.group(*g).n_elems()).map(move |e| (g.idx(), e)))
        .collect();
    let (mut total, mut n) = (0.0, 0usize);
    for (ci, c) in chunks(data).enumerate() {
        let b = ex.batch_from_visible(&c);
        let mut rngs = Rngs::new(seed, (ci * CHUNK) as u64, b.rows());
        let mut fl = b.clone();
        for r in 0..b.rows() {
            let (g, e) = sites[rngs.rows[r].below(sites.len())];
            let x = &mut fl.x[g][(r, e)];
            *x = if ex.model.groups[g].domain == crate::ir::Domain::Spin {
                -*x
            } else {
                1.0 - *x
            };
        }
        let f0 = ex.free_energy(&b, None);
        let f1 = ex.free_energy(&fl, None);
        for r in 0..b.rows() {
            let d = f1[r] - f0[r]; // log sigma(d)
            total += sites.len() as f64 * -((-d).max(0.0) + (-d.abs()).exp().ln_1p());
        }
        n += b.rows();
    }
    Ok(total / n.max(1) as f64)
}
