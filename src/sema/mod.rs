//! Semantic analysis: one `ast::ModelDef` (plus argument values) -> one `ir::Model`.
//! Resolves arguments, constants, unit groups and parameters, expands the energy into
//! monomials (`expand`), turns them into checked terms (`terms`), adds directed conditionals
//! (`directed`) and resolves user schedules. Never stops at the first error: it returns the
//! model it could build together with every diagnostic; a caller must not use the model when
//! any diagnostic is an error.

mod decl;
mod directed;
pub mod expand;
mod index;
pub mod scope;
pub mod terms;

use crate::diag::{Diagnostic, SourceMap, Span};
use crate::ir::{self, Model, Origin};
use crate::syntax::ast::{Expr, ExprKind, ModelDef, Stmt};
use expand::{Expander, VarTable};
use scope::Scope;
use terms::TermBuilder;

/// Largest size of one axis.
pub const MAX_DIM: f64 = (1u64 << 30) as f64;
/// Largest number of elements of one tensor.
pub const MAX_ELEMS: usize = 1 << 30;

/// Everything needed to compile one model besides its definition.
pub struct ModelInput<'a> {
    pub def: &'a ModelDef,
    /// the name the model gets (an alias or instance name, else the definition's)
    pub name: String,
    pub doc: String,
    /// argument values from `model small = rbm(nv = 16)`, with their spans
    pub arg_values: Vec<(String, f64, Span)>,
    /// top-level `const`s visible in the model
    pub globals: &'a [(String, f64, Span)],
    /// `--set name=value` overrides (applied to arguments and model-level constants)
    pub overrides: &'a [(String, f64)],
}

/// Output of `check_model`: the model (valid only if `diags` has no error) and which
/// overrides were used.
pub struct Checked {
    pub model: Model,
    pub diags: Vec<Diagnostic>,
    pub used_overrides: Vec<String>,
}

pub fn check_model(input: &ModelInput, sources: &SourceMap) -> Checked {
    let mut cx = decl::Cx {
        model: Model {
            doc: input.doc.clone(),
            ..Model::empty(input.name.clone(), input.def.span)
        },
        scope: Scope::default(),
        diags: vec![],
        used_overrides: vec![],
        sources,
    };
    cx.args(input);
    cx.declarations(input.def, input.overrides);
    let mut vars = VarTable::default();
    for st in &input.def.stmts {
        if let Stmt::Energy(en) = st {
            // Register index names first so `i * v[i]` reports `i` as an index variable used
            // as a value rather than as an unknown name.
            index_names(&en.expr, &cx.scope, &mut vars);
            let poly = {
                let mut ex = Expander {
                    scope: &cx.scope,
                    groups: &cx.model.groups,
                    params: &cx.model.params,
                    vars: &mut vars,
                    diags: &mut cx.diags,
                    sources,
                };
                ex.expand(&en.expr)
            };
            let Some(poly) = poly else { continue };
            let poly = expand::combine(poly, &cx.model.groups);
            let mut tb = TermBuilder {
                groups: &cx.model.groups,
                var_names: &vars.names,
                diags: &mut cx.diags,
                sources,
            };
            let terms: Vec<ir::Term> = poly
                .iter()
                .filter_map(|m| tb.term(m, &[], Origin::Energy))
                .collect();
            cx.model.terms.extend(terms);
        }
    }
    directed::conditionals(&mut cx, input.def, &mut vars);
    cx.schedules(input.def);
    dedup(&mut cx.diags);
    Checked {
        model: cx.model,
        diags: cx.diags,
        used_overrides: cx.used_overrides,
    }
}

/// Registers every plain name written inside index brackets of `e` as an index variable.
fn index_names(e: &Expr, scope: &Scope, vars: &mut VarTable) {
    fn in_index(e: &Expr, scope: &Scope, vars: &mut VarTable) {
        match &e.kind {
            ExprKind::Name(n) if scope.get(n).is_none() => {
                vars.id(n);
            }
            _ => walk(e, &mut |x| in_index(x, scope, vars)),
        }
    }
    match &e.kind {
        ExprKind::Index(_, idx) => idx.iter().for_each(|x| in_index(x, scope, vars)),
        _ => walk(e, &mut |x| index_names(x, scope, vars)),
    }
}

/// Calls `f` on each direct subexpression of `e`.
fn walk(e: &Expr, f: &mut dyn FnMut(&Expr)) {
    match &e.kind {
        ExprKind::Num(_) | ExprKind::Str(_) | ExprKind::Name(_) | ExprKind::Field(..) => {}
        ExprKind::Index(_, xs) | ExprKind::Pipe(xs) => xs.iter().for_each(f),
        ExprKind::Call(c) => c.args.iter().for_each(|a| f(&a.value)),
        ExprKind::Neg(a) => f(a),
        ExprKind::Sum(xs) => xs.iter().for_each(|x| f(&x.1)),
        ExprKind::Product(xs) => xs.iter().for_each(|x| f(&x.1)),
        ExprKind::Pow(a, b) => {
            f(a);
            f(b)
        }
    }
}

/// Removes repeated diagnostics (the same index site appears in many expanded monomials).
pub fn dedup(diags: &mut Vec<Diagnostic>) {
    let mut seen: Vec<(&'static str, Span, String)> = Vec::new();
    diags.retain(|d| {
        let key = (d.code, d.span, d.message.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
}

/// "1 axis", "3 axes".
pub fn axes(n: usize) -> String {
    if n == 1 {
        "1 axis".into()
    } else {
        format!("{n} axes")
    }
}
