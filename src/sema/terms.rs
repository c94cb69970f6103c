//! Monomials -> `ir::Term`s: infers every index variable's extent from its bare uses, proves
//! every index in range by interval arithmetic, canonicalises unit powers by domain and
//! renumbers variables per term. Invariant: every `Term` returned satisfies the `ir` module's
//! invariants (indices in range, canonical powers, no repeated factor); a monomial that cannot
//! be made to satisfy them yields a diagnostic and no term.

use super::expand::{IndexUse, Mono};
use crate::diag::{Diagnostic, SourceMap};
use crate::ir::{Affine, Coef, Domain, Group, IndexVar, Origin, Term, UnitFactor};

/// A variable forced to lead a term's `vars` with a known extent (a conditional's child index).
#[derive(Clone, Debug)]
pub struct Lead {
    pub id: u32,
    pub name: String,
    pub extent: usize,
}

pub struct TermBuilder<'a> {
    pub groups: &'a [Group],
    pub var_names: &'a [String],
    pub diags: &'a mut Vec<Diagnostic>,
    pub sources: &'a SourceMap,
}

impl TermBuilder<'_> {
    fn text(&self, s: crate::diag::Span) -> String {
        let f = self.sources.file(s.file);
        f.text
            .get(s.start as usize..s.end as usize)
            .unwrap_or("?")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Builds the term of one monomial; `None` when it vanishes or is invalid.
    pub fn term(&mut self, m: &Mono, lead: &[Lead], origin: Origin) -> Option<Term> {
        let mut m = m.clone();
        if !self.canonicalise(&mut m) {
            return None;
        }
        if m.k == 0.0 {
            return None;
        }
        // Variables in order: leads first, then by first appearance.
        let mut order: Vec<u32> = lead.iter().map(|l| l.id).collect();
        for u in &m.uses {
            for &(v, _) in &u.aff.coeffs {
                if !order.contains(&v) {
                    order.push(v);
                }
            }
        }
        let mut vars = Vec::with_capacity(order.len());
        let mut ok = true;
        for &v in &order {
            match self.extent(v, &m.uses, lead) {
                Some(e) => vars.push(IndexVar {
                    name: self.var_names[v as usize].clone(),
                    extent: e,
                }),
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        let ext = |v: u32| vars[order.iter().position(|&x| x == v).expect("var in order")].extent;
        for u in &m.uses {
            if u.aff.as_var().is_none() && !self.in_range(u, &ext) {
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        let map = |v: u32| order.iter().position(|&x| x == v).expect("var in order") as u32;
        let units = m
            .units
            .iter()
            .map(|u| UnitFactor {
                group: u.group,
                index: u.index.iter().map(|a| remap(a, &map)).collect(),
                power: u.power,
            })
            .collect();
        Some(Term {
            vars,
            units,
            coef: remap_coef(&m.coef(), &map),
            origin,
            span: m.span,
        })
    }

    /// Applies x^2 = x (binary, categorical), s^2 = 1 (spin), and rejects real powers above 2.
    fn canonicalise(&mut self, m: &mut Mono) -> bool {
        let mut ok = true;
        let mut kept = Vec::with_capacity(m.units.len());
        for u in m.units.drain(..) {
            let g = &self.groups[u.group.idx()];
            match g.domain {
                Domain::Binary | Domain::Categorical => kept.push(UnitFactor { power: 1, ..u }),
                Domain::Spin => {
                    if u.power % 2 == 1 {
                        kept.push(UnitFactor { power: 1, ..u })
                    }
                }
                Domain::Real => {
                    if u.power > 2 {
                        self.diags.push(
                            Diagnostic::error(
                                "E0307",
                                m.span,
                                format!(
                                    "real unit `{}` appears with a power above 2 in `{}`",
                                    g.name,
                                    self.text(m.span)
                                ),
                            )
                            .with_label(g.span, "declared `real` here")
                            .with_hint("an energy must be at most quadratic in each real unit so that its conditional is Gaussian"),
                        );
                        ok = false;
                    }
                    kept.push(u);
                }
            }
        }
        m.units = kept;
        ok
    }

    /// The extent of `v`: from the lead list, else from its bare uses, which must agree.
    fn extent(&mut self, v: u32, uses: &[IndexUse], lead: &[Lead]) -> Option<usize> {
        let name = &self.var_names[v as usize];
        let bare: Vec<&IndexUse> = uses.iter().filter(|u| u.aff.as_var() == Some(v)).collect();
        let (first_len, first_span, first_desc) = match lead.iter().find(|l| l.id == v) {
            Some(l) => (
                l.extent,
                None,
                format!("the conditional's child ({})", l.extent),
            ),
            None => match bare.first() {
                Some(u) => (u.len, Some(u.span), describe(u)),
                None => {
                    let u = uses
                        .iter()
                        .find(|u| u.aff.coeffs.iter().any(|&(x, _)| x == v))
                        .expect("a var of a term appears in some index");
                    self.diags.push(
                        Diagnostic::error(
                            "E0303",
                            u.span,
                            format!("cannot infer the range of index `{name}`"),
                        )
                        .with_hint(format!(
                            "`{name}` must also appear alone as an index somewhere in the same term, e.g. `K[{name}]`, so that its range is known"
                        )),
                    );
                    return None;
                }
            },
        };
        for u in &bare {
            if u.len != first_len {
                let mut d = Diagnostic::error(
                    "E0301",
                    u.span,
                    format!(
                        "shape mismatch: index `{name}` ranges over {} in {} but over {}",
                        u.len,
                        describe(u),
                        first_desc
                    ),
                );
                if let Some(s) = first_span {
                    d = d.with_label(s, format!("`{name}` ranges over {first_len} here"));
                }
                self.diags.push(d.with_hint(
                    "an index variable is summed over one range; use a different letter for the other axis",
                ));
                return None;
            }
        }
        Some(first_len)
    }

    /// Interval proof that `u`'s index stays in `0..len` for every assignment.
    fn in_range(&mut self, u: &IndexUse, ext: &dyn Fn(u32) -> usize) -> bool {
        let (mut lo, mut hi) = (u.aff.offset as i128, u.aff.offset as i128);
        for &(v, c) in &u.aff.coeffs {
            let top = ext(v) as i128 - 1;
            let c = c as i128;
            if c >= 0 {
                hi += c * top;
            } else {
                lo += c * top;
            }
        }
        if let Some(m) = u.aff.modulo {
            let m = m as i128;
            if lo < 0 || hi >= m {
                lo = 0;
                hi = m - 1;
            }
        }
        let len = u.len as i128;
        if lo >= 0 && hi < len {
            return true;
        }
        let t = self.text(u.span);
        let whole = self.text(u.whole);
        let (what, val) = if hi >= len {
            ("reaches", hi)
        } else {
            ("reaches", lo)
        };
        let axis_words = axis_words(u.axis, u.len);
        let mut d = Diagnostic::error(
            "E0304",
            u.span,
            format!(
                "index `{whole}` can go out of range: {t} {what} {val} but `{}` has {axis_words}",
                u.tensor
            ),
        );
        d = if u.aff.modulo.is_some() {
            d.with_hint(format!("a `% m` index needs m <= {}", u.len))
        } else {
            d.with_hint(format!(
                "wrap it with `% {}` for a periodic boundary, or shrink the range of its variables",
                u.len
            ))
        };
        self.diags.push(d);
        false
    }
}

fn axis_words(axis: usize, len: usize) -> String {
    match axis {
        0 => format!("{len} rows"),
        1 => format!("{len} columns"),
        k => format!("{len} entries along axis {k}"),
    }
}

fn describe(u: &IndexUse) -> String {
    format!("`{}` axis {} ({})", u.tensor, u.axis, u.len)
}

pub fn remap(a: &Affine, map: &dyn Fn(u32) -> u32) -> Affine {
    let mut coeffs: Vec<(u32, i64)> = a.coeffs.iter().map(|&(v, c)| (map(v), c)).collect();
    coeffs.sort_unstable();
    Affine {
        coeffs,
        offset: a.offset,
        modulo: a.modulo,
    }
}

pub fn remap_coef(c: &Coef, map: &dyn Fn(u32) -> u32) -> Coef {
    match c {
        Coef::Const(x) => Coef::Const(*x),
        Coef::Param { param, index } => Coef::Param {
            param: *param,
            index: index.iter().map(|a| remap(a, map)).collect(),
        },
        Coef::Add(xs) => Coef::Add(xs.iter().map(|x| remap_coef(x, map)).collect()),
        Coef::Mul(xs) => Coef::Mul(xs.iter().map(|x| remap_coef(x, map)).collect()),
        Coef::Div(a, b) => Coef::Div(Box::new(remap_coef(a, map)), Box::new(remap_coef(b, map))),
        Coef::Powi(a, n) => Coef::Powi(Box::new(remap_coef(a, map)), *n),
        Coef::Neg(a) => Coef::Neg(Box::new(remap_coef(a, map))),
        Coef::Func(f, a) => Coef::Func(*f, Box::new(remap_coef(a, map))),
    }
}
