//! Reference evaluation of the Plan's local quantities, straight from their definitions in
//! `plan`: instance values, local energies `E_u(x)`, Gaussian `(z, beta)`, and the free energy.
//! Slow and obviously right; shared by tests, the interpreter and `explain`'s examples.
//!
//! Invariant: every function here evaluates whole instances through `ir::eval`, so it agrees
//! with `Model::energy` by construction: `E(x_u = a) - E(x_u = b) = E_u(a) - E_u(b)`.

use super::plan::{FreeEnergy, Plan};
use crate::analysis::{
    decode_assignment, for_each_arg_assignment, lognorm_outer_assignments, lognorm_rest_vars,
    var_elems, Incidence, Occ, VarRef,
};
use crate::ir::eval::{logsumexp, softplus, Params, State};
use crate::ir::{Domain, LogNorm, LogNormKind, Model};

/// Value of one log-normaliser instance (`rest` as numbered in `plan`).
pub fn lognorm_instance_value(
    model: &Model,
    l: &LogNorm,
    params: &Params,
    state: &State,
    rest: &[usize],
) -> f64 {
    let args: Vec<f64> = lognorm_outer_assignments(l, rest)
        .iter()
        .map(|outer| {
            let mut s = 0.0;
            for t in &l.arg {
                for_each_arg_assignment(outer, &t.vars, |a| {
                    s += model.coef_value(&t.coef, params, a) * model.monomial_value(t, state, a)
                });
            }
            s
        })
        .collect();
    match l.kind {
        LogNormKind::Softplus => softplus(args[0]),
        LogNormKind::LogSumExp { .. } => logsumexp(&args),
    }
}

/// Value of one instance.
pub fn occ_value(model: &Model, occ: Occ, params: &Params, state: &State) -> f64 {
    match occ {
        Occ::Term { term, inst } => {
            let t = &model.terms[term.idx()];
            let a = decode_assignment(&t.vars, inst as usize);
            model.coef_value(&t.coef, params, &a) * model.monomial_value(t, state, &a)
        }
        Occ::LogNorm { lognorm, inst } => {
            let l = &model.lognorms[lognorm.idx()];
            let rest = decode_assignment(&lognorm_rest_vars(l), inst as usize);
            lognorm_instance_value(model, l, params, state, &rest)
        }
    }
}

/// The states of a discrete variable as values to write into its elements: binary `[0]`,
/// `[1]`; spin `[-1]`, `[1]`; categorical the one-hot vectors. Empty for real units.
pub fn var_states(model: &Model, v: VarRef) -> Vec<Vec<f64>> {
    let g = model.group(v.group);
    match g.domain {
        Domain::Binary => vec![vec![0.0], vec![1.0]],
        Domain::Spin => vec![vec![-1.0], vec![1.0]],
        Domain::Categorical => (0..g.n_states())
            .map(|c| {
                (0..g.n_states())
                    .map(|k| f64::from(u8::from(k == c)))
                    .collect()
            })
            .collect(),
        Domain::Real => Vec::new(),
    }
}

/// `E_u(x)` for the value `x` (written into the variable's elements), other units as in
/// `state`. `state` is restored before returning.
pub fn local_energy(
    model: &Model,
    inc: &Incidence,
    params: &Params,
    state: &mut State,
    v: VarRef,
    x: &[f64],
) -> f64 {
    let elems = var_elems(model, v);
    let vals = &mut state.values[v.group.idx()];
    let old: Vec<f64> = vals[elems.clone()].to_vec();
    vals[elems.clone()].copy_from_slice(x);
    let e = inc
        .of(v)
        .iter()
        .map(|o| occ_value(model, *o, params, state))
        .sum();
    state.values[v.group.idx()][elems].copy_from_slice(&old);
    e
}

/// `E_u` at every state of a discrete variable (order of `var_states`).
pub fn local_energies(
    model: &Model,
    inc: &Incidence,
    params: &Params,
    state: &mut State,
    v: VarRef,
) -> Vec<f64> {
    var_states(model, v)
        .iter()
        .map(|x| local_energy(model, inc, params, state, v, x))
        .collect()
}

/// `(z, beta)` of a real variable: `E_u(x) = beta x^2 / 2 - z x` (exact for a quadratic).
pub fn gaussian_natural(
    model: &Model,
    inc: &Incidence,
    params: &Params,
    state: &mut State,
    v: VarRef,
) -> (f64, f64) {
    let e0 = local_energy(model, inc, params, state, v, &[0.0]);
    let ep = local_energy(model, inc, params, state, v, &[1.0]);
    let em = local_energy(model, inc, params, state, v, &[-1.0]);
    ((em - ep) / 2.0, ep + em - 2.0 * e0)
}

/// `-log sum_x exp(-E_u(x))` (an integral for real units): the contribution of one summed
/// variable to the free energy.
pub fn neg_log_partition(
    model: &Model,
    inc: &Incidence,
    params: &Params,
    state: &mut State,
    v: VarRef,
) -> f64 {
    if model.group(v.group).domain == Domain::Real {
        let (z, beta) = gaussian_natural(model, inc, params, state, v);
        let e0 = local_energy(model, inc, params, state, v, &[0.0]);
        e0 - (z * z / (2.0 * beta) + 0.5 * (2.0 * std::f64::consts::PI / beta).ln())
    } else {
        let es: Vec<f64> = local_energies(model, inc, params, state, v);
        let neg: Vec<f64> = es.iter().map(|e| -e).collect();
        -logsumexp(&neg)
    }
}

/// `F(rest)` as defined by [`FreeEnergy`]; the values of summed groups in `state` are ignored.
pub fn free_energy_value(
    model: &Model,
    fe: &FreeEnergy,
    inc: &Incidence,
    params: &Params,
    state: &mut State,
) -> f64 {
    let mut f: f64 = fe
        .kept_terms
        .iter()
        .map(|t| model.term_value(&model.terms[t.idx()], params, state))
        .sum();
    f += model
        .lognorms
        .iter()
        .map(|l| model.lognorm_value(l, params, state))
        .sum::<f64>();
    for &g in &fe.summed {
        for var in 0..model.group(g).n_vars() {
            f += neg_log_partition(model, inc, params, state, VarRef { group: g, var });
        }
    }
    f
}

/// Convenience: the free energy of a plan.
pub fn plan_free_energy(
    model: &Model,
    plan: &Plan,
    inc: &Incidence,
    params: &Params,
    state: &mut State,
) -> f64 {
    free_energy_value(model, &plan.free_energy, inc, params, state)
}

/// `dE/dθ` at one state for every non-fixed parameter, assembled from the Plan's `GradStat`s
/// exactly as their docs define it; `[param][elem]`, zeros for fixed parameters.
pub fn energy_grad(model: &Model, plan: &Plan, params: &Params, state: &State) -> Vec<Vec<f64>> {
    use super::coef::coef_grad;
    use crate::ir::eval::{for_each_assignment, sigmoid};
    let mut g: Vec<Vec<f64>> = params.values.iter().map(|v| vec![0.0; v.len()]).collect();
    let mut add = |t: &crate::ir::Term, a: &[usize], w: f64, only: crate::ir::ParamId| {
        let m = model.monomial_value(t, state, a);
        if m == 0.0 || w == 0.0 {
            return;
        }
        for (p, off, d) in coef_grad(model, &t.coef, params, a) {
            if p == only {
                g[p.idx()][off] += w * d * m;
            }
        }
    };
    for gs in &plan.gradients {
        for t in &gs.terms {
            let t = &model.terms[t.idx()];
            for_each_assignment(&t.vars, |a| add(t, a, 1.0, gs.param));
        }
        for l in &gs.lognorms {
            let l = &model.lognorms[l.idx()];
            for_each_assignment(&lognorm_rest_vars(l), |rest| {
                let outers = lognorm_outer_assignments(l, rest);
                let args: Vec<f64> = outers
                    .iter()
                    .map(|outer| {
                        let mut s = 0.0;
                        for t in &l.arg {
                            for_each_arg_assignment(outer, &t.vars, |a| {
                                s += model.coef_value(&t.coef, params, a)
                                    * model.monomial_value(t, state, a)
                            });
                        }
                        s
                    })
                    .collect();
                let ws: Vec<f64> = match l.kind {
                    LogNormKind::Softplus => vec![sigmoid(args[0])],
                    LogNormKind::LogSumExp { .. } => {
                        let z = logsumexp(&args);
                        args.iter().map(|x| (x - z).exp()).collect()
                    }
                };
                for (outer, w) in outers.iter().zip(ws) {
                    for t in &l.arg {
                        for_each_arg_assignment(outer, &t.vars, |a| add(t, a, w, gs.param));
                    }
                }
            });
        }
    }
    g
}
