//! Ancestral sampling of models with directed parts: the undirected groups (those no directed
//! conditional produces) first, by block Gibbs on the energy terms alone (`Origin::Energy`:
//! the directed children are normalised, so they do not change the undirected marginal); then
//! every directed child in topological order, drawn from its `Dist` evaluated at its parents.
//!
//! Random stream: the Gibbs sweeps as in the module docs of `interp`, then per child in
//! topological order, per variable in row-major order, one uniform (Bernoulli: `u < p`;
//! categorical: inverse CDF over the slice) or two (Normal: Box-Muller).
//!
//! Invariant: with no undirected terms the result is an exact draw from the joint.

use super::{member_vars, set_var, Interp, Uniform};
use crate::analysis::VarRef;
use crate::ir::eval::{for_each_assignment, sigmoid, State};
use crate::ir::{Directed, Dist, GroupId, Term};

impl Interp<'_> {
    /// Directed conditionals in an order where every parent comes first.
    pub fn topological_order(&self) -> Vec<&Directed> {
        let m = self.model;
        let mut done: Vec<GroupId> = m
            .group_ids()
            .filter(|&g| m.directed_of(g).is_none())
            .collect();
        let mut order = Vec::new();
        while order.len() < m.directed.len() {
            let next = m
                .directed
                .iter()
                .find(|d| !done.contains(&d.child) && d.parents.iter().all(|p| done.contains(p)))
                .unwrap_or_else(|| unreachable!("sema proved the directed part is a DAG"));
            done.push(next.child);
            order.push(next);
        }
        order
    }

    /// One Gibbs sweep over the undirected groups only, on the energy terms only.
    pub fn undirected_sweep(&self, state: &mut State, rng: &mut impl Uniform) {
        for b in &self.plan.structure.schedule.blocks {
            let vars: Vec<VarRef> = b
                .members
                .iter()
                .filter(|mb| self.model.directed_of(mb.group).is_none())
                .flat_map(|mb| member_vars(self.model, mb.group, &mb.elems))
                .collect();
            let mut s = state.clone();
            let probs: Vec<Vec<f64>> = vars
                .iter()
                .map(|&v| {
                    let e =
                        self.local_energies(&mut s, v, &self.touching[v.group.idx()][v.var], true);
                    let neg: Vec<f64> = e.iter().map(|x| -x).collect();
                    super::Cond::Enumerate { neg_energy: neg }.probs()
                })
                .collect();
            for (v, p) in vars.iter().zip(probs) {
                draw_discrete(self.model, state, *v, &p, rng.uniform());
            }
        }
    }

    /// An ancestral sample: `gibbs_sweeps` sweeps of the undirected part from `state`, then
    /// every directed child from its conditional.
    pub fn sample_ancestral(&self, state: &mut State, gibbs_sweeps: usize, rng: &mut impl Uniform) {
        let has_undirected = self.model.directed.len() < self.model.groups.len();
        if has_undirected {
            for _ in 0..gibbs_sweeps {
                self.undirected_sweep(state, rng);
            }
        }
        for d in self.topological_order() {
            let n = d.vars.len();
            let sum_terms = |terms: &[Term], a: &[usize], st: &State| -> f64 {
                let mut s = 0.0;
                for t in terms {
                    let mut full = a.to_vec();
                    full.resize(t.vars.len(), 0);
                    for_each_assignment(&t.vars[n..], |ia| {
                        full[n..].copy_from_slice(ia);
                        s += self.model.coef_value(&t.coef, &self.params, &full)
                            * self.model.monomial_value(t, st, &full);
                    });
                }
                s
            };
            let g = d.child;
            let mut vals = Vec::new();
            for_each_assignment(&d.vars, |a| vals.push(a.to_vec()));
            match &d.dist {
                Dist::Bernoulli { logit } => {
                    for (e, a) in vals.iter().enumerate() {
                        let p = sigmoid(sum_terms(logit, a, state));
                        let x = (rng.uniform() < p) as u8 as f64;
                        state.values[g.idx()][e] = x;
                    }
                }
                Dist::Categorical { logits } => {
                    let k = self.model.group(g).n_states();
                    let z: Vec<f64> = vals.iter().map(|a| sum_terms(logits, a, state)).collect();
                    for (var, zs) in z.chunks(k).enumerate() {
                        let p = super::Cond::Softmax { z: zs.to_vec() }.probs();
                        draw_discrete(
                            self.model,
                            state,
                            VarRef { group: g, var },
                            &p,
                            rng.uniform(),
                        );
                    }
                }
                Dist::Normal { mean, sd } => {
                    for (e, a) in vals.iter().enumerate() {
                        let mu = sum_terms(mean, a, state);
                        let s = self.model.coef_value(sd, &self.params, a);
                        let (u1, u2) = (rng.uniform(), rng.uniform());
                        let n = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                        state.values[g.idx()][e] = mu + s * n;
                    }
                }
            }
        }
    }
}

/// Sets a discrete variable to the first state whose cumulative probability exceeds `u`.
pub(super) fn draw_discrete(
    model: &crate::ir::Model,
    state: &mut State,
    v: VarRef,
    p: &[f64],
    u: f64,
) {
    let mut acc = 0.0;
    let mut k = p.len() - 1;
    for (c, pc) in p.iter().enumerate() {
        acc += pc;
        if u < acc {
            k = c;
            break;
        }
    }
    set_var(model, state, v, k);
}
