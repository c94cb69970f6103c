//! Kernels generated from a model's term structure for sparse, offset contractions:
//! - [`field_kernel`]: the natural parameters `z` of one discrete group from every term
//!   touching it, each term slot an affine-index loop nest (lattices, convolutions, laterals);
//! - [`checkerboard`]: a heat-bath half-sweep of a 2-D periodic lattice group, on a
//!   colour-split layout so that each colour's sites are contiguous (f32x4 lanes).
//!
//! Sign convention (the Plan's): `z_u = E_u(0) - E_u(1)` for binary units and
//! `(E_u(-1) - E_u(+1)) / 2` for spins; both equal `-sum coef * (other factors)` over the
//! instances touching `u`. Spins draw `+1` with `sigmoid(2 z)`, binaries `1` with `sigmoid(z)`.
//!
//! Invariant: a builder either returns a kernel that computes exactly the Plan's `z` / draw
//! for every variable, or a `LatticeError` saying which term shape it does not handle (the
//! caller then uses the generic executor).

use super::*;
use crate::ir::eval::for_each_assignment;
use crate::ir::{Affine, Coef, Domain, GroupId, Model, TermId};

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum LatticeError {
    #[error("group `{group}`: {why}")]
    Unsupported { group: String, why: String },
}

/// Where a coefficient buffer's values come from.
#[derive(Clone, Debug, PartialEq)]
pub struct CoefBuf {
    pub buf: BufId,
    pub term: TermId,
    /// the coefficient does not depend on the term's index vars: one value
    pub uniform: bool,
    /// `Some((l0, l1))`: stored in the colour-split layout of an `l0 x l1` lattice
    pub split: Option<(usize, usize)>,
}

/// Whether `c` has the same value at every instance (no parameter indexed by a var).
pub fn uniform_coef(c: &Coef) -> bool {
    match c {
        Coef::Const(_) => true,
        Coef::Param { index, .. } => index.iter().all(|a| a.coeffs.is_empty()),
        Coef::Add(xs) | Coef::Mul(xs) => xs.iter().all(uniform_coef),
        Coef::Div(a, b) => uniform_coef(a) && uniform_coef(b),
        Coef::Powi(a, _) | Coef::Neg(a) | Coef::Func(_, a) => uniform_coef(a),
    }
}

fn unsupported(model: &Model, g: GroupId, why: impl Into<String>) -> LatticeError {
    LatticeError::Unsupported {
        group: model.group(g).name.clone(),
        why: why.into(),
    }
}

/// The flat index of a unit factor as a kernel index over `vars` (term var `k` -> `vars[k]`).
fn factor_index(shape: &[usize], index: &[Affine], vars: &[VarId], base: Index) -> Index {
    let mut ix = base;
    let mut stride = 1i64;
    let mut strides = vec![0i64; shape.len()];
    for a in (0..shape.len()).rev() {
        strides[a] = stride;
        stride *= shape[a] as i64;
    }
    for (a, af) in index.iter().enumerate() {
        let coeffs: Vec<(VarId, i64)> = af
            .coeffs
            .iter()
            .map(|&(v, c)| (vars[v as usize], c))
            .collect();
        ix = ix.plus(strides[a], &coeffs, af.offset, af.modulo);
    }
    ix
}

/// The `z` of discrete group `g` for `rows` configurations: buffers are `z` (out,
/// `[rows, n_elems(g)]`), one state buffer `x_<group>` (`[rows, n_elems]`) per other group
/// read, and one coefficient buffer per term touching `g`.
pub fn field_kernel(
    model: &Model,
    g: GroupId,
    rows: usize,
) -> Result<(Kernel, Vec<CoefBuf>), LatticeError> {
    let grp = model.group(g);
    if !matches!(grp.domain, Domain::Binary | Domain::Spin) {
        return Err(unsupported(model, g, "only binary and spin groups"));
    }
    let n = grp.n_elems();
    let mut k = Kernel::new(&format!("field_{}", grp.name));
    let z = k.buf("z", rows * n, Access::Out);
    let mut states: Vec<Option<BufId>> = vec![None; model.groups.len()];
    let mut coefs = Vec::new();
    let r = k.var("r", rows);
    let e = k.var("e", n);
    let mut body = vec![Stmt::Loop {
        var: e,
        kind: LoopKind::Vec4,
        body: vec![Stmt::Store {
            buf: z,
            index: Index::var(r, n as i64).plus(1, &[(e, 1)], 0, None),
            value: Expr::Const(0.0),
        }],
    }];
    for (ti, t) in model.terms.iter().enumerate() {
        let slots: Vec<usize> = (0..t.units.len())
            .filter(|&s| t.units[s].group == g)
            .collect();
        if slots.is_empty() {
            continue;
        }
        // Instances touching one variable of `g` twice would need the x*x substitution.
        let mut clash = false;
        for_each_assignment(&t.vars, |a| {
            let els: Vec<usize> = slots
                .iter()
                .map(|&s| model.unit_offset(&t.units[s], a))
                .collect();
            for i in 0..els.len() {
                clash |= els[i + 1..].contains(&els[i]);
            }
        });
        if clash {
            return Err(unsupported(
                model,
                g,
                format!("term #{ti} touches one unit twice"),
            ));
        }
        let uniform = uniform_coef(&t.coef);
        let n_inst: usize = t.vars.iter().map(|v| v.extent).product();
        let cb = k.buf(
            &format!("c{ti}"),
            if uniform { 1 } else { n_inst },
            Access::In,
        );
        coefs.push(CoefBuf {
            buf: cb,
            term: TermId(ti as u32),
            uniform,
            split: None,
        });
        for &s in &slots {
            let vars: Vec<VarId> = t.vars.iter().map(|v| k.var(&v.name, v.extent)).collect();
            let inst = Index::constant(0);
            let inst = t.vars.iter().enumerate().fold(inst, |ix, (q, _)| {
                let stride: usize = t.vars[q + 1..].iter().map(|v| v.extent).product();
                ix.plus(stride as i64, &[(vars[q], 1)], 0, None)
            });
            let mut val = Expr::load(cb, if uniform { Index::constant(0) } else { inst });
            for (f, u) in t.units.iter().enumerate() {
                if f == s {
                    continue;
                }
                let gb = *states[u.group.idx()].get_or_insert_with(|| {
                    let h = model.group(u.group);
                    k.buf(&format!("x_{}", h.name), rows * h.n_elems(), Access::In)
                });
                let h = model.group(u.group);
                let base = Index::var(r, h.n_elems() as i64);
                let x = Expr::load(gb, factor_index(&h.shape, &u.index, &vars, base));
                for _ in 0..u.power {
                    val = Expr::times(val, x.clone());
                }
            }
            let target = factor_index(
                &grp.shape,
                &t.units[s].index,
                &vars,
                Index::var(r, n as i64),
            );
            // Lanes of a vector loop must write distinct elements: true when targets are distinct.
            let mut seen = vec![false; n];
            let mut injective = true;
            for_each_assignment(&t.vars, |a| {
                let el = model.unit_offset(&t.units[s], a);
                injective &= !std::mem::replace(&mut seen[el], true);
            });
            let store = Stmt::Store {
                buf: z,
                index: target.clone(),
                value: Expr::bin(BinOp::Sub, Expr::load(z, target), val),
            };
            let mut nest = vec![store];
            for (q, &v) in vars.iter().enumerate().rev() {
                let kind = if q + 1 == vars.len() && injective {
                    LoopKind::Vec4
                } else {
                    LoopKind::Serial
                };
                nest = vec![Stmt::Loop {
                    var: v,
                    kind,
                    body: nest,
                }];
            }
            body.extend(nest);
        }
    }
    k.body = vec![Stmt::Loop {
        var: r,
        kind: LoopKind::Par,
        body,
    }];
    k.simplify();
    Ok((k, coefs))
}

/// A recognised lattice: neighbour offsets per pair term, and bias terms.
#[derive(Clone, Debug)]
pub struct LatticeShape {
    pub l0: usize,
    pub l1: usize,
    /// `(term, (d0, d1))`: `coef * s[i, j] * s[i + d0, j + d1]` (periodic)
    pub pairs: Vec<(TermId, (i64, i64))>,
    /// `coef * s[i, j]`
    pub biases: Vec<TermId>,
}

/// Per-axis shift of an index `(var_a + off) mod L_a` (or the bare var) on term vars `(0, 1)`.
fn shift_of(index: &[Affine], shape: &[usize]) -> Option<(i64, i64)> {
    let mut d = [0i64; 2];
    for a in 0..2 {
        let af = &index[a];
        if af.coeffs != [(a as u32, 1)] {
            return None;
        }
        match af.modulo {
            None if af.offset == 0 => {}
            Some(m) if m == shape[a] as i64 => d[a] = af.offset.rem_euclid(m),
            _ => return None,
        }
    }
    Some((d[0], d[1]))
}

/// Recognises `g` as a 2-D periodic lattice with even sides whose terms are nearest-neighbour
/// style pairs with odd offsets (so a checkerboard colouring is exact) and biases.
pub fn lattice_shape(model: &Model, g: GroupId) -> Result<LatticeShape, LatticeError> {
    let grp = model.group(g);
    let bad = |why: &str| Err(unsupported(model, g, why));
    if grp.shape.len() != 2 || !matches!(grp.domain, Domain::Binary | Domain::Spin) {
        return bad("not a 2-D binary or spin group");
    }
    let (l0, l1) = (grp.shape[0], grp.shape[1]);
    if l0 % 2 != 0 || l1 % 2 != 0 {
        return bad("checkerboard sweeps need even lattice sides");
    }
    let mut out = LatticeShape {
        l0,
        l1,
        pairs: vec![],
        biases: vec![],
    };
    for (ti, t) in model.terms.iter().enumerate() {
        if !t.units.iter().any(|u| u.group == g) {
            continue;
        }
        let axes_ok = t.vars.len() == 2 && t.vars[0].extent == l0 && t.vars[1].extent == l1;
        if t.units.iter().any(|u| u.group != g || u.power != 1) || !axes_ok {
            return bad("a term couples the lattice to another group or has another index shape");
        }
        let id = TermId(ti as u32);
        match &t.units[..] {
            [u] if shift_of(&u.index, &grp.shape) == Some((0, 0)) => out.biases.push(id),
            [a, b] if shift_of(&a.index, &grp.shape) == Some((0, 0)) => {
                let Some((d0, d1)) = shift_of(&b.index, &grp.shape) else {
                    return bad("a pair term is not a periodic shift");
                };
                if (d0 + d1) % 2 == 0 {
                    return bad("a pair offset joins sites of one checkerboard colour");
                }
                out.pairs.push((id, (d0, d1)));
            }
            _ => return bad("a term is neither a bias nor a shifted pair"),
        }
    }
    Ok(out)
}

/// Position of natural site `(i, j)` in the colour-split layout: colour `(i + j) % 2` first,
/// then row `i`, then `j / 2`.
pub fn split_pos(l0: usize, l1: usize, i: usize, j: usize) -> usize {
    let m = l1 / 2;
    ((i + j) % 2) * l0 * m + i * m + j / 2
}

/// The heat-bath update of colour `c` (sites with `(i + j) % 2 == c`) for `chains` chains.
/// Buffers: `s0`, `s1` (the two colours, `[chains, l0, l1/2]`; colour `c` is written), then one
/// coefficient buffer per term (uniform: one value; else colour-split `[2, l0, l1/2]`). The
/// draw of a site uses stream `stream0 + chain` at counter `split_pos(i, j)`.
pub fn checkerboard(
    model: &Model,
    g: GroupId,
    shape: &LatticeShape,
    chains: usize,
    c: usize,
) -> (Kernel, Vec<CoefBuf>) {
    let grp = model.group(g);
    let spin = grp.domain == Domain::Spin;
    let (l0, l1) = (shape.l0, shape.l1);
    let m = l1 / 2;
    let mut k = Kernel::new(&format!("heatbath_{}_color{c}", grp.name));
    let s = [
        k.buf(
            "s0",
            chains * l0 * m,
            if c == 0 { Access::Out } else { Access::In },
        ),
        k.buf(
            "s1",
            chains * l0 * m,
            if c == 1 { Access::Out } else { Access::In },
        ),
    ];
    let mut coefs = Vec::new();
    let mut add_coef = |k: &mut Kernel, term: TermId| {
        let uniform = uniform_coef(&model.terms[term.idx()].coef);
        let buf = k.buf(
            &format!("c{}", term.0),
            if uniform { 1 } else { l0 * l1 },
            Access::In,
        );
        coefs.push(CoefBuf {
            buf,
            term,
            uniform,
            split: (!uniform).then_some((l0, l1)),
        });
        (buf, uniform)
    };
    let pair_bufs: Vec<_> = shape
        .pairs
        .iter()
        .map(|(t, _)| add_coef(&mut k, *t))
        .collect();
    let bias_bufs: Vec<_> = shape.biases.iter().map(|t| add_coef(&mut k, *t)).collect();
    let par_chains = chains > 1;
    let ch = k.var("ch", chains);
    let i2 = k.var("i2", l0 / 2);
    let kk = k.var("k", m);
    let key = k.key();
    let zl = k.local("z");
    let chain_base = |ch_term: bool| {
        if ch_term {
            Index::var(ch, (l0 * m) as i64)
        } else {
            Index::constant(0)
        }
    };
    // site (row 2*i2 + q + d0, column j + d1) where j = 2k + p: colour (c + d0 + d1) % 2,
    // split column (k + floor((p + d1) / 2)) mod m
    let at = |q: usize, d0: i64, d1: i64, base: Index| -> (usize, Index) {
        let p = ((q + c) % 2) as i64;
        let col = (p + d1).div_euclid(2);
        let colour = (c as i64 + d0 + d1).rem_euclid(2) as usize;
        let ix = base
            .plus(m as i64, &[(i2, 2)], q as i64 + d0, Some(l0 as i64))
            .plus(1, &[(kk, 1)], col, Some(m as i64));
        (colour, ix)
    };
    let mut rows = Vec::new();
    for q in 0..2usize {
        let mut z: Option<Expr> = None;
        let push = |z: &mut Option<Expr>, e: Expr| {
            *z = Some(match z.take() {
                None => e,
                Some(a) => Expr::plus(a, e),
            })
        };
        let coef_at = |(buf, uniform): (BufId, bool), q: usize, d0: i64, d1: i64| {
            if uniform {
                Expr::load(buf, Index::constant(0))
            } else {
                let (colour, ix) = at(q, d0, d1, Index::constant(0));
                let ix = Index {
                    offset: ix.offset + (colour * l0 * m) as i64,
                    ..ix
                };
                Expr::load(buf, ix)
            }
        };
        for (&(_, (d0, d1)), &cb) in shape.pairs.iter().zip(&pair_bufs) {
            // forward instance at u reads s[u + d]; backward instance at u - d reads s[u - d]
            let (cf, ixf) = at(q, d0, d1, chain_base(par_chains));
            let fwd = Expr::times(coef_at(cb, q, 0, 0), Expr::load(s[cf], ixf));
            let (cbk, ixb) = at(q, -d0, -d1, chain_base(par_chains));
            let bwd = Expr::times(coef_at(cb, q, -d0, -d1), Expr::load(s[cbk], ixb));
            push(&mut z, fwd);
            push(&mut z, bwd);
        }
        for &cb in &bias_bufs {
            push(&mut z, coef_at(cb, q, 0, 0));
        }
        let field = Expr::un(UnOp::Neg, z.unwrap_or(Expr::Const(0.0)));
        let nat = if spin {
            Expr::times(Expr::Const(2.0), field)
        } else {
            field
        };
        let (_, own) = at(q, 0, 0, chain_base(par_chains));
        let (_, ctr) = at(q, 0, 0, Index::constant((c * l0 * m) as i64));
        let body = vec![
            Stmt::Let {
                local: zl,
                value: Expr::un(UnOp::Sigmoid, nat),
            },
            Stmt::Store {
                buf: s[c],
                index: own,
                value: Expr::select(
                    CmpOp::Lt,
                    Expr::Uniform { key, counter: ctr },
                    Expr::Local(zl),
                    Expr::Const(1.0),
                    Expr::Const(if spin { -1.0 } else { 0.0 }),
                ),
            },
        ];
        rows.push(Stmt::Loop {
            var: kk,
            kind: LoopKind::Vec4,
            body,
        });
    }
    let key_stmt = Stmt::Key {
        key,
        stream: if par_chains {
            Index::var(ch, 1)
        } else {
            Index::constant(0)
        },
    };
    k.body = if par_chains {
        vec![Stmt::Loop {
            var: ch,
            kind: LoopKind::Par,
            body: vec![
                key_stmt,
                Stmt::Loop {
                    var: i2,
                    kind: LoopKind::Serial,
                    body: rows,
                },
            ],
        }]
    } else {
        let mut body = vec![key_stmt];
        body.extend(rows);
        vec![Stmt::Loop {
            var: i2,
            kind: LoopKind::Par,
            body,
        }]
    };
    k.simplify();
    (k, coefs)
}
