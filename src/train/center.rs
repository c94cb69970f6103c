//! The centering trick (Montavon & Müller 2012; Melchior, Fischer & Wiskott 2016; models.md
//! §5.8) as a change of the *update*, for any model whose binary or spin units interact
//! pairwise: the model keeps its ordinary (uncentered) parameters, so sampling, evaluation and
//! checkpoints see an ordinary model; only the step is taken in centered coordinates.
//!
//! # The reparameterisation, for any IR
//! The energy is `E(x; θ) = Σ_t c_t(θ) m_t(x)`, a sum of monomials `m_t` with coefficients
//! `c_t`. A *centered* group `g` (binary or spin, in some two-unit term) gets offsets `μ_g`,
//! one per unit; other groups have `μ = 0`. The centered energy replaces every unit by
//! `x_u - μ_u`: `E_μ(x; θᶜ) = Σ_t c_t(θᶜ) m_t(x - μ)`. For a pair instance `c · x_i y_j`,
//! `c (x_i - μ_i)(y_j - μ_j) = c x_i y_j - c μ_j x_i - c μ_i y_j + const`, so `E_μ(x; θᶜ) =
//! E(x; θ) + const` when the couplings agree and the *anchor* bias of every unit (its first
//! bias term `s · a[e] · x_u`, coefficient linear in one parameter element) absorbs
//! `r_u = Σ_{pairs ∋ u} c · μ_other`:
//!
//! ```text
//! s a_std[e] = s aᶜ[e] - r_u,   i.e.   a_std = aᶜ + D(θ, μ),   D_u = -r_u / s
//! ```
//!
//! For an RBM (`E = -vᵀWh - aᵀv - bᵀh`, `s = -1`, `c = -W`) this is `a_std = aᶜ - W μ_h`,
//! `b_std = bᶜ - Wᵀ μ_v` (models.md §5.8); for a DBM every layer's bias absorbs both
//! neighbours. A bias parameter shared by several units (the tied copies of `dbm_bottom`) gets
//! the mean of their shifts, which is exact when they agree (checked: `check_shared`).
//!
//! # The gradient
//! Offsets are constants. The ascent direction of `θᶜ` is `-⟨∂E_μ/∂θᶜ⟩_data + ⟨∂E_μ/∂θᶜ⟩_model`;
//! with `Δx = ⟨x⟩_data - ⟨x⟩_model` (positive-phase minus negative-phase means) the centered
//! pair statistic is `Δ⟨(x_i-μ_i)(y_j-μ_j)⟩ = Δ⟨x_i y_j⟩ - μ_i Δy_j - μ_j Δx_i`, so
//!
//! ```text
//! gᶜ = g + Σ_pairs ∂c_t/∂θ · (μ_i Δy_j + μ_j Δx_i)     (g: the plain ascent direction)
//! ```
//!
//! pushed through each pair coefficient by its reverse-mode derivative; bias gradients are
//! unchanged (`⟨x - μ⟩_data - ⟨x - μ⟩_model = Δx`). For an RBM:
//! `gᶜ_W = ⟨vhᵀ⟩_d - ⟨vhᵀ⟩_m - μ_v Δhᵀ - Δv μ_hᵀ`, `gᶜ_a = Δv`, `gᶜ_b = Δh`.
//!
//! # The step, in uncentered coordinates
//! Momentum lives in centered coordinates (`velocity` holds `vᶜ`); weight decay and
//! constraints act on the couplings, which both coordinates share. With `κ` momentum, `η` the
//! learning rate, `λ` weight decay (couplings only):
//!
//! ```text
//! vᶜ_W ← κ vᶜ_W + η (gᶜ_W - λ W)      W ← W + vᶜ_W
//! vᶜ_a ← κ vᶜ_a + η Δv                 a ← a + vᶜ_a - vᶜ_W μ_h
//! vᶜ_b ← κ vᶜ_b + η Δh                 b ← b + vᶜ_b - vᶜ_Wᵀ μ_v
//! ```
//!
//! which `step` computes generically as `θᶜ = θ - D(θ)`, the ordinary update (`update::apply`)
//! on `θᶜ`, then `θ' = θᶜ' + D(θᶜ')`. For a DBM, `b1` gets `- vᶜ_W1ᵀ μ_v - vᶜ_W2 μ_h2`.
//!
//! # The offsets
//! Initially visible offsets are the data means and hidden ones the mean of the unit under its
//! bias alone (`σ(b)`, `tanh(b)` for spins; 0.5 for a zero bias). Before each step they move,
//! `μ ← (1 - ν) μ + ν ⟨x⟩_data` (the batch's positive-phase means, Melchior et al.'s order:
//! move, then take the gradient with the new offsets). Moving offsets changes the centered
//! biases (`aᶜ' = aᶜ + W (μ_h' - μ_h)`) and leaves the stored uncentered parameters — the model
//! — untouched; the centered velocities are kept.
//!
//! Invariant: with every offset zero, `center_grad` and `step` are the plain gradient and
//! `update::apply` bit for bit (zero corrections are skipped, not added).

use super::update::{self, Divergence, ParamRules};
use crate::exec::Batch;
use crate::ir::eval::Params;
use crate::ir::{Constraint, Domain, GroupId, Model, ParamId, Role};
use crate::lower::{Lowered, TermKind};

/// Why a model cannot be trained with centering.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CenteringError {
    #[error("centering needs terms with at most two units, each to the first power; a term with `{group}` has {units} unit factors (or a squared one)")]
    NotPairwise { group: String, units: usize },
    #[error("centering needs a bias with a parameter of its own for every unit of `{group}` (like `-b[j] * {group}[j]`); element {elem} has none")]
    NoBias { group: String, elem: usize },
    #[error("centering: bias parameter `{param}` also appears in a coupling, so it cannot absorb the offsets")]
    BiasInCoupling { param: String },
    #[error("centering: bias parameter `{param}` is fixed, so it cannot absorb the offsets")]
    FixedBias { param: String },
    #[error(
        "centering: bias parameter `{param}` is shared by units whose offsets shift it differently"
    )]
    SharedBias { param: String },
    #[error("centering needs a positive and a negative phase (cd, pcd or pt), not {method}")]
    Method { method: &'static str },
}

/// The bias parameter element that absorbs a unit's shift: the unit's coefficient in the
/// energy is `scale * param[elem]` (plus other bias terms, which stay as they are).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Anchor {
    param: ParamId,
    elem: u32,
    scale: f64,
}

/// A two-unit term `c[inst] * x_ga[ea] * x_gb[eb]`.
#[derive(Clone, Debug)]
struct Pair {
    term: usize,
    ga: GroupId,
    gb: GroupId,
    /// `Some` for generic terms: `(ea, eb)` of instance `k` at `[2k], [2k + 1]`; `None` for
    /// dense terms, whose instance `k` is `(k / nb, k % nb)`
    elems: Option<Vec<u32>>,
    nb: usize,
}

impl Pair {
    /// Calls `f(inst, ea, eb)` for every instance in order (nested loops for dense terms: no
    /// division per instance on the hot path).
    fn for_each(&self, n_inst: usize, mut f: impl FnMut(usize, usize, usize)) {
        match &self.elems {
            Some(e) => {
                for inst in 0..n_inst {
                    f(inst, e[2 * inst] as usize, e[2 * inst + 1] as usize);
                }
            }
            None => {
                let nb = self.nb.max(1);
                for a in 0..n_inst / nb {
                    for b in 0..nb {
                        f(a * nb + b, a, b);
                    }
                }
            }
        }
    }
}

/// Where centering acts in one model: which groups are centered, its pair terms, and the bias
/// that absorbs each unit's shift.
#[derive(Clone, Debug)]
pub struct Layout {
    /// by group: whether the group has offsets
    pub centered: Vec<bool>,
    pairs: Vec<Pair>,
    /// by group, by element: the anchor bias (only groups paired with a centered group)
    anchors: Vec<Vec<Option<Anchor>>>,
    /// by parameter: how many units are anchored to each element (empty: not an anchor)
    counts: Vec<Vec<u32>>,
}

impl Layout {
    /// Finds the centered groups (binary or spin groups in a two-unit term), the pair terms
    /// and every unit's anchor bias.
    pub fn new(model: &Model, lowered: &Lowered) -> Result<Layout, CenteringError> {
        let n_groups = model.groups.len();
        let centerable =
            |g: GroupId| matches!(model.group(g).domain, Domain::Binary | Domain::Spin);
        let mut pairs = Vec::new();
        for (k, lt) in lowered.terms.iter().enumerate() {
            match &lt.kind {
                TermKind::Dense { ga, gb, nb, .. } => pairs.push(Pair {
                    term: k,
                    ga: *ga,
                    gb: *gb,
                    elems: None,
                    nb: *nb,
                }),
                TermKind::Generic { factors, elems }
                    if factors.len() == 2 && factors.iter().all(|f| f.1 == 1) =>
                {
                    pairs.push(Pair {
                        term: k,
                        ga: factors[0].0,
                        gb: factors[1].0,
                        elems: Some(elems.clone()),
                        nb: 0,
                    })
                }
                _ => {}
            }
        }
        let mut centered = vec![false; n_groups];
        for p in &pairs {
            for g in [p.ga, p.gb] {
                centered[g.idx()] |= centerable(g);
            }
        }
        // no other term may touch a centered unit: its expansion would need more than biases
        for lt in &lowered.terms {
            let factors: Vec<(GroupId, u32)> = match &lt.kind {
                TermKind::Generic { factors, .. } => factors.clone(),
                TermKind::Bias { group, power, .. } => vec![(*group, *power)],
                _ => continue,
            };
            let pairwise = factors.len() <= 2 && factors.iter().all(|f| f.1 == 1);
            if let Some(g) = factors.iter().map(|f| f.0).find(|g| centered[g.idx()]) {
                if !pairwise {
                    return Err(CenteringError::NotPairwise {
                        group: model.group(g).name.clone(),
                        units: factors.len(),
                    });
                }
            }
        }
        pairs.retain(|p| centered[p.ga.idx()] || centered[p.gb.idx()]);
        // groups whose biases absorb a shift: partners of centered groups
        let mut needs = vec![false; n_groups];
        for p in &pairs {
            needs[p.ga.idx()] |= centered[p.gb.idx()];
            needs[p.gb.idx()] |= centered[p.ga.idx()];
        }
        let mut anchors: Vec<Vec<Option<Anchor>>> = model
            .groups
            .iter()
            .map(|g| vec![None; g.n_elems()])
            .collect();
        for lt in &lowered.terms {
            if let (
                TermKind::Bias {
                    group,
                    power: 1,
                    elems,
                },
                Some(l),
            ) = (&lt.kind, lt.coef.linear)
            {
                if !needs[group.idx()] {
                    continue;
                }
                for (inst, &e) in elems.iter().enumerate() {
                    let slot = &mut anchors[group.idx()][e as usize];
                    if slot.is_none() {
                        *slot = Some(Anchor {
                            param: l.param,
                            elem: inst as u32,
                            scale: l.scale,
                        });
                    }
                }
            }
        }
        let mut counts: Vec<Vec<u32>> = vec![Vec::new(); model.params.len()];
        for (g, row) in anchors.iter().enumerate() {
            if !needs[g] {
                continue;
            }
            for (e, a) in row.iter().enumerate() {
                let Some(a) = a else {
                    return Err(CenteringError::NoBias {
                        group: model.groups[g].name.clone(),
                        elem: e,
                    });
                };
                let c = &mut counts[a.param.idx()];
                if c.is_empty() {
                    *c = vec![0; model.params[a.param.idx()].n_elems()];
                }
                c[a.elem as usize] += 1;
            }
        }
        for (p, c) in counts.iter().enumerate() {
            if c.is_empty() {
                continue;
            }
            let name = || model.params[p].name.clone();
            if model.params[p].has(Constraint::Fixed) {
                return Err(CenteringError::FixedBias { param: name() });
            }
            let in_pair = pairs.iter().any(|pr| {
                lowered.terms[pr.term]
                    .coef
                    .params()
                    .contains(&ParamId(p as u32))
            });
            if in_pair {
                return Err(CenteringError::BiasInCoupling { param: name() });
            }
        }
        Ok(Layout {
            centered,
            pairs,
            anchors,
            counts,
        })
    }

    /// `r_u = Σ_{pairs ∋ u} c · μ_other` for every unit (zero offsets skipped, so all-zero
    /// offsets give exact zeros).
    fn partner_sums(&self, lowered: &Lowered, params: &Params, mu: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let mut r: Vec<Vec<f64>> = mu.iter().map(|m| vec![0.0; m.len()]).collect();
        for p in &self.pairs {
            let (ca, cb) = (self.centered[p.ga.idx()], self.centered[p.gb.idx()]);
            let c = lowered.terms[p.term].coef.eval(params);
            let (ga, gb) = (p.ga.idx(), p.gb.idx());
            if p.elems.is_none() {
                // dense: row dot products and row updates (vectorisable; the hot path)
                let (ma, mb) = (&mu[ga], &mu[gb]);
                let mut ra = vec![0.0; ma.len()];
                let mut rb = vec![0.0; mb.len()];
                for (a, row) in c.chunks_exact(p.nb.max(1)).enumerate() {
                    if cb {
                        ra[a] = row.iter().zip(mb).map(|(x, m)| x * m).sum::<f64>();
                    }
                    if ca && ma[a] != 0.0 {
                        let m = ma[a];
                        rb.iter_mut().zip(row).for_each(|(o, x)| *o += x * m);
                    }
                }
                r[ga].iter_mut().zip(&ra).for_each(|(o, x)| *o += x);
                r[gb].iter_mut().zip(&rb).for_each(|(o, x)| *o += x);
                continue;
            }
            p.for_each(c.len(), |inst, ea, eb| {
                let ck = c[inst];
                if cb && mu[gb][eb] != 0.0 {
                    r[ga][ea] += ck * mu[gb][eb];
                }
                if ca && mu[ga][ea] != 0.0 {
                    r[gb][eb] += ck * mu[ga][ea];
                }
            });
        }
        r
    }

    /// `D(θ, μ)`: what the anchor biases add to go from centered to uncentered coordinates
    /// (`θ = θᶜ + D`), one buffer per parameter (empty for parameters that are no anchor).
    pub fn shift(&self, lowered: &Lowered, params: &Params, mu: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let r = self.partner_sums(lowered, params, mu);
        let mut d: Vec<Vec<f64>> = self.counts.iter().map(|c| vec![0.0; c.len()]).collect();
        for (g, row) in self.anchors.iter().enumerate() {
            for (e, a) in row.iter().enumerate() {
                if let Some(a) = a {
                    if r[g][e] != 0.0 {
                        d[a.param.idx()][a.elem as usize] += -r[g][e] / a.scale;
                    }
                }
            }
        }
        for (dp, cp) in d.iter_mut().zip(&self.counts) {
            for (x, &n) in dp.iter_mut().zip(cp) {
                if n > 1 {
                    *x /= n as f64;
                }
            }
        }
        d
    }

    /// Checks that units sharing an anchor element need the same shift at these parameters
    /// and offsets (true by construction for tied copies; a model where it fails has no
    /// centered form with the same parameters).
    pub fn check_shared(
        &self,
        model: &Model,
        lowered: &Lowered,
        params: &Params,
        mu: &[Vec<f64>],
    ) -> Result<(), CenteringError> {
        let r = self.partner_sums(lowered, params, mu);
        let mut first: Vec<Vec<Option<f64>>> =
            self.counts.iter().map(|c| vec![None; c.len()]).collect();
        for (g, row) in self.anchors.iter().enumerate() {
            for (e, a) in row.iter().enumerate() {
                let Some(a) = a else { continue };
                let x = -r[g][e] / a.scale;
                let slot = &mut first[a.param.idx()][a.elem as usize];
                match *slot {
                    None => *slot = Some(x),
                    Some(y) if (x - y).abs() <= 1e-9 * (1.0 + x.abs().max(y.abs())) => {}
                    Some(_) => {
                        return Err(CenteringError::SharedBias {
                            param: model.params[a.param.idx()].name.clone(),
                        })
                    }
                }
            }
        }
        Ok(())
    }

    /// Turns the plain ascent direction `grad` into the centered one, given `diff` (per group,
    /// per element: positive-phase mean minus negative-phase mean) and the offsets.
    pub fn center_grad(
        &self,
        lowered: &Lowered,
        params: &Params,
        grad: &mut [Vec<f64>],
        diff: &[Vec<f64>],
        mu: &[Vec<f64>],
    ) {
        for p in &self.pairs {
            let lt = &lowered.terms[p.term];
            let (ma, mb) = (&mu[p.ga.idx()], &mu[p.gb.idx()]);
            let (da, db) = (&diff[p.ga.idx()], &diff[p.gb.idx()]);
            let mut corr = vec![0.0; lt.coef.n_inst()];
            if p.elems.is_none() {
                for (a, row) in corr.chunks_exact_mut(p.nb.max(1)).enumerate() {
                    let (m, d) = (ma[a], da[a]);
                    for ((o, &y), &n) in row.iter_mut().zip(db).zip(mb) {
                        *o = m * y + n * d;
                    }
                }
            } else {
                p.for_each(corr.len(), |inst, ea, eb| {
                    corr[inst] = ma[ea] * db[eb] + mb[eb] * da[ea];
                });
            }
            if corr.iter().any(|&x| x != 0.0) {
                lt.coef.backprop(params, &corr, grad);
            }
        }
    }

    /// Starting offsets: visible groups their data means (`data_means`, by group; `None` for
    /// hidden groups), hidden groups their mean under the bias alone (`σ(-c)` for a binary
    /// unit with bias coefficient `c`, `tanh(-c)` for a spin); zero for groups not centered.
    pub fn initial_offsets(
        &self,
        model: &Model,
        lowered: &Lowered,
        params: &Params,
        data_means: &[Option<Vec<f64>>],
    ) -> Vec<Vec<f64>> {
        let mut z: Vec<Vec<f64>> = model
            .groups
            .iter()
            .map(|g| vec![0.0; g.n_elems()])
            .collect();
        for lt in &lowered.terms {
            if let TermKind::Bias {
                group,
                power: 1,
                elems,
            } = &lt.kind
            {
                let c = lt.coef.eval(params);
                for (&e, ck) in elems.iter().zip(c) {
                    z[group.idx()][e as usize] -= ck;
                }
            }
        }
        model
            .group_ids()
            .map(|g| {
                let n = model.group(g).n_elems();
                if !self.centered[g.idx()] {
                    return vec![0.0; n];
                }
                match (&data_means[g.idx()], model.group(g).role) {
                    (Some(m), Role::Visible) => m.clone(),
                    _ => z[g.idx()]
                        .iter()
                        .map(|&f| match model.group(g).domain {
                            Domain::Spin => f.tanh(),
                            _ => 1.0 / (1.0 + (-f).exp()),
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// `μ ← (1 - rate) μ + rate · means` for the centered groups.
    pub fn move_offsets(&self, mu: &mut [Vec<f64>], means: &[Vec<f64>], rate: f64) {
        for (g, (m, x)) in mu.iter_mut().zip(means).enumerate() {
            if self.centered[g] {
                for (a, &b) in m.iter_mut().zip(x) {
                    *a = (1.0 - rate) * *a + rate * b;
                }
            }
        }
    }
}

/// Per group, per element: the batch mean of the stored state, in f64.
pub fn group_means(b: &Batch) -> Vec<Vec<f64>> {
    let m = b.rows().max(1) as f64;
    b.x.iter()
        .map(|a| {
            let mut s = vec![0.0f64; a.ncols()];
            for row in a.rows() {
                for (o, &x) in s.iter_mut().zip(row) {
                    *o += x as f64;
                }
            }
            s.iter().map(|x| x / m).collect()
        })
        .collect()
}

fn add_shift(params: &mut Params, d: &[Vec<f64>], sign: f64) {
    for (p, dp) in params.values.iter_mut().zip(d) {
        for (x, &s) in p.iter_mut().zip(dp) {
            if s != 0.0 {
                *x += sign * s;
            }
        }
    }
}

/// One centered step (module docs): `θᶜ = θ - D(θ)`, the ordinary update of §0.4 on `θᶜ` with
/// the centered gradient `grad` and centered `velocity`, then `θ' = θᶜ' + D(θᶜ')`. On
/// divergence `params` is left as it was up to rounding of the shift (the trainer restores
/// its snapshot anyway).
#[allow(clippy::too_many_arguments)]
pub fn step(
    layout: &Layout,
    model: &Model,
    lowered: &Lowered,
    rules: &[ParamRules],
    params: &mut Params,
    velocity: &mut [Vec<f64>],
    grad: &[Vec<f64>],
    mu: &[Vec<f64>],
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    max_abs: f64,
) -> Result<(), Divergence> {
    let d_old = layout.shift(lowered, params, mu);
    add_shift(params, &d_old, -1.0);
    if let Err(e) = update::apply(
        model,
        rules,
        params,
        velocity,
        grad,
        lr,
        momentum,
        weight_decay,
        max_abs,
    ) {
        add_shift(params, &d_old, 1.0);
        return Err(e);
    }
    let d_new = layout.shift(lowered, params, mu);
    add_shift(params, &d_new, 1.0);
    for (k, dp) in d_new.iter().enumerate() {
        if dp.is_empty() {
            continue;
        }
        if let Some(&bad) = params.values[k]
            .iter()
            .find(|x| !(x.is_finite() && x.abs() <= max_abs))
        {
            return Err(Divergence {
                param: model.params[k].name.clone(),
                value: bad,
            });
        }
    }
    Ok(())
}
