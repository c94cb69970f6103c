//! Free energy and gradient statistics, executed from the plan's lists.
//!
//! `free_energy` follows `derive::FreeEnergy` literally: kept terms and every log-normaliser
//! at the state, minus, for every variable `u` of every summed group, `log sum_x exp(-E_u(x))`
//! (a Gaussian integral for real `u`) where `E_u` sums the instances of *non-kept* terms
//! touching `u`. `grad_energy` follows `derive::GradStat`: only the listed terms and
//! log-normalisers contribute, with the derivative of each coefficient from
//! `derive::coef_grad`.
//!
//! Invariant: an `ExpectedState` holds first and second moments of every element; for a plain
//! state the second moment is the square, so `grad_with` on it is `dE/dtheta` at that state.

use super::{member_vars, n_states, Cond, Interp};
use crate::analysis::{Occ, VarRef};
use crate::derive::coef_grad;
use crate::exact::expand::{zeros_like, Inst, Site};
use crate::ir::eval::{logsumexp, sigmoid, Params, State};
use crate::ir::{Domain, GroupId, TermId};

/// First and second moments of every element of every group, under a distribution that is
/// independent across variables (a point mass, conditionals of non-interacting groups, or a
/// factorised mean-field `Q`).
#[derive(Clone, Debug, PartialEq)]
pub struct ExpectedState {
    pub first: Vec<Vec<f64>>,
    pub second: Vec<Vec<f64>>,
    /// states of one variable per group (categorical `K`, else 1); empty means all 1
    pub states: Vec<usize>,
}

impl ExpectedState {
    /// The point mass at a state.
    pub fn from_state(s: &State) -> Self {
        ExpectedState {
            first: s.values.clone(),
            second: s
                .values
                .iter()
                .map(|v| v.iter().map(|x| x * x).collect())
                .collect(),
            states: Vec::new(),
        }
    }
    fn k(&self, g: u32) -> u32 {
        self.states.get(g as usize).copied().unwrap_or(1) as u32
    }
    /// `E[monomial]` of an instance: a product over its distinct variables, each factor the
    /// expectation of that variable's own factors (independence across variables). Factors on
    /// one element with total power `p` give the first moment for odd `p`, the second for even
    /// `p` (`x^p` is `x` or `x^2` for binary, spin and one-hot units; reals have `p <= 2`);
    /// two different states of one categorical variable give 0.
    pub fn monomial(&self, i: &Inst) -> f64 {
        let sites = &i.sites;
        let mut r = 1.0;
        for (a, s) in sites.iter().enumerate() {
            let k = self.k(s.group);
            let same_var = |t: &&Site| t.group == s.group && t.elem / k == s.elem / k;
            if sites[..a].iter().any(|t| same_var(&t)) {
                continue; // counted with the first factor on this variable
            }
            let on_var: Vec<&Site> = sites[a..].iter().filter(same_var).collect();
            if on_var.iter().any(|t| t.elem != s.elem) {
                return 0.0;
            }
            let p: u32 = on_var.iter().map(|t| t.power).sum();
            let (g, e) = (s.group as usize, s.elem as usize);
            r *= if p % 2 == 1 {
                self.first[g][e]
            } else {
                self.second[g][e]
            };
        }
        r
    }
}

impl Cond {
    /// `(first, second)` moments of every element of the variable under this conditional.
    pub fn moments(&self, domain: Domain) -> Vec<(f64, f64)> {
        match self {
            Cond::Gaussian { z, beta } => {
                let m = z / beta;
                vec![(m, m * m + 1.0 / beta)]
            }
            _ => {
                let p = self.probs();
                match domain {
                    Domain::Binary => vec![(p[1], p[1])],
                    Domain::Spin => vec![(p[1] - p[0], 1.0)],
                    _ => p.iter().map(|&x| (x, x)).collect(),
                }
            }
        }
    }
}

impl Interp<'_> {
    /// The point mass at `state`, knowing the model's categorical groups.
    pub fn expected(&self, state: &State) -> ExpectedState {
        let mut m = ExpectedState::from_state(state);
        m.states = self.model.groups.iter().map(|g| g.n_states()).collect();
        m
    }

    /// The moments of the point mass at `state` with `groups` replaced by their derived
    /// conditionals given `state` (the groups must be conditionally independent given the
    /// rest, as the free energy's summed groups are).
    pub fn conditional_moments(&self, state: &State, groups: &[GroupId]) -> ExpectedState {
        let mut m = self.expected(state);
        let mut scratch = state.clone();
        for &g in groups {
            let domain = self.model.group(g).domain;
            let k = self.model.group(g).n_states();
            for v in member_vars(self.model, g, &None) {
                let mo = self.field_mut(&mut scratch, v).moments(domain);
                for (c, (a, b)) in mo.into_iter().enumerate() {
                    m.first[g.idx()][v.var * k + c] = a;
                    m.second[g.idx()][v.var * k + c] = b;
                }
            }
        }
        m
    }

    /// `F(state)` with the plan's summed groups summed out; the summed groups' values in
    /// `state` are ignored (if the plan is right).
    pub fn free_energy(&self, state: &State) -> f64 {
        let fe = &self.plan.free_energy;
        let kept = |t: TermId| fe.kept_terms.binary_search(&t).is_ok();
        let mut f: f64 = fe
            .kept_terms
            .iter()
            .flat_map(|t| &self.ex.poly[t.idx()].insts)
            .map(|i| i.value(state))
            .sum();
        f += self.ex.lognorms.iter().map(|l| l.value(state)).sum::<f64>();
        let mut s = state.clone();
        for &g in &fe.summed {
            for v in member_vars(self.model, g, &None) {
                let occs: Vec<Occ> = self.touching[g.idx()][v.var]
                    .iter()
                    .copied()
                    .filter(|o| matches!(o, Occ::Term { term, .. } if !kept(*term)))
                    .collect();
                f -= self.log_local_sum(&mut s, v, &occs);
            }
        }
        f
    }

    /// `log sum_x exp(-E_u(x))` over the instances `occs` (an integral for a real variable).
    fn log_local_sum(&self, s: &mut State, v: VarRef, occs: &[Occ]) -> f64 {
        if self.model.group(v.group).domain == Domain::Real {
            let saved = s.values[v.group.idx()][v.var];
            let mut e_at = |x: f64| {
                s.values[v.group.idx()][v.var] = x;
                occs.iter().map(|o| self.occ_value(*o, s)).sum::<f64>()
            };
            let (em, e0, ep) = (e_at(-1.0), e_at(0.0), e_at(1.0));
            s.values[v.group.idx()][v.var] = saved;
            let beta = ep + em - 2.0 * e0;
            let z = 0.5 * (em - ep);
            return -e0 + z * z / (2.0 * beta) + 0.5 * (2.0 * std::f64::consts::PI / beta).ln();
        }
        debug_assert!(n_states(self.model, v.group) >= 2);
        let e = self.local_energies(s, v, occs, false);
        let neg: Vec<f64> = e.iter().map(|x| -x).collect();
        logsumexp(&neg)
    }

    /// `dE/dtheta` at one state, for the parameters the plan has statistics for.
    pub fn grad_energy(&self, state: &State) -> Params {
        self.grad_with(&ExpectedState::from_state(state))
    }

    /// The positive-phase statistic at a state whose visible (and non-summed hidden) groups
    /// are given: `dE/dtheta` with the plan's summed groups replaced by their conditional
    /// moments.
    pub fn grad_positive(&self, state: &State) -> Params {
        let m = self.conditional_moments(state, &self.plan.free_energy.summed);
        self.grad_with(&m)
    }

    /// `E[dE/dtheta]` under independent moments `m`, from the plan's gradient statistics.
    pub fn grad_with(&self, m: &ExpectedState) -> Params {
        let mut out = zeros_like(&self.params);
        for gs in &self.plan.gradients {
            for &t in &gs.terms {
                let term = &self.model.terms[t.idx()];
                for i in &self.ex.poly[t.idx()].insts {
                    let mono = m.monomial(i);
                    if mono == 0.0 {
                        continue;
                    }
                    for (p, off, d) in coef_grad(self.model, &term.coef, &self.params, &i.assign) {
                        if p == gs.param {
                            out.values[p.idx()][off] += d * mono;
                        }
                    }
                }
            }
            for &l in &gs.lognorms {
                let ln = &self.model.lognorms[l.idx()];
                let start = self.ln_start[l.idx()];
                for li in self.ex.lognorms[start..]
                    .iter()
                    .take_while(|x| x.lognorm == l.idx())
                {
                    let args: Vec<f64> = li
                        .args
                        .iter()
                        .map(|a| a.parts.iter().map(|(_, i)| i.coef * m.monomial(i)).sum())
                        .collect();
                    let w: Vec<f64> = if li.softplus {
                        vec![sigmoid(args[0])]
                    } else {
                        let z = logsumexp(&args);
                        args.iter().map(|a| (a - z).exp()).collect()
                    };
                    for (wc, a) in w.iter().zip(&li.args) {
                        for (k, i) in &a.parts {
                            let mono = m.monomial(i);
                            for (p, off, d) in
                                coef_grad(self.model, &ln.arg[*k].coef, &self.params, &i.assign)
                            {
                                if p == gs.param {
                                    out.values[p.idx()][off] += wc * d * mono;
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }
}
