//! Checking a user's `schedule { .. }`: every block must be conditionally independent given
//! the rest, `| given` must not leave out a coupled group, and every unit must be covered.
//!
//! Invariant: a schedule that passes (no error) is a valid Gibbs (or coordinate-ascent
//! mean-field) schedule in the sense of `Structure`'s docs.

use super::graph::{Cause, Graph};
use super::incidence::{
    for_each_arg_assignment, lognorm_outer_assignments, lognorm_rest_vars, term_instance_vars,
    var_name,
};
use super::pretty::term_str;
use super::VarRef;
use crate::diag::{Diagnostic, Span};
use crate::ir::eval::for_each_assignment;
use crate::ir::{GroupId, Model, Role, ScheduleKind, ScheduleStep, TermId, UserSchedule};

/// A readable name for what caused an interaction, and its span.
pub fn cause_str(model: &Model, c: Cause) -> (String, Span) {
    match c {
        Cause::Term(t) => {
            let t = &model.terms[t];
            (format!("term `{}`", term_str(model, t, "*")), t.span)
        }
        Cause::LogNorm(l) => {
            let l = &model.lognorms[l];
            let who = match l.origin {
                crate::ir::Origin::Directed(d) => format!(
                    " of the conditional of `{}`",
                    model.group(model.directed[d.idx()].child).name
                ),
                crate::ir::Origin::Energy => String::new(),
            };
            (format!("the log-normaliser{who}"), l.span)
        }
    }
}

/// The first instance (terms first, in order) holding two distinct variables that both satisfy
/// `inside`, with those two variables.
pub fn first_coupling(
    model: &Model,
    inside: &dyn Fn(VarRef) -> bool,
) -> Option<(Cause, VarRef, VarRef)> {
    let pick = |vs: &[VarRef]| -> Option<(VarRef, VarRef)> {
        let ins: Vec<VarRef> = vs.iter().copied().filter(|v| inside(*v)).collect();
        (ins.len() >= 2).then(|| (ins[0], ins[1]))
    };
    for (ti, t) in model.terms.iter().enumerate() {
        if t.units.len() < 2 {
            continue;
        }
        let mut found = None;
        for_each_assignment(&t.vars, |a| {
            if found.is_none() {
                found = pick(&term_instance_vars(model, TermId(ti as u32), a));
            }
        });
        if let Some((x, y)) = found {
            return Some((Cause::Term(ti), x, y));
        }
    }
    for (li, l) in model.lognorms.iter().enumerate() {
        let mut found = None;
        for_each_assignment(&lognorm_rest_vars(l), |r| {
            if found.is_some() {
                return;
            }
            let mut vs = Vec::new();
            for outer in lognorm_outer_assignments(l, r) {
                for t in &l.arg {
                    for_each_arg_assignment(&outer, &t.vars, |a| {
                        vs.extend(t.units.iter().map(|u| model.var_of(u, a)))
                    });
                }
            }
            vs.sort();
            vs.dedup();
            found = pick(&vs);
        });
        if let Some((x, y)) = found {
            return Some((Cause::LogNorm(li), x, y));
        }
    }
    None
}

fn names(model: &Model, gs: &[GroupId]) -> String {
    let ns: Vec<&str> = gs.iter().map(|g| model.group(*g).name.as_str()).collect();
    if ns.len() == 1 {
        ns[0].to_string()
    } else {
        format!("{{{}}}", ns.join(", "))
    }
}

/// `sample {v, h1}`, `sample h1 | v`, `update h1`.
pub fn step_str(model: &Model, kind: ScheduleKind, step: &ScheduleStep) -> String {
    let verb = match kind {
        ScheduleKind::Gibbs => "sample",
        ScheduleKind::MeanField { .. } => "update",
    };
    let mut s = format!("{verb} {}", names(model, &step.groups));
    if !step.given.is_empty() {
        s.push_str(&format!(" | {}", names(model, &step.given)));
    }
    s
}

/// Checks one user schedule. Gibbs blocks that are not conditionally independent are errors;
/// for mean field they are warnings (a parallel update of coupled units is not coordinate
/// ascent and may oscillate, but damping can make it work).
pub fn check_user_schedule(model: &Model, graph: &Graph, us: &UserSchedule) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let gibbs = us.kind == ScheduleKind::Gibbs;
    for step in &us.steps {
        let what = step_str(model, us.kind, step);
        // Mean field clamps visible groups, so only hidden units of a step can clash.
        let inside = |v: VarRef| {
            step.groups.contains(&v.group) && (gibbs || model.group(v.group).role == Role::Hidden)
        };
        if let Some((cause, x, y)) = first_coupling(model, &inside) {
            let (cs, span) = cause_str(model, cause);
            let msg = format!(
                "`{what}` is not a valid block: {cs} couples {} and {}",
                var_name(model, x),
                var_name(model, y)
            );
            let d = if gibbs {
                Diagnostic::error("E0401", step.span, msg)
            } else {
                Diagnostic::warning("E0401", step.span, msg)
            };
            diags.push(
                d.with_label(span, "this couples them")
                    .with_hint("split the block into steps whose units share no term"),
            );
        }
        if !gibbs {
            for g in &step.groups {
                if model.group(*g).role == Role::Visible {
                    diags.push(
                        Diagnostic::warning(
                            "E0404",
                            step.span,
                            format!(
                                "`{what}` updates visible `{}`, which mean field keeps clamped to the data",
                                model.group(*g).name
                            ),
                        )
                        .with_label(model.group(*g).span, "declared visible here")
                        .with_hint("mean-field steps should name hidden groups only"),
                    );
                }
            }
        }
        if !step.given.is_empty() {
            for h in model.group_ids() {
                if step.groups.contains(&h) || step.given.contains(&h) {
                    continue;
                }
                let coupled = step
                    .groups
                    .iter()
                    .find_map(|b| graph.group_cause[b.idx()][h.idx()].map(|c| (*b, c)));
                if let Some((b, cause)) = coupled {
                    let (cs, span) = cause_str(model, cause);
                    diags.push(
                        Diagnostic::error(
                            "E0403",
                            step.span,
                            format!(
                                "`{what}` leaves out `{}`, but {cs} couples `{}` and `{}`",
                                model.group(h).name,
                                model.group(b).name,
                                model.group(h).name
                            ),
                        )
                        .with_label(span, "this couples them")
                        .with_hint(format!(
                            "add `{}` after `|`, or drop the `|` part to condition on everything else",
                            model.group(h).name
                        )),
                    );
                }
            }
        }
    }
    for g in model.group_ids() {
        let needed = gibbs || model.group(g).role == Role::Hidden;
        if needed && !us.steps.iter().any(|s| s.groups.contains(&g)) {
            let verb = if gibbs { "samples" } else { "updates" };
            diags.push(
                Diagnostic::error(
                    "E0402",
                    us.span,
                    format!("the schedule never {verb} `{}`", model.group(g).name),
                )
                .with_label(model.group(g).span, "declared here")
                .with_hint(format!(
                    "add a step for `{}`, or remove the schedule to let ebmc derive one",
                    model.group(g).name
                )),
            );
        }
    }
    diags
}
