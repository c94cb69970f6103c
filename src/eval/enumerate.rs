//! Exact `log Z` for models that are small on one side (an RBM with 25 hidden units, a GRBM
//! with few hidden units): enumerate the fewest discrete states whose complement is a set of
//! mutually non-interacting groups, and sum that complement out analytically with the
//! executor's free energy. This is how Salakhutdinov & Murray (2008) checked AIS on a
//! 25-hidden-unit RBM; it reaches models far beyond joint enumeration (`crate::exact`).
//!
//! Invariant: the result is exact up to floating point (f32 fields, f64 accumulation); a model
//! with too many states on every side is an `ExactError::TooLarge`, never a silent estimate.

use super::split::{valid_splits, with_summed};
use crate::derive::plan::Plan;
use crate::exact::ExactError;
use crate::exec::{Batch, Exec, ExecError};
use crate::ir::eval::{logsumexp, Params};
use crate::ir::{Domain, GroupId, Model};

/// Largest number of enumerated states (2^28).
pub const MAX_ENUMERATED: f64 = 268_435_456.0;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ExactLogZError {
    #[error(transparent)]
    Exact(#[from] ExactError),
    #[error(transparent)]
    Exec(#[from] ExecError),
}

/// What was enumerated and what was summed out.
#[derive(Clone, Debug, PartialEq)]
pub struct ExactLogZ {
    pub log_z: f64,
    pub enumerated: Vec<GroupId>,
    pub summed: Vec<GroupId>,
    pub n_states: usize,
}

fn n_states(model: &Model, groups: &[GroupId]) -> Option<f64> {
    let mut n = 1.0f64;
    for &g in groups {
        let grp = model.group(g);
        let per = match grp.domain {
            Domain::Real => return None,
            Domain::Categorical => grp.n_states() as f64,
            _ => 2.0,
        };
        n *= per.powi(grp.n_vars() as i32);
    }
    Some(n)
}

/// The valid split leaving the fewest states to enumerate.
fn best_split(model: &Model, plan: &Plan) -> Option<(Vec<GroupId>, Vec<GroupId>, f64)> {
    let mut best: Option<(Vec<GroupId>, Vec<GroupId>, f64)> = None;
    for (rest, summed) in valid_splits(model, plan) {
        if let Some(n) = n_states(model, &rest) {
            if best.as_ref().is_none_or(|b| n < b.2) {
                best = Some((rest, summed, n));
            }
        }
    }
    best
}

/// Writes state number `code` of the enumerated groups into row `r` (mixed radix, last
/// variable fastest; binary {0,1}, spin {-1,+1}, categorical one-hot).
fn decode(model: &Model, groups: &[GroupId], mut code: usize, b: &mut Batch, r: usize) {
    for &g in groups.iter().rev() {
        let grp = model.group(g);
        let k = grp.n_states();
        let x = &mut b.x[g.idx()];
        for v in (0..grp.n_vars()).rev() {
            match grp.domain {
                Domain::Categorical => {
                    let s = code % k;
                    code /= k;
                    for c in 0..k {
                        x[(r, v * k + c)] = (c == s) as u8 as f32;
                    }
                }
                Domain::Spin => {
                    x[(r, v)] = if code % 2 == 1 { 1.0 } else { -1.0 };
                    code /= 2;
                }
                _ => {
                    x[(r, v)] = (code % 2) as f32;
                    code /= 2;
                }
            }
        }
    }
}

/// Exact `log Z` by enumerating the small side and summing the other side analytically.
pub fn exact_log_z(
    model: &Model,
    plan: &Plan,
    params: &Params,
) -> Result<ExactLogZ, ExactLogZError> {
    let Some((enumerated, summed, n)) = best_split(model, plan) else {
        let g = model
            .groups
            .iter()
            .find(|g| g.domain == Domain::Real)
            .map_or(String::new(), |g| g.name.clone());
        return Err(ExactError::RealGroup { group: g }.into());
    };
    if n > MAX_ENUMERATED {
        return Err(ExactError::TooLarge {
            n_states: n,
            limit: MAX_ENUMERATED as usize,
        }
        .into());
    }
    let n = n as usize;
    let split = with_summed(model, plan, &summed);
    let exec = Exec::new(model, &split, params)?;
    const CHUNK: usize = 4096;
    let mut partial = Vec::with_capacity(n.div_ceil(CHUNK));
    let mut start = 0;
    while start < n {
        let rows = CHUNK.min(n - start);
        let mut b = Batch::zeros(model, rows);
        for r in 0..rows {
            decode(model, &enumerated, start + r, &mut b, r);
        }
        let f = exec.free_energy(&b, None);
        let neg: Vec<f64> = f.iter().map(|x| -x).collect();
        partial.push(logsumexp(&neg));
        start += rows;
    }
    Ok(ExactLogZ {
        log_z: logsumexp(&partial),
        enumerated,
        summed,
        n_states: n,
    })
}
