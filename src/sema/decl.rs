//! Declarations of one model: arguments, constants, unit groups, parameters (initialisers and
//! constraints) and user schedules. Invariant: every group and parameter in the model has a
//! valid shape (positive integer axes, at most `MAX_ELEMS` elements), even after errors
//! (invalid axes are replaced by 1 so later passes can keep checking).

use super::scope::{did_you_mean, Scope, Sym};
use super::{ModelInput, MAX_DIM, MAX_ELEMS};
use crate::diag::{Diagnostic, SourceMap, Span};
use crate::ir::*;
use crate::syntax::ast::{self, Expr, ExprKind, InitSpec, RoleKw, Stmt};

pub struct Cx<'a> {
    pub model: Model,
    pub scope: Scope,
    pub diags: Vec<Diagnostic>,
    pub used_overrides: Vec<String>,
    pub sources: &'a SourceMap,
}

pub const DOMAINS: &[&str] = &["binary", "spin", "real", "categorical"];
const CONSTRAINTS: &[&str] = &["positive", "symmetric", "zero_diagonal", "fixed"];

impl Cx<'_> {
    fn err(&mut self, code: &'static str, span: Span, msg: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(code, span, msg));
        self.diags.last_mut().expect("just pushed")
    }

    fn override_for(&mut self, name: &str, overrides: &[(String, f64)]) -> Option<f64> {
        let v = overrides
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|x| x.1)?;
        self.used_overrides.push(name.to_string());
        Some(v)
    }

    pub fn args(&mut self, input: &ModelInput) {
        for p in &input.def.params {
            let name = &p.name.name;
            let inst = input.arg_values.iter().find(|(n, _, _)| n == name);
            let v = if let Some(v) = self.override_for(name, input.overrides) {
                Some(v)
            } else if let Some((_, v, _)) = inst {
                Some(*v)
            } else if let Some(e) = &p.default {
                let mut ds = Vec::new();
                let v = self.scope.eval(e, &mut ds);
                self.diags.extend(ds);
                v
            } else {
                self.err(
                    "E0208",
                    p.name.span,
                    format!("model argument `{name}` has no value"),
                )
                .hint = Some(format!(
                    "give it a default (`{name} = ...`) or set it with `--set {name}=...`"
                ));
                None
            };
            let v = v.unwrap_or(1.0);
            if self
                .scope
                .bind(name, Sym::Value(v), p.name.span, &mut self.diags)
            {
                self.model.dims.push((name.clone(), v));
            }
        }
        for (n, _, span) in &input.arg_values {
            if !input.def.params.iter().any(|p| &p.name.name == n) {
                let cands: Vec<&str> = input
                    .def
                    .params
                    .iter()
                    .map(|p| p.name.name.as_str())
                    .collect();
                let hint = match did_you_mean(n, &cands) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("its arguments are: {}", cands.join(", ")),
                };
                self.err(
                    "E0208",
                    *span,
                    format!("model `{}` has no argument `{n}`", input.def.name.name),
                )
                .hint = Some(hint);
            }
        }
        for (n, v, span) in input.globals {
            if self.scope.get(n).is_none() {
                self.scope.bind(n, Sym::Value(*v), *span, &mut self.diags);
            }
        }
        let _ = input;
    }

    /// Evaluates a shape; bad axes become 1 after a diagnostic.
    fn shape(&mut self, dims: &[Expr], what: &str) -> Vec<usize> {
        let mut out = Vec::new();
        let mut total: usize = 1;
        for e in dims {
            let mut ds = Vec::new();
            let v = self.scope.eval(e, &mut ds);
            self.diags.extend(ds);
            let n = match v {
                Some(v) if v.fract() != 0.0 => {
                    self.err(
                        "E0214",
                        e.span,
                        format!("the size of an axis must be an integer, not {v}"),
                    );
                    1
                }
                Some(v) if v < 1.0 => {
                    self.err(
                        "E0214",
                        e.span,
                        format!("the size of an axis must be at least 1, not {v}"),
                    )
                    .hint = Some("check the model arguments and `--set` values".into());
                    1
                }
                Some(v) if v > MAX_DIM => {
                    self.err("E0214", e.span, format!("axis size {v} is too large"));
                    1
                }
                Some(v) => v as usize,
                None => 1,
            };
            total = total.saturating_mul(n);
            out.push(n);
        }
        if total > MAX_ELEMS {
            let span = dims[0].span.to(dims[dims.len() - 1].span);
            self.err(
                "E0214",
                span,
                format!("{what} would have {total} elements, more than {MAX_ELEMS}"),
            );
            return vec![1; out.len()];
        }
        out
    }

    pub fn declarations(&mut self, def: &ast::ModelDef, overrides: &[(String, f64)]) {
        let mut pending_logit: Vec<(usize, ast::Ident)> = Vec::new();
        for st in &def.stmts {
            match st {
                Stmt::Const(c) => {
                    let v = match self.override_for(&c.name.name, overrides) {
                        Some(v) => Some(v),
                        None => {
                            let mut ds = Vec::new();
                            let v = self.scope.eval(&c.value, &mut ds);
                            self.diags.extend(ds);
                            v
                        }
                    };
                    self.scope.bind(
                        &c.name.name,
                        Sym::Value(v.unwrap_or(0.0)),
                        c.name.span,
                        &mut self.diags,
                    );
                }
                Stmt::Unit(u) => self.unit(u, def),
                Stmt::Param(p) => {
                    if let Some(x) = self.param(p) {
                        pending_logit.push(x);
                    }
                }
                _ => {}
            }
        }
        for (pi, g) in pending_logit {
            match self.scope.get(&g.name) {
                Some(Sym::Group(gid)) => {
                    self.model.params[pi].init = Init::DataLogit { group: gid };
                    let (ps, gs) = (
                        &self.model.params[pi].shape,
                        &self.model.groups[gid.idx()].shape,
                    );
                    if ps != gs {
                        let msg = format!(
                            "`logit(mean({}))` has shape {gs:?} but parameter `{}` has shape {ps:?}",
                            g.name, self.model.params[pi].name
                        );
                        self.err("E0301", g.span, msg);
                    }
                }
                _ => {
                    let cands = self.scope.candidates(|s| matches!(s, Sym::Group(_)));
                    let hint =
                        did_you_mean(&g.name, &cands).map(|s| format!("did you mean `{s}`?"));
                    let d = self.err("E0201", g.span, format!("unknown unit group `{}`", g.name));
                    d.hint = hint;
                }
            }
        }
    }

    fn unit(&mut self, u: &ast::UnitDecl, def: &ast::ModelDef) {
        let shape = self.shape(&u.shape, &format!("unit group `{}`", u.name.name));
        let domain = match &u.domain {
            Some(d) => match d.name.name.as_str() {
                "binary" => Domain::Binary,
                "spin" => Domain::Spin,
                "real" => Domain::Real,
                "categorical" | "softmax" | "onehot" => Domain::Categorical,
                other => {
                    let hint = match did_you_mean(other, DOMAINS) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("domains are {}", DOMAINS.join(", ")),
                    };
                    self.err("E0203", d.name.span, format!("unknown domain `{other}`"))
                        .hint = Some(hint);
                    Domain::Binary
                }
            },
            None => {
                // A `~` statement for this group gives the domain.
                let from_dist = def.stmts.iter().find_map(|s| match s {
                    Stmt::Cond(c) if c.child.name == u.name.name => {
                        match c.dist.func.name.as_str() {
                            "bernoulli" => Some(Domain::Binary),
                            "normal" => Some(Domain::Real),
                            "categorical" => Some(Domain::Categorical),
                            _ => None,
                        }
                    }
                    _ => None,
                });
                match from_dist {
                    Some(d) => d,
                    None => {
                        self.err(
                            "E0203",
                            u.name.span,
                            format!("unit group `{}` needs a domain", u.name.name),
                        )
                        .hint = Some(format!(
                            "write `{} : binary` (or spin, real, categorical)",
                            u.name.name
                        ));
                        Domain::Binary
                    }
                }
            }
        };
        let mut domain = domain;
        if domain == Domain::Categorical {
            if shape.is_empty() {
                self.err(
                    "E0301",
                    u.span,
                    format!(
                        "categorical group `{}` needs an axis of states",
                        u.name.name
                    ),
                )
                .hint = Some(format!("write `{}[K] : categorical`", u.name.name));
                domain = Domain::Binary;
            } else if let Some(k) = u.domain.as_ref().and_then(|d| d.arg.as_ref()) {
                let mut ds = Vec::new();
                let kv = self.scope.eval(k, &mut ds);
                self.diags.extend(ds);
                let last = *shape.last().expect("non-empty shape");
                if let Some(kv) = kv {
                    if kv != last as f64 {
                        self.err(
                            "E0301",
                            k.span,
                            format!(
                                "`categorical({kv})` but the last axis of `{}` has {last} states",
                                u.name.name
                            ),
                        )
                        .hint = Some("the states of a categorical group are its last axis".into());
                    }
                }
            }
        } else if let Some(d) = &u.domain {
            if let Some(a) = &d.arg {
                self.err(
                    "E0203",
                    a.span,
                    format!("domain `{}` takes no argument", d.name.name),
                );
            }
        }
        let role = match u.role {
            RoleKw::Visible => Role::Visible,
            RoleKw::Hidden | RoleKw::Latent => Role::Hidden,
        };
        let id = GroupId(self.model.groups.len() as u32);
        if self
            .scope
            .bind(&u.name.name, Sym::Group(id), u.name.span, &mut self.diags)
        {
            self.model.groups.push(Group {
                name: u.name.name.clone(),
                shape,
                domain,
                role,
                span: u.span,
            });
        }
    }

    /// Declares a parameter; returns a pending `logit(mean(g))` initialiser to resolve later.
    fn param(&mut self, p: &ast::ParamDecl) -> Option<(usize, ast::Ident)> {
        let shape = self.shape(&p.shape, &format!("parameter `{}`", p.name.name));
        let mut pending = None;
        let pi = self.model.params.len();
        let init = match &p.init {
            None => Init::Const(0.0),
            Some(InitSpec::Dist(c)) => self.init_dist(c),
            Some(InitSpec::Value(e)) => match data_logit(e) {
                Some(g) => {
                    pending = Some((pi, g));
                    Init::Const(0.0)
                }
                None => {
                    let mut ds = Vec::new();
                    let v = self.scope.eval(e, &mut ds);
                    if ds.iter().any(|d| d.code == "E0211") && matches!(e.kind, ExprKind::Call(_)) {
                        ds.clear();
                        self.err("E0207", e.span, "unknown initialiser").hint = Some(
                            "write `= 0`, `= logit(mean(v))` or `~ normal(0, 0.01)` / `~ uniform(lo, hi)`".into(),
                        );
                    }
                    self.diags.extend(ds);
                    Init::Const(v.unwrap_or(0.0))
                }
            },
        };
        let mut constraints = Vec::new();
        for c in &p.constraints {
            let k = match c.name.as_str() {
                "positive" => Constraint::Positive,
                "symmetric" => Constraint::Symmetric,
                "zero_diagonal" => Constraint::ZeroDiagonal,
                "fixed" => Constraint::Fixed,
                other => {
                    let hint = match did_you_mean(other, CONSTRAINTS) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("constraints are {}", CONSTRAINTS.join(", ")),
                    };
                    self.err("E0206", c.span, format!("unknown constraint `{other}`"))
                        .hint = Some(hint);
                    continue;
                }
            };
            if matches!(k, Constraint::Symmetric | Constraint::ZeroDiagonal)
                && !(shape.len() == 2 && shape[0] == shape[1])
            {
                self.err(
                    "E0206",
                    c.span,
                    format!(
                        "`{}` needs a square matrix, but `{}` has shape {shape:?}",
                        c.name, p.name.name
                    ),
                );
                continue;
            }
            if constraints.contains(&k) {
                self.diags.push(Diagnostic::warning(
                    "E0206",
                    c.span,
                    format!("constraint `{}` is given twice", c.name),
                ));
                continue;
            }
            constraints.push(k);
        }
        if constraints.contains(&Constraint::Positive) {
            let bad = match &init {
                Init::Const(v) => *v <= 0.0,
                Init::Uniform { lo, .. } => *lo <= 0.0,
                _ => false,
            };
            if bad {
                self.err(
                    "E0207",
                    p.span,
                    format!(
                        "parameter `{}` is `positive` but its initial value is not",
                        p.name.name
                    ),
                );
            }
        }
        let id = ParamId(pi as u32);
        if self
            .scope
            .bind(&p.name.name, Sym::Param(id), p.name.span, &mut self.diags)
        {
            self.model.params.push(Param {
                name: p.name.name.clone(),
                shape,
                init,
                constraints,
                span: p.span,
            });
            pending
        } else {
            None
        }
    }

    fn init_dist(&mut self, c: &ast::Call) -> Init {
        let mut ds = Vec::new();
        let vals: Vec<Option<f64>> = c
            .args
            .iter()
            .map(|a| self.scope.eval(&a.value, &mut ds))
            .collect();
        self.diags.extend(ds);
        if vals.iter().any(|v| v.is_none()) {
            return Init::Const(0.0);
        }
        let v: Vec<f64> = vals.into_iter().map(|x| x.expect("checked")).collect();
        match (c.func.name.as_str(), v.as_slice()) {
            ("normal", [mean, sd]) => {
                if *sd < 0.0 {
                    self.err(
                        "E0207",
                        c.span,
                        "the standard deviation must not be negative",
                    );
                }
                Init::Normal {
                    mean: *mean,
                    sd: *sd,
                }
            }
            ("uniform", [lo, hi]) => {
                if lo > hi {
                    self.err("E0207", c.span, "`uniform(lo, hi)` needs lo <= hi");
                }
                Init::Uniform { lo: *lo, hi: *hi }
            }
            ("normal" | "uniform", _) => {
                self.err(
                    "E0207",
                    c.span,
                    format!("`{}` takes two arguments", c.func.name),
                );
                Init::Const(0.0)
            }
            (other, _) => {
                let hint = match did_you_mean(other, &["normal", "uniform"]) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "initialisers are `~ normal(mean, sd)` and `~ uniform(lo, hi)`".into(),
                };
                self.err(
                    "E0207",
                    c.func.span,
                    format!("unknown initialiser `{other}`"),
                )
                .hint = Some(hint);
                Init::Const(0.0)
            }
        }
    }

    pub fn schedules(&mut self, def: &ast::ModelDef) {
        for st in &def.stmts {
            let Stmt::Schedule(s) = st else { continue };
            let kind = match s.kind.name.as_str() {
                "gibbs" => {
                    for a in &s.args {
                        self.err("E0210", a.value.span, "`gibbs` takes no arguments");
                    }
                    ScheduleKind::Gibbs
                }
                "meanfield" | "mean_field" => {
                    let (mut iters, mut damping, mut tol) = (10usize, 0.0, 1e-6);
                    for a in &s.args {
                        let mut ds = Vec::new();
                        let v = self.scope.eval(&a.value, &mut ds);
                        self.diags.extend(ds);
                        let Some(v) = v else { continue };
                        match a.name.as_ref().map(|n| n.name.as_str()) {
                            Some("iters") if v >= 1.0 && v.fract() == 0.0 && v <= 1e9 => {
                                iters = v as usize
                            }
                            Some("damping") if (0.0..1.0).contains(&v) => damping = v,
                            Some("tol") if v >= 0.0 => tol = v,
                            Some(n @ ("iters" | "damping" | "tol")) => {
                                self.err(
                                    "E0210",
                                    a.value.span,
                                    format!("bad value {v} for `{n}`"),
                                )
                                .hint = Some(
                                    "iters is a positive integer, 0 <= damping < 1, tol >= 0"
                                        .into(),
                                );
                            }
                            _ => {
                                self.err("E0210", a.value.span, "unknown mean-field setting")
                                    .hint = Some(
                                    "write `meanfield(iters = 10, damping = 0.0, tol = 1e-6)`"
                                        .into(),
                                );
                            }
                        }
                    }
                    ScheduleKind::MeanField {
                        iters,
                        damping,
                        tol,
                    }
                }
                other => {
                    let hint = match did_you_mean(other, &["gibbs", "meanfield"]) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "schedules are `gibbs` and `meanfield`".into(),
                    };
                    self.err("E0210", s.kind.span, format!("unknown schedule `{other}`"))
                        .hint = Some(hint);
                    continue;
                }
            };
            let mut steps = Vec::new();
            for st in &s.steps {
                let want = if kind == ScheduleKind::Gibbs {
                    "sample"
                } else {
                    "update"
                };
                if st.kind.name != want {
                    self.err(
                        "E0210",
                        st.kind.span,
                        format!("a `{}` schedule step starts with `{want}`", s.kind.name),
                    );
                }
                let groups = self.group_list(&st.groups);
                let given = self.group_list(&st.given);
                steps.push(ScheduleStep {
                    groups,
                    given,
                    span: st.span,
                });
            }
            self.model.schedules.push(UserSchedule {
                kind,
                steps,
                span: s.span,
            });
        }
    }

    fn group_list(&mut self, names: &[ast::Ident]) -> Vec<GroupId> {
        let mut out = Vec::new();
        for n in names {
            match self.scope.get(&n.name) {
                Some(Sym::Group(g)) => out.push(g),
                _ => {
                    let cands = self.scope.candidates(|s| matches!(s, Sym::Group(_)));
                    let hint =
                        did_you_mean(&n.name, &cands).map(|s| format!("did you mean `{s}`?"));
                    self.err("E0201", n.span, format!("unknown unit group `{}`", n.name))
                        .hint = hint;
                }
            }
        }
        out
    }
}

/// Recognises `logit(mean(g))`.
fn data_logit(e: &Expr) -> Option<ast::Ident> {
    let ExprKind::Call(c) = &e.kind else {
        return None;
    };
    if c.func.name != "logit" || c.args.len() != 1 {
        return None;
    }
    let ExprKind::Call(m) = &c.args[0].value.kind else {
        return None;
    };
    if m.func.name != "mean" || m.args.len() != 1 {
        return None;
    }
    match &m.args[0].value.kind {
        ExprKind::Name(n) => Some(ast::Ident {
            name: n.clone(),
            span: m.args[0].value.span,
        }),
        _ => None,
    }
}
