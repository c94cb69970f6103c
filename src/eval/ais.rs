//! Annealed importance sampling for `log Z` (Neal 2001; Salakhutdinov & Murray 2008), on the
//! state space of the Plan's kept groups with its summed groups summed out analytically.
//!
//! Path: `F_beta(x) = (1 - beta) E_base(x) + beta E_kept(x) - sum_{u summed} A(beta z_u(x) +
//! (1 - beta) base_u)`, base = independent units with bias rows (visible: logits of smoothed
//! data means; hidden: zero). The kept/summed split is the one that sums out the most
//! variables (`split::most_summed`; visible groups may be summed: for a DBM the chain lives
//! on `h1` alone). Transitions: the summed groups drawn afresh given the kept ones, then one
//! sweep of the Plan's block-Gibbs schedule of the tempered joint. Runs are the rows of one
//! batch, one random stream each.
//!
//! Real (Gaussian) groups need a base with a precision, or the tempered model is not
//! normalisable near `beta = 0`: their base is the model's own unary part (the natural
//! parameters `z0`, precision `p0` of each unit when every other unit is zero, e.g. the
//! `(v - a)^2 / 2 sigma^2` of a GRBM). The path then keeps those terms at full strength and
//! anneals only the couplings, which is still the geometric path `p_A^(1-beta) p_B^beta`.
//!
//! Invariant: at `beta = 0` the path is exactly the base model, whose `log Z_A` is computed in
//! closed form; log-weights are accumulated in f64.

use super::split::{most_summed, with_summed};
use super::EvalError;
use crate::derive::plan::{Family, FreeEnergy};
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
/// end, so constant pixels stay finite); `None` for hidden groups and for real groups (whose
/// base [`ais`] takes from the model's unary terms).
pub fn base_from_data(
    ex: &Exec,
    data: &[Array2<f32>],
) -> Result<Vec<Option<Array1<f32>>>, EvalError> {
    let mut out = vec![None; ex.n_groups()];
    let mut it = data.iter();
    for g in ex.model.group_ids() {
        if ex.model.group(g).role != Role::Visible {
            continue;
        }
        let d = it.next().ok_or(EvalError::DataGroups)?;
        let sums: Vec<f64> = d
            .columns()
            .into_iter()
            .map(|c| c.iter().map(|&x| x as f64).sum())
            .collect();
        out[g.idx()] = base_row(ex, g, &sums, d.nrows() as f64);
    }
    Ok(out)
}

/// [`base_from_data`] plus, for every discrete hidden group, the natural parameters of its
/// units' average mean-field posterior marginals over the data (at most the first 10,000
/// examples). A base that already has the model's typical hidden marginals leaves the
/// annealing only the correlations to build; from a uniform hidden base a trained MNIST DBM
/// has to lose hundreds of nats of entropy along the path.
pub fn base_from_posterior(
    ex: &Exec,
    data: &[Array2<f32>],
) -> Result<Vec<Option<Array1<f32>>>, EvalError> {
    let mut out = base_from_data(ex, data)?;
    let n = data.first().map_or(0, |d| d.nrows()).min(10_000);
    let hidden: Vec<GroupId> = ex
        .model
        .group_ids()
        .filter(|&g| ex.model.group(g).role == Role::Hidden)
        .collect();
    let mut sums: Vec<Vec<f64>> = hidden
        .iter()
        .map(|&g| vec![0.0; ex.lowered.sizes[g.idx()].0])
        .collect();
    for r0 in (0..n).step_by(500) {
        let r1 = (r0 + 500).min(n);
        let chunk: Vec<Array2<f32>> = data
            .iter()
            .map(|d| d.slice(ndarray::s![r0..r1, ..]).to_owned())
            .collect();
        let mut b = ex.batch_from_visible(&chunk);
        ex.mean_field(&mut b);
        for (&g, s) in hidden.iter().zip(&mut sums) {
            for (acc, c) in s.iter_mut().zip(b.x[g.idx()].columns()) {
                *acc += c.iter().map(|&x| x as f64).sum::<f64>();
            }
        }
    }
    for (&g, s) in hidden.iter().zip(&sums) {
        out[g.idx()] = base_row(ex, g, s, n as f64);
    }
    Ok(out)
}

/// The natural parameters of independent units whose means are `sums / n`, smoothed by 5
/// pseudo-examples at each end; `None` for real groups.
fn base_row(ex: &Exec, g: GroupId, sums: &[f64], n: f64) -> Option<Array1<f32>> {
    let lam = 5.0f64;
    let grp = ex.model.group(g);
    Some(match grp.domain {
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
        Domain::Real => return None,
    })
}

/// The beta-independent pieces of `F_beta` at a state.
struct Parts {
    e_kept: Array1<f64>,
    e_base: Array1<f64>,
    fields: Vec<(GroupId, Fields)>,
}

fn parts(
    ex: &Exec,
    fe: &FreeEnergy,
    b: &Batch,
    base: &[Option<Array1<f32>>],
    prec: &[Option<Array1<f32>>],
) -> Parts {
    let mut e_kept = Array1::zeros(b.rows());
    for &t in &fe.kept_terms {
        e_kept += &ex.term_energy(t, b);
    }
    let mut e_base = Array1::zeros(b.rows());
    for &g in &fe.kept_groups {
        if let Some(r) = &base[g.idx()] {
            e_base -= &b.x[g.idx()].dot(r).mapv(|x| x as f64);
        }
        if let Some(p) = &prec[g.idx()] {
            // Gaussian base: E = sum_i p_i x_i^2 / 2 - z_i x_i (the linear part is above)
            e_base += &(b.x[g.idx()].mapv(|x| x * x).dot(p) * 0.5).mapv(|x| x as f64);
        }
    }
    let fields = fe
        .summed
        .iter()
        .map(|&g| (g, ex.tempered_fields(g, b, None)))
        .collect();
    Parts {
        e_kept,
        e_base,
        fields,
    }
}

fn f_at(
    ex: &Exec,
    p: &Parts,
    base: &[Option<Array1<f32>>],
    prec: &[Option<Array1<f32>>],
    beta: f64,
) -> Array1<f64> {
    let mut f = &p.e_kept * beta + &p.e_base * (1.0 - beta);
    for (g, fl) in &p.fields {
        let mut t = fl.clone();
        t.z *= beta as f32;
        if let Some(r) = &base[g.idx()] {
            t.z.scaled_add((1.0 - beta) as f32, &r.view().insert_axis(ndarray::Axis(0)));
        }
        temper_precision(&mut t, prec[g.idx()].as_ref(), beta);
        let k = ex.lowered.sizes[g.idx()].1;
        f -= &log_partition(ex.family(*g), &t, k);
        f += &(t.offset.mapv(|x| x as f64) * beta);
    }
    f
}

/// Gaussian fields of the tempered joint: the model's precision times `beta` plus the base
/// precision times `1 - beta` (the means' natural parameters are tempered like any other).
fn temper_precision(f: &mut Fields, prec: Option<&Array1<f32>>, beta: f64) {
    if let (Some(bt), Some(p)) = (f.beta.as_mut(), prec) {
        *bt *= beta as f32;
        bt.scaled_add((1.0 - beta) as f32, &p.view().insert_axis(ndarray::Axis(0)));
    }
}

/// The base of every real group: the natural parameters and precisions of its units with
/// every other unit at zero (the model's unary terms). Fills `base` with the `z0` rows and
/// returns the precision rows; a real group whose unary precision is not positive everywhere
/// has no such base and is an error.
fn real_bases(
    ex: &Exec,
    base: &mut [Option<Array1<f32>>],
) -> Result<Vec<Option<Array1<f32>>>, EvalError> {
    let zero = Batch::zeros(ex.model, 1);
    let mut prec = vec![None; ex.n_groups()];
    for g in ex.model.group_ids() {
        if ex.family(g) != Family::Gaussian {
            continue;
        }
        let f = ex.fields(g, &zero);
        let p = f
            .beta
            .expect("Gaussian fields carry a precision")
            .row(0)
            .to_owned();
        if p.iter().any(|&x| !(x.is_finite() && x > 0.0)) {
            return Err(EvalError::RealGroup(ex.model.group(g).name.clone()));
        }
        base[g.idx()] = Some(f.z.row(0).to_owned());
        prec[g.idx()] = Some(p);
    }
    Ok(prec)
}

/// `log Z_A`: every group's units independent with natural parameters `base` (zero where
/// `None`) and, for real groups, precisions `prec`.
fn log_z_base(ex: &Exec, base: &[Option<Array1<f32>>], prec: &[Option<Array1<f32>>]) -> f64 {
    ex.model
        .group_ids()
        .map(|g| base_fields(ex, g, base, prec, 1))
        .map(|(g, f)| log_partition(ex.family(g), &f, ex.lowered.sizes[g.idx()].1)[0])
        .sum()
}

/// The base model's fields of group `g`, repeated for `rows` rows.
fn base_fields(
    ex: &Exec,
    g: GroupId,
    base: &[Option<Array1<f32>>],
    prec: &[Option<Array1<f32>>],
    rows: usize,
) -> (GroupId, Fields) {
    let n = ex.lowered.sizes[g.idx()].0;
    let rep = |a: Array1<f32>| {
        a.insert_axis(ndarray::Axis(0))
            .broadcast((rows, n))
            .expect("row broadcast")
            .to_owned()
    };
    let z = base[g.idx()].clone().unwrap_or_else(|| Array1::zeros(n));
    (
        g,
        Fields {
            z: rep(z),
            beta: prec[g.idx()].clone().map(rep),
            offset: Array1::zeros(rows),
        },
    )
}

/// Whether the schedule's first block draws exactly the whole of the `groups`.
fn first_block_is(ex: &Exec, groups: &[GroupId]) -> bool {
    let Some(first) = ex.plan.structure.schedule.blocks.first() else {
        return false;
    };
    let mut gs: Vec<GroupId> = first.members.iter().map(|m| m.group).collect();
    gs.sort();
    first.members.iter().all(|m| m.elems.is_none()) && gs == groups
}

/// One sweep of the Plan's schedule on the tempered joint when some group is real: as
/// `Exec::gibbs_sweep` with a `Temper`, plus the base precision of real groups, which
/// `Temper` (a bias row per group) cannot express.
fn tempered_sweep(
    ex: &Exec,
    b: &mut Batch,
    rngs: &mut Rngs,
    temper: &Temper,
    prec: &[Option<Array1<f32>>],
    clamped: &[bool],
) {
    for block in &ex.plan.structure.schedule.blocks {
        let members: Vec<_> = block
            .members
            .iter()
            .filter(|mb| !clamped[mb.group.idx()])
            .collect();
        let fields: Vec<Fields> = members
            .iter()
            .map(|mb| {
                let mut f = ex.tempered_fields(mb.group, b, Some(temper));
                // tempered_fields scaled the precision by beta; add the base's share
                if let (Some(bt), Some(p)) = (f.beta.as_mut(), &prec[mb.group.idx()]) {
                    bt.scaled_add(
                        (1.0 - temper.beta) as f32,
                        &p.view().insert_axis(ndarray::Axis(0)),
                    );
                }
                f
            })
            .collect();
        for (mb, f) in members.iter().zip(&fields) {
            let g = mb.group;
            let k = ex.lowered.sizes[g.idx()].1;
            sample_into(
                ex.family(g),
                f,
                k,
                &mut b.x[g.idx()],
                mb.elems.as_deref(),
                rngs,
            );
            b.sq[g.idx()] = None;
        }
    }
}

/// Runs AIS from the base model given by `base` (see [`base_from_data`]) to the model, on the
/// kept side of the split that sums out the most variables (for a DBM: `h1`, with `v` and
/// `h2` summed out).
pub fn ais(
    ex: &Exec,
    base: &[Option<Array1<f32>>],
    cfg: &AisConfig,
) -> Result<AisResult, EvalError> {
    let summed = most_summed(ex.model, ex.plan);
    ais_summing(ex, base, cfg, &summed)
}

/// [`ais`] with the summed-out groups given (a valid split, see `split::valid_splits`).
pub fn ais_summing(
    ex: &Exec,
    base: &[Option<Array1<f32>>],
    cfg: &AisConfig,
    summed: &[GroupId],
) -> Result<AisResult, EvalError> {
    let mut base = base.to_vec();
    let prec = real_bases(ex, &mut base)?;
    let has_real = prec.iter().any(Option::is_some);
    let base = &base[..];
    let betas = cfg.betas.values();
    if betas.len() < 2
        || betas[0] != 0.0
        || *betas.last().unwrap() != 1.0
        || betas.windows(2).any(|w| w[1] < w[0])
    {
        return Err(EvalError::Betas);
    }
    let fe = with_summed(ex.model, ex.plan, summed).free_energy;
    let r = cfg.runs;
    let mut rngs = Rngs::new(cfg.seed, 0, r);
    // x_1 ~ base: every group drawn independently from its base row
    let mut b = Batch::zeros(ex.model, r);
    for g in ex.model.group_ids() {
        let (_, f) = base_fields(ex, g, base, &prec, r);
        let k = ex.lowered.sizes[g.idx()].1;
        sample_into(ex.family(g), &f, k, &mut b.x[g.idx()], None, &mut rngs);
    }
    let free = vec![false; ex.n_groups()];
    // The weights see only the kept groups, so each transition must be a kernel on their
    // marginal at the current beta: the summed groups have to be drawn afresh given the kept
    // ones before the kept ones move. A schedule whose first block is exactly the summed
    // groups does that already; otherwise draw them first (kept groups clamped). Without
    // this, the kept groups would be drawn from summed groups left over from the previous
    // beta, which biases Z low (by half with 3 betas on a 10x6 RBM).
    let kept_clamped: Vec<bool> = ex
        .model
        .group_ids()
        .map(|g| !fe.summed.contains(&g))
        .collect();
    let pre_draw = !fe.summed.is_empty() && !first_block_is(ex, &fe.summed);
    let sweep = |b: &mut Batch, rngs: &mut Rngs, temper: &Temper, clamped: &[bool]| {
        if has_real {
            tempered_sweep(ex, b, rngs, temper, &prec, clamped);
        } else {
            ex.gibbs_sweep(b, rngs, clamped, Some(temper));
        }
    };
    // the runs of `b` through every beta, their log weights (each run is a row, with its
    // own random stream: a run's path does not depend on the other rows)
    let anneal = |b: &mut Batch, rngs: &mut Rngs| -> Array1<f64> {
        let mut log_w = Array1::<f64>::zeros(b.rows());
        let mut temper = Temper {
            beta: 0.0,
            base: base.to_vec(),
        };
        for k in 1..betas.len() {
            let p = parts(ex, &fe, b, base, &prec);
            log_w -= &f_at(ex, &p, base, &prec, betas[k]);
            log_w += &f_at(ex, &p, base, &prec, betas[k - 1]);
            if k + 1 < betas.len() {
                temper.beta = betas[k];
                if pre_draw {
                    sweep(b, rngs, &temper, &kept_clamped);
                }
                sweep(b, rngs, &temper, &free);
            }
        }
        log_w
    };
    // every product on its table's AMX split from the first (the route must not depend on
    // how calls are spread over threads), then the two halves of the runs on a core each
    ex.split_tables_for_reuse();
    let log_w = if ex.threads() >= 2 && r >= 2 {
        let (w0, w1) = crate::exec::jit::on_halves(r, |lo, hi| {
            anneal(&mut b.slice_rows(lo, hi), &mut rngs.slice_rows(lo, hi))
        });
        ndarray::concatenate(ndarray::Axis(0), &[w0.view(), w1.view()]).expect("1-d halves")
    } else {
        anneal(&mut b, &mut rngs)
    };
    let log_w = log_w.to_vec();
    let lza = log_z_base(ex, base, &prec);
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
