//! A plain-Rust interpreter of kernel IR: one scalar f32 operation at a time, with the same
//! elementary functions ([`super::mathf`]) and random draws ([`super::rng`]) as the JIT, so the
//! two agree bit for bit. Slow and obviously right: the JIT's oracle.
//!
//! Invariant: it runs only kernels that passed `check`, on buffers of the declared sizes.

use super::check::CompileKernelError;
use super::{mathf, rng, BinOp, CmpOp, Expr, Kernel, LoopKind, RngArgs, Stmt, UnOp};
use std::ops::Range;

/// Checks that every buffer has the length the kernel was built for.
pub fn check_sizes(k: &Kernel, lens: &[usize]) -> Result<(), CompileKernelError> {
    if lens.len() != k.bufs.len() {
        return Err(CompileKernelError::Invalid {
            kernel: k.name.clone(),
            what: format!("{} buffers passed, {} declared", lens.len(), k.bufs.len()),
        });
    }
    for (b, &got) in k.bufs.iter().zip(lens) {
        if got != b.len {
            return Err(CompileKernelError::BufferSize {
                kernel: k.name.clone(),
                buf: b.name.clone(),
                got,
                want: b.len,
            });
        }
    }
    Ok(())
}

struct Machine<'a, 'b> {
    k: &'a Kernel,
    bufs: &'a mut [&'b mut [f32]],
    rng: RngArgs,
    assign: Vec<i64>,
    locals: Vec<f32>,
    keys: Vec<u64>,
}

impl Machine<'_, '_> {
    fn expr(&self, e: &Expr) -> f32 {
        match e {
            Expr::Const(c) => *c,
            Expr::Load(b, ix) => self.bufs[b.0 as usize][ix.eval(&self.assign) as usize],
            Expr::Local(l) => self.locals[l.0 as usize],
            Expr::Un(op, a) => {
                let x = self.expr(a);
                match op {
                    UnOp::Neg => -x,
                    UnOp::Exp => mathf::exp(x),
                    UnOp::Log => mathf::log(x),
                    UnOp::Sigmoid => mathf::sigmoid(x),
                    UnOp::Tanh => mathf::tanh(x),
                    UnOp::Abs => x.abs(),
                    UnOp::Sqrt => x.sqrt(),
                }
            }
            Expr::Bin(op, a, b) => {
                let (x, y) = (self.expr(a), self.expr(b));
                match op {
                    BinOp::Add => x + y,
                    BinOp::Sub => x - y,
                    BinOp::Mul => x * y,
                    BinOp::Div => x / y,
                    BinOp::Min => fmin(x, y),
                    BinOp::Max => fmax(x, y),
                }
            }
            Expr::Select {
                cmp,
                a,
                b,
                then,
                els,
            } => {
                let (x, y) = (self.expr(a), self.expr(b));
                let c = match cmp {
                    CmpOp::Lt => x < y,
                    CmpOp::Le => x <= y,
                    CmpOp::Gt => x > y,
                    CmpOp::Ge => x >= y,
                };
                if c {
                    self.expr(then)
                } else {
                    self.expr(els)
                }
            }
            Expr::Uniform { key, counter } => {
                rng::uniform(self.keys[key.0 as usize], counter.eval(&self.assign) as u32)
            }
        }
    }

    fn stmts(&mut self, body: &[Stmt], range: &Option<Range<usize>>) {
        for s in body {
            match s {
                Stmt::Loop { var, kind, body } => {
                    let ext = self.k.vars[var.0 as usize].extent;
                    let r = match (kind, range) {
                        (LoopKind::Par, Some(r)) => r.start.min(ext)..r.end.min(ext),
                        _ => 0..ext,
                    };
                    for i in r {
                        self.assign[var.0 as usize] = i as i64;
                        self.stmts(body, &None);
                    }
                }
                Stmt::Let { local, value } => self.locals[local.0 as usize] = self.expr(value),
                Stmt::Store { buf, index, value } => {
                    let v = self.expr(value);
                    let i = index.eval(&self.assign) as usize;
                    self.bufs[buf.0 as usize][i] = v;
                }
                Stmt::Key { key, stream } => {
                    let s = self
                        .rng
                        .stream0
                        .wrapping_add(stream.eval(&self.assign) as u64);
                    self.keys[key.0 as usize] = rng::key(self.rng.seed, s, self.rng.step);
                }
            }
        }
    }
}

/// Cranelift's `fmin` / `fmax` semantics: NaN in, NaN out; `-0 < +0`.
fn fmin(x: f32, y: f32) -> f32 {
    if x.is_nan() || y.is_nan() {
        f32::NAN
    } else if x == y {
        if x.is_sign_negative() {
            x
        } else {
            y
        }
    } else {
        x.min(y)
    }
}

fn fmax(x: f32, y: f32) -> f32 {
    if x.is_nan() || y.is_nan() {
        f32::NAN
    } else if x == y {
        if x.is_sign_positive() {
            x
        } else {
            y
        }
    } else {
        x.max(y)
    }
}

/// Runs `k` on `bufs` (in declaration order). `range` restricts the `par` loop (clamped to its
/// extent); `None` runs all of it.
pub fn run(
    k: &Kernel,
    bufs: &mut [&mut [f32]],
    rng: RngArgs,
    range: Option<Range<usize>>,
) -> Result<(), CompileKernelError> {
    k.check()?;
    let lens: Vec<usize> = bufs.iter().map(|b| b.len()).collect();
    check_sizes(k, &lens)?;
    let mut m = Machine {
        k,
        bufs,
        rng,
        assign: vec![0; k.vars.len()],
        locals: vec![0.0; k.locals.len()],
        keys: vec![0; k.n_keys as usize],
    };
    m.stmts(&k.body, &range);
    Ok(())
}
