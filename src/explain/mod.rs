//! `explain`: renders a model and its Plan as readable math (text) or as JSON: units, energy,
//! interaction graph, blocks and why, conditionals, free energy, mean field, gradients and
//! Markov blankets.
//!
//! Invariant: deterministic output (arena order only, no hash-map order); nothing printed
//! here, the CLI writes the returned string.

pub mod math;

use crate::analysis::pretty::{coef_str, term_str};
use crate::analysis::user::cause_str;
use crate::analysis::{Schedule, Structure};
use crate::derive::{Conditional, Family, Plan};
use crate::ir::{Domain, GroupId, LogNorm, LogNormKind, Model, Role};
use math::{canon_names, field_str, grad_str, join_signed, precision_str, sum_sub, unit_canon};
use serde_json::{json, Value};
use std::fmt::Write;

fn domain_str(d: Domain) -> &'static str {
    match d {
        Domain::Binary => "binary {0, 1}",
        Domain::Spin => "spin {-1, +1}",
        Domain::Real => "real",
        Domain::Categorical => "categorical (one-hot over the last axis)",
    }
}

fn shape_str(s: &[usize]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(
            "[{}]",
            s.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// A term with its sum prefix: `Σ_{i,j} -v[i]·W[i, j]·h[j]` (sign first).
pub fn summed_term(model: &Model, t: &crate::ir::Term, skip: usize) -> String {
    let body = term_str(model, t, "·");
    let free: Vec<&str> = t.vars[skip..].iter().map(|v| v.name.as_str()).collect();
    if free.is_empty() {
        return body;
    }
    match body.strip_prefix('-') {
        Some(b) => format!("-{} {b}", sum_sub(&free)),
        None => format!("{} {body}", sum_sub(&free)),
    }
}

/// `Σ_i softplus(c0[i] + Σ_j W[i, j]·h[j])`.
pub fn lognorm_str(model: &Model, l: &LogNorm) -> String {
    let n = l.outer.len();
    let arg: Vec<String> = l.arg.iter().map(|t| summed_term(model, t, n)).collect();
    let arg = join_signed(&arg);
    let (f, outer): (String, Vec<&str>) = match l.kind {
        LogNormKind::Softplus => (
            format!("softplus({arg})"),
            l.outer.iter().map(|v| v.name.as_str()).collect(),
        ),
        LogNormKind::LogSumExp { state_var } => (
            format!("logsumexp_{}({arg})", l.outer[state_var as usize].name),
            l.outer
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != state_var as usize)
                .map(|(_, v)| v.name.as_str())
                .collect(),
        ),
    };
    if outer.is_empty() {
        f
    } else {
        format!("{} {f}", sum_sub(&outer))
    }
}

fn group_names(model: &Model, gs: &[GroupId]) -> String {
    if gs.is_empty() {
        return "none".into();
    }
    gs.iter()
        .map(|g| model.group(*g).name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn schedule_lines(model: &Model, s: &Schedule) -> Vec<String> {
    let single = |k: usize| -> Option<(GroupId, usize)> {
        match &s.blocks[k].members[..] {
            [m] => match m.elems.as_deref() {
                Some([e]) => Some((m.group, *e)),
                _ => None,
            },
            _ => None,
        }
    };
    let name = |g: GroupId, var: usize| {
        crate::analysis::var_name(model, crate::analysis::VarRef { group: g, var })
    };
    let mut out = Vec::new();
    let mut k = 0;
    while k < s.blocks.len() {
        // A run of single-site blocks of one group prints as one line.
        if let Some((g, first)) = single(k) {
            let mut end = k + 1;
            while end < s.blocks.len() && single(end).is_some_and(|(h, _)| h == g) {
                end += 1;
            }
            if end - k > 3 {
                let (_, last) = single(end - 1).expect("run of single sites");
                out.push(format!(
                    "{}–{}. {{{}}}, …, {{{}}}: one variable of `{}` at a time ({} blocks)",
                    k + 1,
                    end,
                    name(g, first),
                    name(g, last),
                    model.group(g).name,
                    end - k
                ));
                k = end;
                continue;
            }
        }
        let ms: Vec<String> = s.blocks[k]
            .members
            .iter()
            .map(|m| {
                let g = model.group(m.group);
                match &m.elems {
                    None => format!("{} (all {})", g.name, g.n_vars()),
                    Some(e) if e.len() == 1 => name(m.group, e[0]),
                    Some(e) => format!("{} ({} of {} variables)", g.name, e.len(), g.n_vars()),
                }
            })
            .collect();
        out.push(format!("{}. {{{}}}", k + 1, ms.join(", ")));
        k += 1;
    }
    out
}

/// Lines describing one conditional.
pub fn conditional_lines(model: &Model, c: &Conditional) -> Vec<String> {
    let g = model.group(c.group);
    let names = canon_names(model, c);
    let u = unit_canon(model, c.group, &names);
    let zname = format!("z_{u}");
    let z = field_str(model, c, &names);
    let mut out = vec![format!(
        "{} ({}, {:?})",
        g.name,
        domain_str(g.domain),
        c.family
    )];
    match c.family {
        Family::Bernoulli => {
            out.push(format!("p({u} = 1 | rest) = σ({zname})"));
            out.push(format!("{zname} = {z}"));
        }
        Family::Spin => {
            out.push(format!(
                "p({u} = +1 | rest) = σ(2·{zname}),  E[{u} | rest] = tanh({zname})"
            ));
            out.push(format!("{zname} = {z}"));
        }
        Family::Softmax => {
            let c_ax = names.last().cloned().unwrap_or_else(|| "c".into());
            let var = unit_canon(model, c.group, &names[..names.len().saturating_sub(1)]);
            out.push(format!(
                "p({var} = e_{c_ax} | rest) = softmax over {c_ax} of {zname}"
            ));
            out.push(format!("{zname} = {z}"));
        }
        Family::Gaussian => {
            out.push(format!("{u} | rest ~ N({zname} / β_{u}, 1 / β_{u})"));
            out.push(format!("{zname} = {z}"));
            out.push(format!("β_{u} = {}", precision_str(model, c, &names)));
        }
        Family::Enumerate => {
            let states = match g.domain {
                Domain::Binary => "x ∈ {0, 1}",
                Domain::Spin => "x ∈ {-1, +1}",
                _ => "x over the states",
            };
            out.push(format!(
                "p({u} = x | rest) ∝ exp(x·{zname} - [the normalisers below at {u} = x]),  {states}"
            ));
            out.push(format!("{zname} = {z}"));
            for l in &c.lognorms {
                let l = &model.lognorms[l.idx()];
                out.push(format!("normaliser: {}", lognorm_str(model, l)));
            }
            out.push(
                "not a sigmoid of a linear field: each child's softplus couples its parents \
                 (explaining away), so the co-parents of every child are in the blanket"
                    .into(),
            );
        }
    }
    out
}

fn free_energy_lines(model: &Model, plan: &Plan) -> Vec<String> {
    let fe = &plan.free_energy;
    let mut parts: Vec<String> = fe
        .kept_terms
        .iter()
        .map(|t| summed_term(model, &model.terms[t.idx()], 0))
        .collect();
    parts.extend(model.lognorms.iter().map(|l| lognorm_str(model, l)));
    for &g in &fe.summed {
        let c = &plan.conditionals[g.idx()];
        let names = canon_names(model, c);
        let u = unit_canon(model, g, &names);
        let ax: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let a = match c.family {
            Family::Bernoulli => format!("softplus(z_{u})"),
            Family::Spin => format!("log(2·cosh(z_{u}))"),
            Family::Softmax => format!("logsumexp(z_{u})"),
            Family::Gaussian => format!("(z_{u}^2 / (2·β_{u}) + log(2π / β_{u}) / 2)"),
            Family::Enumerate => unreachable!("enumerate groups are never summed"),
        };
        let ax = match c.family {
            Family::Softmax => &ax[..ax.len().saturating_sub(1)],
            _ => &ax[..],
        };
        parts.push(if ax.is_empty() {
            format!("-{a}")
        } else {
            format!("-{} {a}", sum_sub(ax))
        });
    }
    let kept: Vec<GroupId> = fe.kept_groups.clone();
    vec![
        format!("F({}) = {}", group_names(model, &kept), join_signed(&parts)),
        format!("why: {}", fe.reason),
    ]
}

fn gradient_lines(model: &Model, plan: &Plan) -> Vec<String> {
    let mut out = vec![
        "∂ log p(v)/∂θ = -⟨∂E/∂θ⟩_data + ⟨∂E/∂θ⟩_model  (positive phase: hidden units given the \
         data; negative phase: the model's joint)"
            .to_string(),
    ];
    for gs in &plan.gradients {
        let (head, e) = grad_str(model, gs.param, &gs.terms, false);
        let mut line = format!("∂E/∂{head} = {e}");
        for l in &gs.lognorms {
            let l = &model.lognorms[l.idx()];
            let w = match l.kind {
                LogNormKind::Softplus => "σ(arg)",
                LogNormKind::LogSumExp { .. } => "softmax(arg)",
            };
            line.push_str(&format!(
                " + {w}·∂arg/∂{} of {}",
                model.param(gs.param).name,
                lognorm_str(model, l)
            ));
        }
        out.push(line);
        if gs.lognorms.is_empty() {
            let (_, phi) = grad_str(model, gs.param, &gs.terms, true);
            out.push(format!(
                "  ∂ log p(v)/∂{head} = ⟨{phi}⟩_data - ⟨{phi}⟩_model"
            ));
        }
    }
    let fe = &plan.free_energy;
    if !fe.summed.is_empty() {
        let ms: Vec<String> = fe
            .summed
            .iter()
            .map(|g| {
                let c = &plan.conditionals[g.idx()];
                let u = unit_canon(model, *g, &canon_names(model, c));
                let mean = match c.family {
                    Family::Bernoulli => format!("σ(z_{u})"),
                    Family::Spin => format!("tanh(z_{u})"),
                    Family::Softmax => format!("softmax(z_{u})"),
                    _ => format!("z_{u} / β_{u}"),
                };
                format!("{u} → E[{u} | rest] = {mean}")
            })
            .collect();
        out.push(format!(
            "positive phase: summed-out units are replaced by their conditional means: {}",
            ms.join("; ")
        ));
    }
    let others: Vec<GroupId> = fe
        .kept_groups
        .iter()
        .copied()
        .filter(|g| model.group(*g).role == Role::Hidden)
        .collect();
    if !others.is_empty() {
        out.push(format!(
            "positive phase: {} sampled with the visible units clamped (or their mean-field means)",
            group_names(model, &others)
        ));
    }
    out
}

fn structure_lines(model: &Model, st: &Structure) -> Vec<String> {
    let mut out = Vec::new();
    let graph = crate::analysis::graph::Graph::new(model);
    for a in model.group_ids() {
        for b in model.group_ids().filter(|b| *b >= a) {
            if let Some(c) = graph.group_cause[a.idx()][b.idx()] {
                let (cs, _) = cause_str(model, c);
                let (na, nb) = (&model.group(a).name, &model.group(b).name);
                out.push(if a == b {
                    format!("{na} – {nb}  (self-interaction) via {cs}")
                } else {
                    format!("{na} – {nb}  via {cs}")
                });
            }
        }
    }
    if out.is_empty() {
        out.push("no interactions: every unit is independent".into());
    }
    let _ = st;
    out
}

fn section(s: &mut String, title: &str, lines: &[String]) {
    let _ = writeln!(s, "\n{title}");
    for l in lines {
        let _ = writeln!(s, "  {l}");
    }
}

/// The whole explanation as text.
pub fn explain_text(model: &Model, plan: &Plan) -> String {
    let j = explain_sections(model, plan);
    let mut s = format!("model {}\n", model.name);
    for l in model.doc.lines() {
        let _ = writeln!(s, "  {}", l.trim());
    }
    for (title, key) in SECTIONS {
        let lines: Vec<String> = j[*key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        section(&mut s, title, &lines);
    }
    s
}

const SECTIONS: &[(&str, &str)] = &[
    ("units", "units"),
    ("parameters", "parameters"),
    (
        "energy (exp(-E) is the unnormalised density; sums run over every index value as written)",
        "energy",
    ),
    ("interaction graph", "interactions"),
    ("gibbs schedule", "schedule"),
    ("conditionals", "conditionals"),
    ("free energy", "free_energy"),
    ("mean field (visible clamped)", "meanfield"),
    ("gradients", "gradients"),
    ("markov blankets", "blankets"),
];

/// Every section as a list of lines (the text form joins these).
fn explain_sections(model: &Model, plan: &Plan) -> Value {
    let units: Vec<String> = model
        .groups
        .iter()
        .map(|g| {
            let role = match g.role {
                Role::Visible => "visible",
                Role::Hidden => "hidden",
            };
            format!(
                "{}{} : {}, {role}",
                g.name,
                shape_str(&g.shape),
                domain_str(g.domain)
            )
        })
        .collect();
    let parameters: Vec<String> = model
        .params
        .iter()
        .map(|p| {
            let cs: Vec<String> = p
                .constraints
                .iter()
                .map(|c| format!("{c:?}").to_lowercase())
                .collect();
            let mut s = format!("{}{}", p.name, shape_str(&p.shape));
            if !cs.is_empty() {
                s.push_str(&format!(" : {}", cs.join(", ")));
            }
            s
        })
        .collect();
    let mut energy: Vec<String> = model
        .terms
        .iter()
        .map(|t| summed_term(model, t, 0))
        .collect();
    energy.extend(model.lognorms.iter().map(|l| lognorm_str(model, l)));
    let energy: Vec<String> = energy
        .iter()
        .enumerate()
        .map(|(k, e)| match (k, e.strip_prefix('-')) {
            (0, _) => format!("E = {e}"),
            (_, Some(rest)) => format!("    - {rest}"),
            (_, None) => format!("    + {e}"),
        })
        .collect();
    let st = &plan.structure;
    let mut schedule = vec![if st.schedule.user {
        "(the user's schedule, checked)".to_string()
    } else {
        "(derived)".to_string()
    }];
    schedule.extend(schedule_lines(model, &st.schedule));
    schedule.extend(st.reasons.iter().map(|r| format!("why: {r}")));
    let conditionals: Vec<String> = plan
        .conditionals
        .iter()
        .flat_map(|c| {
            conditional_lines(model, c)
                .into_iter()
                .enumerate()
                .map(|(k, l)| if k == 0 { l } else { format!("  {l}") })
        })
        .collect();
    let mf = &plan.meanfield;
    let mut meanfield = vec![format!(
        "{} iterations max, damping {}, tolerance {}",
        mf.iters, mf.damping, mf.tol
    )];
    if mf.supported {
        meanfield.extend(schedule_lines(model, &st.meanfield_schedule));
        meanfield.push(
            "each update: the conditional's mean with every other unit replaced by its mean \
             (σ(z) binary, tanh(z) spin, softmax(z) categorical, z/β Gaussian)"
                .into(),
        );
    }
    meanfield.push(format!("why: {}", mf.reason));
    let blankets: Vec<String> = st
        .blankets
        .iter()
        .map(|b| {
            format!(
                "{}: parents {}; children {}; co-parents {}; undirected neighbours {}; conditional reads {}{}",
                model.group(b.group).name,
                group_names(model, &b.parents),
                group_names(model, &b.children),
                group_names(model, &b.co_parents),
                group_names(model, &b.neighbors),
                group_names(model, &b.blanket),
                if b.self_interacting { "; its own units interact" } else { "" }
            )
        })
        .collect();
    let _ = coef_str;
    json!({
        "units": units,
        "parameters": parameters,
        "energy": energy,
        "interactions": structure_lines(model, st),
        "schedule": schedule,
        "conditionals": conditionals,
        "free_energy": free_energy_lines(model, plan),
        "meanfield": meanfield,
        "gradients": gradient_lines(model, plan),
        "blankets": blankets,
    })
}

/// The explanation as JSON: the same sections as `explain_text` (lists of lines) plus the
/// Plan itself.
pub fn explain_json(model: &Model, plan: &Plan) -> Value {
    let mut j = explain_sections(model, plan);
    j["model"] = json!(model.name);
    // Per-group records by name, so consumers need not resolve ids.
    let groups: Vec<Value> = plan
        .conditionals
        .iter()
        .map(|c| {
            let g = model.group(c.group);
            let b = &plan.structure.blankets[c.group.idx()];
            let names = |gs: &[GroupId]| -> Vec<String> {
                gs.iter().map(|g| model.group(*g).name.clone()).collect()
            };
            json!({
                "name": g.name,
                "shape": g.shape,
                "domain": format!("{:?}", g.domain).to_lowercase(),
                "role": format!("{:?}", g.role).to_lowercase(),
                "family": format!("{:?}", c.family),
                "conditional": conditional_lines(model, c),
                "summed_in_free_energy": plan.free_energy.summed.contains(&c.group),
                "parents": names(&b.parents),
                "children": names(&b.children),
                "co_parents": names(&b.co_parents),
                "neighbors": names(&b.neighbors),
                "self_interacting": b.self_interacting,
            })
        })
        .collect();
    j["groups"] = json!(groups);
    let blocks: Vec<Vec<Value>> = plan
        .structure
        .schedule
        .blocks
        .iter()
        .map(|b| {
            b.members
                .iter()
                .map(|m| json!({"group": model.group(m.group).name, "vars": m.elems}))
                .collect()
        })
        .collect();
    j["blocks"] = json!(blocks);
    j["plan"] = serde_json::to_value(plan).expect("the Plan serialises");
    j
}
