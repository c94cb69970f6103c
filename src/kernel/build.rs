//! Kernel builders for the pieces the executor calls: the fused GEMM epilogue of a block draw
//! (`z = acc + bias`, mean, draw) over `[rows, n]`. Lattice kernels built from model terms are
//! in [`super::lattice`].
//!
//! Invariant: builders produce kernels that pass `check`; the draw of element `(r, c)` uses
//! stream `stream0 + r` at counter `c`, so a row's draws do not depend on the batch split.

use super::*;

/// What an epilogue draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpilogueFamily {
    /// `p = sigmoid(z)`, `x = [u < p]` in {0, 1}
    Bernoulli,
    /// `p = sigmoid(2 z)`, `x = +1 if u < p else -1`
    Spin,
}

/// `p[r, c] = mean(acc[r, c] + bias[c])` and `x[r, c] = draw(p)` for `r < rows`, `c < n`.
/// Buffers: `acc` (in), `bias` (in), `p` (out), `x` (out); the `par` loop is over rows.
pub fn epilogue(rows: usize, n: usize, family: EpilogueFamily) -> Kernel {
    let name = match family {
        EpilogueFamily::Bernoulli => "epilogue_bernoulli",
        EpilogueFamily::Spin => "epilogue_spin",
    };
    let mut k = Kernel::new(name);
    let acc = k.buf("acc", rows * n, Access::In);
    let bias = k.buf("bias", n, Access::In);
    let p = k.buf("p", rows * n, Access::Out);
    let x = k.buf("x", rows * n, Access::Out);
    let r = k.var("r", rows);
    let c = k.var("c", n);
    let key = k.key();
    let pl = k.local("pr");
    let at = Index::var(r, n as i64).plus(1, &[(c, 1)], 0, None);
    let z = Expr::plus(
        Expr::load(acc, at.clone()),
        Expr::load(bias, Index::var(c, 1)),
    );
    let (z, lo) = match family {
        EpilogueFamily::Bernoulli => (z, 0.0),
        EpilogueFamily::Spin => (Expr::times(Expr::Const(2.0), z), -1.0),
    };
    let inner = vec![
        Stmt::Let {
            local: pl,
            value: Expr::un(UnOp::Sigmoid, z),
        },
        Stmt::Store {
            buf: p,
            index: at.clone(),
            value: Expr::Local(pl),
        },
        Stmt::Store {
            buf: x,
            index: at,
            value: Expr::select(
                CmpOp::Lt,
                Expr::Uniform {
                    key,
                    counter: Index::var(c, 1),
                },
                Expr::Local(pl),
                Expr::Const(1.0),
                Expr::Const(lo),
            ),
        },
    ];
    k.body = vec![Stmt::Loop {
        var: r,
        kind: LoopKind::Par,
        body: vec![
            Stmt::Key {
                key,
                stream: Index::var(r, 1),
            },
            Stmt::Loop {
                var: c,
                kind: LoopKind::Vec4,
                body: inner,
            },
        ],
    }];
    k
}

/// `p[r, c] = mean(acc[r, c] + bias[c])`: `sigmoid` (Bernoulli) or `tanh` (spins), for mean
/// field and Rao-Blackwellised statistics. Buffers: `acc` (in), `bias` (in), `p` (out).
pub fn epilogue_mean(rows: usize, n: usize, family: EpilogueFamily) -> Kernel {
    let (name, op) = match family {
        EpilogueFamily::Bernoulli => ("mean_bernoulli", UnOp::Sigmoid),
        EpilogueFamily::Spin => ("mean_spin", UnOp::Tanh),
    };
    let mut k = Kernel::new(name);
    let acc = k.buf("acc", rows * n, Access::In);
    let bias = k.buf("bias", n, Access::In);
    let p = k.buf("p", rows * n, Access::Out);
    let r = k.var("r", rows);
    let c = k.var("c", n);
    let at = Index::var(r, n as i64).plus(1, &[(c, 1)], 0, None);
    let z = Expr::plus(
        Expr::load(acc, at.clone()),
        Expr::load(bias, Index::var(c, 1)),
    );
    k.body = vec![Stmt::Loop {
        var: r,
        kind: LoopKind::Par,
        body: vec![Stmt::Loop {
            var: c,
            kind: LoopKind::Vec4,
            body: vec![Stmt::Store {
                buf: p,
                index: at,
                value: Expr::un(op, z),
            }],
        }],
    }];
    k
}
