//! Pretty-printing of IR pieces as math (`-v[i]·W[i, j]·h[j]`), for diagnostics and `explain`.
//!
//! Invariant: output depends only on the IR (deterministic); index vars print by name.

use crate::ir::{Affine, Coef, Func, IndexVar, Model, Term, UnitFactor};

/// `i`, `i + 1`, `(i + 1) % 5`, `2*i - j`, `3`.
pub fn affine_str(a: &Affine, vars: &[IndexVar]) -> String {
    let mut s = String::new();
    for &(v, c) in &a.coeffs {
        let name = vars.get(v as usize).map_or("?", |x| x.name.as_str());
        let (neg, m) = (c < 0, c.unsigned_abs());
        if s.is_empty() {
            if neg {
                s.push('-');
            }
        } else {
            s.push_str(if neg { " - " } else { " + " });
        }
        if m != 1 {
            s.push_str(&format!("{m}*"));
        }
        s.push_str(name);
    }
    if a.offset != 0 || s.is_empty() {
        if s.is_empty() {
            s = a.offset.to_string();
        } else {
            s.push_str(&format!(
                " {} {}",
                if a.offset < 0 { "-" } else { "+" },
                a.offset.unsigned_abs()
            ));
        }
    }
    match a.modulo {
        Some(m) if a.coeffs.len() + usize::from(a.offset != 0) > 1 => format!("({s}) % {m}"),
        Some(m) => format!("{s} % {m}"),
        None => s,
    }
}

pub fn index_str(index: &[Affine], vars: &[IndexVar]) -> String {
    if index.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = index.iter().map(|a| affine_str(a, vars)).collect();
    format!("[{}]", parts.join(", "))
}

pub fn unit_str(model: &Model, u: &UnitFactor, vars: &[IndexVar]) -> String {
    let mut s = format!("{}{}", model.group(u.group).name, index_str(&u.index, vars));
    if u.power != 1 {
        s.push_str(&format!("^{}", u.power));
    }
    s
}

fn num(x: f64) -> String {
    if x == x.trunc() && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

fn func_name(f: Func) -> &'static str {
    match f {
        Func::Exp => "exp",
        Func::Log => "log",
        Func::Sqrt => "sqrt",
        Func::Sigmoid => "σ",
        Func::Softplus => "softplus",
        Func::Tanh => "tanh",
        Func::Abs => "abs",
    }
}

/// A coefficient, with `mul` between factors. Precedence: 0 sum, 1 product, 2 atom.
pub fn coef_str(model: &Model, c: &Coef, vars: &[IndexVar], mul: &str) -> String {
    coef_prec(model, c, vars, mul, 0)
}

fn coef_prec(model: &Model, c: &Coef, vars: &[IndexVar], mul: &str, ctx: u8) -> String {
    let wrap = |s: String, p: u8| if p < ctx { format!("({s})") } else { s };
    match c {
        Coef::Const(x) if *x < 0.0 => wrap(num(*x), 1),
        Coef::Const(x) => num(*x),
        Coef::Param { param, index } => {
            format!("{}{}", model.param(*param).name, index_str(index, vars))
        }
        Coef::Add(xs) => {
            let mut s = String::new();
            for (k, x) in xs.iter().enumerate() {
                match x {
                    Coef::Neg(inner) if k > 0 => {
                        s.push_str(" - ");
                        s.push_str(&coef_prec(model, inner, vars, mul, 1));
                    }
                    _ => {
                        if k > 0 {
                            s.push_str(" + ");
                        }
                        s.push_str(&coef_prec(model, x, vars, mul, 0));
                    }
                }
            }
            wrap(s, 0)
        }
        Coef::Mul(xs) => {
            let parts: Vec<String> = xs
                .iter()
                .map(|x| coef_prec(model, x, vars, mul, 1))
                .collect();
            wrap(parts.join(mul), 1)
        }
        Coef::Div(a, b) => wrap(
            format!(
                "{} / {}",
                coef_prec(model, a, vars, mul, 1),
                coef_prec(model, b, vars, mul, 2)
            ),
            1,
        ),
        Coef::Powi(a, n) => {
            let b = coef_prec(model, a, vars, mul, 2);
            if matches!(**a, Coef::Powi(..)) {
                format!("({b})^{n}")
            } else {
                format!("{b}^{n}")
            }
        }
        Coef::Neg(a) => wrap(format!("-{}", coef_prec(model, a, vars, mul, 2)), 1),
        Coef::Func(f, a) => format!("{}({})", func_name(*f), coef_prec(model, a, vars, mul, 0)),
    }
}

/// Splits a coefficient into (constant factor, numerator factors, denominator factors)
/// through `Mul`, `Neg` and `Div`.
fn split_coef(c: &Coef) -> (f64, Vec<&Coef>, Vec<&Coef>) {
    match c {
        Coef::Const(x) => (*x, vec![], vec![]),
        Coef::Neg(a) => {
            let (k, n, d) = split_coef(a);
            (-k, n, d)
        }
        Coef::Mul(xs) => {
            let mut k = 1.0;
            let (mut ns, mut ds) = (Vec::new(), Vec::new());
            for x in xs {
                let (k2, n2, d2) = split_coef(x);
                k *= k2;
                ns.extend(n2);
                ds.extend(d2);
            }
            (k, ns, ds)
        }
        Coef::Div(a, b) => {
            let (k, ns, mut ds) = split_coef(a);
            let (kb, nb, db) = split_coef(b);
            if !db.is_empty() {
                // a / (x / y): keep the denominator whole rather than flipping it.
                ds.push(b);
                return (k, ns, ds);
            }
            let mut ns = ns;
            ds.extend(nb);
            let _ = &mut ns;
            (k / kb, ns, ds)
        }
        _ => (1.0, vec![c], vec![]),
    }
}

/// A term as it would be written: `-v[i]·W[i, j]·h[j]`, `-0.5·v[i]·L[i, k]·v[k]`,
/// `v[i]^2 / (2·sigma[i]^2)`. The leading sign is part of the string.
pub fn term_str(model: &Model, t: &Term, mul: &str) -> String {
    let (k, fs, ds) = split_coef(&t.coef);
    let units: Vec<String> = t
        .units
        .iter()
        .map(|u| unit_str(model, u, &t.vars))
        .collect();
    let coefs: Vec<String> = fs
        .iter()
        .map(|c| coef_prec(model, c, &t.vars, mul, 1))
        .collect();
    let mut parts: Vec<String> = Vec::new();
    // A constant that divides (1/2) reads better as a denominator when it is a round number.
    let (k, kden) = if k != 0.0 && (1.0 / k).fract() == 0.0 && k.abs() < 1.0 && !ds.is_empty() {
        (k.signum(), Some(1.0 / k.abs()))
    } else {
        (k, None)
    };
    if k.abs() != 1.0 || (units.is_empty() && coefs.is_empty()) {
        parts.push(num(k.abs()));
    }
    // Units first, parameters between the first unit and the rest: reads like `v·W·h`.
    let mut us = units.into_iter();
    if let Some(u0) = us.next() {
        parts.push(u0);
    }
    parts.extend(coefs);
    parts.extend(us);
    let mut body = parts.join(mul);
    if body.is_empty() {
        body = "1".into();
    }
    let mut dens: Vec<String> = kden.map(num).into_iter().collect();
    dens.extend(ds.iter().map(|c| coef_prec(model, c, &t.vars, mul, 2)));
    if !dens.is_empty() {
        let d = dens.join(mul);
        body = if dens.len() > 1 {
            format!("{body} / ({d})")
        } else {
            format!("{body} / {d}")
        };
    }
    if k < 0.0 {
        format!("-{body}")
    } else {
        body
    }
}

/// `sum_{i, j}`-style prefix listing the term's index vars, or empty.
pub fn vars_str(vars: &[IndexVar]) -> String {
    vars.iter()
        .map(|v| v.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
