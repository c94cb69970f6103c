//! Which term and log-normaliser instances touch which variable, computed once per model by
//! enumerating every instance. Shared by analysis, derivation, the interpreter and `explain`.
//!
//! Invariant: `of(v)` lists each instance touching `v` exactly once (an instance in which `v`
//! appears in two factors is listed once), sorted by (kind, id, instance number).

use super::VarRef;
use crate::ir::eval::for_each_assignment;
use crate::ir::{GroupId, IndexVar, LogNorm, LogNormId, LogNormKind, Model, TermId};
use serde::Serialize;

/// One instance: a term instance or a log-normaliser instance (see `derive::plan` docs for
/// the numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Occ {
    Term { term: TermId, inst: u32 },
    LogNorm { lognorm: LogNormId, inst: u32 },
}

#[derive(Clone, Debug)]
pub struct Incidence {
    /// `[group][var]` -> instances touching that variable
    by_var: Vec<Vec<Vec<Occ>>>,
}

/// The assignment of `vars` with row-major number `flat`.
pub fn decode_assignment(vars: &[IndexVar], mut flat: usize) -> Vec<usize> {
    let mut a = vec![0; vars.len()];
    for k in (0..vars.len()).rev() {
        a[k] = flat % vars[k].extent;
        flat /= vars[k].extent;
    }
    a
}

/// The vars a log-normaliser instance ranges over: `outer`, minus `state_var` for LSE.
pub fn lognorm_rest_vars(l: &LogNorm) -> Vec<IndexVar> {
    match l.kind {
        LogNormKind::Softplus => l.outer.clone(),
        LogNormKind::LogSumExp { state_var } => l
            .outer
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != state_var as usize)
            .map(|(_, v)| v.clone())
            .collect(),
    }
}

/// The outer assignments of one log-normaliser instance (one for softplus, one per state for
/// LSE, in state order).
pub fn lognorm_outer_assignments(l: &LogNorm, rest: &[usize]) -> Vec<Vec<usize>> {
    match l.kind {
        LogNormKind::Softplus => vec![rest.to_vec()],
        LogNormKind::LogSumExp { state_var } => {
            let sv = state_var as usize;
            (0..l.outer[sv].extent)
                .map(|c| {
                    let mut a = rest[..sv].to_vec();
                    a.push(c);
                    a.extend_from_slice(&rest[sv..]);
                    a
                })
                .collect()
        }
    }
}

/// Calls `f` with every full assignment of an `arg` term of `l` at one outer assignment.
pub fn for_each_arg_assignment(outer: &[usize], vars: &[IndexVar], mut f: impl FnMut(&[usize])) {
    let mut a = outer.to_vec();
    a.resize(vars.len(), 0);
    for_each_assignment(&vars[outer.len()..], |ia| {
        a[outer.len()..].copy_from_slice(ia);
        f(&a)
    });
}

impl Model {
    /// The variable a unit factor of a term evaluates to under an assignment.
    pub fn var_of(&self, u: &crate::ir::UnitFactor, assign: &[usize]) -> VarRef {
        let off = self.unit_offset(u, assign);
        VarRef {
            group: u.group,
            var: off / self.group(u.group).n_states(),
        }
    }
}

/// The distinct variables touched by one term instance, sorted.
pub fn term_instance_vars(model: &Model, term: TermId, assign: &[usize]) -> Vec<VarRef> {
    let mut vs: Vec<VarRef> = model.terms[term.idx()]
        .units
        .iter()
        .map(|u| model.var_of(u, assign))
        .collect();
    vs.sort();
    vs.dedup();
    vs
}

/// The distinct variables touched by one log-normaliser instance, sorted.
pub fn lognorm_instance_vars(model: &Model, l: &LogNorm, rest: &[usize]) -> Vec<VarRef> {
    let mut vs = Vec::new();
    for outer in lognorm_outer_assignments(l, rest) {
        for t in &l.arg {
            for_each_arg_assignment(&outer, &t.vars, |a| {
                vs.extend(t.units.iter().map(|u| model.var_of(u, a)))
            });
        }
    }
    vs.sort();
    vs.dedup();
    vs
}

impl Incidence {
    pub fn new(model: &Model) -> Self {
        let mut by_var: Vec<Vec<Vec<Occ>>> = model
            .groups
            .iter()
            .map(|g| vec![Vec::new(); g.n_vars()])
            .collect();
        for (ti, t) in model.terms.iter().enumerate() {
            let term = TermId(ti as u32);
            let mut inst = 0u32;
            for_each_assignment(&t.vars, |a| {
                for v in term_instance_vars(model, term, a) {
                    by_var[v.group.idx()][v.var].push(Occ::Term { term, inst });
                }
                inst += 1;
            });
        }
        for (li, l) in model.lognorms.iter().enumerate() {
            let lognorm = LogNormId(li as u32);
            let mut inst = 0u32;
            for_each_assignment(&lognorm_rest_vars(l), |r| {
                for v in lognorm_instance_vars(model, l, r) {
                    by_var[v.group.idx()][v.var].push(Occ::LogNorm { lognorm, inst });
                }
                inst += 1;
            });
        }
        // Instances are generated in (kind, id, inst) order already; keep the invariant explicit.
        for g in &mut by_var {
            for occs in g.iter_mut() {
                occs.sort();
                occs.dedup();
            }
        }
        Incidence { by_var }
    }

    /// Instances touching variable `v`.
    pub fn of(&self, v: VarRef) -> &[Occ] {
        &self.by_var[v.group.idx()][v.var]
    }

    pub fn n_vars(&self, g: GroupId) -> usize {
        self.by_var[g.idx()].len()
    }
}

/// Flat element offsets of one variable.
pub fn var_elems(model: &Model, v: VarRef) -> std::ops::Range<usize> {
    let k = model.group(v.group).n_states();
    v.var * k..v.var * k + k
}

/// Variable of a flat element offset of a group.
pub fn elem_var(model: &Model, g: GroupId, elem: usize) -> VarRef {
    VarRef {
        group: g,
        var: elem / model.group(g).n_states(),
    }
}

/// Human-readable name of a variable, `s[0, 3]` (categorical: the index without the state).
pub fn var_name(model: &Model, v: VarRef) -> String {
    let g = model.group(v.group);
    let shape: &[usize] = if g.domain == crate::ir::Domain::Categorical {
        &g.shape[..g.shape.len() - 1]
    } else {
        &g.shape
    };
    if shape.is_empty() {
        return g.name.clone();
    }
    let mut rem = v.var;
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = rem % shape[d];
        rem /= shape[d];
    }
    let parts: Vec<String> = idx.iter().map(|i| i.to_string()).collect();
    format!("{}[{}]", g.name, parts.join(", "))
}
