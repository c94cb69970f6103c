//! Direct evaluation of the IR: parameter and state storage, term instances, coefficients and
//! the total energy. Slow and obviously right; the oracle everything else is checked against.
//!
//! Invariant: tensors are flat `Vec<f64>` in row-major order of the declared shape;
//! categorical groups store one-hot vectors over their last axis.

use super::*;

/// Values of every parameter of a model, indexed by `ParamId`.
#[derive(Debug, PartialEq)]
pub struct Params {
    pub values: Vec<Vec<f64>>,
}

impl Clone for Params {
    fn clone(&self) -> Self {
        Params {
            values: self.values.clone(),
        }
    }

    /// Reuses `self`'s buffers (the trainer's per-epoch snapshot: megabytes of fresh pages
    /// otherwise).
    fn clone_from(&mut self, src: &Self) {
        self.values.clone_from(&src.values);
    }
}

/// Values of every unit group of a model (one configuration), indexed by `GroupId`.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub values: Vec<Vec<f64>>,
}

/// Row-major flat offset of a multi-index; `None` when out of range.
pub fn flat_index(shape: &[usize], index: &[i64]) -> Option<usize> {
    debug_assert_eq!(shape.len(), index.len());
    let mut off = 0usize;
    for (&n, &i) in shape.iter().zip(index) {
        if i < 0 || i as usize >= n {
            return None;
        }
        off = off * n + i as usize;
    }
    Some(off)
}

/// Calls `f` with every assignment of `vars` (row-major, first var slowest).
pub fn for_each_assignment(vars: &[IndexVar], mut f: impl FnMut(&[usize])) {
    if vars.iter().any(|v| v.extent == 0) {
        return;
    }
    let mut a = vec![0usize; vars.len()];
    loop {
        f(&a);
        let mut k = vars.len();
        loop {
            if k == 0 {
                return;
            }
            k -= 1;
            a[k] += 1;
            if a[k] < vars[k].extent {
                break;
            }
            a[k] = 0;
        }
    }
}

impl Model {
    /// Flat element offset of a unit factor under an assignment. Panics on an out-of-range
    /// index, which `sema` has proven impossible.
    pub fn unit_offset(&self, u: &UnitFactor, assign: &[usize]) -> usize {
        let idx: Vec<i64> = u.index.iter().map(|a| a.eval(assign)).collect();
        let shape = &self.group(u.group).shape;
        flat_index(shape, &idx)
            .unwrap_or_else(|| unreachable!("sema proved unit index {idx:?} in range of {shape:?}"))
    }

    pub fn param_offset(&self, p: ParamId, index: &[Affine], assign: &[usize]) -> usize {
        let idx: Vec<i64> = index.iter().map(|a| a.eval(assign)).collect();
        let shape = &self.param(p).shape;
        flat_index(shape, &idx).unwrap_or_else(|| {
            unreachable!("sema proved param index {idx:?} in range of {shape:?}")
        })
    }

    /// Value of a coefficient under an assignment of its term's vars.
    pub fn coef_value(&self, c: &Coef, params: &Params, assign: &[usize]) -> f64 {
        match c {
            Coef::Const(x) => *x,
            Coef::Param { param, index } => {
                params.values[param.idx()][self.param_offset(*param, index, assign)]
            }
            Coef::Add(xs) => xs.iter().map(|x| self.coef_value(x, params, assign)).sum(),
            Coef::Mul(xs) => xs
                .iter()
                .map(|x| self.coef_value(x, params, assign))
                .product(),
            Coef::Div(a, b) => {
                self.coef_value(a, params, assign) / self.coef_value(b, params, assign)
            }
            Coef::Powi(a, n) => self.coef_value(a, params, assign).powi(*n),
            Coef::Neg(a) => -self.coef_value(a, params, assign),
            Coef::Func(f, a) => f.apply(self.coef_value(a, params, assign)),
        }
    }

    /// Value of one instance of a term's unit monomial.
    pub fn monomial_value(&self, t: &Term, state: &State, assign: &[usize]) -> f64 {
        let mut m = 1.0;
        for u in &t.units {
            let x = state.values[u.group.idx()][self.unit_offset(u, assign)];
            m *= x.powi(u.power as i32);
        }
        m
    }

    /// `sum_{vars} coef * monomial` of one term.
    pub fn term_value(&self, t: &Term, params: &Params, state: &State) -> f64 {
        let mut s = 0.0;
        for_each_assignment(&t.vars, |a| {
            let m = self.monomial_value(t, state, a);
            if m != 0.0 {
                s += self.coef_value(&t.coef, params, a) * m;
            }
        });
        s
    }

    /// Value of one log-normaliser term.
    pub fn lognorm_value(&self, l: &LogNorm, params: &Params, state: &State) -> f64 {
        let arg_at = |outer: &[usize]| -> f64 {
            let mut s = 0.0;
            for t in &l.arg {
                let inner = &t.vars[outer.len()..];
                let mut a = outer.to_vec();
                a.resize(t.vars.len(), 0);
                for_each_assignment(inner, |ia| {
                    a[outer.len()..].copy_from_slice(ia);
                    s += self.coef_value(&t.coef, params, &a) * self.monomial_value(t, state, &a);
                });
            }
            s
        };
        let mut total = 0.0;
        match l.kind {
            LogNormKind::Softplus => {
                for_each_assignment(&l.outer, |a| total += softplus(arg_at(a)))
            }
            LogNormKind::LogSumExp { state_var } => {
                let sv = state_var as usize;
                let rest: Vec<IndexVar> = l
                    .outer
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| *k != sv)
                    .map(|(_, v)| v.clone())
                    .collect();
                for_each_assignment(&rest, |r| {
                    let mut a = Vec::with_capacity(l.outer.len());
                    let mut zs = Vec::with_capacity(l.outer[sv].extent);
                    for c in 0..l.outer[sv].extent {
                        a.clear();
                        a.extend_from_slice(&r[..sv]);
                        a.push(c);
                        a.extend_from_slice(&r[sv..]);
                        zs.push(arg_at(&a));
                    }
                    total += logsumexp(&zs);
                });
            }
        }
        total
    }

    /// The energy `E(state)`; `exp(-E)` is the unnormalised joint density.
    pub fn energy(&self, params: &Params, state: &State) -> f64 {
        let poly: f64 = self
            .terms
            .iter()
            .map(|t| self.term_value(t, params, state))
            .sum();
        let nonlin: f64 = self
            .lognorms
            .iter()
            .map(|l| self.lognorm_value(l, params, state))
            .sum();
        poly + nonlin
    }

    /// A zero state of the right shapes (categorical groups set to state 0).
    pub fn zero_state(&self) -> State {
        State {
            values: self
                .groups
                .iter()
                .map(|g| {
                    let mut v = vec![0.0; g.n_elems()];
                    match g.domain {
                        Domain::Spin => v.iter_mut().for_each(|x| *x = -1.0),
                        Domain::Categorical => {
                            let k = g.n_states();
                            v.iter_mut().step_by(k).for_each(|x| *x = 1.0);
                        }
                        _ => {}
                    }
                    v
                })
                .collect(),
        }
    }

    /// Parameters at their initialisers' mean (constants; normals at their mean).
    pub fn default_params(&self) -> Params {
        Params {
            values: self
                .params
                .iter()
                .map(|p| {
                    let x = match p.init {
                        Init::Const(c) => c,
                        Init::Normal { mean, .. } => mean,
                        Init::Uniform { lo, hi } => 0.5 * (lo + hi),
                        Init::DataLogit { .. } => 0.0,
                    };
                    vec![x; p.n_elems()]
                })
                .collect(),
        }
    }
}

impl Func {
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Func::Exp => x.exp(),
            Func::Log => x.ln(),
            Func::Sqrt => x.sqrt(),
            Func::Sigmoid => sigmoid(x),
            Func::Softplus => softplus(x),
            Func::Tanh => x.tanh(),
            Func::Abs => x.abs(),
        }
    }
    /// d f / d x at x.
    pub fn derivative(self, x: f64) -> f64 {
        match self {
            Func::Exp => x.exp(),
            Func::Log => 1.0 / x,
            Func::Sqrt => 0.5 / x.sqrt(),
            Func::Sigmoid => {
                let s = sigmoid(x);
                s * (1.0 - s)
            }
            Func::Softplus => sigmoid(x),
            Func::Tanh => 1.0 - x.tanh().powi(2),
            Func::Abs => x.signum(),
        }
    }
}

pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// log(1 + e^x) without overflow.
pub fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

pub fn logsumexp(xs: &[f64]) -> f64 {
    let m = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}
