//! The batched executor against the IR's direct evaluator (f64, by definition): fields from
//! energy differences, free energies from brute-force sums over the summed groups, gradient
//! statistics from finite differences of the energy, and Gibbs marginals from enumeration.
//! Models cover every lowering path: dense (identity and permuted coefficients), bias, generic
//! (modular lattices, three-way, laterals with diagonals, spin offsets, categorical, Gaussian).

#![allow(clippy::needless_range_loop)] // index loops mirror the math

use ebmc::analysis::{analyze, Block, BlockMember, Schedule};
use ebmc::derive::plan::*;
use ebmc::diag::Span;
use ebmc::exec::{Batch, Exec, Rngs};
use ebmc::ir::eval::{Params, State};
use ebmc::ir::*;
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------- small model builders

pub struct B {
    pub m: Model,
    pub p: Params,
    rng: StdRng,
}

pub fn var(name: &str, extent: usize) -> IndexVar {
    IndexVar {
        name: name.into(),
        extent,
    }
}
pub fn v(k: u32) -> Affine {
    Affine::var(k)
}
pub fn shift(k: u32, off: i64, modulo: i64) -> Affine {
    Affine {
        coeffs: vec![(k, 1)],
        offset: off,
        modulo: Some(modulo),
    }
}
pub fn u(g: GroupId, index: Vec<Affine>, power: u32) -> UnitFactor {
    UnitFactor {
        group: g,
        index,
        power,
    }
}
pub fn pr(p: ParamId, index: Vec<Affine>) -> Coef {
    Coef::Param { param: p, index }
}
pub fn neg(c: Coef) -> Coef {
    Coef::Mul(vec![Coef::Const(-1.0), c])
}

impl B {
    pub fn new(name: &str, seed: u64) -> Self {
        B {
            m: Model::empty(name, Span::default()),
            p: Params { values: vec![] },
            rng: StdRng::seed_from_u64(seed),
        }
    }
    pub fn group(&mut self, name: &str, shape: &[usize], domain: Domain, role: Role) -> GroupId {
        self.m.groups.push(Group {
            name: name.into(),
            shape: shape.to_vec(),
            domain,
            role,
            span: Span::default(),
        });
        GroupId(self.m.groups.len() as u32 - 1)
    }
    /// A parameter with values `offset + scale * N(0,1)`-ish (uniform, for simplicity).
    pub fn param(
        &mut self,
        name: &str,
        shape: &[usize],
        scale: f64,
        offset: f64,
        cons: Vec<Constraint>,
    ) -> ParamId {
        let n: usize = shape.iter().product();
        let vals = (0..n)
            .map(|_| offset + scale * (2.0 * self.rng.random::<f64>() - 1.0))
            .collect();
        self.m.params.push(Param {
            name: name.into(),
            shape: shape.to_vec(),
            init: Init::Const(0.0),
            constraints: cons,
            span: Span::default(),
        });
        self.p.values.push(vals);
        ParamId(self.m.params.len() as u32 - 1)
    }
    pub fn term(&mut self, vars: Vec<IndexVar>, units: Vec<UnitFactor>, coef: Coef) {
        self.m.terms.push(Term {
            vars,
            units,
            coef,
            origin: Origin::Energy,
            span: Span::default(),
        });
    }
    pub fn finish(self) -> (Model, Params) {
        (self.m, self.p)
    }
}

/// `-v W h - a v - b h`, binary.
pub fn rbm(nv: usize, nh: usize, scale: f64, seed: u64) -> (Model, Params) {
    let mut b = B::new("rbm", seed);
    let vg = b.group("v", &[nv], Domain::Binary, Role::Visible);
    let hg = b.group("h", &[nh], Domain::Binary, Role::Hidden);
    let w = b.param("W", &[nv, nh], scale, 0.0, vec![]);
    let a = b.param("a", &[nv], scale, 0.0, vec![]);
    let c = b.param("b", &[nh], scale, 0.0, vec![]);
    b.term(
        vec![var("i", nv), var("j", nh)],
        vec![u(vg, vec![v(0)], 1), u(hg, vec![v(1)], 1)],
        neg(pr(w, vec![v(0), v(1)])),
    );
    b.term(
        vec![var("i", nv)],
        vec![u(vg, vec![v(0)], 1)],
        neg(pr(a, vec![v(0)])),
    );
    b.term(
        vec![var("j", nh)],
        vec![u(hg, vec![v(0)], 1)],
        neg(pr(c, vec![v(0)])),
    );
    b.finish()
}

/// Two-hidden-layer DBM, binary.
pub fn dbm(nv: usize, n1: usize, n2: usize, scale: f64, seed: u64) -> (Model, Params) {
    let mut b = B::new("dbm", seed);
    let vg = b.group("v", &[nv], Domain::Binary, Role::Visible);
    let h1 = b.group("h1", &[n1], Domain::Binary, Role::Hidden);
    let h2 = b.group("h2", &[n2], Domain::Binary, Role::Hidden);
    let w1 = b.param("W1", &[nv, n1], scale, 0.0, vec![]);
    let w2 = b.param("W2", &[n1, n2], scale, 0.0, vec![]);
    let a = b.param("a", &[nv], scale, 0.0, vec![]);
    let b1 = b.param("b1", &[n1], scale, 0.0, vec![]);
    let b2 = b.param("b2", &[n2], scale, 0.0, vec![]);
    b.term(
        vec![var("i", nv), var("j", n1)],
        vec![u(vg, vec![v(0)], 1), u(h1, vec![v(1)], 1)],
        neg(pr(w1, vec![v(0), v(1)])),
    );
    b.term(
        vec![var("j", n1), var("k", n2)],
        vec![u(h1, vec![v(0)], 1), u(h2, vec![v(1)], 1)],
        neg(pr(w2, vec![v(0), v(1)])),
    );
    b.term(
        vec![var("i", nv)],
        vec![u(vg, vec![v(0)], 1)],
        neg(pr(a, vec![v(0)])),
    );
    b.term(
        vec![var("j", n1)],
        vec![u(h1, vec![v(0)], 1)],
        neg(pr(b1, vec![v(0)])),
    );
    b.term(
        vec![var("k", n2)],
        vec![u(h2, vec![v(0)], 1)],
        neg(pr(b2, vec![v(0)])),
    );
    b.finish()
}

/// Periodic 2-D spin lattice `-J * s[i,j] (s[i+1,j] + s[i,j+1]) - hf[i,j] s[i,j]`.
pub fn ising(l: usize, seed: u64) -> (Model, Params) {
    let mut b = B::new("ising", seed);
    let s = b.group("s", &[l, l], Domain::Spin, Role::Visible);
    let j = b.param("J", &[], 0.3, 0.3, vec![]);
    let hf = b.param("hf", &[l, l], 0.2, 0.0, vec![]);
    let li = l as i64;
    for (di, dj) in [(1, 0), (0, 1)] {
        b.term(
            vec![var("i", l), var("j", l)],
            vec![
                u(s, vec![v(0), v(1)], 1),
                u(s, vec![shift(0, di, li), shift(1, dj, li)], 1),
            ],
            neg(pr(j, vec![])),
        );
    }
    b.term(
        vec![var("i", l), var("j", l)],
        vec![u(s, vec![v(0), v(1)], 1)],
        neg(pr(hf, vec![v(0), v(1)])),
    );
    b.finish()
}

/// A zoo of non-dense shapes on small groups: permuted coefficients (dense with a table),
/// binary laterals with a diagonal, spin laterals with a diagonal (offset), a three-way
/// term, a categorical hidden group and an expression coefficient.
pub fn zoo(seed: u64) -> (Model, Params) {
    let mut b = B::new("zoo", seed);
    let x = b.group("x", &[4], Domain::Binary, Role::Visible);
    let s = b.group("s", &[3], Domain::Spin, Role::Visible);
    let c = b.group("c", &[2, 3], Domain::Categorical, Role::Hidden);
    let h = b.group("h", &[3], Domain::Binary, Role::Hidden);
    let sh = b.group("sh", &[2], Domain::Spin, Role::Hidden);
    let wt = b.param("Wt", &[3, 4], 0.8, 0.0, vec![]);
    let l = b.param("L", &[4, 4], 0.5, 0.0, vec![]);
    let js = b.param("Js", &[3, 3], 0.5, 0.0, vec![]);
    let t3 = b.param("T", &[4, 3, 2], 0.6, 0.0, vec![]);
    let vc = b.param("Vc", &[3, 2, 3], 0.7, 0.0, vec![]);
    let sc = b.param("sc", &[3], 0.3, 1.0, vec![Constraint::Positive]);
    let bc = b.param("bc", &[2, 3], 0.5, 0.0, vec![]);
    let vs = b.param("Vs", &[4, 2], 0.8, 0.0, vec![]);
    // a hidden spin group (summed out: log 2 cosh)
    b.term(
        vec![var("i", 4), var("k", 2)],
        vec![u(x, vec![v(0)], 1), u(sh, vec![v(1)], 1)],
        neg(pr(vs, vec![v(0), v(1)])),
    );
    // x[i] h[j] with coefficient Wt[j, i] / sc[j]: dense, coefficient table by gather
    b.term(
        vec![var("i", 4), var("j", 3)],
        vec![u(x, vec![v(0)], 1), u(h, vec![v(1)], 1)],
        Coef::Div(
            Box::new(neg(pr(wt, vec![v(1), v(0)]))),
            Box::new(pr(sc, vec![v(1)])),
        ),
    );
    // binary laterals including the diagonal i = k
    b.term(
        vec![var("i", 4), var("k", 4)],
        vec![u(x, vec![v(0)], 1), u(x, vec![v(1)], 1)],
        neg(pr(l, vec![v(0), v(1)])),
    );
    // spin laterals including the diagonal (a constant there)
    b.term(
        vec![var("i", 3), var("k", 3)],
        vec![u(s, vec![v(0)], 1), u(s, vec![v(1)], 1)],
        neg(pr(js, vec![v(0), v(1)])),
    );
    // three-way x[i] s[j] h[(i + j) % 3] with an offset index into c's parameter
    b.term(
        vec![var("i", 4), var("j", 3), var("k", 2)],
        vec![
            u(x, vec![v(0)], 1),
            u(s, vec![v(1)], 1),
            u(c, vec![v(2), shift(0, 1, 3)], 1),
        ],
        neg(pr(t3, vec![v(0), v(1), v(2)])),
    );
    // spin - categorical pairwise and a categorical bias with an expression coefficient
    b.term(
        vec![var("j", 3), var("k", 2), var("q", 3)],
        vec![u(s, vec![v(0)], 1), u(c, vec![v(1), v(2)], 1)],
        neg(pr(vc, vec![v(0), v(1), v(2)])),
    );
    b.term(
        vec![var("k", 2), var("q", 3)],
        vec![u(c, vec![v(0), v(1)], 1)],
        Coef::Mul(vec![
            Coef::Const(-0.5),
            Coef::Powi(Box::new(pr(bc, vec![v(0), v(1)])), 3),
        ]),
    );
    b.term(
        vec![var("j", 3)],
        vec![u(h, vec![v(0)], 1)],
        Coef::Func(Func::Tanh, Box::new(pr(sc, vec![v(0)]))),
    );
    b.term(
        vec![],
        vec![],
        Coef::Mul(vec![Coef::Const(0.25), pr(sc, vec![Affine::constant(1)])]),
    );
    b.finish()
}

/// Gaussian-Bernoulli RBM `(v - a)^2 / (2 sigma^2) - v / sigma * W * h - b h`, expanded.
pub fn grbm(nv: usize, nh: usize, seed: u64) -> (Model, Params) {
    let mut b = B::new("grbm", seed);
    let vg = b.group("v", &[nv], Domain::Real, Role::Visible);
    let hg = b.group("h", &[nh], Domain::Binary, Role::Hidden);
    let w = b.param("W", &[nv, nh], 0.5, 0.0, vec![]);
    let a = b.param("a", &[nv], 0.5, 0.0, vec![]);
    let c = b.param("b", &[nh], 0.5, 0.0, vec![]);
    let sg = b.param("sigma", &[nv], 0.3, 1.0, vec![Constraint::Positive]);
    let s2 = |k: u32| {
        Coef::Mul(vec![
            Coef::Const(2.0),
            Coef::Powi(Box::new(pr(sg, vec![v(k)])), 2),
        ])
    };
    b.term(
        vec![var("i", nv)],
        vec![u(vg, vec![v(0)], 2)],
        Coef::Div(Box::new(Coef::Const(1.0)), Box::new(s2(0))),
    );
    b.term(
        vec![var("i", nv)],
        vec![u(vg, vec![v(0)], 1)],
        Coef::Div(
            Box::new(Coef::Mul(vec![Coef::Const(-2.0), pr(a, vec![v(0)])])),
            Box::new(s2(0)),
        ),
    );
    b.term(
        vec![var("i", nv)],
        vec![],
        Coef::Div(
            Box::new(Coef::Powi(Box::new(pr(a, vec![v(0)])), 2)),
            Box::new(s2(0)),
        ),
    );
    b.term(
        vec![var("i", nv), var("j", nh)],
        vec![u(vg, vec![v(0)], 1), u(hg, vec![v(1)], 1)],
        Coef::Div(
            Box::new(neg(pr(w, vec![v(0), v(1)]))),
            Box::new(pr(sg, vec![v(0)])),
        ),
    );
    b.term(
        vec![var("j", nh)],
        vec![u(hg, vec![v(0)], 1)],
        neg(pr(c, vec![v(0)])),
    );
    b.finish()
}

// ---------------------------------------------------------------- a plan for tests

fn family_of(d: Domain) -> Family {
    match d {
        Domain::Binary => Family::Bernoulli,
        Domain::Spin => Family::Spin,
        Domain::Real => Family::Gaussian,
        Domain::Categorical => Family::Softmax,
    }
}

/// The Plan the executor needs, built with the (always valid) single-site schedule from
/// `analyze`, families from domains, and as summed groups the hidden groups that share no
/// term with each other or themselves (chosen greedily in id order).
pub fn test_plan(model: &Model) -> Plan {
    let (structure, _) = analyze(model);
    let mut summed: Vec<GroupId> = Vec::new();
    for g in model
        .group_ids()
        .filter(|&g| model.group(g).role == Role::Hidden)
    {
        let clash = model.terms.iter().any(|t| {
            let n = t
                .units
                .iter()
                .filter(|x| x.group == g || summed.contains(&x.group))
                .count();
            n >= 2 && t.units.iter().any(|x| x.group == g)
        });
        if !clash {
            summed.push(g);
        }
    }
    let kept_groups = model.group_ids().filter(|g| !summed.contains(g)).collect();
    let kept_terms = (0..model.terms.len())
        .filter(|&k| {
            model.terms[k]
                .units
                .iter()
                .all(|x| !summed.contains(&x.group))
        })
        .map(|k| TermId(k as u32))
        .collect();
    Plan {
        conditionals: model
            .group_ids()
            .map(|g| Conditional {
                group: g,
                family: family_of(model.group(g).domain),
                field: vec![],
                precision: vec![],
                lognorms: vec![],
                terms: vec![],
            })
            .collect(),
        free_energy: FreeEnergy {
            summed,
            kept_groups,
            kept_terms,
            reason: "test".into(),
        },
        meanfield: MeanField {
            blocks: structure.meanfield_schedule.blocks.clone(),
            iters: 200,
            damping: 0.0,
            tol: 1e-7,
            needs_second_moments: false,
            supported: true,
            reason: "test".into(),
        },
        gradients: vec![],
        structure,
    }
}

/// Group-level two-block schedule `{groups in a} | rest`, for bipartite models.
pub fn two_blocks(model: &Model, a: &[&str]) -> Schedule {
    let mk = |inside: bool| Block {
        members: model
            .group_ids()
            .filter(|&g| a.contains(&model.group(g).name.as_str()) == inside)
            .map(|g| BlockMember {
                group: g,
                elems: None,
            })
            .collect(),
    };
    Schedule {
        blocks: vec![mk(true), mk(false)],
        reason: "test".into(),
        user: false,
    }
}

use ebmc::testgen::random_state;

pub fn to_batch(model: &Model, states: &[State]) -> Batch {
    Batch {
        x: model
            .group_ids()
            .map(|g| {
                let n = model.group(g).n_elems();
                Array2::from_shape_fn((states.len(), n), |(r, e)| {
                    states[r].values[g.idx()][e] as f32
                })
            })
            .collect(),
        sq: vec![None; model.groups.len()],
    }
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

// ---------------------------------------------------------------- checks

/// Fields of every group vs energy differences of the direct evaluator.
fn check_fields(model: &Model, params: &Params, seed: u64) {
    check_fields_with(model, params, &test_plan(model), seed)
}

fn check_fields_with(model: &Model, params: &Params, plan: &Plan, seed: u64) {
    let ex = Exec::new(model, plan, params).expect("executor accepts the model");
    let mut rng = StdRng::seed_from_u64(seed);
    let states: Vec<State> = (0..5).map(|_| random_state(model, &mut rng)).collect();
    let batch = to_batch(model, &states);
    for g in model.group_ids() {
        let grp = model.group(g);
        let f = ex.fields(g, &batch);
        for (r, st) in states.iter().enumerate() {
            let energy_at = |var: usize, val: &dyn Fn(&mut Vec<f64>)| {
                let mut s = st.clone();
                val(&mut s.values[g.idx()]);
                let _ = var;
                model.energy(params, &s)
            };
            for var in 0..grp.n_vars() {
                match grp.domain {
                    Domain::Binary | Domain::Spin => {
                        let (lo, hi) = if grp.domain == Domain::Binary {
                            (0.0, 1.0)
                        } else {
                            (-1.0, 1.0)
                        };
                        let e0 = energy_at(var, &|x| x[var] = lo);
                        let e1 = energy_at(var, &|x| x[var] = hi);
                        let want = (e0 - e1) / (hi - lo);
                        let got = f.z[(r, var)] as f64;
                        assert!(
                            close(got, want, 1e-4),
                            "{} field of {}[{var}] row {r}: {got} vs {want}",
                            model.name,
                            grp.name
                        );
                    }
                    Domain::Categorical => {
                        let k = grp.n_states();
                        let set = |c: usize| {
                            move |x: &mut Vec<f64>| {
                                for q in 0..k {
                                    x[var * k + q] = (q == c) as u8 as f64;
                                }
                            }
                        };
                        let e0 = energy_at(var, &set(0));
                        for c in 1..k {
                            let want = e0 - energy_at(var, &set(c));
                            let got = (f.z[(r, var * k + c)] - f.z[(r, var * k)]) as f64;
                            assert!(
                                close(got, want, 1e-4),
                                "{} field of {}[{var}]={c}: {got} vs {want}",
                                model.name,
                                grp.name
                            );
                        }
                    }
                    Domain::Real => {
                        let em = energy_at(var, &|x| x[var] = -1.0);
                        let e0 = energy_at(var, &|x| x[var] = 0.0);
                        let ep = energy_at(var, &|x| x[var] = 1.0);
                        let beta = ep + em - 2.0 * e0;
                        let z = (em - ep) / 2.0;
                        let bt = f.beta.as_ref().expect("precision")[(r, var)] as f64;
                        assert!(
                            close(bt, beta, 1e-4),
                            "precision of {}[{var}]: {bt} vs {beta}",
                            grp.name
                        );
                        assert!(
                            close(f.z[(r, var)] as f64, z, 1e-4),
                            "field of {}[{var}]",
                            grp.name
                        );
                    }
                }
            }
        }
    }
}

/// Free energy vs `-log sum exp(-E)` over all states of the summed (discrete) groups, and
/// per-row energies vs the direct evaluator.
fn check_free_energy(model: &Model, params: &Params, seed: u64) {
    check_free_energy_with(model, params, &test_plan(model), seed)
}

fn check_free_energy_with(model: &Model, params: &Params, plan: &Plan, seed: u64) {
    let ex = Exec::new(model, plan, params).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let states: Vec<State> = (0..4).map(|_| random_state(model, &mut rng)).collect();
    let batch = to_batch(model, &states);
    let e = ex.energy(&batch);
    for (r, st) in states.iter().enumerate() {
        let want = model.energy(params, st);
        assert!(
            close(e[r], want, 1e-4),
            "{} energy row {r}: {} vs {want}",
            model.name,
            e[r]
        );
    }
    let f = ex.free_energy(&batch, None);
    let summed = &plan.free_energy.summed;
    for (r, st) in states.iter().enumerate() {
        // enumerate the summed groups' joint states
        let mut terms = Vec::new();
        let sizes: Vec<(usize, usize)> = summed
            .iter()
            .map(|&g| (model.group(g).n_vars(), model.group(g).n_states()))
            .collect();
        let radix: Vec<usize> = summed
            .iter()
            .zip(&sizes)
            .flat_map(|(&g, &(nv, k))| {
                std::iter::repeat_n(
                    if model.group(g).domain == Domain::Categorical {
                        k
                    } else {
                        2
                    },
                    nv,
                )
            })
            .collect();
        let total: usize = radix.iter().product();
        for code in 0..total {
            let mut s = st.clone();
            let mut c = code;
            let mut pos = 0;
            for &g in summed {
                let grp = model.group(g);
                for var in 0..grp.n_vars() {
                    let d = c % radix[pos];
                    c /= radix[pos];
                    pos += 1;
                    match grp.domain {
                        Domain::Binary => s.values[g.idx()][var] = d as f64,
                        Domain::Spin => s.values[g.idx()][var] = if d == 1 { 1.0 } else { -1.0 },
                        Domain::Categorical => {
                            let k = grp.n_states();
                            for q in 0..k {
                                s.values[g.idx()][var * k + q] = (q == d) as u8 as f64;
                            }
                        }
                        Domain::Real => unreachable!("no real summed groups in these checks"),
                    }
                }
            }
            terms.push(-model.energy(params, &s));
        }
        let want = -ebmc::ir::eval::logsumexp(&terms);
        assert!(
            close(f[r], want, 1e-4),
            "{} free energy row {r}: {} vs {want}",
            model.name,
            f[r]
        );
    }
}

/// `energy_grad` vs central finite differences of the batch-mean energy.
fn check_grad(model: &Model, params: &Params, seed: u64) {
    check_grad_with(model, params, &test_plan(model), seed)
}

fn check_grad_with(model: &Model, params: &Params, plan: &Plan, seed: u64) {
    let ex = Exec::new(model, plan, params).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let states: Vec<State> = (0..3).map(|_| random_state(model, &mut rng)).collect();
    let g = ex.energy_grad(&to_batch(model, &states));
    let mean_e =
        |p: &Params| states.iter().map(|s| model.energy(p, s)).sum::<f64>() / states.len() as f64;
    for (pi, vals) in params.values.iter().enumerate() {
        for e in 0..vals.len() {
            let h = 1e-5;
            let mut pp = params.clone();
            pp.values[pi][e] += h;
            let up = mean_e(&pp);
            pp.values[pi][e] -= 2.0 * h;
            let down = mean_e(&pp);
            let want = (up - down) / (2.0 * h);
            assert!(
                close(g[pi][e], want, 1e-3),
                "{} dE/d{}[{e}]: {} vs {want}",
                model.name,
                model.params[pi].name,
                g[pi][e]
            );
        }
    }
}

#[test]
fn exec_rbm_matches_direct_evaluation() {
    let (m, p) = rbm(7, 5, 1.0, 1);
    check_fields(&m, &p, 2);
    check_free_energy(&m, &p, 3);
    check_grad(&m, &p, 4);
}

#[test]
fn exec_dbm_matches_direct_evaluation() {
    let (m, p) = dbm(5, 4, 3, 1.0, 5);
    check_fields(&m, &p, 6);
    check_free_energy(&m, &p, 7);
    check_grad(&m, &p, 8);
}

#[test]
fn exec_ising_matches_direct_evaluation() {
    let (m, p) = ising(4, 9);
    check_fields(&m, &p, 10);
    check_free_energy(&m, &p, 11);
    check_grad(&m, &p, 12);
}

#[test]
fn exec_zoo_matches_direct_evaluation() {
    for seed in 0..3 {
        let (m, p) = zoo(seed);
        check_fields(&m, &p, 13 + seed);
        check_free_energy(&m, &p, 14 + seed);
        check_grad(&m, &p, 15 + seed);
    }
}

#[test]
fn exec_grbm_matches_direct_evaluation() {
    let (m, p) = grbm(4, 3, 16);
    check_fields(&m, &p, 17);
    check_free_energy(&m, &p, 18);
    check_grad(&m, &p, 19);
}

#[test]
fn lowering_classifies_terms_and_dumps() {
    let (m, _) = rbm(3, 2, 1.0, 1);
    let low = ebmc::lower::lower(&m);
    let text = low.dump(&m).to_string();
    let want = "kernels rbm
  t0: dense rowsum((v . M) * h)  M[3, 2] = -1 * W
  t1: bias v . scatter(-1 * a)
  t2: bias h . scatter(-1 * b)
  field v:
    z -= gemm(h, M(t0)^T)
    z -= row(t1)
  field h:
    z -= gemm(v, M(t0))
    z -= row(t2)
";
    assert_eq!(text, want);
    let (m, _) = ising(3, 1);
    let text = ebmc::lower::lower(&m).dump(&m).to_string();
    assert!(
        text.contains("t0: generic 9 instances of -1 * J")
            || text.contains("t0: generic 9 instances of table[9](J)"),
        "{text}"
    );
    assert!(
        text.contains("gather-scatter t0: 18 field, 0 precision, 0 offset entries, 18 reads"),
        "{text}"
    );
}

/// Block-Gibbs marginals on a tiny model vs exact enumeration of all states.
#[test]
fn gibbs_marginals_match_enumeration() {
    let (m, p) = rbm(4, 3, 1.5, 21);
    let mut plan = test_plan(&m);
    plan.structure.schedule = two_blocks(&m, &["h"]);
    let ex = Exec::new(&m, &plan, &p).unwrap();
    // exact marginals of v and h
    let n = 4 + 3;
    let mut z = 0.0;
    let mut marg = vec![0.0; n];
    for code in 0..(1usize << n) {
        let bits: Vec<f64> = (0..n).map(|k| ((code >> k) & 1) as f64).collect();
        let st = State {
            values: vec![bits[..4].to_vec(), bits[4..].to_vec()],
        };
        let w = (-m.energy(&p, &st)).exp();
        z += w;
        for k in 0..n {
            marg[k] += w * bits[k];
        }
    }
    marg.iter_mut().for_each(|x| *x /= z);
    let chains = 2000;
    let mut b = Batch::zeros(&m, chains);
    let mut rngs = Rngs::new(7, 0, chains);
    let clamped = vec![false; 2];
    let mut acc = vec![0.0; n];
    let sweeps = 60;
    for t in 0..sweeps {
        ex.gibbs_sweep(&mut b, &mut rngs, &clamped, None);
        if t >= 10 {
            for k in 0..n {
                let (g, e) = if k < 4 { (0, k) } else { (1, k - 4) };
                acc[k] += b.x[g].column(e).sum() as f64;
            }
        }
    }
    let count = (chains * (sweeps - 10)) as f64;
    for k in 0..n {
        let est = acc[k] / count;
        // chains are independent; within a chain samples are correlated, so allow ~5 s.e. of
        // the per-chain average (sd <= 0.5 / sqrt(chains))
        assert!(
            (est - marg[k]).abs() < 5.0 * 0.5 / (chains as f64).sqrt(),
            "unit {k}: {est} vs {}",
            marg[k]
        );
    }
}

/// Mean-field on an RBM is exact (the posterior factorises): means equal sigmoid of fields.
#[test]
fn mean_field_on_rbm_is_exact_and_converges_on_dbm() {
    let (m, p) = rbm(6, 4, 1.0, 31);
    let plan = test_plan(&m);
    let ex = Exec::new(&m, &plan, &p).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let states: Vec<State> = (0..3).map(|_| random_state(&m, &mut rng)).collect();
    let mut b = to_batch(&m, &states);
    ex.mean_field(&mut b);
    let f = ex.fields(GroupId(1), &b);
    for r in 0..3 {
        for j in 0..4 {
            let want = 1.0 / (1.0 + (-f.z[(r, j)]).exp());
            assert!((b.x[1][(r, j)] - want).abs() < 1e-6);
        }
    }
    // DBM: the fixed point satisfies both layers' equations simultaneously
    let (m, p) = dbm(5, 4, 3, 1.0, 32);
    let plan = test_plan(&m);
    let ex = Exec::new(&m, &plan, &p).unwrap();
    let mut b = to_batch(&m, &[random_state(&m, &mut rng)]);
    let iters = ex.mean_field(&mut b);
    assert!(iters < 200, "mean field converged ({iters} iterations)");
    for g in [GroupId(1), GroupId(2)] {
        let f = ex.fields(g, &b);
        for (e, &zv) in f.z.row(0).iter().enumerate() {
            let want = 1.0 / (1.0 + (-zv).exp());
            assert!(
                (b.x[g.idx()][(0, e)] - want).abs() < 1e-5,
                "fixed point of {:?}[{e}]",
                g
            );
        }
    }
}

/// Every stdlib model at a small size, with random parameters and the real derived Plan.
#[test]
fn exec_matches_direct_evaluation_on_stdlib_models() {
    use ebmc::front::{compile_str, stdlib_names, stdlib_source, CompileOptions};
    let overrides: Vec<(String, f64)> = [
        ("nv", 5.0),
        ("nh", 3.0),
        ("nc", 3.0),
        ("n1", 3.0),
        ("n2", 3.0),
        ("n3", 2.0),
        ("L", 3.0),
        ("q", 3.0),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), *v))
    .collect();
    let mut checked = Vec::new();
    for name in stdlib_names() {
        let src = stdlib_source(name).unwrap();
        let header = src.lines().find(|l| l.starts_with("model")).unwrap_or("");
        let mine = overrides
            .iter()
            .filter(|(k, _)| header.contains(&format!("{k} =")))
            .cloned()
            .collect();
        let (prog, _, diags) = compile_str(name, src, &CompileOptions { overrides: mine });
        assert!(diags.iter().all(|d| !d.is_error()), "{name}: {diags:?}");
        for model in &prog.models {
            let mut rng = StdRng::seed_from_u64(checked.len() as u64);
            let mut params = model.default_params();
            for (k, vals) in params.values.iter_mut().enumerate() {
                let positive = model.params[k].has(Constraint::Positive);
                for x in vals.iter_mut() {
                    let r = 1.6 * rng.random::<f64>() - 0.8;
                    *x = if positive { 0.5 + r.abs() } else { *x + r };
                }
            }
            let plan = crate::train::plan_of(model);
            match Exec::new(model, &plan, &params) {
                Err(ebmc::exec::ExecError::Directed { .. }) => {
                    assert!(
                        !model.directed.is_empty(),
                        "{}: only directed models are refused",
                        model.name
                    );
                    continue;
                }
                Err(e) => panic!("{}: {e}", model.name),
                Ok(_) => {}
            }
            check_fields_with(model, &params, &plan, 1);
            if plan
                .free_energy
                .summed
                .iter()
                .all(|&g| model.group(g).domain != Domain::Real)
            {
                check_free_energy_with(model, &params, &plan, 2);
            }
            check_grad_with(model, &params, &plan, 3);
            checked.push(model.name.clone());
        }
    }
    eprintln!("checked {checked:?}");
    assert!(checked.len() >= 8, "checked {checked:?}");
}

/// The executor (f32, batched) against the oracle interpreter (f64, one variable at a time)
/// on the same Plan: conditionals, free energies and Rao-Blackwellised positive statistics.
fn check_vs_interp(model: &Model, params: &Params, plan: &Plan, seed: u64) {
    use ebmc::analysis::VarRef;
    use ebmc::interp::{Cond, Interp};
    let it = Interp::new(model, plan, params.clone());
    let ex = Exec::new(model, plan, params).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let states: Vec<State> = (0..3).map(|_| random_state(model, &mut rng)).collect();
    let batch = to_batch(model, &states);
    for g in model.group_ids() {
        let f = ex.fields(g, &batch);
        let k = model.group(g).n_states();
        for (r, st) in states.iter().enumerate() {
            for var in 0..model.group(g).n_vars() {
                match it.field(st, VarRef { group: g, var }) {
                    Cond::Bernoulli { z } | Cond::Spin { z } => {
                        assert!(
                            close(f.z[(r, var)] as f64, z, 1e-4),
                            "{}: z of {}[{var}]: {} vs {z}",
                            model.name,
                            model.group(g).name,
                            f.z[(r, var)]
                        )
                    }
                    Cond::Softmax { z } => {
                        for c in 1..k {
                            let got = (f.z[(r, var * k + c)] - f.z[(r, var * k)]) as f64;
                            assert!(
                                close(got, z[c] - z[0], 1e-4),
                                "{}: softmax z of {}[{var}]",
                                model.name,
                                model.group(g).name
                            );
                        }
                    }
                    Cond::Gaussian { z, beta } => {
                        assert!(close(f.z[(r, var)] as f64, z, 1e-4));
                        assert!(close(f.beta.as_ref().unwrap()[(r, var)] as f64, beta, 1e-4));
                    }
                    Cond::Enumerate { .. } => {
                        unreachable!("the executor refuses enumerated families")
                    }
                }
            }
        }
    }
    let fe = ex.free_energy(&batch, None);
    for (r, st) in states.iter().enumerate() {
        let want = it.free_energy(st);
        assert!(
            close(fe[r], want, 1e-4),
            "{}: free energy {} vs {want}",
            model.name,
            fe[r]
        );
        let mut one = to_batch(model, std::slice::from_ref(st));
        ex.rao_blackwellize(&mut one, &plan.free_energy.summed, None);
        let got = ex.energy_grad(&one);
        let want = it.grad_positive(st);
        for gs in &plan.gradients {
            let p = gs.param.idx();
            for (e, (&a, &b)) in got[p].iter().zip(&want.values[p]).enumerate() {
                assert!(
                    close(a, b, 1e-4),
                    "{}: positive statistic of {}[{e}]: {a} vs {b}",
                    model.name,
                    model.params[p].name
                );
            }
        }
    }
}

#[test]
fn exec_matches_interpreter_on_random_models() {
    let cfg = ebmc::testgen::GenConfig::default();
    let mut n = 0;
    for seed in 0..40 {
        let (m, p) = ebmc::testgen::random_model(seed, &cfg);
        let plan = crate::train::plan_of(&m);
        if plan
            .conditionals
            .iter()
            .any(|c| c.family == Family::Enumerate)
        {
            continue;
        }
        check_vs_interp(&m, &p, &plan, seed);
        check_fields_with(&m, &p, &plan, seed);
        check_free_energy_with(&m, &p, &plan, seed);
        check_grad_with(&m, &p, &plan, seed);
        n += 1;
    }
    assert!(n >= 30, "{n} random models checked");
    let (m, p) = grbm(4, 3, 3);
    check_vs_interp(&m, &p, &crate::train::plan_of(&m), 5);
}

/// Gibbs marginals on random models (laterals, categorical, three-way; the derived
/// schedules, including sub-group blocks) vs exact marginals by enumeration.
#[test]
fn gibbs_marginals_match_enumeration_on_random_models() {
    let cfg = ebmc::testgen::GenConfig::default();
    let mut n = 0;
    for seed in 100..106 {
        let (m, p) = ebmc::testgen::random_model(seed, &cfg);
        let plan = crate::train::plan_of(&m);
        let Ok(ex) = Exec::new(&m, &plan, &p) else {
            continue;
        };
        let exact = ebmc::exact::Joint::new(&m, &p).unwrap().marginals();
        let chains = 2000;
        let mut b = Batch::zeros(&m, chains);
        let mut rngs = Rngs::new(seed, 0, chains);
        let free = vec![false; m.groups.len()];
        let (burn, sweeps) = (20, 60);
        let mut acc: Vec<Vec<f64>> = exact.iter().map(|g| vec![0.0; g.len()]).collect();
        for t in 0..sweeps {
            ex.gibbs_sweep(&mut b, &mut rngs, &free, None);
            if t >= burn {
                for (g, a) in acc.iter_mut().enumerate() {
                    for (e, x) in a.iter_mut().enumerate() {
                        *x += b.x[g].column(e).sum() as f64;
                    }
                }
            }
        }
        let count = (chains * (sweeps - burn)) as f64;
        for (g, a) in acc.iter().enumerate() {
            for (e, x) in a.iter().enumerate() {
                let est = x / count;
                let tol = if m.groups[g].domain == Domain::Spin {
                    2.0
                } else {
                    1.0
                } * 5.0
                    * 0.5
                    / (chains as f64).sqrt();
                assert!(
                    (est - exact[g][e]).abs() < tol,
                    "{} seed {seed}: {}[{e}] {est} vs {}",
                    m.name,
                    m.groups[g].name,
                    exact[g][e]
                );
            }
        }
        n += 1;
    }
    assert!(n >= 4, "{n} models sampled");
}

/// `energy_grad_pair_into` reuses the caller's buffers and overwrites, rather than adds to,
/// the gradient of a parameter read only by one dense term: a second call on a buffer
/// holding the first call's result must equal a fresh `energy_grad_pair`, and the pair must
/// equal the difference of the two one-phase gradients (`energy_grad`), on sparse binary
/// batches (the selected-rows route) and dense ones (the GEMM route).
#[test]
fn grad_pair_into_overwrites_kept_buffers() {
    let (m, p) = rbm(60, 40, 0.3, 9);
    let plan = test_plan(&m);
    let mut ex = Exec::new(&m, &plan, &p).expect("executor");
    ex.set_backend(ebmc::exec::Backend::Jit);
    let mut rng = StdRng::seed_from_u64(10);
    let mut batch = |density: f64| {
        let states: Vec<State> = (0..30)
            .map(|_| {
                let mut s = m.zero_state();
                for vals in s.values.iter_mut() {
                    for x in vals.iter_mut() {
                        *x = (rng.random::<f64>() < density) as u8 as f64;
                    }
                }
                s
            })
            .collect();
        to_batch(&m, &states)
    };
    let mut buf = Vec::new();
    for density in [0.1, 0.6] {
        let (a, b, c, d) = (
            batch(density),
            batch(density),
            batch(density),
            batch(density),
        );
        ex.energy_grad_pair_into(&a, -1.0, &b, 1.0, &mut buf);
        ex.energy_grad_pair_into(&c, -1.0, &d, 1.0, &mut buf);
        let fresh = ex.energy_grad_pair(&c, -1.0, &d, 1.0);
        assert_eq!(buf, fresh, "kept buffer, density {density}");
        let (gc, gd) = (ex.energy_grad(&c), ex.energy_grad(&d));
        for ((f, x), y) in fresh
            .iter()
            .flatten()
            .zip(gc.iter().flatten())
            .zip(gd.iter().flatten())
        {
            assert!((f - (y - x)).abs() < 1e-5, "{f} vs {}", y - x);
        }
    }
}

/// The free energy's vectorised softplus (`exec::softplus_sum`, AIS's inner loop) against
/// libm's `exp` / `log1p`: within a few ulp on a grid across the whole f32 range (0, tiny,
/// the exp underflow near -708 and -745, huge values), and on sums of random vectors whose
/// lengths leave every remainder of its 32 lanes.
#[test]
fn vector_softplus_matches_libm() {
    let libm = |x: f64| {
        if x > 0.0 {
            x + (-x).exp().ln_1p()
        } else {
            x.exp().ln_1p()
        }
    };
    let mut xs: Vec<f32> = vec![
        0.0, -0.0, 1e-30, -1e-30, 1e-8, -1e-8, 0.5, -0.5, 1.0, -1.0, 17.0, -17.0, 36.0, -36.0,
        100.0, -100.0, 700.0, -700.0, 707.9, -707.9, 708.5, -708.5, 745.5, -745.5, 800.0, -800.0,
        3e38, -3e38,
    ];
    let mut rng = StdRng::seed_from_u64(21);
    for _ in 0..20000 {
        let e: f64 = rng.random::<f64>() * 12.0 - 6.0;
        let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
        xs.push((sign * 10f64.powf(e / 2.0)) as f32);
    }
    for &x in &xs {
        let (got, want) = (ebmc::exec::softplus_sum(&[x]), libm(x as f64));
        // below e^-708 the vector form clamps (absolute error under 1e-307)
        let tol = 4.0 * f64::EPSILON * want.abs() + 1e-306;
        assert!(
            (got - want).abs() <= tol,
            "softplus({x}) = {got}, libm {want}"
        );
    }
    for n in 0..70 {
        let z: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 40.0 - 20.0).collect();
        let got = ebmc::exec::softplus_sum(&z);
        let want: f64 = z.iter().map(|&x| libm(x as f64)).sum();
        assert!(
            (got - want).abs() <= 1e-14 * want.abs().max(1.0),
            "n = {n}: {got} vs {want}"
        );
    }
}

// ---------------------------------------------------------------- batch plumbing

/// `Batch::stack_two` (the 2-thread CD's stacking, copies on two cores) is `Batch::stack`
/// twice: every group, second moments where both halves have them, uneven halves.
#[test]
fn stack_two_is_stack_twice() {
    let mut g = StdRng::seed_from_u64(3);
    let mut arr = |r: usize, c: usize| Array2::from_shape_fn((r, c), |_| g.random::<f32>());
    for (ra, rb) in [(3, 4), (50, 50), (1, 0), (0, 2)] {
        let mut half = |rows: usize, sq: [bool; 3]| Batch {
            x: vec![arr(rows, 5), arr(rows, 1), arr(rows, 7)],
            sq: sq
                .iter()
                .map(|&s| s.then(|| arr(rows, [5, 1, 7][0])))
                .collect(),
        };
        let (a0, a1) = (half(ra, [true, false, true]), half(rb, [true, true, false]));
        let (b0, b1) = (half(ra, [false; 3]), half(rb, [false; 3]));
        let (a, b) = Batch::stack_two(&a0, &a1, &b0, &b1);
        assert_eq!(a, Batch::stack(&a0, &a1));
        assert_eq!(b, Batch::stack(&b0, &b1));
        assert!(a.sq[0].is_some() && a.sq[1].is_none() && a.sq[2].is_none());
    }
}

/// `gather_rows` copies the indexed rows (repeats, any order, a transposed source).
#[test]
fn gather_rows_copies_the_indexed_rows() {
    let mut g = StdRng::seed_from_u64(4);
    let x = Array2::from_shape_fn((9, 6), |_| g.random::<f32>());
    let idx = [4, 0, 4, 5, 2];
    for src in [x.view(), x.t()] {
        let got = ebmc::runtime::batch::gather_rows(src, &idx);
        assert_eq!(got.dim(), (idx.len(), src.ncols()));
        for (r, &i) in idx.iter().enumerate() {
            assert_eq!(got.row(r), src.row(i));
        }
    }
}
