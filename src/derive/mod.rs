//! Derivation: turns an analysed model into a Plan: conditionals, free energy, mean-field
//! updates and gradient statistics (exact semantics in `plan`).
//!
//! Invariant: never panics on a model `sema` accepted; what cannot be derived is a diagnostic
//! (E041x) naming the blocking term, and the Plan is still returned (with the failing group's
//! family set to the closest one) so `explain` can show everything else.

pub mod coef;
mod family;
pub mod local;
pub mod plan;

pub use coef::*;
pub use plan::*;

use crate::analysis::{Structure, VarRef};
use crate::diag::Diagnostic;
use crate::ir::{Constraint, GroupId, LogNormId, Model, Role, ScheduleKind, TermId};

/// Derive a Plan from a model and its structure.
pub fn derive(model: &Model, structure: &Structure) -> (Plan, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut second = false;
    let mut conditionals = Vec::new();
    let mut failed = Vec::new();
    for g in model.group_ids() {
        let (c, d, s) = family::conditional(model, g);
        second |= s;
        failed.push(d.iter().any(|d| d.is_error()));
        diags.extend(d);
        conditionals.push(c);
    }
    let free_energy = free_energy(model, structure, &conditionals, &failed);
    let meanfield = meanfield(model, structure, &conditionals, second);
    let gradients = gradients(model);
    let plan = Plan {
        structure: structure.clone(),
        conditionals,
        free_energy,
        meanfield,
        gradients,
    };
    (plan, diags)
}

/// Groups a log-normaliser's argument mentions.
pub fn lognorm_groups(model: &Model, l: LogNormId) -> Vec<GroupId> {
    let mut gs: Vec<GroupId> = model.lognorms[l.idx()]
        .arg
        .iter()
        .flat_map(|t| t.units.iter().map(|u| u.group))
        .collect();
    gs.sort();
    gs.dedup();
    gs
}

fn free_energy(
    model: &Model,
    structure: &Structure,
    conds: &[Conditional],
    failed: &[bool],
) -> FreeEnergy {
    let mut why_not = Vec::new();
    let mut cands = Vec::new();
    for g in model.group_ids() {
        let gr = model.group(g);
        if gr.role != Role::Hidden {
            continue;
        }
        let c = &conds[g.idx()];
        let blocker = if failed[g.idx()] {
            Some("its conditional could not be derived".to_string())
        } else if c.family == Family::Enumerate {
            Some("it is a parent in a directed conditional (its softplus/log-sum-exp terms do not sum out in closed form)".to_string())
        } else if structure.interacts[g.idx()][g.idx()] {
            Some("its units interact with each other".to_string())
        } else {
            None
        };
        match blocker {
            Some(b) => why_not.push(format!("`{}` is not summed: {b}", gr.name)),
            None => cands.push(g),
        }
    }
    // The heaviest set of mutually non-interacting candidates (ties: the lexicographically
    // smallest list of group ids), exhaustively for up to 16 candidates, greedily beyond.
    let weight = |s: &[GroupId]| -> usize { s.iter().map(|g| model.group(*g).n_vars()).sum() };
    let independent = |s: &[GroupId]| {
        s.iter().enumerate().all(|(x, a)| {
            s[x + 1..]
                .iter()
                .all(|b| !structure.interacts[a.idx()][b.idx()])
        })
    };
    let mut best: Vec<GroupId> = Vec::new();
    if cands.len() <= 16 {
        for mask in 0u32..(1 << cands.len()) {
            let s: Vec<GroupId> = (0..cands.len())
                .filter(|k| mask & (1 << k) != 0)
                .map(|k| cands[k])
                .collect();
            if !independent(&s) {
                continue;
            }
            let (ws, wb) = (weight(&s), weight(&best));
            if ws > wb || (ws == wb && s < best) {
                best = s;
            }
        }
    } else {
        for &g in &cands {
            let mut s = best.clone();
            s.push(g);
            if independent(&s) {
                best = s;
            }
        }
    }
    for &g in &cands {
        if !best.contains(&g) {
            let by: Vec<&str> = best
                .iter()
                .filter(|b| structure.interacts[g.idx()][b.idx()])
                .map(|b| model.group(*b).name.as_str())
                .collect();
            why_not.push(format!(
                "`{}` is not summed: it interacts with summed {}",
                model.group(g).name,
                by.join(", ")
            ));
        }
    }
    let kept_groups: Vec<GroupId> = model.group_ids().filter(|g| !best.contains(g)).collect();
    let kept_terms: Vec<TermId> = (0..model.terms.len())
        .filter(|&t| {
            model.terms[t]
                .units
                .iter()
                .all(|u| !best.contains(&u.group))
        })
        .map(|t| TermId(t as u32))
        .collect();
    let names: Vec<&str> = best.iter().map(|g| model.group(*g).name.as_str()).collect();
    let mut reason = if best.is_empty() {
        "no hidden group can be summed out in closed form".to_string()
    } else {
        format!(
            "summed out {} ({} variables): mutually non-interacting hidden groups without \
             self-interaction, chosen to sum out the most variables",
            names.join(", "),
            weight(&best)
        )
    };
    for w in why_not {
        reason.push_str("; ");
        reason.push_str(&w);
    }
    FreeEnergy {
        summed: best,
        kept_groups,
        kept_terms,
        reason,
    }
}

fn meanfield(
    model: &Model,
    structure: &Structure,
    conds: &[Conditional],
    second: bool,
) -> MeanField {
    let (mut iters, mut damping, mut tol) = (10, 0.0, 1e-6);
    for us in &model.schedules {
        if let ScheduleKind::MeanField {
            iters: i,
            damping: d,
            tol: t,
        } = us.kind
        {
            (iters, damping, tol) = (i, d, t);
        }
    }
    let blockers: Vec<&str> = model
        .group_ids()
        .filter(|g| {
            model.group(*g).role == Role::Hidden && conds[g.idx()].family == Family::Enumerate
        })
        .map(|g| model.group(g).name.as_str())
        .collect();
    let supported = blockers.is_empty();
    let mut reason = if supported {
        format!(
            "coordinate ascent by block, visible clamped: {}",
            structure.meanfield_schedule.reason
        )
    } else {
        format!(
            "not available: {} take part in directed conditionals, and the expected \
             softplus under a factorised Q has no closed form",
            blockers.join(", ")
        )
    };
    if second {
        reason.push_str(
            "; a term multiplies a unit by the square of a real unit, so the updates need \
             second moments E_Q[x^2] = mean^2 + variance",
        );
    }
    MeanField {
        blocks: structure.meanfield_schedule.blocks.clone(),
        iters,
        damping,
        tol,
        needs_second_moments: second,
        supported,
        reason,
    }
}

fn gradients(model: &Model) -> Vec<GradStat> {
    let mut out = Vec::new();
    for p in model.param_ids() {
        if model.param(p).has(Constraint::Fixed) {
            continue;
        }
        let terms: Vec<TermId> = (0..model.terms.len())
            .filter(|&t| coef_params(&model.terms[t].coef).contains(&p))
            .map(|t| TermId(t as u32))
            .collect();
        let lognorms: Vec<LogNormId> = (0..model.lognorms.len())
            .filter(|&l| {
                model.lognorms[l]
                    .arg
                    .iter()
                    .any(|t| coef_params(&t.coef).contains(&p))
            })
            .map(|l| LogNormId(l as u32))
            .collect();
        let linear = lognorms.is_empty()
            && terms
                .iter()
                .all(|t| linear_factor(&model.terms[t.idx()].coef, p).is_some());
        out.push(GradStat {
            param: p,
            terms,
            lognorms,
            linear,
        });
    }
    out
}

/// The variables of a group, for iteration.
pub fn group_vars(model: &Model, g: GroupId) -> impl Iterator<Item = VarRef> {
    (0..model.group(g).n_vars()).map(move |var| VarRef { group: g, var })
}
