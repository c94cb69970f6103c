//! Builds the AST from pest pairs. Invariant: the grammar guarantees the pair shapes matched
//! here, so a mismatch is a bug (`unreachable!`), not a user error; the only user errors found
//! here are numbers that do not fit and over-long power chains (E0102).

use super::ast::*;
use super::Rule;
use crate::diag::{Diagnostic, Span};
use pest::iterators::Pair;

/// Longest `a ^ b ^ c ...` chain accepted (folding it is recursive later on).
const MAX_POW_CHAIN: usize = 8;

pub(super) struct Builder {
    pub file: u32,
    /// byte offset of the parsed chunk in the file
    pub base: usize,
}

type P<'a> = Pair<'a, Rule>;

/// Children of a pair without keyword tokens (`k_model`, ...), which carry no information.
trait Kids<'a> {
    fn kids(self) -> std::iter::Filter<pest::iterators::Pairs<'a, Rule>, fn(&P<'a>) -> bool>;
}

impl<'a> Kids<'a> for P<'a> {
    fn kids(self) -> std::iter::Filter<pest::iterators::Pairs<'a, Rule>, fn(&P<'a>) -> bool> {
        self.into_inner()
            .filter(|x| !super::is_keyword(x.as_rule()))
    }
}

impl Builder {
    fn span(&self, p: &P) -> Span {
        let s = p.as_span();
        Span::new(self.file, self.base + s.start(), self.base + s.end())
    }

    fn ident(&self, p: P) -> Ident {
        Ident {
            name: p.as_str().to_string(),
            span: self.span(&p),
        }
    }

    pub fn file(&self, p: P) -> (Vec<Item>, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let mut items = Vec::new();
        for it in p.kids() {
            match it.as_rule() {
                Rule::EOI => {}
                _ => items.push(self.item(it, &mut diags)),
            }
        }
        (items, diags)
    }

    fn docs(&self, p: P) -> String {
        let lines: Vec<&str> = p
            .kids()
            .map(|d| {
                let s = &d.as_str()[3..];
                s.strip_prefix(' ').unwrap_or(s).trim_end()
            })
            .collect();
        lines.join("\n")
    }

    fn item(&self, p: P, d: &mut Vec<Diagnostic>) -> Item {
        let span = self.span(&p);
        let rule = p.as_rule();
        let mut it = p.kids();
        let doc = self.docs(it.next().expect("docs"));
        match rule {
            Rule::use_item => {
                let src = it.next().expect("use source");
                let source = match src.as_rule() {
                    Rule::string => UseSource::Path {
                        path: unquote(src.as_str()),
                        span: self.span(&src),
                    },
                    _ => UseSource::Name(self.ident(src)),
                };
                let alias = it.next().map(|a| self.ident(a));
                Item::Use(UseItem {
                    source,
                    alias,
                    span,
                })
            }
            Rule::const_item => Item::Const(self.const_rest(it, span, d)),
            Rule::model_inst => {
                let name = self.ident(it.next().expect("name"));
                let base = self.ident(it.next().expect("base"));
                let args = self.call_args(it.next().expect("args"), d);
                Item::ModelInst(ModelInst {
                    doc,
                    name,
                    base,
                    args,
                    span,
                })
            }
            Rule::model_item => {
                let name = self.ident(it.next().expect("name"));
                let mut params = Vec::new();
                let mut stmts = Vec::new();
                for x in it {
                    match x.as_rule() {
                        Rule::model_params => {
                            for mp in x.kids() {
                                let mut m = mp.kids();
                                let name = self.ident(m.next().expect("param name"));
                                let default = m.next().map(|e| self.expr(e, d));
                                params.push(ModelParam { name, default });
                            }
                        }
                        _ => stmts.push(self.stmt(x, d)),
                    }
                }
                Item::Model(ModelDef {
                    doc,
                    name,
                    params,
                    stmts,
                    span,
                })
            }
            Rule::data_item => {
                let name = self.ident(it.next().expect("name"));
                let value = self.expr(it.next().expect("value"), d);
                Item::Experiment(Experiment::Data {
                    doc,
                    name,
                    value,
                    span,
                })
            }
            Rule::train_item => {
                let target = self.target(it.next().expect("target"), d);
                let data = self.ident(it.next().expect("data"));
                let settings = self.settings(it.next().expect("settings"), d);
                Item::Experiment(Experiment::Train {
                    doc,
                    target,
                    data,
                    settings,
                    span,
                })
            }
            Rule::eval_item => {
                let mut down = Vec::new();
                let mut data = None;
                let mut settings = Vec::new();
                for k in it {
                    match k.as_rule() {
                        Rule::target => down.push(self.target(k, d)),
                        Rule::ident => data = Some(self.ident(k)),
                        Rule::settings => settings = self.settings(k, d),
                        _ => {}
                    }
                }
                // the last model is the one evaluated (a DBN's top RBM), the others lie below
                let target = down.pop().expect("grammar: evaluate has a target");
                Item::Experiment(Experiment::Evaluate {
                    doc,
                    target,
                    down,
                    data: data.expect("grammar: evaluate has data"),
                    settings,
                    span,
                })
            }
            Rule::finetune_item => {
                let mut stack = Vec::new();
                let mut data = None;
                let mut settings = Vec::new();
                for k in it {
                    match k.as_rule() {
                        Rule::target => stack.push(self.target(k, d)),
                        Rule::ident => data = Some(self.ident(k)),
                        Rule::settings => settings = self.settings(k, d),
                        _ => {}
                    }
                }
                Item::Experiment(Experiment::Finetune {
                    doc,
                    stack,
                    data: data.expect("grammar: finetune has `on DATA`"),
                    settings,
                    span,
                })
            }
            Rule::sample_item => {
                let mut down = Vec::new();
                let mut settings = Vec::new();
                for k in it {
                    match k.as_rule() {
                        Rule::target => down.push(self.target(k, d)),
                        Rule::settings => settings = self.settings(k, d),
                        _ => {}
                    }
                }
                let target = down.pop().expect("grammar: sample has a target");
                Item::Experiment(Experiment::Sample {
                    doc,
                    target,
                    down,
                    settings,
                    span,
                })
            }
            r => unreachable!("grammar has no item rule {r:?}"),
        }
    }

    fn const_rest<'a>(
        &self,
        mut it: impl Iterator<Item = P<'a>>,
        span: Span,
        d: &mut Vec<Diagnostic>,
    ) -> ConstDecl {
        let name = self.ident(it.next().expect("const name"));
        let value = self.expr(it.next().expect("const value"), d);
        ConstDecl { name, value, span }
    }

    fn target(&self, p: P, d: &mut Vec<Diagnostic>) -> Target {
        let span = self.span(&p);
        let mut it = p.kids();
        let name = self.ident(it.next().expect("target name"));
        let args = it.next().map(|a| self.call_args(a, d)).unwrap_or_default();
        Target { name, args, span }
    }

    fn settings(&self, p: P, d: &mut Vec<Diagnostic>) -> Vec<Setting> {
        p.kids()
            .map(|s| {
                let span = self.span(&s);
                let mut it = s.kids();
                let key = self.ident(it.next().expect("key"));
                let value = self.expr(it.next().expect("value"), d);
                let ramp = it.next().map(|r| {
                    let span = self.span(&r);
                    let mut ri = r.kids();
                    let to = self.expr(ri.next().expect("ramp to"), d);
                    let unit = self.ident(ri.next().expect("ramp unit"));
                    let at = self.expr(ri.next().expect("ramp at"), d);
                    Ramp { to, unit, at, span }
                });
                Setting {
                    key,
                    value,
                    ramp,
                    span,
                }
            })
            .collect()
    }

    fn stmt(&self, p: P, d: &mut Vec<Diagnostic>) -> Stmt {
        let span = self.span(&p);
        let rule = p.as_rule();
        let mut it = p.kids();
        let _doc = self.docs(it.next().expect("docs"));
        match rule {
            Rule::const_item => Stmt::Const(self.const_rest(it, span, d)),
            Rule::unit_decl => {
                let role = match it.next().expect("role").as_str() {
                    "visible" => RoleKw::Visible,
                    "hidden" => RoleKw::Hidden,
                    _ => RoleKw::Latent,
                };
                let name = self.ident(it.next().expect("unit name"));
                let mut shape = Vec::new();
                let mut domain = None;
                for x in it {
                    match x.as_rule() {
                        Rule::shape => shape = x.kids().map(|e| self.expr(e, d)).collect(),
                        Rule::domain => {
                            let span = self.span(&x);
                            let mut di = x.kids();
                            let name = self.ident(di.next().expect("domain name"));
                            let arg = di.next().map(|e| self.expr(e, d));
                            domain = Some(DomainSpec { name, arg, span });
                        }
                        r => unreachable!("unexpected {r:?} in unit_decl"),
                    }
                }
                Stmt::Unit(UnitDecl {
                    role,
                    name,
                    shape,
                    domain,
                    span,
                })
            }
            Rule::param_decl => {
                let name = self.ident(it.next().expect("param name"));
                let mut shape = Vec::new();
                let mut init = None;
                let mut constraints = Vec::new();
                for x in it {
                    match x.as_rule() {
                        Rule::shape => shape = x.kids().map(|e| self.expr(e, d)).collect(),
                        Rule::init => {
                            let i = x.kids().next().expect("init kind");
                            let inner = i.clone().kids().next().expect("init body");
                            init = Some(match i.as_rule() {
                                Rule::init_dist => InitSpec::Dist(self.call(inner, d)),
                                _ => InitSpec::Value(self.expr(inner, d)),
                            });
                        }
                        Rule::constraint => constraints.push(self.ident(x)),
                        r => unreachable!("unexpected {r:?} in param_decl"),
                    }
                }
                Stmt::Param(ParamDecl {
                    name,
                    shape,
                    init,
                    constraints,
                    span,
                })
            }
            Rule::energy_stmt => {
                let _op = it.next().expect("energy op");
                let expr = self.expr(it.next().expect("energy expr"), d);
                Stmt::Energy(EnergyStmt { expr, span })
            }
            Rule::cond_stmt => {
                let child = self.ident(it.next().expect("child"));
                let mut index = Vec::new();
                let mut dist = None;
                for x in it {
                    match x.as_rule() {
                        Rule::index => index = x.kids().map(|e| self.expr(e, d)).collect(),
                        Rule::dist => dist = Some(self.call(x.kids().next().expect("call"), d)),
                        r => unreachable!("unexpected {r:?} in cond_stmt"),
                    }
                }
                Stmt::Cond(CondStmt {
                    child,
                    index,
                    dist: dist.expect("grammar requires a distribution"),
                    span,
                })
            }
            Rule::schedule_stmt => {
                let kind = self.ident(it.next().expect("schedule kind"));
                let mut args = Vec::new();
                let mut steps = Vec::new();
                for x in it {
                    match x.as_rule() {
                        Rule::call_args => args = self.call_args(x, d),
                        Rule::step => {
                            let span = self.span(&x);
                            let mut si = x.kids();
                            let kind = self.ident(si.next().expect("step kind"));
                            let groups = self.group_set(si.next().expect("groups"));
                            let given = si.next().map(|g| self.group_set(g)).unwrap_or_default();
                            steps.push(Step {
                                kind,
                                groups,
                                given,
                                span,
                            });
                        }
                        r => unreachable!("unexpected {r:?} in schedule"),
                    }
                }
                Stmt::Schedule(ScheduleStmt {
                    kind,
                    args,
                    steps,
                    span,
                })
            }
            r => unreachable!("grammar has no statement rule {r:?}"),
        }
    }

    fn group_set(&self, p: P) -> Vec<Ident> {
        p.kids().map(|i| self.ident(i)).collect()
    }

    fn call(&self, p: P, d: &mut Vec<Diagnostic>) -> Call {
        let span = self.span(&p);
        let mut it = p.kids();
        let func = self.ident(it.next().expect("func"));
        let args = self.call_args(it.next().expect("args"), d);
        Call { func, args, span }
    }

    fn call_args(&self, p: P, d: &mut Vec<Diagnostic>) -> Vec<Arg> {
        p.kids()
            .map(|a| {
                let mut it = a.kids().peekable();
                let name = match it.peek().map(|x| x.as_rule()) {
                    Some(Rule::arg_name) => Some(self.ident(it.next().expect("arg name"))),
                    _ => None,
                };
                let value = self.expr(it.next().expect("arg value"), d);
                Arg { name, value }
            })
            .collect()
    }

    /// Any expression-layer rule to an `Expr`; single-child layers collapse.
    fn expr(&self, p: P, d: &mut Vec<Diagnostic>) -> Expr {
        let span = self.span(&p);
        match p.as_rule() {
            Rule::expr => {
                let parts: Vec<Expr> = p
                    .kids()
                    .filter(|x| x.as_rule() != Rule::pipe_op)
                    .map(|x| self.expr(x, d))
                    .collect();
                collapse(parts, span, ExprKind::Pipe)
            }
            Rule::sum => {
                let mut parts = Vec::new();
                let mut neg = false;
                for x in p.kids() {
                    if x.as_rule() == Rule::add_op {
                        neg = x.as_str() == "-";
                    } else {
                        parts.push((neg, self.expr(x, d)));
                    }
                }
                if parts.len() == 1 {
                    parts.pop().expect("one part").1
                } else {
                    Expr {
                        kind: ExprKind::Sum(parts),
                        span,
                    }
                }
            }
            Rule::product => {
                let mut parts = Vec::new();
                let mut op = MulOp::Mul;
                for x in p.kids() {
                    if x.as_rule() == Rule::mul_op {
                        op = match x.as_str() {
                            "*" => MulOp::Mul,
                            "/" => MulOp::Div,
                            _ => MulOp::Mod,
                        };
                    } else {
                        parts.push((op, self.expr(x, d)));
                    }
                }
                if parts.len() == 1 {
                    parts.pop().expect("one part").1
                } else {
                    Expr {
                        kind: ExprKind::Product(parts),
                        span,
                    }
                }
            }
            Rule::unary => {
                let mut n_neg = 0;
                let mut inner = None;
                for x in p.kids() {
                    match x.as_rule() {
                        Rule::neg => n_neg += 1,
                        _ => inner = Some(self.expr(x, d)),
                    }
                }
                let e = inner.expect("unary has an operand");
                if n_neg % 2 == 1 {
                    Expr {
                        kind: ExprKind::Neg(Box::new(e)),
                        span,
                    }
                } else {
                    e
                }
            }
            Rule::power => {
                // operands with the count of minus signs in front of each exponent
                let mut ops: Vec<(usize, Expr)> = Vec::new();
                let mut n_neg = 0;
                for x in p.kids() {
                    match x.as_rule() {
                        Rule::pow_op => {}
                        Rule::neg => n_neg += 1,
                        _ => {
                            ops.push((n_neg, self.expr(x, d)));
                            n_neg = 0;
                        }
                    }
                }
                if ops.len() > MAX_POW_CHAIN {
                    d.push(
                        Diagnostic::error(
                            "E0102",
                            span,
                            format!("more than {MAX_POW_CHAIN} chained `^` operators"),
                        )
                        .with_hint("use parentheses or a `const`"),
                    );
                    ops.truncate(1);
                }
                // Fold right: a ^ (-(b ^ c)); a minus sign in front of an exponent applies to
                // that exponent together with everything to its right.
                let (n_last, mut acc) = ops.pop().expect("power has an operand");
                let mut pending = n_last;
                while let Some((n, base)) = ops.pop() {
                    let exp = wrap_neg(acc, pending);
                    let span = base.span.to(exp.span);
                    acc = Expr {
                        kind: ExprKind::Pow(Box::new(base), Box::new(exp)),
                        span,
                    };
                    pending = n;
                }
                wrap_neg(acc, pending)
            }
            Rule::paren => {
                // keep the parentheses in the span so messages quote what the user wrote
                let mut e = self.expr(p.kids().next().expect("paren body"), d);
                e.span = span;
                e
            }
            Rule::number => {
                let s = p.as_str();
                let x: f64 = s.parse().unwrap_or(f64::NAN);
                if !x.is_finite() {
                    d.push(Diagnostic::error(
                        "E0102",
                        span,
                        format!("number `{s}` is too large"),
                    ));
                }
                Expr {
                    kind: ExprKind::Num(if x.is_finite() { x } else { 0.0 }),
                    span,
                }
            }
            Rule::string => Expr {
                kind: ExprKind::Str(unquote(p.as_str())),
                span,
            },
            Rule::ident => Expr {
                kind: ExprKind::Name(p.as_str().to_string()),
                span,
            },
            Rule::call => Expr {
                kind: ExprKind::Call(self.call(p, d)),
                span,
            },
            Rule::field => {
                let mut it = p.kids();
                let base = self.ident(it.next().expect("field base"));
                let name = self.ident(it.next().expect("field name"));
                Expr {
                    kind: ExprKind::Field(base, name),
                    span,
                }
            }
            Rule::indexed => {
                let mut it = p.kids();
                let name = self.ident(it.next().expect("tensor name"));
                let idx = it
                    .next()
                    .expect("index")
                    .kids()
                    .map(|e| self.expr(e, d))
                    .collect();
                Expr {
                    kind: ExprKind::Index(name, idx),
                    span,
                }
            }
            r => unreachable!("not an expression rule: {r:?}"),
        }
    }
}

fn collapse(mut parts: Vec<Expr>, span: Span, f: fn(Vec<Expr>) -> ExprKind) -> Expr {
    if parts.len() == 1 {
        parts.pop().expect("one part")
    } else {
        Expr {
            kind: f(parts),
            span,
        }
    }
}

fn wrap_neg(e: Expr, n: usize) -> Expr {
    if n % 2 == 1 {
        let span = e.span;
        Expr {
            kind: ExprKind::Neg(Box::new(e)),
            span,
        }
    } else {
        e
    }
}

fn unquote(s: &str) -> String {
    s.trim_start_matches('"').trim_end_matches('"').to_string()
}
