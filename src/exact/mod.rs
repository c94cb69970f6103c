//! Exact enumeration for small models: the oracle every derivation is tested against.
//!
//! A `Space` is the set of joint states of some discrete groups (binary and spin elements are
//! two-state variables, each categorical slice is one K-state variable); it is walked by a
//! mixed-radix code. From `exp(-E)` over a space come log Z, marginals, brute-force
//! conditionals, free energies (summing some groups with the others fixed), exact
//! log-likelihoods and their gradients (`likelihood`).
//!
//! Invariant: nothing here uses anything derived (no local fields, no plan): only the energy
//! of whole states, so a wrong derivation cannot agree with it by construction. Too many
//! states or a real-valued group to enumerate is an `ExactError`, never a panic.

pub mod expand;
pub mod gaussian;
pub mod likelihood;
pub mod meanfield;

pub use expand::Expanded;

use crate::ir::eval::{logsumexp, Params, State};
use crate::ir::{Domain, GroupId, Model};

/// Default limit on the number of joint states enumerated (24 binary units).
pub const MAX_STATES: usize = 1 << 24;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ExactError {
    #[error("group `{group}` is real-valued: exact enumeration needs discrete units")]
    RealGroup { group: String },
    #[error("{n_states:e} joint states exceed the enumeration limit of {limit}")]
    TooLarge { n_states: f64, limit: usize },
    #[error("the energy is not a positive-definite quadratic in the real units (discrete state {state})")]
    NotGaussian { state: usize },
}

/// One discrete random variable: a binary or spin element, or one categorical slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var {
    pub group: GroupId,
    /// flat offset of the element (first element of the slice for categorical)
    pub elem: usize,
    pub n_states: usize,
    pub domain: Domain,
}

impl Var {
    /// Writes state number `s` of this variable into `state`: binary {0,1}; spin {-1,+1} in
    /// that order; categorical the one-hot vector e_s.
    pub fn set(&self, state: &mut State, s: usize) {
        let v = &mut state.values[self.group.idx()];
        match self.domain {
            Domain::Binary => v[self.elem] = s as f64,
            Domain::Spin => v[self.elem] = if s == 1 { 1.0 } else { -1.0 },
            Domain::Categorical => {
                for c in 0..self.n_states {
                    v[self.elem + c] = if c == s { 1.0 } else { 0.0 };
                }
            }
            Domain::Real => unreachable!("a Var is never real: Space::new refuses real groups"),
        }
    }
    /// The state number this variable has in `state`.
    pub fn get(&self, state: &State) -> usize {
        let v = &state.values[self.group.idx()];
        match self.domain {
            Domain::Binary => (v[self.elem] > 0.5) as usize,
            Domain::Spin => (v[self.elem] > 0.0) as usize,
            Domain::Categorical => (0..self.n_states)
                .find(|&c| v[self.elem + c] > 0.5)
                .unwrap_or_else(|| unreachable!("categorical state is one-hot")),
            Domain::Real => unreachable!("a Var is never real"),
        }
    }
}

/// The variables of one group, in element order.
pub fn vars_of(model: &Model, g: GroupId) -> Result<Vec<Var>, ExactError> {
    let grp = model.group(g);
    let k = grp.n_states();
    match grp.domain {
        Domain::Real => Err(ExactError::RealGroup {
            group: grp.name.clone(),
        }),
        d => Ok((0..grp.n_vars())
            .map(|i| Var {
                group: g,
                elem: i * k,
                n_states: if d == Domain::Categorical { k } else { 2 },
                domain: d,
            })
            .collect()),
    }
}

/// All joint states of some discrete groups.
#[derive(Clone, Debug)]
pub struct Space {
    pub vars: Vec<Var>,
    pub n_states: usize,
}

impl Space {
    pub fn new(model: &Model, groups: &[GroupId], limit: usize) -> Result<Space, ExactError> {
        let mut vars = Vec::new();
        for &g in groups {
            vars.extend(vars_of(model, g)?);
        }
        let n: f64 = vars.iter().map(|v| v.n_states as f64).product();
        if n > limit as f64 {
            return Err(ExactError::TooLarge { n_states: n, limit });
        }
        Ok(Space {
            vars,
            n_states: n as usize,
        })
    }
    /// Writes joint state `code` into `state` (first variable slowest, as `for_each_assignment`).
    pub fn decode(&self, mut code: usize, state: &mut State) {
        for v in self.vars.iter().rev() {
            v.set(state, code % v.n_states);
            code /= v.n_states;
        }
    }
    pub fn encode(&self, state: &State) -> usize {
        self.vars
            .iter()
            .fold(0, |acc, v| acc * v.n_states + v.get(state))
    }
    /// Calls `f(code, state)` for every joint state, the other groups as in `base`.
    pub fn for_each(&self, base: &State, mut f: impl FnMut(usize, &State)) {
        let mut s = base.clone();
        for code in 0..self.n_states {
            self.decode(code, &mut s);
            f(code, &s);
        }
    }
    /// `log sum_{states} exp(-E)` with the other groups fixed as in `base`.
    pub fn log_sum(&self, ex: &Expanded, base: &State) -> f64 {
        let mut lw = Vec::with_capacity(self.n_states);
        self.for_each(base, |_, s| lw.push(-ex.energy(s)));
        logsumexp(&lw)
    }
}

/// The exact joint distribution of a fully discrete model.
#[derive(Clone, Debug)]
pub struct Joint {
    pub space: Space,
    /// `-E` of every joint state, by code
    pub neg_energy: Vec<f64>,
    pub log_z: f64,
    base: State,
}

impl Joint {
    pub fn new(model: &Model, params: &Params) -> Result<Joint, ExactError> {
        Self::with_limit(model, params, MAX_STATES)
    }
    pub fn with_limit(model: &Model, params: &Params, limit: usize) -> Result<Joint, ExactError> {
        let groups: Vec<GroupId> = model.group_ids().collect();
        let space = Space::new(model, &groups, limit)?;
        let ex = Expanded::new(model, params);
        let base = model.zero_state();
        let mut neg_energy = Vec::with_capacity(space.n_states);
        space.for_each(&base, |_, s| neg_energy.push(-ex.energy(s)));
        let log_z = logsumexp(&neg_energy);
        Ok(Joint {
            space,
            neg_energy,
            log_z,
            base,
        })
    }
    pub fn prob(&self, code: usize) -> f64 {
        (self.neg_energy[code] - self.log_z).exp()
    }
    pub fn state(&self, code: usize) -> State {
        let mut s = self.base.clone();
        self.space.decode(code, &mut s);
        s
    }
    /// Calls `f(probability, state)` for every joint state.
    pub fn for_each(&self, mut f: impl FnMut(f64, &State)) {
        self.space
            .for_each(&self.base, |code, s| f(self.prob(code), s));
    }
    pub fn expect(&self, mut f: impl FnMut(&State) -> f64) -> f64 {
        let mut acc = 0.0;
        self.for_each(|p, s| acc += p * f(s));
        acc
    }
    /// `E[x_e]` for every element of every group (state probabilities for categorical).
    pub fn marginals(&self) -> Vec<Vec<f64>> {
        let mut m: Vec<Vec<f64>> = self
            .base
            .values
            .iter()
            .map(|v| vec![0.0; v.len()])
            .collect();
        self.for_each(|p, s| {
            for (mg, sg) in m.iter_mut().zip(&s.values) {
                for (a, x) in mg.iter_mut().zip(sg) {
                    *a += p * x;
                }
            }
        });
        m
    }
    /// Probability of every state of one variable.
    pub fn var_marginal(&self, v: &Var) -> Vec<f64> {
        let mut m = vec![0.0; v.n_states];
        self.for_each(|p, s| m[v.get(s)] += p);
        m
    }
    /// `E[dE/dtheta]` under the joint, for every parameter element.
    pub fn expect_grad_energy(&self, model: &Model, params: &Params) -> Params {
        let ex = Expanded::new(model, params);
        let mut g = expand::zeros_like(params);
        self.for_each(|p, s| ex.add_grad(model, params, s, p, &mut g));
        g
    }
}

/// Brute-force conditional `p(var | rest)` from the energies of the variable's states, the
/// rest as in `state`.
pub fn conditional(ex: &Expanded, state: &State, var: &Var) -> Vec<f64> {
    let mut s = state.clone();
    let lw: Vec<f64> = (0..var.n_states)
        .map(|k| {
            var.set(&mut s, k);
            -ex.energy(&s)
        })
        .collect();
    let l = logsumexp(&lw);
    lw.iter().map(|x| (x - l).exp()).collect()
}

/// Brute-force Gaussian conditional of a real element: `(mean, precision)` read off the
/// energy at `x - 1, x, x + 1` around the current value (exact when the energy is quadratic in
/// the element; the precision is not positive when it is not a Gaussian).
pub fn gaussian_conditional(ex: &Expanded, state: &State, g: GroupId, elem: usize) -> (f64, f64) {
    let mut s = state.clone();
    let mut e_at = |x: f64| {
        s.values[g.idx()][elem] = x;
        ex.energy(&s)
    };
    let (em, e0, ep) = (e_at(-1.0), e_at(0.0), e_at(1.0));
    let prec = ep + em - 2.0 * e0;
    let z = 0.5 * (em - ep);
    (z / prec, prec)
}

/// Free energy `-log sum_{summed groups} exp(-E)` with every other group as in `state`.
pub fn free_energy(
    model: &Model,
    params: &Params,
    state: &State,
    summed: &[GroupId],
) -> Result<f64, ExactError> {
    let space = Space::new(model, summed, MAX_STATES)?;
    Ok(-space.log_sum(&Expanded::new(model, params), state))
}
