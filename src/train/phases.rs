//! Gradient estimates for one mini-batch: positive phase (summed-out or mean-field hidden
//! groups), negative phase from CD chains, persistent chains or tempered replicas, and the
//! flip-based objectives (pseudo-likelihood, ratio matching).
//!
//! Invariant: every estimate is an *ascent* direction, one flat buffer per parameter, built
//! only from `Exec` calls driven by the Plan (no per-model code). Summed groups are always
//! Rao-Blackwellised in statistics.

use crate::derive::plan::Family;
use crate::exec::{sample_from_moments, Batch, Exec, Rngs, Temper};
use crate::ir::{GroupId, Role};
use ndarray::Array2;

pub(crate) fn groups_with(ex: &Exec, role: Role) -> Vec<GroupId> {
    ex.model
        .group_ids()
        .filter(|&g| ex.model.group(g).role == role)
        .collect()
}

/// `true` for visible groups (clamped in the positive phase).
pub(crate) fn visible_mask(ex: &Exec) -> Vec<bool> {
    ex.model
        .groups
        .iter()
        .map(|g| g.role == Role::Visible)
        .collect()
}

/// Fills the hidden groups of `b` (visible set) with positive-phase moments: exact
/// conditional means when every hidden group is summed out, mean field otherwise (or, when
/// mean field is not supported, `k` clamped Gibbs sweeps).
pub(crate) fn positive(ex: &Exec, b: &mut Batch, rngs: &mut Rngs, k: usize) {
    let hidden = groups_with(ex, Role::Hidden);
    let summed = &ex.plan.free_energy.summed;
    if hidden.iter().all(|g| summed.contains(g)) {
        ex.rao_blackwellize(b, &hidden, None);
    } else if ex.plan.meanfield.supported {
        ex.mean_field(b);
    } else {
        let clamped = visible_mask(ex);
        for _ in 0..k.max(1) {
            ex.gibbs_sweep(b, rngs, &clamped, None);
        }
        let s: Vec<GroupId> = hidden.into_iter().filter(|g| summed.contains(g)).collect();
        ex.rao_blackwellize(b, &s, None);
    }
}

/// Whether the positive moments of the hidden groups are exact conditionals (so sampling
/// from them is a valid Gibbs step).
pub(crate) fn hidden_exact(ex: &Exec) -> bool {
    let summed = &ex.plan.free_energy.summed;
    groups_with(ex, Role::Hidden)
        .iter()
        .all(|g| summed.contains(g))
}

/// The Gibbs schedule rotated to start at the first block holding a visible group, so a
/// chain started from data (with hidden groups drawn given it) moves the visibles first.
fn rotated_blocks(ex: &Exec) -> Vec<usize> {
    let blocks = &ex.plan.structure.schedule.blocks;
    let first = blocks
        .iter()
        .position(|b| {
            b.members
                .iter()
                .any(|m| ex.model.group(m.group).role == Role::Visible)
        })
        .unwrap_or(0);
    (0..blocks.len())
        .map(|k| (first + k) % blocks.len())
        .collect()
}

/// Runs `k` sweeps of the rotated schedule on `chain`, leaving out the trailing blocks of
/// the last sweep that hold only summed groups (the Rao-Blackwell step replaces them);
/// returns those blocks (empty when `k == 0`).
fn sweeps(
    ex: &Exec,
    chain: &mut Batch,
    k: usize,
    rngs: &mut Rngs,
    temper: Option<&Temper>,
) -> Vec<usize> {
    let order = rotated_blocks(ex);
    let blocks = &ex.plan.structure.schedule.blocks;
    let summed = &ex.plan.free_energy.summed;
    let only_summed = |bi: usize| {
        blocks[bi]
            .members
            .iter()
            .all(|m| m.elems.is_none() && summed.contains(&m.group))
    };
    // trailing blocks of the last sweep that the Rao-Blackwell step replaces
    let mut skip_from = order.len();
    while skip_from > 0 && only_summed(order[skip_from - 1]) {
        skip_from -= 1;
    }
    let free = vec![false; ex.n_groups()];
    for sweep in 0..k {
        let end = if sweep + 1 == k {
            skip_from
        } else {
            order.len()
        };
        for &bi in &order[..end] {
            ex.gibbs_block(&blocks[bi], chain, rngs, &free, temper);
        }
    }
    if k == 0 {
        return Vec::new();
    }
    order[skip_from..].to_vec()
}

/// Runs `k` sweeps of the rotated schedule on `chain`, then leaves the summed groups at their
/// conditional moments in `stats` (a copy used for statistics); the chain's summed groups are
/// redrawn from those moments, which is exactly the skipped trailing block's Gibbs step.
pub(crate) fn run_chain(
    ex: &Exec,
    chain: &mut Batch,
    k: usize,
    rngs: &mut Rngs,
    temper: Option<&Temper>,
) -> Batch {
    let skipped = sweeps(ex, chain, k, rngs, temper);
    let blocks = &ex.plan.structure.schedule.blocks;
    let mut stats = chain.clone();
    ex.rao_blackwellize(&mut stats, &ex.plan.free_energy.summed, temper);
    for &bi in &skipped {
        for m in &blocks[bi].members {
            let g = m.group;
            sample_from_moments(ex, g, &stats, &mut chain.x[g.idx()], rngs);
            chain.sq[g.idx()] = None;
        }
    }
    stats
}

/// `run_chain` for a chain nobody continues (CD): the statistics are taken in place and the
/// summed groups are not redrawn, since only their moments enter the negative statistics
/// (saves a batch copy and a draw per update). Same statistics and random stream up to the
/// draws `run_chain` would make last.
fn run_chain_once(ex: &Exec, mut chain: Batch, k: usize, rngs: &mut Rngs) -> Batch {
    sweeps(ex, &mut chain, k, rngs, None);
    ex.rao_blackwellize(&mut chain, &ex.plan.free_energy.summed, None);
    chain
}

/// `out = pos_scale * a + neg_scale * b`, per parameter.
pub(crate) fn combine(a: &[Vec<f64>], sa: f64, b: &[Vec<f64>], sb: f64) -> Vec<Vec<f64>> {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.iter().zip(y).map(|(p, q)| sa * p + sb * q).collect())
        .collect()
}

/// Whether the visibles can be set to their conditional means in one step and the hidden
/// groups summed out given them: every hidden group summed, visible groups that interact
/// neither with themselves nor with each other.
pub(crate) fn mean_reconstruction_ok(ex: &Exec) -> bool {
    let st = &ex.plan.structure;
    let vis = groups_with(ex, Role::Visible);
    hidden_exact(ex)
        && vis.iter().all(|&g| {
            !st.blankets[g.idx()].self_interacting
                && vis
                    .iter()
                    .all(|&h| h == g || !st.interacts[g.idx()][h.idx()])
        })
}

/// Contrastive divergence's two batches: the positive moments and the chain after `k`
/// steps (the trainer reads the ascent direction `-<dE>_data + <dE>_CD-k` from them), and
/// the squared reconstruction error of the visibles after the chain. With `mean_visible`
/// the last step's visibles are their conditional means given the hidden sample (`rbm.m`),
/// and the hidden statistics are taken at those means (checked by `mean_reconstruction_ok`
/// beforehand).
pub(crate) fn cd(
    ex: &Exec,
    data: Batch,
    k: usize,
    mean_visible: bool,
    rngs: &mut Rngs,
) -> (f64, Batch, Batch) {
    let (pos, neg) = crate::exec::jit::without_amx(|| cd_chains(ex, data, k, mean_visible, rngs));
    // the positive batch holds the data's visibles (no copy of the data kept for this)
    let err = mean_of(&row_errors(ex, &pos, &neg));
    (err, pos, neg)
}

/// The batches CD's statistics are read from: positive moments (in `data`'s buffers; the
/// visibles stay the data), and the chain after `k` steps (every quantity per row: a row's
/// result does not depend on the other rows).
fn cd_chains(
    ex: &Exec,
    data: Batch,
    k: usize,
    mean_visible: bool,
    rngs: &mut Rngs,
) -> (Batch, Batch) {
    let mut pos = data;
    // chain start: data visibles, hidden groups drawn given them
    let mut chain;
    if hidden_exact(ex) {
        // the positive moments and the chain's first hidden draw in one pass per group (one
        // generated epilogue on the JIT back end); the same numbers as moments-then-sample
        chain = pos.clone();
        for g in groups_with(ex, Role::Hidden) {
            ex.moments_and_sample(g, &mut pos, &mut chain.x[g.idx()], rngs);
            chain.sq[g.idx()] = None;
        }
    } else {
        positive(ex, &mut pos, rngs, k);
        chain = pos.clone();
        for g in groups_with(ex, Role::Hidden) {
            sample_from_moments(ex, g, &pos, &mut chain.x[g.idx()], rngs);
        }
        chain.sq.iter_mut().for_each(|s| *s = None);
    }
    let neg = if mean_visible {
        // k - 1 full sweeps (leaving sampled hidden groups), then v <- E[v | h], h <- E[h | v]
        run_chain(ex, &mut chain, k - 1, rngs, None);
        ex.rao_blackwellize(&mut chain, &groups_with(ex, Role::Visible), None);
        ex.rao_blackwellize(&mut chain, &ex.plan.free_energy.summed, None);
        chain
    } else {
        run_chain_once(ex, chain, k, rngs)
    };
    (pos, neg)
}

/// Per row: the squared distance between the visibles of `data` and `neg`, in f64. The
/// rows are independent (each half batch takes its own rows' errors on its core), and each
/// sum runs in a fixed order of eight lanes: a single running f64 sum was a serial chain of
/// adds, 2 % of a CD update.
fn row_errors(ex: &Exec, data: &Batch, neg: &Batch) -> Vec<f64> {
    let mut err = vec![0.0f64; data.rows()];
    for g in groups_with(ex, Role::Visible) {
        let (d, n) = (&data.x[g.idx()], &neg.x[g.idx()]);
        for ((e, d), n) in err.iter_mut().zip(d.rows()).zip(n.rows()) {
            *e += match (d.to_slice(), n.to_slice()) {
                (Some(d), Some(n)) => squared_distance(d, n),
                _ => squared_distance(&d.to_vec(), &n.to_vec()),
            };
        }
    }
    err
}

/// `sum_j (a_j - b_j)^2` (f32 differences, f64 sums): eight running sums, lane `l` taking
/// the elements `j = l mod 8`, added in lane order at the end.
fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            let t = x[l] - y[l];
            lanes[l] += (t * t) as f64;
        }
    }
    for (l, (x, y)) in ar.iter().zip(br).enumerate() {
        let t = x - y;
        lanes[l] += (t * t) as f64;
    }
    lanes.iter().sum()
}

/// The mean of `xs`, summed in order.
fn mean_of(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

/// `cd` with the chains of the two half batches on two threads (the executor's own
/// splitting pays only for its largest products; the chain phases are most of an update).
/// Every chain quantity is per row and the halves draw from the same row streams as the
/// whole batch, so the result is bit-identical to `cd` on one thread; the statistics are
/// taken once, on the whole batch, with the executor's threads.
pub(crate) fn cd_halves(
    ex: &Exec,
    data: &Batch,
    k: usize,
    mean_visible: bool,
    rngs: &mut Rngs,
) -> (f64, Batch, Batch) {
    ex.prepack_transposed();
    let rngs = &*rngs;
    let ((p0, n0, e0), (p1, n1, e1)) = crate::exec::jit::on_halves(data.rows(), |lo, hi| {
        let d = data.slice_rows(lo, hi);
        let mut r = rngs.slice_rows(lo, hi);
        let (p, n) = crate::exec::jit::without_amx(|| cd_chains(ex, d, k, mean_visible, &mut r));
        // the positive batch holds the data's visibles
        let e = row_errors(ex, &p, &n);
        (p, n, e)
    });
    let (pos, neg) = Batch::stack_two(&p0, &p1, &n0, &n1);
    (mean_of(&[e0, e1].concat()), pos, neg)
}

/// Sites `(group, variable)` a flip objective visits: every element of every visible group.
fn flip_sites(ex: &Exec) -> Vec<(GroupId, usize)> {
    groups_with(ex, Role::Visible)
        .into_iter()
        .flat_map(|g| (0..ex.model.group(g).n_elems()).map(move |e| (g, e)))
        .collect()
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum FlipError {
    #[error("{method} needs every hidden group summed out of the free energy; `{group}` is not")]
    NotSummed { method: &'static str, group: String },
    #[error("{method} needs binary or spin visible units; `{group}` is {family:?}")]
    Domain {
        method: &'static str,
        group: String,
        family: Family,
    },
}

pub(crate) fn check_flip(ex: &Exec, method: &'static str) -> Result<(), FlipError> {
    for g in groups_with(ex, Role::Hidden) {
        if !ex.plan.free_energy.summed.contains(&g) {
            return Err(FlipError::NotSummed {
                method,
                group: ex.model.group(g).name.clone(),
            });
        }
    }
    for g in groups_with(ex, Role::Visible) {
        let f = ex.family(g);
        if !matches!(f, Family::Bernoulli | Family::Spin) {
            return Err(FlipError::Domain {
                method,
                group: ex.model.group(g).name.clone(),
                family: f,
            });
        }
    }
    Ok(())
}

/// Pseudo-likelihood (`ratio == false`) or ratio matching (`ratio == true`) on `sites`
/// random sites per example (all when `None`). Returns the ascent direction and the objective
/// per example (log-PL, or minus the ratio-matching loss), both scaled to the full site sum.
pub(crate) fn flip_objective(
    ex: &Exec,
    data: &Batch,
    sites: Option<usize>,
    ratio: bool,
    rngs: &mut Rngs,
) -> (Vec<Vec<f64>>, f64) {
    let all = flip_sites(ex);
    let m = data.rows();
    let per = sites.unwrap_or(all.len()).min(all.len());
    let scale = all.len() as f64 / per as f64;
    let mut chosen: Vec<Vec<usize>> = Vec::with_capacity(m);
    for r in 0..m {
        chosen.push(if per == all.len() {
            (0..all.len()).collect()
        } else {
            (0..per).map(|_| rngs.rows[r].below(all.len())).collect()
        });
    }
    let f0 = ex.free_energy(data, None);
    let mut grads: Vec<Vec<f64>> = ex
        .model
        .params
        .iter()
        .map(|p| vec![0.0; p.n_elems()])
        .collect();
    let mut w0 = vec![0.0f64; m];
    let mut objective = 0.0;
    // flipped copies in chunks of examples, to bound memory
    let chunk = (4096 / per).max(1);
    for r0 in (0..m).step_by(chunk) {
        let rs: Vec<usize> = (r0..(r0 + chunk).min(m)).collect();
        let n_rows = rs.len() * per;
        let mut fl = Batch {
            x: data
                .x
                .iter()
                .map(|a| Array2::zeros((n_rows, a.ncols())))
                .collect(),
            sq: vec![None; data.x.len()],
        };
        let mut row = 0;
        for &r in &rs {
            for &s in &chosen[r] {
                for (gi, a) in fl.x.iter_mut().enumerate() {
                    a.row_mut(row).assign(&data.x[gi].row(r));
                }
                let (g, e) = all[s];
                let x = &mut fl.x[g.idx()][(row, e)];
                *x = match ex.family(g) {
                    Family::Spin => -*x,
                    _ => 1.0 - *x,
                };
                row += 1;
            }
        }
        let f1 = ex.free_energy(&fl, None);
        let mut w1 = vec![0.0f64; n_rows];
        let mut row = 0;
        for &r in &rs {
            for _ in 0..per {
                let u = f0[r] - f1[row];
                let s = 1.0 / (1.0 + (-u).exp());
                let c = if ratio {
                    objective -= scale * s * s;
                    2.0 * s * s * (1.0 - s)
                } else {
                    objective += scale * -(u.max(0.0) + (-u.abs()).exp().ln_1p());
                    s
                };
                // ascent = -c * (dF(x) - dF(x')) summed; dF = E_{p(h|x)}[dE]
                w0[r] -= scale * c / m as f64;
                w1[row] = scale * c / m as f64;
                row += 1;
            }
        }
        ex.rao_blackwellize(&mut fl, &ex.plan.free_energy.summed, None);
        let g1 = ex.energy_grad_weighted(&fl, &w1);
        grads = combine(&grads, 1.0, &g1, 1.0);
    }
    let mut rb = data.clone();
    ex.rao_blackwellize(&mut rb, &ex.plan.free_energy.summed, None);
    let g0 = ex.energy_grad_weighted(&rb, &w0);
    (combine(&grads, 1.0, &g0, 1.0), objective / m as f64)
}

/// Parallel tempering: `replicas[t]` at inverse temperature `betas[t]` (`betas[0] = 1`), one
/// `k`-sweep move each, then swaps of adjacent pairs (even pairs on even steps, odd on odd)
/// accepted with `min(1, exp((b_t - b_t+1) (E_t - E_t+1)))` per chain. Returns statistics of
/// the `beta = 1` replica and the swap acceptance rate.
pub(crate) fn pt_negative(
    ex: &Exec,
    replicas: &mut [Batch],
    betas: &[f64],
    k: usize,
    step: u64,
    rngs: &mut [Rngs],
) -> (Batch, f64) {
    let mut stats = None;
    for (t, rep) in replicas.iter_mut().enumerate() {
        let temper = Temper {
            beta: betas[t],
            base: vec![None; ex.n_groups()],
        };
        let s = run_chain(ex, rep, k, &mut rngs[t], Some(&temper));
        if t == 0 {
            stats = Some(s);
        }
    }
    let energies: Vec<_> = replicas.iter().map(|r| ex.energy(r)).collect();
    let (mut tried, mut accepted) = (0usize, 0usize);
    let start = (step % 2) as usize;
    let mut t = start;
    while t + 1 < replicas.len() {
        let (lo, hi) = replicas.split_at_mut(t + 1);
        let (a, b) = (&mut lo[t], &mut hi[0]);
        let (ea, eb) = (&energies[t], &energies[t + 1]);
        for c in 0..a.rows() {
            let log_acc = (betas[t] - betas[t + 1]) * (ea[c] - eb[c]);
            tried += 1;
            if log_acc >= 0.0 || rngs[t].rows[c].uniform_f64() < log_acc.exp() {
                accepted += 1;
                for gi in 0..a.x.len() {
                    let ra = a.x[gi].row(c).to_owned();
                    a.x[gi].row_mut(c).assign(&b.x[gi].row(c));
                    b.x[gi].row_mut(c).assign(&ra);
                }
            }
        }
        t += 2;
    }
    let rate = if tried == 0 {
        0.0
    } else {
        accepted as f64 / tried as f64
    };
    (stats.expect("at least one replica"), rate)
}
