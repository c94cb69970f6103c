//! Index expressions: parses `i`, `i + 1`, `2*i + dy`, `(i + 1) % L`, `3` into `ir::Affine`
//! maps over model-wide index-variable ids. Invariant: every `Affine` built here has its
//! coefficients sorted by variable with no zero entries, at most one outermost modulus (> 0),
//! and constants bounded by `MAX_INDEX_CONST`, so later interval arithmetic cannot overflow.

use super::expand::{Expander, MAX_INDEX_CONST};
use super::scope::Sym;
use crate::diag::{Diagnostic, Span};
use crate::ir::Affine;
use crate::syntax::ast::{Expr, ExprKind, MulOp};

impl Expander<'_> {
    /// An index expression as an affine map: `i`, `i + 1`, `2*i + dy`, `(i + 1) % L`, `3`.
    pub fn affine(&mut self, e: &Expr) -> Option<Affine> {
        let a = self.affine_inner(e)?;
        let big = a.offset.abs() > MAX_INDEX_CONST
            || a.coeffs.iter().any(|(_, c)| c.abs() > MAX_INDEX_CONST);
        if big {
            self.err("E0305", e.span, "index constants are too large".into());
            return None;
        }
        Some(a)
    }

    fn not_affine(&mut self, span: Span, why: &str) -> Option<Affine> {
        let t = self.text(span);
        self.diags.push(
            Diagnostic::error("E0305", span, format!("index `{t}` is not affine: {why}"))
                .with_hint("indices are sums of index variables times integers plus an integer, optionally `% n` at the outside"),
        );
        None
    }

    fn affine_inner(&mut self, e: &Expr) -> Option<Affine> {
        match &e.kind {
            ExprKind::Num(x) => {
                if x.fract() != 0.0 || x.abs() > MAX_INDEX_CONST as f64 {
                    return self.not_affine(e.span, "an index must be an integer");
                }
                Some(Affine::constant(*x as i64))
            }
            ExprKind::Name(n) => match self.scope.get(n) {
                Some(Sym::Value(v)) => {
                    if v.fract() != 0.0 || v.abs() > MAX_INDEX_CONST as f64 {
                        return self.not_affine(e.span, "an index must be an integer");
                    }
                    Some(Affine::constant(v as i64))
                }
                Some(_) => self.not_affine(e.span, "a unit or parameter cannot be an index"),
                None => Some(Affine::var(self.vars.id(n))),
            },
            ExprKind::Neg(a) => {
                let a = self.affine_inner(a)?;
                if a.modulo.is_some() {
                    return self.not_affine(e.span, "`%` must be the outermost operation");
                }
                Some(scale(&a, -1))
            }
            ExprKind::Sum(parts) => {
                let mut acc = Affine::constant(0);
                for (neg, p) in parts {
                    let a = self.affine_inner(p)?;
                    if a.modulo.is_some() {
                        return self.not_affine(e.span, "`%` must be the outermost operation");
                    }
                    acc = add(&acc, &scale(&a, if *neg { -1 } else { 1 }));
                }
                Some(acc)
            }
            ExprKind::Product(parts) => {
                let mut acc: Option<Affine> = None;
                for (op, p) in parts {
                    let a = self.affine_inner(p)?;
                    let Some(cur) = acc.take() else {
                        acc = Some(a);
                        continue;
                    };
                    acc = Some(match op {
                        MulOp::Mul => {
                            if cur.modulo.is_some() || a.modulo.is_some() {
                                return self
                                    .not_affine(e.span, "`%` must be the outermost operation");
                            }
                            if cur.coeffs.is_empty() {
                                scale(&a, cur.offset)
                            } else if a.coeffs.is_empty() {
                                scale(&cur, a.offset)
                            } else {
                                return self
                                    .not_affine(e.span, "two index variables are multiplied");
                            }
                        }
                        MulOp::Div => return self.not_affine(e.span, "division in an index"),
                        MulOp::Mod => {
                            if cur.modulo.is_some() {
                                return self.not_affine(e.span, "nested `%`");
                            }
                            if !a.coeffs.is_empty() || a.modulo.is_some() {
                                return self.not_affine(p.span, "the modulus must be a constant");
                            }
                            if a.offset <= 0 {
                                return self.not_affine(p.span, "the modulus must be positive");
                            }
                            Affine {
                                modulo: Some(a.offset),
                                ..cur
                            }
                        }
                    });
                }
                acc
            }
            _ => self.not_affine(e.span, "only `+`, `-`, `*` by integers and `%` are allowed"),
        }
    }
}

fn scale(a: &Affine, k: i64) -> Affine {
    let mut coeffs: Vec<(u32, i64)> = a
        .coeffs
        .iter()
        .map(|&(v, c)| (v, c.saturating_mul(k)))
        .filter(|&(_, c)| c != 0)
        .collect();
    coeffs.sort_unstable();
    Affine {
        coeffs,
        offset: a.offset.saturating_mul(k),
        modulo: a.modulo,
    }
}

fn add(a: &Affine, b: &Affine) -> Affine {
    let mut coeffs = a.coeffs.clone();
    for &(v, c) in &b.coeffs {
        match coeffs.iter_mut().find(|x| x.0 == v) {
            Some(x) => x.1 = x.1.saturating_add(c),
            None => coeffs.push((v, c)),
        }
    }
    coeffs.retain(|x| x.1 != 0);
    coeffs.sort_unstable();
    Affine {
        coeffs,
        offset: a.offset.saturating_add(b.offset),
        modulo: None,
    }
}
