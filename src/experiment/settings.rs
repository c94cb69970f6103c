//! Reading `key = value` settings and call arguments of experiment items, with diagnostics.
//! Invariant: every accessor either returns a value of the right type or records a diagnostic
//! pointing at the offending expression; nothing panics on odd input.

use crate::diag::{Diagnostic, Span};
use crate::sema::scope::did_you_mean;
use crate::syntax::ast::{Arg, Call, Expr, ExprKind, Setting};

/// Settings of one item, consumed key by key; unknown keys are reported at the end.
pub struct Settings<'a> {
    items: Vec<(
        &'a str,
        &'a Expr,
        Option<&'a crate::syntax::ast::Ramp>,
        Span,
        bool,
    )>,
    pub diags: Vec<Diagnostic>,
}

impl<'a> Settings<'a> {
    pub fn new(settings: &'a [Setting]) -> Self {
        let mut items: Vec<(
            &'a str,
            &'a Expr,
            Option<&'a crate::syntax::ast::Ramp>,
            Span,
            bool,
        )> = Vec::new();
        let mut diags = Vec::new();
        for s in settings {
            if let Some(prev) = items.iter().find(|i| i.0 == s.key.name) {
                diags.push(
                    Diagnostic::error(
                        "E0501",
                        s.key.span,
                        format!("setting `{}` given twice", s.key.name),
                    )
                    .with_label(prev.3, "first given here"),
                );
                continue;
            }
            items.push((
                s.key.name.as_str(),
                &s.value,
                s.ramp.as_ref(),
                s.key.span,
                false,
            ));
        }
        Settings { items, diags }
    }

    fn take(&mut self, key: &str) -> Option<(&'a Expr, Option<&'a crate::syntax::ast::Ramp>)> {
        let it = self.items.iter_mut().find(|i| i.0 == key)?;
        it.4 = true;
        Some((it.1, it.2))
    }

    pub fn expr(&mut self, key: &str) -> Option<&'a Expr> {
        let (e, ramp) = self.take(key)?;
        if let Some(r) = ramp {
            self.diags.push(Diagnostic::error(
                "E0502",
                r.span,
                format!("setting `{key}` cannot change during training"),
            ));
        }
        Some(e)
    }

    pub fn num(&mut self, key: &str) -> Option<f64> {
        let e = self.expr(key)?;
        num(e, key, &mut self.diags)
    }

    pub fn num_or(&mut self, key: &str, default: f64) -> f64 {
        self.num(key).unwrap_or(default)
    }

    /// A non-negative integer setting.
    pub fn count_or(&mut self, key: &str, default: usize) -> usize {
        match self.expr(key) {
            Some(e) => count(e, key, &mut self.diags).unwrap_or(default),
            None => default,
        }
    }

    pub fn string(&mut self, key: &str) -> Option<String> {
        let e = self.expr(key)?;
        string(e, key, &mut self.diags)
    }

    /// A setting that may ramp: `0.5 -> 0.9 at epoch 5` gives `(0.5, 0.9, 5)`.
    pub fn ramp(&mut self, key: &str, default: f64) -> (f64, f64, usize) {
        let Some((e, ramp)) = self.take(key) else {
            return (default, default, 0);
        };
        let start = num(e, key, &mut self.diags).unwrap_or(default);
        let Some(r) = ramp else {
            return (start, start, 0);
        };
        if r.unit.name != "epoch" {
            self.diags.push(
                Diagnostic::error(
                    "E0503",
                    r.unit.span,
                    format!("unknown ramp unit `{}`", r.unit.name),
                )
                .with_hint("write `-> END at epoch N`"),
            );
        }
        let end = num(&r.to, key, &mut self.diags).unwrap_or(start);
        let at = count(&r.at, key, &mut self.diags).unwrap_or(0);
        (start, end, at)
    }

    /// Reports keys nobody asked for, with a suggestion from `known`.
    pub fn finish(mut self, what: &str, known: &[&str]) -> Vec<Diagnostic> {
        for (k, _, _, span, used) in &self.items {
            if !used {
                let mut d =
                    Diagnostic::error("E0504", *span, format!("unknown setting `{k}` for {what}"));
                d = match did_you_mean(k, known) {
                    Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                    None => d.with_hint(format!("known settings: {}", known.join(", "))),
                };
                self.diags.push(d);
            }
        }
        self.diags
    }
}

pub fn num(e: &Expr, what: &str, diags: &mut Vec<Diagnostic>) -> Option<f64> {
    match e.num() {
        Some(x) if x.is_finite() => Some(x),
        _ => {
            diags.push(Diagnostic::error(
                "E0505",
                e.span,
                format!("`{what}` must be a number"),
            ));
            None
        }
    }
}

pub fn count(e: &Expr, what: &str, diags: &mut Vec<Diagnostic>) -> Option<usize> {
    match e.num() {
        Some(x) if x >= 0.0 && x.fract() == 0.0 && x < 1e15 => Some(x as usize),
        _ => {
            diags.push(Diagnostic::error(
                "E0505",
                e.span,
                format!("`{what}` must be a non-negative whole number"),
            ));
            None
        }
    }
}

pub fn string(e: &Expr, what: &str, diags: &mut Vec<Diagnostic>) -> Option<String> {
    match &e.kind {
        ExprKind::Str(s) => Some(s.clone()),
        _ => {
            diags.push(Diagnostic::error(
                "E0505",
                e.span,
                format!("`{what}` must be a string in quotes"),
            ));
            None
        }
    }
}

/// A call's arguments: positional ones in order, named ones by name.
pub struct Args<'a> {
    pub call: &'a Call,
    pub diags: Vec<Diagnostic>,
    used: Vec<bool>,
}

impl<'a> Args<'a> {
    pub fn new(call: &'a Call) -> Self {
        Args {
            call,
            diags: Vec::new(),
            used: vec![false; call.args.len()],
        }
    }
    fn find(&mut self, pos: usize, name: &str) -> Option<&'a Arg> {
        let by_name = self
            .call
            .args
            .iter()
            .position(|a| a.name.as_ref().is_some_and(|n| n.name == name));
        let idx = by_name.or_else(|| {
            self.call
                .args
                .iter()
                .enumerate()
                .filter(|(_, a)| a.name.is_none())
                .nth(pos)
                .map(|(i, _)| i)
        })?;
        self.used[idx] = true;
        Some(&self.call.args[idx])
    }
    pub fn num(&mut self, pos: usize, name: &str) -> Option<f64> {
        let a = self.find(pos, name)?;
        num(&a.value, name, &mut self.diags)
    }
    pub fn count(&mut self, pos: usize, name: &str) -> Option<usize> {
        let a = self.find(pos, name)?;
        count(&a.value, name, &mut self.diags)
    }
    pub fn string(&mut self, pos: usize, name: &str) -> Option<String> {
        let a = self.find(pos, name)?;
        string(&a.value, name, &mut self.diags)
    }
    pub fn expr(&mut self, pos: usize, name: &str) -> Option<&'a Expr> {
        self.find(pos, name).map(|a| &a.value)
    }
    pub fn finish(mut self) -> Vec<Diagnostic> {
        for (a, used) in self.call.args.iter().zip(&self.used) {
            if !used {
                let what = a
                    .name
                    .as_ref()
                    .map_or("positional argument".to_string(), |n| {
                        format!("argument `{}`", n.name)
                    });
                self.diags.push(Diagnostic::error(
                    "E0506",
                    a.value.span,
                    format!("unexpected {what} to `{}`", self.call.func.name),
                ));
            }
        }
        self.diags
    }
}
