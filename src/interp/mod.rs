//! The reference interpreter: executes a derived `Plan` on plain `Vec<f64>` states, in f64,
//! one variable at a time. Slow and obviously right; the oracle the JIT is tested against.
//!
//! Every quantity is computed from the plan's *lists* (which terms feed which conditional,
//! which terms the free energy keeps, which blocks a sweep visits), never re-derived: a
//! derivation that drops or misplaces a term gives a wrong number here, which the property
//! tests catch against exact enumeration.
//!
//! Random stream (fixed, so a JIT can reproduce it draw for draw): `Uniform::uniform` turns
//! one `u32` into `(u + 0.5) / 2^32`. A Gibbs block step visits its members in order, and the
//! variables of a member in increasing index; each discrete variable draws exactly one uniform
//! (every discrete variable, binary and spin included, takes the first state whose
//! cumulative probability exceeds `u`: binary `1` and spin `+1` iff `u >= P(0)`, i.e. iff
//! `1 - u < P(1)`), each real variable draws two (Box-Muller,
//! `mean + sd * sqrt(-2 ln u1) * cos(2 pi u2)`). Clamped groups draw nothing.
//!
//! Invariant: the interpreter never mutates the model or plan; a state it returns is in the
//! model's domains (0/1, +-1, one-hot, finite reals when the plan's precisions are positive).

mod ancestral;
mod free;
mod meanfield;

pub use meanfield::MeanFieldResult;

use crate::analysis::{Incidence, Occ, VarRef};
use crate::derive::{Conditional, Family, Plan};
use crate::exact::Expanded;
use crate::ir::eval::{logsumexp, sigmoid, Params, State};
use crate::ir::{Domain, GroupId, Model, Origin};

/// A source of uniforms in (0, 1).
pub trait Uniform {
    fn uniform(&mut self) -> f64;
}

impl<R: rand::RngCore> Uniform for R {
    fn uniform(&mut self) -> f64 {
        (self.next_u32() as f64 + 0.5) * (1.0 / 4_294_967_296.0)
    }
}

/// The conditional of one variable given the rest, in the family's natural parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    /// `P(1) = sigmoid(z)`
    Bernoulli { z: f64 },
    /// `P(+1) = sigmoid(2 z)`
    Spin { z: f64 },
    /// `P(e_c) = softmax(z)_c`
    Softmax { z: Vec<f64> },
    /// `P(state k) ∝ exp(neg_energy[k])`, states in domain order ({0,1}, {-1,+1}, e_0..e_K-1)
    Enumerate { neg_energy: Vec<f64> },
    /// `Normal(z / beta, 1 / beta)`
    Gaussian { z: f64, beta: f64 },
}

impl Cond {
    /// Probabilities of the states in domain order (discrete families only).
    pub fn probs(&self) -> Vec<f64> {
        let soft = |z: &[f64]| {
            let l = logsumexp(z);
            z.iter().map(|x| (x - l).exp()).collect()
        };
        match self {
            Cond::Bernoulli { z } => vec![sigmoid(-z), sigmoid(*z)],
            Cond::Spin { z } => vec![sigmoid(-2.0 * z), sigmoid(2.0 * z)],
            Cond::Softmax { z } => soft(z),
            Cond::Enumerate { neg_energy } => soft(neg_energy),
            Cond::Gaussian { .. } => unreachable!("probs of a Gaussian conditional"),
        }
    }
}

/// The interpreter of one model at fixed parameters.
pub struct Interp<'a> {
    pub model: &'a Model,
    pub plan: &'a Plan,
    pub params: Params,
    pub(crate) ex: Expanded,
    /// first instance of each log-normaliser in `ex.lognorms`
    pub(crate) ln_start: Vec<usize>,
    /// `[group][var]`: instances feeding that variable's conditional, per the plan
    pub(crate) local: Vec<Vec<Vec<Occ>>>,
    /// `[group][var]`: every instance touching the variable (for free energies and moments)
    pub(crate) touching: Vec<Vec<Vec<Occ>>>,
}

/// Number of states of a discrete variable of `g`.
fn n_states(model: &Model, g: GroupId) -> usize {
    match model.group(g).domain {
        Domain::Categorical => model.group(g).n_states(),
        _ => 2,
    }
}

/// Writes state `k` (domain order) of variable `v`.
pub fn set_var(model: &Model, state: &mut State, v: VarRef, k: usize) {
    let g = model.group(v.group);
    let x = &mut state.values[v.group.idx()];
    match g.domain {
        Domain::Binary => x[v.var] = k as f64,
        Domain::Spin => x[v.var] = if k == 1 { 1.0 } else { -1.0 },
        Domain::Categorical => {
            let n = g.n_states();
            for c in 0..n {
                x[v.var * n + c] = if c == k { 1.0 } else { 0.0 };
            }
        }
        Domain::Real => unreachable!("set_var on a real variable"),
    }
}

/// The variables of a block member (all of the group when `elems` is `None`).
pub fn member_vars(model: &Model, g: GroupId, elems: &Option<Vec<usize>>) -> Vec<VarRef> {
    match elems {
        Some(es) => es.iter().map(|&var| VarRef { group: g, var }).collect(),
        None => (0..model.group(g).n_vars())
            .map(|var| VarRef { group: g, var })
            .collect(),
    }
}

impl<'a> Interp<'a> {
    pub fn new(model: &'a Model, plan: &'a Plan, params: Params) -> Self {
        let ex = Expanded::new(model, &params);
        let mut ln_start = Vec::with_capacity(model.lognorms.len());
        let mut k = 0;
        for li in 0..model.lognorms.len() {
            ln_start.push(k);
            k += ex.lognorms.iter().filter(|l| l.lognorm == li).count();
        }
        let inc = Incidence::new(model);
        let mut local = Vec::new();
        let mut touching = Vec::new();
        for g in model.group_ids() {
            let c = &plan.conditionals[g.idx()];
            let feeds = |o: &Occ| match o {
                Occ::Term { term, .. } => {
                    c.field.iter().any(|f| f.term == *term)
                        || c.precision.iter().any(|f| f.term == *term)
                }
                Occ::LogNorm { lognorm, .. } => c.lognorms.contains(lognorm),
            };
            let all: Vec<Vec<Occ>> = (0..model.group(g).n_vars())
                .map(|var| inc.of(VarRef { group: g, var }).to_vec())
                .collect();
            local.push(
                all.iter()
                    .map(|os| os.iter().copied().filter(feeds).collect())
                    .collect(),
            );
            touching.push(all);
        }
        Interp {
            model,
            plan,
            params,
            ex,
            ln_start,
            local,
            touching,
        }
    }

    pub(crate) fn occ_value(&self, o: Occ, state: &State) -> f64 {
        match o {
            Occ::Term { term, inst } => self.ex.poly[term.idx()].insts[inst as usize].value(state),
            Occ::LogNorm { lognorm, inst } => {
                self.ex.lognorms[self.ln_start[lognorm.idx()] + inst as usize].value(state)
            }
        }
    }

    fn occ_origin(&self, o: Occ) -> Origin {
        match o {
            Occ::Term { term, .. } => self.model.terms[term.idx()].origin,
            Occ::LogNorm { lognorm, .. } => self.model.lognorms[lognorm.idx()].origin,
        }
    }

    /// `E_u(k)` for every state `k` of a discrete variable over the instances in `occs`
    /// (only those with `Origin::Energy` when `undirected_only`).
    pub(crate) fn local_energies(
        &self,
        state: &mut State,
        v: VarRef,
        occs: &[Occ],
        undirected_only: bool,
    ) -> Vec<f64> {
        let n = n_states(self.model, v.group);
        let k = self.model.group(v.group).n_states();
        let range = v.var * k..v.var * k + k;
        let saved: Vec<f64> = state.values[v.group.idx()][range.clone()].to_vec();
        let e = (0..n)
            .map(|k| {
                set_var(self.model, state, v, k);
                occs.iter()
                    .filter(|o| !undirected_only || self.occ_origin(**o) == Origin::Energy)
                    .map(|o| self.occ_value(*o, state))
                    .sum()
            })
            .collect();
        state.values[v.group.idx()][range].copy_from_slice(&saved);
        e
    }

    /// `(z, beta)` of a real variable over the instances in `occs`, by the power of the
    /// variable in each instance (plan docs: power 1 feeds `z`, power 2 feeds `beta`).
    fn gaussian_field(&self, state: &State, v: VarRef, occs: &[Occ]) -> (f64, f64) {
        let (mut z, mut beta) = (0.0, 0.0);
        for o in occs {
            let Occ::Term { term, inst } = *o else {
                unreachable!("derive never puts a log-normaliser in a Gaussian conditional")
            };
            let i = &self.ex.poly[term.idx()].insts[inst as usize];
            let mut p = 0;
            let mut r = i.coef;
            for s in &i.sites {
                if s.group == v.group.0 && s.elem as usize == v.var {
                    p += s.power;
                } else {
                    r *= state.values[s.group as usize][s.elem as usize].powi(s.power as i32);
                }
            }
            match p {
                1 => z -= r,
                2 => beta += 2.0 * r,
                _ => unreachable!("derive proved powers 1 or 2 in a Gaussian variable"),
            }
        }
        (z, beta)
    }

    fn cond_from(&self, c: &Conditional, e: Vec<f64>) -> Cond {
        match c.family {
            Family::Bernoulli => Cond::Bernoulli { z: e[0] - e[1] },
            Family::Spin => Cond::Spin {
                z: 0.5 * (e[0] - e[1]),
            },
            Family::Softmax => Cond::Softmax {
                z: e.iter().map(|x| -x).collect(),
            },
            Family::Enumerate => Cond::Enumerate {
                neg_energy: e.iter().map(|x| -x).collect(),
            },
            Family::Gaussian => unreachable!("cond_from on a Gaussian"),
        }
    }

    /// The derived conditional of variable `v` given the rest of `state`.
    pub fn field(&self, state: &State, v: VarRef) -> Cond {
        self.field_mut(&mut state.clone(), v)
    }

    /// `field` without copying the state: `state` is used as scratch and restored.
    pub fn field_mut(&self, state: &mut State, v: VarRef) -> Cond {
        let c = &self.plan.conditionals[v.group.idx()];
        let occs = &self.local[v.group.idx()][v.var];
        if c.family == Family::Gaussian {
            let (z, beta) = self.gaussian_field(state, v, occs);
            return Cond::Gaussian { z, beta };
        }
        let e = self.local_energies(state, v, occs, false);
        self.cond_from(c, e)
    }

    /// Draws variable `v` from `cond` with the documented uniforms.
    pub fn draw(&self, state: &mut State, v: VarRef, cond: &Cond, rng: &mut impl Uniform) {
        if let Cond::Gaussian { z, beta } = cond {
            let (u1, u2) = (rng.uniform(), rng.uniform());
            let n = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            state.values[v.group.idx()][v.var] = z / beta + n / beta.sqrt();
            return;
        }
        let p = cond.probs();
        ancestral::draw_discrete(self.model, state, v, &p, rng.uniform());
    }

    /// One step over one block: every conditional from the state before the step, then the
    /// draws in order.
    pub fn block_step(
        &self,
        state: &mut State,
        block: &crate::analysis::Block,
        clamp: &[GroupId],
        rng: &mut impl Uniform,
    ) {
        let vars: Vec<VarRef> = block
            .members
            .iter()
            .filter(|m| !clamp.contains(&m.group))
            .flat_map(|m| member_vars(self.model, m.group, &m.elems))
            .collect();
        let conds: Vec<Cond> = vars.iter().map(|&v| self.field_mut(state, v)).collect();
        for (v, c) in vars.iter().zip(&conds) {
            self.draw(state, *v, c, rng);
        }
    }

    /// One block-Gibbs sweep over the plan's schedule, `clamp`ed groups held fixed.
    pub fn gibbs_sweep(&self, state: &mut State, clamp: &[GroupId], rng: &mut impl Uniform) {
        for b in &self.plan.structure.schedule.blocks {
            self.block_step(state, b, clamp, rng);
        }
    }
}

pub use free::ExpectedState;
