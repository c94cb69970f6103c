//! Exact log-likelihood of visible data and its gradient, by enumeration.
//!
//! `log p(v) = log sum_h exp(-E(v, h)) - log Z`, and by the identity of models.md §0.2
//! `d log p(v) / d theta = E_model[dE/dtheta] - E_{p(h|v)}[dE/dtheta]`. Both sides are
//! computed here by enumeration; the tests check the identity against central finite
//! differences of `log_likelihood`, so neither is trusted alone.
//!
//! Invariant: a data state gives the visible groups; its hidden groups' values are ignored.

use super::expand::{zeros_like, Expanded};
use super::gaussian::Mixed;
use super::{ExactError, Joint, Space, MAX_STATES};
use crate::ir::eval::{logsumexp, Params, State};
use crate::ir::{Domain, GroupId, Model, Role};

pub fn hidden_groups(model: &Model) -> Vec<GroupId> {
    model
        .group_ids()
        .filter(|&g| model.group(g).role == Role::Hidden)
        .collect()
}

pub fn visible_groups(model: &Model) -> Vec<GroupId> {
    model
        .group_ids()
        .filter(|&g| model.group(g).role == Role::Visible)
        .collect()
}

fn has_real(model: &Model) -> bool {
    model.groups.iter().any(|g| g.domain == Domain::Real)
}

/// Exact `log Z`: enumeration, with real groups integrated in closed form when present.
pub fn log_z(model: &Model, params: &Params) -> Result<f64, ExactError> {
    if has_real(model) {
        Ok(Mixed::new(model, params)?.log_z)
    } else {
        Ok(Joint::new(model, params)?.log_z)
    }
}

/// Average of `log p(v)` over `data`.
pub fn log_likelihood(model: &Model, params: &Params, data: &[State]) -> Result<f64, ExactError> {
    let log_z = log_z(model, params)?;
    let hidden = Space::new(model, &hidden_groups(model), MAX_STATES)?;
    let ex = Expanded::new(model, params);
    let total: f64 = data.iter().map(|v| hidden.log_sum(&ex, v)).sum();
    Ok(total / data.len() as f64 - log_z)
}

/// `E_{p(h|v)}[dE/dtheta]`: the positive-phase statistic of one example.
pub fn posterior_grad_energy(
    model: &Model,
    params: &Params,
    v: &State,
) -> Result<Params, ExactError> {
    let hidden = Space::new(model, &hidden_groups(model), MAX_STATES)?;
    let ex = Expanded::new(model, params);
    let mut lw = Vec::with_capacity(hidden.n_states);
    hidden.for_each(v, |_, s| lw.push(-ex.energy(s)));
    let l = logsumexp(&lw);
    let mut g = zeros_like(params);
    hidden.for_each(v, |code, s| {
        ex.add_grad(model, params, s, (lw[code] - l).exp(), &mut g)
    });
    Ok(g)
}

/// Gradient of the average `log p(v)` over `data`: negative phase minus positive phase of
/// `dE/dtheta`, both by enumeration.
pub fn grad_log_likelihood(
    model: &Model,
    params: &Params,
    data: &[State],
) -> Result<Params, ExactError> {
    let mut g = if has_real(model) {
        Mixed::new(model, params)?.expect_grad_energy(model, params)
    } else {
        Joint::new(model, params)?.expect_grad_energy(model, params)
    };
    let scale = 1.0 / data.len() as f64;
    for v in data {
        let pos = posterior_grad_energy(model, params, v)?;
        for (gp, pp) in g.values.iter_mut().zip(&pos.values) {
            for (a, b) in gp.iter_mut().zip(pp) {
                *a -= scale * b;
            }
        }
    }
    Ok(g)
}
