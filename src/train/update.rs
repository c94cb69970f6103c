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

/// Applies one update in place, one pass over each parameter (new velocity, new value and
/// the divergence check together: the update is memory-bound, 392k parameters of an MNIST
/// RBM are 9 MB of f64 state, so a separate checking pass cost as much as the update).
///
/// On divergence (a non-finite value or one above `max_abs`) returns which parameter blew up
/// and the first bad value; `params` and `velocity` are then partly updated and the caller
/// must roll back (the trainer restores its epoch snapshot).
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
    let h = Hyper {
        lr,
        momentum,
        weight_decay,
        max_abs,
        velocity: true,
    };
    apply_threads(model, rules, params, velocity, grad, h, 1, &[])
}

/// Per parameter: whether its update can be taken row by row by `step_row` (no
/// projection couples its rows).
pub fn row_steppable(rules: &[ParamRules]) -> Vec<bool> {
    rules
        .iter()
        .map(|r| !(r.fixed || r.symmetric || r.zero_diagonal || r.positive))
        .collect()
}

/// One row of `apply`'s update from an f32 gradient row `scale * g` (the same numbers as
/// `apply` given the f64 gradient `scale * g as f64`); true when a value went bad. For
/// parameters `row_steppable` admits.
pub fn step_row(
    r: &ParamRules,
    h: Hyper,
    p: &mut [f64],
    v: &mut [f64],
    g: &[f32],
    scale: f64,
) -> bool {
    let lambda = if r.decayed { h.weight_decay } else { 0.0 };
    StepSlice {
        h,
        lambda,
        p,
        v,
        g,
        grad: |g: f32| scale * g as f64,
    }
    .run()
}

/// One slice of the optimiser's update: `v <- momentum v + lr (grad(g) - lambda p)`,
/// `p <- p + v` element by element (without `v` when `h.velocity` is off).
struct StepSlice<'a, G, F> {
    h: Hyper,
    lambda: f64,
    p: &'a mut [f64],
    v: &'a mut [f64],
    g: &'a [G],
    grad: F,
}

impl<G: Copy, F: Fn(G) -> f64> StepSlice<'_, G, F> {
    /// True when a value went bad (a branch-free flag, so the loop vectorises; the bad value
    /// is searched only on failure). Built for AVX-512 where the CPU has it (as is the
    /// GEMM): the baseline build runs it two f64 lanes at a time, and it was 11 % of a CD
    /// update. No multiply-add is contracted (Rust never fuses implicitly), so every build
    /// gives the same numbers.
    fn run(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            #[target_feature(enable = "avx512f")]
            unsafe fn wide<G: Copy, F: Fn(G) -> f64>(s: StepSlice<'_, G, F>) -> bool {
                s.body()
            }
            // SAFETY: the CPU has the feature the function was compiled for.
            return unsafe { wide(self) };
        }
        self.body()
    }

    #[inline(always)]
    fn body(self) -> bool {
        let StepSlice {
            h,
            lambda,
            p,
            v,
            g,
            grad,
        } = self;
        let mut bad = false;
        if !h.velocity {
            for (p, &g) in p.iter_mut().zip(g) {
                *p += h.lr * (grad(g) - lambda * *p);
                bad |= !(p.is_finite() && p.abs() <= h.max_abs);
            }
            return bad;
        }
        for ((p, v), &g) in p.iter_mut().zip(v.iter_mut()).zip(g) {
            *v = h.momentum * *v + h.lr * (grad(g) - lambda * *p);
            *p += *v;
            bad |= !(p.is_finite() && p.abs() <= h.max_abs);
        }
        bad
    }
}

/// The divergence of the first parameter among `which` holding a bad value (after a
/// `step_row` reported one).
pub fn divergence(model: &Model, params: &Params, which: &[bool], h: Hyper) -> Divergence {
    let is_bad = |x: f64| !(x.is_finite() && x.abs() <= h.max_abs);
    for (k, vals) in params.values.iter().enumerate() {
        if !which.get(k).copied().unwrap_or(false) {
            continue;
        }
        if let Some(&value) = vals.iter().find(|&&x| is_bad(x)) {
            return Divergence {
                param: model.param(crate::ir::ParamId(k as u32)).name.clone(),
                value,
            };
        }
    }
    unreachable!("a bad value was reported")
}

/// The optimiser's scalars.
#[derive(Clone, Copy, Debug)]
pub struct Hyper {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub max_abs: f64,
    /// whether the velocity is kept. A run whose momentum is zero throughout never reads
    /// it (every step multiplies it by 0), so its step neither reads nor writes it: plain
    /// SGD then moves 20 bytes a weight instead of 36. The values are those of the
    /// momentum form (`0 * v + d` is `d`), and the velocity stays at zero.
    pub velocity: bool,
}

/// `apply` with large unconstrained parameters split over `threads` (element-wise: the same
/// result for any split), and the parameters `done` marks (updated by `step_row`) skipped.
#[allow(clippy::too_many_arguments)]
pub fn apply_threads(
    model: &Model,
    rules: &[ParamRules],
    params: &mut Params,
    velocity: &mut [Vec<f64>],
    grad: &[Vec<f64>],
    h: Hyper,
    threads: usize,
    done: &[bool],
) -> Result<(), Divergence> {
    let is_bad = |x: f64| !(x.is_finite() && x.abs() <= h.max_abs);
    for (k, r) in rules.iter().enumerate() {
        if r.fixed || done.get(k).copied().unwrap_or(false) {
            continue;
        }
        let lambda = if r.decayed { h.weight_decay } else { 0.0 };
        let (p, v, g) = (&mut params.values[k], &mut velocity[k], &grad[k]);
        let step = |p: &mut [f64], v: &mut [f64], g: &[f64]| {
            StepSlice {
                h,
                lambda,
                p,
                v,
                g,
                grad: |g: f64| g,
            }
            .run()
        };
        let mut bad = if threads >= 2 && p.len() >= 1 << 16 {
            let mid = p.len() / 2;
            let (p0, p1) = p.split_at_mut(mid);
            let (v0, v1) = v.split_at_mut(mid);
            let (g0, g1) = g.split_at(mid);
            let (b0, b1) = crate::exec::pool::join(|| step(p0, v0, g0), || step(p1, v1, g1));
            b0 | b1
        } else {
            step(p, v, g)
        };
        if r.symmetric || r.zero_diagonal || r.positive {
            // projection may repair a bad value (positive floor) or move one: check after it
            project(r, p);
            bad = p.iter().any(|&x| is_bad(x));
        }
        if bad {
            let value = p.iter().copied().find(|&x| is_bad(x)).expect("a bad value");
            return Err(Divergence {
                param: model.param(crate::ir::ParamId(k as u32)).name.clone(),
                value,
            });
        }
    }
    Ok(())
}
