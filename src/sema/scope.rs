//! Names in scope while checking one model, constant folding of scalar expressions, and the
//! "did you mean" hint. Invariant: a name is bound at most once per model (duplicates are
//! reported by the binder and the second binding is dropped).

use crate::diag::{Diagnostic, Span};
use crate::ir::{GroupId, ParamId};
use crate::syntax::ast::{Expr, ExprKind, MulOp};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sym {
    /// a model argument, dimension or `const`: a known number
    Value(f64),
    Group(GroupId),
    Param(ParamId),
}

#[derive(Default)]
pub struct Scope {
    pub names: Vec<(String, Sym, Span)>,
}

impl Scope {
    pub fn get(&self, name: &str) -> Option<Sym> {
        self.names.iter().find(|(n, _, _)| n == name).map(|x| x.1)
    }

    pub fn span_of(&self, name: &str) -> Option<Span> {
        self.names.iter().find(|(n, _, _)| n == name).map(|x| x.2)
    }

    /// Binds `name`; a duplicate is an E0202 diagnostic and keeps the first binding.
    pub fn bind(&mut self, name: &str, sym: Sym, span: Span, diags: &mut Vec<Diagnostic>) -> bool {
        if let Some(prev) = self.span_of(name) {
            diags.push(
                Diagnostic::error("E0202", span, format!("`{name}` is defined twice"))
                    .with_label(prev, "first defined here")
                    .with_hint(
                        "give each unit group, parameter, argument and constant its own name",
                    ),
            );
            return false;
        }
        self.names.push((name.to_string(), sym, span));
        true
    }

    /// Names of the kinds `want` accepts, for hints.
    pub fn candidates(&self, want: impl Fn(Sym) -> bool) -> Vec<&str> {
        self.names
            .iter()
            .filter(|(_, s, _)| want(*s))
            .map(|(n, _, _)| n.as_str())
            .collect()
    }

    /// Folds a scalar expression of numbers, arguments and constants.
    pub fn eval(&self, e: &Expr, diags: &mut Vec<Diagnostic>) -> Option<f64> {
        let bad = |diags: &mut Vec<Diagnostic>, msg: String| {
            diags.push(Diagnostic::error("E0211", e.span, msg));
            None
        };
        let x = match &e.kind {
            ExprKind::Num(x) => *x,
            ExprKind::Name(n) => match self.get(n) {
                Some(Sym::Value(v)) => v,
                Some(_) => {
                    return bad(
                        diags,
                        format!("`{n}` is not a number known when the model is compiled"),
                    )
                }
                None => {
                    let mut d = Diagnostic::error("E0201", e.span, format!("unknown name `{n}`"));
                    if let Some(s) =
                        did_you_mean(n, &self.candidates(|s| matches!(s, Sym::Value(_))))
                    {
                        d = d.with_hint(format!("did you mean `{s}`?"));
                    }
                    diags.push(d);
                    return None;
                }
            },
            ExprKind::Neg(a) => -self.eval(a, diags)?,
            ExprKind::Sum(parts) => {
                let mut s = 0.0;
                let mut ok = true;
                for (neg, p) in parts {
                    match self.eval(p, diags) {
                        Some(v) => s += if *neg { -v } else { v },
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                s
            }
            ExprKind::Product(parts) => {
                let mut s = 1.0;
                let mut ok = true;
                for (op, p) in parts {
                    match self.eval(p, diags) {
                        Some(v) => match op {
                            MulOp::Mul => s *= v,
                            MulOp::Div => s /= v,
                            MulOp::Mod => {
                                if v == 0.0 {
                                    return bad(diags, "modulo by zero".into());
                                }
                                s = s.rem_euclid(v)
                            }
                        },
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                s
            }
            ExprKind::Pow(a, b) => {
                let a = self.eval(a, diags);
                let b = self.eval(b, diags);
                a?.powf(b?)
            }
            ExprKind::Call(c) => {
                let f = c.func.name.as_str();
                if c.args.len() != 1 || c.args[0].name.is_some() {
                    return bad(diags, format!("`{f}` takes one argument here"));
                }
                let x = self.eval(&c.args[0].value, diags)?;
                match f {
                    "exp" => x.exp(),
                    "log" => x.ln(),
                    "sqrt" => x.sqrt(),
                    "abs" => x.abs(),
                    "tanh" => x.tanh(),
                    "sigmoid" => crate::ir::eval::sigmoid(x),
                    "softplus" => crate::ir::eval::softplus(x),
                    "logit" => (x / (1.0 - x)).ln(),
                    _ => return bad(diags, format!("unknown function `{f}` in a constant")),
                }
            }
            ExprKind::Index(t, _) => {
                return bad(
                    diags,
                    format!(
                        "`{}` is indexed, but a constant number is needed here",
                        t.name
                    ),
                )
            }
            ExprKind::Str(_) => return bad(diags, "a string is not a number".into()),
            ExprKind::Pipe(_) => return bad(diags, "`|>` is only for data pipelines".into()),
            ExprKind::Field(m, p) => {
                return bad(
                    diags,
                    format!(
                    "`{}.{}` is a trained parameter, not a number known when the model is compiled",
                    m.name, p.name
                ),
                )
            }
        };
        if !x.is_finite() {
            return bad(diags, "this constant is not a finite number".into());
        }
        Some(x)
    }
}

/// The closest candidate within a small edit distance, if any.
pub fn did_you_mean<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (levenshtein(name, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions).
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut prev2: Vec<usize> = prev.clone();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            // an adjacent transposition counts as one edit (`bais` -> `bias`)
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(prev2[j - 2] + 1);
            }
        }
        prev2 = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}
