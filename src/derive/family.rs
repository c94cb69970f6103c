//! The Gibbs conditional of one group: which terms feed its field and precision, and which
//! exponential family it is (table of models.md §0.3), with diagnostics for real units whose
//! energy is not a positive quadratic.
//!
//! Invariant: a `Gaussian` conditional without an error diagnostic has, at every state, a
//! positive precision `beta` (a provably positive pure square term plus provably nonnegative
//! other square terms) and total power at most 2 in every instance.

use super::coef::{coef_sign, Sign};
use super::plan::{Conditional, Family, FieldTerm};
use crate::analysis::pretty::term_str;
use crate::diag::Diagnostic;
use crate::ir::eval::for_each_assignment;
use crate::ir::{Domain, GroupId, LogNormId, Model, TermId};

/// (conditional, diagnostics, whether some term needs second moments of a real unit).
pub fn conditional(model: &Model, g: GroupId) -> (Conditional, Vec<Diagnostic>, bool) {
    let gr = model.group(g);
    let mut diags = Vec::new();
    let mut field = Vec::new();
    let mut precision = Vec::new();
    let mut terms = Vec::new();
    let mut second = false;
    for (ti, t) in model.terms.iter().enumerate() {
        let slots: Vec<usize> = (0..t.units.len())
            .filter(|&k| t.units[k].group == g)
            .collect();
        if slots.is_empty() {
            continue;
        }
        let id = TermId(ti as u32);
        terms.push(id);
        let ft = FieldTerm {
            term: id,
            slots: slots.clone(),
        };
        if gr.domain != Domain::Real {
            field.push(ft);
            continue;
        }
        // Total power of each touched variable per instance: 1 -> field, 2 -> precision.
        let (mut has1, mut has2, mut over) = (false, false, 0u32);
        for_each_assignment(&t.vars, |a| {
            if zero_at(model, &t.coef, a) {
                return;
            }
            let mut pw: Vec<(usize, u32)> = Vec::new();
            for &k in &slots {
                let off = model.unit_offset(&t.units[k], a);
                match pw.iter_mut().find(|(o, _)| *o == off) {
                    Some(e) => e.1 += t.units[k].power,
                    None => pw.push((off, t.units[k].power)),
                }
            }
            for (_, p) in pw {
                match p {
                    1 => has1 = true,
                    2 => has2 = true,
                    p => over = over.max(p),
                }
            }
        });
        if over > 2 {
            diags.push(
                Diagnostic::error(
                    "E0412",
                    gr.span,
                    format!(
                        "cannot derive a sampler for real unit `{}`: term `{}` has power {over} in it",
                        gr.name,
                        term_str(model, t, "*")
                    ),
                )
                .with_label(t.span, "not quadratic in this unit")
                .with_hint("a real unit's energy must be a quadratic with positive curvature (Gaussian)"),
            );
        }
        if has2 && t.units.len() > slots.len() {
            second = true;
        }
        if has1 {
            field.push(ft.clone());
        }
        if has2 {
            precision.push(ft);
        }
    }
    let lognorms: Vec<LogNormId> = (0..model.lognorms.len())
        .filter(|&l| {
            model.lognorms[l]
                .arg
                .iter()
                .any(|t| t.units.iter().any(|u| u.group == g))
        })
        .map(|l| LogNormId(l as u32))
        .collect();
    // Real units multiplied into another real unit's square also read its second moment.
    let family = match gr.domain {
        _ if !lognorms.is_empty() && gr.domain != Domain::Real => Family::Enumerate,
        Domain::Binary => Family::Bernoulli,
        Domain::Spin => Family::Spin,
        Domain::Categorical => Family::Softmax,
        Domain::Real => {
            if !lognorms.is_empty() {
                let l = &model.lognorms[lognorms[0].idx()];
                diags.push(
                    Diagnostic::error(
                        "E0411",
                        gr.span,
                        format!(
                            "cannot derive a sampler for real unit `{}`: it is a parent inside a \
                             sigmoid or softmax conditional",
                            gr.name
                        ),
                    )
                    .with_label(l.span, "this conditional's normaliser is not quadratic in it")
                    .with_hint("real parents of directed conditionals are not supported; make the unit binary or undirected"),
                );
            }
            check_positive(model, g, &field, &precision, &mut diags);
            Family::Gaussian
        }
    };
    if family != Family::Gaussian {
        precision.clear();
    }
    let c = Conditional {
        group: g,
        family,
        field,
        precision,
        lognorms: if family == Family::Enumerate {
            lognorms
        } else {
            Vec::new()
        },
        terms,
    };
    (c, diags, second)
}

/// Whether the non-`g` factors of a term are nonnegative at every state.
fn others_nonneg(model: &Model, t: &crate::ir::Term, g: GroupId) -> bool {
    t.units.iter().filter(|u| u.group != g).all(|u| {
        matches!(
            model.group(u.group).domain,
            Domain::Binary | Domain::Categorical
        ) || (model.group(u.group).domain == Domain::Real && u.power % 2 == 0)
    })
}

fn check_positive(
    model: &Model,
    g: GroupId,
    field: &[FieldTerm],
    precision: &[FieldTerm],
    diags: &mut Vec<Diagnostic>,
) {
    let gr = model.group(g);
    let mut pure_positive = false;
    let mut bad = Vec::new();
    for ft in precision {
        let t = &model.terms[ft.term.idx()];
        let s = coef_sign(model, &t.coef);
        let pure = t.units.iter().all(|u| u.group == g);
        let ok_sign = matches!(s, Sign::Positive | Sign::NonNegative);
        if pure && s == Sign::Positive {
            pure_positive = true;
        } else if !(ok_sign && others_nonneg(model, t, g)) {
            bad.push(ft.term);
        }
    }
    if pure_positive && bad.is_empty() {
        return;
    }
    let mut d = Diagnostic::error(
        "E0410",
        gr.span,
        format!(
            "cannot derive a sampler for real unit `{}`: the energy has no positive quadratic term in `{}`",
            gr.name, gr.name
        ),
    );
    if precision.is_empty() {
        for ft in field {
            let t = &model.terms[ft.term.idx()];
            d = d.with_label(
                t.span,
                format!("`{}` is linear in `{}`", term_str(model, t, "*"), gr.name),
            );
        }
        d = d.with_note(format!(
            "without a term like `{}^2 / 2` the density exp(-E) is not normalisable in `{}`",
            gr.name, gr.name
        ));
    } else {
        for t in &bad {
            let t = &model.terms[t.idx()];
            d = d.with_label(
                t.span,
                format!(
                    "the coefficient of `{}^2` in `{}` is not provably positive",
                    gr.name,
                    term_str(model, t, "*")
                ),
            );
        }
        if !pure_positive {
            d = d.with_note(format!(
                "no term of the form `c * {}^2` with a provably positive `c` (a positive constant or a `positive` parameter)",
                gr.name
            ));
        }
    }
    diags.push(d.with_hint(format!(
        "add a positive quadratic term such as `{}[i]^2 / (2 * sigma[i]^2)` with `sigma` declared `positive`",
        gr.name
    )));
}

/// Whether a coefficient is zero at an instance because it is a product with a `zero_diagonal`
/// parameter read on its diagonal (the `i = k` instances of `v[i]*L[i,k]*v[k]`): such instances
/// contribute nothing, in particular no curvature.
fn zero_at(model: &Model, c: &crate::ir::Coef, a: &[usize]) -> bool {
    use crate::ir::{Coef, Constraint};
    match c {
        Coef::Param { param, index } => {
            model.param(*param).has(Constraint::ZeroDiagonal) && index.len() >= 2 && {
                let v0 = index[0].eval(a);
                index.iter().all(|x| x.eval(a) == v0)
            }
        }
        Coef::Const(x) => *x == 0.0,
        Coef::Mul(xs) => xs.iter().any(|x| zero_at(model, x, a)),
        Coef::Neg(x) | Coef::Powi(x, _) => zero_at(model, x, a),
        Coef::Div(x, _) => zero_at(model, x, a),
        Coef::Add(_) | Coef::Func(..) => false,
    }
}
