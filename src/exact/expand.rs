//! The energy of a model expanded into term instances: every assignment of a term's index
//! variables becomes one monomial with a numeric coefficient and a list of unit sites. This
//! makes the energy of one state cheap to evaluate (enumeration evaluates it millions of
//! times) and gives the parameter gradient `dE/dtheta` of one state by reverse mode over the
//! coefficient expression.
//!
//! Invariant: `Expanded::energy` equals `ir::Model::energy` on every state (checked by the
//! property tests against the direct evaluator); instances whose monomial has a factor out of
//! the state space are never produced because `sema` proved every index in range.

use crate::ir::eval::{logsumexp, sigmoid, softplus, Params, State};
use crate::ir::{Coef, LogNormKind, Model, ParamId, Term};

/// One unit factor of an instance: element `elem` of group `group`, raised to `power`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    pub group: u32,
    pub elem: u32,
    pub power: u32,
}

/// One instance of a term: `coef * prod_sites x^power` at one assignment of the term's vars.
#[derive(Clone, Debug)]
pub struct Inst {
    pub assign: Vec<usize>,
    pub coef: f64,
    pub sites: Vec<Site>,
}

impl Inst {
    pub fn monomial(&self, state: &State) -> f64 {
        let mut m = 1.0;
        for s in &self.sites {
            let x = state.values[s.group as usize][s.elem as usize];
            m *= if s.power == 1 {
                x
            } else {
                x.powi(s.power as i32)
            };
        }
        m
    }
    pub fn value(&self, state: &State) -> f64 {
        self.coef * self.monomial(state)
    }
}

/// All instances of one term, with the term's index in its owner (`Model::terms`, or a
/// log-normaliser's `arg`).
#[derive(Clone, Debug)]
pub struct TermInsts {
    pub term: usize,
    pub insts: Vec<Inst>,
}

/// One argument of a log-normaliser at one outer assignment: a sum of term instances.
#[derive(Clone, Debug)]
pub struct Arg {
    /// (index into the log-normaliser's `arg`, instance)
    pub parts: Vec<(usize, Inst)>,
}

impl Arg {
    pub fn value(&self, state: &State) -> f64 {
        self.parts.iter().map(|(_, i)| i.value(state)).sum()
    }
}

/// One instance of a log-normaliser: `softplus(args[0])` or `logsumexp(args)`.
#[derive(Clone, Debug)]
pub struct LnInst {
    pub lognorm: usize,
    pub softplus: bool,
    pub args: Vec<Arg>,
}

impl LnInst {
    pub fn value(&self, state: &State) -> f64 {
        if self.softplus {
            softplus(self.args[0].value(state))
        } else {
            let zs: Vec<f64> = self.args.iter().map(|a| a.value(state)).collect();
            logsumexp(&zs)
        }
    }
    /// `d value / d arg_c` for every argument (sigmoid for softplus, softmax for lse).
    pub fn weights(&self, state: &State) -> Vec<f64> {
        if self.softplus {
            vec![sigmoid(self.args[0].value(state))]
        } else {
            let zs: Vec<f64> = self.args.iter().map(|a| a.value(state)).collect();
            let l = logsumexp(&zs);
            zs.iter().map(|z| (z - l).exp()).collect()
        }
    }
}

/// The energy of a model at fixed parameters, as instances.
#[derive(Clone, Debug)]
pub struct Expanded {
    pub poly: Vec<TermInsts>,
    pub lognorms: Vec<LnInst>,
}

fn expand_term(model: &Model, params: &Params, t: &Term, prefix: &[usize]) -> Vec<Inst> {
    let mut out = Vec::new();
    let inner = &t.vars[prefix.len()..];
    let mut a = prefix.to_vec();
    a.resize(t.vars.len(), 0);
    crate::ir::eval::for_each_assignment(inner, |ia| {
        a[prefix.len()..].copy_from_slice(ia);
        let sites = t
            .units
            .iter()
            .map(|u| Site {
                group: u.group.0,
                elem: model.unit_offset(u, &a) as u32,
                power: u.power,
            })
            .collect();
        out.push(Inst {
            assign: a.clone(),
            coef: model.coef_value(&t.coef, params, &a),
            sites,
        });
    });
    out
}

impl Expanded {
    pub fn new(model: &Model, params: &Params) -> Self {
        let poly = model
            .terms
            .iter()
            .enumerate()
            .map(|(k, t)| TermInsts {
                term: k,
                insts: expand_term(model, params, t, &[]),
            })
            .collect();
        let mut lognorms = Vec::new();
        for (li, l) in model.lognorms.iter().enumerate() {
            let arg_at = |outer: &[usize]| Arg {
                parts: l
                    .arg
                    .iter()
                    .enumerate()
                    .flat_map(|(k, t)| {
                        expand_term(model, params, t, outer)
                            .into_iter()
                            .map(move |i| (k, i))
                    })
                    .collect(),
            };
            match l.kind {
                LogNormKind::Softplus => crate::ir::eval::for_each_assignment(&l.outer, |a| {
                    lognorms.push(LnInst {
                        lognorm: li,
                        softplus: true,
                        args: vec![arg_at(a)],
                    })
                }),
                LogNormKind::LogSumExp { state_var } => {
                    let sv = state_var as usize;
                    let rest: Vec<_> = l
                        .outer
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| *k != sv)
                        .map(|(_, v)| v.clone())
                        .collect();
                    crate::ir::eval::for_each_assignment(&rest, |r| {
                        let args = (0..l.outer[sv].extent)
                            .map(|c| {
                                let mut a = r[..sv].to_vec();
                                a.push(c);
                                a.extend_from_slice(&r[sv..]);
                                arg_at(&a)
                            })
                            .collect();
                        lognorms.push(LnInst {
                            lognorm: li,
                            softplus: false,
                            args,
                        });
                    });
                }
            }
        }
        Expanded { poly, lognorms }
    }

    /// `E(state)`.
    pub fn energy(&self, state: &State) -> f64 {
        let p: f64 = self
            .poly
            .iter()
            .flat_map(|t| &t.insts)
            .map(|i| i.value(state))
            .sum();
        let l: f64 = self.lognorms.iter().map(|l| l.value(state)).sum();
        p + l
    }

    /// `out += scale * dE(state)/dtheta` for every parameter element.
    pub fn add_grad(
        &self,
        model: &Model,
        params: &Params,
        state: &State,
        scale: f64,
        out: &mut Params,
    ) {
        for ti in &self.poly {
            let coef = &model.terms[ti.term].coef;
            for i in &ti.insts {
                let m = i.monomial(state);
                if m != 0.0 {
                    coef_grad(model, coef, params, &i.assign, scale * m, out);
                }
            }
        }
        for ln in &self.lognorms {
            let ws = ln.weights(state);
            let l = &model.lognorms[ln.lognorm];
            for (w, arg) in ws.iter().zip(&ln.args) {
                for (k, i) in &arg.parts {
                    let m = i.monomial(state);
                    if m != 0.0 && *w != 0.0 {
                        coef_grad(
                            model,
                            &l.arg[*k].coef,
                            params,
                            &i.assign,
                            scale * w * m,
                            out,
                        );
                    }
                }
            }
        }
    }
}

/// Parameters of the same shapes, all zero (the accumulator for gradients).
pub fn zeros_like(params: &Params) -> Params {
    Params {
        values: params.values.iter().map(|v| vec![0.0; v.len()]).collect(),
    }
}

/// Reverse mode over a coefficient: `out += seed * d coef / d theta` at one assignment.
pub fn coef_grad(
    model: &Model,
    c: &Coef,
    params: &Params,
    assign: &[usize],
    seed: f64,
    out: &mut Params,
) {
    let val = |x: &Coef| model.coef_value(x, params, assign);
    match c {
        Coef::Const(_) => {}
        Coef::Param { param, index } => {
            let off = model.param_offset(*param, index, assign);
            out.values[param.idx()][off] += seed;
        }
        Coef::Add(xs) => xs
            .iter()
            .for_each(|x| coef_grad(model, x, params, assign, seed, out)),
        Coef::Mul(xs) => {
            let vals: Vec<f64> = xs.iter().map(val).collect();
            for (k, x) in xs.iter().enumerate() {
                // the product of the other factors, without dividing (a factor may be zero)
                let others: f64 = vals
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != k)
                    .map(|(_, v)| v)
                    .product();
                coef_grad(model, x, params, assign, seed * others, out);
            }
        }
        Coef::Div(a, b) => {
            let (va, vb) = (val(a), val(b));
            coef_grad(model, a, params, assign, seed / vb, out);
            coef_grad(model, b, params, assign, -seed * va / (vb * vb), out);
        }
        Coef::Powi(a, n) => {
            let d = *n as f64 * val(a).powi(n - 1);
            coef_grad(model, a, params, assign, seed * d, out);
        }
        Coef::Neg(a) => coef_grad(model, a, params, assign, -seed, out),
        Coef::Func(f, a) => {
            let d = f.derivative(val(a));
            coef_grad(model, a, params, assign, seed * d, out);
        }
    }
}

/// Every parameter element, as `(param, flat offset)`, in declaration order.
pub fn param_elems(model: &Model) -> Vec<(ParamId, usize)> {
    model
        .param_ids()
        .flat_map(|p| (0..model.param(p).n_elems()).map(move |e| (p, e)))
        .collect()
}
