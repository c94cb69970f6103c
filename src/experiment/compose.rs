//! Composition of trained models, the part of experiments that builds deep models out of
//! shallow ones: `features(model, data)` (the up-pass: a trained model's hidden means as a
//! new data set), `init = params(W1 = rbm1.W, ...)` (a model's parameters taken from models
//! trained earlier in the file) and `finetune a -> b -> c on data { ... }` (a classifier
//! initialised from a stack of trained models).
//!
//! Invariant: like the rest of `experiment`, nothing here touches the disk; every reference to
//! a model or data set is checked to exist when the item is read, and shapes are checked
//! by the runner, which knows the compiled models.

use super::settings::{Args, Settings};
use super::{check_data_ref, target_spec, Experiment, TargetSpec};
use crate::diag::{Diagnostic, Span};
use crate::front::Program;
use crate::syntax::ast::{self, Expr, ExprKind, MulOp};
use std::path::PathBuf;

/// One parameter of the model being trained, set from parameters of trained models:
/// `name = Σ scale · model.param`.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInit {
    pub param: String,
    pub parts: Vec<(f64, String, String)>,
    pub span: Span,
}

/// `finetune a -> b -> c on train { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct FinetuneSpec {
    /// the trained models, bottom first; a single model with several hidden layers (a DBM)
    /// gives the layers of its own chain
    pub stack: Vec<TargetSpec>,
    pub data: String,
    /// labelled data to report the classification error on after each epoch
    pub test: Option<String>,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub seed: u64,
    pub save: Option<PathBuf>,
    pub span: Span,
}

pub const FINETUNE_KEYS: &[&str] = &[
    "test",
    "epochs",
    "batch",
    "lr",
    "momentum",
    "weight_decay",
    "seed",
    "save",
];

/// Reads `init = params(W1 = rbm1.W, b1 = rbm1.b + rbm2.a, W2 = 0.5 * rbm2.W)`.
pub fn param_inits(e: &Expr, program: &Program, diags: &mut Vec<Diagnostic>) -> Vec<ParamInit> {
    let hint = "write `init = params(W1 = rbm1.W, b1 = rbm1.b)`: each parameter from parameters of models trained earlier";
    let ExprKind::Call(c) = &e.kind else {
        diags.push(
            Diagnostic::error("E0505", e.span, "`init` must be `params(...)`").with_hint(hint),
        );
        return Vec::new();
    };
    if c.func.name != "params" {
        diags.push(
            Diagnostic::error("E0505", c.func.span, "`init` must be `params(...)`").with_hint(hint),
        );
        return Vec::new();
    }
    let mut out: Vec<ParamInit> = Vec::new();
    for a in &c.args {
        let Some(name) = &a.name else {
            diags.push(
                Diagnostic::error(
                    "E0506",
                    a.value.span,
                    "each argument of `params` needs a name",
                )
                .with_hint(hint),
            );
            continue;
        };
        if out.iter().any(|p| p.param == name.name) {
            diags.push(Diagnostic::error(
                "E0501",
                name.span,
                format!("parameter `{}` initialised twice", name.name),
            ));
            continue;
        }
        let mut parts = Vec::new();
        if linear_fields(&a.value, 1.0, &mut parts, program, diags) {
            out.push(ParamInit {
                param: name.name.clone(),
                parts,
                span: a.value.span,
            });
        }
    }
    out
}

/// Flattens `k * m.p + m2.q - ...` into `(k, m, p)` parts; false (with a diagnostic) otherwise.
fn linear_fields(
    e: &Expr,
    k: f64,
    out: &mut Vec<(f64, String, String)>,
    program: &Program,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    match &e.kind {
        ExprKind::Field(m, p) => {
            if program.model(&m.name).is_none() {
                diags.push(Diagnostic::error(
                    "E0509",
                    m.span,
                    format!("unknown model `{}`", m.name),
                ));
                return false;
            }
            out.push((k, m.name.clone(), p.name.clone()));
            true
        }
        ExprKind::Neg(a) => linear_fields(a, -k, out, program, diags),
        ExprKind::Sum(xs) => xs
            .iter()
            .all(|(neg, x)| linear_fields(x, if *neg { -k } else { k }, out, program, diags)),
        ExprKind::Product(xs) => {
            // exactly one factor is a field expression; the others are numbers
            let mut scale = k;
            let mut field = None;
            for (op, x) in xs {
                match (op, x.num()) {
                    (MulOp::Mul, Some(v)) => scale *= v,
                    (MulOp::Div, Some(v)) if v != 0.0 => scale /= v,
                    (MulOp::Mul, None) if field.is_none() => field = Some(x),
                    _ => {
                        diags.push(
                            Diagnostic::error(
                                "E0505",
                                x.span,
                                "only `number * model.param` products are allowed here",
                            )
                            .with_hint("e.g. `W2 = 0.5 * rbm2.W`"),
                        );
                        return false;
                    }
                }
            }
            match field {
                Some(f) => linear_fields(f, scale, out, program, diags),
                None => {
                    diags.push(Diagnostic::error(
                        "E0505",
                        e.span,
                        "expected a trained parameter such as `rbm1.W`",
                    ));
                    false
                }
            }
        }
        _ => {
            diags.push(
                Diagnostic::error(
                    "E0505",
                    e.span,
                    "expected a trained parameter such as `rbm1.W`",
                )
                .with_hint("a parameter of a model trained earlier in this file: `MODEL.PARAM`"),
            );
            false
        }
    }
}

/// `features(rbm1, train, group = h)`: the model and data it reads, checked.
pub fn features_source(
    c: &ast::Call,
    program: &Program,
    ex: &Experiment,
    diags: &mut Vec<Diagnostic>,
) -> Option<super::Source> {
    let mut a = Args::new(c);
    let model = a.expr(0, "model");
    let data = a.expr(1, "data");
    let group = a.expr(2, "group");
    diags.extend(a.finish());
    let hint = "write `features(MODEL, DATA)` or `features(MODEL, DATA, group = h2)`";
    let name_of =
        |e: Option<&Expr>, what: &str, diags: &mut Vec<Diagnostic>| match e.map(|e| &e.kind) {
            Some(ExprKind::Name(n)) => Some(n.clone()),
            Some(ExprKind::Call(c)) if what == "model" => Some(c.func.name.clone()),
            _ => {
                diags.push(
                    Diagnostic::error(
                        "E0511",
                        e.map_or(c.span, |e| e.span),
                        format!("`features` needs a {what} name"),
                    )
                    .with_hint(hint),
                );
                None
            }
        };
    let model_e = model;
    let model = name_of(model, "model", diags)?;
    let target = match model_e.map(|e| &e.kind) {
        Some(ExprKind::Call(call)) => ast::Target {
            name: call.func.clone(),
            args: call.args.clone(),
            span: call.span,
        },
        _ => ast::Target {
            name: ast::Ident {
                name: model,
                span: model_e.map_or(c.span, |e| e.span),
            },
            args: vec![],
            span: model_e.map_or(c.span, |e| e.span),
        },
    };
    let target = target_spec(&target, program, diags)?;
    let data_name = name_of(data, "data", diags)?;
    check_data_ref(
        &ast::Ident {
            name: data_name.clone(),
            span: data.map_or(c.span, |e| e.span),
        },
        ex,
        diags,
    );
    let group = match group.map(|e| &e.kind) {
        None => None,
        Some(ExprKind::Name(g)) => Some(g.clone()),
        Some(_) => {
            diags.push(Diagnostic::error(
                "E0511",
                group.map_or(c.span, |e| e.span),
                "`group` must name a hidden group of the model",
            ));
            None
        }
    };
    Some(super::Source::Features {
        target,
        data: data_name,
        group,
    })
}

/// Reads a `finetune` item.
pub fn finetune_spec(
    stack: &[ast::Target],
    data: &ast::Ident,
    settings: &[ast::Setting],
    span: Span,
    program: &Program,
    ex: &Experiment,
    diags: &mut Vec<Diagnostic>,
) -> Option<FinetuneSpec> {
    let targets: Vec<Option<TargetSpec>> = stack
        .iter()
        .map(|t| target_spec(t, program, diags))
        .collect();
    check_data_ref(data, ex, diags);
    let mut s = Settings::new(settings);
    let test = s.expr("test").and_then(|e| match &e.kind {
        ExprKind::Name(n) if ex.data(n).is_some() => Some(n.clone()),
        _ => {
            s.diags.push(Diagnostic::error(
                "E0508",
                e.span,
                "`test` must name a labelled data set",
            ));
            None
        }
    });
    let spec = FinetuneSpec {
        stack: Vec::new(),
        data: data.name.clone(),
        test,
        epochs: s.count_or("epochs", 10),
        batch: s.count_or("batch", 100).max(1),
        lr: s.num_or("lr", 0.1),
        momentum: s.num_or("momentum", 0.9),
        weight_decay: s.num_or("weight_decay", 0.0),
        seed: s.count_or("seed", 0) as u64,
        save: s.string("save").map(PathBuf::from),
        span,
    };
    diags.extend(s.finish("`finetune`", FINETUNE_KEYS));
    let stack: Option<Vec<TargetSpec>> = targets.into_iter().collect();
    Some(FinetuneSpec {
        stack: stack?,
        ..spec
    })
}

/// The `samples` setting of `evaluate`: ancestral samples from the up-pass per example for
/// the DBN bound of a stack (default 10). A stack also needs `logz`, since the bound is
/// `... - log Z_top`; `samples` on a single model is an error (its log-likelihood is exact
/// given `log Z`, nothing is sampled).
pub fn dbn_samples(
    s: &mut Settings,
    top: &ast::Target,
    n_below: usize,
    logz: &Option<super::LogZMethod>,
    span: Span,
) -> usize {
    let e = s.expr("samples");
    let given = e.map(|e| e.span);
    let samples = e
        .and_then(|e| super::settings::count(e, "samples", &mut s.diags))
        .unwrap_or(10);
    if n_below == 0 {
        if let Some(sp) = given {
            s.diags.push(
                Diagnostic::error("E0505", sp, "`samples` only applies to a stack of models")
                    .with_hint(format!(
                        "write `evaluate rbm1 -> {} on DATA {{ ... }}` for a DBN's bound; a single RBM's log-likelihood is exact given log Z",
                        top.name.name
                    )),
            );
        }
        return samples;
    }
    if samples == 0 {
        s.diags.push(Diagnostic::error(
            "E0505",
            given.unwrap_or(span),
            "`samples` must be at least 1",
        ));
    }
    if logz.is_none() {
        s.diags.push(
            Diagnostic::error(
                "E0505",
                span,
                "the DBN bound of a stack needs the top RBM's log Z",
            )
            .with_hint("add `logz = ais(runs = 100, betas = 14500)` or `logz = exact`"),
        );
    }
    samples
}
