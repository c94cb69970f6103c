//! Exact enumeration for models with real (Gaussian) groups: the discrete groups are
//! enumerated; given each discrete state the energy is a quadratic `x'Ax/2 - b'x + c` in the
//! real elements (read off whole-state energies), integrated in closed form:
//! `log ∫ exp(-E) dx = -c + b'A^-1 b/2 + (n/2) log 2π - log det A / 2`.
//! Expectations under the Gaussian use the 2n symmetric sigma points `mu ± sqrt(n) L e_i`
//! (`LL' = A^-1`), which integrate every polynomial of degree <= 3 exactly — enough for the
//! energy and `dE/dtheta` of every model the IR allows (real powers <= 2).
//!
//! Invariant: uses only whole-state energies; a quadratic that is not positive definite for
//! some discrete state is `ExactError::NotGaussian`, never a NaN.

use super::expand::{zeros_like, Expanded};
use super::{ExactError, Space, MAX_STATES};
use crate::ir::eval::{logsumexp, Params, State};
use crate::ir::{Domain, GroupId, Model};

/// The exact joint of a model with real groups: per discrete state, its log-weight (the
/// Gaussian integral) and the Gaussian's sigma points.
#[derive(Clone, Debug)]
pub struct Mixed {
    pub space: Space,
    /// `(group, elem)` of every real element, in group order
    pub reals: Vec<(GroupId, usize)>,
    /// log of the integral of `exp(-E)` over the reals, per discrete state code
    pub log_w: Vec<f64>,
    /// sigma points (values of `reals`), per discrete state code
    pub points: Vec<Vec<Vec<f64>>>,
    pub log_z: f64,
    base: State,
}

/// Lower Cholesky factor of a symmetric matrix, `None` unless positive definite.
fn cholesky(a: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = a[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>();
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    Some(l)
}

/// Solves `L y = b` then `L' x = y`.
fn chol_solve(l: &[Vec<f64>], b: &[f64]) -> Vec<f64> {
    let n = b.len();
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    x
}

impl Mixed {
    pub fn new(model: &Model, params: &Params) -> Result<Mixed, ExactError> {
        let discrete: Vec<GroupId> = model
            .group_ids()
            .filter(|&g| model.group(g).domain != Domain::Real)
            .collect();
        let reals: Vec<(GroupId, usize)> = model
            .group_ids()
            .filter(|&g| model.group(g).domain == Domain::Real)
            .flat_map(|g| (0..model.group(g).n_elems()).map(move |e| (g, e)))
            .collect();
        let space = Space::new(model, &discrete, MAX_STATES)?;
        let ex = Expanded::new(model, params);
        let n = reals.len();
        let base = model.zero_state();
        let (mut log_w, mut points) = (Vec::new(), Vec::new());
        let mut s = base.clone();
        for code in 0..space.n_states {
            space.decode(code, &mut s);
            let mut e_at = |x: &[f64]| {
                for (&(g, e), &v) in reals.iter().zip(x) {
                    s.values[g.idx()][e] = v;
                }
                ex.energy(&s)
            };
            let unit = |i: usize, a: f64| -> Vec<f64> {
                let mut x = vec![0.0; n];
                x[i] = a;
                x
            };
            let c = e_at(&vec![0.0; n]);
            let mut a = vec![vec![0.0; n]; n];
            let mut b = vec![0.0; n];
            let (ep, em): (Vec<f64>, Vec<f64>) = (0..n)
                .map(|i| (e_at(&unit(i, 1.0)), e_at(&unit(i, -1.0))))
                .unzip();
            for i in 0..n {
                a[i][i] = ep[i] + em[i] - 2.0 * c;
                b[i] = 0.5 * (em[i] - ep[i]);
                for j in 0..i {
                    let mut x = unit(i, 1.0);
                    x[j] = 1.0;
                    // E(e_i + e_j) = c - b_i - b_j + (A_ii + A_jj)/2 + A_ij
                    let aij = e_at(&x) - c + b[i] + b[j] - 0.5 * (a[i][i] + a[j][j]);
                    a[i][j] = aij;
                    a[j][i] = aij;
                }
            }
            let l = cholesky(&a).ok_or(ExactError::NotGaussian { state: code })?;
            let mu = chol_solve(&l, &b);
            let log_det: f64 = (0..n).map(|i| 2.0 * l[i][i].ln()).sum();
            let quad: f64 = mu.iter().zip(&b).map(|(m, bi)| m * bi).sum();
            log_w.push(
                -c + 0.5 * quad + 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln()
                    - 0.5 * log_det,
            );
            // sigma points: mu ± sqrt(n) * (column i of the Cholesky factor of A^-1); with
            // A = LL', A^-1 = L'^-1 L^-1, and its columns-square-root is L'^-1 e_i
            let mut pts = Vec::with_capacity(2 * n);
            for i in 0..n {
                let mut col = vec![0.0; n];
                // solve L' x = e_i
                for r in (0..n).rev() {
                    let rhs = if r == i { 1.0 } else { 0.0 };
                    col[r] = (rhs - (r + 1..n).map(|k| l[k][r] * col[k]).sum::<f64>()) / l[r][r];
                }
                let k = (n as f64).sqrt();
                for sign in [1.0, -1.0] {
                    pts.push(mu.iter().zip(&col).map(|(m, c)| m + sign * k * c).collect());
                }
            }
            if n == 0 {
                pts.push(vec![]);
            }
            points.push(pts);
        }
        let log_z = logsumexp(&log_w);
        Ok(Mixed {
            space,
            reals,
            log_w,
            points,
            log_z,
            base,
        })
    }

    /// Calls `f(weight, state)` for every sigma point of every discrete state; the weights
    /// sum to 1 and `sum weight * f(state)` is `E[f]` for `f` of degree <= 3 in the reals.
    pub fn for_each(&self, mut f: impl FnMut(f64, &State)) {
        let mut s = self.base.clone();
        for code in 0..self.space.n_states {
            self.space.decode(code, &mut s);
            let w = (self.log_w[code] - self.log_z).exp();
            let pts = &self.points[code];
            for p in pts {
                for (&(g, el), &v) in self.reals.iter().zip(p) {
                    s.values[g.idx()][el] = v;
                }
                f(w / pts.len() as f64, &s);
            }
        }
    }

    /// `E[f]` under the exact joint (exact for `f` polynomial of degree <= 3 in the reals).
    pub fn expect(&self, mut f: impl FnMut(&State) -> f64) -> f64 {
        let mut acc = 0.0;
        self.for_each(|w, s| acc += w * f(s));
        acc
    }

    /// `E[dE/dtheta]` under the exact joint.
    pub fn expect_grad_energy(&self, model: &Model, params: &Params) -> Params {
        let ex = Expanded::new(model, params);
        let mut g = zeros_like(params);
        self.for_each(|w, s| ex.add_grad(model, params, s, w, &mut g));
        g
    }
}
