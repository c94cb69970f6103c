//! Lowering: every energy term becomes a batched tensor operation on mini-batches whose group
//! states are `[batch, n_elems]` matrices.
//!
//! Each term is classified once:
//! - `Const`: no unit factor (a constant of the energy; matters for `log Z`);
//! - `Bias`: one unit factor, `sum_a coef[a] * x[elem(a)]^p`: a row vector broadcast over the
//!   batch (any index shape: the coefficients are scattered onto elements);
//! - `Dense`: two power-1 factors of distinct groups whose indices are bare, distinct vars in
//!   the term's var order (`v[i] * W[i, j] * h[j]`): the coefficient table is a matrix
//!   `M[elem_a, elem_b]` and fields / energies / statistics are GEMMs;
//! - `Generic`: anything else (lattices with `%`, convolution offsets, three-way terms,
//!   laterals): a precomputed list of instances, gathered and scattered in loops.
//!
//! Invariant: for every group `g`, the field ops of `g` together compute, for every variable
//! `u` of `g`, exactly the natural parameters the Plan defines through the local energy `E_u`
//! (see `derive::plan`), counting an instance in which `u` appears in several slots once.

pub mod coef;
mod display;

use crate::ir::eval::for_each_assignment;
use crate::ir::{Domain, GroupId, Model, TermId};
use coef::CoefProg;

/// How one term is computed.
#[derive(Clone, Debug)]
pub enum TermKind {
    Const,
    Bias {
        group: GroupId,
        power: u32,
        /// flat element of the unit at each instance
        elems: Vec<u32>,
    },
    /// `sum_{a, b} M[a, b] * x_ga[a] * x_gb[b]`; the coefficient table in instance order is
    /// `M` row-major (vars of the `ga` factor come first in the term)
    Dense {
        ga: GroupId,
        gb: GroupId,
        na: usize,
        nb: usize,
    },
    Generic {
        /// `(group, power)` of each unit factor
        factors: Vec<(GroupId, u32)>,
        /// flat element of each factor at each instance: `elems[inst * n_factors + f]`
        elems: Vec<u32>,
    },
}

#[derive(Clone, Debug)]
pub struct LoweredTerm {
    pub term: TermId,
    pub coef: CoefProg,
    pub kind: TermKind,
}

/// What a generic instance contributes to its target variable's local energy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// `z[target] -= coef * rest`
    Field,
    /// Gaussian: `beta[target] += 2 * coef * rest`
    Precision,
    /// a constant of the local energy (spin `s^2`): `offset += coef * rest`
    Offset,
}

/// One (instance, target variable) pair of a generic term.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub target: u32,
    pub kind: EntryKind,
    pub inst: u32,
    /// range into `GenericField::others`
    pub start: u32,
    pub end: u32,
}

/// A unit factor read from the current state: `x[group][elem] ^ power`.
#[derive(Clone, Copy, Debug)]
pub struct Other {
    pub group: GroupId,
    pub elem: u32,
    pub power: u32,
}

#[derive(Clone, Debug)]
pub struct GenericField {
    pub entries: Vec<Entry>,
    pub others: Vec<Other>,
}

/// One contribution to the natural parameters of a group.
#[derive(Clone, Debug)]
pub enum FieldOp {
    /// `z -= scatter(coef)` (or `beta += 2 * scatter(coef)` when `precision`)
    Bias {
        term: usize,
        precision: bool,
    },
    /// the group is `ga` of a dense term: `z -= X_gb · Mᵀ`
    DenseA {
        term: usize,
    },
    /// the group is `gb` of a dense term: `z -= X_ga · M`
    DenseB {
        term: usize,
    },
    Generic {
        term: usize,
        field: GenericField,
    },
}

/// A model lowered to batched ops.
#[derive(Clone, Debug)]
pub struct Lowered {
    /// one per IR term, in `TermId` order
    pub terms: Vec<LoweredTerm>,
    /// by `GroupId`: the ops computing that group's natural parameters
    pub fields: Vec<Vec<FieldOp>>,
    /// by `GroupId`: `(n_elems, n_states)`, copied for the executor's convenience
    pub sizes: Vec<(usize, usize)>,
    pub domains: Vec<Domain>,
}

/// Lowers every energy term of `model`. Log-normalisers (directed parts) are not lowered: the
/// executor rejects models that have them.
pub fn lower(model: &Model) -> Lowered {
    let terms: Vec<LoweredTerm> = model
        .terms
        .iter()
        .enumerate()
        .map(|(k, t)| LoweredTerm {
            term: TermId(k as u32),
            coef: CoefProg::compile(model, t),
            kind: classify(model, k),
        })
        .collect();
    let mut fields = vec![Vec::new(); model.groups.len()];
    for (k, lt) in terms.iter().enumerate() {
        match &lt.kind {
            TermKind::Const => {}
            TermKind::Bias { group, power, .. } => {
                let precision = model.group(*group).domain == Domain::Real && *power == 2;
                fields[group.idx()].push(FieldOp::Bias { term: k, precision });
            }
            TermKind::Dense { ga, gb, .. } => {
                fields[ga.idx()].push(FieldOp::DenseA { term: k });
                fields[gb.idx()].push(FieldOp::DenseB { term: k });
            }
            TermKind::Generic { factors, elems } => {
                let mut gs: Vec<GroupId> = factors.iter().map(|f| f.0).collect();
                gs.sort();
                gs.dedup();
                for g in gs {
                    let field = generic_field(model, factors, elems, g);
                    fields[g.idx()].push(FieldOp::Generic { term: k, field });
                }
            }
        }
    }
    Lowered {
        terms,
        fields,
        sizes: model
            .groups
            .iter()
            .map(|g| (g.n_elems(), g.n_states()))
            .collect(),
        domains: model.groups.iter().map(|g| g.domain).collect(),
    }
}

fn classify(model: &Model, k: usize) -> TermKind {
    let t = &model.terms[k];
    let elems_of = |slots: &[usize]| -> Vec<u32> {
        let mut out = Vec::new();
        for_each_assignment(&t.vars, |a| {
            for &s in slots {
                out.push(model.unit_offset(&t.units[s], a) as u32);
            }
        });
        out
    };
    match t.units.len() {
        0 => return TermKind::Const,
        1 => {
            return TermKind::Bias {
                group: t.units[0].group,
                power: t.units[0].power,
                elems: elems_of(&[0]),
            }
        }
        2 => {
            let (u, w) = (&t.units[0], &t.units[1]);
            for (a, b) in [(u, w), (w, u)] {
                let va: Option<Vec<u32>> = a.index.iter().map(|x| x.as_var()).collect();
                let vb: Option<Vec<u32>> = b.index.iter().map(|x| x.as_var()).collect();
                let (Some(va), Some(vb)) = (va, vb) else {
                    continue;
                };
                let order: Vec<u32> = va.iter().chain(&vb).copied().collect();
                let in_order = order.len() == t.vars.len()
                    && order.iter().enumerate().all(|(k, &v)| v == k as u32);
                let shapes_match = |vs: &[u32], g: GroupId| {
                    vs.iter()
                        .zip(&model.group(g).shape)
                        .all(|(&v, &n)| t.vars[v as usize].extent == n)
                };
                if in_order
                    && a.group != b.group
                    && a.power == 1
                    && b.power == 1
                    && shapes_match(&va, a.group)
                    && shapes_match(&vb, b.group)
                {
                    return TermKind::Dense {
                        ga: a.group,
                        gb: b.group,
                        na: model.group(a.group).n_elems(),
                        nb: model.group(b.group).n_elems(),
                    };
                }
            }
        }
        _ => {}
    }
    let slots: Vec<usize> = (0..t.units.len()).collect();
    TermKind::Generic {
        factors: t.units.iter().map(|u| (u.group, u.power)).collect(),
        elems: elems_of(&slots),
    }
}

/// Instance lists of one generic term for target group `g`, following the local-energy rule:
/// every distinct variable of `g` an instance touches gets one entry; factors on that variable
/// are substituted (not read), factors on other variables are read from the state.
fn generic_field(
    model: &Model,
    factors: &[(GroupId, u32)],
    elems: &[u32],
    g: GroupId,
) -> GenericField {
    let grp = model.group(g);
    let k_states = grp.n_states() as u32;
    let nf = factors.len();
    let mut out = GenericField {
        entries: Vec::new(),
        others: Vec::new(),
    };
    let n_inst = elems.len().checked_div(nf).unwrap_or(0);
    for inst in 0..n_inst {
        let el = &elems[inst * nf..(inst + 1) * nf];
        let mut seen: Vec<u32> = Vec::new();
        for f in 0..nf {
            if factors[f].0 != g {
                continue;
            }
            let var = el[f] / k_states;
            if seen.contains(&var) {
                continue;
            }
            seen.push(var);
            // factors on this variable: their elements and total power
            let on_var: Vec<usize> = (0..nf)
                .filter(|&f2| factors[f2].0 == g && el[f2] / k_states == var)
                .collect();
            let power: u32 = on_var.iter().map(|&f2| factors[f2].1).sum();
            let target = el[f];
            let kind = match grp.domain {
                Domain::Binary => EntryKind::Field,
                Domain::Spin if power % 2 == 1 => EntryKind::Field,
                Domain::Spin => EntryKind::Offset,
                Domain::Categorical => {
                    // x[c] * x[c'] is zero for c != c': the instance never fires
                    if on_var.iter().any(|&f2| el[f2] != target) {
                        continue;
                    }
                    EntryKind::Field
                }
                Domain::Real => match power {
                    1 => EntryKind::Field,
                    2 => EntryKind::Precision,
                    p => unreachable!("sema/derive keep real powers at 1 or 2, got {p}"),
                },
            };
            let start = out.others.len() as u32;
            for f2 in 0..nf {
                if !on_var.contains(&f2) {
                    out.others.push(Other {
                        group: factors[f2].0,
                        elem: el[f2],
                        power: factors[f2].1,
                    });
                }
            }
            out.entries.push(Entry {
                target,
                kind,
                inst: inst as u32,
                start,
                end: out.others.len() as u32,
            });
        }
    }
    out
}
