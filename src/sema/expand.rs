//! Expands an energy expression into a sum of monomials in units (`Poly`). Products are
//! distributed over sums, integer powers of sums are multiplied out, and everything that does
//! not involve a unit folds into the monomial's coefficient. Index expressions become affine
//! maps over model-wide index-variable ids (`VarTable`); `terms` later renumbers them per term.
//! Invariant: a `Mono` never holds the same unit factor twice (equal factors merge into a power),
//! and a `Poly` never has more than `MAX_MONOS` entries (a diagnostic is raised instead).

use super::scope::{did_you_mean, Scope, Sym};
use crate::diag::{Diagnostic, SourceMap, Span};
use crate::ir::{Affine, Coef, Domain, Func, Group, Param, UnitFactor};
use crate::syntax::ast::{Expr, ExprKind, MulOp};

/// Most monomials one expression may expand into.
pub const MAX_MONOS: usize = 10_000;
/// Largest integer exponent applied to an expression containing units.
pub const MAX_UNIT_POWER: i64 = 64;
/// Largest magnitude of an index coefficient or offset, so index arithmetic fits in i64.
pub const MAX_INDEX_CONST: i64 = 1 << 31;

/// Names of index variables; ids are positions.
#[derive(Default, Clone)]
pub struct VarTable {
    pub names: Vec<String>,
}

impl VarTable {
    pub fn id(&mut self, name: &str) -> u32 {
        match self.names.iter().position(|n| n == name) {
            Some(i) => i as u32,
            None => self.fresh(name),
        }
    }
    /// A new id even if the name exists (used to rename summation variables apart).
    pub fn fresh(&mut self, name: &str) -> u32 {
        self.names.push(name.to_string());
        (self.names.len() - 1) as u32
    }
}

/// One use of an index expression on one tensor axis, kept for extent inference and range
/// proofs.
#[derive(Clone, Debug)]
pub struct IndexUse {
    pub aff: Affine,
    pub tensor: String,
    pub axis: usize,
    pub len: usize,
    /// span of the index expression
    pub span: Span,
    /// span of the whole indexed tensor `v[y + dy]`
    pub whole: Span,
}

/// `k * prod(num) / prod(den) * prod(units)`.
#[derive(Clone, Debug)]
pub struct Mono {
    pub k: f64,
    pub num: Vec<Coef>,
    pub den: Vec<Coef>,
    pub units: Vec<UnitFactor>,
    pub uses: Vec<IndexUse>,
    pub span: Span,
}

impl Mono {
    pub fn constant(k: f64, span: Span) -> Mono {
        Mono {
            k,
            num: vec![],
            den: vec![],
            units: vec![],
            uses: vec![],
            span,
        }
    }

    pub fn mul(&self, o: &Mono, span: Span) -> Mono {
        let mut m = self.clone();
        m.k *= o.k;
        m.num.extend(o.num.iter().cloned());
        m.den.extend(o.den.iter().cloned());
        for u in &o.units {
            match m
                .units
                .iter_mut()
                .find(|x| x.group == u.group && x.index == u.index)
            {
                Some(x) => x.power += u.power,
                None => m.units.push(u.clone()),
            }
        }
        m.uses.extend(o.uses.iter().cloned());
        m.span = span;
        m
    }

    /// The coefficient as one `Coef` (constants folded).
    pub fn coef(&self) -> Coef {
        let mut num: Vec<Coef> = Vec::new();
        if self.k != 1.0 || self.num.is_empty() {
            num.push(Coef::Const(self.k));
        }
        num.extend(self.num.iter().cloned());
        let n = if num.len() == 1 {
            num.pop().expect("one factor")
        } else {
            Coef::Mul(num)
        };
        match self.den.len() {
            0 => n,
            1 => Coef::Div(Box::new(n), Box::new(self.den[0].clone())),
            _ => Coef::Div(Box::new(n), Box::new(Coef::Mul(self.den.clone()))),
        }
    }
}

pub type Poly = Vec<Mono>;

/// Adds up monomials with the same units and the same coefficient factors (e.g. the two
/// cross terms of `(v - a)^2`) and drops those whose constant is zero. Order of first
/// appearance is kept.
pub fn combine(p: Poly, groups: &[Group]) -> Poly {
    let mut index: std::collections::BTreeMap<String, usize> = Default::default();
    let mut out: Poly = Vec::with_capacity(p.len());
    for mut m in p {
        // Discrete powers first (x^2 = x, s^2 = 1) so that `s^3` and `s` merge; real powers
        // are left for `terms`, which reports those above 2.
        m.units.retain_mut(|u| match groups[u.group.idx()].domain {
            Domain::Binary | Domain::Categorical => {
                u.power = 1;
                true
            }
            Domain::Spin => {
                u.power %= 2;
                u.power == 1
            }
            Domain::Real => true,
        });
        let mut num: Vec<String> = m.num.iter().map(|c| format!("{c:?}")).collect();
        let mut den: Vec<String> = m.den.iter().map(|c| format!("{c:?}")).collect();
        let mut units: Vec<String> = m.units.iter().map(|u| format!("{u:?}")).collect();
        num.sort();
        den.sort();
        units.sort();
        let key = format!("{units:?}|{num:?}|{den:?}");
        match index.get(&key) {
            Some(&i) => out[i].k += m.k,
            None => {
                index.insert(key, out.len());
                out.push(m);
            }
        }
    }
    out.retain(|m| m.k != 0.0);
    out
}

pub struct Expander<'a> {
    pub scope: &'a Scope,
    pub groups: &'a [Group],
    pub params: &'a [Param],
    pub vars: &'a mut VarTable,
    pub diags: &'a mut Vec<Diagnostic>,
    pub sources: &'a SourceMap,
}

impl Expander<'_> {
    pub(super) fn text(&self, s: Span) -> String {
        let f = self.sources.file(s.file);
        f.text
            .get(s.start as usize..s.end as usize)
            .unwrap_or("?")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub(super) fn err(&mut self, code: &'static str, span: Span, msg: String) {
        self.diags.push(Diagnostic::error(code, span, msg));
    }

    fn not_polynomial(&mut self, span: Span, hint: &str) {
        let t = self.text(span);
        self.diags.push(
            Diagnostic::error(
                "E0306",
                span,
                format!("energy is not polynomial in units: `{t}`"),
            )
            .with_hint(hint.to_string()),
        );
    }

    pub fn expand(&mut self, e: &Expr) -> Option<Poly> {
        let span = e.span;
        match &e.kind {
            ExprKind::Num(x) => Some(vec![Mono::constant(*x, span)]),
            ExprKind::Str(_) => {
                self.err("E0211", span, "a string cannot appear in an energy".into());
                None
            }
            ExprKind::Pipe(_) => {
                self.err("E0211", span, "`|>` is only for data pipelines".into());
                None
            }
            ExprKind::Field(..) => {
                self.err(
                    "E0211",
                    span,
                    "`model.param` names a trained parameter; it is only for experiment settings"
                        .into(),
                );
                None
            }
            ExprKind::Name(n) => self.name(n, span),
            ExprKind::Index(t, idx) => self.indexed(&t.name, t.span, idx, span),
            ExprKind::Neg(a) => {
                let mut p = self.expand(a)?;
                for m in &mut p {
                    m.k = -m.k;
                    m.span = span;
                }
                Some(p)
            }
            ExprKind::Sum(parts) => {
                let mut out = Vec::new();
                let mut ok = true;
                for (neg, p) in parts {
                    match self.expand(p) {
                        Some(q) => {
                            for mut m in q {
                                if *neg {
                                    m.k = -m.k;
                                }
                                out.push(m);
                            }
                        }
                        None => ok = false,
                    }
                }
                if out.len() > MAX_MONOS {
                    self.too_large(span);
                    return None;
                }
                ok.then_some(out)
            }
            ExprKind::Product(parts) => {
                let mut acc: Option<Poly> = Some(vec![Mono::constant(1.0, span)]);
                for (op, p) in parts {
                    let rhs = self.expand(p);
                    let (Some(a), Some(b)) = (acc.take(), rhs) else {
                        continue;
                    };
                    acc = match op {
                        MulOp::Mul => self.mul(&a, &b, span),
                        MulOp::Div => self.divide(a, &b, p.span, span),
                        MulOp::Mod => {
                            self.diags.push(
                                Diagnostic::error(
                                    "E0306",
                                    p.span,
                                    "`%` is only allowed inside index brackets",
                                )
                                .with_hint("for a periodic index write `s[(i + 1) % L]`"),
                            );
                            None
                        }
                    };
                }
                acc
            }
            ExprKind::Pow(a, b) => {
                let base = self.expand(a)?;
                let ex = self.scope.eval(b, self.diags)?;
                let has_units = base.iter().any(|m| !m.units.is_empty());
                if !has_units {
                    let (c, uses) = self.unit_free(&base, a.span, "")?;
                    let coef = if ex.fract() == 0.0 && ex.abs() <= i32::MAX as f64 {
                        Coef::Powi(Box::new(c), ex as i32)
                    } else {
                        // c^x = exp(x * log c) for non-integer exponents
                        Coef::Func(
                            Func::Exp,
                            Box::new(Coef::Mul(vec![
                                Coef::Const(ex),
                                Coef::Func(Func::Log, Box::new(c)),
                            ])),
                        )
                    };
                    let mut m = Mono::constant(1.0, span);
                    m.num.push(coef);
                    m.uses = uses;
                    return Some(vec![m]);
                }
                if ex.fract() != 0.0 || ex < 0.0 {
                    self.not_polynomial(
                        span,
                        "units may only be raised to non-negative integer powers",
                    );
                    return None;
                }
                if ex > MAX_UNIT_POWER as f64 {
                    self.err(
                        "E0309",
                        b.span,
                        format!("exponent {ex} is too large (at most {MAX_UNIT_POWER} on units)"),
                    );
                    return None;
                }
                let mut acc = vec![Mono::constant(1.0, span)];
                for _ in 0..ex as i64 {
                    acc = self.mul(&acc, &base, span)?;
                }
                Some(acc)
            }
            ExprKind::Call(c) => {
                let f = match c.func.name.as_str() {
                    "exp" => Func::Exp,
                    "log" => Func::Log,
                    "sqrt" => Func::Sqrt,
                    "sigmoid" => Func::Sigmoid,
                    "softplus" => Func::Softplus,
                    "tanh" => Func::Tanh,
                    "abs" => Func::Abs,
                    other => {
                        let cands = ["exp", "log", "sqrt", "sigmoid", "softplus", "tanh", "abs"];
                        let mut d = Diagnostic::error(
                            "E0201",
                            c.func.span,
                            format!("unknown function `{other}`"),
                        );
                        d = match did_you_mean(other, &cands) {
                            Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                            None => d.with_hint(format!(
                                "functions allowed in an energy: {}",
                                cands.join(", ")
                            )),
                        };
                        self.diags.push(d);
                        return None;
                    }
                };
                if c.args.len() != 1 || c.args[0].name.is_some() {
                    self.err(
                        "E0211",
                        c.span,
                        format!("`{}` takes exactly one argument", c.func.name),
                    );
                    return None;
                }
                let arg = self.expand(&c.args[0].value)?;
                if arg.iter().any(|m| !m.units.is_empty()) {
                    self.not_polynomial(
                        span,
                        "functions may only be applied to expressions without units; \
                         for a directed dependence write `x[i] ~ bernoulli(sigmoid(...))`",
                    );
                    return None;
                }
                let (c, uses) = self.unit_free(&arg, span, "")?;
                let mut m = Mono::constant(1.0, span);
                m.num.push(Coef::Func(f, Box::new(c)));
                m.uses = uses;
                Some(vec![m])
            }
        }
    }

    fn too_large(&mut self, span: Span) {
        self.diags.push(
            Diagnostic::error(
                "E0308",
                span,
                format!("expanding this expression gives more than {MAX_MONOS} terms"),
            )
            .with_hint("introduce the repeated sum as a separate unit group or simplify it"),
        );
    }

    /// `a / b` for a divisor `b` without units: a single-monomial divisor moves its factors
    /// into the denominators, a sum becomes one denominator factor.
    fn divide(&mut self, a: Poly, b: &Poly, bspan: Span, span: Span) -> Option<Poly> {
        if b.len() == 1 && b[0].units.is_empty() {
            let d = &b[0];
            if d.k == 0.0 && d.num.is_empty() {
                self.err("E0306", bspan, "division by zero".into());
                return None;
            }
            return Some(
                a.into_iter()
                    .map(|mut m| {
                        m.k /= d.k;
                        m.den.extend(d.num.iter().cloned());
                        m.num.extend(d.den.iter().cloned());
                        m.uses.extend(d.uses.iter().cloned());
                        m.span = span;
                        m
                    })
                    .collect(),
            );
        }
        let (c, uses) = self.unit_free(b, bspan, "divide only by expressions without units")?;
        Some(
            a.into_iter()
                .map(|mut m| {
                    m.den.push(c.clone());
                    m.uses.extend(uses.iter().cloned());
                    m.span = span;
                    m
                })
                .collect(),
        )
    }

    pub fn mul(&mut self, a: &Poly, b: &Poly, span: Span) -> Option<Poly> {
        if a.len().saturating_mul(b.len()) > MAX_MONOS {
            self.too_large(span);
            return None;
        }
        let mut out = Vec::with_capacity(a.len() * b.len());
        for x in a {
            for y in b {
                out.push(x.mul(y, span));
            }
        }
        Some(out)
    }

    /// Collapses a polynomial without units into one coefficient (and its index uses).
    pub fn unit_free(&mut self, p: &Poly, span: Span, hint: &str) -> Option<(Coef, Vec<IndexUse>)> {
        if p.iter().any(|m| !m.units.is_empty()) {
            self.not_polynomial(span, hint);
            return None;
        }
        let uses: Vec<IndexUse> = p.iter().flat_map(|m| m.uses.iter().cloned()).collect();
        let c = match p.len() {
            0 => Coef::Const(0.0),
            1 => p[0].coef(),
            _ => Coef::Add(p.iter().map(|m| m.coef()).collect()),
        };
        Some((c, uses))
    }

    fn name(&mut self, n: &str, span: Span) -> Option<Poly> {
        match self.scope.get(n) {
            Some(Sym::Value(v)) => Some(vec![Mono::constant(v, span)]),
            Some(Sym::Group(g)) => {
                if !self.groups[g.idx()].shape.is_empty() {
                    let k = self.groups[g.idx()].shape.len();
                    self.err(
                        "E0302",
                        span,
                        format!(
                            "unit group `{n}` has {} but is used without an index",
                            super::axes(k)
                        ),
                    );
                    return None;
                }
                let mut m = Mono::constant(1.0, span);
                m.units.push(UnitFactor {
                    group: g,
                    index: vec![],
                    power: 1,
                });
                Some(vec![m])
            }
            Some(Sym::Param(p)) => {
                if !self.params[p.idx()].shape.is_empty() {
                    let k = self.params[p.idx()].shape.len();
                    self.err(
                        "E0302",
                        span,
                        format!(
                            "parameter `{n}` has {} but is used without an index",
                            super::axes(k)
                        ),
                    );
                    return None;
                }
                let mut m = Mono::constant(1.0, span);
                m.num.push(Coef::Param {
                    param: p,
                    index: vec![],
                });
                Some(vec![m])
            }
            None => {
                if self.vars.names.iter().any(|v| v == n) {
                    self.diags.push(
                        Diagnostic::error(
                            "E0211",
                            span,
                            format!("index variable `{n}` used as a value"),
                        )
                        .with_hint("index variables may only appear inside `[...]`"),
                    );
                    return None;
                }
                self.unknown(n, span, |_| true);
                None
            }
        }
    }

    fn unknown(&mut self, n: &str, span: Span, want: impl Fn(Sym) -> bool) {
        let mut d = Diagnostic::error("E0201", span, format!("unknown name `{n}`"));
        if let Some(s) = did_you_mean(n, &self.scope.candidates(want)) {
            d = d.with_hint(format!("did you mean `{s}`?"));
        } else {
            d = d.with_hint("declare it with `visible`, `hidden`, `param` or `const`");
        }
        self.diags.push(d);
    }

    fn indexed(&mut self, n: &str, nspan: Span, idx: &[Expr], span: Span) -> Option<Poly> {
        let (shape, is_group) = match self.scope.get(n) {
            Some(Sym::Group(g)) => (self.groups[g.idx()].shape.clone(), Some(g)),
            Some(Sym::Param(p)) => (self.params[p.idx()].shape.clone(), None),
            Some(Sym::Value(_)) => {
                self.err(
                    "E0211",
                    nspan,
                    format!(
                        "`{n}` is a number, not a unit group or parameter, and cannot be indexed"
                    ),
                );
                return None;
            }
            None => {
                self.unknown(n, nspan, |s| !matches!(s, Sym::Value(_)));
                return None;
            }
        };
        if shape.len() != idx.len() {
            let kind = if is_group.is_some() {
                "unit group"
            } else {
                "parameter"
            };
            self.diags.push(
                Diagnostic::error(
                    "E0302",
                    span,
                    format!(
                        "{kind} `{n}` has {} but is indexed with {}",
                        crate::sema::axes(shape.len()),
                        idx.len()
                    ),
                )
                .with_hint(format!("write one index per axis of `{n}{shape:?}`")),
            );
            return None;
        }
        let mut index = Vec::new();
        let mut uses = Vec::new();
        for (axis, e) in idx.iter().enumerate() {
            let aff = self.affine(e)?;
            uses.push(IndexUse {
                aff: aff.clone(),
                tensor: n.to_string(),
                axis,
                len: shape[axis],
                span: e.span,
                whole: span,
            });
            index.push(aff);
        }
        let mut m = Mono::constant(1.0, span);
        m.uses = uses;
        match is_group {
            Some(g) => m.units.push(UnitFactor {
                group: g,
                index,
                power: 1,
            }),
            None => {
                let p = match self.scope.get(n) {
                    Some(Sym::Param(p)) => p,
                    _ => unreachable!("checked above that `{n}` is a parameter"),
                };
                m.num.push(Coef::Param { param: p, index })
            }
        }
        Some(vec![m])
    }
}
