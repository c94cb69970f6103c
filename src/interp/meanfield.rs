//! Mean-field inference as `derive::MeanField` defines it: visible groups clamped, a
//! factorised `Q` over the hidden variables, blocks visited in order, each variable's new `Q`
//! from its local energies with every other variable replaced by its `Q`-expectation, damped,
//! until the largest change of a mean in one iteration is below `tol`.
//!
//! Invariant: the expectation of an instance under `Q` is exact for a factorised `Q` (factors
//! of one variable are multiplied per domain: `x^k = x` for binary, parity for spin, equal
//! states for categorical, second moments for squared reals), so a fixed point found here is a
//! fixed point of the true coordinate-ascent equations.

use super::free::ExpectedState;
use super::{member_vars, Interp};
use crate::analysis::{Occ, VarRef};
use crate::derive::Family;
use crate::exact::expand::Inst;
use crate::ir::eval::{logsumexp, sigmoid, State};
use crate::ir::{Domain, Role};

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum MeanFieldError {
    #[error("mean field is not supported for this model: {0}")]
    Unsupported(String),
}

#[derive(Clone, Debug)]
pub struct MeanFieldResult {
    /// `Q` moments; visible groups hold the clamped data
    pub q: ExpectedState,
    pub iters: usize,
    pub converged: bool,
    /// largest change of a mean in the last iteration
    pub max_delta: f64,
}

impl Interp<'_> {
    /// The default starting `Q`: binary 1/2, spin 0, categorical uniform, real N(0, 1).
    pub fn meanfield_init(&self, visible: &State) -> ExpectedState {
        let mut q = self.expected(visible);
        for g in self.model.group_ids() {
            let grp = self.model.group(g);
            if grp.role == Role::Visible {
                continue;
            }
            let (a, b) = match grp.domain {
                Domain::Binary => (0.5, 0.5),
                Domain::Spin => (0.0, 1.0),
                Domain::Categorical => {
                    let k = 1.0 / grp.n_states() as f64;
                    (k, k)
                }
                Domain::Real => (0.0, 1.0),
            };
            q.first[g.idx()].iter_mut().for_each(|x| *x = a);
            q.second[g.idx()].iter_mut().for_each(|x| *x = b);
        }
        q
    }

    /// `E_Q` of the product of an instance's factors that are not variable `v`.
    fn expect_others(&self, i: &Inst, v: VarRef, q: &ExpectedState) -> f64 {
        let mut r = i.coef;
        // sites grouped per variable: (group, var) -> (sum of powers, first elem, all same elem)
        let mut seen: Vec<(u32, usize, u32, u32, bool)> = Vec::new();
        for s in &i.sites {
            let k = self.model.groups[s.group as usize].n_states();
            let var = s.elem as usize / k;
            if s.group == v.group.0 && var == v.var {
                continue;
            }
            match seen.iter_mut().find(|x| x.0 == s.group && x.1 == var) {
                Some(x) => {
                    x.2 += s.power;
                    x.4 &= x.3 == s.elem;
                }
                None => seen.push((s.group, var, s.power, s.elem, true)),
            }
        }
        for (g, _, p, e, same) in seen {
            let (g, e) = (g as usize, e as usize);
            r *= match self.model.groups[g].domain {
                Domain::Binary => q.first[g][e],
                Domain::Spin if p % 2 == 0 => 1.0,
                Domain::Spin => q.first[g][e],
                Domain::Categorical if same => q.first[g][e],
                Domain::Categorical => 0.0,
                Domain::Real if p == 1 => q.first[g][e],
                Domain::Real if p == 2 => q.second[g][e],
                Domain::Real => unreachable!("derive rejects real powers above 2 for mean field"),
            };
        }
        r
    }

    /// The coordinate-ascent update of one variable under `Q`: new `(first, second)` moments of
    /// each of its elements.
    pub fn meanfield_update(&self, q: &ExpectedState, v: VarRef) -> Vec<(f64, f64)> {
        let grp = self.model.group(v.group);
        let occs = &self.local[v.group.idx()][v.var];
        let insts: Vec<&Inst> = occs
            .iter()
            .map(|o| match *o {
                Occ::Term { term, inst } => &self.ex.poly[term.idx()].insts[inst as usize],
                Occ::LogNorm { .. } => {
                    unreachable!("mean field is refused when a log-normaliser feeds a conditional")
                }
            })
            .collect();
        let power_of = |i: &Inst| -> (u32, Option<u32>) {
            let mut p = 0;
            let mut elem = None;
            for s in &i.sites {
                if s.group == v.group.0 && s.elem as usize / grp.n_states() == v.var {
                    p += s.power;
                    match elem {
                        None => elem = Some(s.elem),
                        Some(e) if e != s.elem => return (p, None),
                        _ => {}
                    }
                }
            }
            (p, elem)
        };
        match grp.domain {
            Domain::Real => {
                let (mut z, mut beta) = (0.0, 0.0);
                for i in insts {
                    let r = self.expect_others(i, v, q);
                    match power_of(i).0 {
                        1 => z -= r,
                        2 => beta += 2.0 * r,
                        _ => unreachable!("Gaussian powers are 1 or 2"),
                    }
                }
                let m = z / beta;
                vec![(m, m * m + 1.0 / beta)]
            }
            Domain::Binary | Domain::Spin => {
                // E_u(x) = sum_i r_i x^{p_i}: z from the difference of the two states
                let (lo, hi) = if grp.domain == Domain::Binary {
                    (0.0f64, 1.0f64)
                } else {
                    (-1.0, 1.0)
                };
                let (mut e_lo, mut e_hi) = (0.0, 0.0);
                for i in insts {
                    let r = self.expect_others(i, v, q);
                    let p = power_of(i).0 as i32;
                    e_lo += r * lo.powi(p);
                    e_hi += r * hi.powi(p);
                }
                if grp.domain == Domain::Binary {
                    let m = sigmoid(e_lo - e_hi);
                    vec![(m, m)]
                } else {
                    vec![((0.5 * (e_lo - e_hi)).tanh(), 1.0)]
                }
            }
            Domain::Categorical => {
                let k = grp.n_states();
                let mut e = vec![0.0; k];
                for i in insts {
                    let r = self.expect_others(i, v, q);
                    // the instance is non-zero only in the state its factors of v all name
                    if let (_, Some(elem)) = power_of(i) {
                        e[elem as usize % k] += r;
                    }
                }
                let neg: Vec<f64> = e.iter().map(|x| -x).collect();
                let l = logsumexp(&neg);
                neg.iter()
                    .map(|x| {
                        let p = (x - l).exp();
                        (p, p)
                    })
                    .collect()
            }
        }
    }

    /// Runs the plan's mean-field schedule with the visible groups of `visible` clamped,
    /// from `init` (or `meanfield_init`).
    pub fn meanfield(
        &self,
        visible: &State,
        init: Option<ExpectedState>,
    ) -> Result<MeanFieldResult, MeanFieldError> {
        let mf = &self.plan.meanfield;
        if !mf.supported {
            return Err(MeanFieldError::Unsupported(mf.reason.clone()));
        }
        for g in self.model.group_ids() {
            let c = &self.plan.conditionals[g.idx()];
            if self.model.group(g).role == Role::Hidden && c.family == Family::Enumerate {
                return Err(MeanFieldError::Unsupported(format!(
                    "`{}` has an enumerated conditional",
                    self.model.group(g).name
                )));
            }
        }
        let mut q = init.unwrap_or_else(|| self.meanfield_init(visible));
        let (mut iters, mut max_delta) = (0, f64::INFINITY);
        while iters < mf.iters && max_delta >= mf.tol {
            max_delta = 0.0;
            for b in &mf.blocks {
                let vars: Vec<VarRef> = b
                    .members
                    .iter()
                    .filter(|m| self.model.group(m.group).role == Role::Hidden)
                    .flat_map(|m| member_vars(self.model, m.group, &m.elems))
                    .collect();
                let new: Vec<Vec<(f64, f64)>> =
                    vars.iter().map(|&v| self.meanfield_update(&q, v)).collect();
                for (v, mo) in vars.iter().zip(new) {
                    let k = self.model.group(v.group).n_states();
                    for (c, (a, b2)) in mo.into_iter().enumerate() {
                        let e = v.var * k + c;
                        let old = q.first[v.group.idx()][e];
                        let d = mf.damping;
                        let a2 = d * old + (1.0 - d) * a;
                        let s2 = d * q.second[v.group.idx()][e] + (1.0 - d) * b2;
                        max_delta = max_delta.max((a2 - old).abs());
                        q.first[v.group.idx()][e] = a2;
                        q.second[v.group.idx()][e] = s2;
                    }
                }
            }
            iters += 1;
        }
        Ok(MeanFieldResult {
            q,
            iters,
            converged: max_delta < mf.tol,
            max_delta,
        })
    }
}
