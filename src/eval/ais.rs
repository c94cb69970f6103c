//! Annealed importance sampling for `log Z` (Neal 2001; Salakhutdinov & Murray 2008), on the
//! state space of the Plan's kept groups with its summed groups summed out analytically.
//!
//! Path: `F_beta(x) = (1 - beta) E_base(x) + beta E_kept(x) - sum_{u summed} A(beta z_u(x) +
//! (1 - beta) base_u)`, base = independent units with bias rows (visible: logits of smoothed
//! data means; hidden: zero). Transitions: one sweep of the Plan's block-Gibbs schedule of the
//! tempered joint. Runs are the rows of one batch, one random stream each.
//!
//! Invariant: at `beta = 0` the path is exactly the base model, whose `log Z_A` is computed in
//! closed form; log-weights are accumulated in f64.

use super::EvalError;
use crate::derive::plan::Family;
use crate::exec::{log_partition, sample_into, Batch, Exec, Fields, Rngs, Temper};
use crate::ir::{Domain, GroupId, Role};
use ndarray::{Array1, Array2};

/// Inverse temperatures from 0 to 1.
#[derive(Clone, Debug, PartialEq)]
pub enum Betas {
    /// `n + 1` equally spaced values
    Linear(usize),
    /// Salakhutdinov & Murray's 14,501 values: steps of 1e-3 on [0, 0.5], 1e-4 on [0.5, 0.9],
    /// 1e-5 on [0.9, 1]
    SalakhutdinovMurray,
    Custom(Vec<f64>),
}

impl Betas {
    pub fn values(&self) -> Vec<f64> {
        match self {
            Betas::Linear(n) => (0..=*n).map(|k| k as f64 / *n as f64).collect(),
            Betas::SalakhutdinovMurray => {
                let mut b: Vec<f64> = (0..500).map(|k| k as f64 * 1e-3).collect();
                b.extend((0..4000).map(|k| 0.5 + k as f64 * 1e-4));
                b.extend((0..=10000).map(|k| 0.9 + k as f64 * 1e-5));
                b
            }
            Betas::Custom(v) => v.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct AisConfig {
    pub runs: usize,
    pub betas: Betas,
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AisResult {
    pub log_z: f64,
    /// `log Z_A + log(mean(w) - 3 sd(w) / sqrt(R))` (`-inf` when that is not positive)
    pub log_z_lo: f64,
    /// `log Z_A + log(mean(w) + 3 sd(w) / sqrt(R))`
    pub log_z_hi: f64,
    pub log_z_base: f64,
    pub log_w: Vec<f64>,
    /// effective sample size `(sum w)^2 / sum w^2`
    pub ess: f64,
    pub n_betas: usize,
}

/// Base-model bias rows from data marginals: for every visible group, the natural parameter
/// of each unit's smoothed mean `(sum x + 5) / (N + 10)` (a prior of 5 pseudo-examples at each
/// end, so constant pixels stay finite); `None` for hidden groups.
pub fn base_from_data(
    ex: &Exec,
    data: &[Array2<f32>],
) -> Result<Vec<Option<Array1<f32>>>, EvalError> {
    let lam = 5.0f64;
    let mut out = vec![None; ex.n_groups()];
    let mut it = data.iter();
    for g in ex.model.group_ids() {
        let grp = ex.model.group(g);
        if grp.role != Role::Visible {
            continue;
        }
        let d = it.next().ok_or(EvalError::DataGroups)?;
        let n = d.nrows() as f64;
        let sums: Vec<f64> = d
            .columns()
            .into_iter()
            .map(|c| c.iter().map(|&x| x as f64).sum())
            .collect();
        let row: Array1<f32> = match grp.domain {
            Domain::Binary => sums
                .iter()
                .map(|&s| {
                    let p = (s + lam) / (n + 2.0 * lam);
                    (p / (1.0 - p)).ln() as f32
                })
                .collect(),
            Domain::Spin => sums
                .iter()
                .map(|&s| {
                    let p = ((s + n) / 2.0 + lam) / (n + 2.0 * lam); // P(+1)
                    (0.5 * (p / (1.0 - p)).ln()) as f32
                })
                .collect(),
            Domain::Categorical => {
                let k = grp.n_states();
                sums.chunks(k)
                    .flat_map(|c| {
                        let tot: f64 = c.iter().sum::<f64>() + lam * k as f64;
                        c.iter()
                            .map(move |&s| ((s + lam) / tot).ln() as f32)
                            .collect::<Vec<_>>()
                    })
                    .collect()
            }
            Domain::Real => return Err(EvalError::RealGroup(grp.name.clone())),
        };
        out[g.idx()] = Some(row);
    }
    Ok(out)
}

/// The beta-independent pieces of `F_beta` at a state.
struct Parts {
    e_kept: Array1<f64>,
    e_base: Array1<f64>,
    fields: Vec<(GroupId, Fields)>,
}

fn parts(ex: &Exec, b: &Batch, base: &[Option<Array1<f32>>]) -> Parts {
    let fe = &ex.plan.free_energy;
    let mut e_kept = Array1::zeros(b.rows());
    for &t in &fe.kept_terms {
        e_kept += &ex.term_energy(t, b);
    }
    let mut e_base = Array1::zeros(b.rows());
    for &g in &fe.kept_groups {
        if let Some(r) = &base[g.idx()] {
            e_base -= &b.x[g.idx()].dot(r).mapv(|x| x as f64);
        }
    }
    let fields = fe.summed.iter().map(|&g| (g, ex.fields(g, b))).collect();
    Parts {
        e_kept,
        e_base,
        fields,
    }
}

fn f_at(ex: &Exec, p: &Parts, base: &[Option<Array1<f32>>], beta: f64) -> Array1<f64> {
    let mut f = &p.e_kept * beta + &p.e_base * (1.0 - beta);
    for (g, fl) in &p.fields {
        let mut t = fl.clone();
        t.z *= beta as f32;
        if let Some(r) = &base[g.idx()] {
            t.z.scaled_add((1.0 - beta) as f32, &r.view().insert_axis(ndarray::Axis(0)));
        }
        let k = ex.lowered.sizes[g.idx()].1;
        f -= &log_partition(ex.family(*g), &t, k);
        f += &(t.offset.mapv(|x| x as f64) * beta);
    }
    f
}

/// `log Z_A`: every group's units independent with natural parameters `base` (zero where
/// `None`).
fn log_z_base(ex: &Exec, base: &[Option<Array1<f32>>]) -> f64 {
    ex.model
        .group_ids()
        .map(|g| {
            let n = ex.lowered.sizes[g.idx()].0;
            let z = base[g.idx()].clone().unwrap_or_else(|| Array1::zeros(n));
            let f = Fields {
                z: z.insert_axis(ndarray::Axis(0)),
                beta: None,
                offset: Array1::zeros(1),
            };
            log_partition(ex.family(g), &f, ex.lowered.sizes[g.idx()].1)[0]
        })
        .sum()
}

/// Runs AIS from the base model given by `base` (see [`base_from_data`]) to the model.
pub fn ais(
    ex: &Exec,
    base: &[Option<Array1<f32>>],
    cfg: &AisConfig,
) -> Result<AisResult, EvalError> {
    for g in ex.model.group_ids() {
        if ex.family(g) == Family::Gaussian {
            return Err(EvalError::RealGroup(ex.model.group(g).name.clone()));
        }
    }
    let betas = cfg.betas.values();
    if betas.len() < 2
        || betas[0] != 0.0
        || *betas.last().unwrap() != 1.0
        || betas.windows(2).any(|w| w[1] < w[0])
    {
        return Err(EvalError::Betas);
    }
    let r = cfg.runs;
    let mut rngs = Rngs::new(cfg.seed, 0, r);
    // x_1 ~ base: every group drawn independently from its base row
    let mut b = Batch::zeros(ex.model, r);
    for g in ex.model.group_ids() {
        let n = ex.lowered.sizes[g.idx()].0;
        let z = base[g.idx()].clone().unwrap_or_else(|| Array1::zeros(n));
        let f = Fields {
            z: z.insert_axis(ndarray::Axis(0))
                .broadcast((r, n))
                .expect("row broadcast")
                .to_owned(),
            beta: None,
            offset: Array1::zeros(r),
        };
        let k = ex.lowered.sizes[g.idx()].1;
        sample_into(ex.family(g), &f, k, &mut b.x[g.idx()], None, &mut rngs);
    }
    let mut log_w = Array1::<f64>::zeros(r);
    let free = vec![false; ex.n_groups()];
    let mut temper = Temper {
        beta: 0.0,
        base: base.to_vec(),
    };
    for k in 1..betas.len() {
        let p = parts(ex, &b, base);
        log_w -= &f_at(ex, &p, base, betas[k]);
        log_w += &f_at(ex, &p, base, betas[k - 1]);
        if k + 1 < betas.len() {
            temper.beta = betas[k];
            ex.gibbs_sweep(&mut b, &mut rngs, &free, Some(&temper));
        }
    }
    let log_w = log_w.to_vec();
    let lza = log_z_base(ex, base);
    let mx = log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let ws: Vec<f64> = log_w.iter().map(|l| (l - mx).exp()).collect();
    let mean = ws.iter().sum::<f64>() / r as f64;
    let sd =
        (ws.iter().map(|w| (w - mean).powi(2)).sum::<f64>() / (r as f64 - 1.0).max(1.0)).sqrt();
    let half = 3.0 * sd / (r as f64).sqrt();
    let ess = ws.iter().sum::<f64>().powi(2) / ws.iter().map(|w| w * w).sum::<f64>();
    Ok(AisResult {
        log_z: lza + mx + mean.ln(),
        log_z_lo: if mean > half {
            lza + mx + (mean - half).ln()
        } else {
            f64::NEG_INFINITY
        },
        log_z_hi: lza + mx + (mean + half).ln(),
        log_z_base: lza,
        log_w,
        ess,
        n_betas: betas.len(),
    })
}
