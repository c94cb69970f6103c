//! Brute-force mean-field update: the coordinate-ascent equation
//! `Q(u = k) ∝ exp(-E_Q[E(state with u = k)])`, the expectation over every other hidden
//! variable drawn independently from `Q`, computed by enumerating all their joint states and
//! evaluating whole energies. The oracle for the derived mean-field updates.
//!
//! Invariant: uses only the energy of whole states (no local fields, no plan).

use super::{vars_of, ExactError, Expanded, Space, Var, MAX_STATES};
use crate::ir::eval::{logsumexp, State};
use crate::ir::{Domain, GroupId, Model, Role};

/// `Q` probability of state `k` of a discrete variable from first moments `q` (state-shaped):
/// binary `P(1) = q`, spin `P(+1) = (1 + q) / 2`, categorical the slice itself.
pub fn q_prob(v: &Var, q: &[Vec<f64>], k: usize) -> f64 {
    let x = &q[v.group.idx()];
    match v.domain {
        Domain::Binary => {
            if k == 1 {
                x[v.elem]
            } else {
                1.0 - x[v.elem]
            }
        }
        Domain::Spin => {
            if k == 1 {
                0.5 * (1.0 + x[v.elem])
            } else {
                0.5 * (1.0 - x[v.elem])
            }
        }
        _ => x[v.elem + k],
    }
}

/// The brute-force update of one hidden variable: `Q(v = k)` for every state `k`, with the
/// visible groups as in `visible` and every other hidden variable distributed as `q`.
pub fn meanfield_update(
    model: &Model,
    ex: &Expanded,
    visible: &State,
    q: &[Vec<f64>],
    v: &Var,
) -> Result<Vec<f64>, ExactError> {
    let hidden: Vec<GroupId> = model
        .group_ids()
        .filter(|&g| model.group(g).role == Role::Hidden)
        .collect();
    let mut others = Space::new(model, &hidden, MAX_STATES)?;
    others.vars.retain(|w| w != v);
    others.n_states = others.vars.iter().map(|w| w.n_states).product();
    let mut s = visible.clone();
    let mut e_q = vec![0.0; v.n_states];
    for code in 0..others.n_states {
        others.decode(code, &mut s);
        let w: f64 = others
            .vars
            .iter()
            .map(|o| q_prob(o, q, o.get(&s)))
            .product();
        if w == 0.0 {
            continue;
        }
        for (k, acc) in e_q.iter_mut().enumerate() {
            v.set(&mut s, k);
            *acc += w * ex.energy(&s);
        }
    }
    let neg: Vec<f64> = e_q.iter().map(|e| -e).collect();
    let l = logsumexp(&neg);
    Ok(neg.iter().map(|x| (x - l).exp()).collect())
}

/// Every hidden discrete variable of a model.
pub fn hidden_vars(model: &Model) -> Result<Vec<Var>, ExactError> {
    let mut out = Vec::new();
    for g in model.group_ids() {
        if model.group(g).role == Role::Hidden {
            out.extend(vars_of(model, g)?);
        }
    }
    Ok(out)
}

/// The variational lower bound `E_Q[-E(v, h)] + H(Q) - log Z <= log p(v)` for a factorised
/// `Q` over the hidden variables (first moments `q`), by enumerating the hidden states under
/// `Q`; `log_z` is the exact log partition function.
pub fn variational_bound(
    model: &Model,
    ex: &Expanded,
    visible: &State,
    q: &[Vec<f64>],
    log_z: f64,
) -> Result<f64, ExactError> {
    let vars = hidden_vars(model)?;
    let hidden: Vec<GroupId> = model
        .group_ids()
        .filter(|&g| model.group(g).role == Role::Hidden)
        .collect();
    let space = Space::new(model, &hidden, MAX_STATES)?;
    let mut e_q = 0.0;
    space.for_each(visible, |_, s| {
        let w: f64 = vars.iter().map(|v| q_prob(v, q, v.get(s))).product();
        if w > 0.0 {
            e_q += w * ex.energy(s);
        }
    });
    let entropy: f64 = vars
        .iter()
        .map(|v| {
            (0..v.n_states)
                .map(|k| q_prob(v, q, k))
                .filter(|&p| p > 0.0)
                .map(|p| -p * p.ln())
                .sum::<f64>()
        })
        .sum();
    Ok(-e_q + entropy - log_z)
}
