//! Experiments: the `data`, `train`, `sample` and `evaluate` items of a `.ebm` file turned
//! into typed specifications the runner executes.
//!
//! Invariant: `interpret` never touches the disk; it only checks that every setting is known,
//! well-typed and refers to declared data and models, reporting each problem with its span.
//! Paths are resolved relative to the `.ebm` file's directory.

mod compose;
mod settings;

pub use compose::{FinetuneSpec, ParamInit};

use crate::diag::{Diagnostic, Span};
use crate::front::Program;
use crate::runtime::batch::Binarize;
use crate::syntax::ast::{self, Expr, ExprKind, MulOp};
use crate::train::{Centering, LrSchedule, Method, Sparsity, Step, TrainConfig};
use settings::{Args, Settings};
use std::path::{Path, PathBuf};

/// Where examples come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// MNIST IDX images, optional labels
    Idx {
        images: PathBuf,
        labels: Option<PathBuf>,
    },
    Npy {
        path: PathBuf,
    },
    Npz {
        path: PathBuf,
        array: String,
    },
    Csv {
        path: PathBuf,
        label_last: bool,
    },
    /// rows of several data sets one after another
    Concat(Vec<DataSpec>),
    /// the up-pass: a trained model's hidden means (mean field) given a data set on its
    /// visible units, as a new data set with the same labels
    Features {
        target: TargetSpec,
        data: String,
        /// one hidden group (default: every hidden group, side by side)
        group: Option<String>,
    },
}

/// `data NAME = SOURCE / SCALE |> binarize(..) |> take(n)`.
#[derive(Clone, Debug, PartialEq)]
pub struct DataSpec {
    pub source: Box<Source>,
    pub divide_by: f32,
    pub binarize: Binarize,
    pub take: Option<usize>,
    /// examples dropped from the front (before `take`): `|> skip(50000)` holds out the rest
    pub skip: usize,
    /// each example's columns repeated this many times, after binarization (data for a
    /// model with tied copies of its visible units, as in DBM pretraining)
    pub tile: usize,
    pub span: Span,
}

/// A named data set.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedData {
    pub name: String,
    pub spec: DataSpec,
}

/// The model an item runs, with its argument overrides (`rbm(nh = 500)`).
#[derive(Clone, Debug, PartialEq)]
pub struct TargetSpec {
    pub model: String,
    pub overrides: Vec<(String, f64)>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TrainSpec {
    pub target: TargetSpec,
    pub data: String,
    pub config: TrainConfig,
    /// parameter seed (initialisers)
    pub init_seed: u64,
    /// where the trained parameters go (`.npz`)
    pub save: Option<PathBuf>,
    /// parameters taken from models trained earlier (`init = params(...)`)
    pub init: Vec<ParamInit>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SampleSpec {
    /// the model Gibbs runs on (a DBN's top RBM)
    pub target: TargetSpec,
    /// models below it, bottom first: one ancestral pass `p(v | h)` down through them
    pub down: Vec<TargetSpec>,
    pub chains: usize,
    pub steps: usize,
    /// sweeps before the `.npy` trajectory starts (the last state is always kept)
    pub burn_in: usize,
    /// keep every `every`-th state after burn-in in the `.npy` trajectory
    pub every: usize,
    pub seed: u64,
    /// start chains from this data set instead of noise
    pub init_data: Option<String>,
    pub save: Option<PathBuf>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LogZMethod {
    Exact,
    /// annealed importance sampling: `runs` particles, `betas` intermediate distributions
    /// (`None`: the Salakhutdinov & Murray 2008 schedule of 14,500)
    Ais {
        runs: usize,
        betas: Option<usize>,
        /// the base model's hidden biases: from the data's mean-field posterior marginals
        /// (`true`, the default) or zero (`hidden = "uniform"`)
        posterior_base: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct EvalSpec {
    /// the model evaluated; with `down` non-empty, the top RBM of a DBN
    pub target: TargetSpec,
    /// models below the target, bottom first: `evaluate rbm1 -> rbm2 -> top on test` bounds
    /// the DBN's log-likelihood (`eval::dbn`)
    pub down: Vec<TargetSpec>,
    /// samples from the up-pass `q` per example for the DBN bound
    pub samples: usize,
    pub data: String,
    pub logz: Option<LogZMethod>,
    /// data set the AIS base rate is fitted to (default: the training data of the target)
    pub base: Option<String>,
    pub seed: u64,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Train(TrainSpec),
    Sample(SampleSpec),
    Evaluate(EvalSpec),
    Finetune(FinetuneSpec),
}

/// Everything a file asks to run, in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Experiment {
    pub data: Vec<NamedData>,
    pub actions: Vec<Action>,
}

impl Experiment {
    pub fn data(&self, name: &str) -> Option<&DataSpec> {
        self.data.iter().find(|d| d.name == name).map(|d| &d.spec)
    }
}

const TRAIN_KEYS: &[&str] = &[
    "method",
    "batch",
    "epochs",
    "lr",
    "lr_schedule",
    "momentum",
    "weight_decay",
    "sparsity",
    "centering",
    "seed",
    "init_seed",
    "init",
    "save",
];
const SAMPLE_KEYS: &[&str] = &[
    "chains", "steps", "burn_in", "every", "seed", "init", "save",
];
const EVAL_KEYS: &[&str] = &["logz", "base", "seed", "samples"];

/// Checks and types every experiment item of a compiled program.
pub fn interpret(program: &Program, base_dir: &Path) -> (Experiment, Vec<Diagnostic>) {
    let mut ex = Experiment::default();
    let mut diags = Vec::new();
    for item in &program.experiments {
        match item {
            ast::Experiment::Data {
                name, value, span, ..
            } => {
                if ex.data.iter().any(|d| d.name == name.name) {
                    diags.push(Diagnostic::error(
                        "E0507",
                        name.span,
                        format!("data `{}` defined twice", name.name),
                    ));
                    continue;
                }
                if let Some(spec) = data_spec(value, base_dir, program, &ex, &mut diags) {
                    ex.data.push(NamedData {
                        name: name.name.clone(),
                        spec: DataSpec {
                            span: *span,
                            ..spec
                        },
                    });
                }
            }
            ast::Experiment::Train {
                target,
                data,
                settings,
                span,
                ..
            } => {
                let t = target_spec(target, program, &mut diags);
                check_data_ref(data, &ex, &mut diags);
                let mut s = Settings::new(settings);
                let config = train_config(&mut s, &mut diags);
                let init_seed = s.count_or("init_seed", 0) as u64;
                let init = s
                    .expr("init")
                    .map(|e| compose::param_inits(e, program, &mut diags))
                    .unwrap_or_default();
                let save = s.string("save").map(PathBuf::from);
                diags.extend(s.finish("`train`", TRAIN_KEYS));
                if let Some(target) = t {
                    ex.actions.push(Action::Train(TrainSpec {
                        target,
                        data: data.name.clone(),
                        config,
                        init_seed,
                        save,
                        init,
                        span: *span,
                    }));
                }
            }
            ast::Experiment::Sample {
                target,
                down,
                settings,
                span,
                ..
            } => {
                let t = target_spec(target, program, &mut diags);
                let down: Vec<TargetSpec> = down
                    .iter()
                    .filter_map(|t| target_spec(t, program, &mut diags))
                    .collect();
                let mut s = Settings::new(settings);
                let chains = s.count_or("chains", 100).max(1);
                let steps = s.count_or("steps", 1000);
                let burn_in = s.count_or("burn_in", 0);
                let every = s.count_or("every", 100).max(1);
                let seed = s.count_or("seed", 0) as u64;
                let init_data = match s.expr("init") {
                    None => None,
                    Some(e) => match &e.kind {
                        ExprKind::Name(n) if n == "noise" => None,
                        ExprKind::Name(n) => {
                            if ex.data(n).is_none() {
                                diags.push(Diagnostic::error(
                                    "E0508",
                                    e.span,
                                    format!("unknown data `{n}`"),
                                ));
                            }
                            Some(n.clone())
                        }
                        _ => {
                            diags.push(
                                Diagnostic::error(
                                    "E0505",
                                    e.span,
                                    "`init` must be `noise` or a data name",
                                )
                                .with_hint("write `init = noise` or `init = test`"),
                            );
                            None
                        }
                    },
                };
                let save = s.string("save").map(PathBuf::from);
                diags.extend(s.finish("`sample`", SAMPLE_KEYS));
                if let Some(target) = t {
                    ex.actions.push(Action::Sample(SampleSpec {
                        target,
                        down,
                        chains,
                        steps,
                        burn_in,
                        every,
                        seed,
                        init_data,
                        save,
                        span: *span,
                    }));
                }
            }
            ast::Experiment::Evaluate {
                target,
                down,
                data,
                settings,
                span,
                ..
            } => {
                let t = target_spec(target, program, &mut diags);
                let down: Vec<TargetSpec> = down
                    .iter()
                    .filter_map(|t| target_spec(t, program, &mut diags))
                    .collect();
                check_data_ref(data, &ex, &mut diags);
                let mut s = Settings::new(settings);
                let logz = s.expr("logz").and_then(|e| logz_method(e, &mut diags));
                let base = s.expr("base").and_then(|e| match &e.kind {
                    ExprKind::Name(n) if ex.data(n).is_some() => Some(n.clone()),
                    _ => {
                        diags.push(Diagnostic::error(
                            "E0508",
                            e.span,
                            "`base` must name a data set",
                        ));
                        None
                    }
                });
                let seed = s.count_or("seed", 0) as u64;
                let samples = compose::dbn_samples(&mut s, target, down.len(), &logz, *span);
                diags.extend(s.finish("`evaluate`", EVAL_KEYS));
                if let Some(target) = t {
                    ex.actions.push(Action::Evaluate(EvalSpec {
                        target,
                        down,
                        samples,
                        data: data.name.clone(),
                        logz,
                        base,
                        seed,
                        span: *span,
                    }));
                }
            }
            ast::Experiment::Finetune {
                stack,
                data,
                settings,
                span,
                ..
            } => {
                if let Some(f) =
                    compose::finetune_spec(stack, data, settings, *span, program, &ex, &mut diags)
                {
                    ex.actions.push(Action::Finetune(f));
                }
            }
        }
    }
    (ex, diags)
}

pub(crate) fn check_data_ref(data: &ast::Ident, ex: &Experiment, diags: &mut Vec<Diagnostic>) {
    if ex.data(&data.name).is_none() {
        let names: Vec<&str> = ex.data.iter().map(|d| d.name.as_str()).collect();
        let mut d = Diagnostic::error("E0508", data.span, format!("unknown data `{}`", data.name));
        if let Some(s) = crate::sema::scope::did_you_mean(&data.name, &names) {
            d = d.with_hint(format!("did you mean `{s}`?"));
        } else {
            d = d.with_hint("declare it first: `data NAME = idx(\"file.gz\") / 255`");
        }
        diags.push(d);
    }
}

pub(crate) fn target_spec(
    t: &ast::Target,
    program: &Program,
    diags: &mut Vec<Diagnostic>,
) -> Option<TargetSpec> {
    if program.model(&t.name.name).is_none() {
        let names: Vec<&str> = program.models.iter().map(|m| m.name.as_str()).collect();
        let mut d = Diagnostic::error(
            "E0509",
            t.name.span,
            format!("unknown model `{}`", t.name.name),
        );
        if let Some(s) = crate::sema::scope::did_you_mean(&t.name.name, &names) {
            d = d.with_hint(format!("did you mean `{s}`?"));
        } else {
            d = d.with_hint("define it in this file or import it with `use NAME`");
        }
        diags.push(d);
        return None;
    }
    let mut overrides = Vec::new();
    for a in &t.args {
        match (&a.name, a.value.num()) {
            (Some(n), Some(x)) => overrides.push((n.name.clone(), x)),
            _ => diags.push(
                Diagnostic::error(
                    "E0505",
                    a.value.span,
                    "model arguments must be `name = number`",
                )
                .with_hint("e.g. `rbm(nh = 500)`"),
            ),
        }
    }
    Some(TargetSpec {
        model: t.name.name.clone(),
        overrides,
        span: t.span,
    })
}

fn train_config(s: &mut Settings, diags: &mut Vec<Diagnostic>) -> TrainConfig {
    let d = TrainConfig::default();
    let method = match s.expr("method") {
        None => d.method.clone(),
        Some(e) => method(e, diags).unwrap_or(d.method.clone()),
    };
    let (m0, m1, at) = s.ramp("momentum", 0.0);
    let lr_schedule = match s.expr("lr_schedule") {
        None => LrSchedule::Constant,
        Some(e) => match &e.kind {
            ExprKind::Str(m) | ExprKind::Name(m) if m == "constant" => LrSchedule::Constant,
            ExprKind::Str(m) | ExprKind::Name(m) if m == "linear" => LrSchedule::LinearToZero,
            _ => {
                diags.push(
                    Diagnostic::error("E0505", e.span, "unknown lr_schedule").with_hint(
                        "use `constant` or `linear` (decays to zero at the last update)",
                    ),
                );
                LrSchedule::Constant
            }
        },
    };
    let sparsity = s.expr("sparsity").and_then(|e| match &e.kind {
        ExprKind::Call(c) if c.func.name == "target" => {
            let mut a = Args::new(c);
            let target = a.num(0, "p");
            let cost = a.num(1, "cost").unwrap_or(0.1);
            let decay = a.num(2, "decay").unwrap_or(0.9);
            diags.extend(a.finish());
            target.map(|target| Sparsity {
                target,
                cost,
                decay,
            })
        }
        _ => {
            diags.push(
                Diagnostic::error("E0505", e.span, "`sparsity` must be `target(p, cost = c)`")
                    .with_hint("e.g. `sparsity = target(0.05, cost = 0.1)`"),
            );
            None
        }
    });
    let centering = s.expr("centering").and_then(|e| {
        let c = centering(e, diags)?;
        if matches!(
            method,
            Method::PseudoLikelihood { .. } | Method::RatioMatching { .. }
        ) {
            diags.push(
                Diagnostic::error(
                    "E0505",
                    e.span,
                    "centering needs a positive and a negative phase",
                )
                .with_hint("use it with `cd`, `pcd` or `pt`"),
            );
            return None;
        }
        Some(c)
    });
    TrainConfig {
        method,
        batch: s.count_or("batch", d.batch),
        epochs: s.count_or("epochs", d.epochs),
        lr: s.num_or("lr", d.lr),
        lr_schedule,
        momentum: Step {
            start: m0,
            end: m1,
            at_epoch: at,
        },
        weight_decay: s.num_or("weight_decay", 0.0),
        sparsity,
        centering,
        seed: s.count_or("seed", 0) as u64,
        max_abs_param: d.max_abs_param,
    }
}

/// `centering = true | false | ema(rate = 0.01)`: the centering trick's offsets follow a moving
/// average of the positive-phase means with sliding factor `rate` (`true` is `rate = 0.01`).
fn centering(e: &Expr, diags: &mut Vec<Diagnostic>) -> Option<Centering> {
    let bad = |diags: &mut Vec<Diagnostic>, span| {
        diags.push(
            Diagnostic::error(
                "E0505",
                span,
                "`centering` must be `true`, `false` or `ema(rate = r)`",
            )
            .with_hint("e.g. `centering = ema(rate = 0.01)` (0 <= rate <= 1)"),
        );
        None
    };
    match &e.kind {
        ExprKind::Name(n) if n == "true" => Some(Centering::default()),
        ExprKind::Name(n) if n == "false" => None,
        ExprKind::Call(c) if c.func.name == "ema" => {
            let mut a = Args::new(c);
            let rate = a.num(0, "rate").unwrap_or(Centering::default().rate);
            diags.extend(a.finish());
            if (0.0..=1.0).contains(&rate) {
                Some(Centering { rate })
            } else {
                bad(diags, e.span)
            }
        }
        _ => bad(diags, e.span),
    }
}

fn method(e: &Expr, diags: &mut Vec<Diagnostic>) -> Option<Method> {
    let (name, call) = match &e.kind {
        ExprKind::Name(n) => (n.as_str(), None),
        ExprKind::Call(c) => (c.func.name.as_str(), Some(c)),
        _ => ("", None),
    };
    let empty = ast::Call {
        func: ast::Ident {
            name: name.into(),
            span: e.span,
        },
        args: vec![],
        span: e.span,
    };
    let mut a = Args::new(call.unwrap_or(&empty));
    let m = match name {
        "cd" => {
            // `cd(k = 1, k_end = 25, every = 2, lr_over_k = 1, reconstruction = "mean")`: k
            // rising by one every `every` epochs up to `k_end` (Salakhutdinov & Murray's
            // CD25), optionally with the learning rate divided by k, and the last visible step
            // as conditional means (`rbm.m`); the named-only arguments use positions no call
            // has
            let k = a.count(0, "k").unwrap_or(1).max(1);
            let k_end = a.count(usize::MAX, "k_end");
            let every = a.count(usize::MAX, "every");
            let lr_over_k = a.count(usize::MAX, "lr_over_k");
            let recon = a.expr(usize::MAX, "reconstruction");
            let mean = match recon.map(|e| (e, &e.kind)) {
                None => false,
                Some((_, ExprKind::Str(m) | ExprKind::Name(m))) if m == "mean" => true,
                Some((_, ExprKind::Str(m) | ExprKind::Name(m))) if m == "sample" => false,
                Some((e, _)) => {
                    diags.push(
                        Diagnostic::error("E0505", e.span, "unknown reconstruction")
                            .with_hint("use \"sample\" (default) or \"mean\""),
                    );
                    false
                }
            };
            if k_end.is_none() && every.is_none() && lr_over_k.is_none() && recon.is_none() {
                Some(Method::Cd { k })
            } else {
                Some(Method::CdSchedule {
                    k_start: k,
                    k_end: k_end.unwrap_or(k).max(k),
                    every: every.unwrap_or(1).max(1),
                    lr_over_k: lr_over_k.unwrap_or(0) > 0,
                    mean_reconstruction: mean,
                })
            }
        }
        "pcd" | "sml" => Some(Method::Pcd {
            k: a.count(1, "k").unwrap_or(1).max(1),
            chains: a.count(0, "chains").unwrap_or(100).max(1),
        }),
        "pt" => Some(Method::Pt {
            k: a.count(2, "k").unwrap_or(1).max(1),
            chains: a.count(0, "chains").unwrap_or(100).max(1),
            temps: a.count(1, "temps").unwrap_or(10),
            min_beta: a.num(3, "min_beta").unwrap_or(0.1),
        }),
        "pseudo_likelihood" | "pl" => Some(Method::PseudoLikelihood {
            sites: a.count(0, "sites"),
        }),
        "ratio_matching" | "rm" => Some(Method::RatioMatching {
            sites: a.count(0, "sites"),
        }),
        _ => {
            diags.push(
                Diagnostic::error("E0510", e.span, "unknown training method")
                    .with_hint("use cd(k = 1), pcd(chains = 100, k = 1), pt(chains, temps), pseudo_likelihood or ratio_matching"),
            );
            None
        }
    };
    diags.extend(a.finish());
    m
}

fn logz_method(e: &Expr, diags: &mut Vec<Diagnostic>) -> Option<LogZMethod> {
    match &e.kind {
        ExprKind::Name(n) if n == "exact" => Some(LogZMethod::Exact),
        ExprKind::Call(c) if c.func.name == "exact" && c.args.is_empty() => Some(LogZMethod::Exact),
        ExprKind::Call(c) if c.func.name == "ais" => {
            let mut a = Args::new(c);
            let runs = a.count(0, "runs").unwrap_or(100).max(1);
            let betas = a.count(1, "betas");
            // `hidden = "posterior"` (default) or `"uniform"`: see eval::base_from_posterior
            let posterior_base = match a.expr(2, "hidden").map(|e| (e, &e.kind)) {
                None => true,
                Some((_, ExprKind::Str(m) | ExprKind::Name(m))) if m == "posterior" => true,
                Some((_, ExprKind::Str(m) | ExprKind::Name(m))) if m == "uniform" => false,
                Some((e, _)) => {
                    diags.push(
                        Diagnostic::error("E0505", e.span, "unknown AIS hidden base")
                            .with_hint("use \"posterior\" (default) or \"uniform\""),
                    );
                    true
                }
            };
            diags.extend(a.finish());
            Some(LogZMethod::Ais {
                runs,
                betas,
                posterior_base,
            })
        }
        _ => {
            diags.push(
                Diagnostic::error("E0510", e.span, "unknown log Z method")
                    .with_hint("use `exact` or `ais(runs = 100, betas = 14500)`"),
            );
            None
        }
    }
}

/// Data expressions: a loader call, then `/ k` scaling, then a `|>` chain of transforms.
fn data_spec(
    e: &Expr,
    base: &Path,
    program: &Program,
    ex: &Experiment,
    diags: &mut Vec<Diagnostic>,
) -> Option<DataSpec> {
    match &e.kind {
        ExprKind::Pipe(stages) => {
            let (first, rest) = stages.split_first()?;
            let mut spec = data_spec(first, base, program, ex, diags)?;
            for st in rest {
                transform(&mut spec, st, diags);
            }
            Some(spec)
        }
        ExprKind::Product(ops) => {
            let (first, rest) = ops.split_first()?;
            let mut spec = data_spec(&first.1, base, program, ex, diags)?;
            for (op, x) in rest {
                match (op, x.num()) {
                    (MulOp::Div, Some(k)) if k > 0.0 => spec.divide_by *= k as f32,
                    _ => diags.push(
                        Diagnostic::error(
                            "E0511",
                            x.span,
                            "data can only be divided by a positive number",
                        )
                        .with_hint("e.g. `idx(\"images.gz\") / 255`"),
                    ),
                }
            }
            Some(spec)
        }
        ExprKind::Name(n) => match ex.data(n) {
            Some(d) => Some(d.clone()),
            None => {
                diags.push(Diagnostic::error(
                    "E0508",
                    e.span,
                    format!("unknown data `{n}`"),
                ));
                None
            }
        },
        ExprKind::Call(c) => loader(c, base, program, ex, diags),
        _ => {
            diags.push(
                Diagnostic::error("E0511", e.span, "not a data expression")
                    .with_hint("use idx(\"file.gz\"), npy(\"file.npy\"), npz(\"file.npz\", \"name\"), csv(\"file.csv\") or concat(a, b)"),
            );
            None
        }
    }
}

fn plain(source: Source, span: Span) -> DataSpec {
    DataSpec {
        source: Box::new(source),
        divide_by: 1.0,
        binarize: Binarize::None,
        take: None,
        skip: 0,
        tile: 1,
        span,
    }
}

fn loader(
    c: &ast::Call,
    base: &Path,
    program: &Program,
    ex: &Experiment,
    diags: &mut Vec<Diagnostic>,
) -> Option<DataSpec> {
    let mut a = Args::new(c);
    let path = |a: &mut Args, pos, name| a.string(pos, name).map(|p| base.join(p));
    let src = match c.func.name.as_str() {
        "idx" => path(&mut a, 0, "images").map(|images| Source::Idx {
            images,
            labels: path(&mut a, 1, "labels"),
        }),
        "npy" => path(&mut a, 0, "path").map(|path| Source::Npy { path }),
        "npz" => {
            let p = path(&mut a, 0, "path");
            let array = a.string(1, "array");
            p.zip(array)
                .map(|(path, array)| Source::Npz { path, array })
        }
        "csv" => path(&mut a, 0, "path").map(|path| {
            let label_last = a.string(1, "label").is_some_and(|l| l == "last");
            Source::Csv { path, label_last }
        }),
        "concat" => {
            let mut parts = Vec::new();
            for arg in &c.args {
                if let Some(p) = data_spec(&arg.value, base, program, ex, diags) {
                    parts.push(p);
                }
            }
            return Some(plain(Source::Concat(parts), c.span));
        }
        "features" => {
            return compose::features_source(c, program, ex, diags).map(|s| plain(s, c.span));
        }
        other => {
            diags.push(
                Diagnostic::error(
                    "E0511",
                    c.func.span,
                    format!("unknown data loader `{other}`"),
                )
                .with_hint("use idx, npy, npz, csv, concat or features"),
            );
            return None;
        }
    };
    if src.is_none() {
        diags.push(Diagnostic::error(
            "E0511",
            c.span,
            format!("`{}` needs a file path in quotes", c.func.name),
        ));
    }
    diags.extend(a.finish());
    src.map(|s| plain(s, c.span))
}

fn transform(spec: &mut DataSpec, st: &Expr, diags: &mut Vec<Diagnostic>) {
    let ExprKind::Call(c) = &st.kind else {
        diags.push(Diagnostic::error(
            "E0511",
            st.span,
            "expected a transform call after `|>`",
        ));
        return;
    };
    let mut a = Args::new(c);
    match c.func.name.as_str() {
        // binarize(0.5): threshold; binarize("once", seed = 1) / binarize("per_epoch", seed = 1)
        "binarize" => {
            let first = a.expr(0, "mode");
            spec.binarize = match first.map(|e| &e.kind) {
                Some(ExprKind::Num(t)) => Binarize::Threshold(*t as f32),
                Some(ExprKind::Str(m)) if m == "once" => Binarize::StochasticOnce {
                    seed: a.count(1, "seed").unwrap_or(0) as u64,
                },
                Some(ExprKind::Str(m)) if m == "per_epoch" => Binarize::StochasticPerEpoch {
                    seed: a.count(1, "seed").unwrap_or(0) as u64,
                },
                _ => {
                    diags.push(
                        Diagnostic::error("E0511", c.span, "unknown binarization")
                            .with_hint("binarize(0.5), binarize(\"once\", seed = 1) or binarize(\"per_epoch\", seed = 1)"),
                    );
                    Binarize::None
                }
            };
        }
        "take" => spec.take = a.count(0, "n"),
        "skip" => spec.skip = a.count(0, "n").unwrap_or(0),
        "tile" => spec.tile = a.count(0, "k").unwrap_or(1).max(1),
        other => diags.push(
            Diagnostic::error(
                "E0511",
                c.func.span,
                format!("unknown data transform `{other}`"),
            )
            .with_hint("use binarize(..), skip(n), take(n) or tile(k)"),
        ),
    }
    diags.extend(a.finish());
}
