//! The typed IR of one model: unit groups, parameters, and the energy as a sum of terms.
//!
//! Every term is a *monomial in units* with a coefficient that is an expression in parameters,
//! constants and index variables, summed over all values of its index variables (Einstein
//! convention made explicit). Directed conditionals contribute their negative log-density to
//! the same energy: the part that is polynomial in units goes into `terms`, the log-normaliser
//! (softplus / log-sum-exp of an affine function of parent units) goes into `lognorms`.
//! So `exp(-energy)` is always the unnormalised joint density, whatever mix of undirected and
//! directed parts the user wrote.
//!
//! Invariants (established by `sema`, relied on by every later stage):
//! - every `Affine` index evaluated at any assignment of its term's vars lies in range of the
//!   tensor axis it indexes (proven in `sema`, or the model is rejected);
//! - unit powers are canonical: binary/categorical powers are 1 (x^2 = x), spin powers are 1
//!   (s^2 = 1 folded into the coefficient), real powers are 1 or 2;
//! - a term never holds the same `UnitFactor` (same group and identical index maps) twice.

pub mod eval;
pub mod init;

use crate::diag::Span;
use serde::Serialize;

macro_rules! id_type {
    ($name:ident) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        pub struct $name(pub u32);
        impl $name {
            pub fn idx(self) -> usize {
                self.0 as usize
            }
        }
    };
}
id_type!(GroupId);
id_type!(ParamId);
id_type!(TermId);
id_type!(LogNormId);
id_type!(DirectedId);

/// The set of values a unit takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Domain {
    /// {0, 1}
    Binary,
    /// {-1, +1}
    Spin,
    /// the real line; Gaussian where the energy is quadratic with positive curvature
    Real,
    /// one-hot over the group's last axis: each unit is a vector e_c, c < shape.last()
    Categorical,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Role {
    /// observed in data
    Visible,
    /// latent: summed out, inferred or sampled
    Hidden,
}

#[derive(Clone, Debug, Serialize)]
pub struct Group {
    pub name: String,
    pub shape: Vec<usize>,
    pub domain: Domain,
    pub role: Role,
    pub span: Span,
}

impl Group {
    /// Number of scalar entries (for categorical groups this counts states too).
    pub fn n_elems(&self) -> usize {
        self.shape.iter().product()
    }
    /// Number of random variables: categorical groups have one per slice of the last axis.
    pub fn n_vars(&self) -> usize {
        match self.domain {
            Domain::Categorical => self.n_elems() / self.n_states(),
            _ => self.n_elems(),
        }
    }
    /// States of one categorical variable (the last axis); 1 for other domains.
    pub fn n_states(&self) -> usize {
        match self.domain {
            Domain::Categorical => *self.shape.last().expect("categorical group has an axis"),
            _ => 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Init {
    Const(f64),
    Normal {
        mean: f64,
        sd: f64,
    },
    Uniform {
        lo: f64,
        hi: f64,
    },
    /// logit of the mean of the named visible group over the training data (Hinton's guide);
    /// falls back to 0 where no data is given.
    DataLogit {
        group: GroupId,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Constraint {
    Positive,
    Symmetric,
    ZeroDiagonal,
    /// a constant that learning never changes
    Fixed,
}

#[derive(Clone, Debug, Serialize)]
pub struct Param {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
    pub constraints: Vec<Constraint>,
    pub span: Span,
}

impl Param {
    pub fn n_elems(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn has(&self, c: Constraint) -> bool {
        self.constraints.contains(&c)
    }
}

/// A summation index with its range `0..extent`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IndexVar {
    pub name: String,
    pub extent: usize,
}

/// `(sum_k coeff_k * var_k + offset) mod modulo` (Euclidean mod, result in 0..modulo).
/// `var_k` indexes the owning term's `vars`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Affine {
    pub coeffs: Vec<(u32, i64)>,
    pub offset: i64,
    pub modulo: Option<i64>,
}

impl Affine {
    pub fn var(v: u32) -> Self {
        Affine {
            coeffs: vec![(v, 1)],
            offset: 0,
            modulo: None,
        }
    }
    pub fn constant(c: i64) -> Self {
        Affine {
            coeffs: vec![],
            offset: c,
            modulo: None,
        }
    }
    pub fn eval(&self, assign: &[usize]) -> i64 {
        let mut x = self.offset;
        for &(v, c) in &self.coeffs {
            x += c * assign[v as usize] as i64;
        }
        match self.modulo {
            Some(m) => x.rem_euclid(m),
            None => x,
        }
    }
    /// The bare variable this index is, if it is exactly one (`i`, not `i + 1` or `i % L`).
    pub fn as_var(&self) -> Option<u32> {
        match (&self.coeffs[..], self.offset, self.modulo) {
            ([(v, 1)], 0, None) => Some(*v),
            _ => None,
        }
    }
}

/// One unit-tensor factor of a monomial, e.g. `v[i]` or `s[(i + 1) % L, j]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct UnitFactor {
    pub group: GroupId,
    pub index: Vec<Affine>,
    pub power: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Func {
    Exp,
    Log,
    Sqrt,
    Sigmoid,
    Softplus,
    Tanh,
    Abs,
}

/// A coefficient: an expression in parameters, constants and the term's index variables.
/// It never mentions a unit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Coef {
    Const(f64),
    Param {
        param: ParamId,
        index: Vec<Affine>,
    },
    Add(Vec<Coef>),
    Mul(Vec<Coef>),
    Div(Box<Coef>, Box<Coef>),
    /// integer power
    Powi(Box<Coef>, i32),
    Neg(Box<Coef>),
    Func(Func, Box<Coef>),
}

/// Where a term came from, for explanations and diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Origin {
    Energy,
    Directed(DirectedId),
}

/// `sum_{vars} coef * prod_f unit_f ^ power_f`, added to the energy.
#[derive(Clone, Debug, Serialize)]
pub struct Term {
    pub vars: Vec<IndexVar>,
    pub units: Vec<UnitFactor>,
    pub coef: Coef,
    pub origin: Origin,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum LogNormKind {
    /// `softplus(arg)`: log-normaliser of a Bernoulli with logit `arg`
    Softplus,
    /// `logsumexp over outer var #state_var of arg`: log-normaliser of a categorical
    LogSumExp { state_var: u32 },
}

/// A non-polynomial energy term `+ sum_{outer} f(arg(outer))` produced by a directed
/// conditional, where `arg` is a sum of terms whose `vars` start with the `outer` vars (same
/// names, same order) followed by their own inner summation vars. Its units are the parents.
#[derive(Clone, Debug, Serialize)]
pub struct LogNorm {
    pub outer: Vec<IndexVar>,
    pub kind: LogNormKind,
    pub arg: Vec<Term>,
    pub origin: Origin,
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub enum Dist {
    /// `x ~ bernoulli(sigmoid(logit))`
    Bernoulli { logit: Vec<Term> },
    /// `x ~ categorical(softmax(logits))`, logits indexed by the child's full index incl. state
    Categorical { logits: Vec<Term> },
    /// `x ~ normal(mean, sd)`, `sd` a coefficient (no units)
    Normal { mean: Vec<Term>, sd: Coef },
}

/// A directed conditional `child[vars] ~ dist(...)`. The expression terms in `dist` have
/// `vars` starting with the child's `vars`. Its log-density is also in the model's energy.
#[derive(Clone, Debug, Serialize)]
pub struct Directed {
    pub child: GroupId,
    pub vars: Vec<IndexVar>,
    pub dist: Dist,
    /// groups appearing in `dist`, deduplicated, in declaration order
    pub parents: Vec<GroupId>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum ScheduleKind {
    Gibbs,
    MeanField {
        iters: usize,
        damping: f64,
        tol: f64,
    },
}

/// One step of a user schedule: `sample {a, b} | {c}` or `update h1`.
#[derive(Clone, Debug, Serialize)]
pub struct ScheduleStep {
    pub groups: Vec<GroupId>,
    /// what the user wrote after `|`; empty means "everything else"
    pub given: Vec<GroupId>,
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct UserSchedule {
    pub kind: ScheduleKind,
    pub steps: Vec<ScheduleStep>,
    pub span: Span,
}

/// One compiled model.
#[derive(Clone, Debug, Serialize)]
pub struct Model {
    pub name: String,
    /// the doc comment (`///` lines), without the slashes
    pub doc: String,
    /// resolved model arguments / dimensions, in declaration order
    pub dims: Vec<(String, f64)>,
    pub groups: Vec<Group>,
    pub params: Vec<Param>,
    pub terms: Vec<Term>,
    pub lognorms: Vec<LogNorm>,
    pub directed: Vec<Directed>,
    pub schedules: Vec<UserSchedule>,
    pub span: Span,
}

impl Model {
    /// A model with nothing declared yet, for builders (sema, test generators).
    pub fn empty(name: impl Into<String>, span: Span) -> Model {
        Model {
            name: name.into(),
            doc: String::new(),
            dims: vec![],
            groups: vec![],
            params: vec![],
            terms: vec![],
            lognorms: vec![],
            directed: vec![],
            schedules: vec![],
            span,
        }
    }
    pub fn group(&self, id: GroupId) -> &Group {
        &self.groups[id.idx()]
    }
    pub fn param(&self, id: ParamId) -> &Param {
        &self.params[id.idx()]
    }
    pub fn group_id(&self, name: &str) -> Option<GroupId> {
        self.groups
            .iter()
            .position(|g| g.name == name)
            .map(|i| GroupId(i as u32))
    }
    pub fn param_id(&self, name: &str) -> Option<ParamId> {
        self.params
            .iter()
            .position(|p| p.name == name)
            .map(|i| ParamId(i as u32))
    }
    pub fn group_ids(&self) -> impl Iterator<Item = GroupId> {
        (0..self.groups.len() as u32).map(GroupId)
    }
    pub fn param_ids(&self) -> impl Iterator<Item = ParamId> {
        (0..self.params.len() as u32).map(ParamId)
    }
    /// The directed conditional whose child is `g`, if any.
    pub fn directed_of(&self, g: GroupId) -> Option<&Directed> {
        self.directed.iter().find(|d| d.child == g)
    }
}
