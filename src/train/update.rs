//! The parameter update of models.md §0.4 — `dθ <- κ dθ + η (g - λ θ)`, `θ <- θ + dθ` — with
//! parameter constraints kept by projection, and the divergence check.
//!
//! Invariant: `fixed` parameters never change; `symmetric` and `zero_diagonal` hold exactly
//! after every update (projection), `positive` parameters stay `>= POSITIVE_FLOOR`; weight
//! decay applies only to couplings (parameters every term of which has two or more units).

use crate::ir::eval::Params;
use crate::ir::{Constraint, Model};

/// Smallest value a `positive` parameter is projected to.
pub const POSITIVE_FLOOR: f64 = 1e-4;

/// Per-parameter facts the optimizer needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamRules {
    pub fixed: bool,
    pub decayed: bool,
    pub symmetric: bool,
    pub zero_diagonal: bool,
    pub positive: bool,
    /// side of the square matrix for symmetric / zero_diagonal (its last two axes)
    pub side: usize,
}

pub fn rules(model: &Model) -> Vec<ParamRules> {
    model
        .param_ids()
        .map(|p| {
            let prm = model.param(p);
            let mut mentioned = false;
            let mut all_coupling = true;
            for t in &model.terms {
                if crate::derive::coef_params(&t.coef).contains(&p) {
                    mentioned = true;
                    all_coupling &= t.units.len() >= 2;
                }
            }
            ParamRules {
                fixed: prm.has(Constraint::Fixed),
                decayed: mentioned && all_coupling,
                symmetric: prm.has(Constraint::Symmetric),
                zero_diagonal: prm.has(Constraint::ZeroDiagonal),
                positive: prm.has(Constraint::Positive),
                side: prm.shape.last().copied().unwrap_or(1),
            }
        })
        .collect()
}

/// Makes `v` (a stack of `side x side` matrices) satisfy the constraints.
pub fn project(r: &ParamRules, v: &mut [f64]) {
    let n = r.side;
    if (r.symmetric || r.zero_diagonal) && n > 0 && v.len().is_multiple_of(n * n) {
        for mat in v.chunks_mut(n * n) {
            if r.symmetric {
                for i in 0..n {
                    for j in i + 1..n {
                        let s = 0.5 * (mat[i * n + j] + mat[j * n + i]);
                        mat[i * n + j] = s;
                        mat[j * n + i] = s;
                    }
                }
            }
            if r.zero_diagonal {
                for i in 0..n {
                    mat[i * n + i] = 0.0;
                }
            }
        }
    }
    if r.positive {
        v.iter_mut().for_each(|x| *x = x.max(POSITIVE_FLOOR));
    }
}

/// Why an update was refused.
#[derive(Clone, Debug, PartialEq)]
pub struct Divergence {
    pub param: String,
    pub value: f64,
}

/// Applies one update in place. On divergence (a non-finite value or one above `max_abs`)
/// leaves `params` and `velocity` unchanged and says which parameter blew up.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    model: &Model,
    rules: &[ParamRules],
    params: &mut Params,
    velocity: &mut [Vec<f64>],
    grad: &[Vec<f64>],
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    max_abs: f64,
) -> Result<(), Divergence> {
    // Check every new value before writing any (no copies of the parameters): parameters
    // with a projection are computed into a scratch copy, the others checked in a branch-free
    // pass (the first bad value is searched only when there is one).
    let next = |p: f64, v: f64, g: f64, lambda: f64| p + (momentum * v + lr * (g - lambda * p));
    let is_bad = |x: f64| !(x.is_finite() && x.abs() <= max_abs);
    let projected = |r: &ParamRules| r.symmetric || r.zero_diagonal || r.positive;
    let mut scratch: Vec<Option<Vec<f64>>> = vec![None; rules.len()];
    for (k, r) in rules.iter().enumerate() {
        if r.fixed {
            continue;
        }
        let lambda = if r.decayed { weight_decay } else { 0.0 };
        let (p, v, g) = (&params.values[k], &velocity[k], &grad[k]);
        let new = p
            .iter()
            .zip(v)
            .zip(g)
            .map(|((&p, &v), &g)| next(p, v, g, lambda));
        let bad = if projected(r) {
            let mut q: Vec<f64> = new.collect();
            project(r, &mut q);
            let bad = q.iter().copied().find(|&x| is_bad(x));
            scratch[k] = Some(q);
            bad
        } else if new.clone().fold(false, |acc, x| acc | is_bad(x)) {
            new.clone().find(|&x| is_bad(x))
        } else {
            None
        };
        if let Some(bad) = bad {
            return Err(Divergence {
                param: model.param(crate::ir::ParamId(k as u32)).name.clone(),
                value: bad,
            });
        }
    }
    for (k, r) in rules.iter().enumerate() {
        if r.fixed {
            continue;
        }
        let lambda = if r.decayed { weight_decay } else { 0.0 };
        let (p, v, g) = (&mut params.values[k], &mut velocity[k], &grad[k]);
        for ((p, v), &g) in p.iter_mut().zip(v.iter_mut()).zip(g) {
            *v = momentum * *v + lr * (g - lambda * *p);
            *p += *v;
        }
        if let Some(projected) = scratch[k].take() {
            *p = projected;
        }
    }
    Ok(())
}
