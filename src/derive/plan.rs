//! The Plan: everything `derive` found out about a model, in a form an interpreter can execute
//! without re-deriving anything. This file holds types and their exact semantics only.
//!
//! Invariant: every quantity below is defined through *term instances* of the IR, so it is
//! unambiguous for any term shape (diagonals, modular indices, repeated groups).
//!
//! # Vocabulary
//!
//! - A **term instance** is one assignment of a term's index vars (`ir::Term::vars`), numbered
//!   row-major (first var slowest, as `ir::eval::for_each_assignment` visits them). Its value is
//!   `coef(assign) * prod_f unit_f(assign) ^ power_f`.
//! - A **log-normaliser instance** of `ir::LogNorm` is one assignment of its *rest* vars: all
//!   `outer` vars for `Softplus`, all `outer` vars except `state_var` for `LogSumExp`, numbered
//!   row-major. Its value is `softplus(arg(outer))` or `lse_c arg(outer with state_var = c)`,
//!   exactly as `Model::lognorm_value` sums them.
//! - A **variable** is a [`VarRef`](crate::analysis::VarRef): one scalar unit, or one one-hot
//!   slice of a categorical group.
//! - An instance **touches** a variable when one of its unit factors (or, for a log-normaliser,
//!   one unit factor of one instance of one of its `arg` terms) evaluates to an element of it.
//!   [`Incidence`](crate::analysis::Incidence) lists, per variable, the instances touching it.
//! - The **local energy** of variable `u` at value `x`, `E_u(x)`, is the sum over all instances
//!   touching `u` of the instance's value with `u` set to `x` and every other unit at its current
//!   state. Because an instance is evaluated as a whole, an instance in which `u` appears twice
//!   (the diagonal `i = k` of `v[i]*L[i,k]*v[k]`) is counted once, with `x` substituted in both
//!   factors (`x*x`): for binary `x*x = x`, for spin `x*x = 1` (constant, no field), for real it
//!   is a quadratic (precision) contribution, for categorical `x[c]*x[c'] = [c == c']`.
//!   `E(state) = E_u(x) + (terms of E not touching u)`, so `p(u = x | rest) ∝ exp(-E_u(x))`.
//!
//! # Conditionals (sign conventions: the energy enters as `exp(-E)`)
//!
//! - `Bernoulli`: `z = E_u(0) - E_u(1)`, `P(u = 1) = sigmoid(z)`, mean `sigmoid(z)`,
//!   `A(z) = softplus(z)`.
//! - `Spin`: `z = (E_u(-1) - E_u(+1)) / 2`, `P(u = +1) = sigmoid(2 z)`, mean `tanh(z)`,
//!   `A(z) = log(2 cosh z)`.
//! - `Softmax`: over the last axis: `z_c = -E_u(e_c)`, `P(u = e_c) = softmax(z)_c`,
//!   mean `softmax(z)`, `A(z) = lse(z)`.
//! - `Enumerate`: a discrete variable touched by log-normaliser instances (a latent with
//!   children through sigmoid/softmax conditionals): `P(u = x) ∝ exp(-E_u(x))` over the states
//!   of its domain, with the log-normaliser instances included in `E_u`. Not a sigmoid of a
//!   linear field: the softplus of each child couples the co-parents.
//! - `Gaussian` (real units): every instance touching `u` has total power `p ∈ {1, 2}` in `u`
//!   (powers of all factors that evaluate to `u`, summed). With `r` = the instance's value with
//!   the `u` factors removed (coefficient times the other factors),
//!   `z = -sum_{p = 1} r` and `beta = 2 * sum_{p = 2} r`; `E_u(x) = beta x^2 / 2 - z x`.
//!   `u | rest ~ Normal(mean z / beta, variance 1 / beta)`; `derive` has proven `beta > 0`.
//!   `A(z) = z^2 / (2 beta) + log(2 pi / beta) / 2`.
//!
//! In every family the discrete local energies may include a state-independent offset (e.g.
//! spin diagonals); `A` as written ignores it, [`FreeEnergy`] says how it is counted.

use crate::analysis::{Block, Structure};
use crate::ir::{GroupId, LogNormId, ParamId, TermId};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Family {
    Bernoulli,
    Spin,
    Gaussian,
    Softmax,
    Enumerate,
}

/// A term that is linear (`slots.len() == 1` and power 1) or quadratic in the group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldTerm {
    pub term: TermId,
    /// indices into `term.units` of the factors that are this group; more than one for lateral
    /// terms (`v[i]*L[i,k]*v[k]` has slots `[0, 2]`): an instance then touches up to two
    /// variables of the group and contributes to the field of each, as defined by `E_u`.
    pub slots: Vec<usize>,
}

/// The Gibbs conditional of every variable of one group, given all other variables.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conditional {
    pub group: GroupId,
    pub family: Family,
    /// terms contributing to the field `z` (power 1 in the group)
    pub field: Vec<FieldTerm>,
    /// Gaussian only: terms with a power-2 factor of the group or with two slots of it
    /// (contributing to `beta`); empty for other families
    pub precision: Vec<FieldTerm>,
    /// log-normalisers whose argument mentions the group (non-empty only for `Enumerate`)
    pub lognorms: Vec<LogNormId>,
    /// every term mentioning the group, sorted (the union of `field` and `precision`)
    pub terms: Vec<TermId>,
}

/// The free energy with `summed` groups summed (integrated) out analytically:
///
/// `F(rest) = sum_{t in kept_terms} value(t) + sum_{all lognorms} value(l)
///           - sum_{g in summed} sum_{u var of g} log sum_x exp(-E_u(x))`
///
/// (an integral over `x` for Gaussian groups: `-A(z) `, see the module docs). `p(rest) ∝
/// exp(-F(rest))` where `rest` is every group not in `summed`. Summed groups are mutually
/// non-interacting and not self-interacting, so each instance of a non-kept term touches
/// exactly one summed variable and `E_u` does not depend on other summed variables.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FreeEnergy {
    /// hidden groups summed out, sorted
    pub summed: Vec<GroupId>,
    /// groups `F` depends on (everything else), sorted
    pub kept_groups: Vec<GroupId>,
    /// terms with no factor in a summed group, sorted
    pub kept_terms: Vec<TermId>,
    /// why these groups (and why not others)
    pub reason: String,
}

/// Mean-field (factorised `Q`) inference of the hidden groups with visible groups clamped.
///
/// `Q` holds, per hidden variable, its mean (Bernoulli: `P(1)`, spin: `E[s]`, softmax: the
/// probability vector, Gaussian: mean and variance). One iteration visits `blocks` in order;
/// for every variable `u` of a block it computes `E_u` with each other unit factor replaced by
/// its `Q`-mean, a real factor of power 2 by its second moment `mean^2 + variance`, then sets
/// the new `Q(u)` from the family (mean of the table in the module docs) and blends
/// `mean <- damping * old + (1 - damping) * new`. Variables within a block are updated from
/// the values before the block step. Stops after `iters` iterations or when the largest
/// absolute change of a mean in one iteration is below `tol`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MeanField {
    pub blocks: Vec<Block>,
    pub iters: usize,
    pub damping: f64,
    pub tol: f64,
    /// some term multiplies a unit by the square of a real unit (or squares a real unit next
    /// to another unit): the updates read second moments of `Q`
    pub needs_second_moments: bool,
    /// false when mean field is not applicable (a hidden group is `Enumerate`: the expected
    /// softplus has no closed form); `reason` says why
    pub supported: bool,
    pub reason: String,
}

/// How the energy depends on one (non-fixed) parameter.
///
/// `dE/dθ_e = sum_{t in terms} sum_{instances} dcoef_t/dθ_e * monomial
///          + sum_{l in lognorms} sum_{l-instances} sum_{c} w_c * sum_{arg-term instances at c}
///            dcoef/dθ_e * monomial`
/// where for `Softplus` there is one `c` with `w = sigmoid(arg)` and for `LogSumExp`
/// `w_c = softmax_c(arg)`. `∂ log p(v) / ∂θ = -⟨dE/dθ⟩_data + ⟨dE/dθ⟩_model` (positive minus
/// negative phase). In the positive phase, summed-out groups are replaced by their conditional
/// moments (each instance touches one summed variable at most once, or twice as a square for
/// Gaussian: use the second moment), other hidden groups by samples or mean-field means.
/// Derivatives are with respect to the raw stored elements; constraints (`symmetric`, ...) are
/// the learner's business.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GradStat {
    pub param: ParamId,
    /// terms whose coefficient mentions the parameter, sorted
    pub terms: Vec<TermId>,
    /// log-normalisers whose argument terms mention the parameter, sorted
    pub lognorms: Vec<LogNormId>,
    /// every coefficient mentioning the parameter is `c * θ[...]` for a constant `c` (one
    /// occurrence), and no log-normaliser mentions it: the statistic is `c * monomial`
    pub linear: bool,
}

/// Everything derived for one model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub structure: Structure,
    /// by `GroupId`
    pub conditionals: Vec<Conditional>,
    pub free_energy: FreeEnergy,
    pub meanfield: MeanField,
    /// one per non-fixed parameter, in `ParamId` order
    pub gradients: Vec<GradStat>,
}
