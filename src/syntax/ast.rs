//! The abstract syntax tree of a `.ebm` file: exactly what the user wrote, with names still
//! unresolved. Invariant: every node carries the `Span` of the text it came from, and sums,
//! products and pipes are n-ary so that long expressions do not make deep trees.

use crate::diag::Span;
use serde::Serialize;

/// A parsed source file.
#[derive(Clone, Debug, Serialize)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, Serialize)]
pub enum Item {
    Use(UseItem),
    Model(ModelDef),
    ModelInst(ModelInst),
    Const(ConstDecl),
    Experiment(Experiment),
}

/// A name with where it was written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// What a `use` imports: a stdlib model by name or a file by path.
#[derive(Clone, Debug, Serialize)]
pub enum UseSource {
    Name(Ident),
    Path { path: String, span: Span },
}

/// `use rbm`, `use rbm as r`, `use "file.ebm"`.
#[derive(Clone, Debug, Serialize)]
pub struct UseItem {
    pub source: UseSource,
    pub alias: Option<Ident>,
    pub span: Span,
}

/// `model NAME(args) { stmts }`.
#[derive(Clone, Debug, Serialize)]
pub struct ModelDef {
    pub doc: String,
    pub name: Ident,
    pub params: Vec<ModelParam>,
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

/// One model argument (a dimension or a scalar constant) with its default.
#[derive(Clone, Debug, Serialize)]
pub struct ModelParam {
    pub name: Ident,
    pub default: Option<Expr>,
}

/// `model small = rbm(nv = 16, nh = 4)`.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInst {
    pub doc: String,
    pub name: Ident,
    pub base: Ident,
    pub args: Vec<Arg>,
    pub span: Span,
}

/// `const beta = 0.44`.
#[derive(Clone, Debug, Serialize)]
pub struct ConstDecl {
    pub name: Ident,
    pub value: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub enum Stmt {
    Unit(UnitDecl),
    Param(ParamDecl),
    Const(ConstDecl),
    Energy(EnergyStmt),
    Cond(CondStmt),
    Schedule(ScheduleStmt),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RoleKw {
    Visible,
    Hidden,
    Latent,
}

/// `visible v[nv] : binary`.
#[derive(Clone, Debug, Serialize)]
pub struct UnitDecl {
    pub role: RoleKw,
    pub name: Ident,
    pub shape: Vec<Expr>,
    pub domain: Option<DomainSpec>,
    pub span: Span,
}

/// `binary`, `categorical(10)`, ...
#[derive(Clone, Debug, Serialize)]
pub struct DomainSpec {
    pub name: Ident,
    pub arg: Option<Expr>,
    pub span: Span,
}

/// `param W[nv, nh] ~ normal(0, 0.01) : positive`.
#[derive(Clone, Debug, Serialize)]
pub struct ParamDecl {
    pub name: Ident,
    pub shape: Vec<Expr>,
    pub init: Option<InitSpec>,
    pub constraints: Vec<Ident>,
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub enum InitSpec {
    /// `~ normal(0, 0.01)`
    Dist(Call),
    /// `= 0`, `= logit(mean(v))`
    Value(Expr),
}

/// `energy = EXPR` or `energy += EXPR`; several statements add up.
#[derive(Clone, Debug, Serialize)]
pub struct EnergyStmt {
    pub expr: Expr,
    pub span: Span,
}

/// `child[index] ~ dist(...)`.
#[derive(Clone, Debug, Serialize)]
pub struct CondStmt {
    pub child: Ident,
    pub index: Vec<Expr>,
    pub dist: Call,
    pub span: Span,
}

/// `schedule KIND(args) { steps }`.
#[derive(Clone, Debug, Serialize)]
pub struct ScheduleStmt {
    pub kind: Ident,
    pub args: Vec<Arg>,
    pub steps: Vec<Step>,
    pub span: Span,
}

/// `sample {a, b} | c` or `update h1`.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub kind: Ident,
    pub groups: Vec<Ident>,
    pub given: Vec<Ident>,
    pub span: Span,
}

/// An experiment item, kept as written for the runtime to interpret.
#[derive(Clone, Debug, Serialize)]
pub enum Experiment {
    /// `data NAME = EXPR`
    Data {
        doc: String,
        name: Ident,
        value: Expr,
        span: Span,
    },
    /// `train TARGET on DATA { settings }`
    Train {
        doc: String,
        target: Target,
        data: Ident,
        settings: Vec<Setting>,
        span: Span,
    },
    /// `sample TARGET { settings }`, or `sample M1 -> M2 -> TARGET { settings }`: Gibbs on
    /// TARGET, then one ancestral pass down through `down` (bottom first)
    Sample {
        doc: String,
        target: Target,
        down: Vec<Target>,
        settings: Vec<Setting>,
        span: Span,
    },
    /// `evaluate TARGET on DATA { settings }`, or `evaluate M1 -> M2 -> TARGET on DATA
    /// { settings }`: the DBN bound with TARGET the top RBM and `down` below it (bottom first)
    Evaluate {
        doc: String,
        target: Target,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        down: Vec<Target>,
        data: Ident,
        settings: Vec<Setting>,
        span: Span,
    },
    /// `finetune TARGET -> TARGET ... on DATA { settings }`
    Finetune {
        doc: String,
        stack: Vec<Target>,
        data: Ident,
        settings: Vec<Setting>,
        span: Span,
    },
}

impl Experiment {
    pub fn span(&self) -> Span {
        match self {
            Experiment::Data { span, .. }
            | Experiment::Train { span, .. }
            | Experiment::Sample { span, .. }
            | Experiment::Evaluate { span, .. }
            | Experiment::Finetune { span, .. } => *span,
        }
    }
}

/// The model an experiment runs: `rbm` or `rbm(nh = 500)`.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub name: Ident,
    pub args: Vec<Arg>,
    pub span: Span,
}

/// `key = value` with an optional ramp `-> END at UNIT WHEN`.
#[derive(Clone, Debug, Serialize)]
pub struct Setting {
    pub key: Ident,
    pub value: Expr,
    pub ramp: Option<Ramp>,
    pub span: Span,
}

/// `-> 0.9 at epoch 5`: the setting moves to `to` at `unit` number `at`.
#[derive(Clone, Debug, Serialize)]
pub struct Ramp {
    pub to: Expr,
    pub unit: Ident,
    pub at: Expr,
    pub span: Span,
}

/// `f(a, key = b)`.
#[derive(Clone, Debug, Serialize)]
pub struct Call {
    pub func: Ident,
    pub args: Vec<Arg>,
    pub span: Span,
}

#[derive(Clone, Debug, Serialize)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
}

#[derive(Clone, Debug, Serialize)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum MulOp {
    Mul,
    Div,
    Mod,
}

#[derive(Clone, Debug, Serialize)]
pub enum ExprKind {
    Num(f64),
    Str(String),
    Name(String),
    /// `x[i, j]`: the tensor name and its index expressions
    Index(Ident, Vec<Expr>),
    Call(Call),
    Neg(Box<Expr>),
    /// `a + b - c`: each operand with `true` when it is subtracted
    Sum(Vec<(bool, Expr)>),
    /// `a * b / c % d`: the first operand's op is always `Mul`
    Product(Vec<(MulOp, Expr)>),
    /// `a ^ b`
    Pow(Box<Expr>, Box<Expr>),
    /// `a |> f(..) |> g(..)`
    Pipe(Vec<Expr>),
    /// `rbm1.W`: a parameter of a trained model, in experiment settings
    Field(Ident, Ident),
}

impl Expr {
    pub fn num(&self) -> Option<f64> {
        match &self.kind {
            ExprKind::Num(x) => Some(*x),
            ExprKind::Neg(e) => e.num().map(|x| -x),
            _ => None,
        }
    }
}
