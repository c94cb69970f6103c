//! Seeded generator of random small models, built directly as `ir::Model` values, for the
//! property tests: random groups and domains, pairwise, lateral and three-way terms with
//! random coefficient forms, directed sigmoid-Bernoulli children, and Gaussian-visible models.
//!
//! Invariant: every model it returns satisfies the `ir` invariants (indices in range, canonical
//! powers, no repeated unit factor in a term) and is small enough to enumerate: at most
//! `MAX_JOINT_STATES` joint states of its discrete groups. Same seed, same model.

use crate::diag::Span;
use crate::ir::eval::{Params, State};
use crate::ir::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// Largest number of joint discrete states of a generated model.
pub const MAX_JOINT_STATES: usize = 4096;

/// Builds a model and its parameter values side by side.
pub struct Builder {
    pub model: Model,
    pub params: Params,
}

impl Builder {
    pub fn new(name: &str) -> Self {
        Builder {
            model: Model::empty(name, Span::default()),
            params: Params { values: vec![] },
        }
    }
    pub fn group(&mut self, name: &str, shape: &[usize], domain: Domain, role: Role) -> GroupId {
        self.model.groups.push(Group {
            name: name.to_string(),
            shape: shape.to_vec(),
            domain,
            role,
            span: Span::default(),
        });
        GroupId(self.model.groups.len() as u32 - 1)
    }
    pub fn param(
        &mut self,
        name: &str,
        shape: &[usize],
        values: Vec<f64>,
        constraints: Vec<Constraint>,
    ) -> ParamId {
        assert_eq!(
            values.len(),
            shape.iter().product::<usize>(),
            "param values fit shape"
        );
        self.model.params.push(Param {
            name: name.to_string(),
            shape: shape.to_vec(),
            init: Init::Const(0.0),
            constraints,
            span: Span::default(),
        });
        self.params.values.push(values);
        ParamId(self.model.params.len() as u32 - 1)
    }
    pub fn term(
        &mut self,
        vars: Vec<IndexVar>,
        units: Vec<UnitFactor>,
        coef: Coef,
        origin: Origin,
    ) {
        self.model.terms.push(Term {
            vars,
            units,
            coef,
            origin,
            span: Span::default(),
        });
    }
    pub fn finish(self) -> (Model, Params) {
        (self.model, self.params)
    }
}

/// Index vars `prefix0, prefix1, ..` ranging over `shape`.
pub fn axes(prefix: &str, shape: &[usize]) -> Vec<IndexVar> {
    shape
        .iter()
        .enumerate()
        .map(|(k, &n)| IndexVar {
            name: format!("{prefix}{k}"),
            extent: n,
        })
        .collect()
}

/// `Affine::var` for vars `first..first + n`.
pub fn var_index(first: usize, n: usize) -> Vec<Affine> {
    (first..first + n).map(|v| Affine::var(v as u32)).collect()
}

pub fn unit(group: GroupId, index: Vec<Affine>, power: u32) -> UnitFactor {
    UnitFactor {
        group,
        index,
        power,
    }
}

pub fn pref(param: ParamId, index: Vec<Affine>) -> Coef {
    Coef::Param { param, index }
}

fn normal_vec(rng: &mut StdRng, n: usize, sd: f64) -> Vec<f64> {
    let d = Normal::new(0.0, sd).expect("sd is positive");
    (0..n).map(|_| d.sample(rng)).collect()
}

/// Wraps a parameter reference in a random coefficient form whose value is `-theta` up to a
/// positive scale, so terms stay "energy = -coupling"-like but exercise every `Coef` node.
fn random_coef(rng: &mut StdRng, b: &mut Builder, p: Coef) -> Coef {
    match rng.random_range(0..10) {
        0..=5 => Coef::Neg(Box::new(p)),
        6 => Coef::Mul(vec![Coef::Const(-0.5 - rng.random::<f64>()), p]),
        7 => {
            let s = b.param("scale", &[], vec![rng.random_range(-0.5..0.5)], vec![]);
            Coef::Neg(Box::new(Coef::Mul(vec![
                p,
                Coef::Func(Func::Exp, Box::new(pref(s, vec![]))),
            ])))
        }
        8 => Coef::Div(
            Box::new(Coef::Neg(Box::new(p))),
            Box::new(Coef::Const(0.5 + rng.random::<f64>())),
        ),
        _ => Coef::Add(vec![
            Coef::Neg(Box::new(p)),
            Coef::Const(rng.random_range(-0.3..0.3)),
        ]),
    }
}

fn joint_states(model: &Model) -> f64 {
    model
        .groups
        .iter()
        .map(|g| match g.domain {
            Domain::Real => 1.0,
            Domain::Categorical => (g.n_states() as f64).powi(g.n_vars() as i32),
            _ => 2f64.powi(g.n_elems() as i32),
        })
        .product()
}

/// What `random_model` may put in a model.
#[derive(Clone, Copy, Debug)]
pub struct GenConfig {
    pub max_groups: usize,
    pub three_way: bool,
    pub laterals: bool,
    /// number of directed sigmoid-Bernoulli children appended (0 for a purely undirected model)
    pub max_directed: usize,
    /// standard deviation of parameter values
    pub scale: f64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            max_groups: 4,
            three_way: true,
            laterals: true,
            max_directed: 0,
            scale: 0.8,
        }
    }
}

/// A random discrete model: 2..=max_groups groups (binary, spin or categorical with 2-3
/// states), biases, dense couplings between groups, laterals (dense with zero diagonal, or
/// periodic rings, Potts-style for categorical), three-way couplings, and optionally directed
/// sigmoid-Bernoulli children of random parents.
pub fn random_model(seed: u64, cfg: &GenConfig) -> (Model, Params) {
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        let (m, p) = try_random_model(&mut rng, seed, cfg);
        if joint_states(&m) <= MAX_JOINT_STATES as f64 && !m.terms.is_empty() {
            return (m, p);
        }
    }
}

fn try_random_model(rng: &mut StdRng, seed: u64, cfg: &GenConfig) -> (Model, Params) {
    let mut b = Builder::new(&format!("random_{seed}"));
    let n_groups = rng.random_range(2..=cfg.max_groups.max(2));
    for g in 0..n_groups {
        let domain = match rng.random_range(0..20) {
            0..=8 => Domain::Binary,
            9..=14 => Domain::Spin,
            _ => Domain::Categorical,
        };
        let shape = match domain {
            Domain::Categorical => vec![rng.random_range(1..=2), rng.random_range(2..=3)],
            _ if rng.random_range(0..6) == 0 => vec![2, 2],
            _ => vec![rng.random_range(1..=4)],
        };
        let role = if g == 0 || (g + 1 < n_groups && rng.random_bool(0.3)) {
            Role::Visible
        } else {
            Role::Hidden
        };
        b.group(&format!("g{g}"), &shape, domain, role);
    }
    let s = cfg.scale;
    let gids: Vec<GroupId> = b.model.group_ids().collect();
    for &g in &gids {
        let shape = b.model.group(g).shape.clone();
        if rng.random_bool(0.8) {
            let n = shape.iter().product();
            let p = b.param(&format!("b_{}", g.0), &shape, normal_vec(rng, n, s), vec![]);
            let c = random_coef(rng, &mut b, pref(p, var_index(0, shape.len())));
            let u = unit(g, var_index(0, shape.len()), 1);
            b.term(axes("i", &shape), vec![u], c, Origin::Energy);
        }
    }
    for (ai, &ga) in gids.iter().enumerate() {
        for &gb in &gids[ai + 1..] {
            if rng.random_bool(0.6) {
                pairwise(rng, &mut b, &[ga, gb], s);
            }
        }
    }
    if cfg.three_way && gids.len() >= 3 && rng.random_bool(0.35) {
        let mut pick = gids.clone();
        while pick.len() > 3 {
            pick.remove(rng.random_range(0..pick.len()));
        }
        pairwise(rng, &mut b, &pick, s);
    }
    if cfg.laterals {
        for &g in &gids {
            if rng.random_bool(0.35) {
                lateral(rng, &mut b, g, s);
            }
        }
    }
    let n_dir = if cfg.max_directed == 0 {
        0
    } else {
        rng.random_range(1..=cfg.max_directed)
    };
    for d in 0..n_dir {
        let n = rng.random_range(1..=3);
        let role = if rng.random_bool(0.5) {
            Role::Visible
        } else {
            Role::Hidden
        };
        let child = b.group(&format!("d{d}"), &[n], Domain::Binary, role);
        let cands: Vec<GroupId> = b.model.group_ids().filter(|&g| g != child).collect();
        let mut parents: Vec<GroupId> = cands
            .iter()
            .copied()
            .filter(|_| rng.random_bool(0.5))
            .collect();
        if parents.is_empty() {
            parents.push(cands[rng.random_range(0..cands.len())]);
        }
        add_sigmoid_child(rng, &mut b, child, &parents, s);
    }
    b.finish()
}

/// A coupling `-T[..] * g1[..] * g2[..] * ...` over distinct groups, dense over all axes.
fn pairwise(rng: &mut StdRng, b: &mut Builder, groups: &[GroupId], s: f64) {
    let mut vars = Vec::new();
    let mut units = Vec::new();
    for (k, &g) in groups.iter().enumerate() {
        let shape = b.model.group(g).shape.clone();
        units.push(unit(g, var_index(vars.len(), shape.len()), 1));
        vars.extend(axes(&format!("x{k}_"), &shape));
    }
    let shape: Vec<usize> = vars.iter().map(|v| v.extent).collect();
    let n = shape.iter().product();
    let name = format!("W{}", b.model.params.len());
    let p = b.param(&name, &shape, normal_vec(rng, n, s), vec![]);
    let c = random_coef(rng, b, pref(p, var_index(0, shape.len())));
    b.term(vars, units, c, Origin::Energy);
}

/// A lateral coupling within one group: a dense symmetric zero-diagonal matrix (1-D binary or
/// spin groups) with the 1/2 of the double-counted sum, or a periodic ring `x[i] x[(i+1)%n]`
/// (Potts-style `x[i,c] x[(i+1)%n,c]` for categorical groups).
fn lateral(rng: &mut StdRng, b: &mut Builder, g: GroupId, s: f64) {
    let grp = b.model.group(g).clone();
    let n = grp.shape[0];
    if n < 2 {
        return;
    }
    if grp.domain != Domain::Categorical && grp.shape.len() == 1 && rng.random_bool(0.6) {
        lateral_dense(rng, b, g, s);
        return;
    }
    // ring along axis 0, elementwise over the other axes
    let vars = axes("r", &grp.shape);
    let shift = Affine {
        coeffs: vec![(0, 1)],
        offset: 1,
        modulo: Some(n as i64),
    };
    let mut idx2 = vec![shift];
    idx2.extend(var_index(1, grp.shape.len() - 1));
    let units = vec![unit(g, var_index(0, grp.shape.len()), 1), unit(g, idx2, 1)];
    let name = format!("L{}", b.model.params.len());
    let p = b.param(&name, &[n], normal_vec(rng, n, s), vec![]);
    let c = random_coef(rng, b, pref(p, var_index(0, 1)));
    b.term(vars, units, c, Origin::Energy);
}

/// Appends `child[i] ~ bernoulli(sigmoid(c[i] + sum W[i, ..] parent[..]))` exactly as `ir`
/// documents it: the polynomial part `-child * logit` in `terms`, `softplus(logit)` as a
/// `LogNorm`, and the `Directed` record.
pub fn add_sigmoid_child(
    rng: &mut StdRng,
    b: &mut Builder,
    child: GroupId,
    parents: &[GroupId],
    s: f64,
) {
    let d = DirectedId(b.model.directed.len() as u32);
    let n = b.model.group(child).n_elems();
    let outer = vec![IndexVar {
        name: "i".into(),
        extent: n,
    }];
    let c = b.param(
        &format!("c_{}", child.0),
        &[n],
        normal_vec(rng, n, s),
        vec![],
    );
    // logit terms, with vars starting with the child's var `i`
    let mut logit = vec![Term {
        vars: outer.clone(),
        units: vec![],
        coef: pref(c, var_index(0, 1)),
        origin: Origin::Directed(d),
        span: Span::default(),
    }];
    for &pg in parents {
        let shape = b.model.group(pg).shape.clone();
        let mut vars = outer.clone();
        vars.extend(axes("p", &shape));
        let mut wshape = vec![n];
        wshape.extend(&shape);
        let w = b.param(
            &format!("V{}", b.model.params.len()),
            &wshape,
            normal_vec(rng, wshape.iter().product(), s),
            vec![],
        );
        logit.push(Term {
            vars,
            units: vec![unit(pg, var_index(1, shape.len()), 1)],
            coef: pref(w, var_index(0, 1 + shape.len())),
            origin: Origin::Directed(d),
            span: Span::default(),
        });
    }
    // -child[i] * logit: each logit term times the child, negated
    for t in &logit {
        let mut units = vec![unit(child, var_index(0, 1), 1)];
        units.extend(t.units.iter().cloned());
        b.term(
            t.vars.clone(),
            units,
            Coef::Neg(Box::new(t.coef.clone())),
            Origin::Directed(d),
        );
    }
    b.model.lognorms.push(LogNorm {
        outer: outer.clone(),
        kind: LogNormKind::Softplus,
        arg: logit.clone(),
        origin: Origin::Directed(d),
        span: Span::default(),
    });
    let mut ps: Vec<GroupId> = parents.to_vec();
    ps.sort();
    ps.dedup();
    b.model.directed.push(Directed {
        child,
        vars: outer,
        dist: Dist::Bernoulli { logit },
        parents: ps,
        span: Span::default(),
    });
}

/// A random layered sigmoid belief net: 2-3 binary layers, the top one with a prior, each
/// lower layer a child of a nonempty set of the layers above; the bottom layer visible.
pub fn random_sbn(seed: u64) -> (Model, Params) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut b = Builder::new(&format!("sbn_{seed}"));
    let n_layers = rng.random_range(2..=3);
    let mut layers = Vec::new();
    for l in 0..n_layers {
        let n = rng.random_range(1..=3);
        let role = if l + 1 == n_layers {
            Role::Visible
        } else {
            Role::Hidden
        };
        let g = b.group(
            &format!("h{}", n_layers - 1 - l),
            &[n],
            Domain::Binary,
            role,
        );
        let parents: Vec<GroupId> = if l == 0 {
            vec![]
        } else {
            let mut ps: Vec<GroupId> = layers
                .iter()
                .copied()
                .filter(|_| rng.random_bool(0.5))
                .collect();
            if ps.is_empty() {
                ps.push(layers[l - 1]);
            }
            ps
        };
        add_sigmoid_child(&mut rng, &mut b, g, &parents, 1.0);
        layers.push(g);
    }
    b.finish()
}

/// A random Gaussian-visible model: real `v[n]` with a positive quadratic term (a GRBM-style
/// `v^2 / (2 sigma^2)` or a plain `prec * v^2 / 2`), binary hidden `h[m]`, couplings
/// `-v W h` (divided by sigma in the GRBM form) and biases; sometimes a second binary group.
pub fn random_gaussian(seed: u64) -> (Model, Params) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut b = Builder::new(&format!("gauss_{seed}"));
    let n = rng.random_range(1..=3);
    let m = rng.random_range(1..=3);
    let v = b.group("v", &[n], Domain::Real, Role::Visible);
    let h = b.group("h", &[m], Domain::Binary, Role::Hidden);
    let iv = vec![IndexVar {
        name: "i".into(),
        extent: n,
    }];
    let ivj = vec![
        IndexVar {
            name: "i".into(),
            extent: n,
        },
        IndexVar {
            name: "j".into(),
            extent: m,
        },
    ];
    let grbm = rng.random_bool(0.5);
    let sig: Vec<f64> = (0..n).map(|_| rng.random_range(0.5..2.0)).collect();
    let p = b.param("sigma", &[n], sig, vec![Constraint::Positive]);
    let sigma = pref(p, var_index(0, 1));
    let quad = if grbm {
        Coef::Div(
            Box::new(Coef::Const(0.5)),
            Box::new(Coef::Powi(Box::new(sigma.clone()), 2)),
        )
    } else {
        Coef::Mul(vec![Coef::Const(0.5), sigma.clone()])
    };
    b.term(
        iv.clone(),
        vec![unit(v, var_index(0, 1), 2)],
        quad,
        Origin::Energy,
    );
    let a = b.param("a", &[n], normal_vec(&mut rng, n, 0.8), vec![]);
    b.term(
        iv.clone(),
        vec![unit(v, var_index(0, 1), 1)],
        Coef::Neg(Box::new(pref(a, var_index(0, 1)))),
        Origin::Energy,
    );
    let w = b.param("W", &[n, m], normal_vec(&mut rng, n * m, 0.8), vec![]);
    let wc = pref(w, var_index(0, 2));
    let coup = if grbm {
        Coef::Neg(Box::new(Coef::Div(Box::new(wc), Box::new(sigma))))
    } else {
        Coef::Neg(Box::new(wc))
    };
    b.term(
        ivj,
        vec![unit(v, var_index(0, 1), 1), unit(h, var_index(1, 1), 1)],
        coup,
        Origin::Energy,
    );
    let bh = b.param("b", &[m], normal_vec(&mut rng, m, 0.8), vec![]);
    b.term(
        vec![IndexVar {
            name: "j".into(),
            extent: m,
        }],
        vec![unit(h, var_index(0, 1), 1)],
        Coef::Neg(Box::new(pref(bh, var_index(0, 1)))),
        Origin::Energy,
    );
    if n >= 2 && rng.random_bool(0.4) {
        // a weak real-real ring coupling -rho * v[i] v[(i+1)%n]; |rho| <= 0.1 keeps the
        // precision matrix diagonally dominant (diagonal >= 0.25)
        let rho = b.param("rho", &[], vec![rng.random_range(-0.1..0.1)], vec![]);
        let shift = Affine {
            coeffs: vec![(0, 1)],
            offset: 1,
            modulo: Some(n as i64),
        };
        b.term(
            iv.clone(),
            vec![unit(v, var_index(0, 1), 1), unit(v, vec![shift], 1)],
            Coef::Neg(Box::new(pref(rho, vec![]))),
            Origin::Energy,
        );
    }
    if rng.random_bool(0.5) {
        let k = rng.random_range(1..=2);
        let h2 = b.group("h2", &[k], Domain::Binary, Role::Hidden);
        pairwise(&mut rng, &mut b, &[h, h2], 0.8);
    }
    b.finish()
}

/// A uniformly random state: binary {0,1}, spin {-1,+1}, one-hot categorical, real N(0, 1).
pub fn random_state(model: &Model, rng: &mut StdRng) -> State {
    let normal = Normal::new(0.0, 1.0).expect("unit normal");
    State {
        values: model
            .groups
            .iter()
            .map(|g| match g.domain {
                Domain::Binary => (0..g.n_elems())
                    .map(|_| rng.random_range(0..2) as f64)
                    .collect(),
                Domain::Spin => (0..g.n_elems())
                    .map(|_| if rng.random_bool(0.5) { 1.0 } else { -1.0 })
                    .collect(),
                Domain::Real => (0..g.n_elems()).map(|_| normal.sample(rng)).collect(),
                Domain::Categorical => {
                    let k = g.n_states();
                    let mut v = vec![0.0; g.n_elems()];
                    for i in 0..g.n_vars() {
                        v[i * k + rng.random_range(0..k)] = 1.0;
                    }
                    v
                }
            })
            .collect(),
    }
}

/// `-beta * sum (s[i,j] s[(i+1)%L,j] + s[i,j] s[i,(j+1)%L]) - h * sum s[i,j]`: the stdlib
/// Ising lattice (periodic), built in code, with an optional uniform field `h`.
pub fn ising(l: usize, beta: f64, h: f64) -> (Model, Params) {
    let mut b = Builder::new(&format!("ising_{l}"));
    let s = b.group("s", &[l, l], Domain::Spin, Role::Visible);
    let vars = axes("i", &[l, l]);
    let wrap = |v: u32| Affine {
        coeffs: vec![(v, 1)],
        offset: 1,
        modulo: Some(l as i64),
    };
    let here = var_index(0, 2);
    for right in [false, true] {
        let other = if right {
            vec![Affine::var(0), wrap(1)]
        } else {
            vec![wrap(0), Affine::var(1)]
        };
        b.term(
            vars.clone(),
            vec![unit(s, here.clone(), 1), unit(s, other, 1)],
            Coef::Neg(Box::new(Coef::Const(beta))),
            Origin::Energy,
        );
    }
    if h != 0.0 {
        let p = b.param("h", &[], vec![h], vec![Constraint::Fixed]);
        b.term(
            vars,
            vec![unit(s, here, 1)],
            Coef::Neg(Box::new(pref(p, vec![]))),
            Origin::Energy,
        );
    }
    b.finish()
}

/// A layered model: `layers[k]` units of `domain` each, dense couplings between consecutive
/// layers, biases, and (when `laterals`) a symmetric zero-diagonal lateral matrix in every
/// layer with the 1/2 convention. Layer 0 is visible. `[nv, nh]` is an RBM (or BM with
/// laterals), `[nv, n1, n2]` a DBM.
pub fn layered(seed: u64, layers: &[usize], domain: Domain, laterals: bool) -> (Model, Params) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut b = Builder::new(&format!("layered_{seed}"));
    let gs: Vec<GroupId> = layers
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            let role = if k == 0 { Role::Visible } else { Role::Hidden };
            b.group(&format!("h{k}"), &[n], domain, role)
        })
        .collect();
    for (k, &g) in gs.iter().enumerate() {
        let n = layers[k];
        let p = b.param(&format!("b{k}"), &[n], normal_vec(&mut rng, n, 0.5), vec![]);
        b.term(
            axes("i", &[n]),
            vec![unit(g, var_index(0, 1), 1)],
            Coef::Neg(Box::new(pref(p, var_index(0, 1)))),
            Origin::Energy,
        );
        if k > 0 {
            let m = layers[k - 1];
            let w = b.param(
                &format!("W{k}"),
                &[m, n],
                normal_vec(&mut rng, m * n, 0.8),
                vec![],
            );
            let vars = vec![
                IndexVar {
                    name: "i".into(),
                    extent: m,
                },
                IndexVar {
                    name: "j".into(),
                    extent: n,
                },
            ];
            let units = vec![
                unit(gs[k - 1], var_index(0, 1), 1),
                unit(g, var_index(1, 1), 1),
            ];
            b.term(
                vars,
                units,
                Coef::Neg(Box::new(pref(w, var_index(0, 2)))),
                Origin::Energy,
            );
        }
        if laterals && n >= 2 {
            lateral_dense(&mut rng, &mut b, g, 0.8);
        }
    }
    b.finish()
}

fn lateral_dense(rng: &mut StdRng, b: &mut Builder, g: GroupId, s: f64) {
    let n = b.model.group(g).shape[0];
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..i {
            let x = normal_vec(rng, 1, s)[0];
            v[i * n + j] = x;
            v[j * n + i] = x;
        }
    }
    let name = format!("L{}", b.model.params.len());
    let p = b.param(
        &name,
        &[n, n],
        v,
        vec![Constraint::Symmetric, Constraint::ZeroDiagonal],
    );
    let vars = vec![
        IndexVar {
            name: "i".into(),
            extent: n,
        },
        IndexVar {
            name: "j".into(),
            extent: n,
        },
    ];
    let units = vec![unit(g, var_index(0, 1), 1), unit(g, var_index(1, 1), 1)];
    let c = Coef::Mul(vec![Coef::Const(-0.5), pref(p, var_index(0, 2))]);
    b.term(vars, units, c, Origin::Energy);
}

/// Random parameter values for any model (a compiled stdlib model, say): N(0, sd) for free
/// elements, symmetric with a zero diagonal where constrained so, |x| + 0.5 where positive;
/// `fixed` parameters keep their initialiser's value.
pub fn random_params(model: &Model, seed: u64, sd: f64) -> Params {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = model.default_params();
    for (k, p) in model.params.iter().enumerate() {
        if p.has(Constraint::Fixed) {
            continue;
        }
        let n = p.n_elems();
        let mut v = normal_vec(&mut rng, n, sd);
        if p.has(Constraint::Positive) {
            v.iter_mut().for_each(|x| *x = x.abs() + 0.5);
        }
        if p.shape.len() == 2 && p.shape[0] == p.shape[1] {
            let m = p.shape[0];
            for i in 0..m {
                for j in 0..m {
                    if p.has(Constraint::Symmetric) && j < i {
                        v[i * m + j] = v[j * m + i];
                    }
                    if p.has(Constraint::ZeroDiagonal) && i == j {
                        v[i * m + j] = 0.0;
                    }
                }
            }
        }
        out.values[k] = v;
    }
    out
}
