//! Symbolic pieces of `explain`: local fields, precisions and gradient statistics printed as
//! sums over index vars, with the unit's own index vars renamed to one canonical set per group
//! so every contribution to `z_h[j]` reads in terms of the same `j`.
//!
//! Invariant: what is printed is the same sum the Plan defines (each contribution is one
//! (term, slot) pair of a `FieldTerm`); nothing here decides anything.

use crate::analysis::pretty::{coef_str, term_str, unit_str};
use crate::derive::{coef_deriv, linear_factor, Conditional, FieldTerm};
use crate::ir::{Coef, GroupId, IndexVar, Model, ParamId, Term};

/// Canonical index names for a group's axes, taken from the first field or precision term
/// whose slot is indexed by bare vars, else `i, j, k, ..`.
pub fn canon_names(model: &Model, c: &Conditional) -> Vec<String> {
    let rank = model.group(c.group).shape.len();
    for ft in c.field.iter().chain(&c.precision) {
        let t = &model.terms[ft.term.idx()];
        let u = &t.units[ft.slots[0]];
        let bare: Option<Vec<String>> = u
            .index
            .iter()
            .map(|a| a.as_var().map(|v| t.vars[v as usize].name.clone()))
            .collect();
        if let Some(b) = bare {
            let mut d = b.clone();
            d.dedup();
            if d.len() == b.len() {
                return b;
            }
        }
    }
    ["i", "j", "k", "l", "m", "n"]
        .iter()
        .cycle()
        .take(rank)
        .map(|s| s.to_string())
        .collect()
}

/// `h[j]` with canonical names.
pub fn unit_canon(model: &Model, g: GroupId, names: &[String]) -> String {
    if names.is_empty() {
        model.group(g).name.clone()
    } else {
        format!("{}[{}]", model.group(g).name, names.join(", "))
    }
}

/// One contribution of `(term, slot)` to `-(sum of the term's value with the slot factor
/// removed)`, e.g. `Σ_i v[i]·W[i, j]`. Returns a signed string (`-…` or plain).
fn contribution(model: &Model, t: &Term, slot: usize, names: &[String], negate: bool) -> String {
    if !t.units[slot].index.iter().all(|a| a.as_var().is_some()) {
        if let Some(t2) = invert_slot(model, t, slot) {
            return contribution(model, &t2, slot, names, negate);
        }
    }
    let u = &t.units[slot];
    let mut vars: Vec<IndexVar> = t.vars.clone();
    let mut bound = vec![false; vars.len()];
    let mut cond = String::new();
    let all_bare = u.index.iter().all(|a| a.as_var().is_some());
    if all_bare {
        for (ax, a) in u.index.iter().enumerate() {
            let v = a.as_var().expect("bare") as usize;
            vars[v].name = names[ax].clone();
            bound[v] = true;
        }
    }
    // Free vars that clash with a canonical name get a prime.
    for k in 0..vars.len() {
        if !bound[k] && names.contains(&vars[k].name) {
            vars[k].name.push('\'');
        }
    }
    if !all_bare {
        cond = format!(
            ": {} = {}",
            unit_str(model, u, &vars),
            unit_canon(model, u.group, names)
        );
    }
    let mut rest = t.clone();
    rest.vars = vars.clone();
    rest.units.remove(slot);
    if negate {
        rest.coef = Coef::Neg(Box::new(rest.coef));
    }
    let body = term_str(model, &rest, "·");
    let free: Vec<&str> = (0..vars.len())
        .filter(|&k| !bound[k])
        .map(|k| vars[k].name.as_str())
        .collect();
    if free.is_empty() {
        body
    } else {
        let (sign, b) = match body.strip_prefix('-') {
            Some(b) => ("-", b.to_string()),
            None => ("", body.clone()),
        };
        let sub = sum_sub(&free);
        format!("{sign}{sub}{cond} {b}")
    }
}

/// Joins signed parts: `a + b - c`.
pub fn join_signed(parts: &[String]) -> String {
    let mut s = String::new();
    for (k, p) in parts.iter().enumerate() {
        match (k, p.strip_prefix('-')) {
            (0, _) => s.push_str(p),
            (_, Some(rest)) => {
                s.push_str(" - ");
                s.push_str(rest);
            }
            (_, None) => {
                s.push_str(" + ");
                s.push_str(p);
            }
        }
    }
    if s.is_empty() {
        "0".into()
    } else {
        s
    }
}

fn slot_contribs(
    model: &Model,
    fts: &[FieldTerm],
    names: &[String],
    negate: bool,
    power: Option<u32>,
) -> Vec<String> {
    let mut parts = Vec::new();
    for ft in fts {
        let t = &model.terms[ft.term.idx()];
        for &s in &ft.slots {
            if power.is_some_and(|p| t.units[s].power != p) {
                continue;
            }
            parts.push(contribution(model, t, s, names, negate));
        }
    }
    parts
}

/// The local field `z` of a conditional as a sum (linear terms, one part per slot).
pub fn field_str(model: &Model, c: &Conditional, names: &[String]) -> String {
    let real = model.group(c.group).domain == crate::ir::Domain::Real;
    join_signed(&slot_contribs(
        model,
        &c.field,
        names,
        true,
        real.then_some(1),
    ))
}

/// `beta` of a Gaussian conditional: `2·(sum of the squares' coefficients)`.
pub fn precision_str(model: &Model, c: &Conditional, names: &[String]) -> String {
    let parts = slot_contribs(model, &c.precision, names, false, Some(2));
    let mut lateral = Vec::new();
    for ft in &c.precision {
        if ft.slots.len() > 1 {
            lateral.push(term_str(model, &model.terms[ft.term.idx()], "·"));
        }
    }
    let mut s = format!("2·({})", join_signed(&parts));
    if !lateral.is_empty() {
        s.push_str(&format!(
            " + the diagonal instances of {}",
            lateral.join(", ")
        ));
    }
    s
}

/// `∂E/∂θ` as a sum over the terms that mention θ: one part per distinct index expression of θ
/// in a term (the product rule), with the index vars renamed to one head `θ[i, j]`. Linear
/// coefficients print the statistic (`-v[i]·h[j]`), others the symbolic derivative.
pub fn grad_str(
    model: &Model,
    p: ParamId,
    terms: &[crate::ir::TermId],
    negate: bool,
) -> (String, String) {
    let pname = &model.param(p).name;
    let rank = model.param(p).shape.len();
    // Canonical names: the first bare index of θ in any term, else i, j, k, ...
    let mut canon: Option<Vec<String>> = None;
    for tid in terms {
        let t = &model.terms[tid.idx()];
        let mut idxs = Vec::new();
        param_indices(&t.coef, p, &mut idxs);
        for idx in idxs {
            if canon.is_none() && idx.iter().all(|a| a.as_var().is_some()) {
                let ns: Vec<String> = idx
                    .iter()
                    .map(|a| t.vars[a.as_var().expect("bare") as usize].name.clone())
                    .collect();
                let mut d = ns.clone();
                d.sort();
                d.dedup();
                if d.len() == ns.len() {
                    canon = Some(ns);
                }
            }
        }
    }
    let canon = canon.unwrap_or_else(|| {
        ["i", "j", "k", "l", "m", "n"]
            .iter()
            .cycle()
            .take(rank)
            .map(|s| s.to_string())
            .collect()
    });
    let head = if rank == 0 {
        pname.clone()
    } else {
        format!("{pname}[{}]", canon.join(", "))
    };
    let mut parts = Vec::new();
    for tid in terms {
        let t = &model.terms[tid.idx()];
        let mut idxs = Vec::new();
        param_indices(&t.coef, p, &mut idxs);
        for idx in idxs {
            parts.push(grad_part(model, t, p, &idx, &canon, negate));
        }
    }
    (head, join_signed(&parts))
}

/// One product-rule part: the derivative through the occurrences of θ indexed by `idx`.
fn grad_part(
    model: &Model,
    t: &Term,
    p: ParamId,
    idx: &[crate::ir::Affine],
    canon: &[String],
    negate: bool,
) -> String {
    let mut vars = t.vars.clone();
    let mut bound = vec![false; vars.len()];
    let bare = idx.iter().all(|a| a.as_var().is_some());
    if bare {
        for (ax, a) in idx.iter().enumerate() {
            let v = a.as_var().expect("bare") as usize;
            vars[v].name = canon[ax].clone();
            bound[v] = true;
        }
        for k in 0..vars.len() {
            if !bound[k] && canon.contains(&vars[k].name) {
                vars[k].name.push('\'');
            }
        }
    }
    let mut m = Term {
        vars: vars.clone(),
        units: t.units.clone(),
        coef: Coef::Const(1.0),
        origin: t.origin,
        span: t.span,
    };
    let sign = |c: Coef| if negate { Coef::Neg(Box::new(c)) } else { c };
    let body = match (linear_factor(&t.coef, p), coef_deriv(&t.coef, p, idx)) {
        (Some(k), _) => {
            m.coef = sign(Coef::Const(k));
            term_str(model, &m, "·")
        }
        (None, Some(d)) => {
            m.coef = sign(d);
            term_str(model, &m, "·")
        }
        (None, None) => format!(
            "{}∂({})/∂{} · {}",
            if negate { "-" } else { "" },
            coef_str(model, &t.coef, &vars, "·"),
            model.param(p).name,
            term_str(model, &m, "·")
        ),
    };
    let free: Vec<&str> = (0..vars.len())
        .filter(|&k| !bound[k])
        .map(|k| vars[k].name.as_str())
        .collect();
    if free.is_empty() || !bare {
        return body;
    }
    match body.strip_prefix('-') {
        Some(b) => format!("-{} {b}", sum_sub(&free)),
        None => format!("{} {body}", sum_sub(&free)),
    }
}

/// Distinct index expressions of `p` in a coefficient, in order of appearance.
fn param_indices(c: &Coef, p: ParamId, out: &mut Vec<Vec<crate::ir::Affine>>) {
    match c {
        Coef::Param { param, index } if *param == p => {
            if !out.contains(index) {
                out.push(index.clone())
            }
        }
        Coef::Param { .. } | Coef::Const(_) => {}
        Coef::Add(xs) | Coef::Mul(xs) => xs.iter().for_each(|x| param_indices(x, p, out)),
        Coef::Div(a, b) => {
            param_indices(a, p, out);
            param_indices(b, p, out)
        }
        Coef::Powi(a, _) | Coef::Neg(a) | Coef::Func(_, a) => param_indices(a, p, out),
    }
}

/// Rewrites a term so that the factor at `slot` is indexed by bare vars, when each of its axes
/// is `(v + c) % n` with `n` the axis length and `v` a var of extent `n` used on no other axis
/// (a bijection, as on a periodic lattice): then `v = (v' - c) % n` is substituted everywhere.
/// `None` when some other index cannot be rewritten exactly.
fn invert_slot(model: &Model, t: &Term, slot: usize) -> Option<Term> {
    use crate::ir::Affine;
    let u = &t.units[slot];
    let shape = &model.group(u.group).shape;
    // var -> (offset c, modulo n)
    let mut sub: Vec<Option<(i64, i64)>> = vec![None; t.vars.len()];
    for (ax, a) in u.index.iter().enumerate() {
        let n = shape[ax] as i64;
        match (&a.coeffs[..], a.modulo) {
            ([(v, 1)], None) if a.offset == 0 => {}
            ([(v, 1)], Some(m)) if m == n && t.vars[*v as usize].extent as i64 == n => {
                if sub[*v as usize].is_some() {
                    return None;
                }
                sub[*v as usize] = Some((a.offset, n));
            }
            _ => return None,
        }
    }
    let rewrite = |a: &Affine| -> Option<Affine> {
        let touched: Vec<&(u32, i64)> = a
            .coeffs
            .iter()
            .filter(|(v, _)| sub[*v as usize].is_some())
            .collect();
        match touched[..] {
            [] => Some(a.clone()),
            [&(v, 1)] if a.coeffs.len() == 1 => {
                let (c, n) = sub[v as usize].expect("substituted");
                if a.modulo.is_some_and(|m| m != n) || (a.modulo.is_none() && a.offset != 0) {
                    return None;
                }
                let off = (a.offset - c).rem_euclid(n);
                Some(Affine {
                    coeffs: vec![(v, 1)],
                    offset: if off == 0 { 0 } else { off - n },
                    modulo: (off != 0).then_some(n),
                })
            }
            _ => None,
        }
    };
    fn map_coef(
        c: &Coef,
        f: &dyn Fn(&crate::ir::Affine) -> Option<crate::ir::Affine>,
    ) -> Option<Coef> {
        Some(match c {
            Coef::Const(x) => Coef::Const(*x),
            Coef::Param { param, index } => Coef::Param {
                param: *param,
                index: index.iter().map(f).collect::<Option<Vec<_>>>()?,
            },
            Coef::Add(xs) => Coef::Add(xs.iter().map(|x| map_coef(x, f)).collect::<Option<_>>()?),
            Coef::Mul(xs) => Coef::Mul(xs.iter().map(|x| map_coef(x, f)).collect::<Option<_>>()?),
            Coef::Div(a, b) => Coef::Div(Box::new(map_coef(a, f)?), Box::new(map_coef(b, f)?)),
            Coef::Powi(a, n) => Coef::Powi(Box::new(map_coef(a, f)?), *n),
            Coef::Neg(a) => Coef::Neg(Box::new(map_coef(a, f)?)),
            Coef::Func(g, a) => Coef::Func(*g, Box::new(map_coef(a, f)?)),
        })
    }
    let mut t2 = t.clone();
    for (k, w) in t2.units.iter_mut().enumerate() {
        w.index = if k == slot {
            w.index.iter().map(|a| Affine::var(a.coeffs[0].0)).collect()
        } else {
            w.index.iter().map(&rewrite).collect::<Option<Vec<_>>>()?
        };
    }
    t2.coef = map_coef(&t.coef, &rewrite)?;
    Some(t2)
}

/// `Σ_i` or `Σ_{i,k}`.
pub fn sum_sub(free: &[&str]) -> String {
    if free.len() == 1 {
        format!("Σ_{}", free[0])
    } else {
        format!("Σ_{{{}}}", free.join(","))
    }
}
