//! The text form of kernels (`ebmc explain --emit kernels`): one statement a line, loops as
//! `par for r in 0..100 {`, indices as affine sums with `%` for Euclidean modulo, constants
//! printed with Rust's shortest round-trip formatting so the text is exact.
//!
//! Invariant: output depends only on the kernel (no map iteration), so it can be a golden.

use super::*;
use std::fmt::{self, Write};

struct Ctx<'k>(&'k Kernel);

impl Ctx<'_> {
    fn var(&self, v: VarId) -> &str {
        &self.0.vars[v.0 as usize].name
    }

    fn affine(&self, coeffs: &[(VarId, i64)], offset: i64) -> String {
        let mut s = String::new();
        for &(v, c) in coeffs {
            let name = self.var(v);
            let (sign, mag) = if c < 0 { ("-", -c) } else { ("+", c) };
            if s.is_empty() {
                if c < 0 {
                    s.push('-');
                }
            } else {
                let _ = write!(s, " {sign} ");
            }
            if mag == 1 {
                s.push_str(name);
            } else {
                let _ = write!(s, "{mag}*{name}");
            }
        }
        if s.is_empty() {
            return offset.to_string();
        }
        if offset > 0 {
            let _ = write!(s, " + {offset}");
        } else if offset < 0 {
            let _ = write!(s, " - {}", -offset);
        }
        s
    }

    fn index(&self, ix: &Index) -> String {
        let mut parts: Vec<String> = Vec::new();
        for t in &ix.terms {
            let inner = self.affine(&t.coeffs, t.offset);
            let body = match t.modulo {
                Some(m) if inner.contains(' ') => format!("(({inner}) % {m})"),
                Some(m) => format!("({inner} % {m})"),
                None => inner,
            };
            let simple =
                t.modulo.is_some() || matches!(t.coeffs[..], [] | [(_, 1)]) && t.offset == 0;
            parts.push(match (t.stride, simple) {
                (1, _) => body,
                (s, true) => format!("{s}*{body}"),
                (s, false) => format!("{s}*({body})"),
            });
        }
        if ix.offset != 0 || parts.is_empty() {
            parts.push(ix.offset.to_string());
        }
        parts.join(" + ").replace("+ -", "- ")
    }

    fn expr(&self, e: &Expr) -> String {
        match e {
            Expr::Const(c) => format!("{c:?}"),
            Expr::Load(b, ix) => format!("{}[{}]", self.0.bufs[b.0 as usize].name, self.index(ix)),
            Expr::Local(l) => self.0.locals[l.0 as usize].clone(),
            Expr::Un(UnOp::Neg, a) => format!("-{}", self.atom(a)),
            Expr::Un(op, a) => {
                let f = match op {
                    UnOp::Neg => unreachable!("handled above"),
                    UnOp::Exp => "exp",
                    UnOp::Log => "log",
                    UnOp::Sigmoid => "sigmoid",
                    UnOp::Tanh => "tanh",
                    UnOp::Abs => "abs",
                    UnOp::Sqrt => "sqrt",
                };
                format!("{f}({})", self.expr(a))
            }
            Expr::Bin(op @ (BinOp::Min | BinOp::Max), a, b) => {
                let f = if *op == BinOp::Min { "min" } else { "max" };
                format!("{f}({}, {})", self.expr(a), self.expr(b))
            }
            Expr::Bin(op, a, b) => {
                let o = match op {
                    BinOp::Add => "+",
                    BinOp::Sub => "-",
                    BinOp::Mul => "*",
                    BinOp::Div => "/",
                    BinOp::Min | BinOp::Max => unreachable!("handled above"),
                };
                format!("{} {o} {}", self.atom(a), self.atom(b))
            }
            Expr::Select {
                cmp,
                a,
                b,
                then,
                els,
            } => {
                let c = match cmp {
                    CmpOp::Lt => "<",
                    CmpOp::Le => "<=",
                    CmpOp::Gt => ">",
                    CmpOp::Ge => ">=",
                };
                format!(
                    "select({} {c} {}, {}, {})",
                    self.atom(a),
                    self.atom(b),
                    self.expr(then),
                    self.expr(els)
                )
            }
            Expr::Uniform { key, counter } => {
                format!("uniform(k{}, {})", key.0, self.index(counter))
            }
        }
    }

    /// An operand of an infix operator: parenthesised unless it binds tighter than any.
    fn atom(&self, e: &Expr) -> String {
        match e {
            Expr::Bin(BinOp::Min | BinOp::Max, ..) => self.expr(e),
            Expr::Bin(..) => format!("({})", self.expr(e)),
            Expr::Const(c) if *c < 0.0 => format!("({c:?})"),
            _ => self.expr(e),
        }
    }

    fn stmts(&self, out: &mut String, body: &[Stmt], depth: usize) {
        let pad = "  ".repeat(depth);
        for s in body {
            match s {
                Stmt::Loop { var, kind, body } => {
                    let k = match kind {
                        LoopKind::Serial => "",
                        LoopKind::Par => "par ",
                        LoopKind::Vec4 => "vec4 ",
                    };
                    let lv = &self.0.vars[var.0 as usize];
                    let _ = writeln!(out, "{pad}{k}for {} in 0..{} {{", lv.name, lv.extent);
                    self.stmts(out, body, depth + 1);
                    let _ = writeln!(out, "{pad}}}");
                }
                Stmt::Let { local, value } => {
                    let _ = writeln!(
                        out,
                        "{pad}let {} = {}",
                        self.0.locals[local.0 as usize],
                        self.expr(value)
                    );
                }
                Stmt::Store { buf, index, value } => {
                    let _ = writeln!(
                        out,
                        "{pad}{}[{}] = {}",
                        self.0.bufs[buf.0 as usize].name,
                        self.index(index),
                        self.expr(value)
                    );
                }
                Stmt::Key { key, stream } => {
                    let s = match self.index(stream).as_str() {
                        "0" => "stream0".to_string(),
                        s => format!("stream0 + {s}"),
                    };
                    let _ = writeln!(out, "{pad}key k{} = stream({s})", key.0);
                }
            }
        }
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = Ctx(self);
        let mut out = String::new();
        let _ = writeln!(out, "kernel {} {{", self.name);
        for b in &self.bufs {
            let a = match b.access {
                Access::In => "in",
                Access::Out => "out",
                Access::InOut => "inout",
            };
            let _ = writeln!(out, "  {a} {}: f32[{}]", b.name, b.len);
        }
        c.stmts(&mut out, &self.body, 1);
        out.push_str("}\n");
        f.write_str(&out)
    }
}
