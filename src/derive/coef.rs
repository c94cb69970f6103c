//! Coefficient calculus shared by derivation, the interpreter and `explain`: which parameters
//! a coefficient reads, its derivative with respect to each parameter element at one instance,
//! its sign when that is provable, and whether it is linear in a parameter.
//!
//! Invariant: `coef_grad` is the exact derivative of `Model::coef_value` (same evaluation
//! order), so the oracle can check it against finite differences.

use crate::ir::eval::Params;
use crate::ir::{Coef, Constraint, Func, Model, ParamId};

/// Parameters a coefficient mentions, sorted and deduplicated.
pub fn coef_params(c: &Coef) -> Vec<ParamId> {
    fn walk(c: &Coef, out: &mut Vec<ParamId>) {
        match c {
            Coef::Const(_) => {}
            Coef::Param { param, .. } => out.push(*param),
            Coef::Add(xs) | Coef::Mul(xs) => xs.iter().for_each(|x| walk(x, out)),
            Coef::Div(a, b) => {
                walk(a, out);
                walk(b, out)
            }
            Coef::Powi(a, _) | Coef::Neg(a) | Coef::Func(_, a) => walk(a, out),
        }
    }
    let mut out = Vec::new();
    walk(c, &mut out);
    out.sort();
    out.dedup();
    out
}

/// `Some(k)` when the coefficient is `k * p[...]` with a constant `k` and exactly one
/// occurrence of `p` (no other parameter), else `None`.
pub fn linear_factor(c: &Coef, p: ParamId) -> Option<f64> {
    match c {
        Coef::Param { param, .. } if *param == p => Some(1.0),
        Coef::Neg(a) => linear_factor(a, p).map(|k| -k),
        Coef::Mul(xs) => {
            let mut k = 1.0;
            let mut found = false;
            for x in xs {
                if let Some(v) = const_value(x) {
                    k *= v;
                } else if !found {
                    k *= linear_factor(x, p)?;
                    found = true;
                } else {
                    return None;
                }
            }
            found.then_some(k)
        }
        Coef::Div(a, b) => Some(linear_factor(a, p)? / const_value(b)?),
        _ => None,
    }
}

/// The value of a coefficient that mentions no parameter and no index var.
pub fn const_value(c: &Coef) -> Option<f64> {
    Some(match c {
        Coef::Const(x) => *x,
        Coef::Param { .. } => return None,
        Coef::Add(xs) => xs.iter().map(const_value).sum::<Option<f64>>()?,
        Coef::Mul(xs) => xs.iter().map(const_value).product::<Option<f64>>()?,
        Coef::Div(a, b) => const_value(a)? / const_value(b)?,
        Coef::Powi(a, n) => const_value(a)?.powi(*n),
        Coef::Neg(a) => -const_value(a)?,
        Coef::Func(f, a) => f.apply(const_value(a)?),
    })
}

/// Provable sign of a coefficient for every parameter value the constraints allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sign {
    Positive,
    NonNegative,
    Negative,
    Unknown,
}

pub fn coef_sign(model: &Model, c: &Coef) -> Sign {
    use Sign::*;
    let neg = |s: Sign| match s {
        Positive => Negative,
        Negative => Positive,
        NonNegative | Unknown => Unknown,
    };
    match c {
        Coef::Const(x) if *x > 0.0 => Positive,
        Coef::Const(x) if *x == 0.0 => NonNegative,
        Coef::Const(_) => Negative,
        Coef::Param { param, .. } => {
            if model.param(*param).has(Constraint::Positive) {
                Positive
            } else {
                Unknown
            }
        }
        Coef::Add(xs) => {
            let ss: Vec<Sign> = xs.iter().map(|x| coef_sign(model, x)).collect();
            if ss.iter().all(|s| *s == Positive || *s == NonNegative) {
                if ss.contains(&Positive) {
                    Positive
                } else {
                    NonNegative
                }
            } else if ss.iter().all(|s| *s == Negative) {
                Negative
            } else {
                Unknown
            }
        }
        Coef::Mul(xs) => xs
            .iter()
            .fold(Positive, |acc, x| mul_sign(acc, coef_sign(model, x))),
        Coef::Div(a, b) => mul_sign(coef_sign(model, a), coef_sign(model, b)),
        Coef::Powi(a, n) => {
            let s = coef_sign(model, a);
            if n % 2 == 0 {
                match s {
                    Positive | Negative => Positive,
                    _ => NonNegative,
                }
            } else {
                s
            }
        }
        Coef::Neg(a) => neg(coef_sign(model, a)),
        Coef::Func(f, a) => match f {
            Func::Exp | Func::Sigmoid | Func::Softplus => Positive,
            Func::Abs => NonNegative,
            Func::Sqrt | Func::Log | Func::Tanh => match (f, coef_sign(model, a)) {
                (Func::Sqrt, Positive) | (Func::Tanh, Positive) => Positive,
                (Func::Tanh, Negative) => Negative,
                _ => Unknown,
            },
        },
    }
}

fn mul_sign(a: Sign, b: Sign) -> Sign {
    use Sign::*;
    match (a, b) {
        (Unknown, _) | (_, Unknown) => Unknown,
        (Positive, x) | (x, Positive) => x,
        (Negative, Negative) => Positive,
        (NonNegative, NonNegative) => NonNegative,
        (Negative, NonNegative) | (NonNegative, Negative) => Unknown,
    }
}

/// `d coef / d θ` for every parameter element the coefficient reads at one instance:
/// `(param, flat offset, derivative)`, merged per element, sorted by (param, offset).
pub fn coef_grad(
    model: &Model,
    c: &Coef,
    params: &Params,
    assign: &[usize],
) -> Vec<(ParamId, usize, f64)> {
    let mut out = Vec::new();
    back(model, c, params, assign, 1.0, &mut out);
    out.sort_by_key(|a| (a.0, a.1));
    let mut merged: Vec<(ParamId, usize, f64)> = Vec::with_capacity(out.len());
    for (p, o, d) in out {
        match merged.last_mut() {
            Some(last) if last.0 == p && last.1 == o => last.2 += d,
            _ => merged.push((p, o, d)),
        }
    }
    merged
}

fn back(
    model: &Model,
    c: &Coef,
    params: &Params,
    assign: &[usize],
    seed: f64,
    out: &mut Vec<(ParamId, usize, f64)>,
) {
    let val = |x: &Coef| model.coef_value(x, params, assign);
    match c {
        Coef::Const(_) => {}
        Coef::Param { param, index } => {
            out.push((*param, model.param_offset(*param, index, assign), seed))
        }
        Coef::Add(xs) => xs
            .iter()
            .for_each(|x| back(model, x, params, assign, seed, out)),
        Coef::Mul(xs) => {
            let vals: Vec<f64> = xs.iter().map(val).collect();
            for (k, x) in xs.iter().enumerate() {
                let others: f64 = vals
                    .iter()
                    .enumerate()
                    .filter(|(m, _)| *m != k)
                    .map(|(_, v)| v)
                    .product();
                back(model, x, params, assign, seed * others, out);
            }
        }
        Coef::Div(a, b) => {
            let (va, vb) = (val(a), val(b));
            back(model, a, params, assign, seed / vb, out);
            back(model, b, params, assign, -seed * va / (vb * vb), out);
        }
        Coef::Powi(a, n) => {
            let va = val(a);
            let d = if *n == 0 {
                0.0
            } else {
                *n as f64 * va.powi(n - 1)
            };
            back(model, a, params, assign, seed * d, out);
        }
        Coef::Neg(a) => back(model, a, params, assign, -seed, out),
        Coef::Func(f, a) => {
            let d = f.derivative(val(a));
            back(model, a, params, assign, seed * d, out);
        }
    }
}

/// Symbolic `d coef / d θ[index]`, treating only occurrences of `param` with exactly this
/// `index` as the variable (other elements are constants). `None` where the derivative has no
/// expression in `Coef` (`abs`). Lightly simplified (constants folded, ones and zeros dropped);
/// used for printing, while `coef_grad` is what numbers come from.
pub fn coef_deriv(c: &Coef, param: ParamId, index: &[crate::ir::Affine]) -> Option<Coef> {
    let d = |x: &Coef| coef_deriv(x, param, index);
    Some(match c {
        Coef::Const(_) => Coef::Const(0.0),
        Coef::Param { param: p, index: i } => {
            Coef::Const(if *p == param && i == index { 1.0 } else { 0.0 })
        }
        Coef::Add(xs) => add(xs.iter().map(d).collect::<Option<Vec<_>>>()?),
        Coef::Mul(xs) => {
            let mut parts = Vec::new();
            for k in 0..xs.len() {
                let dk = d(&xs[k])?;
                if is_zero(&dk) {
                    continue;
                }
                let mut f: Vec<Coef> = xs.clone();
                f[k] = dk;
                parts.push(mul(f));
            }
            add(parts)
        }
        Coef::Div(a, b) => {
            let (da, db) = (d(a)?, d(b)?);
            let first = if is_zero(&da) {
                Coef::Const(0.0)
            } else {
                div(da, (**b).clone())
            };
            if is_zero(&db) {
                first
            } else {
                let second = neg(div(mul(vec![(**a).clone(), db]), Coef::Powi(b.clone(), 2)));
                add(vec![first, second])
            }
        }
        Coef::Powi(a, n) => {
            let da = d(a)?;
            let pow = match n - 1 {
                0 => Coef::Const(1.0),
                1 => (**a).clone(),
                m => Coef::Powi(a.clone(), m),
            };
            mul(vec![Coef::Const(*n as f64), pow, da])
        }
        Coef::Neg(a) => neg(d(a)?),
        Coef::Func(f, a) => {
            let da = d(a)?;
            if is_zero(&da) {
                return Some(Coef::Const(0.0));
            }
            let x = (**a).clone();
            let fx = |g: Func| Coef::Func(g, Box::new(x.clone()));
            let outer = match f {
                Func::Exp => fx(Func::Exp),
                Func::Log => div(Coef::Const(1.0), x.clone()),
                Func::Sqrt => div(Coef::Const(0.5), fx(Func::Sqrt)),
                Func::Sigmoid => mul(vec![
                    fx(Func::Sigmoid),
                    add(vec![Coef::Const(1.0), neg(fx(Func::Sigmoid))]),
                ]),
                Func::Softplus => fx(Func::Sigmoid),
                Func::Tanh => add(vec![
                    Coef::Const(1.0),
                    neg(Coef::Powi(Box::new(fx(Func::Tanh)), 2)),
                ]),
                Func::Abs => return None,
            };
            mul(vec![outer, da])
        }
    })
}

fn is_zero(c: &Coef) -> bool {
    matches!(c, Coef::Const(x) if *x == 0.0)
}

fn neg(c: Coef) -> Coef {
    match c {
        Coef::Const(x) => Coef::Const(-x),
        Coef::Neg(a) => *a,
        c => Coef::Neg(Box::new(c)),
    }
}

fn add(xs: Vec<Coef>) -> Coef {
    let mut k = 0.0;
    let mut rest = Vec::new();
    for x in xs {
        match x {
            Coef::Const(c) => k += c,
            Coef::Add(ys) => rest.extend(ys),
            x => rest.push(x),
        }
    }
    if k != 0.0 {
        rest.push(Coef::Const(k));
    }
    match rest.len() {
        0 => Coef::Const(0.0),
        1 => rest.pop().expect("one element"),
        _ => Coef::Add(rest),
    }
}

fn mul(xs: Vec<Coef>) -> Coef {
    let mut k = 1.0;
    let mut rest = Vec::new();
    let mut flat = xs;
    while let Some(x) = flat.pop() {
        match x {
            Coef::Const(c) => k *= c,
            Coef::Mul(ys) => flat.extend(ys),
            Coef::Neg(a) => {
                k = -k;
                flat.push(*a);
            }
            x => rest.push(x),
        }
    }
    rest.reverse();
    if k == 0.0 {
        return Coef::Const(0.0);
    }
    if rest.is_empty() {
        return Coef::Const(k);
    }
    if k != 1.0 {
        rest.insert(0, Coef::Const(k));
    }
    if rest.len() == 1 {
        rest.pop().expect("one element")
    } else {
        Coef::Mul(rest)
    }
}

fn div(a: Coef, b: Coef) -> Coef {
    match b {
        Coef::Const(1.0) => a,
        b => Coef::Div(Box::new(a), Box::new(b)),
    }
}
