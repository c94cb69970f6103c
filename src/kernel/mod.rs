//! The kernel IR: straight loop nests over constant extents that read and write named, flat
//! f32 buffers through affine indices, with f32 arithmetic, `exp`/`log`/`sigmoid`, compare and
//! select, and counter-based random draws. It is what `lower` hands to a back end (`jit`
//! compiles it to native code, [`eval`] interprets it) and what `explain --emit kernels` prints.
//!
//! Invariant: a [`Kernel`] that passed [`Kernel::check`] only touches its buffers in range:
//! every index is proven in `0..len` by interval arithmetic over the loop extents (the `par`
//! loop's runtime range is clamped to its extent by every back end). Dimensions are constants;
//! parameter values and states live in buffers, so a kernel survives learning unchanged.

pub mod build;
pub mod check;
mod display;
pub mod eval;
pub mod lattice;
pub mod mathf;
pub mod rng;

pub use check::{CompileKernelError, Interval};

/// A buffer argument: `bufs[k]` of the compiled function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BufId(pub u32);
/// A loop variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VarId(pub u32);
/// A local f32 value (single assignment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalId(pub u32);
/// A random-stream key computed by a [`Stmt::Key`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// read only
    In,
    /// written (and possibly read back at the written element)
    Out,
    /// read and written
    InOut,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffer {
    pub name: String,
    pub len: usize,
    pub access: Access,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopVar {
    pub name: String,
    pub extent: usize,
}

/// `stride * ((sum_k coeff_k * var_k + offset) mod modulo)`; Euclidean mod, so the bracket
/// lies in `0..modulo` when a modulo is given.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdxTerm {
    pub stride: i64,
    pub coeffs: Vec<(VarId, i64)>,
    pub offset: i64,
    pub modulo: Option<i64>,
}

/// A flat element index: `offset + sum of terms`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Index {
    pub terms: Vec<IdxTerm>,
    pub offset: i64,
}

impl Index {
    pub fn constant(c: i64) -> Self {
        Index {
            terms: vec![],
            offset: c,
        }
    }
    /// `stride * var`
    pub fn var(v: VarId, stride: i64) -> Self {
        Index::constant(0).plus(stride, &[(v, 1)], 0, None)
    }
    /// Adds the term `stride * ((sum coeffs + offset) mod modulo)`.
    pub fn plus(
        mut self,
        stride: i64,
        coeffs: &[(VarId, i64)],
        offset: i64,
        m: Option<i64>,
    ) -> Self {
        if m.is_none() {
            // keep the canonical form: plain affine parts fold into one term per stride
            self.offset += stride * offset;
            self.terms.push(IdxTerm {
                stride,
                coeffs: coeffs.to_vec(),
                offset: 0,
                modulo: None,
            });
        } else {
            self.terms.push(IdxTerm {
                stride,
                coeffs: coeffs.to_vec(),
                offset,
                modulo: m,
            });
        }
        self
    }
    /// Value at an assignment of loop variables (`assign[var]`).
    pub fn eval(&self, assign: &[i64]) -> i64 {
        let mut x = self.offset;
        for t in &self.terms {
            let mut a = t.offset;
            for &(v, c) in &t.coeffs {
                a += c * assign[v.0 as usize];
            }
            if let Some(m) = t.modulo {
                a = a.rem_euclid(m);
            }
            x += t.stride * a;
        }
        x
    }
    /// The coefficient of `v` in the index when no modulo wraps (the per-lane step of a
    /// vector loop over `v`).
    pub fn slope(&self, v: VarId) -> i64 {
        self.terms
            .iter()
            .flat_map(|t| {
                t.coeffs
                    .iter()
                    .filter(move |c| c.0 == v)
                    .map(move |c| t.stride * c.1)
            })
            .sum()
    }
    pub fn mentions(&self, v: VarId) -> bool {
        self.terms
            .iter()
            .any(|t| t.coeffs.iter().any(|c| c.0 == v && c.1 != 0))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    Exp,
    Log,
    Sigmoid,
    Tanh,
    Abs,
    Sqrt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Const(f32),
    Load(BufId, Index),
    Local(LocalId),
    Un(UnOp, Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    /// `if a cmp b { then } else { els }`
    Select {
        cmp: CmpOp,
        a: Box<Expr>,
        b: Box<Expr>,
        then: Box<Expr>,
        els: Box<Expr>,
    },
    /// a uniform draw in `[0, 1)` from stream `key` at `counter` (see [`rng`])
    Uniform {
        key: KeyId,
        counter: Index,
    },
}

impl Expr {
    pub fn load(b: BufId, i: Index) -> Self {
        Expr::Load(b, i)
    }
    pub fn un(op: UnOp, a: Expr) -> Self {
        Expr::Un(op, Box::new(a))
    }
    pub fn bin(op: BinOp, a: Expr, b: Expr) -> Self {
        Expr::Bin(op, Box::new(a), Box::new(b))
    }
    pub fn plus(a: Expr, b: Expr) -> Self {
        Expr::bin(BinOp::Add, a, b)
    }
    pub fn times(a: Expr, b: Expr) -> Self {
        Expr::bin(BinOp::Mul, a, b)
    }
    pub fn select(cmp: CmpOp, a: Expr, b: Expr, then: Expr, els: Expr) -> Self {
        Expr::Select {
            cmp,
            a: Box::new(a),
            b: Box::new(b),
            then: Box::new(then),
            els: Box::new(els),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopKind {
    Serial,
    /// the outermost loop, split across threads by its runtime range `lo..hi`
    Par,
    /// innermost, elementwise: compiled to f32x4 lanes with a scalar remainder
    Vec4,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    Loop {
        var: VarId,
        kind: LoopKind,
        body: Vec<Stmt>,
    },
    Let {
        local: LocalId,
        value: Expr,
    },
    Store {
        buf: BufId,
        index: Index,
        value: Expr,
    },
    /// `key = rng::key(seed, stream0 + stream, step)` (see [`rng::key`])
    Key {
        key: KeyId,
        stream: Index,
    },
}

/// One kernel: a function `(bufs, rng = [seed, stream0, step], lo, hi)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    pub name: String,
    pub bufs: Vec<Buffer>,
    pub vars: Vec<LoopVar>,
    /// names of locals, by `LocalId`
    pub locals: Vec<String>,
    pub n_keys: u32,
    pub body: Vec<Stmt>,
}

/// Arguments of the counter-based generator shared by every draw of one kernel call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RngArgs {
    pub seed: u64,
    /// stream of the first chain / row; the kernel adds its own row index
    pub stream0: u64,
    /// which call this is (a sweep counter): a fresh key per call
    pub step: u64,
}

impl Kernel {
    pub fn new(name: &str) -> Self {
        Kernel {
            name: name.to_string(),
            bufs: vec![],
            vars: vec![],
            locals: vec![],
            n_keys: 0,
            body: vec![],
        }
    }
    pub fn buf(&mut self, name: &str, len: usize, access: Access) -> BufId {
        self.bufs.push(Buffer {
            name: name.to_string(),
            len,
            access,
        });
        BufId(self.bufs.len() as u32 - 1)
    }
    pub fn var(&mut self, name: &str, extent: usize) -> VarId {
        self.vars.push(LoopVar {
            name: name.to_string(),
            extent,
        });
        VarId(self.vars.len() as u32 - 1)
    }
    pub fn local(&mut self, name: &str) -> LocalId {
        self.locals.push(name.to_string());
        LocalId(self.locals.len() as u32 - 1)
    }
    pub fn key(&mut self) -> KeyId {
        self.n_keys += 1;
        KeyId(self.n_keys - 1)
    }
    /// Statement executions of one full run (innermost statements times their loop extents):
    /// a static measure of work, used to decide whether spawning threads pays.
    pub fn work(&self) -> usize {
        fn count(body: &[Stmt], mult: usize, vars: &[LoopVar]) -> usize {
            body.iter()
                .map(|s| match s {
                    Stmt::Loop { var, body, .. } => {
                        count(body, mult.saturating_mul(vars[var.0 as usize].extent), vars)
                    }
                    _ => mult,
                })
                .fold(0usize, |a, b| a.saturating_add(b))
        }
        count(&self.body, 1, &self.vars)
    }

    /// The outermost `par` loop's extent, if the kernel has one (the range callers split).
    pub fn par_extent(&self) -> Option<usize> {
        match self.body.as_slice() {
            [Stmt::Loop {
                var,
                kind: LoopKind::Par,
                ..
            }] => Some(self.vars[var.0 as usize].extent),
            _ => None,
        }
    }
}
