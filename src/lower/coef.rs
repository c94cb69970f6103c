//! Coefficient tables: a term's `Coef` evaluated at every instance (assignment of its index
//! vars, row-major) in one vectorised pass, and its reverse-mode derivative with respect to the
//! parameters.
//!
//! Invariant: `CoefProg::eval(params)[a] == model.coef_value(&term.coef, params, assign_a)` for
//! every instance `a` (same f64 arithmetic up to operation order), and `backprop` adds
//! `sum_a adj[a] * d coef[a] / d theta_e` into the gradient buffer of every parameter element
//! `theta_e` the coefficient mentions.

use crate::ir::eval::{for_each_assignment, Params};
use crate::ir::{Affine, Coef, Func, Model, ParamId, Term};

/// One node of a flattened coefficient expression; children come before parents.
#[derive(Clone, Debug)]
enum Node {
    Const(f64),
    /// `param[offsets[a]]`; `offsets == None` means the identity (offset == instance index)
    Param {
        param: ParamId,
        offsets: Option<Vec<u32>>,
    },
    Add(Vec<usize>),
    Mul(Vec<usize>),
    Div(usize, usize),
    Powi(usize, i32),
    Neg(usize),
    Func(Func, usize),
}

/// A node value: a scalar broadcast over all instances, or one value per instance.
#[derive(Clone, Debug)]
enum Val {
    S(f64),
    V(Vec<f64>),
}

impl Val {
    fn at(&self, a: usize) -> f64 {
        match self {
            Val::S(x) => *x,
            Val::V(v) => v[a],
        }
    }
}

/// The fast shape `c * P[vars...]` where P's flat offset equals the instance index.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearCoef {
    pub scale: f64,
    pub param: ParamId,
}

/// A compiled coefficient of one term.
#[derive(Clone, Debug)]
pub struct CoefProg {
    nodes: Vec<Node>,
    n_inst: usize,
    /// `Some` when the coefficient is `c * P[v0, v1, ...]` with the term's vars in order and
    /// extents equal to P's shape: then the table *is* `c * P` and no gather is needed
    pub linear: Option<LinearCoef>,
}

/// Number of instances of a term (product of its var extents).
pub fn n_instances(t: &Term) -> usize {
    t.vars.iter().map(|v| v.extent).product()
}

fn is_identity_index(model: &Model, t: &Term, param: ParamId, index: &[Affine]) -> bool {
    let shape = &model.param(param).shape;
    index.len() == t.vars.len()
        && index
            .iter()
            .enumerate()
            .all(|(k, a)| a.as_var() == Some(k as u32) && t.vars[k].extent == shape[k])
}

/// Constant value of a coefficient without parameters, if it is one.
fn const_value(c: &Coef) -> Option<f64> {
    match c {
        Coef::Const(x) => Some(*x),
        Coef::Neg(a) => const_value(a).map(|x| -x),
        Coef::Mul(xs) => xs.iter().map(const_value).product(),
        Coef::Add(xs) => xs.iter().map(const_value).sum(),
        Coef::Div(a, b) => Some(const_value(a)? / const_value(b)?),
        Coef::Powi(a, n) => const_value(a).map(|x| x.powi(*n)),
        Coef::Func(f, a) => const_value(a).map(|x| f.apply(x)),
        Coef::Param { .. } => None,
    }
}

fn detect_linear(model: &Model, t: &Term, c: &Coef) -> Option<LinearCoef> {
    match c {
        Coef::Param { param, index } if is_identity_index(model, t, *param, index) => {
            Some(LinearCoef {
                scale: 1.0,
                param: *param,
            })
        }
        Coef::Neg(a) => detect_linear(model, t, a).map(|l| LinearCoef {
            scale: -l.scale,
            ..l
        }),
        Coef::Mul(xs) => {
            let mut lin = None;
            let mut scale = 1.0;
            for x in xs {
                if let Some(k) = const_value(x) {
                    scale *= k;
                } else if lin.is_none() {
                    lin = Some(detect_linear(model, t, x)?);
                } else {
                    return None;
                }
            }
            lin.map(|l: LinearCoef| LinearCoef {
                scale: scale * l.scale,
                ..l
            })
        }
        _ => None,
    }
}

impl CoefProg {
    pub fn compile(model: &Model, t: &Term) -> Self {
        let n_inst = n_instances(t);
        let mut nodes = Vec::new();
        flatten(model, t, &t.coef, &mut nodes);
        CoefProg {
            nodes,
            n_inst,
            linear: detect_linear(model, t, &t.coef),
        }
    }

    pub fn n_inst(&self) -> usize {
        self.n_inst
    }

    /// The parameters this coefficient mentions, sorted and deduplicated.
    pub fn params(&self) -> Vec<ParamId> {
        let mut ps: Vec<ParamId> = self
            .nodes
            .iter()
            .filter_map(|n| match n {
                Node::Param { param, .. } => Some(*param),
                _ => None,
            })
            .collect();
        ps.sort();
        ps.dedup();
        ps
    }

    fn forward(&self, params: &Params) -> Vec<Val> {
        let n = self.n_inst;
        let mut vals: Vec<Val> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let v = match node {
                Node::Const(x) => Val::S(*x),
                Node::Param { param, offsets } => {
                    let p = &params.values[param.idx()];
                    match offsets {
                        None => Val::V(p[..n].to_vec()),
                        Some(o) => Val::V(o.iter().map(|&k| p[k as usize]).collect()),
                    }
                }
                Node::Add(xs) => combine(xs, &vals, n, 0.0, |a, b| a + b),
                Node::Mul(xs) => combine(xs, &vals, n, 1.0, |a, b| a * b),
                Node::Div(a, b) => zip2(&vals[*a], &vals[*b], n, |x, y| x / y),
                Node::Powi(a, k) => map1(&vals[*a], |x| x.powi(*k)),
                Node::Neg(a) => map1(&vals[*a], |x| -x),
                Node::Func(f, a) => map1(&vals[*a], |x| f.apply(x)),
            };
            vals.push(v);
        }
        vals
    }

    /// The coefficient at every instance, in f64.
    pub fn eval(&self, params: &Params) -> Vec<f64> {
        let mut vals = self.forward(params);
        match vals.pop().expect("a coefficient has a root") {
            Val::S(x) => vec![x; self.n_inst],
            Val::V(v) => v,
        }
    }

    /// Adds `sum_a adj[a] * d coef[a] / d theta` into `grads[param]` for every parameter.
    /// `grads` is indexed by `ParamId` and holds flat buffers of each parameter's size.
    pub fn backprop(&self, params: &Params, adj: &[f64], grads: &mut [Vec<f64>]) {
        assert_eq!(adj.len(), self.n_inst, "one adjoint per instance");
        if let Some(l) = self.linear {
            for (g, &a) in grads[l.param.idx()].iter_mut().zip(adj) {
                *g += l.scale * a;
            }
            return;
        }
        let vals = self.forward(params);
        let n = self.n_inst;
        // adjoints per node; None = zero
        let mut adjs: Vec<Option<Vec<f64>>> = vec![None; self.nodes.len()];
        adjs[self.nodes.len() - 1] = Some(adj.to_vec());
        for k in (0..self.nodes.len()).rev() {
            let Some(g) = adjs[k].take() else { continue };
            let mut push = |child: usize, f: &dyn Fn(usize) -> f64| {
                let slot = adjs[child].get_or_insert_with(|| vec![0.0; n]);
                for a in 0..n {
                    slot[a] += g[a] * f(a);
                }
            };
            match &self.nodes[k] {
                Node::Const(_) => {}
                Node::Param { param, offsets } => {
                    let buf = &mut grads[param.idx()];
                    match offsets {
                        None => buf[..n].iter_mut().zip(&g).for_each(|(b, x)| *b += x),
                        Some(o) => o
                            .iter()
                            .zip(&g)
                            .for_each(|(&off, x)| buf[off as usize] += x),
                    }
                }
                Node::Add(xs) => {
                    for &c in xs {
                        push(c, &|_| 1.0);
                    }
                }
                Node::Mul(xs) => {
                    for (i, &c) in xs.iter().enumerate() {
                        let others: Vec<&Val> = xs
                            .iter()
                            .enumerate()
                            .filter(|(j, _)| *j != i)
                            .map(|(_, &o)| &vals[o])
                            .collect();
                        push(c, &|a| others.iter().map(|v| v.at(a)).product());
                    }
                }
                Node::Div(x, y) => {
                    let (vx, vy) = (&vals[*x], &vals[*y]);
                    push(*x, &|a| 1.0 / vy.at(a));
                    push(*y, &|a| -vx.at(a) / (vy.at(a) * vy.at(a)));
                }
                Node::Powi(x, p) => {
                    let vx = &vals[*x];
                    push(*x, &|a| *p as f64 * vx.at(a).powi(p - 1));
                }
                Node::Neg(x) => push(*x, &|_| -1.0),
                Node::Func(f, x) => {
                    let vx = &vals[*x];
                    push(*x, &|a| f.derivative(vx.at(a)));
                }
            }
        }
    }
}

fn map1(v: &Val, f: impl Fn(f64) -> f64) -> Val {
    match v {
        Val::S(x) => Val::S(f(*x)),
        Val::V(xs) => Val::V(xs.iter().map(|&x| f(x)).collect()),
    }
}

fn zip2(a: &Val, b: &Val, n: usize, f: impl Fn(f64, f64) -> f64) -> Val {
    match (a, b) {
        (Val::S(x), Val::S(y)) => Val::S(f(*x, *y)),
        _ => Val::V((0..n).map(|k| f(a.at(k), b.at(k))).collect()),
    }
}

fn combine(xs: &[usize], vals: &[Val], n: usize, unit: f64, f: impl Fn(f64, f64) -> f64) -> Val {
    let mut acc = Val::S(unit);
    for &x in xs {
        acc = zip2(&acc, &vals[x], n, &f);
    }
    acc
}

/// Flattens `c` into `nodes` (post-order) and returns the index of its root.
fn flatten(model: &Model, t: &Term, c: &Coef, nodes: &mut Vec<Node>) -> usize {
    let node = match c {
        Coef::Const(x) => Node::Const(*x),
        Coef::Param { param, index } => {
            let offsets = if is_identity_index(model, t, *param, index) {
                None
            } else {
                let mut o = Vec::with_capacity(n_instances(t));
                for_each_assignment(&t.vars, |a| {
                    o.push(model.param_offset(*param, index, a) as u32)
                });
                Some(o)
            };
            Node::Param {
                param: *param,
                offsets,
            }
        }
        Coef::Add(xs) => Node::Add(xs.iter().map(|x| flatten(model, t, x, nodes)).collect()),
        Coef::Mul(xs) => Node::Mul(xs.iter().map(|x| flatten(model, t, x, nodes)).collect()),
        Coef::Div(a, b) => {
            let a = flatten(model, t, a, nodes);
            let b = flatten(model, t, b, nodes);
            Node::Div(a, b)
        }
        Coef::Powi(a, k) => Node::Powi(flatten(model, t, a, nodes), *k),
        Coef::Neg(a) => Node::Neg(flatten(model, t, a, nodes)),
        Coef::Func(f, a) => Node::Func(*f, flatten(model, t, a, nodes)),
    };
    nodes.push(node);
    nodes.len() - 1
}
